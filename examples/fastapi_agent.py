"""A FastAPI agent whose every request is logged to Meterline by the gt8004 middleware.

Configured only from the environment, as the SDK documents (sdk/README.md, "gt8004"):
``GT8004_AGENT_ID``, ``GT8004_API_KEY`` and ``GT8004_INGEST_URL`` (the ingest URL ``meterline up``
prints). Run it with uvicorn and call it (examples/README.md has the whole walk-through):

    uvicorn --app-dir examples fastapi_agent:app --port 8000
    curl -X POST localhost:8000/tools/summarize -H 'X-Customer-ID: acme' -H 'Content-Type: application/json' \
         -d '{"text": "Meterline counts every request once."}'

What the middleware records for each call: method, path, status, latency, bodies, the customer (the
caller's ``X-Customer-ID`` header, else the ``sub`` of its bearer JWT), the tool (the caller's
``X-Tool-Name`` header, else the route's name, here ``summarize``) and x402 payments (here the
``X-402-Amount`` the paid route sets on its answer). Credentials in request headers are never recorded.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from gt8004 import GT8004Logger
from gt8004.middleware.fastapi import GT8004Middleware
from pydantic import BaseModel

log = logging.getLogger(__name__)

# Reads GT8004_AGENT_ID / GT8004_API_KEY / GT8004_INGEST_URL. Without an id or key it warns once and
# logs nothing: the agent keeps serving either way.
logger = GT8004Logger(batch_size=50, flush_interval=2.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if await logger.verify_connection():  # one sdk_ping entry: the dashboard shows the agent as connected
        log.info("gt8004: connected to %s as agent %s", logger.ingest_url, logger.agent_id)
    else:
        log.warning("gt8004: %s did not accept our key; requests are queued until it does", logger.ingest_url)
    yield
    await logger.close()  # sends what is still queued (up to 5 s) before the process exits


app = FastAPI(title="example agent", lifespan=lifespan)
app.add_middleware(GT8004Middleware, logger=logger)


class Document(BaseModel):
    text: str


class Summary(BaseModel):
    summary: str
    words: int


@app.get("/")
async def index() -> dict[str, object]:
    return {"agent": logger.agent_id, "tools": ["summarize", "translate"]}


@app.post("/tools/summarize", name="summarize")
async def summarize(doc: Document) -> Summary:
    """Free tool. The customer is whoever the caller says it is (``X-Customer-ID``)."""
    words = doc.text.split()
    return Summary(summary=" ".join(words[:8]), words=len(words))


@app.post("/tools/translate", name="translate")
async def translate(doc: Document, response: Response) -> dict[str, str]:
    """Paid tool: the app reports what it charged (USDC) in ``X-402-Amount``; the middleware records it."""
    response.headers["X-402-Amount"] = "0.01"
    return {"translation": doc.text[::-1]}
