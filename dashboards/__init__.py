"""Dashboards: the query path — what ClickHouse holds, read back per agent, customer, tool and period.

Every view is a SQL file of ``schemas/queries`` run with bound parameters (``DashboardQueries``), asked for
in the vocabulary of ``ranges`` (time ranges, filters, cursors, series steps).
They are served as a read API and a web page (``routes``, ``page``: module-level routes whose
authorisation and ClickHouse client the serving app supplies — the gateway, in ``gateway/read_api.py``),
priced into statements (``billing``, ``billing_api``), checked against usage limits (``limits``,
``limits_api``, ``limits_cli``: ``meterline limits``), exported as CSV (``export``), provisioned into
Grafana (``grafana``), and printed in a shell
(``cli``: ``meterline dashboard``, ``meterline sql`` with its read-only guard in ``sql``,
``meterline export``), directly from ClickHouse or through the read API (``remote``).

This package imports only ``schemas`` and the floor (``meterline``): never the gateway, never the workers.
"""

from dashboards.errors import DashboardError
from dashboards.export import statement_to_csv
from dashboards.queries import DashboardQueries, TimeRange

__all__ = ["DashboardError", "DashboardQueries", "TimeRange", "statement_to_csv"]
