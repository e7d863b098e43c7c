"""Providers end to end over real loopback sockets, against mcpauth.testing.

Scenario names follow the MCP conformance suite where one exists. Requirement ids
(B1, G3, ...) refer to shared/REQUIREMENTS.md.
"""

import io
import json
import logging
import pickle
import threading
import time

import pytest

from mcpauth import (
    AuthorizationServerMismatchError,
    ClientCredentialsProvider,
    ConfigurationError,
    InsecureEndpointError,
    InsufficientScopeError,
    IssuerMismatchError,
    OAuthError,
    ResourceMismatchError,
    TokenResponseError,
    TransportError,
    UnauthorizedError,
)
from mcpauth.testing import AuthorizationServer, LoopbackStack, MCPServer

ACCEPT = "application/json, text/event-stream"
STATELESS_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}


def rpc(session, url, method, params=None, msg_id=1, **kw):
    """One stateless (2026-07-28) JSON-RPC request, as a cron script would send it."""
    params = dict(params or {})
    params["_meta"] = STATELESS_META
    headers = {"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    return session.post(url, json={"jsonrpc": "2.0", "id": msg_id, "method": method,
                                   "params": params}, headers=headers, **kw)


def bearer(record):
    value = record.headers.get("Authorization") or ""
    return value[7:] if value.startswith("Bearer ") else None


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


def provider_for(stack, **kw):
    return ClientCredentialsProvider(client_id=stack.client_id,
                                     client_secret=stack.client_secret, **kw)


# -- the five-line example ------------------------------------------------------------------

def test_five_line_example(stack, new_session):
    session = new_session()
    session.auth = ClientCredentialsProvider(client_id=stack.client_id,
                                             client_secret=stack.client_secret)
    r = rpc(session, stack.mcp_url, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})
    assert r.status_code == 200
    assert r.json()["result"]["content"][0]["text"] == "5"
    # cold start: one refused request, then discovery, one token, one replay (B1, G3)
    assert [h.status_code for h in r.history] == [401]
    assert len(stack.as_.token_requests()) == 1
    token_request = stack.as_.token_requests()[0]
    assert token_request.form["grant_type"] == "client_credentials"
    assert token_request.form["resource"] == stack.mcp_url                # D1
    assert "scope" not in token_request.form                               # D3: none known
    assert token_request.headers.get("Authorization", "").startswith("Basic ")  # C5 default
    # later requests reuse the token, with no further discovery or token request (G1)
    r2 = rpc(session, stack.mcp_url, "tools/list", msg_id=2)
    assert r2.status_code == 200 and r2.history == []
    assert len(stack.as_.token_requests()) == 1
    calls = stack.mcp.mcp_requests()
    assert bearer(calls[0]) is None and bearer(calls[1]) == bearer(calls[2])
    assert "access_token" not in calls[2].path                              # A2


def test_the_same_request_is_replayed(stack, new_session):
    """G6: the replay carries the same body and MCP headers, and a new Authorization."""
    session = new_session()
    session.auth = provider_for(stack)
    r = rpc(session, stack.mcp_url, "tools/call", {"name": "echo", "arguments": {"x": 1}})
    assert r.status_code == 200
    first, second = stack.mcp.mcp_requests()[:2]
    assert first.body == second.body
    for name in ("Mcp-Method", "Mcp-Name", "MCP-Protocol-Version", "Content-Type", "Accept"):
        assert first.headers.get(name) == second.headers.get(name)
    assert first.headers.get("Authorization") is None
    assert second.headers.get("Authorization").startswith("Bearer ")


