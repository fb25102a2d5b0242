"""``python -m meterline_cli``: the ``meterline`` command without its console script."""

from meterline_cli.main import main

raise SystemExit(main())
