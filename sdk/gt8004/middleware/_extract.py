"""Reading what a request says about itself: customer, protocol and tool, x402 payment, client.

Pure functions over lower-cased header dicts and captured bodies; every parser is bounded and
returns None on anything unexpected (a malformed header never breaks the host or the entry).

x402 headers read (request and response; documented in sdk/README.md):

- ``X-PAYMENT`` (request): base64 JSON payment payload of the x402 protocol; the payer is
  ``payload.authorization.from``, the amount ``payload.authorization.value`` in the token's
  smallest unit (USDC: 6 decimals), the network names the token (``USDC-<network>``).
- ``X-PAYMENT-RESPONSE`` (response): base64 JSON settlement: ``transaction``, ``network``, ``payer``.
- Explicit headers, set by the app on its response (or by a client on the request), win:
  ``X-402-Amount`` (decimal USDC), ``X-402-Tx-Hash``, ``X-402-Token``, ``X-402-Payer``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

__all__ = ["client_ip", "customer_from_headers", "detect_rpc", "x402_fields"]

MAX_TOKEN = 8192       # bytes of a JWT or x402 header we are willing to decode
MAX_RPC_BODY = 16 * 1024
USDC_DECIMALS = 6
A2A_PREFIXES = ("message/", "tasks/", "agent/")


def _b64json(value: str) -> Any:
    if len(value) > MAX_TOKEN:
        return None
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        return orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None


def jwt_subject(authorization: str) -> str | None:
    """The ``sub`` claim of a Bearer JWT, read WITHOUT verifying the signature (analytics only)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    claims = _b64json(token.split(".")[1])
    if isinstance(claims, dict):
        sub = claims.get("sub")
        if isinstance(sub, str | int) and not isinstance(sub, bool):
            return str(sub)[:256] or None
    return None


def customer_from_headers(headers: dict[str, str]) -> str | None:
    """``X-Customer-ID``, else the ``sub`` of an ``Authorization: Bearer`` JWT, else None."""
    customer = headers.get("x-customer-id")
    if customer:
        return customer[:256]
    authorization = headers.get("authorization")
    return jwt_subject(authorization) if authorization else None


def detect_rpc(body: bytes, content_type: str) -> tuple[str, str, str | None] | None:
    """(protocol, rpc method, tool name) for a JSON-RPC body of MCP or A2A, else None.

    MCP ``tools/call`` → ("mcp", "tools/call", params.name); other MCP methods keep their name
    and no tool; A2A methods (``message/send``, ``tasks/get``, …) → ("a2a", method, skill id).
    """
    if not body or len(body) > MAX_RPC_BODY or "json" not in content_type:
        return None
    stripped = body.lstrip()
    if not stripped.startswith(b"{") or b'"jsonrpc"' not in stripped:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    method = data.get("method") if isinstance(data, dict) else None
    if not isinstance(method, str) or not method:
        return None
    params = data.get("params")
    params = params if isinstance(params, dict) else {}
    if method.startswith(A2A_PREFIXES):
        return "a2a", method[:32], _a2a_skill(params)
    tool = params.get("name") if method == "tools/call" else None
    return "mcp", method[:32], tool[:256] if isinstance(tool, str) and tool else None


def _a2a_skill(params: dict[str, Any]) -> str | None:
    for holder in (params.get("metadata"), (params.get("message") or {}).get("metadata")
                   if isinstance(params.get("message"), dict) else None):
        if isinstance(holder, dict):
            for key in ("skill_id", "skillId", "skill"):
                value = holder.get(key)
                if isinstance(value, str) and value:
                    return value[:256]
    return None


def _amount(value: str) -> float | None:
    try:
        amount = float(value)
    except ValueError:
        return None
    return amount if 0 <= amount < 1e12 else None


def x402_fields(request: dict[str, str], response: dict[str, str]) -> dict[str, Any]:
    """Payment fields for the entry from the x402 headers (see the module docstring)."""
    out: dict[str, Any] = {}
    payment = request.get("x-payment")
    if payment:
        data = _b64json(payment)
        if isinstance(data, dict):
            network = data.get("network")
            inner = data.get("payload")
            auth = inner.get("authorization") if isinstance(inner, dict) else None
            if isinstance(auth, dict):
                if isinstance(auth.get("from"), str):
                    out["x402_payer"] = auth["from"][:256]
                value = auth.get("value")
                if isinstance(value, str | int) and not isinstance(value, bool):
                    atomic = _amount(str(value))
                    if atomic is not None:
                        out["x402_amount"] = atomic / 10**USDC_DECIMALS
            if isinstance(network, str):
                out["x402_token"] = f"USDC-{network}"[:64]
    settled = response.get("x-payment-response")
    if settled:
        data = _b64json(settled)
        if isinstance(data, dict):
            if isinstance(data.get("transaction"), str) and data["transaction"]:
                out["x402_tx_hash"] = data["transaction"][:256]
            if isinstance(data.get("payer"), str) and data["payer"]:
                out.setdefault("x402_payer", data["payer"][:256])
            if isinstance(data.get("network"), str):
                out.setdefault("x402_token", f"USDC-{data['network']}"[:64])
    for source in (request, response):  # explicit headers; the response (the app) wins
        if (amount := source.get("x-402-amount")) and (parsed := _amount(amount)) is not None:
            out["x402_amount"] = parsed
        for header, field in (("x-402-tx-hash", "x402_tx_hash"), ("x-402-payer", "x402_payer")):
            if value := source.get(header):
                out[field] = value[:256]
        if token := source.get("x-402-token"):
            out["x402_token"] = token[:64]
    return out


def client_ip(headers: dict[str, str], scope_client: Any, trust_forwarded: bool) -> str | None:
    """The client address: ``X-Forwarded-For`` (first hop) / ``X-Real-IP`` when trusted, else the peer."""
    if trust_forwarded:
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()[:64] or None
        real = headers.get("x-real-ip")
        if real:
            return real.strip()[:64]
    if scope_client:
        try:
            return str(scope_client[0])[:64]
        except (TypeError, IndexError):
            return None
    return None
