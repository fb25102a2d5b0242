"""Render the migrations for a ClickHouse cluster: the same ``.sql`` files, sharded and replicated.

A migration is written once, for one server (``ENGINE = MergeTree``, plain table names). For a cluster
named by ``METERLINE_CLICKHOUSE_CLUSTER`` each statement is rewritten (docs/cluster.md):

- ``CREATE TABLE x ... ENGINE = <Kind>MergeTree`` becomes ``x_local ON CLUSTER c`` with
  ``ENGINE = Replicated<Kind>MergeTree('/clickhouse/tables/{shard}/{database}/x_local', '{replica}')``,
  its ``non_replicated_deduplication_window`` the replicated window (plus a window in seconds as long
  as the topics' retention), followed by ``CREATE TABLE x ON CLUSTER c AS x_local ENGINE =
  Distributed(c, db, x_local, cityHash64(<sorting key>))``: readers keep using ``x``.
- A materialized view gets ``ON CLUSTER`` and reads and writes the ``_local`` tables, so it fires
  where the rows are inserted (a view over the ``Distributed`` table would never fire).
- ``ALTER`` on a sharded table runs on ``x_local``; its column changes also on ``x`` (without column
  TTLs, which a ``Distributed`` table cannot hold). ``DROP``, ``TRUNCATE``, ``OPTIMIZE`` likewise.
- Any other object (a plain view, a ``Null`` table) gets ``ON CLUSTER``; ``INSERT`` stays as written
  and goes through the ``Distributed`` tables.

The rewriting works on tokens (strings, quoted names and comments are never touched) and accepts a
closed set of statement shapes: anything else raises ``ClusterRenderError`` instead of being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from meterline.clickhouse import valid_database_name
from meterline.errors import ConfigError

__all__ = ["LOCAL_SUFFIX", "ClusterRenderError", "ClusterRenderer", "local_name", "render_migrations",
           "valid_cluster_name"]

LOCAL_SUFFIX: Final = "_local"
#: deduplication hashes kept this long in Keeper: the retention of the requests and usage topics, the
#: longest a batch can be replayed after its first insert
DEDUP_WINDOW_SECONDS: Final = 7 * 24 * 3600
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<qident>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][A-Za-z0-9_.]*)
  | (?P<punct>.)
""", re.S | re.X)
_MERGE_TREE = re.compile(r"^(?!Replicated)(\w*)MergeTree$")
_COLUMN_COMMANDS: Final = {"ADD", "DROP", "MODIFY", "RENAME", "COMMENT"}
_AFTER_TTL: Final = {"COMMENT", "CODEC", "FIRST", "AFTER", "SETTINGS"}
_CLAUSES_AFTER_ORDER: Final = {"PARTITION", "PRIMARY", "SAMPLE", "TTL", "SETTINGS", "COMMENT"}


class ClusterRenderError(ConfigError):
    """A migration statement the cluster renderer does not know how to shard."""


def valid_cluster_name(name: str) -> str:
    """Return ``name`` if it can name a cluster in the statements (it cannot be bound as a parameter)."""
    if not _CLUSTER_NAME.match(name):
        raise ConfigError(f"invalid ClickHouse cluster name {name!r}: use letters, digits, _ and -")
    return name


def local_name(table: str) -> str:
    """The shard-local twin of a sharded table: where rows are stored and where workers insert."""
    return f"{table}{LOCAL_SUFFIX}"


@dataclass
class _Tok:
    kind: str
    text: str

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def _tokens(sql: str) -> list[_Tok]:
    return [_Tok(m.lastgroup or "punct", m.group()) for m in _TOKEN.finditer(sql)]


def _text(tokens: Iterable[_Tok]) -> str:
    return "".join(t.text for t in tokens).strip()


def _name(tok: _Tok) -> str:
    return tok.text[1:-1] if tok.kind == "qident" else tok.text


