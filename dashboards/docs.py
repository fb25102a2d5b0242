"""The API documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, from vendored files.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so without internet ``/docs`` is blank. These
serve the same libraries from ``static/`` (versions and licences in ``static/README.md``) under a
Content-Security-Policy that allows only this origin: both are started by a file (``static/docs-init.js``,
``static/redoc-init.js``), not an inline script, and the ``<style>`` elements ReDoc writes carry a nonce
made for each response. The gateway mounts them whether or not it serves the
read API (``gateway/read_api.py``'s ``mount_docs``). The OpenAPI document declares the bearer scheme,
so Swagger UI's "Authorize" takes an API key or the operator token and "Try it out" sends it.
"""

from __future__ import annotations

import secrets
from html import escape
from typing import Final

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from dashboards.page import STATIC_DIR

__all__ = ["DOCS_FILES", "router"]

#: The vendored files the documentation pages load, with their media types.
DOCS_FILES: Final[dict[str, str]] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "docs-init.js": "text/javascript",
    "redoc.standalone.js": "text/javascript",
    "redoc-init.js": "text/javascript",
}
#: The two <style> elements redoc.standalone.js 2.5.4 writes as it loads, before it knows the nonce (an
#: empty one and its scrollbar's rules), by their SHA-256: the policy allows these texts and no other.
_REDOC_STYLES: Final = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' " \
                       "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
# 'self' only, but: images may be data: URIs (Swagger UI's icons), ReDoc's search runs in a worker it makes
# from a blob: URL of its own bundle, and ReDoc's <style> elements need the response's nonce or a hash above
_CSP: Final = ("default-src 'self'; img-src 'self' data:; worker-src 'self' blob:; style-src 'self'{styles}; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _headers(nonce: str | None = None) -> dict[str, str]:
    return {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": _CSP.format(styles=f" 'nonce-{nonce}' {_REDOC_STYLES}" if nonce else "")}

router = APIRouter(include_in_schema=False)


def _page(title: str, head: str, body: str, nonce: str | None = None) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)}</title>
  {head}
</head>
<body>
  {body}
</body>
</html>
""", headers=_headers(nonce))


@router.get("/docs/static/{name}")
async def docs_file(name: str) -> FileResponse:
    if name not in DOCS_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(STATIC_DIR / name, media_type=DOCS_FILES[name],
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    url = escape(request.app.openapi_url or "/openapi.json")
    return _page(f"{request.app.title} — Swagger UI",
                 '<link rel="stylesheet" href="/docs/static/swagger-ui.css">',
                 f'<div id="swagger-ui" data-openapi-url="{url}"></div>\n'
                 '  <script src="/docs/static/swagger-ui-bundle.js"></script>\n'
                 '  <script src="/docs/static/docs-init.js"></script>')


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    url = escape(request.app.openapi_url or "/openapi.json")
    nonce = secrets.token_urlsafe(18)
    return _page(f"{request.app.title} — ReDoc", "",
                 f'<div id="redoc" data-openapi-url="{url}" data-nonce="{nonce}"></div>\n'
                 '  <script src="/docs/static/redoc.standalone.js"></script>\n'
                 '  <script src="/docs/static/redoc-init.js"></script>', nonce)