def test_file_body_is_rewound_for_the_replay(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack)
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                          "params": {"_meta": STATELESS_META}}).encode()
    body = io.BytesIO(payload)
    r = session.post(stack.mcp_url, data=body, headers={
        "Content-Type": "application/json", "Accept": ACCEPT,
        "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
    assert r.status_code == 200
    assert [c.body for c in stack.mcp.mcp_requests()] == [payload, payload]


def test_streaming_body_is_not_replayed(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack)

    def gen():
        yield b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'

    with pytest.raises(UnauthorizedError) as info:
        session.post(stack.mcp_url, data=gen(), headers={
            "Content-Type": "application/json", "Accept": ACCEPT})
    assert "cannot be rewound" in str(info.value)
    assert len(stack.mcp.mcp_requests()) == 1


# -- G3: exactly one retry --------------------------------------------------------------------

def test_second_401_raises_unauthorized_after_exactly_one_retry(new_session):
    with LoopbackStack(mcp_options={"token_validator": lambda token: None}) as stack:
        session = new_session()
        session.auth = provider_for(stack)
        with pytest.raises(UnauthorizedError) as info:
            rpc(session, stack.mcp_url, "tools/list")
        assert len(stack.mcp.mcp_requests()) == 2
        assert len(stack.as_.token_requests()) == 1
        assert info.value.status_code == 401
        assert info.value.error == "invalid_token"
        assert info.value.resource_metadata == stack.mcp.prm_url


def test_refused_token_is_replaced_once(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack)
    assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
    stack.mcp.fail_next(401, count=1, error="invalid_token")
    r = rpc(session, stack.mcp_url, "tools/list", msg_id=2)
    assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
    tokens = [bearer(c) for c in stack.mcp.mcp_requests()]
    assert len(stack.as_.token_requests()) == 2
    assert tokens[-1] != tokens[-2]           # the refused token is not replayed
    # B7: the PRM was fetched again after the refusal
    assert len(stack.mcp.prm_requests()) == 2


def test_token_refused_twice_in_a_row_raises(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack)
    assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
    stack.mcp.fail_next(401, count=2, error="invalid_token")
    with pytest.raises(UnauthorizedError):
        rpc(session, stack.mcp_url, "tools/list", msg_id=2)
    assert len(stack.mcp.mcp_requests()) == 4


# -- H1: expected_issuer pinning ----------------------------------------------------------------

def test_mismatched_issuer_receives_nothing(new_session):
    with AuthorizationServer() as honest, AuthorizationServer() as evil:
        honest.register_client("c", client_secret="s3cret-value")
        evil.register_client("c", client_secret="s3cret-value")
        with MCPServer(authorization_servers=[evil]) as mcp:
            session = new_session()
            session.auth = ClientCredentialsProvider("c", "s3cret-value",
                                                     expected_issuer=honest.issuer)
            with pytest.raises(AuthorizationServerMismatchError) as info:
                rpc(session, mcp.url, "tools/list")
            assert evil.requests == []            # not even its metadata
            assert honest.requests == []
            assert info.value.expected_issuer == honest.issuer
            assert info.value.issuer is None or info.value.issuer == evil.issuer
            assert "s3cret-value" not in str(info.value)


def test_pinned_issuer_is_chosen_among_several(new_session):
    """B6: PRM lists [as1, as2]; the client is registered at as2."""
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1, as2]) as mcp:
            session = new_session()
            session.auth = ClientCredentialsProvider("c", "pw", expected_issuer=as2.issuer)
            assert rpc(session, mcp.url, "tools/list").status_code == 200
            assert as1.requests == []
            assert len(as2.token_requests()) == 1


def test_metadata_issuer_mismatch_sends_no_secret(stack, new_session):
    stack.as_.metadata_override = {"issuer": "https://attacker.example.com"}
    session = new_session()
    session.auth = provider_for(stack)
    with pytest.raises(IssuerMismatchError):
        rpc(session, stack.mcp_url, "tools/list")
    assert stack.as_.token_requests() == []


def test_resource_mismatch_sends_no_secret(stack, new_session):
    stack.mcp.prm_override = {"resource": "https://evil.example.com/mcp"}
    session = new_session()
    session.auth = provider_for(stack)
    with pytest.raises(ResourceMismatchError):
        rpc(session, stack.mcp_url, "tools/list")
    assert stack.as_.token_requests() == []


