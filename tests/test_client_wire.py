"""MCPClient on the wire, against the loopback MCP server (mcpauth.testing), real sockets.

SEP-2243 ``Mcp-Param-*`` headers from ``x-mcp-header`` tool parameters (and the exclusion
of tools with invalid declarations), tool schemas returned exactly as sent (SEP-1613,
SEP-2106), SSE streams closed early and resumed with ``GET`` + ``Last-Event-ID``
("Resumability and Redelivery"), the -32022 retry (SEP-2575), the per-call deadline that
SSE keep-alive comments do not extend, and the memory an SSE reply costs.
"""

import base64
import json
import logging
import time
import tracemalloc

import pytest

from mcpauth import BearerTokenProvider, ConfigurationError, ProtocolError, TransportError
from mcpauth.client import MCPClient
from mcpauth._headers import encode_header_value, header_bindings, param_headers
from mcpauth.errors import MCPError

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional (the nocrypto env)
    hypothesis = None

pytestmark = pytest.mark.e2e

TOKEN = "wire-test-token-5d1c"  # accepted by the make_server fixture (conftest.py)
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MiB = 1024 * 1024


def client_for(server, **kw):
    kw.setdefault("auth", BearerTokenProvider(TOKEN))
    return MCPClient(server.url, **kw)


def methods(server):
    return [r.info["jsonrpc_method"] for r in server.calls()]


def b64(text):
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


ROUTE_SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
        "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
        "target": {"type": "object", "properties": {
            "zone": {"type": "string", "x-mcp-header": "Zone"}}},
        "note": {"type": "string"},
        "ratio": {"type": "number"},
    },
    "required": ["region"],
}


def route_server(make_server, **kw):
    server = make_server(**kw)
    server.add_tool("route", lambda arguments, token: "routed", "x-mcp-header parameters",
                    ROUTE_SCHEMA)
    return server


# ----------------------------------------------------------------------------- SEP-2243

def test_x_mcp_header_arguments_are_mirrored_into_mcp_param_headers(make_server):
    server = route_server(make_server)
    with client_for(server, protocol_version=MODERN) as client:
        client.list_tools()
        result = client.call_tool("route", {
            "region": "eu west ü", "priority": 7, "verbose": False,
            "target": {"zone": " z1"}, "note": "not mirrored", "ratio": 0.5})
        assert result["content"][0]["text"] == "routed"
        client.call_tool("route", {"region": "us-east-1", "verbose": None,
                                   "priority": True})
    first, second = [r.info["param_headers"] for r in server.calls("tools/call")]
    assert first == {"Mcp-Param-Region": b64("eu west ü"), "Mcp-Param-Priority": "7",
                     "Mcp-Param-Verbose": "false", "Mcp-Param-Zone": b64(" z1")}
    # null and omitted arguments send no header; a boolean is true/false
    assert second == {"Mcp-Param-Region": "us-east-1", "Mcp-Param-Priority": "true"}


@pytest.mark.parametrize("value, expected", [
    ("plain ascii", "plain ascii"), ("", b64("")), ("\tindented", b64("\tindented")),
    ("line1\r\nline2", b64("line1\r\nline2")), ("trailing ", b64("trailing ")),
    ("=?base64?eA==?=", b64("=?base64?eA==?=")), ("世界", b64("世界")),
])
def test_mcp_param_value_encoding(make_server, value, expected):
    server = route_server(make_server)
    with client_for(server, protocol_version=MODERN) as client:
        client.list_tools()
        client.call_tool("route", {"region": value})
    assert server.calls("tools/call")[0].info["param_headers"] == {
        "Mcp-Param-Region": expected}


def test_a_call_before_listing_learns_the_headers_after_a_mismatch(make_server):
    server = route_server(make_server)
    with client_for(server, protocol_version=MODERN) as client:
        assert client.call_tool("route", {"region": "r1"})["content"][0]["text"] == "routed"
        client.call_tool("route", {"region": "r2"})
    # refused once for the missing header, then listed, then sent with it; later calls
    # know the tool
    assert [(r.info["jsonrpc_method"], r.status) for r in server.calls()] == [
        ("tools/call", 400), ("tools/list", 200), ("tools/call", 200), ("tools/call", 200)]


