"""An LLM service that bills its callers through Meterline: billing_sdk over MQTT with TLS.

A gRPC-style service method, guarded by ``@require_api_key``, answers a prompt and reports the tokens
it used for the caller's API key. The broker comes from the environment variables the SDK documents
(sdk/README.md, "billing_sdk"), which override the constructor's ``"localhost", 8883``:
``BILLING_MQTT_HOST``, ``BILLING_MQTT_PORT``, ``BILLING_MQTT_USERNAME``, ``BILLING_MQTT_PASSWORD`` and
``BILLING_MQTT_CA_FILE`` (the CA ``meterline up`` prints). examples/README.md has the walk-through:

    python examples/billing_reporter.py --api-key <the caller's key> "How are usage reports counted?"

The usage then appears under the key's agent: ``GET /v1/agents/<agent>/statement`` (the month's statement,
per end customer: ``--customer`` sets the report's ``metadata.customer_id``; docs/billing.md) and the dashboard.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from billing_sdk import BillingClient, BillingError, report_usage, require_api_key

MODEL = "gpt-4o"


class Call:
    """What a gRPC framework hands a handler, reduced to the caller's metadata (grpclib's ``stream``)."""

    def __init__(self, api_key: str) -> None:
        self.metadata = {"api-key": api_key}


def fake_llm(prompt: str) -> tuple[str, int, int]:
    """Stands in for a model call: the answer and its prompt and completion token counts (a word a token)."""
    answer = f"Echo: {prompt}"
    return answer, len(prompt.split()), len(answer.split())


class LLMService:
    @require_api_key  # no key, a blocked key or one the billing server does not know: refused, nothing billed
    async def complete(self, stream: Call, prompt: str, customer: str | None = None) -> str:
        api_key = stream.metadata.get("api-key", "")  # the decorator checked it is there and known
        answer, prompt_tokens, completion_tokens = fake_llm(prompt)
        # Queued at once, delivered in the background (QoS 1, resent after a reconnect, counted once).
        # metadata.customer_id: the end customer this usage is for, a line of its own on the statement.
        metadata: dict[str, object] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        if customer:
            metadata["customer_id"] = customer
        await report_usage(api_key=api_key, module="llm", model=MODEL, usage=prompt_tokens + completion_tokens,
                           metadata=metadata)
        return answer


async def main(api_key: str, prompt: str, customer: str | None = None) -> int:
    client = BillingClient("localhost", 8883)  # the BILLING_MQTT_* variables override both, and add the login
    try:
        await client.connect()
        print(await LLMService().complete(Call(api_key), prompt, customer))
        delivered = await client.flush(10)  # wait for the broker's PUBACK
    except BillingError as exc:
        print(f"billing: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.disconnect()  # delivers what is still queued (up to 5 s), then closes
    stats = client.stats()
    print(f"usage reports acknowledged by the broker: {stats.acknowledged}, dropped: {stats.dropped}")
    return 0 if delivered else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Answer a prompt and bill its tokens to the caller's key.")
    parser.add_argument("--api-key", required=True, help="the caller's API key (from meterline up or keys create)")
    parser.add_argument("--customer", help="the end customer the answer is for (the report's metadata.customer_id)")
    parser.add_argument("prompt", nargs="?", default="How does Meterline count usage reports?")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(args.api_key, args.prompt, args.customer)))
