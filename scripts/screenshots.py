"""PNGs of the web dashboard at 1400 px, so a reviewer can look at every tab without running the stack.

By default it starts what it needs in this process: a throw-away chDB in a temporary directory with
generated traffic and usage (the generator of the dashboard tests, ``tests/integration/dashboards/
sample.py``), and the gateway app (``gateway.main.create_app``, read API, page, /docs, /redoc) on a free
port with uvicorn. With ``--url`` it photographs a running gateway instead (``--token``: an operator token
or the agent's API key; ``--agent``: whose dashboard). Each tab, the agents list, the login page, one
request's detail, /docs and /redoc are written into the directory given (default: a new temporary one)
and their paths printed. Chromium is driven by ``scripts/chromium.py``. The PNGs are for looking at,
never for committing.

    .venv/bin/python scripts/screenshots.py [DIR] [--url URL --token TOKEN --agent AGENT] [--width 1400]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository's packages are importable from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.chromium import BrowserError, Chromium  # noqa: E402

TABS = ["overview", "analytics", "customers", "tools", "revenue", "observability", "speed", "usage", "limits", "alerts"]
SAMPLE_AGENT = "demo-agent"
SAMPLE_TOKEN = "screenshots-operator-token-0123456789"  # noqa: S105 (the throw-away gateway's only token)
READY = "['ready', 'error', 'login'].includes(document.body.dataset.state) && document.body.dataset.state"
# every chart a person can see has drawn (a page without charts: at once)
CHARTS_DRAWN = ("[...document.querySelectorAll('.chart')].filter((c) => c.offsetParent)"
                ".every((c) => c.dataset.rendered === '1')")


@contextmanager
def sample_gateway(home: Path) -> Iterator[str]:
    """The gateway app on a throw-away chDB with a few weeks of generated traffic and usage; its base URL."""
    import uvicorn

    from gateway.main import create_app
    from gateway.settings import GatewaySettings
    from meterline.clickhouse import get_client
    from meterline.local.ports import free_port
    from meterline.migrations import apply_migrations
    from tests.integration.dashboards import sample

    client = get_client(f"chdb://{home / 'chdb'}?database=meterline")
    apply_migrations(client)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    sample.insert_requests(client, sample.make_requests([SAMPLE_AGENT, "agent-two"], 3000, seed=3, now=now),
                           stored_at=now)
    sample.insert_usage(client, sample.make_usage([SAMPLE_AGENT], 600, seed=5, now=now), stored_at=now)
    app = create_app(GatewaySettings(operator_token=SAMPLE_TOKEN), read_client=client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="screenshots-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn sets the flag and offers nothing to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def shoot(browser: Chromium, url: str, path: Path, ready: str, max_height: int = 12000) -> Path:
    """Open ``url``, wait until ``ready`` (a JavaScript expression) is true and the charts drew, take a PNG."""
    await browser.goto(url)
    await browser.wait_for(ready, timeout=60)
    await browser.wait_for(CHARTS_DRAWN, timeout=30)
    await browser.screenshot(path, max_height=max_height)
    return path


async def take_all(base: str, token: str, agent: str, out: Path, width: int) -> list[Path]:
    page = f"{base}/dashboard/{agent}"
    shots: list[Path] = []
    async with Chromium(width, 900) as browser:
        # first, before any token is in this tab's sessionStorage: the login page
        shots.append(await shoot(browser, page, out / "login.png", "document.body.dataset.state === 'login'"))
        shots.append(await shoot(browser, f"{base}/dashboard/#token={token}", out / "agents.png", READY))
        if await browser.eval("document.body.dataset.state") != "ready":
            raise BrowserError(f"{base} did not take the token: {await browser.text('#login-error')}"
                               f"{await browser.text('#status')}")
        for i, tab in enumerate(TABS, 1):
            shots.append(await shoot(browser, f"{page}?tab={tab}", out / f"tab-{i}-{tab}.png", READY))
        # one request's detail: the newest request's, opened by clicking its row as a person would
        await browser.goto(f"{page}?tab=observability")
        await browser.wait_for(READY, timeout=60)
        await browser.click("#table-logs tbody a.drill")
        await browser.wait_for("!document.getElementById('request-detail').hidden && "
                               "document.getElementById('rd-timings').children.length > 0")
        await browser.eval("window.scrollTo(0, 0)")
        await browser.screenshot(out / "request-detail.png", max_height=browser.height)  # a drawer: one screen
        shots.append(out / "request-detail.png")
        # the documentation pages are long: their first two screens say how they look
        shots.append(await shoot(browser, f"{base}/docs", out / "docs.png",
                                 "!!document.querySelector('.swagger-ui .opblock')", max_height=1800))
        shots.append(await shoot(browser, f"{base}/redoc", out / "redoc.png",
                                 "!!document.querySelector('h1') && document.body.innerText.includes('Agents')",
                                 max_height=1800))
        errors = [m for m in browser.console if m.startswith("exception")]
        if errors:
            print("the page reported:", *errors, sep="\n  ", file=sys.stderr)
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("directory", nargs="?", type=Path, help="where the PNGs go (default: a new temporary one)")
    parser.add_argument("--url", help="a running gateway (default: start one on generated sample data)")
    parser.add_argument("--token", help="with --url: an operator token or the agent's API key")
    parser.add_argument("--agent", default=SAMPLE_AGENT, help=f"whose dashboard (default {SAMPLE_AGENT})")
    parser.add_argument("--width", type=int, default=1400, help="window width in CSS pixels (default 1400)")
    args = parser.parse_args(argv)
    if args.url and not args.token:
        parser.error("--url needs --token")
    out: Path = args.directory or Path(tempfile.mkdtemp(prefix="meterline-screenshots-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.url:
            shots = asyncio.run(take_all(args.url.rstrip("/"), args.token, args.agent, out, args.width))
        else:
            with tempfile.TemporaryDirectory(prefix="meterline-screenshots-chdb-") as home, \
                    sample_gateway(Path(home)) as base:
                shots = asyncio.run(take_all(base, SAMPLE_TOKEN, args.agent, out, args.width))
    except BrowserError as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
