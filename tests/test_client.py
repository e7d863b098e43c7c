"""MCPClient against the loopback MCP server (mcpauth.testing), over real sockets.

MCP "Transports" (Streamable HTTP) and "Lifecycle": the stateful lifecycle (initialize,
MCP-Protocol-Version, Mcp-Session-Id, DELETE), the stateless 2026-07-28 lifecycle
(SEP-2575 ``_meta``, SEP-2243 headers, -32022 retry), version detection, JSON and SSE
replies (WHATWG HTML "Server-sent events"), JSON-RPC 2.0 §5 errors. Requirement ids (N1,
N2, N3) refer to shared/REQUIREMENTS.md.
"""

import base64
import json
import logging
import socket
import threading

import pytest
import requests

from mcpauth import (
    BearerTokenProvider,
    ClientCredentialsProvider,
    ConfigurationError,
    FileTokenCache,
    InsecureEndpointError,
    InsufficientScopeError,
    ProtocolError,
    TransportError,
    UnauthorizedError,
)
from mcpauth.client import (
    EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION,
    EXTENSION_OAUTH_CLIENT_CREDENTIALS,
    LATEST_PROTOCOL_VERSION,
    LEGACY_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MCPClient,
)
from mcpauth._headers import encode_header_value as _header_value
from mcpauth._sse import iter_lines as _iter_lines
from mcpauth._sse import iter_sse_events as _iter_sse_events
from mcpauth.errors import MCPError
from mcpauth.providers import AuthProvider
from mcpauth.testing import LoopbackStack, MCPServer
from mcpauth.testing._http import Response

pytestmark = pytest.mark.e2e

TOKEN = "client-test-token-7f3a"
ACCEPT = "application/json, text/event-stream"
BUILTIN_TOOLS = ["echo", "add", "whoami", "fail"]


def client_for(server, **kw):
    kw.setdefault("auth", BearerTokenProvider(TOKEN))
    return MCPClient(server.url, **kw)


def methods(server):
    return [r.info["jsonrpc_method"] for r in server.calls()]


def body(record):
    return json.loads(record.body.decode("utf-8"))


def wire(server):
    """(JSON-RPC method or HTTP method, status) of every request to the MCP endpoint,
    including those refused before the server read them (401, canned routes)."""
    seen = []
    for record in server.mcp_requests():
        name = record.method
        if record.method == "POST":
            sent = body(record)
            name = sent.get("method", "response %s" % sent.get("id"))
        seen.append((name, record.status))
    return seen


def sse(*events):
    return "".join(events).encode("utf-8")


# ----------------------------------------------------------------------------- lifecycles


@pytest.mark.parametrize("mode", ["json", "sse"])
@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
def test_pinned_lifecycle_and_reply_mode(make_server, mode, version):
    server = make_server(response_mode=mode)
    with client_for(server, protocol_version=version) as client:
        tools = client.list_tools()
        result = client.call_tool("add", {"a": 2, "b": 40})
        assert client.protocol_version == version
        assert client.lifecycle == ("stateless" if version == LATEST_PROTOCOL_VERSION
                                    else "stateful")
    assert [t["name"] for t in tools] == BUILTIN_TOOLS
    assert result["content"] == [{"type": "text", "text": "42"}]
    assert result["structuredContent"] == {"result": 42}
    calls = server.calls()
    if version == LATEST_PROTOCOL_VERSION:
        assert methods(server) == ["tools/list", "tools/call"]
        assert {r.info["lifecycle"] for r in calls} == {"stateless"}
        assert result["resultType"] == "complete"
    else:
        assert methods(server) == ["initialize", "notifications/initialized", "tools/list",
                                   "tools/call"]
        assert {r.info["lifecycle"] for r in calls} == {"stateful"}
        assert {r.info["protocol_version"] for r in calls} == {version}
    assert all(r.status in (200, 202) for r in calls)


@pytest.mark.parametrize("pinned, negotiated", [
    ("2025-06-18", "2025-06-18"),
    ("2025-03-26", "2025-03-26"),
    ("2024-11-05", "2025-11-25"),  # the server does not know it and answers its latest
])
def test_older_stateful_versions(make_server, pinned, negotiated):
    server = make_server()
    with client_for(server, protocol_version=pinned) as client:
        assert client.connect()["protocolVersion"] == negotiated
        client.call_tool("echo", {"x": 1})
    init, notified, call = server.calls()
    assert body(init)["params"]["protocolVersion"] == pinned
    assert "MCP-Protocol-Version" not in init.headers
    assert notified.headers["MCP-Protocol-Version"] == negotiated
    assert call.headers["MCP-Protocol-Version"] == negotiated


def test_server_choosing_an_unknown_version_is_refused(make_server):
    server = make_server(legacy_versions=["2099-01-01"])
    with client_for(server, protocol_version="2025-11-25") as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert "2099-01-01" in str(info.value)
    assert methods(server) == ["initialize"]


def test_default_detects_a_legacy_server_and_remembers(make_server):
    """The first real request goes out on the 2026-07-28 wire; the legacy server refuses
    it (400 -32000), the client initializes and sends it again; no server/discover."""
    server = make_server(legacy_only=True)
    with client_for(server) as client:
        assert client.protocol_version is None and client.lifecycle is None
        assert [t["name"] for t in client.list_tools()] == BUILTIN_TOOLS
        assert client.lifecycle == "stateful"
        assert client.protocol_version == LEGACY_PROTOCOL_VERSION
        assert client.server_info == {"name": "mcpauth-test-server", "version": "0.0.0"}
        client.call_tool("add", {"a": 1, "b": 1})
        client.request("ping")
    assert wire(server) == [("tools/list", 400), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 200),
                            ("tools/call", 200), ("ping", 200)]
    first, init = server.calls()[:2]
    assert first.headers["MCP-Protocol-Version"] == LATEST_PROTOCOL_VERSION
    assert body(first)["params"]["_meta"][META_PROTOCOL_VERSION] == LATEST_PROTOCOL_VERSION
    assert body(init)["params"]["protocolVersion"] == LEGACY_PROTOCOL_VERSION
    # Detected once: every later request is stateful, without _meta.
    for record in server.calls()[2:]:
        assert record.info["lifecycle"] == "stateful"
        assert record.headers["MCP-Protocol-Version"] == LEGACY_PROTOCOL_VERSION
        assert "_meta" not in body(record).get("params", {})


