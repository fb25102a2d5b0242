"""What ad-hoc SQL may contain, decided on the engine's own parse of it (``EXPLAIN AST``), never on its text.

``parse_dump`` rebuilds the tree from the dump's lines strictly: a node at depth d has exactly the
children its ``(children N)`` announces, each at depth d + 1, and there is one root. An identifier or
alias may hold a line break, which the engine prints raw and which splits its node's line in two; such
a split either breaks that structure (refused) or adds nodes under the node that holds the text. It
never removes or moves a real node, so every rule below is one that an added node can only make
stricter.

``check_tree`` then refuses, on every node:
- node kinds outside a list of the parts of a read (``NODES``): writes, ``SET``, ``SYSTEM``, ``KILL``...;
- ``SETTINGS`` (a ``Set`` node): the limits are fixed, the caller does not get to name any setting;
- ``INTO OUTFILE`` (a ``Literal`` child of a statement) and ``FORMAT`` (an identifier child of a union
  other than the ``Native`` the client library appends itself);
- every table function but ``TABLE_FUNCTIONS`` (rows made from the arguments alone: no file, URL,
  server, program, other table or dictionary), and the scalar functions in ``DENIED_FUNCTIONS``
  (``file``, ``dict*``, ``joinGet``...);
- any table or identifier of another database than Meterline's (``system``, ``information_schema``...).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Final

from dashboards.errors import DashboardError


class SqlRefused(DashboardError):
    """Ad-hoc SQL that the sandbox does not run: what it contains, and why not."""


#: Statements ad-hoc SQL may be (the kind of the dump's root).
ROOTS: Final = frozenset({"SelectWithUnionQuery", "Explain", "ShowTables", "DescribeQuery", "ExistsTableQuery",
                          "ShowCreateTableQuery"})
#: Every node kind a read is made of; anything else (InsertQuery, Set, AlterQuery, SystemQuery...) is refused.
NODES: Final = ROOTS | frozenset({
    "SelectIntersectExceptQuery", "SelectQuery", "ExpressionList", "Identifier", "TableIdentifier", "Literal",
    "Function", "Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
    "QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher", "ColumnsTransformerList",
    "ColumnsApplyTransformer", "ColumnsExceptTransformer", "ColumnsReplaceTransformer",
    "ColumnsReplaceTransformer::Replacement", "TablesInSelectQuery", "TablesInSelectQueryElement",
    "TableExpression", "TableJoin", "ArrayJoin", "Subquery", "OrderByElement", "InterpolateElement",
    "WindowDefinition", "WindowListElement", "WithElement", "SampleRatio",
})
#: Table functions ad-hoc SQL may use: each makes rows from its arguments alone (a counter, a series, literal
#: values), so it touches no file, URL, server, program, table or dictionary; and readonly=1 lets each run
#: (it refuses zeros(), for one). Lower case.
TABLE_FUNCTIONS: Final = frozenset({"numbers", "numbers_mt", "generate_series", "generateseries", "values"})
#: Table function names that are also harmless scalar functions (format('{} {}', a, b)), allowed outside FROM.
SCALAR_TWINS: Final = frozenset({"format"})
#: Scalar functions refused, lower case, with why (any name starting with "dict" too: dictionaries' sources
#: are files, URLs and other servers).
DENIED_FUNCTIONS: Final[dict[str, str]] = {
    "file": "reads a file of the host",
    "joinget": "reads a table named by a string", "joingetornull": "reads a table named by a string",
    "hascolumnintable": "looks into other databases and servers",
    "catboostevaluate": "loads a model file of the host", "naivebayesclassifier": "loads a model file of the host",
    "getserversetting": "reads the server's configuration", "getmacro": "reads the server's configuration",
    "filesystemavailable": "reads the host's disks", "filesystemcapacity": "reads the host's disks",
    "filesystemunreserved": "reads the host's disks",
}
#: Table functions of the engine as of chDB 26.9, for a server that does not list its own.
KNOWN_TABLE_FUNCTIONS: Final = frozenset({
    "file", "filecluster", "url", "urlcluster", "s3", "s3cluster", "gcs", "cosn", "oss", "hdfs", "hdfscluster",
    "azureblobstorage", "azureblobstoragecluster", "remote", "remotesecure", "cluster", "clusterallreplicas",
    "mysql", "postgresql", "mongodb", "jdbc", "odbc", "sqlite", "redis", "executable", "input", "merge",
    "dictionary", "view", "viewifpermitted", "viewexplain", "loop", "filesystem", "python", "eval", "iceberg",
    "deltalake", "hudi", "paimon", "ytsaurus", "bigquery", "arrowstream", "format", "null", "generaterandom",
})
_CHILDREN: Final = re.compile(r" \(children (\d+)\)$")
_QUERIES: Final = ROOTS
_OUR_FORMAT: Final = "Native"  # what clickhouse-connect appends to every query it sends


@dataclass
class Node:
    """One node of the dump: its kind, the rest of its line (name, alias), its children."""

    kind: str
    label: str
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The identifier or function name of the line, without an alias."""
        return self.label.split(" (alias ", 1)[0]

    def walk(self) -> list[tuple[Node, Node | None]]:
        """Every node with its parent, root first."""
        out: list[tuple[Node, Node | None]] = [(self, None)]
        index = 0
        while index < len(out):
            node = out[index][0]
            out.extend((child, node) for child in node.children)
            index += 1
        return out