@dataclass
class _Statement:
    """A token list with the indexes of its significant (non-space, non-comment) tokens."""

    toks: list[_Tok]
    sig: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.sig = [i for i, t in enumerate(self.toks) if t.kind not in ("ws", "comment")]

    def at(self, n: int) -> _Tok:
        return self.toks[self.sig[n]] if n < len(self.sig) else _Tok("end", "")

    def words(self, n: int, count: int) -> list[str]:
        return [self.at(n + k).up for k in range(count)]

    def depth0(self, start: int = 0) -> Iterable[int]:
        """Significant positions from ``start`` that sit outside any parentheses."""
        depth = 0
        for n in range(start, len(self.sig)):
            text = self.at(n).text
            if text == "(" and self.at(n).kind == "punct":
                depth += 1
            elif text == ")" and self.at(n).kind == "punct":
                depth -= 1
            elif depth == 0:
                yield n

    def find(self, word: str, start: int = 0) -> int | None:
        return next((n for n in self.depth0(start) if self.at(n).up == word), None)

    def close_paren(self, n: int) -> int:
        """Position of the ``)`` closing the ``(`` at ``n``."""
        depth = 0
        for m in range(n, len(self.sig)):
            text = self.at(m).text
            depth += text == "("
            depth -= text == ")"
            if depth == 0:
                return m
        raise ClusterRenderError("unbalanced parentheses")

    def span(self, a: int, b: int) -> str:
        """Text of significant positions ``[a, b)`` with what lies between them."""
        if a >= b:
            return ""
        return _text(self.toks[self.sig[a]:self.sig[b - 1] + 1])

    def replace(self, a: int, b: int, text: str) -> None:
        """Replace significant positions ``[a, b)`` (and what lies between them) with ``text``."""
        lo = self.sig[a]
        hi = self.sig[b - 1] + 1 if b > a else lo
        self.toks[lo:hi] = [_Tok("raw", text)] if text else []
        self.__post_init__()

    def insert_after(self, n: int, text: str) -> None:
        i = self.sig[n] + 1
        self.toks[i:i] = [_Tok("raw", text)]
        self.__post_init__()

    def render(self) -> str:
        return _text(self.toks)