def test_a_header_mismatch_on_a_known_tool_is_raised(make_server):
    server = route_server(make_server)
    with client_for(server, protocol_version=MODERN) as client:
        client.list_tools()
        server.add_tool("route", lambda arguments, token: "x", "", {
            "type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Area"}}})
        with pytest.raises(MCPError) as info:
            client.call_tool("route", {"region": "r1"})
    assert info.value.code == -32020 and info.value.status_code == 400
    assert methods(server) == ["tools/list", "tools/call"]  # no loop


INVALID = {
    "empty": {"v": {"type": "string", "x-mcp-header": ""}},
    "number": {"v": {"type": "number", "x-mcp-header": "Score"}},
    "object": {"v": {"type": "object", "x-mcp-header": "Data"}},
    "untyped": {"v": {"x-mcp-header": "Data"}},
    "space": {"v": {"type": "string", "x-mcp-header": "My Region"}},
    "colon": {"v": {"type": "string", "x-mcp-header": "Region:1"}},
    "non_ascii": {"v": {"type": "string", "x-mcp-header": "Région"}},
    "duplicate": {"a": {"type": "string", "x-mcp-header": "MyField"},
                  "b": {"type": "string", "x-mcp-header": "myfield"}},
    "in_items": {"v": {"type": "array", "items": {"type": "string",
                                                  "x-mcp-header": "Item"}}},
    "in_anyof": {"v": {"anyOf": [{"type": "string", "x-mcp-header": "Alt"}]}},
}


def test_tools_with_invalid_x_mcp_header_are_left_out(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="mcpauth")
    server = make_server()
    for name, props in INVALID.items():
        server.add_tool("bad_" + name, lambda arguments, token: "called", "",
                        {"type": "object", "properties": props})
    server.add_tool("good", lambda arguments, token: "ok", "", {
        "type": "object", "properties": {"v": {"type": "string", "x-mcp-header": "V"}},
        "$defs": {"unused": {"type": "string"}}})
    with client_for(server, protocol_version=MODERN) as client:
        names = [t["name"] for t in client.list_tools()]
        assert names == ["echo", "add", "whoami", "fail", "good"]
        with pytest.raises(ProtocolError) as info:
            client.call_tool("bad_number", {"v": 1})
        assert "excluded" in str(info.value)
        assert client.call_tool("good", {"v": "x"})["content"][0]["text"] == "ok"
    assert methods(server) == ["tools/list", "tools/call"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == len(INVALID)
    assert any("bad_in_items" in m and "reachable" in m for m in warned)


def test_the_2025_wire_knows_no_x_mcp_header(make_server):
    server = make_server()
    server.add_tool("bad", lambda arguments, token: "called", "", {
        "type": "object", "properties": {"v": {"type": "number", "x-mcp-header": "S"}}})
    with client_for(server, protocol_version=LEGACY) as client:
        assert "bad" in [t["name"] for t in client.list_tools()]
        assert client.call_tool("bad", {"v": 1})["content"][0]["text"] == "called"
    assert "Mcp-Param-S" not in server.calls("tools/call")[0].headers


def test_mcp_param_headers_cannot_be_set_by_the_caller(make_server):
    server = make_server()
    with pytest.raises(ConfigurationError):
        client_for(server, headers={"Mcp-Param-Region": "x"})
    with pytest.raises(ConfigurationError):
        client_for(server, headers={"Last-Event-ID": "x"})


# ----------------------------------------------------------------------------- schemas

def test_tool_schemas_reach_the_caller_exactly_as_sent(make_server):
    server = make_server()
    canary = server.base_url + "/canary/profile-schema.json"
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addr", "type": "object",
                              "properties": {"street": {"type": "string"}}},
                  "userId": {"type": "string", "pattern": "^[a-z0-9-]+$"}},
        "properties": {"id": {"$ref": "#/$defs/userId"}, "profile": {"$ref": canary},
                       "home": {"$ref": "#addr"}},
        "allOf": [{"anyOf": [{"required": ["id"]}, {"required": ["home"]}]}],
        "if": {"properties": {"id": {"const": "root"}}}, "then": {"required": ["home"]},
        "else": {"not": {"required": ["x"]}},
        "additionalProperties": False,
        "x-vendor": {"kept": [1, 2.5, None, True]},
    }
    server.add_tool("lookup", lambda arguments, token: "ok", "", schema)
    for version in (MODERN, LEGACY):
        with client_for(server, protocol_version=version) as client:
            tool = [t for t in client.list_tools() if t["name"] == "lookup"][0]
        assert tool["inputSchema"] == schema
        assert json.dumps(tool["inputSchema"], sort_keys=True) == json.dumps(schema,
                                                                             sort_keys=True)
    assert server.requests_to("/canary/profile-schema.json") == []