def test_connect_detects_a_legacy_server_with_server_discover(make_server):
    server = make_server(legacy_only=True)
    with client_for(server) as client:
        assert client.connect()["lifecycle"] == "stateful"
        client.list_tools()
    assert wire(server) == [("server/discover", 400), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 200)]
    assert server.calls()[0].headers["MCP-Protocol-Version"] == LATEST_PROTOCOL_VERSION


def test_default_detects_a_stateless_only_server(make_server):
    server = make_server(stateless_only=True)
    with client_for(server) as client:
        info = client.connect()
        assert info["lifecycle"] == "stateless"
        assert info["serverInfo"] == {"name": "mcpauth-test-server", "version": "0.0.0"}
        assert client.server_capabilities == {"tools": {}}
        client.call_tool("echo", {})
        client.connect()  # idempotent
    assert methods(server) == ["server/discover", "tools/call"]


@pytest.mark.parametrize("explicit", [False, True], ids=["lazy", "connect"])
def test_default_prefers_stateless_on_a_dual_era_server(make_server, explicit):
    server = make_server(response_mode="sse")
    with client_for(server) as client:
        if explicit:
            client.connect()
        client.list_tools()
        client.call_tool("echo", {})
        assert client.lifecycle == "stateless"
        assert client.protocol_version == LATEST_PROTOCOL_VERSION
        # server/discover tells serverInfo; this server puts none in its results.
        assert client.server_info == ({"name": "mcpauth-test-server", "version": "0.0.0"}
                                      if explicit else None)
    assert wire(server) == [("server/discover", 200)] * explicit + [
        ("tools/list", 200), ("tools/call", 200)]
    assert {r.info["lifecycle"] for r in server.calls()} == {"stateless"}


def test_default_falls_back_on_a_non_json_400(make_server):
    server = make_server(legacy_only=True)
    server.set_route(server.path, 400, "<html>bad request</html>", times=1)
    with client_for(server) as client:
        client.list_tools()
        assert client.lifecycle == "stateful"
    assert methods(server) == ["initialize", "notifications/initialized", "tools/list"]


@pytest.mark.parametrize("explicit", [False, True], ids=["lazy", "connect"])
@pytest.mark.parametrize("status, code", [(404, -32601), (400, -32020), (400, -32021),
                                          (400, -32022), (400, -32602)])
def test_a_modern_error_means_a_modern_server(make_server, status, code, explicit):
    server = make_server()  # dual-era: a fallback would be served, and seen
    server.set_route(server.path, status, {"jsonrpc": "2.0", "id": 1, "error": {
        "code": code, "message": "modern"}}, method="POST", times=1)
    first = "server/discover" if explicit else "tools/list"
    with client_for(server) as client:
        if explicit and code == -32601:  # a server without server/discover is still modern
            assert client.connect()["lifecycle"] == "stateless"
        else:
            with pytest.raises(MCPError) as info:
                client.connect() if explicit else client.list_tools()
            assert info.value.code == code and info.value.status_code == status
        client.list_tools()
        assert client.lifecycle == "stateless"
    assert wire(server) == [(first, status), ("tools/list", 200)]
    assert {r.info["lifecycle"] for r in server.calls()} == {"stateless"}


def test_a_json_rpc_error_in_a_2xx_means_a_modern_server(make_server):
    """An application error (unknown tool: -32602 in HTTP 200) is the server's answer to
    the call, not a sign of a legacy server: no fallback, the error is raised."""
    server = make_server()
    with client_for(server) as client:
        with pytest.raises(MCPError) as info:
            client.call_tool("no-such-tool")
        assert (info.value.code, info.value.status_code) == (-32602, 200)
        assert client.lifecycle == "stateless"
        assert client.protocol_version == LATEST_PROTOCOL_VERSION
        assert client.call_tool("fail")["isError"] is True
    assert wire(server) == [("tools/call", 200), ("tools/call", 200)]
    assert {r.info["lifecycle"] for r in server.calls()} == {"stateless"}


def test_server_info_from_result_meta(make_server):
    server = make_server(stateless_only=True)
    stamp = {"name": "stamped", "version": "9"}
    server.add_tool("stamped", lambda args, token: {
        "content": [], "_meta": {META_SERVER_INFO: stamp}})
    with client_for(server) as client:
        client.call_tool("echo")
        assert client.server_info is None
        client.call_tool("stamped")
        assert client.server_info == stamp
        client.call_tool("echo")  # a result without it keeps what is known
        assert client.server_info == stamp


def test_a_legacy_answer_to_a_first_notification_falls_back(make_server):
    server = make_server(legacy_only=True)
    with client_for(server) as client:
        client.notify("notifications/cancelled", {"requestId": 7})
        assert client.lifecycle == "stateful"
        client.request("ping")
    assert wire(server) == [("notifications/cancelled", 400), ("initialize", 200),
                            ("notifications/initialized", 202),
                            ("notifications/cancelled", 202), ("ping", 200)]
    modern = make_server(stateless_only=True)
    with client_for(modern) as client:
        client.notify("notifications/cancelled", {"requestId": 7})
        assert client.lifecycle == "stateless"
    assert wire(modern) == [("notifications/cancelled", 202)]


@pytest.mark.parametrize("status", [503, 429])
def test_an_answer_that_tells_nothing_leaves_detection_running(make_server, status):
    """A 5xx, 408 or 429 to the first request says nothing about the lifecycle: it is
    raised, and the next request detects (here a legacy server, then a modern one)."""
    for kw, after in (({"legacy_only": True}, [
            ("tools/list", 400), ("initialize", 200), ("notifications/initialized", 202),
            ("tools/list", 200)]), ({"stateless_only": True}, [("tools/list", 200)])):
        server = make_server(**kw)
        server.set_route(server.path, status, {"jsonrpc": "2.0", "id": 1, "error": {
            "code": -32000, "message": "busy"}}, method="POST", times=1)
        with client_for(server) as client:
            with pytest.raises(MCPError) as info:
                client.list_tools()
            assert info.value.status_code == status
            assert client.lifecycle is None and client.protocol_version is None
            client.list_tools()
            assert client.lifecycle == ("stateful" if "legacy_only" in kw else "stateless")
        assert wire(server) == [("tools/list", status)] + after