@dataclass
class ClusterRenderer:
    """Renders statements in file order, remembering which tables earlier statements sharded."""

    cluster: str
    database: str
    sharded: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        valid_cluster_name(self.cluster)
        valid_database_name(self.database)

    def render(self, statement: str) -> list[str]:
        """The cluster statements for one migration statement, in the order to run them."""
        st = _Statement(_tokens(statement))
        if any(st.at(n).up == "CLUSTER" and st.at(n - 1).up == "ON" for n in range(1, len(st.sig))):
            raise ClusterRenderError(f"a migration names a cluster itself; write it for one server: {_head(st)}")
        first, second = st.words(0, 2)
        if first == "CREATE" and second == "TABLE":
            return self._create_table(st)
        if first == "CREATE" and st.words(1, 2) == ["MATERIALIZED", "VIEW"]:
            return [self._create_view(st, 3, materialized=True)]
        if first == "CREATE" and second == "VIEW":
            return [self._create_view(st, 2, materialized=False)]
        if first == "ALTER" and second == "TABLE":
            return self._alter(st)
        if first in ("DROP", "TRUNCATE") and second in ("TABLE", "VIEW") or first == "OPTIMIZE" and second == "TABLE":
            return self._by_name(st, drop=first == "DROP")
        if first == "INSERT":
            return [statement.strip()]  # through the Distributed tables, as a client would
        raise ClusterRenderError(f"statement not supported in cluster mode: {_head(st)}")

    # --- statement shapes -------------------------------------------------------------------------
    def _target(self, st: _Statement, n: int) -> tuple[int, str]:
        """Position and name of the object named at ``n`` (after an optional IF [NOT] EXISTS)."""
        if st.at(n).up == "IF":
            n += 3 if st.at(n + 1).up == "NOT" else 2
        tok = st.at(n)
        if tok.kind not in ("word", "qident") or st.at(n + 1).text == ".":
            raise ClusterRenderError(f"expected an unqualified table name: {_head(st)}")
        return n, _name(tok)

    def _on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}"

    def _create_table(self, st: _Statement) -> list[str]:
        n, name = self._target(st, 2)
        if st.find("AS", n + 1) is not None:
            raise ClusterRenderError(f"CREATE TABLE ... AS <table or SELECT> cannot be sharded: {_head(st)}")
        engine_at = st.find("ENGINE", n + 1)
        if engine_at is None:
            raise ClusterRenderError(f"CREATE TABLE without ENGINE: {_head(st)}")
        kind_at = engine_at + 2 if st.at(engine_at + 1).text == "=" else engine_at + 1
        match = _MERGE_TREE.match(st.at(kind_at).text)
        if st.at(kind_at).text.startswith("Replicated"):
            raise ClusterRenderError(f"a migration uses a Replicated engine itself; write it for one server: {name}")
        if match is None:  # Null, Memory, a view's helper: one per server, same name
            st.insert_after(n, self._on_cluster())
            return [st.render()]
        local = local_name(name)
        sharding_key = self._sharding_key(st, kind_at)
        self._swap_settings(st, kind_at)
        args_end = kind_at + 1
        args = ""
        if st.at(kind_at + 1).text == "(":
            args_end = st.close_paren(kind_at + 1) + 1
            args = st.span(kind_at + 2, args_end - 1)
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
        st.replace(kind_at, args_end, f"Replicated{match.group(1)}MergeTree({path}{', ' + args if args else ''})")
        st.replace(n, n + 1, local + self._on_cluster())
        if_not_exists = " IF NOT EXISTS" if st.at(2).up == "IF" else ""
        distributed = (f"CREATE TABLE{if_not_exists} {name}{self._on_cluster()} AS {local} "
                       f"ENGINE = Distributed({self.cluster}, {self.database}, {local}, {sharding_key})")
        self.sharded.add(name)
        return [st.render(), distributed]

    def _sharding_key(self, st: _Statement, after: int) -> str:
        """``cityHash64`` of the sorting key: deterministic, and even over the shards."""
        at = next((n for n in st.depth0(after) if st.words(n, 2) == ["ORDER", "BY"]), None)
        if at is None:
            raise ClusterRenderError(f"a MergeTree table without ORDER BY: {_head(st)}")
        end = next((n for n in st.depth0(at + 2) if st.at(n).up in _CLAUSES_AFTER_ORDER), len(st.sig))
        key = st.span(at + 2, end)
        if key.startswith("(") and st.close_paren(at + 2) == end - 1:
            key = key[1:-1].strip()
        return f"cityHash64({key})" if key and key.lower() != "tuple()" else "rand()"

    def _swap_settings(self, st: _Statement, after: int) -> None:
        """``non_replicated_deduplication_window`` → the replicated window, count and seconds."""
        for n in st.depth0(after):
            if st.at(n).up == "NON_REPLICATED_DEDUPLICATION_WINDOW":
                if st.at(n + 1).text != "=" or st.at(n + 2).kind != "number":
                    raise ClusterRenderError(f"unreadable non_replicated_deduplication_window: {_head(st)}")
                window = st.at(n + 2).text
                st.replace(n, n + 3, f"replicated_deduplication_window = {window}, "
                                     f"replicated_deduplication_window_seconds = {DEDUP_WINDOW_SECONDS}")
                return

    def _create_view(self, st: _Statement, n: int, *, materialized: bool) -> str:
        n, name = self._target(st, n)
        if materialized:
            to_at = st.find("TO", n + 1)
            as_at = st.find("AS", n + 1)
            if to_at is None or as_at is None or to_at > as_at:
                raise ClusterRenderError(f"a materialized view needs TO <table> (its own inner table "
                                         f"cannot be sharded): {name}")
            self._rename_tables(st, to_at + 1)
        st.insert_after(n, self._on_cluster())
        return st.render()

    def _rename_tables(self, st: _Statement, target_at: int) -> None:
        """Point the view at the local tables: its TO target and every FROM/JOIN source."""
        positions = [target_at] + [n + 1 for n in range(target_at, len(st.sig)) if st.at(n).up in ("FROM", "JOIN")]
        for pos in reversed(positions):
            tok = st.at(pos)
            if (tok.kind in ("word", "qident") and _name(tok) in self.sharded
                    and st.at(pos + 1).text not in (".", "(")):
                st.replace(pos, pos + 1, local_name(_name(tok)))

    def _alter(self, st: _Statement) -> list[str]:
        n, name = self._target(st, 2)
        if name not in self.sharded:
            st.insert_after(n, self._on_cluster())
            return [st.render()]
        commands = _split_commas(st, n + 1)
        local = f"ALTER TABLE {local_name(name)}{self._on_cluster()} " + ", ".join(commands)
        column_changes = [c for c in map(_for_distributed, commands) if c]
        rendered = [local]
        if column_changes:
            rendered.append(f"ALTER TABLE {name}{self._on_cluster()} " + ", ".join(column_changes))
        return rendered

    def _by_name(self, st: _Statement, *, drop: bool) -> list[str]:
        n, name = self._target(st, 2)
        if name not in self.sharded:
            st.insert_after(n, self._on_cluster())
            return [st.render()]
        rest = st.span(n + 1, len(st.sig))
        head = st.span(0, n)
        statements = [f"{head} {local_name(name)}{self._on_cluster()}{' ' + rest if rest else ''}"]
        if drop:  # the Distributed table first: nothing reads a dropped local table through it
            statements.insert(0, f"{head} {name}{self._on_cluster()}{' ' + rest if rest else ''}")
            self.sharded.discard(name)
        return statements