@pytest.mark.parametrize("method", ["tools/\u2603", "a\r\nX-Injected: 1", " padded"])
def test_a_method_name_that_is_no_plain_header_value_goes_encoded_in_mcp_method(
        make_server, method):
    # Like Mcp-Name: never a UnicodeEncodeError from http.client, never a header line
    # of the caller's text, never a transport error for what the server must judge.
    server = make_server()
    with client_for(server, protocol_version=MODERN) as client:
        with pytest.raises(MCPError):
            client.request(method)
    record = [r for r in server.mcp_requests() if r.method == "POST"][-1]
    assert record.headers["Mcp-Method"] == b64(method)
    assert "X-Injected" not in record.headers


def test_the_reason_a_tool_is_excluded_is_cleaned_peer_text(make_server):
    # The declaration's name is the server's: a megabyte of it, or a line separator,
    # must not reach the exception message as it is.
    server = make_server()
    hostile = "Bad\u2028Name " + "x" * 1000000
    server.add_tool("hostile", lambda arguments, token: "called", "", {
        "type": "object", "properties": {"v": {"type": "string", "x-mcp-header": hostile}}})
    with client_for(server, protocol_version=MODERN) as client:
        client.list_tools()
        with pytest.raises(ProtocolError) as info:
            client.call_tool("hostile", {"v": "x"})
    message = str(info.value)
    assert "excluded" in message and "not an HTTP field name token" in message
    assert len(message) < 1000 and "\u2028" not in message


def test_lone_surrogates_in_mirrored_values_are_no_unicode_error(make_server):
    # JSON can carry "\\ud800" (a tool name from tools/list, an argument from a JSON
    # file); the body escapes it, and the headers must not fail on it either.
    server = route_server(make_server)
    with client_for(server, protocol_version=MODERN) as client:
        client.list_tools()
        for name, arguments in (("route", {"region": "eu\ud800"}), ("\udcff", {})):
            with pytest.raises(MCPError):
                client.call_tool(name, arguments)


# ----------------------------------------------------------------------------- SSE resume

def closing_sse_server(make_server, closes, retry_ms):
    """An SSE server that closes each tool call's stream ``closes`` times early."""
    server = make_server(response_mode="sse")
    server.sse_close_early = closes
    server.sse_retry_ms = retry_ms
    return server


def timed_add(server):
    """Call the add tool on the legacy wire: (result, seconds the call took)."""
    with client_for(server, protocol_version=LEGACY) as client:
        client.connect()
        started = time.monotonic()
        result = client.call_tool("add", {"a": 2, "b": 3})
        return result, time.monotonic() - started