def test_detection_waits_for_an_answer(make_server):
    """A first request that gets no MCP answer (401 without a provider) detects nothing:
    the next request detects again."""
    server = make_server(legacy_only=True)
    with MCPClient(server.url) as client:
        with pytest.raises(UnauthorizedError):
            client.list_tools()
        assert client.lifecycle is None and client.protocol_version is None
        client._session.headers["Authorization"] = "Bearer " + TOKEN
        client.list_tools()
        assert client.lifecycle == "stateful"
    assert wire(server) == [("tools/list", 401), ("tools/list", 400), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 200)]


def rpc_error(code, message="refused", msg_id=1):
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


@pytest.mark.parametrize("explicit", [False, True], ids=["lazy", "connect"])
@pytest.mark.parametrize("status, payload", [
    (403, "forbidden"), (413, "too large"), (415, {"error": "unsupported"}),
    (408, rpc_error(-32000)), (403, rpc_error(-32000)), (429, rpc_error(-32600)),
    (500, rpc_error(-32000)), (400, rpc_error(-32700, "Parse error")),
    (400, rpc_error(-32601)), (404, rpc_error(-32602)), (409, "conflict"),
], ids=lambda v: str(v)[:12])
def test_an_answer_that_tells_nothing_is_raised_with_its_status(make_server, status,
                                                                payload, explicit):
    """Only a 400/404/405 refusal in the pre-2026 SDKs' form means a legacy server; any
    other error is the server's answer to the request: raised as it is (with its HTTP
    status, not as an initialize error), no initialize sent, detection goes on."""
    server = make_server(stateless_only=True)
    server.set_route(server.path, status, payload, method="POST", times=1)
    first = "server/discover" if explicit else "tools/list"
    with client_for(server) as client:
        with pytest.raises((MCPError, ProtocolError)) as info:
            client.connect() if explicit else client.list_tools()
        assert info.value.status_code == status
        if isinstance(payload, dict) and "jsonrpc" in payload:
            assert type(info.value) is MCPError
            assert info.value.code == payload["error"]["code"]
        else:
            assert type(info.value) is ProtocolError
            assert "failed with HTTP {}".format(status) in str(info.value)
            assert first in str(info.value) and "initialize" not in str(info.value)
        assert client.lifecycle is None and client.protocol_version is None
        client.list_tools()
        assert client.lifecycle == "stateless"
    # After a failed connect() the next request detects lazily (no second probe).
    assert wire(server) == [(first, status), ("tools/list", 200)]


@pytest.mark.parametrize("explicit", [False, True], ids=["lazy", "connect"])
@pytest.mark.parametrize("status, payload", [
    (400, "<html>bad request</html>"), (404, "not found"), (405, {"error": "nope"}),
    (400, rpc_error(-32000, "Bad Request: Unsupported protocol version")),
    (400, rpc_error(-32600, "Bad Request: Unsupported protocol version")),
], ids=lambda v: str(v)[:12])
def test_a_failed_fallback_raises_the_first_answer(make_server, status, payload, explicit):
    """A legacy-looking refusal from a server that is not legacy (initialize: 404
    -32601): the error of the first reply is raised, with its status, and detection
    goes on (the next request, answered, settles it)."""
    server = make_server(stateless_only=True)
    server.set_route(server.path, status, payload, method="POST", times=1)
    first = "server/discover" if explicit else "tools/list"
    with client_for(server) as client:
        with pytest.raises((MCPError, ProtocolError)) as info:
            client.connect() if explicit else client.list_tools()
        assert info.value.status_code == status
        if isinstance(payload, dict) and "jsonrpc" in payload:
            assert (type(info.value), info.value.code) == (MCPError, payload["error"]["code"])
        else:
            assert type(info.value) is ProtocolError
            assert str(info.value).startswith("MCP {} to ".format(first))
        # Chained from the initialize failure, for a debugger.
        assert isinstance(info.value.__cause__, MCPError)
        assert (info.value.__cause__.code, info.value.__cause__.status_code) == (-32601, 404)
        assert client.lifecycle is None and client.protocol_version is None
        assert client.call_tool("add", {"a": 1, "b": 2})["content"][0]["text"] == "3"
        assert client.lifecycle == "stateless"
    assert wire(server) == [(first, status), ("initialize", 404), ("tools/call", 200)]


def test_a_failed_fallback_over_http_raises_the_first_answer(make_server):
    server = make_server(stateless_only=True)
    server.set_route(server.path, 503, "busy", method="POST", times=1)     # initialize
    server.set_route(server.path, 400, "bad request", method="POST", times=1)
    with client_for(server) as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
        assert info.value.status_code == 400 and "tools/list" in str(info.value)
        assert info.value.__cause__.status_code == 503
        assert client.lifecycle is None
    assert wire(server) == [("tools/list", 400), ("initialize", 503)]


@pytest.mark.parametrize("status, payload", [
    (404, "<html>not found</html>"),
    (400, rpc_error(-32600, "Bad Request: Unsupported protocol version")),  # Python SDK
    (405, rpc_error(-32000, "Method not allowed.")),
], ids=lambda v: str(v)[:12])
def test_legacy_refusal_forms_fall_back(make_server, status, payload):
    server = make_server(legacy_only=True)
    server.set_route(server.path, status, payload, method="POST", times=1)
    with client_for(server) as client:
        client.list_tools()
        assert client.lifecycle == "stateful"
    assert wire(server) == [("tools/list", status), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 200)]


