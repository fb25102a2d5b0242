"""Every command in README.md, run as written against one `meterline up`, and what it prints checked.

The commands are the lines of the README's ```bash blocks. `make up` and `make test` are the set-up:
`make up` is what the stack of this module stands for, started with `meterline up` as `make up` starts
it, the way a user has it: no METERLINE_HOME (the default home under a fresh $HOME) and no operator
token in the environment. Each command runs in bash, in the repository, with the environment of a
user's second terminal: PATH with .venv/bin first, HOME, and, the one departure, the ports the stack was
given (free ones, so that the test can run beside others). The README's placeholders are the only
edits: `<key>` is the API key the banner printed, `<prefix>` the prefix `meterline keys list` shows for
the key that `meterline keys create --agent my-agent` made. A README command without a check below fails
the test, so none goes untried; the numbers printed are compared with the read API's JSON.
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stackproc import BANNER_END, StackHome, StackProcess, kill_quietly
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SET_UP = ("make up", "make test")
AGENT = "demo-agent"
SHELL_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def readme_commands(text: str) -> list[str]:
    """The command lines of the README's bash blocks, set-up excepted, in order (comments stay: bash skips them)."""
    lines = [line.strip() for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and line.split("#")[0].strip() not in SET_UP]


@dataclass
class Ran:
    command: str
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"$ {self.command}\n(exit {self.code})\n{self.out}\n--- stderr ---\n{self.err}"