def test_a_stream_closed_early_is_resumed_with_get_and_last_event_id(make_server):
    server = closing_sse_server(make_server, 2, 300)
    result, elapsed = timed_add(server)
    assert result["structuredContent"] == {"result": 5}
    records = [r for r in server.mcp_requests() if r.info.get("jsonrpc_method") == "tools/call"
               or r.method == "GET"]
    assert [r.method for r in records] == ["POST", "GET", "GET"]
    post, get1, get2 = records
    assert get1.headers["Last-Event-ID"] != get2.headers["Last-Event-ID"]
    assert get1.headers["Accept"] == "text/event-stream"
    assert get1.headers["MCP-Protocol-Version"] == LEGACY
    assert get1.headers["Authorization"] == "Bearer " + TOKEN
    # the retry time is respected before each reconnection
    assert get1.time - post.time >= 0.28 and get2.time - get1.time >= 0.28
    assert elapsed >= 0.56


def test_a_resumed_stream_carries_the_session(make_server):
    server = make_server(response_mode="sse", sessions=True)
    server.sse_close_early = 1
    server.sse_retry_ms = 10
    with client_for(server, protocol_version=LEGACY) as client:
        assert client.call_tool("echo", {"x": 1})["content"][0]["text"] == '{"x": 1}'
        session = client.session_id
    get = server.requests_to(server.path, "GET")[0]
    assert get.headers["Mcp-Session-Id"] == session


def test_a_stream_closed_without_an_event_id_is_an_error(make_server):
    server = make_server()
    server.set_route(server.path, 200, b"retry: 10\ndata: \n\n",
                     {"Content-Type": "text/event-stream"}, method="POST")
    with client_for(server, protocol_version=LEGACY) as client:
        with pytest.raises(ProtocolError) as info:
            client.request("tools/list")
    assert "ended without the response" in str(info.value)
    assert server.requests_to(server.path, "GET") == []


def test_the_2026_wire_has_no_stream_to_resume(make_server):
    server = make_server()
    server.set_route(server.path, 200, b"id: ev-1\nretry: 10\ndata: \n\n",
                     {"Content-Type": "text/event-stream"}, method="POST")
    with client_for(server, protocol_version=MODERN) as client:
        with pytest.raises(ProtocolError):
            client.request("tools/list")
    assert server.requests_to(server.path, "GET") == []


def test_a_resume_the_server_refuses_is_an_error(make_server):
    server = make_server()
    with client_for(server, protocol_version=LEGACY) as client:
        client.connect()
        server.set_route(server.path, 200, b"id: unknown\nretry: 10\ndata: \n\n",
                         {"Content-Type": "text/event-stream"}, method="POST")
        with pytest.raises(ProtocolError) as info:
            client.request("tools/list")
    assert "resuming it with GET got HTTP 405" in str(info.value)
    assert info.value.status_code == 405


@pytest.mark.parametrize("event_id", ["\u2603 caf\u00e9", "ev-\U0001f600"])
def test_a_non_ascii_event_id_is_sent_back_as_its_utf8_bytes(make_server, event_id):
    # WHATWG HTML §9.2.6: the id is any text; the reconnection repeats it. A header that
    # http.client cannot encode as Latin-1 must not escape as a UnicodeEncodeError.
    server = make_server()
    with client_for(server, protocol_version=LEGACY) as client:
        client.connect()
        body = "id: {}\nretry: 10\ndata: \n\n".format(event_id).encode("utf-8")
        server.set_route(server.path, 200, body, {"Content-Type": "text/event-stream"},
                         method="POST")
        with pytest.raises(ProtocolError) as info:
            client.request("tools/list")
    assert "resuming it with GET got HTTP 405" in str(info.value)
    get = server.requests_to(server.path, "GET")[0]
    assert get.headers["Last-Event-ID"].encode("latin-1") == event_id.encode("utf-8")


