"""The judgement on the engine's parse (``dashboards/sql/tree.py``), on ``EXPLAIN AST`` dumps as chDB 26.9
prints them, and the words of a query stopped at a limit (``dashboards/sql/limits.py``)."""

from __future__ import annotations

import pytest

from dashboards.sql.limits import SqlSettings, human, limit_hit
from dashboards.sql.tree import SqlRefused, check_tree, parse_dump

DB = "meterline"
DATABASES = ["meterline", "system", "default", "t_other"]
FUNCTIONS = ["file", "url", "numbers", "remote", "format", "zeros"]


def dump(text: str) -> list[str]:
    return [line for line in text.strip("\n").split("\n")]


def judge(text: str, canonical: str = "SELECT") -> None:
    check_tree(parse_dump(dump(text)), canonical=canonical, database=DB, databases=DATABASES,
               table_functions=FUNCTIONS)


SELECT_FROM = """\
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {table}
 Identifier Native
"""


def test_a_plain_read_of_our_table_passes() -> None:
    judge(SELECT_FROM.format(table="TableIdentifier request_logs"))
    judge(SELECT_FROM.format(table="TableIdentifier meterline.request_logs (alias r)"))
    judge(SELECT_FROM.format(table="Function numbers (children 1)\n       ExpressionList (children 1)\n"
                                   "        Literal UInt64_10"))