def test_authorization_server_migration(new_session):
    """SEP-2352 / H1: credentials stay with the authorization server they were used at.

    When the MCP server moves to another AS, an unpinned provider refuses by default
    (nothing reaches the new AS), follows the move with allow_issuer_change=True, and a
    pinned provider always refuses.
    """
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("c", client_secret="pw")
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1, as2]) as mcp:
            strict, lenient = new_session(), new_session()
            strict.auth = ClientCredentialsProvider("c", "pw")
            lenient.auth = ClientCredentialsProvider("c", "pw", allow_issuer_change=True)
            assert rpc(strict, mcp.url, "tools/list").status_code == 200
            assert rpc(lenient, mcp.url, "tools/list").status_code == 200
            assert len(as1.token_requests()) == 2
            mcp.authorization_servers = [as2]
            mcp.prm_override = {"authorization_servers": [as2.issuer]}
            with pytest.raises(AuthorizationServerMismatchError) as info:
                rpc(strict, mcp.url, "tools/list", msg_id=2)
            assert info.value.expected_issuer == as1.issuer
            assert info.value.issuer == as2.issuer
            assert as2.token_requests() == []
            r = rpc(lenient, mcp.url, "tools/list", msg_id=2)
            assert r.status_code == 200
            assert len(as2.token_requests()) == 1
            # pinned to as1, the move is refused before anything reaches as2's token endpoint
            session2 = new_session()
            session2.auth = ClientCredentialsProvider("c", "pw", expected_issuer=as1.issuer)
            with pytest.raises(AuthorizationServerMismatchError):
                rpc(session2, mcp.url, "tools/list")
            assert len(as2.token_requests()) == 1


# -- token endpoint authentication ---------------------------------------------------------------

@pytest.mark.parametrize("advertised, expected", [
    (["client_secret_basic"], "client_secret_basic"),
    (["client_secret_post"], "client_secret_post"),
    (None, "client_secret_basic"),
])
def test_auth_method_follows_metadata(advertised, expected, new_session):
    with LoopbackStack(as_options={"token_endpoint_auth_methods_supported": advertised}) as stack:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        req = stack.as_.token_requests()[0]
        assert req.info["auth_method"] == expected
        if expected == "client_secret_post":
            assert req.headers.get("Authorization") is None
        else:
            assert "client_secret" not in req.form


def test_configured_auth_method_wins(new_session):
    with LoopbackStack(auth_method="client_secret_post") as stack:
        session = new_session()
        session.auth = provider_for(stack, token_endpoint_auth_method="client_secret_post")
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        assert stack.as_.token_requests()[0].info["auth_method"] == "client_secret_post"


def test_special_characters_in_basic_credentials(new_session):
    """E3: RFC 6749 §2.3.1 form-encoding; the test AS decodes it as the RFC says."""
    with LoopbackStack(client_id="a:b@c", client_secret="p w+%&\u00a3") as stack:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200


def test_wrong_secret_is_an_oauth_error(stack, new_session):
    session = new_session()
    session.auth = ClientCredentialsProvider(stack.client_id, "wrong-secret-value")
    with pytest.raises(OAuthError) as info:
        rpc(session, stack.mcp_url, "tools/list")
    assert info.value.error == "invalid_client"
    assert "wrong-secret-value" not in str(info.value) + repr(info.value)


def test_token_endpoint_redirect_is_not_followed(stack, new_session):
    with AuthorizationServer() as other:
        stack.as_.redirect_token_endpoint_to = other.token_endpoint
        session = new_session()
        session.auth = provider_for(stack)
        with pytest.raises(TokenResponseError) as info:
            rpc(session, stack.mcp_url, "tools/list")
        assert "redirect" in str(info.value)
        assert other.requests == []


def test_unsupported_token_type_is_refused(stack, new_session):
    stack.as_.token_type = "mac"
    session = new_session()
    session.auth = provider_for(stack)
    with pytest.raises(TokenResponseError):
        rpc(session, stack.mcp_url, "tools/list")


def test_authorization_server_down_is_a_transport_error(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack, timeout=2)
    stack.as_.stop()
    with pytest.raises(TransportError) as info:
        rpc(session, stack.mcp_url, "tools/list")
    assert info.value.retryable


def test_http_token_endpoint_is_refused_before_io():
    with pytest.raises(InsecureEndpointError):
        ClientCredentialsProvider("c", "s", token_endpoint="http://as.example.com/token")


