"""Subcommands of the ``meterline`` command, one module per area."""
