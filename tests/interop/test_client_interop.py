"""MCPClient against the official TypeScript SDK's MCP servers, started on loopback.

Two independently written MCP servers (tests/interop/peers.py), each behind the SDK's
``requireBearerAuth`` with RFC 9728 metadata, tokens from the oidc-provider AS:

* SDK 1.32.2 (``@modelcontextprotocol/sdk``, ``mcp_server.mjs``): the stateful lifecycle
  only; a 2026-07-28 request gets ``400 -32000``. Tested sessionless and with
  ``Mcp-Session-Id``, with SSE and JSON replies; the default client detects it as legacy
  from the answer to its first request (or to ``server/discover`` after ``connect()``)
  and falls back to ``initialize`` (REQUIREMENTS §4 "a dual-era client inspects the body
  of a 400").
* SDK 2.4.0 (``@modelcontextprotocol/server``, ``mcp_server_v2.mjs``): the stateless
  2026-07-28 lifecycle (SEP-2575 ``_meta``, SEP-2243 headers, -32022) with JSON or SSE
  replies (notifications interleaved), and its stateless fallback for 2025 traffic or,
  with ``legacy="reject"``, none.

Authorization is mcpauth's ClientCredentialsProvider (RFC 6749 §4.4): the first request
goes out without a token, gets 401, and the provider discovers, gets a token and replays.

Skipped when the Node peers are not installed (tests/interop/install.sh), failing instead
when ``MCPAUTH_REQUIRE_NODE=1``.
"""

import json
from typing import Any, Dict, Iterator, List

import pytest

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py
from mcpauth import ClientCredentialsProvider
from mcpauth.client import (
    EXTENSION_OAUTH_CLIENT_CREDENTIALS,
    MCPClient,
)
from mcpauth.errors import MCPError

CLIENT_ID = "cron-job"
SECRET = "cron-secret"
ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
V1_TOOLS = ["add", "echo", "poll", "whoami"]
V2_TOOLS = ["add", "echo", "notify", "route", "whoami"]


def start(tmp_path_factory: Any, **options: Any) -> Any:
    clients = [peers_mod.secret_client(CLIENT_ID, SECRET, "client_secret_basic")]
    return peers_mod.start_peers(tmp_path_factory.mktemp("client"), clients, **options)


@pytest.fixture(scope="module", params=[
    {"json_response": False, "stateful": False},
    {"json_response": True, "stateful": False},
    {"json_response": False, "stateful": True},
    {"json_response": True, "stateful": True},
], ids=["v1-sse-sessionless", "v1-json-sessionless", "v1-sse-sessions", "v1-json-sessions"])
def v1(request: Any, tmp_path_factory: Any) -> Iterator[Any]:
    running = start(tmp_path_factory, **request.param)
    running.options = request.param
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["json", "sse"], ids=["v2-json", "v2-sse"])
def v2(request: Any, tmp_path_factory: Any) -> Iterator[Any]:
    running = start(tmp_path_factory, sdk="v2", response_mode=request.param)
    running.response_mode = request.param
    yield running
    running.stop()


def provider(peers: Any) -> ClientCredentialsProvider:
    return ClientCredentialsProvider(CLIENT_ID, SECRET, expected_issuer=peers.issuer)


def log_size(peers: Any) -> int:
    """How many requests the MCP server has logged, late lines of earlier tests included."""
    return len(peers_mod.settled_log(peers.mcp_requests))


def new_log(peers: Any, since: int) -> List[Dict[str, Any]]:
    """The MCP endpoint's log records after ``since``, once the log has settled."""
    return [r for r in peers_mod.settled_log(peers.mcp_requests)[since:]
            if r.get("path") == "/mcp"]


def use_tools(client: MCPClient) -> Dict[str, Any]:
    names = sorted(t["name"] for t in client.list_tools())
    echo = client.call_tool("echo", {"message": "héllo"})
    add = client.call_tool("add", {"a": 2, "b": 3})
    whoami = client.call_tool("whoami")
    for result in (echo, add, whoami):
        assert not result.get("isError"), result
    return {"tools": names, "echo": echo["content"][0]["text"],
            "add": add["content"][0]["text"],
            "claims": json.loads(whoami["content"][0]["text"])}


def check_facts(peers: Any, facts: Dict[str, Any], tools: List[str]) -> None:
    assert facts["tools"] == tools
    assert (facts["echo"], facts["add"]) == ("héllo", "5")
    assert facts["claims"]["client_id"] == CLIENT_ID
    assert facts["claims"]["aud"] == peers.mcp_url


# ----------------------------------------------------------------------------- SDK 1.32.2


