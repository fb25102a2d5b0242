"""The web dashboard: ``/dashboard/{agent_id}``, the agents list at ``/dashboard/``, and their static files.

The page is a static shell: it holds no data and needs no credentials, so these routes authorise
nobody. Its script reads the token from the URL fragment (``#token=...``; fragments are never sent to
the server, so never logged) or a login form, keeps it in ``sessionStorage`` and calls the read API
(``dashboards/routes.py``) with ``Authorization: Bearer``. What the page shows (tab, range, filters)
is in its query string, so a URL can be shared; the token never is. Strict headers keep the page from
being framed, cached or leaking its address. The static files are the page's modules (``core.js``,
``dashboard.js``, one ``tab-*.js`` per tab) and the vendored libraries listed in ``static/README.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from dashboards.routes import AgentId

__all__ = ["STATIC_DIR", "STATIC_FILES", "router"]

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
_MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".LICENSE": "text/plain", ".txt": "text/plain",
                       ".svg": "image/svg+xml"}
#: Files the page may load, with their media types: the scripts, styles and licences in static/ when the
#: process started; nothing else is served (a name is looked up here, never joined to a path first).
STATIC_FILES: Final[dict[str, str]] = {
    path.name: _MEDIA_TYPES[path.suffix] for path in sorted(STATIC_DIR.iterdir()) if path.suffix in _MEDIA_TYPES}
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


def _page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "dashboard.html").read_text(), headers=_PAGE_HEADERS)


@router.get("/dashboard/", response_class=HTMLResponse)
async def agents_page() -> HTMLResponse:
    """The agents the token may read (every one for the operator), each linking to its dashboard."""
    return _page()


@router.get("/dashboard/{agent_id}", response_class=HTMLResponse)
async def dashboard_page(agent_id: AgentId) -> HTMLResponse:
    return _page()