def test_resumes_that_bring_nothing_new_back_off(make_server):
    # A server that sets retry: 0 and closes every resumed stream at once, with nothing
    # new, must not get a burst of GETs: the wait doubles while no new event arrives.
    server = make_server()
    stream = b"id: stuck\nretry: 0\ndata: \n\n"
    with client_for(server, protocol_version=LEGACY, call_timeout=2) as client:
        client.connect()
        server.set_route(server.path, 200, stream, {"Content-Type": "text/event-stream"},
                         method="POST")
        server.set_route(server.path, 200, stream, {"Content-Type": "text/event-stream"},
                         method="GET")
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            client.request("tools/list")
        assert time.monotonic() - started < 2.5
    assert "2 s call timeout" in str(info.value)
    assert 3 <= len(server.requests_to(server.path, "GET")) <= 6


def test_resumes_that_bring_new_events_keep_the_server_retry_time(make_server, monkeypatch):
    # Each resume brought a new event, so each wait is the server's retry: 0 ms (no idle
    # back-off). The waits are recorded as asked for, not inferred from wall time, which a
    # loaded machine stretches.
    from mcpauth import _wire

    waits = []
    real_sleep = _wire.CallLimits.sleep

    def recorded(limits, seconds, what):
        waits.append(seconds)
        return real_sleep(limits, seconds, what)

    monkeypatch.setattr(_wire.CallLimits, "sleep", recorded)
    server = closing_sse_server(make_server, 5, 0)
    result, elapsed = timed_add(server)
    assert result["structuredContent"] == {"result": 5}
    assert waits == [0.0] * 5 and elapsed < 3.0  # a doubling back-off would wait 3.1 s
    assert len(server.requests_to(server.path, "GET")) == 5


def test_a_retry_time_past_the_deadline_fails_at_once(make_server):
    server = make_server(response_mode="sse")
    server.sse_close_early = 1
    server.sse_retry_ms = 60000
    with client_for(server, protocol_version=LEGACY, call_timeout=2) as client:
        client.connect()
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            client.call_tool("add", {"a": 1, "b": 2})
        assert time.monotonic() - started < 1.5
    assert "2 s call timeout" in str(info.value)
    assert server.requests_to(server.path, "GET") == []


# ----------------------------------------------------------------------------- deadline

@pytest.mark.parametrize("version", [MODERN, LEGACY])
def test_keepalive_comments_do_not_extend_the_call(make_server, version):
    server = make_server()
    with client_for(server, protocol_version=version, call_timeout=1.0, timeout=30) as client:
        client.connect()
        server.sse_keepalive_forever = 0.05
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            client.list_tools()
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0
    assert "did not complete within the 1 s call timeout" in str(info.value)


def test_a_silent_server_is_bounded_by_the_deadline_not_the_gap_timeout(make_server):
    server = make_server()
    # A stream that sends its headers and then nothing: the 30 s read gap would wait on.
    server.set_route(server.path, 200, None, {"Content-Type": "text/event-stream"},
                     method="POST")
    server._routes[server.path][0].response.stream = _silence(server)
    with client_for(server, protocol_version=MODERN, call_timeout=1.0, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(TransportError):
            client.list_tools()
        assert time.monotonic() - started < 2.5


def _silence(server):
    while not server._stopping:
        time.sleep(0.05)
        yield b""


def test_call_timeout_must_be_a_positive_number(make_server):
    server = make_server()
    for bad in (0, -1, True, float("inf"), float("nan"), "5"):
        with pytest.raises(ConfigurationError):
            client_for(server, call_timeout=bad)
    assert client_for(server).call_timeout == 300.0


# ----------------------------------------------------------------------------- SEP-2575

@pytest.mark.parametrize("pinned", [MODERN, None])
def test_after_32022_the_client_retries_a_version_the_server_lists(make_server, pinned):
    server = make_server()
    refusal = {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32022, "message": "Unsupported protocol version",
        "data": {"supported": [MODERN], "requested": MODERN}}}
    server.set_route(server.path, 400, refusal, method="POST", times=1)
    with client_for(server, protocol_version=pinned) as client:
        assert len(client.list_tools()) == 4
        assert client.protocol_version == MODERN
    retried = server.calls("tools/list")[0]
    assert retried.headers["MCP-Protocol-Version"] == MODERN
    assert [r.status for r in server.mcp_requests()] == [400, 200]