def test_connect_and_lazy_detection_classify_a_2xx_error_alike(make_server):
    """A JSON-RPC error in a 2xx is the server's answer: raised by connect() as by a
    request, without an initialize; a 2xx -32601 to server/discover is a modern server
    without it."""
    for explicit in (False, True):
        server = make_server(stateless_only=True)
        server.set_route(server.path, 200, rpc_error(-32603, "Internal error"),
                         method="POST", times=1)
        first = "server/discover" if explicit else "tools/list"
        with client_for(server) as client:
            with pytest.raises(MCPError) as info:
                client.connect() if explicit else client.list_tools()
            assert (info.value.code, info.value.status_code) == (-32603, 200)
            assert str(info.value) == "Internal error"
        assert wire(server) == [(first, 200)]
    server = make_server(stateless_only=True)
    server.set_route(server.path, 200, rpc_error(-32601, "Method not found"),
                     method="POST", times=1)
    with client_for(server) as client:
        assert client.connect()["lifecycle"] == "stateless"
        client.list_tools()
    assert wire(server) == [("server/discover", 200), ("tools/list", 200)]


# ----------------------------------------------------------------------------- -32022


def unsupported(msg_id, supported):
    return {"jsonrpc": "2.0", "id": msg_id, "error": {
        "code": -32022, "message": "Unsupported protocol version",
        "data": {"supported": supported, "requested": LATEST_PROTOCOL_VERSION}}}


def test_probe_with_only_legacy_versions_supported_falls_back_to_the_best(make_server):
    server = make_server()
    server.set_route(server.path, 400, unsupported(1, ["2024-11-05", "2025-06-18", "x"]),
                     method="POST", times=1)
    with client_for(server) as client:
        assert client.connect()["protocolVersion"] == "2025-06-18"
        client.list_tools()
    init = server.calls()[0]
    assert body(init)["params"]["protocolVersion"] == "2025-06-18"
    assert methods(server) == ["initialize", "notifications/initialized", "tools/list"]


def test_unsupported_version_mid_stream_retries_once_on_the_offered_version(make_server):
    server = make_server()
    with client_for(server) as client:
        client.connect()
        assert client.lifecycle == "stateless"
        server.set_route(server.path, 400, unsupported(2, ["2025-11-25"]), method="POST",
                         times=1)
        tools = client.list_tools()
        assert client.lifecycle == "stateful"
    assert len(tools) == 4
    assert methods(server) == ["server/discover", "initialize", "notifications/initialized",
                               "tools/list"]


class RefusingServer(MCPServer):
    """Answers every tools/list with -32022 offering only 2025-11-25, in both lifecycles."""

    def handle(self, record):
        if record.method == "POST" and record.url_path == self.path:
            message = json.loads(record.body.decode("utf-8"))
            if message.get("method") == "tools/list":
                record.info["jsonrpc_method"] = "tools/list"
                return Response.json(400, unsupported(message["id"], ["2025-11-25"]))
        return MCPServer.handle(self, record)


def test_unsupported_version_is_retried_only_once():
    with RefusingServer(static_tokens=[TOKEN]) as server:
        with client_for(server) as client:
            with pytest.raises(MCPError) as info:
                client.list_tools()
            assert client.lifecycle == "stateful"
    assert info.value.code == -32022
    assert wire(server) == [("tools/list", 400), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 400)]


def test_pinned_stateless_raises_unsupported_version(make_server):
    server = make_server(stateless_versions=["2027-01-01"])
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(MCPError) as info:
            client.list_tools()
    assert info.value.code == -32022 and info.value.status_code == 400
    assert info.value.data == {"supported": ["2027-01-01"], "requested": "2026-07-28"}
    assert methods(server) == ["tools/list"]


# ----------------------------------------------------------------------------- sessions


def test_session_id_echoed_and_deleted_on_close(make_server):
    server = make_server(sessions=True, legacy_only=True, response_mode="sse")
    with client_for(server) as client:
        client.list_tools()
        client.call_tool("whoami")
        session_id = client.session_id
        assert session_id and list(server.sessions) == [session_id]
        assert server.sessions[session_id]["initialized"] is True
    assert server.sessions == {}
    assert client.session_id is None
    assert wire(server) == [("tools/list", 400), ("initialize", 200),
                            ("notifications/initialized", 202), ("tools/list", 200),
                            ("tools/call", 200), ("DELETE", 200)]
    refused = server.mcp_requests()[0]
    assert "Mcp-Session-Id" not in refused.headers
    assert refused.headers["MCP-Protocol-Version"] == LATEST_PROTOCOL_VERSION
    after_init = server.mcp_requests()[2:]
    for record in after_init:
        assert record.headers["Mcp-Session-Id"] == session_id
        assert record.headers["MCP-Protocol-Version"] == LEGACY_PROTOCOL_VERSION
    assert after_init[-1].status == 200


def test_no_delete_without_a_session_and_405_is_fine(make_server):
    server = make_server()
    with client_for(server, protocol_version="2025-11-25") as client:
        client.list_tools()
    assert [r.method for r in server.mcp_requests()] == ["POST"] * 3
    server2 = make_server(sessions=True)
    with client_for(server2, protocol_version="2025-11-25") as client:
        client.list_tools()
        server2.set_route(server2.path, 405, {"error": "no"}, method="DELETE")
    assert server2.mcp_requests()[-1].method == "DELETE"


def test_expired_session_is_initialized_again_once(make_server):
    server = make_server(sessions=True)
    with client_for(server, protocol_version="2025-11-25") as client:
        client.connect()
        first = client.session_id
        requests.delete(server.url, headers={"Mcp-Session-Id": first,
                                             "Authorization": "Bearer " + TOKEN}).close()
        assert client.call_tool("add", {"a": 1, "b": 2})["structuredContent"] == {"result": 3}
        assert client.session_id not in (None, first)
    statuses = [(r.info.get("jsonrpc_method"), r.status) for r in server.calls()]
    assert statuses == [("initialize", 200), ("notifications/initialized", 202),
                        ("tools/call", 404), ("initialize", 200),
                        ("notifications/initialized", 202), ("tools/call", 200)]


def test_a_second_404_is_raised(make_server):
    server = make_server(sessions=True)
    with client_for(server, protocol_version="2025-11-25") as client:
        client.connect()
        server.set_route(server.path, 404, {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32001, "message": "Session not found"}}, method="POST", times=1)
        server.set_route(server.path, 404, {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32001, "message": "Session not found"}}, method="POST", times=1)
        # The first 404 is followed by a new initialize, which also gets a 404.
        with pytest.raises(MCPError) as info:
            client.list_tools()
    assert info.value.code == -32001 and info.value.status_code == 404


