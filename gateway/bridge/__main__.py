"""``python -m gateway.bridge``: run one MQTT bridge replica (settings from the environment)."""

from gateway.bridge.service import main

raise SystemExit(main())