def test_http_token_endpoint_in_metadata_is_refused(stack, new_session):
    stack.as_.metadata_override = {"token_endpoint": "http://as.example.com/token"}
    session = new_session()
    session.auth = provider_for(stack)
    with pytest.raises(InsecureEndpointError):
        rpc(session, stack.mcp_url, "tools/list")


def test_explicit_token_endpoint_skips_discovery(stack, new_session):
    provider = provider_for(stack, token_endpoint=stack.as_.token_endpoint,
                            issuer=stack.issuer)
    session = new_session()
    session.auth = provider
    r = rpc(session, stack.mcp_url, "tools/list")
    assert r.status_code == 200 and r.history == []     # token before the first request
    assert stack.mcp.prm_requests() == []
    assert stack.as_.token_requests()[0].form["resource"] == stack.mcp_url


# -- D3: scope selection ------------------------------------------------------------------------

def _scope_sent(session, stack, **kw):
    session.auth = provider_for(stack, **kw)
    assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
    return stack.as_.token_requests()[0].form.get("scope")


def test_scope_from_challenge(session):
    with LoopbackStack(mcp_options={"challenge_scope": "mcp:basic",
                                    "scopes_supported": ["mcp:basic", "mcp:write"]}) as stack:
        assert _scope_sent(session, stack) == "mcp:basic"


def test_scope_from_scopes_supported(session):
    with LoopbackStack(mcp_options={"scopes_supported": ["mcp:read", "mcp:write"]}) as stack:
        assert _scope_sent(session, stack) == "mcp:read mcp:write"


def test_configured_scope_wins(session):
    with LoopbackStack(mcp_options={"challenge_scope": "mcp:basic",
                                    "scopes_supported": ["mcp:basic"]}) as stack:
        assert _scope_sent(session, stack, scope="reports:read") == "reports:read"


def test_invalid_configured_scope():
    with pytest.raises(ConfigurationError):
        ClientCredentialsProvider("c", "s", scope='bad"scope')


# -- G4: step-up --------------------------------------------------------------------------------

def test_step_up_requests_the_union(new_session):
    with LoopbackStack(mcp_options={"required_scope": "mcp:write",
                                    "challenge_scope": "mcp:basic"}) as stack:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        r = rpc(session, stack.mcp_url, "tools/call", {"name": "whoami", "arguments": {}}, 2)
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [403]
        scopes = [t.form.get("scope") for t in stack.as_.token_requests()]
        assert scopes == ["mcp:basic", "mcp:basic mcp:write"]      # SEP-2350 union


def test_step_up_is_bounded_and_names_the_scope(new_session):
    with LoopbackStack(allowed_scopes=["mcp:basic"],
                       mcp_options={"required_scope": "mcp:admin"}) as stack:
        stack.as_.extra_token_response = {}
        session = new_session()
        session.auth = provider_for(stack)
        with pytest.raises((InsufficientScopeError, OAuthError)) as info:
            rpc(session, stack.mcp_url, "tools/call", {"name": "whoami", "arguments": {}})
        # the AS refuses mcp:admin for this client, so the step-up stops with its error
        assert len(stack.as_.token_requests()) <= 3
        assert "mcp:admin" in str(info.value) or getattr(info.value, "error", "") == "invalid_scope"


def test_step_up_gives_up_when_server_keeps_refusing(new_session):
    with LoopbackStack() as stack:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        stack.mcp.fail_next(403, count=10, error="insufficient_scope", scope="mcp:admin")
        with pytest.raises(InsufficientScopeError) as info:
            rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        assert info.value.required_scope == "mcp:admin"
        assert "mcp:admin" in str(info.value)
        assert len(stack.as_.token_requests()) <= 3       # G4: at most 3 token requests


# -- F3: expiry and refresh with an injected clock ------------------------------------------------

