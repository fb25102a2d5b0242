"""Dashboards: the SPEC §6 views as a read API, a web page and a CSV export.

``create_dashboard_router(client_factory, authorize)`` is what the gateway includes;
``DashboardQueries`` runs the SQL files of ``schemas/queries`` for the CLI and the router.
"""

from gateway.dashboard.auth import Authorize, any_of, operator_token_authorizer
from gateway.dashboard.errors import DashboardError
from gateway.dashboard.export import usage_to_csv
from gateway.dashboard.queries import DashboardQueries, TimeRange
from gateway.dashboard.router import create_dashboard_router
from gateway.dashboard.wiring import gateway_dashboard_router

__all__ = [
    "Authorize",
    "DashboardError",
    "DashboardQueries",
    "TimeRange",
    "any_of",
    "create_dashboard_router",
    "gateway_dashboard_router",
    "operator_token_authorizer",
    "usage_to_csv",
]