def parse_dump(lines: Sequence[str]) -> Node:
    """The tree of an ``EXPLAIN AST`` dump, checked line by line against the children each node announces."""
    root: Node | None = None
    stack: list[tuple[Node, list[int]]] = []  # (node, [children still to come]) from the root to the open node
    for number, line in enumerate(lines, 1):
        depth = len(stack)
        indent = len(line) - len(line.lstrip(" "))
        if indent != depth or (root is not None and not stack):
            raise SqlRefused(f"the engine's parse of the query has an unexpected line {number} "
                             f"({line.strip()[:60]!r}): identifiers with line breaks are refused")
        text = line[depth:]
        found = _CHILDREN.search(text)
        count = int(found.group(1)) if found else 0
        kind, _, label = (text[:found.start()] if found else text).partition(" ")
        node = Node(kind, label)
        if stack:
            parent, left = stack[-1]
            parent.children.append(node)
            left[0] -= 1
        else:
            root = node
        if count:
            stack.append((node, [count]))
        while stack and stack[-1][1][0] == 0:
            stack.pop()
    if root is None or stack:
        raise SqlRefused("the engine's parse of the query is incomplete")
    return root


def check_tree(root: Node, *, canonical: str, database: str, databases: Collection[str],
               table_functions: Collection[str]) -> None:
    """Raise ``SqlRefused`` unless the statement ``root`` only reads ``database`` (rules: the module's docstring).

    ``canonical`` is the engine's formatting of the statement, ``databases`` every database of the engine,
    ``table_functions`` every table function it has (any case).
    """
    if root.kind not in ROOTS:
        raise SqlRefused(f"{_statement(root.kind)} refused: ad-hoc SQL only reads (SELECT, SHOW TABLES, DESCRIBE, "
                         "EXISTS, SHOW CREATE TABLE, EXPLAIN)")
    if root.kind == "ShowTables" and not canonical.startswith(("SHOW TABLES", "SHOW FULL TABLES")):
        shown = " ".join(canonical.split()[:2])
        raise SqlRefused(f"{shown} refused: of the SHOW statements only SHOW TABLES is allowed")
    foreign = {d for d in databases if d != database} | {"system", "information_schema", "INFORMATION_SCHEMA"}
    foreign_lower = {d.lower() for d in foreign}
    functions = {f.lower() for f in table_functions} | KNOWN_TABLE_FUNCTIONS
    for node, parent in root.walk():
        _check_node(node, parent, database, foreign, foreign_lower, functions)


def _check_node(node: Node, parent: Node | None, database: str, foreign: set[str], foreign_lower: set[str],
                functions: set[str]) -> None:
    if node.kind == "Set":
        raise SqlRefused("SETTINGS refused: ad-hoc SQL runs under fixed limits")
    if node.kind not in NODES:
        raise SqlRefused(f"{_statement(node.kind)} refused: not a part of a read")
    if parent is not None and parent.kind in _QUERIES and parent.children and node is not parent.children[0]:
        if node.kind == "Literal":
            raise SqlRefused("INTO OUTFILE refused: ad-hoc SQL writes no files")
        if parent.kind == "SelectWithUnionQuery" and node.kind == "Identifier" and node.name != _OUR_FORMAT:
            raise SqlRefused(f"FORMAT {node.name} refused: results come back in the caller's format")
    if node.kind == "Function":
        _check_function(node.name, parent, functions)
    if node.kind in ("Identifier", "TableIdentifier"):
        name = node.name
        first = name.split(".", 1)[0]
        if first in foreign or first.lower() in foreign_lower:
            raise SqlRefused(f"database {first} refused: ad-hoc SQL reads only the {database} database")
        if node.kind == "TableIdentifier" and "." in name and first != database:
            raise SqlRefused(f"table {name} refused: ad-hoc SQL reads only the {database} database")


def _check_function(name: str, parent: Node | None, functions: set[str]) -> None:
    lower = name.lower()
    in_from = parent is not None and parent.kind == "TableExpression"
    if in_from and lower not in TABLE_FUNCTIONS:
        raise SqlRefused(f"table function {name} refused: ad-hoc SQL may use only {', '.join(sorted(TABLE_FUNCTIONS))}")
    if lower in DENIED_FUNCTIONS:
        raise SqlRefused(f"function {name} refused: it {DENIED_FUNCTIONS[lower]}")
    if lower.startswith("dict"):
        raise SqlRefused(f"function {name} refused: dictionaries read files, URLs and other servers")
    if not in_from and lower in functions and lower not in TABLE_FUNCTIONS | SCALAR_TWINS:
        raise SqlRefused(f"function {name} refused: it is a table function that reaches outside Meterline's data")


def _statement(kind: str) -> str:
    """A node kind as a person names it: InsertQuery -> 'INSERT', anything unknown as it is."""
    bare = kind.removesuffix("Query")
    return bare.upper() if bare.isalpha() else repr(kind)


__all__ = ["DENIED_FUNCTIONS", "NODES", "ROOTS", "TABLE_FUNCTIONS", "Node", "SqlRefused", "check_tree", "parse_dump"]
