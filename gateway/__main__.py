"""``python -m gateway``: serve the gateway (settings from the environment)."""

import logging

from gateway.serve import serve

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
serve()