class FakeClock(object):
    def __init__(self, now=1000000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_proactive_refresh_with_skew(new_session):
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:

        session = new_session()
        session.auth = provider_for(stack, clock=clock, refresh_skew=60)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        first = bearer(stack.mcp.mcp_requests()[-1])
        clock.now += 3539
        rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        assert bearer(stack.mcp.mcp_requests()[-1]) == first
        assert len(stack.as_.token_requests()) == 1
        clock.now += 2  # 59 s before expiry: inside the skew window
        r = rpc(session, stack.mcp_url, "tools/list", msg_id=3)
        assert r.status_code == 200 and r.history == []
        assert len(stack.as_.token_requests()) == 2
        assert bearer(stack.mcp.mcp_requests()[-1]) != first


def test_short_lived_tokens_are_not_renewed_on_every_call(new_session):
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 30}) as stack:
        session = new_session()
        session.auth = provider_for(stack, clock=clock, refresh_skew=60)
        for i in range(5):
            assert rpc(session, stack.mcp_url, "tools/list", msg_id=i).status_code == 200
            clock.now += 2
        # lifetime 30 s < skew: renewed at half-life (15 s), not on every call
        assert len(stack.as_.token_requests()) == 1
        clock.now += 6
        rpc(session, stack.mcp_url, "tools/list", msg_id=9)
        assert len(stack.as_.token_requests()) == 2


def test_expired_token_is_never_sent(new_session):
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 100}) as stack:
        session = new_session()
        session.auth = provider_for(stack, clock=clock, refresh_skew=10)
        rpc(session, stack.mcp_url, "tools/list")
        old = bearer(stack.mcp.mcp_requests()[-1])
        clock.now += 1000
        r = rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        assert r.status_code == 200 and r.history == []
        assert old not in [bearer(c) for c in stack.mcp.mcp_requests()[2:]]


def test_failed_renewal_keeps_a_still_valid_token(caplog, new_session):
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        session = new_session()
        session.auth = provider_for(stack, clock=clock, refresh_skew=60)
        rpc(session, stack.mcp_url, "tools/list")
        old = bearer(stack.mcp.mcp_requests()[-1])
        clock.now += 3570
        stack.as_.fail_next("temporarily_unavailable", status=503)
        caplog.set_level(logging.WARNING, "mcpauth")
        assert rpc(session, stack.mcp_url, "tools/list", msg_id=2).status_code == 200
        assert bearer(stack.mcp.mcp_requests()[-1]) == old
        assert "stays in use" in caplog.text


# -- concurrency: single flight ----------------------------------------------------------------

def test_sixteen_threads_share_one_token_request(new_session):
    with LoopbackStack() as stack:
        stack.as_.delay = 0.3          # a slow token endpoint widens the race window
        provider = provider_for(stack)
        barrier = threading.Barrier(16)
        intervals = []
        errors = []
        lock = threading.Lock()

        def worker(i):
            try:
                session = new_session()
                session.auth = provider
                barrier.wait()
                assert rpc(session, stack.mcp_url, "tools/list", msg_id=i).status_code == 200
                barrier.wait()
                start = time.monotonic()
                assert rpc(session, stack.mcp_url, "tools/call",
                           {"name": "echo", "arguments": {"i": i}}, msg_id=100 + i
                           ).status_code == 200
                with lock:
                    intervals.append((start, time.monotonic()))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(stack.as_.token_requests()) == 1
        # the later requests, which had a valid token, ran in parallel (not serialised)
        events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        assert peak >= 2


def test_valid_token_holders_do_not_wait_for_a_renewal(new_session):
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        provider = provider_for(stack, clock=clock, refresh_skew=60)
        session = new_session()
        session.auth = provider
        rpc(session, stack.mcp_url, "tools/list")
        clock.now += 3570          # renewal window; token still valid for 30 s
        stack.as_.delay = 2.0     # the renewal takes 2 s; the holder must not wait for it
        done = []

        def renewer():
            s = new_session()
            s.auth = provider
            rpc(s, stack.mcp_url, "tools/list", msg_id=2)
            done.append("renewer")

        t = threading.Thread(target=renewer)
        t.start()
        time.sleep(0.2)            # the renewer now holds the lock and waits on the AS
        start = time.monotonic()
        assert rpc(session, stack.mcp_url, "tools/list", msg_id=3).status_code == 200
        assert time.monotonic() - start < 1.5
        t.join(10)
        assert done == ["renewer"]
        assert len(stack.as_.token_requests()) == 2


