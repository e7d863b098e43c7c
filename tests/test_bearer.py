"""Bring-your-own-token providers end to end, against mcpauth.testing.MCPServer.

BearerTokenProvider and a hand-written AuthProvider subclass, over real loopback sockets
(REQUIREMENTS G1, G3, G4, G5, G7; REFERENCE §5 for the TypeScript contract this mirrors).
"""

import pickle

import pytest

from mcpauth import (
    AuthContext,
    AuthProvider,
    BearerTokenProvider,
    ConfigurationError,
    InsufficientScopeError,
    UnauthorizedError,
)
from mcpauth.testing import MCPServer

ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}
GOOD = "api-key-good-0123456789"
OTHER = "api-key-other-9876543210"
STALE = "api-key-stale-5555555555"


def call(session, url, tool="echo", arguments=None, msg_id=1):
    """One stateless (2026-07-28) tools/call."""
    body = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments or {}, "_meta": META}}
    return session.post(url, json=body, headers={
        "Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call", "Mcp-Name": tool})


def bearer_of(record):
    value = record.headers.get("Authorization") or ""
    return value[7:] if value.startswith("Bearer ") else None


@pytest.fixture
def server():
    with MCPServer(static_tokens=[GOOD, OTHER], challenge_scope="tools") as s:
        yield s


def assert_no_secret(exc, *secrets):
    for text in (str(exc), repr(exc)):
        for secret in secrets:
            assert secret not in text


# -- token() before every request -------------------------------------------------------------


def test_static_string_token_on_every_request(server, session):
    session.auth = BearerTokenProvider(GOOD)
    for i in range(3):
        r = call(session, server.url, arguments={"i": i}, msg_id=i)
        assert r.status_code == 200 and r.history == []
    assert [bearer_of(rec) for rec in server.mcp_requests()] == [GOOD] * 3
    # G7 / A2: only in the header, never in the URL
    assert all(GOOD not in rec.path for rec in server.mcp_requests())


def test_callable_is_consulted_before_every_request(server, session):
    tokens = iter([GOOD, OTHER, GOOD])
    calls = []

    def source():
        calls.append(1)
        return next(tokens)

    session.auth = BearerTokenProvider(source)
    for i in range(3):
        assert call(session, server.url, msg_id=i).status_code == 200
    assert len(calls) == 3
    assert [bearer_of(rec) for rec in server.mcp_requests()] == [GOOD, OTHER, GOOD]


def test_callable_returning_none_sends_no_header_then_unauthorized(server, session):
    session.auth = BearerTokenProvider(lambda: None)
    with pytest.raises(UnauthorizedError) as info:
        call(session, server.url)
    # RFC 6750 §3.1: a request without credentials gets a challenge with no error code
    assert info.value.error is None and info.value.error_description is None
    assert info.value.resource_metadata == server.prm_url
    assert "Authorization" not in server.mcp_requests()[0].headers
    assert len(server.mcp_requests()) == 1


@pytest.mark.parametrize("bad", [123, b"bytes-token", "", "two\nlines", object()])
def test_callable_returning_a_non_string_is_a_configuration_error(server, session, bad):
    session.auth = BearerTokenProvider(lambda: bad)
    with pytest.raises(ConfigurationError) as info:
        call(session, server.url)
    assert "non-empty" in str(info.value)
    if isinstance(bad, str) and bad:
        assert_no_secret(info.value, bad)
    assert server.mcp_requests() == []  # raised before anything was sent


@pytest.mark.parametrize("bad", ["", 42, None, b"key"])
def test_constructor_refuses_unusable_tokens(bad):
    with pytest.raises(ConfigurationError):
        BearerTokenProvider(bad)


@pytest.mark.parametrize("bad, problem", [
    ("tok-5b1f\n", "a line break (CR or LF) at its end"),
    ("tok-5b1f\r\nX-Injected: 1", "a line break (CR or LF) inside it"),
    ("t\u00f6k-5b1f", "printable ASCII"), ("tab\tbed-5b1f", "printable ASCII")])