def _split_commas(st: _Statement, start: int) -> list[str]:
    """The comma-separated commands from ``start`` (outside parentheses)."""
    cuts = [n for n in st.depth0(start) if st.at(n).text == ","]
    bounds = [start, *[c + 1 for c in cuts]]
    ends = [*cuts, len(st.sig)]
    return [st.span(a, b) for a, b in zip(bounds, ends, strict=True) if a < b]


def _for_distributed(command: str) -> str | None:
    """The part of one ALTER command a Distributed table must follow: column changes, without TTL."""
    st = _Statement(_tokens(command))
    if st.at(0).up not in _COLUMN_COMMANDS or st.at(1).up != "COLUMN":
        return None  # indexes, projections, TTL, settings, mutations: the stored table only
    if any(st.at(n).up == "REMOVE" for n in st.depth0()):
        return None  # MODIFY COLUMN x REMOVE <property>: only TTL/codec-like properties, local only
    ttl = st.find("TTL")
    if ttl is not None:
        end = next((n for n in st.depth0(ttl + 1) if st.at(n).up in _AFTER_TTL), len(st.sig))
        st.replace(ttl, end, "")
    if st.at(0).up == "MODIFY" and len(st.sig) <= 3:
        return None  # MODIFY COLUMN x TTL ...: nothing left for the Distributed table
    return re.sub(r"\s+", " ", st.render())


def _head(st: _Statement) -> str:
    return " ".join(st.at(n).text for n in range(min(6, len(st.sig))))


def render_migrations(statements: Sequence[tuple[int, list[str]]], cluster: str,
                      database: str) -> dict[int, list[str]]:
    """Render ``(version, statements)`` pairs in order: version → the statements to run on the cluster."""
    renderer = ClusterRenderer(cluster, database)
    return {version: [out for statement in stmts for out in renderer.render(statement)]
            for version, stmts in statements}
