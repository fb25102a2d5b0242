"""The price table of ``prices.toml`` (data, loaded once)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.toml")


@cache
def price_table(path: Path = PRICES_FILE) -> dict[str, float]:
    with path.open("rb") as fh:
        return {str(k): float(v) for k, v in tomllib.load(fh)["prices"].items()}


def unit_price(module: str, model: str, table: dict[str, float] | None = None) -> float:
    """Price of one unit of ``module``/``model``: exact entry, else the module default, else ``*``."""
    prices = table if table is not None else price_table()
    for key in (f"{module}/{model}", f"{module}/*", "*"):
        if key in prices:
            return prices[key]
    return 0.0