def test_constructor_refuses_a_static_token_no_header_can_carry(bad, problem):
    # As a client secret is (RFC 6749 Appendix A.12: 1*VSCHAR): at construction, not at
    # the first request, and described, never shown.
    with pytest.raises(ConfigurationError) as info:
        BearerTokenProvider(bad)
    assert problem in str(info.value) and "5b1f" not in str(info.value)


def test_constructor_refuses_a_non_callable_hook():
    with pytest.raises(ConfigurationError):
        BearerTokenProvider(GOOD, on_unauthorized="refresh")


def test_repr_and_pickle_hide_the_token():
    provider = BearerTokenProvider(GOOD, on_unauthorized=lambda ctx: None)
    assert GOOD not in repr(provider) and "[secure]" in repr(provider)
    with pytest.raises(TypeError):
        pickle.dumps(provider)


# -- 401 without a hook ------------------------------------------------------------------------


def test_401_without_hook_raises_with_the_challenge(server, session):
    session.auth = BearerTokenProvider(STALE)
    with pytest.raises(UnauthorizedError) as info:
        call(session, server.url)
    exc = info.value
    assert exc.status_code == 401
    assert exc.error == "invalid_token"
    assert exc.error_description == "Invalid or expired token"
    assert exc.scope == "tools"
    assert exc.resource_metadata == server.prm_url
    assert_no_secret(exc, STALE)
    assert len(server.mcp_requests()) == 1  # no retry without a way to get a new token
    # plain data: survives pickling with its attributes
    again = pickle.loads(pickle.dumps(exc))
    assert (again.error, again.scope, again.resource_metadata) == (
        "invalid_token", "tools", server.prm_url)


# -- 401 with a hook -----------------------------------------------------------------------


def test_hook_runs_once_with_context_then_request_is_replayed_once(server, session):
    current = [STALE]
    seen = []

    def refresh(ctx):
        seen.append(ctx)
        # the refused response is readable by the hook
        assert ctx.response.status_code == 401
        assert "invalid_token" in ctx.response.headers["WWW-Authenticate"]
        current[0] = GOOD

    session.auth = BearerTokenProvider(lambda: current[0], on_unauthorized=refresh,
                                       session=session)
    r = call(session, server.url + "?trace=1", arguments={"x": 1})
    assert r.status_code == 200
    assert r.json()["result"]["content"][0]["text"] == '{"x": 1}'
    assert [h.status_code for h in r.history] == [401]
    assert len(seen) == 1
    ctx = seen[0]
    assert isinstance(ctx, AuthContext)
    assert ctx.server_url == server.url            # without the query
    assert ctx.session is session
    assert ctx.challenge is not None and ctx.challenge.scheme == "bearer"
    assert ctx.challenge.params["error"] == "invalid_token"
    assert ctx.challenge.params["resource_metadata"] == server.prm_url
    first, second = server.mcp_requests()
    assert (bearer_of(first), bearer_of(second)) == (STALE, GOOD)
    assert first.body == second.body                # G6: same request, new token
    assert first.headers.get("Mcp-Name") == second.headers.get("Mcp-Name") == "echo"


def test_second_401_raises_and_the_hook_is_not_called_again(server, session):
    calls = []
    session.auth = BearerTokenProvider(STALE, on_unauthorized=calls.append)
    with pytest.raises(UnauthorizedError) as info:
        call(session, server.url)
    assert len(calls) == 1
    assert len(server.mcp_requests()) == 2          # the original and exactly one replay
    assert info.value.error == "invalid_token"
    assert info.value.resource_metadata == server.prm_url
    assert "401 twice" in str(info.value)
    assert_no_secret(info.value, STALE)
    # the next request gets its own single retry (the guard is per request)
    with pytest.raises(UnauthorizedError):
        call(session, server.url, msg_id=2)
    assert len(calls) == 2 and len(server.mcp_requests()) == 4


class HookFailed(Exception):
    pass


def test_exception_from_the_hook_propagates_unchanged(server, session):
    boom = HookFailed("secret store unavailable")

    def refresh(ctx):
        raise boom

    session.auth = BearerTokenProvider(STALE, on_unauthorized=refresh)
    with pytest.raises(HookFailed) as info:
        call(session, server.url)
    assert info.value is boom
    assert len(server.mcp_requests()) == 1          # no replay after a failed hook


