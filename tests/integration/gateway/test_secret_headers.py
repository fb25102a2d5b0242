"""A client other than our SDK sends secret headers: the gateway publishes the entry without them.

Real gateway app, real Kafka: the record on the requests topic must not carry a secret header's name or
value, and the customer the bearer token named must survive the stripping.
"""

from __future__ import annotations

import base64
import json

import httpx

from gateway.runtime import GatewayRuntime
from schemas.events import request_batch_decoder
from tests.integration.gateway.conftest import entry, read_topic

SUB = base64.urlsafe_b64encode(json.dumps({"sub": "user-42"}).encode()).rstrip(b"=").decode()
SECRETS = {"Authorization": f"Bearer eyJhbGciOiJub25lIn0.{SUB}.sig", "X-PAYMENT": "eyJzaWduZWQiOjF9",
           "x-auth-token": "tok-secret", "X-CSRF-Token": "csrf-secret", "Cookie": "session=cookie-secret"}


async def test_secret_headers_of_a_non_sdk_client_are_not_published(gateway: GatewayRuntime,
                                                                    client: httpx.AsyncClient, agent_key: str) -> None:
    body = {"entries": [entry(1, headers={**SECRETS, "Accept": "*/*"}),  # snake_case, like a hand-written client
                        {"requestId": "r-2", "method": "GET", "path": "/y", "statusCode": 200, "responseMs": 2,
                         "customerId": "given", "headers": {**SECRETS, "Accept": "*/*"}}]}  # camelCase
    resp = await client.post("/v1/ingest", json=body, headers={"Authorization": f"Bearer {agent_key}"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["entries"] == 2

    (msg,) = await read_topic(gateway.settings.kafka_bootstrap_servers, gateway.topics.requests, min_count=1)
    for name, value in SECRETS.items():
        assert value.encode() not in msg.value and name.lower().encode() not in msg.value.lower(), name
    record = request_batch_decoder.decode(msg.value)
    assert [e.headers for e in record.entries] == [{"Accept": "*/*"}, {"Accept": "*/*"}]
    assert [e.customer_id for e in record.entries] == ["user-42", "given"]
