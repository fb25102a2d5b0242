"""The server's secret-header list covers the SDK's, and is plain data in one place."""

from __future__ import annotations

import ast
from pathlib import Path

from gt8004.middleware.fastapi import SENSITIVE_HEADERS

import schemas.headers
from schemas.headers import SECRET_HEADERS


def test_the_server_strips_every_header_the_sdk_strips() -> None:
    server = {name.lower() for name in SECRET_HEADERS}
    missing = {name.lower() for name in SENSITIVE_HEADERS} - server
    assert not missing, f"the SDK strips {sorted(missing)} but the server would store them"


def test_names_are_lower_case_and_include_the_payment_and_token_headers() -> None:
    assert all(name == name.lower().strip() for name in SECRET_HEADERS)
    assert {"x-payment", "x-auth-token", "x-csrf-token", "authorization", "cookie"} <= SECRET_HEADERS
    assert "x-payment-response" not in SECRET_HEADERS  # a public settlement receipt, read for x402 fields


def test_the_module_holds_data_only() -> None:
    tree = ast.parse(Path(schemas.headers.__file__).read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)]


def test_gateway_and_worker_use_this_list_and_keep_no_copy_of_their_own() -> None:
    root = Path(schemas.headers.__file__).resolve().parents[1]
    for module in ("gateway/ingest.py", "stream_workers/enrich.py", "stream_workers/handlers/requests.py"):
        source = (root / module).read_text(encoding="utf-8")
        assert "from schemas.headers import SECRET_HEADERS" in source, module
        assert '"x-api-key"' not in source and '"cookie"' not in source, module