def test_hook_is_not_called_for_a_successful_request(server, session):
    calls = []
    session.auth = BearerTokenProvider(GOOD, on_unauthorized=calls.append)
    assert call(session, server.url).status_code == 200
    assert calls == []


# -- 403 insufficient_scope ------------------------------------------------------------------


def test_403_insufficient_scope_raises_and_never_calls_the_hook(session):
    calls = []
    with MCPServer(static_tokens={GOOD: "tools:read"}, required_scope="tools:call") as server:
        session.auth = BearerTokenProvider(GOOD, on_unauthorized=calls.append)
        # a method that needs no scope works
        r = session.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                                           "params": {"_meta": META}},
                         headers={"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
                                  "Mcp-Method": "tools/list"})
        assert r.status_code == 200
        with pytest.raises(InsufficientScopeError) as info:
            call(session, server.url, msg_id=2)
        assert info.value.required_scope == "tools:call"
        assert info.value.status_code == 403
        assert info.value.resource_metadata == server.prm_url
        assert calls == []
        assert len(server.mcp_requests()) == 2      # no retry: nothing could add scope
        assert_no_secret(info.value, GOOD)


# -- a hand-written AuthProvider ---------------------------------------------------------------


class VaultToken(AuthProvider):
    """A token owned by something else (here a dict standing in for a secret store)."""

    def __init__(self, vault):
        self.vault = vault
        self.reads = 0

    def token(self):
        self.reads += 1
        return self.vault["mcp"]


class RotatingVaultToken(VaultToken):
    def __init__(self, vault):
        VaultToken.__init__(self, vault)
        self.contexts = []

    def on_unauthorized(self, ctx):
        self.contexts.append(ctx)
        self.vault["mcp"] = GOOD


def test_subclass_implementing_only_token(server, session):
    vault = {"mcp": GOOD}
    provider = VaultToken(vault)
    session.auth = provider
    assert call(session, server.url).status_code == 200
    vault["mcp"] = OTHER                              # rotated by its owner
    assert call(session, server.url, msg_id=2).status_code == 200
    assert provider.reads == 2
    assert [bearer_of(r) for r in server.mcp_requests()] == [GOOD, OTHER]
    vault["mcp"] = STALE
    with pytest.raises(UnauthorizedError) as info:  # the default on_unauthorized gives up
        call(session, server.url, msg_id=3)
    assert "VaultToken has no way to get a new token" in str(info.value)
    assert info.value.scope == "tools"
    assert len(server.mcp_requests()) == 3


def test_subclass_with_on_unauthorized_is_replayed_once(server, session):
    provider = RotatingVaultToken({"mcp": STALE})
    session.auth = provider
    r = call(session, server.url)
    assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
    assert len(provider.contexts) == 1
    assert provider.contexts[0].server_url == server.url
    assert provider.reads == 2                        # token() again for the replay
    assert [bearer_of(x) for x in server.mcp_requests()] == [STALE, GOOD]


def test_base_class_token_is_abstract():
    with pytest.raises(NotImplementedError):
        AuthProvider().token()


# -- G7: binding to one server, and token syntax ---------------------------------------------

def test_server_url_binds_the_token_to_one_server(server, session):
    with MCPServer(static_tokens=[GOOD]) as other:
        session.auth = BearerTokenProvider(GOOD, server_url=server.url)
        assert call(session, server.url + "?x=1").status_code == 200   # query ignored
        with pytest.raises(ConfigurationError) as info:
            call(session, other.url)
        assert other.requests == []
        assert GOOD not in str(info.value)


@pytest.mark.parametrize("bad", ["tok\r\nX-Injected: 1", "t\u00f6ken", "tab\tbed", "nul\x00"])
def test_token_must_be_printable_ascii(server, session, bad):
    """RFC 6749 Appendix A.12: access-token = 1*VSCHAR; nothing reaches the server."""
    session.auth = BearerTokenProvider(lambda: bad)
    with pytest.raises(ConfigurationError) as info:
        call(session, server.url)
    assert bad not in str(info.value)
    assert server.requests == []