# -- G2: tokens stay with their server ----------------------------------------------------------

def test_tokens_are_not_shared_between_servers(new_session):
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("c", client_secret="pw")
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1]) as a, \
                MCPServer(authorization_servers=[as2]) as b:
            session = new_session()
            session.auth = ClientCredentialsProvider("c", "pw", allow_issuer_change=True)
            assert rpc(session, a.url, "tools/list").status_code == 200
            assert rpc(session, b.url, "tools/list").status_code == 200
            token_a = bearer(a.mcp_requests()[-1])
            token_b = bearer(b.mcp_requests()[-1])
            assert token_a != token_b
            assert token_a not in [bearer(r) for r in b.mcp_requests()]
            # by default one provider's credentials serve one authorization server only
            strict = new_session()
            strict.auth = ClientCredentialsProvider("c", "pw")
            assert rpc(strict, a.url, "tools/list").status_code == 200
            before = len(as2.token_requests())
            with pytest.raises(AuthorizationServerMismatchError):
                rpc(strict, b.url, "tools/list")
            assert len(as2.token_requests()) == before


def test_configured_resource_binds_the_token(stack, new_session):
    """G2: with resource= configured, the token never goes to another server."""
    with MCPServer(static_tokens=["x"]) as other:
        session = new_session()
        session.auth = provider_for(stack, token_endpoint=stack.as_.token_endpoint,
                                    issuer=stack.issuer, resource=stack.mcp_url)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        with pytest.raises(ConfigurationError):
            rpc(session, other.url, "tools/list")
        assert other.requests == []


def test_userinfo_never_becomes_the_resource(stack, new_session):
    session = new_session()
    session.auth = provider_for(stack, token_endpoint=stack.as_.token_endpoint,
                                issuer=stack.issuer)
    url = stack.mcp_url.replace("http://", "http://gw-user:GW-PASSWORD@")
    rpc(session, url, "tools/list")
    sent = stack.as_.token_requests()[0].form["resource"]
    assert "GW-PASSWORD" not in sent and sent == stack.mcp_url


def test_refused_step_up_does_not_poison_later_requests(new_session):
    with LoopbackStack(allowed_scopes=["mcp:basic"],
                       mcp_options={"challenge_scope": "mcp:basic"}) as stack:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        stack.mcp.fail_next(403, count=1, error="insufficient_scope", scope="mcp:admin")
        with pytest.raises(OAuthError) as info:
            rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        assert info.value.error == "invalid_scope"
        # the next plain request still works with the scope the client may have, and a
        # renewal asks for that scope, not for the refused union
        assert rpc(session, stack.mcp_url, "tools/list", msg_id=3).status_code == 200
        stack.mcp.fail_next(401, count=1, error="invalid_token")
        assert rpc(session, stack.mcp_url, "tools/list", msg_id=4).status_code == 200
        scopes = [t.form.get("scope") for t in stack.as_.token_requests()]
        assert scopes == ["mcp:basic", "mcp:basic mcp:admin", "mcp:basic"]


def test_invalid_challenge_scope_is_a_protocol_error(stack, new_session):
    from mcpauth import ProtocolError

    stack.mcp.challenge_scope = "caf\u00e9"     # outside RFC 6749 §3.3 scope-token
    session = new_session()
    session.auth = provider_for(stack)
    with pytest.raises(ProtocolError):
        rpc(session, stack.mcp_url, "tools/list")
    assert stack.as_.token_requests() == []


def test_no_authorization_after_cross_host_redirect(stack, new_session):
    """A5: requests drops Authorization across hosts, and the hook does not re-add it."""
    with MCPServer(static_tokens=["x"]) as elsewhere:
        session = new_session()
        session.auth = provider_for(stack)
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        other = elsewhere.url.replace("127.0.0.1", "localhost")
        stack.mcp.set_route("/moved", 307, None, [("Location", other)])
        moved = stack.mcp_url.replace("/mcp", "/moved")
        r = rpc(session, moved, "tools/list", msg_id=2)
        assert r.status_code == 401    # the other host wanted a token and got none
        assert all(rec.headers.get("Authorization") is None for rec in elsewhere.requests)
        assert len(stack.as_.token_requests()) == 1


