"""Headless Chromium driven over the DevTools protocol: open a page, click, type, read text, take screenshots.

The web dashboard's browser test (``tests/integration/dashboards/test_page_explore.py``) and the
screenshot script (``scripts/screenshots.py``) both drive a real Chromium through this one class. It
starts Debian's ``chromium`` with a throw-away profile and ``--remote-debugging-port=0``, reads the
port Chromium chose from the profile's ``DevToolsActivePort`` file, and talks to the first page target
over aiohttp's websocket client. ``offline=True`` resolves every host name but 127.0.0.1 and
localhost to nothing, so a page that needs the internet shows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["BrowserError", "Chromium", "chromium_path"]


class BrowserError(Exception):
    """Chromium did not start, a DevTools call failed, or a page did not reach the state waited for."""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise BrowserError("Debian's chromium package is required: apt-get install -y chromium")
    return path


class Chromium:
    """One headless Chromium with one page: ``async with Chromium() as browser: await browser.goto(url)``."""

    def __init__(self, width: int = 1400, height: int = 900, *, offline: bool = False) -> None:
        self.width, self.height, self.offline = width, height, offline
        self.requests: list[str] = []  # every URL the page asked for
        self.console: list[str] = []  # console messages, uncaught exceptions and browser log entries
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()

    async def __aenter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="meterline-chromium-")
        args = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
                "--remote-debugging-port=0", "about:blank"]
        if self.offline:
            args.append("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost")
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 (our argv)
        try:
            port = await self._port()
            self._http = aiohttp.ClientSession()
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            self._reader = asyncio.create_task(self._read())
            for domain in ("Page", "Runtime", "Network", "Log"):
                await self.send(f"{domain}.enable")
            await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                            deviceScaleFactor=1, mobile=False)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if getattr(self, "_reader", None):
            self._reader.cancel()
        if getattr(self, "_ws", None):
            await self._ws.close()
        if getattr(self, "_http", None):
            await self._http.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _port(self) -> int:
        """The DevTools port, from the file Chromium writes into its profile once it listens."""
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self._proc.returncode}")
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                return int(marker.read_text().split()[0])
            await asyncio.sleep(0.05)  # polling a file Chromium writes; nothing can tell us sooner
        raise BrowserError("chromium did not open its DevTools port within 30 s")

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif data.get("method") == "Page.loadEventFired":
                self._loaded.set()
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif data.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in data["params"]["args"]))
            elif data.get("method") == "Log.entryAdded":  # e.g. a Content-Security-Policy refusal
                entry = data["params"]["entry"]
                self.console.append(f"log {entry['level']}: {entry['text']}")
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console.append("exception: " + details.get("exception", {}).get("description", details["text"]))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools call; its result."""
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 60)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def goto(self, url: str) -> None:
        """Open ``url`` and wait for its load event (a URL that differs only in its fragment is loaded anew)."""
        if url != "about:blank" and str(await self.eval("location.href")).split("#")[0] == url.split("#")[0]:
            await self.goto("about:blank")  # else Chromium only moves to the fragment, and runs nothing again
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), 60)

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.eval(expression)
            except BrowserError as exc:  # e.g. a page between two documents, without a body yet
                value, error = None, exc
            else:
                error = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression} ({error}); console: {self.console[-5:]}")
            await asyncio.sleep(0.05)  # the page gives no event for an arbitrary condition; we poll

    async def text(self, selector: str) -> str:
        """The text a person sees in the first element matching ``selector`` (its innerText)."""
        value = await self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText")
        if value is None:
            raise BrowserError(f"no element {selector}")
        return str(value)

    async def click(self, selector: str) -> None:
        """Click the first element matching ``selector`` (as a person would: it must be visible)."""
        found = await self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el || !el.offsetParent) return false;
            el.scrollIntoView({{block: "center"}}); el.click(); return true; }})()""")
        if not found:
            raise BrowserError(f"no visible element {selector} to click")

    async def type(self, selector: str, text: str) -> None:
        """Type ``text`` into the field ``selector`` as a person would: focus it, select what it holds, type over
        it (one ``input`` event, as from a keyboard's text input); Enter or leaving the field is up to the caller."""
        focused = await self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el || !el.offsetParent) return false;
            el.scrollIntoView({{block: "center"}}); el.focus(); if (el.select) el.select(); return true; }})()""")
        if not focused:
            raise BrowserError(f"no visible field {selector} to type into")
        await self.send("Input.insertText", text=text)

    async def press(self, key: str) -> None:
        """Press and release one key (``Enter``, ``Escape`` or ``Tab``) in the focused element."""
        codes = {"Enter": (13, "\r"), "Escape": (27, ""), "Tab": (9, "")}
        code, text = codes[key]
        common = {"key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        await self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        await self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    async def choose(self, selector: str, value: str) -> None:
        """Set a ``<select>`` or a date/time field to ``value`` as the browser's picker does: the value, then the
        ``input`` and ``change`` events (a picker's choice cannot be typed key by key)."""
        done = await self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el || !el.offsetParent) return false;
            el.value = {json.dumps(value)};
            if (el.value !== {json.dumps(value)}) return false;
            el.dispatchEvent(new Event("input", {{bubbles: true}}));
            el.dispatchEvent(new Event("change", {{bubbles: true}})); return true; }})()""")
        if not done:
            raise BrowserError(f"no visible field {selector} that takes {value!r}")

    async def screenshot(self, path: Path, *, max_height: int = 12000) -> None:
        """A PNG of the whole page (beyond the window's height, up to ``max_height``) at the window's width."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(max(self.height, int(size["height"])), max_height)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