class GatheringServer(MCPServer):
    """A legacy server that holds every 2026-07-28 request until ``count`` of them have
    arrived, so that all of them are refused while detection is still running."""

    def __init__(self, count, **kw):
        MCPServer.__init__(self, **kw)
        self.gate = threading.Barrier(count)

    def handle(self, record):
        if record.headers.get("MCP-Protocol-Version") == LATEST_PROTOCOL_VERSION:
            self.gate.wait(timeout=10)
        return MCPServer.handle(self, record)


@pytest.mark.parametrize("count", [2, 8])
def test_concurrent_first_requests_share_one_handshake(count):
    results, errors = [], []
    with GatheringServer(count, static_tokens=[TOKEN], sessions=True,
                         legacy_only=True) as server:
        with client_for(server) as client:
            def work(i):
                try:
                    results.append(client.call_tool("add", {"a": i, "b": 1}))
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(exc)
            threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert client.lifecycle == "stateful"
        assert server.errors == []
    assert errors == []
    assert sorted(r["structuredContent"]["result"] for r in results) == list(
        range(1, count + 1))
    seen = wire(server)
    assert sorted(seen) == sorted([("tools/call", 400)] * count + [
        ("initialize", 200), ("notifications/initialized", 202)] + [
        ("tools/call", 200)] * count + [("DELETE", 200)])
    # One handshake, finished before any request was sent again on the stateful wire.
    assert seen.index(("initialize", 200)) < seen.index(("notifications/initialized", 202)) \
        < seen.index(("tools/call", 200))
    assert seen[-1] == ("DELETE", 200)
    ids = [body(r).get("id") for r in server.calls() if "id" in body(r)]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------- wire details


def test_stateless_headers_and_meta_are_exact(make_server):
    server = make_server()
    server.add_tool("héllo wörld", lambda args, token: "hi")
    with client_for(server, protocol_version="2026-07-28",
                    client_info={"name": "cron-job", "version": "1.2"}) as client:
        client.list_tools()
        client.call_tool("add", {"a": 1, "b": 2})
        client.call_tool("héllo wörld")
        client.request("ping")
    listing, call, named, ping = server.calls()
    for record in (listing, call, named, ping):
        sent = body(record)
        meta = sent["params"]["_meta"]
        assert meta[META_PROTOCOL_VERSION] == record.headers["MCP-Protocol-Version"] \
            == "2026-07-28"
        assert meta[META_CLIENT_INFO] == {"name": "cron-job", "version": "1.2"}
        assert meta[META_CLIENT_CAPABILITIES] == {}
        assert record.headers["Mcp-Method"] == sent["method"]
        assert record.headers["Accept"] == ACCEPT
        assert record.headers["Content-Type"] == "application/json"
        assert record.headers["Authorization"] == "Bearer " + TOKEN
        assert "Mcp-Session-Id" not in record.headers
    assert "Mcp-Name" not in listing.headers and "Mcp-Name" not in ping.headers
    assert call.headers["Mcp-Name"] == "add"
    assert named.headers["Mcp-Name"] == "=?base64?" + base64.b64encode(
        "héllo wörld".encode("utf-8")).decode("ascii") + "?="
    assert named.status == 200
    assert body(call)["params"]["arguments"] == {"a": 1, "b": 2}
    assert [body(r)["id"] for r in (listing, call, named, ping)] == [1, 2, 3, 4]


def test_stateful_initialize_params(make_server):
    server = make_server()
    with client_for(server, protocol_version="2025-11-25",
                    capabilities={"roots": {"listChanged": False}}) as client:
        client.request("ping")
    init, notified, ping = server.calls()
    assert body(init) == {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"roots": {"listChanged": False}},
        "clientInfo": {"name": "mcpauth", "version": client._client_info["version"]}}}
    assert body(notified) == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert "_meta" not in body(ping).get("params", {})
    for record in (init, notified, ping):
        assert record.headers["Accept"] == ACCEPT
        assert record.headers["Content-Type"] == "application/json"


def test_caller_params_are_not_modified_and_meta_is_merged(make_server):
    server = make_server()
    params = {"_meta": {"progressToken": 7, META_PROTOCOL_VERSION: "1999-01-01"}}
    with client_for(server, protocol_version="2026-07-28") as client:
        client.request("tools/list", params)
    assert params == {"_meta": {"progressToken": 7, META_PROTOCOL_VERSION: "1999-01-01"}}
    meta = body(server.calls()[0])["params"]["_meta"]
    assert meta["progressToken"] == 7 and meta[META_PROTOCOL_VERSION] == "2026-07-28"


class EnterpriseProvider(AuthProvider):
    mcp_extension = EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION

    def token(self):
        return TOKEN


@pytest.mark.parametrize("kwargs, declared", [
    ({}, None),  # BearerTokenProvider declares no extension
    ({"auth": EnterpriseProvider()}, {EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION: {}}),
    ({"auth": None, "session_auth": EnterpriseProvider()},
     {EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION: {}}),
    ({"extensions": ["x.example/ext"]}, {"x.example/ext": {}}),
    ({"extensions": {"x.example/ext": {"v": 1}},
      "capabilities": {"extensions": {"y.example/other": {}}}},
     {"x.example/ext": {"v": 1}, "y.example/other": {}}),
])
def test_extension_declared_in_client_capabilities(make_server, kwargs, declared):
    server = make_server()
    session = requests.Session()
    session_auth = kwargs.pop("session_auth", None)
    if session_auth is not None:
        session.auth = session_auth
    with session, client_for(server, session=session, protocol_version="2026-07-28",
                             **kwargs) as client:
        client.list_tools()
    capabilities = server.calls()[0].info["client_capabilities"]
    assert capabilities.get("extensions") == declared