# -- secrets never leak --------------------------------------------------------------------------

def test_no_secret_or_token_in_logs_reprs_or_errors(caplog, new_session):
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-Secret-Value-42"
    with LoopbackStack(client_secret=secret) as stack:
        provider = provider_for(stack)
        session = new_session()
        session.auth = provider
        rpc(session, stack.mcp_url, "tools/list")
        token = bearer(stack.mcp.mcp_requests()[-1])
        stack.mcp.fail_next(401, count=2, error="invalid_token")
        with pytest.raises(UnauthorizedError) as info:
            rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        texts = [caplog.text, repr(provider), str(provider), str(info.value),
                 repr(info.value), repr(provider._cache)]
        for text in texts:
            assert secret not in text
            assert token not in text
        with pytest.raises(TypeError):
            pickle.dumps(provider)


def test_token_finds_metadata_named_only_in_the_401_challenge():
    """token() without a request: the well-known URLs are 404, so the provider asks the
    server itself (an unauthenticated JSON-RPC ping) and follows its challenge (B1)."""
    with LoopbackStack(mcp_options={"prm_location": "custom"}) as stack:
        provider = provider_for(stack, server_url=stack.mcp_url)
        token = provider.token()
        paths = [(r.method, r.path) for r in stack.mcp.requests]
        assert paths == [
            ("GET", "/.well-known/oauth-protected-resource/mcp"),
            ("GET", "/.well-known/oauth-protected-resource"),
            ("POST", "/mcp"),
            ("GET", "/custom/metadata/location.json"),
        ]
        assert stack.mcp.requests[2].headers.get("Authorization") is None
        assert stack.as_.introspect(token)["active"] is True


def test_token_does_not_probe_after_a_real_discovery_error(stack):
    stack.mcp.prm_override = {"resource": "https://evil.example.com/mcp"}
    provider = provider_for(stack, server_url=stack.mcp_url)
    with pytest.raises(ResourceMismatchError):
        provider.token()
    assert [r.method for r in stack.mcp.requests] == ["GET"]      # no probe POST
    assert stack.as_.token_requests() == []


def test_bound_issuer_is_chosen_even_when_not_listed_first(new_session):
    """A provider bound to as2 uses as2 at a server listing [as1, as2]; as1 sees nothing."""
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as2]) as m2, \
                MCPServer(authorization_servers=[as1, as2]) as m12:
            session = new_session()
            session.auth = ClientCredentialsProvider("c", "pw")
            assert rpc(session, m2.url, "tools/list").status_code == 200
            assert rpc(session, m12.url, "tools/list").status_code == 200
            assert as1.requests == []
            assert len(as2.token_requests()) == 2     # one token per resource


def test_jobs_sharing_a_cache_file_never_use_each_others_discovery(tmp_path, new_session):
    """H1/B6: a job configured for as2 and an unpinned job registered at as1 share one
    FileTokenCache; neither picks up the other's authorization server or token."""
    from mcpauth import FileTokenCache

    path = str(tmp_path / "tokens.json")
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("job-y", client_secret="y-secret-value")
        as2.register_client("job-x", client_secret="x-secret-value")
        with MCPServer(authorization_servers=[as1, as2]) as mcp:
            x = new_session()
            x.auth = ClientCredentialsProvider("job-x", "x-secret-value", issuer=as2.issuer,
                                               cache=FileTokenCache(path))
            assert rpc(x, mcp.url, "tools/list").status_code == 200
            y = new_session()
            y.auth = ClientCredentialsProvider("job-y", "y-secret-value",
                                               cache=FileTokenCache(path))
            assert rpc(y, mcp.url, "tools/list").status_code == 200
            assert [r.form.get("client_id") or r.info.get("client_id")
                    for r in as2.token_requests()] == ["job-x"]
            assert len(as1.token_requests()) == 1
            assert all("y-secret-value" not in (r.headers.get("Authorization") or "")
                       for r in as2.requests)
