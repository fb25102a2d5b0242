"""``python -m gateway``: serve the gateway (settings from the environment)."""

from gateway.logs import configure
from gateway.serve import serve

configure()
serve()
