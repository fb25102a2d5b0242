"""Imports flow one way, like the floors of a house (``docs/architecture.md``, "Packages and layers").

1. bottom: the SDK (``gt8004``, ``billing_sdk``: each imports only itself and ``meterline_sdk``, their
   shared part) and ``schemas`` (only itself);
2. floor: ``meterline`` imports the bottom;
3. the three paths side by side — ``gateway`` (ingest), ``stream_workers`` (processing), ``dashboards``
   (query) — import the floor and the bottom, never each other, except one edge: ``gateway.read_api``
   mounts the dashboards' routes;
4. the command, ``meterline_cli``, may import anything.

And nothing of ours is loaded by name (``importlib.import_module``, ``__import__``), which would hide
an edge from this test. The walk reads every module's ``ast`` (imports inside functions and under
``TYPE_CHECKING`` count too); the checker is tried on made-up modules first, so that a test that found
nothing cannot mean a checker that sees nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: package -> the directory that holds it
PACKAGES = {"gt8004": ROOT / "sdk", "billing_sdk": ROOT / "sdk", "meterline_sdk": ROOT / "sdk", "schemas": ROOT,
            "meterline": ROOT, "gateway": ROOT, "stream_workers": ROOT, "dashboards": ROOT, "meterline_cli": ROOT}
BOTTOM = {"schemas"}
FLOOR = BOTTOM | {"meterline"}
#: which of our packages each package may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "meterline_sdk": set(),
    "gt8004": {"meterline_sdk"},
    "billing_sdk": {"meterline_sdk"},
    "schemas": set(),
    "meterline": BOTTOM,
    "gateway": FLOOR,
    "stream_workers": FLOOR,
    "dashboards": FLOOR,
    "meterline_cli": set(PACKAGES),
}
#: single modules allowed one edge more than their package
EXTRA_EDGES = {("gateway.read_api", "dashboards")}
_BY_NAME = {"import_module", "__import__"}


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of every import in ``tree``, the module being ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.lineno, node.module


def loaded_by_name(tree: ast.AST) -> Iterator[int]:
    """Lines that call ``importlib.import_module`` or ``__import__``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _BY_NAME:
                yield node.lineno


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """What ``module`` (whose text is ``source``) does against the layers, one line per problem."""
    tree = ast.parse(source)
    own = module.partition(".")[0]
    found = []
    for line, target in imported(tree, module, is_package):
        top = target.partition(".")[0]
        if top not in PACKAGES or top == own or top in ALLOWED[own] or (module, top) in EXTRA_EDGES:
            continue
        found.append(f"{module}:{line} imports {target}")
    found += [f"{module}:{line} loads a module by name" for line in loaded_by_name(tree)]
    return found


def modules() -> Iterator[tuple[str, Path]]:
    for package, parent in PACKAGES.items():
        for path in sorted((parent / package).rglob("*.py")):
            parts = path.relative_to(parent).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


@pytest.mark.parametrize(("module", "source", "why"), [
    ("meterline.clickhouse", "from gateway.main import create_app", "the floor imports a path"),
    ("meterline.local.kafka", "def f():\n    import stream_workers.app\n", "an import inside a function"),
    ("schemas.events", "from meterline.errors import MeterlineError", "the bottom imports the floor"),
    ("gt8004._transport", "import schemas.events", "the SDK imports schemas"),
    ("gt8004._transport", "from billing_sdk import BillingClient", "one SDK package imports the other"),
    ("dashboards.routes", "from gateway.deps import bearer_token", "the query path imports the ingest path"),
    ("stream_workers.sink", "import dashboards.queries", "processing imports query"),
    ("gateway.ingest", "from dashboards import routes", "a gateway module other than read_api"),
    ("gateway.read_api", "from stream_workers import app", "read_api's edge is to dashboards only"),
    ("gateway.bridge.mqtt", "from ...meterline_cli import main", "a relative import that leaves the package"),
    ("gateway.cli", "import importlib\nimportlib.import_module('stream_workers.cli')", "loading by name"),
    ("meterline_cli.main", "__import__('gateway.cli')", "loading by name, even on top"),
])
def test_the_checker_flags_an_import_that_runs_back_up(module: str, source: str, why: str) -> None:
    assert violations(module, source), why


@pytest.mark.parametrize(("module", "source"), [
    ("gateway.read_api", "from dashboards import page, routes"),
    ("gateway.bridge.mqtt", "from .messages import dead_letter"),
    ("meterline_cli.main", "import dashboards.cli\nimport gateway.cli\nimport stream_workers.cli"),
    ("dashboards.queries", "import schemas\nfrom meterline.errors import MeterlineError\nimport httpx"),
    ("gateway.serve", "import importlib.util\nimportlib.util.find_spec('uvloop')"),
])
def test_the_checker_lets_allowed_edges_pass(module: str, source: str) -> None:
    assert violations(module, source) == []


def test_imports_flow_one_way() -> None:
    seen: set[str] = set()
    problems: list[str] = []
    for module, path in modules():
        seen.add(module)
        problems += violations(module, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py")
    assert {"gateway.read_api", "dashboards.routes", "meterline_cli.main", "gt8004", "schemas.events"} <= seen
    assert problems == []
