"""MCPClient's wire behaviours against the official TypeScript SDK's MCP servers.

* SDK 2.4.0 (``mcp_server_v2.mjs``, 2026-07-28): its ``route`` tool declares SEP-2243
  ``x-mcp-header`` parameters and the SDK refuses a ``tools/call`` without matching
  ``Mcp-Param-*`` headers (400, -32020); the tool list reaches the caller exactly as the
  SDK serialised it.
* SDK 1.32.2 (``mcp_server.mjs``, sessions, an event store and ``retry``): its ``poll``
  tool closes its SSE stream before answering (SEP-1699 polling); the client resumes it
  with ``GET`` and ``Last-Event-ID``.

Skipped when the Node peers are not installed (tests/interop/install.sh), failing instead
when ``MCPAUTH_REQUIRE_NODE=1``.
"""

import base64
import json
import time
from typing import Any, Dict, Iterator, List

import pytest
import requests

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py
from mcpauth import ClientCredentialsProvider
from mcpauth.client import MCPClient

CLIENT_ID = "wire-cron-job"
SECRET = "wire-cron-secret"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


def start(tmp_path_factory: Any, **options: Any) -> Any:
    clients = [peers_mod.secret_client(CLIENT_ID, SECRET, "client_secret_basic")]
    return peers_mod.start_peers(tmp_path_factory.mktemp("wire"), clients, **options)


@pytest.fixture(scope="module", params=["json", "sse"], ids=["v2-json", "v2-sse"])
def v2(request: Any, tmp_path_factory: Any) -> Iterator[Any]:
    running = start(tmp_path_factory, sdk="v2", response_mode=request.param)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def v1_resumable(tmp_path_factory: Any) -> Iterator[Any]:
    running = start(tmp_path_factory, stateful=True, retry_interval_ms=300)
    yield running
    running.stop()


def provider(peers: Any) -> ClientCredentialsProvider:
    return ClientCredentialsProvider(CLIENT_ID, SECRET, expected_issuer=peers.issuer)


def new_log(peers: Any, since: int) -> List[Dict[str, Any]]:
    return [r for r in peers_mod.settled_log(peers.mcp_requests)[since:]
            if r.get("path") == "/mcp"]


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def test_v2_checks_the_mcp_param_headers_mcpauth_sends(v2: Any) -> None:
    since = len(peers_mod.settled_log(v2.mcp_requests))
    with MCPClient(v2.mcp_url, auth=provider(v2), protocol_version=MODERN) as client:
        route = [t for t in client.list_tools() if t["name"] == "route"][0]
        props = route["inputSchema"]["properties"]
        assert props["region"]["x-mcp-header"] == "Region"
        result = client.call_tool("route", {"region": "eu west ü", "priority": 3,
                                            "note": "not mirrored"})
        assert result["content"][0]["text"] == "eu west ü/3"
        result = client.call_tool("route", {"region": "us-east-1"})
        assert result["content"][0]["text"] == "us-east-1/-"
    calls = [r for r in new_log(v2, since) if r.get("rpc_method") == "tools/call"]
    assert [r["status"] for r in calls] == [200, 200]
    assert calls[0]["mcp_param_headers"] == {"mcp-param-region": b64("eu west ü"),
                                             "mcp-param-priority": "3"}
    assert calls[1]["mcp_param_headers"] == {"mcp-param-region": "us-east-1"}


def test_v2_a_call_before_listing_recovers_from_the_sdk_refusal(v2: Any) -> None:
    since = len(peers_mod.settled_log(v2.mcp_requests))
    with MCPClient(v2.mcp_url, auth=provider(v2), protocol_version=MODERN) as client:
        assert client.call_tool("route", {"region": "r1"})["content"][0]["text"] == "r1/-"
    log = [(r.get("rpc_method"), r["status"]) for r in new_log(v2, since)
           if r["status"] != 401]
    assert log == [("tools/call", 400), ("tools/list", 200), ("tools/call", 200)]


def test_v2_tool_list_reaches_the_caller_exactly(v2: Any) -> None:
    auth = provider(v2)
    with MCPClient(v2.mcp_url, auth=auth, protocol_version=MODERN) as client:
        tools = client.list_tools()
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}
    raw = requests.post(v2.mcp_url, auth=auth, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        headers={"Accept": "application/json, text/event-stream",
                 "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    assert raw.status_code == 200
    if raw.headers["Content-Type"].startswith("text/event-stream"):
        data = [line[5:] for line in raw.text.splitlines() if line.startswith("data:")]
        body = json.loads([d for d in data if d.strip()][-1])
    else:
        body = raw.json()
    assert tools == body["result"]["tools"]


def test_v1_resumes_a_stream_the_sdk_closes_early(v1_resumable: Any) -> None:
    peers = v1_resumable
    since = len(peers_mod.settled_log(peers.mcp_requests))
    with MCPClient(peers.mcp_url, auth=provider(peers), protocol_version=LEGACY) as client:
        client.connect()
        started = time.monotonic()
        result = client.call_tool("poll", {"delay_ms": 100})
        elapsed = time.monotonic() - started
        assert result["content"][0]["text"] == "polled"
        assert client.call_tool("add", {"a": 1, "b": 2})["content"][0]["text"] == "3"
        session = client.session_id
    log = new_log(peers, since)
    gets = [r for r in log if r["method"] == "GET"]
    assert len(gets) == 1 and gets[0]["status"] == 200
    assert gets[0].get("last_event_id")
    assert gets[0].get("mcp_session_id") == session
    assert elapsed >= 0.28  # the SDK's retry: 300 ms, respected