def test_v1_default_detects_the_legacy_server(v1: Any) -> None:
    since = log_size(v1)
    with MCPClient(v1.mcp_url, auth=provider(v1)) as client:
        facts = use_tools(client)
        assert client.lifecycle == "stateful"
        assert client.protocol_version == LEGACY
        assert client.server_info == {"name": "mcpauth-interop-mcp", "version": "1.0.0"}
        session_id = client.session_id
    check_facts(v1, facts, V1_TOOLS)
    log = new_log(v1, since)
    # Cold start: 401 without a token; the provider's replay is the first request on the
    # 2026-07-28 wire, which the 1.x transport refuses with 400; then the stateful
    # handshake and the same request again. No server/discover.
    assert [(r.get("rpc_method"), r["status"]) for r in log[:4]] == [
        ("tools/list", 401), ("tools/list", 400), ("initialize", 200),
        ("notifications/initialized", 202)]
    assert "server/discover" not in [r.get("rpc_method") for r in log]
    assert log[1].get("mcp_protocol_version") == MODERN
    assert log[2].get("mcp_protocol_version") is None  # not on initialize
    posts = [r for r in log[3:] if r["method"] == "POST"]
    assert [r.get("rpc_method") for r in posts] == ["notifications/initialized", "tools/list"] + [
        "tools/call"] * 3
    for record in posts:
        assert record["status"] in (200, 202)
        assert record.get("mcp_protocol_version") == LEGACY
        assert record.get("accept") == ACCEPT
        assert record.get("authorization_scheme") == "Bearer"
        assert record.get("mcp_session_id") == session_id
    replies = {r.get("response_content_type").split(";")[0] for r in posts if r["status"] == 200}
    assert replies == {"application/json" if v1.options["json_response"]
                       else "text/event-stream"}
    if v1.options["stateful"]:
        deletes = [r for r in log if r["method"] == "DELETE"]
        assert session_id
        assert [(d["status"], d.get("mcp_session_id")) for d in deletes] == [(200, session_id)]
    else:
        assert session_id is None
        assert [r for r in log if r["method"] == "DELETE"] == []


def test_v1_connect_detects_with_server_discover(v1: Any) -> None:
    since = log_size(v1)
    with MCPClient(v1.mcp_url, auth=provider(v1)) as client:
        assert client.connect()["lifecycle"] == "stateful"
        assert sorted(t["name"] for t in client.list_tools()) == V1_TOOLS
    posts = [(r.get("rpc_method"), r["status"]) for r in new_log(v1, since)
             if r["method"] == "POST"]
    assert posts == [("server/discover", 401), ("server/discover", 400), ("initialize", 200),
                     ("notifications/initialized", 202), ("tools/list", 200)]


def test_v1_pinned_legacy_version_skips_the_probe(v1: Any) -> None:
    since = log_size(v1)
    with MCPClient(v1.mcp_url, auth=provider(v1), protocol_version="2025-06-18") as client:
        facts = use_tools(client)
        assert client.protocol_version == "2025-06-18"
    check_facts(v1, facts, V1_TOOLS)
    methods = [r.get("rpc_method") for r in new_log(v1, since) if r["method"] == "POST"]
    assert "server/discover" not in methods
    assert methods[:2] == ["initialize", "initialize"]  # 401 then the replay


def test_v1_refuses_the_pinned_stateless_wire(v1: Any) -> None:
    with MCPClient(v1.mcp_url, auth=provider(v1), protocol_version=MODERN) as client:
        with pytest.raises(MCPError) as info:
            client.list_tools()
    # "Bad Request: Unsupported protocol version ..." or, with sessions, "Bad Request:
    # Server not initialized": the 1.x transport's answer, never a 2026-07-28 error code.
    assert (info.value.status_code, info.value.code) == (400, -32000)


def test_v1_tool_errors_are_results(v1: Any) -> None:
    # SDK 1.x turns an unknown tool and invalid arguments into isError results.
    with MCPClient(v1.mcp_url, auth=provider(v1)) as client:
        unknown = client.call_tool("no-such-tool")
        invalid = client.call_tool("add", {"a": "not a number", "b": 1})
    for result in (unknown, invalid):
        assert result["isError"] is True
        assert "-32602" in result["content"][0]["text"]


# ----------------------------------------------------------------------------- SDK 2.4.0


