"""The web dashboard: ``/dashboard/{agent_id}`` and the few static files it loads.

The page is a static shell: it holds no data and needs no credentials, so these routes authorise
nobody. Its script reads the token from the URL fragment (``#token=...``; fragments are never sent to
the server, so never logged) or a login form, keeps it in ``sessionStorage`` and calls the read API
(``dashboards/routes.py``) with ``Authorization: Bearer``. Strict headers keep the page from being
framed, cached or leaking its address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from dashboards.routes import AgentId

__all__ = ["STATIC_DIR", "STATIC_FILES", "router"]

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: Files the page may load, with their media types; nothing else under static/ is served.
STATIC_FILES: Final[dict[str, str]] = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/dashboard/static/{name}")
async def static_file(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get("/dashboard/{agent_id}", response_class=HTMLResponse)
async def dashboard_page(agent_id: AgentId) -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "dashboard.html").read_text(), headers=_PAGE_HEADERS)