@dataclass
class Session:
    """The stack, the user's second terminal, and what earlier commands printed."""

    home: StackHome
    stack: StackProcess
    values: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    demo_requests: int = 0  # requests the demo's agent logged (402 answers included)
    demo_reports: int = 0  # usage reports the broker acknowledged to the demo

    @property
    def env(self) -> dict[str, str]:
        ports = {f"METERLINE_{name}": str(self.home.ports[key]) for name, key in (
            ("KAFKA_PORT", "kafka"), ("KAFKA_CONTROLLER_PORT", "ctrl"), ("MQTT_PORT", "mqtt"),
            ("MQTT_TLS_PORT", "mqtts"), ("GATEWAY_PORT", "gateway"))}
        return {"PATH": SHELL_PATH, "HOME": str(self.home.user), "LANG": "C.UTF-8", "TERM": "dumb", **ports}

    def run(self, command: str, timeout: float = 120) -> Ran:
        """``command`` in bash, its placeholders filled in (each must be known by now)."""
        line = command
        for name in re.findall(r"<([a-z]+)>", command):
            assert name in self.values, f"the README uses <{name}> before a command that shows it: {command}"
            line = line.replace(f"<{name}>", self.values[name])
        done = subprocess.run(["bash", "-c", line], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Ran(command, done.returncode, done.stdout, done.stderr)

    @property
    def operator_token(self) -> str:
        return (self.home.path / "operator-token").read_text().strip()

    def api(self, path: str, token: str | None = None) -> Any:
        resp = httpx.get(f"{self.home.gateway}{path}", timeout=30,
                         headers={"Authorization": f"Bearer {token or self.operator_token}"})
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def sql(self, query: str, **params: str) -> list[list[Any]]:
        resp = httpx.post(f"{self.home.gateway}/v1/sql", json={"query": query, "params": params}, timeout=30,
                          headers={"Authorization": f"Bearer {self.operator_token}"})
        assert resp.status_code == 200, resp.text
        rows: list[list[Any]] = resp.json()["rows"]
        return rows


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    home = StackHome(user_home=True)
    stack = home.launch()
    try:
        yield Session(home, stack, {"key": home.api_key or ""})
    finally:
        if stack.proc.poll() is None:
            try:
                stack.stop(signal.SIGINT, 30)
            except Exception:  # noqa: BLE001 - cleaning up whatever state a failed test left
                stack.kill()
        for pid in home.child_pids().values():
            kill_quietly(pid)
        home.remove()


# --- the checks, one per README command ------------------------------------------------------------


def _clean(ran: Ran) -> None:
    """Exit 0, and nothing on stderr a user would read as trouble (no engine error before a fallback)."""
    assert ran.code == 0, ran
    for bad in ("Traceback", "ERROR", "Code: ", "\x1b", "\r"):
        assert bad not in ran.out + ran.err, f"{bad!r} in:\n{ran}"


def check_demo(s: Session, ran: Ran) -> None:
    _clean(ran)
    assert " INFO " not in ran.out + ran.err, f"SDK log lines in the demo's output:\n{ran}"
    summary = re.search(r"(\d+) ok, (\d+) errors, (\d+) payment required \((\d+) paid with x402\); usage reports: "
                        r"(\d+) acknowledged by the broker, (\d+) not sent", ran.out)
    assert summary, ran
    ok, errors, required, paid, reports, unsent = map(int, summary.groups())
    assert ok + errors == 400 and required == paid > 0 and reports > 0 and unsent == 0, ran
    assert re.search(rf"API key    ml_sk_[0-9a-f]{{64}}   \(new; kept in {re.escape(str(s.home.path))}/demo/", ran.out)
    s.demo_requests, s.demo_reports = ok + errors + required, reports
    # what a user sees next depends on the worker having stored it: wait for that, not for a time
    wait_until(lambda: s.api(f"/v1/agents/{AGENT}/stats")["total_requests"] == s.demo_requests, 60,
               "the demo's requests in the read API", interval=0.5)
    wait_until(lambda: s.sql("SELECT count() FROM usage_events WHERE app_id = {app:String}", app=AGENT)[0][0]
               == reports, 60, "the demo's usage reports in ClickHouse", interval=0.5)


def _dashboard_numbers(s: Session, ran: Ran, window: str, token: str | None = None) -> None:
    """The terminal shows the read API's numbers, formatted as the web page formats them."""
    _clean(ran)
    assert ran.err == "", ran
    stats = s.api(f"/v1/agents/{AGENT}/stats", token)
    perf = s.api(f"/v1/agents/{AGENT}/performance?window={window}", token)["current"]
    out = ran.out
    assert f"Agent {AGENT}" in out
    assert f"total {stats['total_requests']:,}" in out and stats["total_requests"] == s.demo_requests
    assert f"{stats['revenue']:,.4f} USDC from {stats['paid_requests']:,} paid requests" in out
    assert f"402 Payment Required {stats['payment_required']:,}" in out
    assert f"error rate {stats['error_rate'] * 100:.2f}%" in out
    assert f"Speed insights, last {window}" in out
    parts = (perf["successes"], perf["errors"], perf["payment_required"])
    assert sum(parts) == perf["requests"]  # the 402s are neither ok nor errors, and are shown
    assert (f"{perf['requests']:,} requests = {parts[0]:,} ok + {parts[1]:,} errors + "
            f"{parts[2]:,} payment required (402)") in out
    assert "(no traffic in the" in out  # a fresh stack has nothing in the window before
    for customer in s.api(f"/v1/agents/{AGENT}/customers?limit=5", token)["customers"][:1]:
        assert f"{customer['error_rate'] * 100:.2f}%" in out.split("Top customers")[1]
    assert not re.search(r"\d\.\d{5,}", out), f"an unformatted float:\n{out}"  # money has 4 decimals, the rest fewer


def check_dashboard_operator(s: Session, ran: Ran) -> None:
    _dashboard_numbers(s, ran, "24h")


def check_dashboard_agent_key(s: Session, ran: Ran) -> None:
    _dashboard_numbers(s, ran, "1h", token=s.values["key"])


def check_sql(s: Session, ran: Ran) -> None:
    _clean(ran)
    assert ran.err == "", ran
    want = s.sql("SELECT count() FROM request_logs")[0][0]
    assert want >= s.demo_requests > 0
    assert ran.out.splitlines() == ["count()", "-------", f"{want:>7}", "(1 row)"], ran


def check_export(s: Session, ran: Ran) -> None:
    _clean(ran)
    lines = ran.out.splitlines()
    assert len(lines) >= 2, ran
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    app_column = next(c for c in header if c in ("app_id", "app"))
    assert {r[app_column] for r in rows} == {AGENT}, ran


def check_keys_create(s: Session, ran: Ran) -> None:
    _clean(ran)
    assert re.search(r"^agent   my-agent$", ran.out, re.M), ran
    key = re.search(r"^key     (ml_sk_[0-9a-f]{64})$", ran.out, re.M)
    assert key, ran
    s.values["my-agent key"] = key.group(1)


def check_keys_list(s: Session, ran: Ran) -> None:
    _clean(ran)
    rows = [line.split() for line in ran.out.splitlines()[1:]]
    mine = [r for r in rows if r[2] == "my-agent"]
    assert len(mine) == 1 and mine[0][3] == "active", ran
    assert s.values["my-agent key"] not in ran.out and s.values["key"] not in ran.out  # never the keys
    assert sorted(r[2] for r in rows) == [AGENT, AGENT, "my-agent"], ran  # the banner's, the demo's, mine
    s.values["prefix"] = mine[0][0]


def check_keys_revoke(s: Session, ran: Ran) -> None:
    _clean(ran)
    assert re.search(rf"^revoked {re.escape(s.values['prefix'])} [0-9a-f]{{64}} \(agent my-agent\)$", ran.out), ran

    def refused() -> bool:
        return httpx.get(f"{s.home.gateway}/v1/agents/my-agent/stats", timeout=30,
                         headers={"Authorization": f"Bearer {s.values['my-agent key']}"}).status_code == 403

    wait_until(refused, 30, "the gateway to refuse the revoked key", interval=0.2)


CHECKS: list[tuple[str, Callable[[Session, Ran], None]]] = [
    (r"meterline demo(\s+#.*)?", check_demo),
    (r"meterline dashboard --agent demo-agent(\s+#.*)?", check_dashboard_operator),
    (r"METERLINE_TOKEN=<key> meterline dashboard --agent demo-agent --window 1h(\s+#.*)?", check_dashboard_agent_key),
    (r'meterline sql "SELECT count\(\) FROM request_logs"(\s+#.*)?', check_sql),
    (r"meterline export usage --app demo-agent(\s+#.*)?", check_export),
    (r"meterline keys create --agent my-agent(\s+#.*)?", check_keys_create),
    (r"meterline keys list(\s+#.*)?", check_keys_list),
    (r"meterline keys revoke <prefix>(\s+#.*)?", check_keys_revoke),
]


def _check_for(command: str) -> Callable[[Session, Ran], None]:
    found = [check for pattern, check in CHECKS if re.fullmatch(pattern, command)]
    assert len(found) == 1, f"README command without a check in {__name__}: {command!r}"
    return found[0]


# --- the tests -----------------------------------------------------------------------------------


def test_the_readme_has_commands_and_each_has_a_check() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= len(CHECKS)
    for command in commands:
        _check_for(command)
    # the extraction and the matching can fail: set-up and prose are left out, an unchecked command is caught
    sample = "text\n```bash\nmake up\n# a comment\nmeterline demo   # says hi\n```\n```\nnot a command\n```\n"
    assert readme_commands(sample) == ["meterline demo   # says hi"]
    with pytest.raises(AssertionError, match="README command without a check"):
        _check_for("meterline sql \"DROP TABLE request_logs\"")


@pytest.mark.timeout(300)
def test_a_first_start_is_clean_and_keeps_its_operator_token_to_itself(session: Session) -> None:
    text = session.stack.output()
    assert text.rstrip().endswith(BANNER_END)
    for bad in ("ERROR", "Traceback", "\x1b", "\x08"):
        assert bad not in text, f"{bad!r} in the output of a first start:\n{text}"
    token_file = session.home.path / "operator-token"
    assert f"operator    token in {token_file}" in text
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert session.operator_token not in text
    # the banner's own suggestion works as printed, before any traffic (zeros, not an error)
    suggested = re.search(r"^  terminal    (METERLINE_TOKEN=\S+ meterline dashboard --agent demo-agent)$", text, re.M)
    assert suggested, text
    ran = session.run(suggested.group(1))
    _clean(ran)
    assert "Requests  total 0" in ran.out and ran.err == "", ran


@pytest.mark.timeout(600)
def test_every_readme_command_works_as_written(session: Session) -> None:
    for command in readme_commands(README.read_text(encoding="utf-8")):
        _check_for(command)(session, session.run(command))
    for bad in ("ERROR", "Traceback"):  # nor did any of them make the stack complain
        assert bad not in session.stack.output(), session.stack.output()[-4000:]


@pytest.mark.timeout(300)
def test_wrong_input_gets_a_sentence_that_says_what_is_wrong(session: Session) -> None:
    typo = session.run("meterline dashboard --agent demo-agnet")
    assert typo.code == 2 and typo.out == "", typo
    assert typo.err == "meterline: error: no such agent 'demo-agnet' (did you mean 'demo-agent'?)\n", typo
    foreign = session.run("METERLINE_TOKEN=<key> meterline dashboard --agent demo-agnet")
    assert foreign.code == 2 and "this key belongs to agent 'demo-agent', not 'demo-agnet'" in foreign.err, foreign
    window = session.run("meterline dashboard --agent demo-agent --window 2h")
    assert window.code == 2 and "invalid choice: '2h' (choose from '1h', '6h', '24h', '7d', '30d')" in window.err
    # an agent exists from its first key: my-agent (its key made and revoked by the README) has zeros, not "no such"
    fresh = session.run("meterline dashboard --agent my-agent")
    _clean(fresh)
    assert "Requests  total 0   today 0" in fresh.out and fresh.err == "", fresh
    # SQL is the operator's: an agent's key left in METERLINE_TOKEN does not get in the way
    sql = session.run('METERLINE_TOKEN=<key> meterline sql "SELECT 1 AS one"')
    _clean(sql)
    assert sql.out.splitlines()[2].strip() == "1", sql


@pytest.mark.timeout(300)
def test_the_demo_reuses_its_key(session: Session) -> None:
    keys_before = session.run("meterline keys list").out.count(AGENT)
    ran = session.run("meterline demo --requests 20")
    _clean(ran)
    key_file = session.home.path / "demo" / f"{AGENT}.key"
    assert f"API key    the one in {key_file}" in ran.out and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in ran.out
    assert session.run("meterline keys list").out.count(AGENT) == keys_before


@pytest.mark.timeout(300)
def test_with_the_stack_stopped_sql_reads_the_engine_itself(session: Session) -> None:
    want = session.sql("SELECT count() FROM request_logs")[0][0]
    code, _ = session.stack.stop(signal.SIGINT, 30)
    assert code == 0
    ran = session.run('meterline sql "SELECT count() FROM request_logs"')
    _clean(ran)
    assert ran.out.splitlines()[2].strip() == str(want) and ran.err == "", ran