def test_client_credentials_provider_extension_and_cold_401():
    """The first request has no token: 401, the provider discovers, gets a token and
    replays; the client only sees the final answer (N1, N2)."""
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        with MCPClient(stack.mcp_url, auth=provider) as client:
            assert client.call_tool("whoami")["structuredContent"]["client_id"] \
                == stack.client_id
            client.list_tools()
        records = stack.mcp.mcp_requests()
        assert wire(stack.mcp) == [("tools/call", 401), ("tools/call", 200),
                                   ("tools/list", 200)]
        refused, replayed = records[0], records[1]
        assert "Authorization" not in refused.headers
        assert replayed.body == refused.body
        for name in ("MCP-Protocol-Version", "Mcp-Method", "Accept", "Content-Type"):
            assert replayed.headers[name] == refused.headers[name]
        caps = replayed.info["client_capabilities"]
        assert caps == {"extensions": {EXTENSION_OAUTH_CLIENT_CREDENTIALS: {}}}
        assert len(stack.as_.token_requests()) == 1


def test_a_warm_run_makes_exactly_one_http_request(tmp_path):
    """REQUIREMENTS issue 5: a cron run with a valid cached token makes one HTTP request
    in all, the MCP call itself: no token request, no discovery, no server/discover."""
    path = str(tmp_path / "tokens.json")

    def run(stack):
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             cache=FileTokenCache(path))
        with MCPClient(stack.mcp_url, auth=provider) as client:
            return client.call_tool("add", {"a": 2, "b": 3})

    with LoopbackStack() as stack:
        assert run(stack)["structuredContent"] == {"result": 5}  # cold: fills the file
        assert len(stack.as_.token_requests()) == 1
        stack.as_.reset_records()
        stack.mcp.reset_records()
        assert run(stack)["structuredContent"] == {"result": 5}  # warm: a new process
        assert stack.as_.requests == []
        assert [(r.method, r.url_path, r.status) for r in stack.mcp.requests] == [
            ("POST", "/mcp", 200)]
        call = stack.mcp.requests[0]
        assert body(call)["method"] == "tools/call"
        assert call.info["lifecycle"] == "stateless"
        assert call.headers["MCP-Protocol-Version"] == LATEST_PROTOCOL_VERSION


def test_provider_handles_an_injected_401_mid_session(make_server):
    server = make_server()
    refreshed = []
    provider = BearerTokenProvider(TOKEN, on_unauthorized=lambda ctx: refreshed.append(1))
    with client_for(server, auth=provider, protocol_version="2025-11-25") as client:
        client.connect()
        server.fail_next(401)
        assert client.call_tool("add", {"a": 1, "b": 1})["content"][0]["text"] == "2"
    assert refreshed == [1]


def test_401_without_a_provider_raises_unauthorized(make_server):
    server = make_server()
    with MCPClient(server.url) as client:
        with pytest.raises(UnauthorizedError) as info:
            client.list_tools()
    assert info.value.status_code == 401
    assert info.value.error is None  # RFC 6750 §3.1: no credentials, no error code
    assert info.value.resource_metadata == server.prm_url
    assert "no auth provider" in str(info.value)


def test_403_insufficient_scope_without_a_provider(make_server):
    server = make_server(required_scope="admin")
    with MCPClient(server.url, session=requests.Session(), protocol_version="2026-07-28",
                   headers={"X-Trace": "1"}) as client:
        client._session.headers["Authorization"] = "Bearer " + TOKEN
        with pytest.raises(InsufficientScopeError) as info:
            client.call_tool("echo")
        client._session.close()
    assert info.value.required_scope == "admin"
    assert server.calls()[0].headers["X-Trace"] == "1"


def test_session_auth_is_used_and_not_replaced(make_server):
    server = make_server()
    provider = BearerTokenProvider(TOKEN)
    with requests.Session() as session:
        session.auth = provider
        with MCPClient(server.url, session=session, protocol_version="2026-07-28") as client:
            client.list_tools()
        other = BearerTokenProvider("other-token")
        with MCPClient(server.url, auth=other, session=session,
                       protocol_version="2026-07-28") as client:
            with pytest.raises(UnauthorizedError):
                client.list_tools()
        assert session.auth is provider
        # A given session is not closed by the client: it still works.
        assert session.get(server.prm_url).status_code == 200


# ----------------------------------------------------------------------------- replies


@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
def test_sse_notifications_interleaved(make_server, version):
    server = make_server(response_mode="sse", sse_notifications=3)
    server.sse_priming_event = True
    seen = []
    with client_for(server, protocol_version=version, on_notification=seen.append) as client:
        assert client.call_tool("add", {"a": 1, "b": 2})["content"][0]["text"] == "3"
        client.list_tools()
    count = 6 if version == LATEST_PROTOCOL_VERSION else 9  # + initialize
    assert len(seen) == count and list(client.notifications) == seen
    assert seen[0] == {"jsonrpc": "2.0", "method": "notifications/message", "params": {
        "level": "info", "logger": "mcpauth-testing", "data": "notification 0"}}


def test_notifications_list_is_bounded(make_server):
    server = make_server(response_mode="sse", sse_notifications=60)
    with client_for(server, protocol_version="2026-07-28") as client:
        client.list_tools()
        client.list_tools()
        assert len(client.notifications) == 100
        assert client.notifications[-1]["params"]["data"] == "notification 59"


def stream_server(make_server, payload, content_type="text/event-stream", status=200):
    server = make_server()
    server.set_route(server.path, status, payload, {"Content-Type": content_type},
                     method="POST")
    return server


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_sse_multiline_data_comments_and_other_events(make_server, eol):
    reply = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}]}}
    text = json.dumps(reply, sort_keys=True)
    half = text.index(', "jsonrpc"') + 1  # between two JSON tokens
    lines = [
        "\ufeff: a comment", "", "id: 0", "data:", "",  # BOM, comment, priming event
        "event: endpoint", "data: {\"not\": \"json-rpc\"}", "",  # other event type: skipped
        "data: " + json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                               "params": {"progress": 1}}), "",
        "data: " + json.dumps({"jsonrpc": "2.0", "id": 99, "result": {}}), "",  # not ours
        "event: message", "id: 5", "retry: 100", "unknown: field",
        "data:" + text[:half], "data:" + text[half:], "", "data: trailing, never dispatched",
    ]
    server = stream_server(make_server, eol.join(lines).encode("utf-8"))
    # data lines are joined with LF, which is JSON whitespace: the reply still parses.
    with client_for(server, protocol_version="2026-07-28") as client:
        assert client.request("tools/list") == {"tools": [{"name": "a"}]}
        assert [n["method"] for n in client.notifications] == ["notifications/progress"]