@pytest.mark.parametrize(("table", "reason"), [
    ("Function file (children 1)\n       ExpressionList (children 1)\n        Literal '/etc/passwd'",
     "table function file refused"),
    ("Function URL (children 1)\n       ExpressionList (children 1)\n        Literal 'http://x'",
     "table function URL refused"),
    ("Function zeros (children 1)\n       ExpressionList (children 1)\n        Literal UInt64_1",
     "table function zeros refused"),
    ("Function somethingNew", "table function somethingNew refused"),
    ("TableIdentifier system.users", "database system refused"),
    ("TableIdentifier INFORMATION_SCHEMA.TABLES", "database INFORMATION_SCHEMA refused"),
    ("TableIdentifier t_other.request_logs", "database t_other refused"),
    ("TableIdentifier elsewhere.request_logs", "table elsewhere.request_logs refused"),
])
def test_what_from_may_name(table: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        judge(SELECT_FROM.format(table=table))


SCALAR = """\
SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function {name} (children 1)
     ExpressionList (children 1)
      {arg}
 Identifier Native
"""


@pytest.mark.parametrize(("name", "arg", "reason"), [
    ("file", "Literal '/etc/passwd'", "function file refused: it reads a file of the host"),
    ("FILE", "Literal '/etc/passwd'", "function FILE refused"),
    ("dictGetString", "Literal 'd'", "dictionaries"),
    ("joinGet", "Identifier system.one", "reads a table named by a string"),
    ("url", "Literal 'x'", "it is a table function"),
    ("plus", "Identifier system.one.dummy", "database system refused"),
])
def test_refused_scalar_functions(name: str, arg: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        judge(SCALAR.format(name=name, arg=arg))


def test_harmless_scalar_twin_of_a_table_function_passes() -> None:
    judge(SCALAR.format(name="format", arg="Literal '{}'"))


def test_outfile_format_and_settings_are_refused() -> None:
    body = (" ExpressionList (children 1)\n  SelectQuery (children 1)\n   ExpressionList (children 1)\n"
            "    Literal UInt64_1\n")
    with pytest.raises(SqlRefused, match="INTO OUTFILE refused"):
        judge("SelectWithUnionQuery (children 3)\n" + body + " Literal '/tmp/x'\n Identifier Native")
    with pytest.raises(SqlRefused, match="FORMAT JSON refused"):
        judge("SelectWithUnionQuery (children 2)\n" + body + " Identifier JSON")
    with pytest.raises(SqlRefused, match="SETTINGS refused"):
        judge("SelectWithUnionQuery (children 2)\n" + body.replace("(children 1)\n   Exp", "(children 2)\n   Exp")
              + "   Set\n Identifier Native")
    with pytest.raises(SqlRefused, match="INTO OUTFILE refused"):  # EXPLAIN and DESCRIBE have outputs too
        judge("DescribeQuery (children 3)\n TableExpression (children 1)\n  TableIdentifier t\n Literal '/tmp/x'\n"
              " Identifier Native")


def test_only_reading_statements() -> None:
    for kind in ["InsertQuery", "Set", "SystemQuery", "AlterQuery (children 1)\n Identifier t", "KillQueryQuery"]:
        with pytest.raises(SqlRefused, match="refused"):
            judge(kind)
    with pytest.raises(SqlRefused, match="SHOW DATABASES refused"):
        judge("ShowTables (children 1)\n Identifier Native", canonical="SHOW DATABASES")
    judge("ShowTables (children 1)\n Identifier Native", canonical="SHOW TABLES")
    with pytest.raises(SqlRefused, match="database system refused"):
        judge("ShowTables (children 2)\n Identifier system\n Identifier Native", canonical="SHOW TABLES FROM system")


def test_a_line_break_in_an_identifier_is_refused() -> None:
    # SELECT 1 AS `a<newline> Function foo`: the alias splits its line; the rest is no node the structure expects
    split = ("SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n"
             "   ExpressionList (children 1)\n    Literal UInt64_1 (alias a\n Function foo)\n Identifier Native")
    with pytest.raises(SqlRefused, match="line breaks"):
        judge(split)


def test_a_forged_subtree_cannot_hide_a_real_node() -> None:
    # An alias "a (children 1)<newline>     Literal 'x'" makes a consistent tree, but only by adding a node under
    # the aliased one: the real table function after it keeps its place and is refused.
    forged = ("SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
              "   ExpressionList (children 1)\n    Literal UInt64_1 (alias a (children 1)\n     Literal 'x')\n"
              "   TablesInSelectQuery (children 1)\n    TablesInSelectQueryElement (children 1)\n"
              "     TableExpression (children 1)\n      Function file (children 1)\n"
              "       ExpressionList (children 1)\n        Literal '/etc/passwd'\n Identifier Native")
    with pytest.raises(SqlRefused, match="table function file refused"):
        judge(forged)


@pytest.mark.parametrize("broken", [
    "",  # nothing
    "SelectWithUnionQuery (children 2)\n ExpressionList",  # a child missing
    "SelectQuery\nSelectQuery",  # two roots
    "SelectWithUnionQuery (children 1)\n  ExpressionList",  # a child two levels down
])
def test_a_dump_that_does_not_add_up_is_refused(broken: str) -> None:
    with pytest.raises(SqlRefused):
        parse_dump(broken.split("\n") if broken else [])


class EngineError(Exception):
    """What the client library raises, as far as the limit messages need: a message and maybe a code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def test_limit_messages_name_the_limit_and_its_value() -> None:
    limits = {k: int(v) for k, v in SqlSettings().session().items() if v.isdigit()}
    cases = [
        (EngineError("Code: 241. DB::Exception: Query memory limit exceeded: would use 768.00 MiB"),
         "query stopped: max_memory_usage (512 MiB) exceeded"),
        (EngineError("Timeout exceeded: elapsed 31 seconds, maximum: 30", code=159),
         "query stopped: max_execution_time (30 s) exceeded"),
        (EngineError("Code: 158. DB::Exception: Limit for rows (controlled by 'max_rows_to_read' setting) exceeded"),
         "query stopped: max_rows_to_read (500,000,000 rows) exceeded"),
        (EngineError("Code: 396. DB::Exception: Limit for result exceeded, max rows: 1.00 million"),
         "query stopped: max_result_rows (1,000,000 rows) exceeded"),
        (EngineError("Code: 307. DB::Exception: Limit for (uncompressed) bytes to read exceeded"),
         "query stopped: max_bytes_to_read (32 GiB) exceeded"),
    ]
    for exc, words in cases:
        assert limit_hit(exc, limits) == words
    assert limit_hit(EngineError("Code: 62. DB::Exception: Syntax error"), limits) is None
    assert human("max_result_bytes", 256 * 1024 * 1024) == "256 MiB"


def test_session_sets_readonly_last() -> None:
    names = list(SqlSettings().session())
    assert names[-1] == "readonly" and SqlSettings().session()["readonly"] == "1"