def test_v2_default_speaks_the_stateless_wire(v2: Any) -> None:
    since = log_size(v2)
    seen: List[Dict[str, Any]] = []
    with MCPClient(v2.mcp_url, auth=provider(v2), on_notification=seen.append) as client:
        facts = use_tools(client)
        assert client.lifecycle == "stateless"
        assert client.protocol_version == MODERN
        assert client.server_info == {"name": "mcpauth-interop-mcp-v2", "version": "1.0.0"}
        assert client.session_id is None
        result = client.call_tool("notify", {"count": 3})
        assert result["content"][0]["text"] == "sent 3"
    check_facts(v2, facts, V2_TOOLS)
    if v2.response_mode == "sse":  # notifications interleaved before the reply
        assert [n["params"]["data"] for n in seen] == [
            "notification 0", "notification 1", "notification 2"]
    else:  # "json" drops mid-call notifications
        assert seen == []
    log = new_log(v2, since)
    # No probe: the first request (refused without a token, then replayed) detects.
    assert [r.get("rpc_method") for r in log] == ["tools/list", "tools/list"] + [
        "tools/call"] * 4
    assert log[0]["status"] == 401
    expected_type = "text/event-stream" if v2.response_mode == "sse" else "application/json"
    for record in log[1:]:
        assert record["status"] == 200
        assert record["method"] == "POST"
        assert record.get("mcp_protocol_version") == MODERN
        assert record.get("mcp_method") == record.get("rpc_method")
        assert record.get("accept") == ACCEPT
        assert record.get("content_type") == "application/json"
        assert record.get("response_content_type").split(";")[0] == expected_type
        assert record.get("mcp_session_id") is None
        if record.get("rpc_method") == "tools/call":
            assert record.get("mcp_name") in ("echo", "add", "whoami", "notify")
        else:
            assert record.get("mcp_name") is None


def test_v2_connect_detects_with_server_discover(v2: Any) -> None:
    since = log_size(v2)
    with MCPClient(v2.mcp_url, auth=provider(v2)) as client:
        info = client.connect()
        assert (info["lifecycle"], info["protocolVersion"]) == ("stateless", MODERN)
        assert info["serverInfo"] == {"name": "mcpauth-interop-mcp-v2", "version": "1.0.0"}
        client.list_tools()
    log = new_log(v2, since)
    assert [(r.get("rpc_method"), r["status"]) for r in log] == [
        ("server/discover", 401), ("server/discover", 200), ("tools/list", 200)]


def test_v2_pinned_stateless_and_extension(v2: Any) -> None:
    since = log_size(v2)
    with MCPClient(v2.mcp_url, auth=provider(v2), protocol_version=MODERN) as client:
        facts = use_tools(client)
    check_facts(v2, facts, V2_TOOLS)
    log = new_log(v2, since)
    assert [r.get("rpc_method") for r in log] == ["tools/list", "tools/list"] + [
        "tools/call"] * 3  # the first one refused (401) and replayed
    for record in log:
        assert record.get("meta_protocol_version") == record.get("mcp_protocol_version") \
            == MODERN
        # REQUIREMENTS N1: the auth extension in use is declared on every request.
        assert record.get("client_extensions") == [EXTENSION_OAUTH_CLIENT_CREDENTIALS]


def test_v2_legacy_fallback_serves_the_stateful_wire(v2: Any) -> None:
    since = log_size(v2)
    with MCPClient(v2.mcp_url, auth=provider(v2), protocol_version=LEGACY) as client:
        facts = use_tools(client)
        assert client.lifecycle == "stateful"
    check_facts(v2, facts, V2_TOOLS)
    methods = [r.get("rpc_method") for r in new_log(v2, since)]
    assert methods[:3] == ["initialize", "initialize", "notifications/initialized"]


def test_v2_json_rpc_errors(v2: Any) -> None:
    with MCPClient(v2.mcp_url, auth=provider(v2)) as client:
        with pytest.raises(MCPError) as info:
            client.request("no/such/method")
        assert info.value.code == -32601 and info.value.status_code == 404
        # Invalid arguments are a tool execution error (a result), not a protocol error.
        result = client.call_tool("add", {"a": "not a number", "b": 1})
        assert result["isError"] is True
        with pytest.raises(MCPError) as info:
            client.call_tool("no-such-tool")
        assert info.value.code == -32602


def test_v2_modern_only_server(tmp_path_factory: Any) -> None:
    running = start(tmp_path_factory, sdk="v2", legacy="reject")
    try:
        with MCPClient(running.mcp_url, auth=provider(running)) as client:
            check_facts(running, use_tools(client), V2_TOOLS)
            assert client.lifecycle == "stateless"
        with MCPClient(running.mcp_url, auth=provider(running),
                       protocol_version=LEGACY) as client:
            with pytest.raises(MCPError) as info:
                client.list_tools()
        assert info.value.code == -32022
        assert MODERN in info.value.data["supported"]
    finally:
        running.stop()