@pytest.mark.parametrize("payload, content_type, status, expected", [
    (b"<html>secret-body</html>", "text/html", 200, "no JSON-RPC response"),
    (b"secret-body{", "application/json", 200, "not valid JSON"),
    (b'{"jsonrpc": "2.0", "id": 7, "result": {}}', "application/json", 200,
     "not a JSON-RPC response to request 1"),
    (b'{"id": 1, "result": "secret-body"}', "application/json", 200, "not JSON-RPC"),
    (b"data: secret-body\n\n", "text/event-stream", 200, "not JSON"),
    (b"data: {\"jsonrpc\": \"2.0\", \"id\": 2, \"result\": 1}\n\n", "text/event-stream", 200,
     "ended without the response"),
    (b"", "application/json", 202, "not valid JSON"),
    (b"secret-body", "text/plain", 500, "HTTP 500"),
    (b"secret-body", "text/plain", 400, "HTTP 400"),
])
def test_unusable_replies_raise_protocol_error_without_the_body(make_server, payload,
                                                                 content_type, status,
                                                                 expected):
    server = stream_server(make_server, payload, content_type, status)
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert expected in str(info.value)
    assert "secret-body" not in str(info.value) and "secret-body" not in repr(info.value)
    assert info.value.status_code == status


def test_oversized_replies_are_refused(make_server):
    server = make_server(response_mode="sse", sse_notifications=200)
    with client_for(server, protocol_version="2026-07-28", max_response_bytes=4096) as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert "4096 byte limit" in str(info.value)
    json_server = make_server()
    with client_for(json_server, protocol_version="2026-07-28",
                    max_response_bytes=200) as client:
        with pytest.raises(ProtocolError):
            client.list_tools()


def test_default_cap_is_16_mib(make_server):
    server = stream_server(make_server, b": " + b"x" * (16 * 1024 * 1024 + 10) + b"\n")
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert str(16 * 1024 * 1024) in str(info.value)


def test_server_request_in_the_stream_is_answered(make_server):
    server = make_server()
    with client_for(server, protocol_version="2025-11-25") as client:
        client.connect()
        server.set_route(server.path, 200, sse(
            'data: {"jsonrpc": "2.0", "id": "srv-1", "method": "ping"}\n\n',
            'data: {"jsonrpc": "2.0", "id": "srv-2", "method": "sampling/createMessage"}\n\n',
            'data: {"jsonrpc": "2.0", "id": 2, "result": {"ok": true}}\n\n'),
            {"Content-Type": "text/event-stream"}, method="POST", times=1)
        assert client.request("tools/list") == {"ok": True}
    answers = [body(r) for r in server.mcp_requests()[-2:]]
    assert answers == [{"jsonrpc": "2.0", "id": "srv-1", "result": {}},
                       {"jsonrpc": "2.0", "id": "srv-2",
                        "error": {"code": -32601, "message": "Method not found"}}]
    assert all(r.headers["MCP-Protocol-Version"] == "2025-11-25"
               for r in server.mcp_requests()[-2:])


# ----------------------------------------------------------------------------- results and errors


def test_pagination_follows_cursors(make_server):
    server = make_server(page_size=1)
    with client_for(server) as client:
        assert [t["name"] for t in client.list_tools()] == BUILTIN_TOOLS
    cursors = [body(r)["params"].get("cursor") for r in server.calls("tools/list")]
    assert cursors == [None, "page-1", "page-2", "page-3"]


def test_repeated_cursor_is_refused(make_server):
    server = make_server()
    for msg_id in (2, 1):  # a route set later is matched first
        server.set_route(server.path, 200, {"jsonrpc": "2.0", "id": msg_id, "result": {
            "tools": [{"name": "t%d" % msg_id}], "nextCursor": "same"}}, method="POST",
            times=1)
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert "repeated nextCursor" in str(info.value)


def test_tool_error_result_is_returned(make_server):
    server = make_server()
    with client_for(server) as client:
        result = client.call_tool("fail")
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "tool failed"}]


@pytest.mark.parametrize("version, status", [("2026-07-28", 404), ("2025-11-25", 200)])
def test_json_rpc_errors_raise_mcp_error(make_server, version, status):
    server = make_server()
    with client_for(server, protocol_version=version) as client:
        with pytest.raises(MCPError) as info:
            client.call_tool("no-such-tool", {"secret": "argument"})
        assert info.value.code == -32602
        assert str(info.value) == "Unknown tool: no-such-tool"
        with pytest.raises(MCPError) as info:
            client.request("no/such/method")
        assert info.value.code == -32601 and info.value.status_code == status
        assert info.value.message == "Method not found: no/such/method"


def test_json_rpc_error_on_http_500_carries_data(make_server):
    server = stream_server(make_server, {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32603, "message": "Internal\nerror", "data": {"trace": [1, 2]}}},
        "application/json", 500)
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(MCPError) as info:
            client.request("tools/list")
    assert (info.value.code, info.value.data, info.value.status_code) == (
        -32603, {"trace": [1, 2]}, 500)
    assert str(info.value) == "Internal error" and info.value.retryable is True


@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
def test_client_notifications_get_202(make_server, version):
    server = make_server()
    with client_for(server, protocol_version=version) as client:
        client.notify("notifications/cancelled", {"requestId": 1, "reason": "x"})
    record = server.calls("notifications/cancelled")[0]
    assert record.status == 202 and "id" not in body(record)
    if version == LATEST_PROTOCOL_VERSION:
        assert record.headers["Mcp-Method"] == "notifications/cancelled"
        assert body(record)["params"]["_meta"][META_PROTOCOL_VERSION] == version


def test_notification_refused_raises(make_server):
    server = make_server()
    server.set_route(server.path, 400, {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32000, "message": "Bad Request"}}, method="POST")
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(MCPError) as info:
            client.notify("notifications/cancelled")
    assert info.value.code == -32000


# ----------------------------------------------------------------------------- transport


def test_connection_failure_is_a_transport_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with MCPClient("http://127.0.0.1:%d/mcp" % port, protocol_version="2026-07-28",
                   timeout=5) as client:
        with pytest.raises(TransportError) as info:
            client.list_tools()
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    assert info.value.retryable is True


