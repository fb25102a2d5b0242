"""A FastAPI agent that reports to Meterline through OpenTelemetry alone: no Meterline SDK.

It is instrumented as any OpenTelemetry user instruments a FastAPI app (``FastAPIInstrumentor``, a
``TracerProvider`` with the OTLP/HTTP span exporter) and records its LLM call and tool call with the GenAI
semantic conventions. Pointing the standard exporter at the gateway is the whole integration: server spans
become Meterline request-log entries and the LLM span's token counts become usage on the ``llm`` meter
(docs/otlp.md has the mapping). Everything is configured by OpenTelemetry's own variables:

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9092          # the gateway; /v1/traces is appended
    export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20$KEY"   # the agent's API key (%20: a space)
    export OTEL_SERVICE_NAME=weather-agent                           # shown nowhere: the agent is the key's
    python examples/otel_agent.py                  # serves on 127.0.0.1:8000; then, in another terminal:
    curl -H 'X-Customer-ID: acme' 'localhost:8000/chat?q=weather+in+Paris'
    python examples/otel_agent.py --requests 5     # or: calls itself 5 times, exports, exits

Packages (in the repository's test extra): opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http,
opentelemetry-instrumentation-fastapi. The spans are exported in batches (every 5 s, and at exit).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import httpx
import uvicorn
from fastapi import FastAPI, Header
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger("otel_agent")

provider = TracerProvider(resource=Resource.create())  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_* variables
tracer = provider.get_tracer("otel_agent")

app = FastAPI(title="OpenTelemetry example agent")


def fake_llm(prompt: str) -> tuple[str, int, int]:
    """Stands for a model call: an answer and its (input, output) token counts."""
    answer = f"It is sunny ({prompt[:40]})."
    return answer, len(prompt.split()) + 12, len(answer.split())


@app.get("/chat")
async def chat(q: str, x_customer_id: str | None = Header(default=None)) -> dict[str, str]:
    if x_customer_id:  # the end customer: Meterline reads enduser.id (METERLINE_GATEWAY_OTLP_CUSTOMER_ATTRIBUTES)
        trace.get_current_span().set_attribute("enduser.id", x_customer_id)
    with tracer.start_as_current_span("execute_tool get_weather") as tool:
        tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"})
    with tracer.start_as_current_span("chat gpt-4o", kind=trace.SpanKind.CLIENT) as llm:
        answer, tokens_in, tokens_out = fake_llm(q)
        llm.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o",
                            "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out})
    return {"answer": answer}


FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])


async def call_self(n: int) -> None:
    """``n`` requests through the instrumented app, in this process (no port needed)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as http:
        for i in range(n):
            resp = await http.get("/chat", params={"q": f"weather in city {i}"},
                                  headers={"X-Customer-ID": f"customer-{i % 2}"})
            resp.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=0, help="call the agent N times, export, exit")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.requests:
            asyncio.run(call_self(args.requests))
            log.info("%d requests served; exporting their spans", args.requests)
        else:
            uvicorn.run(app, host="127.0.0.1", port=args.port)
    finally:
        provider.shutdown()  # exports what is still batched


if __name__ == "__main__":
    main()
