"""mcpauth.testing's MCPServer on the wire, seen from raw HTTP (no MCPClient).

Its contract for clients under test: SEP-2549 ``ttlMs``/``cacheScope`` on 2026-07-28 list
results, SEP-2243 ``Mcp-Param-*`` checks for ``x-mcp-header`` parameters, SSE streams
closed early and resumed with ``GET`` + ``Last-Event-ID``, and keep-alive-only streams.
"""

import base64
import json

import pytest
import requests

from mcpauth.testing import MCPServer

TOKEN = "raw-wire-token"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}}


def post(server, method, params=None, headers=None, msg_id=1, stream=False):
    body = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params or {}}
    all_headers = {"Authorization": "Bearer " + TOKEN, "Accept": ACCEPT,
                   "Content-Type": "application/json"}
    all_headers.update(headers or {})
    return requests.post(server.url, data=json.dumps(body), headers=all_headers, timeout=5,
                         stream=stream)


def modern(server, method, params=None, headers=None, **kw):
    params = dict(params or {}, _meta=META)
    all_headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if method == "tools/call":
        all_headers["Mcp-Name"] = params["name"]
    all_headers.update(headers or {})
    return post(server, method, params, all_headers, **kw)


@pytest.fixture
def server():
    with MCPServer(static_tokens=[TOKEN]) as srv:
        srv.add_tool("route", lambda arguments, token: "routed", "", {
            "type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "urgent": {"type": "boolean", "x-mcp-header": "Urgent"},
                "n": {"type": "object", "properties": {
                    "count": {"type": "integer", "x-mcp-header": "Count"}}}}})
        yield srv
        assert srv.errors == []


def test_list_results_carry_the_cache_hints_on_2026_only(server):
    result = modern(server, "tools/list").json()["result"]
    assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == (
        "complete", 0, "private")
    discover = modern(server, "server/discover").json()["result"]
    assert (discover["ttlMs"], discover["cacheScope"]) == (0, "private")
    call = modern(server, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    assert "ttlMs" not in call.json()["result"]
    init = post(server, "initialize", {"protocolVersion": LEGACY, "capabilities": {},
                                       "clientInfo": {"name": "raw", "version": "1"}})
    listed = post(server, "tools/list", headers={"MCP-Protocol-Version": LEGACY}, msg_id=2)
    assert init.status_code == 200 and "ttlMs" not in listed.json()["result"]


def b64(text):
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


@pytest.mark.parametrize("arguments, headers, status", [
    ({"region": "eu"}, {"Mcp-Param-Region": "eu"}, 200),
    ({"region": "é u"}, {"Mcp-Param-Region": b64("é u")}, 200),
    ({"region": "eu", "urgent": False, "n": {"count": 3}},
     {"Mcp-Param-Region": "eu", "Mcp-Param-Urgent": "false", "Mcp-Param-Count": "3"}, 200),
    ({"region": "eu", "urgent": None}, {"Mcp-Param-Region": "eu"}, 200),
    ({"region": "eu"}, {}, 400),                                   # missing
    ({"region": "eu"}, {"Mcp-Param-Region": "us"}, 400),           # another value
    ({"region": "eu", "urgent": None},
     {"Mcp-Param-Region": "eu", "Mcp-Param-Urgent": "null"}, 400),  # null sends none
    ({}, {"Mcp-Param-Region": "eu"}, 400),                         # omitted sends none
])
def test_mcp_param_headers_are_checked(server, arguments, headers, status):
    reply = modern(server, "tools/call", {"name": "route", "arguments": arguments},
                   headers)
    assert reply.status_code == status
    if status == 400:
        assert reply.json()["error"]["code"] == -32020


def test_a_stream_closed_early_is_resumed_by_get(server):
    server.response_mode = "sse"
    server.sse_close_early = 2
    server.sse_retry_ms = 250
    init = post(server, "initialize", {"protocolVersion": LEGACY, "capabilities": {},
                                       "clientInfo": {"name": "raw", "version": "1"}})
    assert init.status_code == 200
    first = post(server, "tools/list", headers={"MCP-Protocol-Version": LEGACY}, msg_id=7)
    assert first.headers["Content-Type"] == "text/event-stream"
    assert first.text.startswith("id: ev-") and "retry: 250\n" in first.text
    assert "result" not in first.text
    last = first.text.split("\n")[0][4:]
    headers = {"Authorization": "Bearer " + TOKEN, "Accept": "text/event-stream"}
    second = requests.get(server.url, headers=dict(headers, **{"Last-Event-ID": last}),
                          timeout=5)
    assert "result" not in second.text  # closed early once more
    again = second.text.split("\n")[0][4:]
    third = requests.get(server.url, headers=dict(headers, **{"Last-Event-ID": again}),
                         timeout=5)
    data = [line[6:] for line in third.text.split("\n") if line.startswith("data: ")]
    assert json.loads(data[0])["id"] == 7
    # a resumed stream is delivered once; an unknown id gets what any GET gets
    assert requests.get(server.url, headers=dict(headers, **{"Last-Event-ID": again}),
                        timeout=5).status_code == 405


def test_a_keepalive_stream_sends_comments_and_never_a_reply(server):
    server.sse_keepalive_forever = 0.01
    reply = modern(server, "tools/list", stream=True)
    try:
        assert reply.headers["Transfer-Encoding"] == "chunked"
        seen = b""
        for chunk in reply.iter_content(64):
            seen += chunk
            if len(seen) > 200:
                break
    finally:
        reply.close()
    assert set(seen.split(b"\n\n")[:-1]) == {b": keepalive"}