def test_redirects_are_not_followed(make_server):
    server = make_server()
    server.set_route(server.path, 307, "", {"Location": "http://127.0.0.1:1/elsewhere?q=1"})
    with client_for(server, protocol_version="2026-07-28") as client:
        with pytest.raises(ProtocolError) as info:
            client.list_tools()
    assert "http://127.0.0.1:1/elsewhere" in str(info.value) and "q=1" not in str(info.value)
    assert len(server.mcp_requests()) == 1


def test_close_is_idempotent_and_final(make_server):
    server = make_server()
    client = client_for(server, protocol_version="2026-07-28")
    client.list_tools()
    client.close()
    client.close()
    with pytest.raises(ConfigurationError):
        client.list_tools()
    with pytest.raises(ConfigurationError):
        client.connect()


def test_logging_names_methods_but_never_tokens_or_arguments(make_server, caplog):
    server = make_server(response_mode="sse", sse_notifications=1)
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    with client_for(server) as client:
        client.call_tool("echo", {"password": "hunter2-argument"})
    legacy = make_server(legacy_only=True)
    with client_for(legacy) as client:
        client.call_tool("echo", {"password": "hunter2-argument"})
    text = caplog.text
    assert "tools/call" in text and "server/discover" not in text  # no probe
    assert "is not a 2026-07-28 server (HTTP 400); falling back to initialize" in text
    assert "notifications/message" in text
    assert TOKEN not in text and "hunter2-argument" not in text
    assert "notification 0" not in text


@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
def test_peer_method_names_cannot_forge_log_lines(make_server, caplog, version):
    """A notification or server request whose method holds a line break (CR, LF, NEL,
    U+2028) is logged on one line: the server cannot forge an mcpauth log line."""
    server = make_server()
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    forged = "mcpauth: WARNING: forged line"
    with client_for(server, protocol_version=version) as client:
        client.connect()
        server.set_route(server.path, 200, sse(*[
            "data: %s\n\n" % json.dumps(m) for m in [
                {"jsonrpc": "2.0", "method": "x\n" + forged},
                {"jsonrpc": "2.0", "method": "y\r\n" + forged + "\u2028z\x85"},
                {"jsonrpc": "2.0", "id": "srv-1", "method": "ping\n" + forged},
                {"jsonrpc": "2.0", "id": 2, "result": {"ok": True}}]]),
            {"Content-Type": "text/event-stream"}, method="POST", times=1)
        assert client.request("tools/list") == {"ok": True}
        # Delivered to the caller unchanged; only the log line is cleaned.
        assert [n["method"] for n in client.notifications][-2:] == [
            "x\n" + forged, "y\r\n" + forged + "\u2028z\x85"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("notification x " + forged in m for m in messages)
    assert any("server request ping " + forged in m for m in messages)
    for m in messages:
        assert not any(ch in m for ch in "\r\n\x85\u2028\u2029"), repr(m)


def test_repr_hides_everything_but_url_and_version(make_server):
    server = make_server()
    client = client_for(server, protocol_version="2025-11-25")
    with client:
        client.connect()
        assert repr(client) == "MCPClient(url=%r, protocol_version='2025-11-25')" % server.url
        assert TOKEN not in repr(client)


@pytest.mark.parametrize("kwargs, error", [
    ({"protocol_version": "2024-10-07"}, ConfigurationError),
    ({"headers": {"authorization": "Bearer x"}}, ConfigurationError),
    ({"headers": {"Mcp-Session-Id": "x"}}, ConfigurationError),
    ({"client_info": {"name": "x"}}, ConfigurationError),
    ({"timeout": 0}, ConfigurationError),
    ({"extensions": "io.modelcontextprotocol/oauth-client-credentials"}, ConfigurationError),
    ({"on_notification": 1}, ConfigurationError),
    ({"url": "http://mcp.example.com/mcp"}, InsecureEndpointError),
    ({"url": "ftp://127.0.0.1/mcp"}, InsecureEndpointError),
])
def test_constructor_validation(kwargs, error):
    url = kwargs.pop("url", "http://127.0.0.1:9/mcp")
    with pytest.raises(error):
        MCPClient(url, **kwargs)


def test_argument_types(make_server):
    server = make_server()
    with client_for(server) as client:
        with pytest.raises(TypeError):
            client.call_tool(3)
        with pytest.raises(TypeError):
            client.call_tool("echo", ["not", "a", "mapping"])
        with pytest.raises(TypeError):
            client.request("tools/list", ["x"])
        with pytest.raises(ConfigurationError):
            client.request("initialize")
    assert server.mcp_requests() == []


# ----------------------------------------------------------------------------- pure helpers


def chunked(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_line_splitting_across_chunks(size):
    data = b"a\r\nb\rc\nd\r\r\ne\r"
    lines = list(_iter_lines(chunked(data, size), 1000, "x", 200))
    assert lines == [b"a", b"b", b"c", b"d", b"", b"e"]


def test_line_splitting_cap():
    with pytest.raises(ProtocolError):
        list(_iter_lines(chunked(b"x" * 100, 10), 99, "x", 200))


def test_sse_event_rules():
    text = ("data: a\ndata:b\ndata\n\n"          # "data" with no colon: empty value
            "id: 1\x002\nevent: custom\ndata:  two spaces\n\n"
            ":only a comment\n\n"
            "data: last")                         # no blank line: never dispatched
    events = list(_iter_sse_events(text.encode("utf-8").split(b"\n")))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("message", "a\nb\n", ""), ("custom", " two spaces", "")]


@pytest.mark.parametrize("value, expected", [
    ("add", "add"),
    ("file:///tmp/a b.txt", "file:///tmp/a b.txt"),
    ("naïve", "=?base64?bmHDr3Zl?="),
    (" padded", "=?base64?IHBhZGRlZA==?="),
    ("line\nbreak", "=?base64?bGluZQpicmVhaw==?="),
    ("=?base64?abc?=", "=?base64?PT9iYXNlNjQ/YWJjPz0=?="),
    ("", "=?base64??="),
])
def test_mcp_name_header_encoding(value, expected):
    assert _header_value(value) == expected