# ----------------------------------------------------------------------------- memory

def test_a_16_mib_sse_reply_costs_a_small_multiple_of_its_size(make_server):
    text = "x" * (16 * MiB - 200)
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"text": text}})
    body = ("event: message\ndata: " + payload + "\n\n").encode("ascii")
    server = make_server()
    server.set_route(server.path, 200, body, {"Content-Type": "text/event-stream"},
                     method="POST")
    del payload
    with client_for(server, protocol_version=MODERN,
                    max_response_bytes=len(body) + 1) as client:
        tracemalloc.start()
        try:
            result = client.request("tools/list")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(result["text"]) == len(text)
    # the result itself is 1x; reading and parsing the stream stays within 2.5x in all
    # (it was about 7x: split, slice, decode, join and parse copies alive at once)
    print("peak %.2fx the reply" % (peak / len(body)))
    assert peak < 2.5 * len(body), peak / len(body)


# ----------------------------------------------------------------------------- pure helpers

def test_header_bindings_walk_subschemas_not_data():
    ok = {"type": "object", "properties": {
        "a": {"type": "string", "x-mcp-header": "A",
              "default": {"x-mcp-header": "data"}, "examples": [{"x-mcp-header": 1}]},
        "b": {"type": "object", "properties": {
            "c": {"type": "integer", "x-mcp-header": "C"}}}},
        "x-vendor": {"x-mcp-header": "not a schema"}, "const": {"x-mcp-header": "x"}}
    assert header_bindings(ok) == (((("a",), "A"), (("b", "c"), "C")), None)
    for where in ({"$defs": {"d": {"type": "string", "x-mcp-header": "D"}}},
                  {"patternProperties": {"^x": {"type": "string", "x-mcp-header": "P"}}},
                  {"additionalProperties": {"type": "string", "x-mcp-header": "Q"}},
                  {"prefixItems": [{"type": "string", "x-mcp-header": "R"}]},
                  {"if": {"type": "string", "x-mcp-header": "S"}}):
        bindings, reason = header_bindings(dict(where, type="object"))
        assert bindings is None and "reachable" in reason
    assert header_bindings(None) == ((), None)
    assert header_bindings({"x-mcp-header": "Root"}) == ((), None)  # not a property


if hypothesis is not None:
    _JSON = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["type", "properties", "x-mcp-header", "items", "anyOf",
                             "$defs", "a", "string", "integer"]) | st.text(max_size=5),
            inner, max_size=4),
        max_leaves=30)
    _ARGUMENTS = st.dictionaries(st.text(max_size=5), st.none() | st.booleans()
                                 | st.integers() | st.floats() | st.text(), max_size=4)

    @hypothesis.given(st.text(st.characters(blacklist_categories=())))
    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    def test_any_text_encodes_to_a_plain_header_value(value):  # lone surrogates too
        encoded = encode_header_value(value)
        assert encoded and all(" " <= ch <= "~" for ch in encoded)
        assert encoded == encoded.strip()

    @hypothesis.given(_JSON, _ARGUMENTS)
    @hypothesis.settings(max_examples=200, deadline=None, database=None)
    def test_header_helpers_take_any_json(schema, arguments):
        bindings, reason = header_bindings(schema)
        assert (bindings is None) != (reason is None)
        for name, value in param_headers(bindings or (), arguments).items():
            assert name.startswith("Mcp-Param-")
            assert all(" " <= ch <= "~" for ch in value) and value == value.strip()


def test_list_tools_has_one_deadline_for_all_its_pages(make_server):
    server = make_server(page_size=1)
    original = server._tools_list

    def slow(params, msg_id):
        time.sleep(0.3)
        return original(params, msg_id)

    server._tools_list = slow
    with client_for(server, protocol_version=MODERN, call_timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(TransportError):
            client.list_tools()  # 4 pages of 0.3 s each: past the 1 s deadline
        assert time.monotonic() - started < 1.6
    assert len(server.calls("tools/list")) < 4
