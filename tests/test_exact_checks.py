"""Tests written to fail on one-line bugs in security checks (tests/mutation lists them).

Each test tries a check with the case a weaker rule would let through:

* a same-origin redirect of a credentialed request (the origin rule alone would follow
  it: OAuth 2.1 §7.5.3 forbids it anyway);
* look-alikes that merely extend or shorten the expected string, for every exact match:
  the ID-JAG ``aud`` (EXT-EMA §7.5.4), the workload JWT ``aud`` (RFC 7523 §3), and the
  ``server_url=`` / ``resource=`` binding of tokens (``/mcp-admin`` is not under ``/mcp``);
* the issuer in the token cache key (two pinned providers, one cache);
* the binding of credentials to the first authorization server (SEP-2352), reached by
  two discoveries racing in one unpinned provider;
* the command's refusal of secrets on the command line, told apart from other usage
  errors by its own message;
* single-flight on the proactive renewal path (within a provider and across processes
  sharing a file cache), not only after a 401.

Everything runs against loopback servers (mcpauth.testing); host-name look-alikes are
checked with ``PreparedRequest`` only, so nothing is resolved.
"""

import io
import json
import os
import threading
import time

import pytest
import requests

from mcpauth import (
    AuthorizationServerMismatchError,
    BearerTokenProvider,
    ClientCredentialsProvider,
    ConfigurationError,
    FileTokenCache,
    MemoryTokenCache,
    OAuthError,
    ProtocolError,
    TokenResponseError,
    cli,
)
from mcpauth.testing import AuthorizationServer, LoopbackStack, MCPServer
from mcpauth.transport import HttpRequest, RequestsTransport

ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}


def rpc(session, url, msg_id=1):
    """One stateless (2026-07-28) tools/list request."""
    return session.post(url, json={"jsonrpc": "2.0", "id": msg_id, "method": "tools/list",
                                   "params": {"_meta": META}},
                        headers={"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
                                 "Mcp-Method": "tools/list"})


def bearer(record):
    value = record.headers.get("Authorization") or ""
    return value[7:] if value.startswith("Bearer ") else None


class FakeClock(object):
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def look_alikes(url):
    """Strings that extend ``url`` or cut it short; an exact check refuses every one."""
    return [url + ".evil.net", url + "-admin", url + "/evil", url + "//", url[:-1]]


def at_once(calls, timeout=30):
    """Run each zero-argument callable in its own thread, released together."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        call()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def clocked_provider(stack, clock, **kw):
    """A client secret provider on ``clock``, renewing 60 s before expiry."""
    return ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                     server_url=stack.mcp_url, clock=clock,
                                     refresh_skew=60, **kw)


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


# -- no redirect for a credentialed request, even on its own origin ---------------------------

def test_a_token_post_redirected_on_its_own_host_is_not_followed(stack):
    """The AS answers the token POST with 307 to /collect on the same host: following it
    would re-send the client secret there. The provider must stop at the 307."""
    stack.as_.redirect_token_endpoint_to = stack.as_.base_url + "/collect"
    stack.as_.set_route("/collect", 200, {"access_token": "collected", "token_type": "Bearer"})
    provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                         server_url=stack.mcp_url)
    with pytest.raises(TokenResponseError) as info:
        provider.token()
    assert info.value.status_code == 307
    assert stack.as_.requests_to("/collect") == []
    assert len(stack.as_.token_requests()) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_credentialed_request_is_not_redirected_within_its_origin(method):
    with AuthorizationServer() as server:
        server.set_route("/token", 307, headers={"Location": "/collect"})
        server.set_route("/collect", 200, {"ok": True})
        transport = RequestsTransport(timeout=5)
        if method == "POST":
            request = HttpRequest.post_form(server.base_url + "/token",
                                            [("client_secret", "s3cret")])
        else:
            request = HttpRequest("GET", server.base_url + "/token",
                                  (("Authorization", "Bearer t0ken"),), None, True)
        assert request.credentialed
        response = transport(request)
        assert response.status == 307
        assert server.requests_to("/collect") == []


def test_only_a_get_follows_a_same_origin_redirect():
    """A POST without credentials is not re-sent to the Location either (its body would
    be replayed; RFC 9728 and RFC 8414 metadata is fetched with GET)."""
    with AuthorizationServer() as server:
        server.set_route("/ping", 307, headers={"Location": "/collect"})
        server.set_route("/collect", 200, {"ok": True})
        transport = RequestsTransport(timeout=5)
        request = HttpRequest("POST", server.base_url + "/ping",
                              (("Content-Type", "application/json"),), b"{}", False)
        assert transport(request).status == 307
        assert server.requests_to("/collect") == []
        # the control: the same redirect of a plain GET is followed
        assert transport(HttpRequest.get_json(server.base_url + "/ping")).status == 200
        assert len(server.requests_to("/collect")) == 1


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read():
    """A Content-Length over ``max_response_bytes`` is refused on the headers, with the
    declared size in the message (the body is not read to find out)."""
    with AuthorizationServer() as server:
        server.set_route("/big", 200, b"x" * 101, headers={"Content-Type": "text/plain"})
        transport = RequestsTransport(timeout=5, max_response_bytes=100)
        with pytest.raises(ProtocolError) as info:
            transport(HttpRequest.get_json(server.base_url + "/big"))
        assert "is 101 bytes, over the 100 byte limit" in str(info.value)


# -- exact issuer pin ---------------------------------------------------------------------------

def test_a_pin_is_not_satisfied_by_a_listed_issuer_that_extends_it():
    """The MCP server names only look-alikes of the pinned issuer: refused before
    anything is fetched from any authorization server (the pinned one included)."""
    with LoopbackStack(issuer_path="/as") as stack:
        _pin_look_alikes(stack)


def _pin_look_alikes(stack):
    # the issuer has a path, so every look-alike is still a valid URL
    for listed in look_alikes(stack.issuer):
        stack.mcp.authorization_servers = [listed]
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             expected_issuer=stack.issuer,
                                             server_url=stack.mcp_url)
        with pytest.raises(AuthorizationServerMismatchError) as info:
            provider.token()
        assert info.value.issuer == listed
        assert stack.as_.requests == [], listed


# -- exact audience: ID-JAG (cross-app access) ------------------------------------------------

@pytest.fixture
def idp_stack():
    pytest.importorskip("cryptography")
    with LoopbackStack(idp=True) as s:
        yield s


def test_an_id_jag_whose_aud_only_resembles_the_issuer_is_not_sent(idp_stack):
    """EXT-EMA §7.5.4: an ID-JAG goes only to the AS its ``aud`` names, exactly."""
    from mcpauth import CrossAppAccessProvider, jws, request_jwt_authorization_grant

    stack = idp_stack
    grant = request_jwt_authorization_grant(
        stack.idp.token_endpoint, stack.id_token(), stack.issuer, stack.mcp.resource,
        stack.idp_client.client_id, client_secret=stack.idp_client.client_secret)
    header, claims = jws.decode_unverified(grant.jwt_auth_grant)
    forged = {}

    def callback(ctx):
        return forged["grant"]

    for aud in look_alikes(stack.issuer):
        forged["grant"] = stack.idp.sign(dict(claims, aud=aud), {"typ": header["typ"]})
        provider = CrossAppAccessProvider(callback, stack.client_id, stack.client_secret,
                                          server_url=stack.mcp_url)
        with pytest.raises(AuthorizationServerMismatchError) as info:
            provider.token()
        assert info.value.expected_issuer == aud
        assert stack.as_.token_requests() == [], aud
    # the control: the genuine ID-JAG is accepted
    forged["grant"] = grant.jwt_auth_grant
    provider = CrossAppAccessProvider(callback, stack.client_id, stack.client_secret,
                                      server_url=stack.mcp_url)
    assert provider.token()
    assert len(stack.as_.token_requests()) == 1


# -- exact audience: workload identity JWT ------------------------------------------------------

def test_a_workload_jwt_whose_aud_only_resembles_the_server_is_not_sent(stack):
    """RFC 7523 §3: ``aud`` identifies the AS (its issuer or token endpoint), exactly."""
    jws = pytest.importorskip("mcpauth.jws")
    pytest.importorskip("cryptography")
    from mcpauth import WorkloadIdentityProvider

    platform = "https://platform.example"
    key = jws.generate_private_key("EC", curve="P-256")
    stack.as_.trust_workload_issuer(platform, key.public_jwk(), allowed_subjects=["wl-1"])

    def minted(aud):
        now = int(time.time())
        return jws.sign({"iss": platform, "sub": "wl-1", "aud": aud, "iat": now,
                         "exp": now + 600, "jti": os.urandom(8).hex()}, key, "ES256",
                        headers={"typ": "JWT"})

    for named in (stack.issuer, stack.as_.token_endpoint):
        for aud in look_alikes(named):
            provider = WorkloadIdentityProvider(lambda a=aud: minted(a),
                                                server_url=stack.mcp_url)
            with pytest.raises(AuthorizationServerMismatchError) as info:
                provider.token()
            assert info.value.expected_issuer == aud
            assert stack.as_.token_requests() == [], aud
    for aud in (stack.issuer, stack.as_.token_endpoint):  # the controls
        provider = WorkloadIdentityProvider(lambda a=aud: minted(a),
                                            server_url=stack.mcp_url)
        assert provider.token()
    assert len(stack.as_.token_requests()) == 2


# -- server binding: server_url= and resource= --------------------------------------------------

BOUND = "https://mcp.example.com/mcp"
HOST_LOOK_ALIKES = [
    "https://mcp.example.com.evil.net/mcp",
    "https://mcp.example.comevil.net/mcp",
    "https://mcp.example.com:8443/mcp",
    "http://mcp.example.com/mcp",
    "https://mcp.example.com/mcp-admin",
    "https://mcp.example.com/mcpx/tools",
    "https://mcp.example.com/",
]


def prepared_with(provider, url):
    """Apply ``provider`` to a request for ``url`` without sending it."""
    return requests.Request("POST", url, auth=provider, data=b"{}").prepare()


@pytest.mark.parametrize("url", HOST_LOOK_ALIKES)
def test_a_bound_bearer_token_is_not_put_on_a_look_alike_server(url):
    provider = BearerTokenProvider("t0ken", server_url=BOUND)
    with pytest.raises(ConfigurationError) as info:
        prepared_with(provider, url)
    assert "refusing to send its token" in str(info.value)


@pytest.mark.parametrize("url", [BOUND, BOUND + "/", BOUND + "/tools", BOUND + "?x=1",
                                 "HTTPS://MCP.EXAMPLE.COM/mcp"])
def test_a_bound_bearer_token_goes_to_its_server_and_below(url):
    provider = BearerTokenProvider("t0ken", server_url=BOUND)
    assert prepared_with(provider, url).headers["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize("url", HOST_LOOK_ALIKES)
def test_a_configured_resource_refuses_a_look_alike_server(url):
    provider = ClientCredentialsProvider("c", "s3cret", resource=BOUND,
                                         token_endpoint="https://as.example.com/token",
                                         issuer="https://as.example.com")
    with pytest.raises(ConfigurationError) as info:
        prepared_with(provider, url)
    assert "refusing to send its token" in str(info.value)


def test_a_bound_provider_sends_nothing_to_a_sibling_path(stack, new_session):
    """Over real sockets: ``/mcp-admin`` on the same host gets neither a token nor a
    request, while ``/mcp`` works."""
    admin = stack.mcp.base_url + "/mcp-admin"
    for auth in (BearerTokenProvider(lambda: "t0ken", server_url=stack.mcp_url),
                 ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                           resource=stack.mcp_url,
                                           token_endpoint=stack.as_.token_endpoint,
                                           issuer=stack.issuer)):
        session = new_session()
        session.auth = auth
        with pytest.raises(ConfigurationError):
            rpc(session, admin)
    assert stack.mcp.requests_to("/mcp-admin") == []
    session = new_session()
    session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             resource=stack.mcp_url,
                                             token_endpoint=stack.as_.token_endpoint,
                                             issuer=stack.issuer)
    assert rpc(session, stack.mcp_url).status_code == 200


# -- the token cache key includes the issuer ----------------------------------------------------

def test_one_cache_keeps_the_tokens_of_two_issuers_apart(new_session):
    """Two providers with the same client id and secret, pinned to different AS, for the
    same MCP server (same resource), sharing one cache: each uses its own AS's token."""
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("c", client_secret="pw")
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1, as2]) as mcp:
            cache = MemoryTokenCache()
            tokens = {}
            for server in (as1, as2):
                session = new_session()
                session.auth = ClientCredentialsProvider("c", "pw", expected_issuer=server.issuer,
                                                         cache=cache)
                assert rpc(session, mcp.url).status_code == 200
                tokens[server.issuer] = bearer(mcp.mcp_requests()[-1])
            assert len(as1.token_requests()) == 1 and len(as2.token_requests()) == 1
            assert as1.introspect(tokens[as1.issuer]) is not None
            assert as2.introspect(tokens[as2.issuer]) is not None
            assert tokens[as1.issuer] != tokens[as2.issuer]


# -- the issuer binding (SEP-2352) ---------------------------------------------------------------

class _GatedTransport(RequestsTransport):
    """Holds AS metadata fetches until ``parties`` discoveries have all reached one."""

    def __init__(self, parties):
        RequestsTransport.__init__(self, timeout=10)
        self.barrier = threading.Barrier(parties, timeout=10)

    def __call__(self, request):
        if "/.well-known/oauth-authorization-server" in request.url:
            self.barrier.wait()
        return RequestsTransport.__call__(self, request)


def test_two_servers_naming_different_authorization_servers_at_once():
    """One unpinned provider discovers two MCP servers at the same time, each naming
    its own AS. Discovery cannot refuse (nothing is bound yet when both start); the
    binding must: the credentials reach exactly one AS."""
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("c", client_secret="pw")
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1]) as a, \
                MCPServer(authorization_servers=[as2]) as b:
            provider = ClientCredentialsProvider("c", "pw", transport=_GatedTransport(2))
            outcomes = {}

            def run(url):
                try:
                    outcomes[url] = provider.token(url)
                except Exception as exc:  # recorded and checked below
                    outcomes[url] = exc

            at_once([lambda u=u: run(u) for u in (a.url, b.url)])
            refused = [o for o in outcomes.values()
                       if isinstance(o, AuthorizationServerMismatchError)]
            granted = [o for o in outcomes.values() if isinstance(o, str)]
            assert len(refused) == 1 and len(granted) == 1, outcomes
            # both discoveries got as far as the AS metadata; one AS got the secret
            assert len(as1.metadata_requests()) == 1 and len(as2.metadata_requests()) == 1
            assert len(as1.token_requests()) + len(as2.token_requests()) == 1
            winner = as1 if as1.token_requests() else as2
            assert refused[0].expected_issuer == winner.issuer


# -- the command refuses secrets on its command line ---------------------------------------------

@pytest.mark.parametrize("flag, alternative", [
    ("--client-secret", "--client-secret-file FILE or MCPAUTH_CLIENT_SECRET"),
    ("--token", "--token-file FILE or MCPAUTH_TOKEN"),
    ("--private-key", "--private-key-file FILE or MCPAUTH_PRIVATE_KEY"),
])
@pytest.mark.parametrize("form", ["separate", "equals"])
def test_the_command_refuses_a_secret_flag_with_its_own_message(stack, monkeypatch, flag,
                                                                 alternative, form):
    """Everything else is valid (credentials in the environment), so only the refusal
    can stop the run: no other usage error stands in for it."""
    for name in list(os.environ):
        if name.startswith("MCPAUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MCPAUTH_CLIENT_ID", stack.client_id)
    monkeypatch.setenv("MCPAUTH_CLIENT_SECRET", stack.client_secret)
    value = "V4lue-that-must-not-show"
    argv = ["token", stack.mcp_url] + ([flag, value] if form == "separate"
                                       else [flag + "=" + value])
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, stdout=out, stderr=err)
    assert code == cli.EXIT_USAGE
    assert out.getvalue() == ""
    line = err.getvalue().strip()
    assert line.startswith("mcpauth: error: {} is not accepted: ".format(flag)), line
    assert line.endswith("use " + alternative), line
    assert value not in err.getvalue()
    assert stack.as_.requests == [] and stack.mcp.requests == []
    # the control: the same command without the flag succeeds
    assert cli.main(["token", stack.mcp_url], stdout=io.StringIO(),
                    stderr=io.StringIO()) == cli.EXIT_OK


# -- single-flight on the proactive renewal path --------------------------------------------------

def test_one_renewal_in_the_renewal_window_and_nobody_waits_for_it(new_session):
    """Eight threads find the token in its renewal window at once: one renews (slowly),
    the other seven keep the still-valid token and are done before the renewal is."""
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        provider = clocked_provider(stack, clock)
        old = provider.token()
        clock.now += 3570
        stack.as_.delay = 1.5
        results = []

        def worker():
            token = provider.token()
            results.append((token, time.monotonic()))

        at_once([worker] * 8)
        assert len(results) == 8
        assert len(stack.as_.token_requests()) == 2        # the first token + one renewal
        renewed = [r for r in results if r[0] != old]
        kept = [r for r in results if r[0] == old]
        assert len(renewed) == 1 and len(kept) == 7
        assert all(done < renewed[0][1] for _, done in kept)
        assert provider.token() == renewed[0][0]


def test_processes_sharing_a_file_cache_renew_once(tmp_path):
    """Two providers on one cache file (as two cron processes would be) both find the
    token in its renewal window: the file lock and the re-check under it make the second
    one take the first one's new token instead of asking again."""
    clock = FakeClock()
    path = str(tmp_path / "tokens.json")
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        first, second = (clocked_provider(stack, clock, cache=FileTokenCache(path))
                         for _ in range(2))
        old = first.token()
        assert second.token() == old
        assert len(stack.as_.token_requests()) == 1
        clock.now += 3570
        stack.as_.delay = 1.0
        results = []
        at_once([lambda p=p: results.append(p.token()) for p in (first, second)])
        assert len(stack.as_.token_requests()) == 2        # the first token + one renewal
        assert len(results) == 2 and results[0] == results[1] != old
        assert first.token() == second.token() == results[0]


def test_an_expired_token_is_never_handed_out_while_another_thread_renews(new_session):
    """Past expiry (not merely in the renewal window) nobody may take the old token:
    the threads that do not renew wait for the one that does."""
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        provider = clocked_provider(stack, clock)
        old = provider.token()
        clock.now += 3601
        stack.as_.delay = 0.5
        results = []
        at_once([lambda: results.append(provider.token())] * 4)
        assert len(results) == 4 and old not in results
        assert len(set(results)) == 1
        assert len(stack.as_.token_requests()) == 2


def test_a_renewal_refused_for_good_is_reported_not_hidden(caplog):
    """In the renewal window an OAuth refusal such as invalid_client, or a 4xx without an
    OAuth body, is not transient: it is raised, not hidden behind the current token. A
    transient failure (503) keeps the current token."""
    clock = FakeClock()
    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        provider = clocked_provider(stack, clock)
        old = provider.token()
        clock.now += 3570
        stack.as_.fail_next("invalid_client", status=401)
        with pytest.raises(OAuthError) as info:
            provider.token()
        assert info.value.error == "invalid_client"
        stack.as_.set_route(stack.as_.token_path, 400, b"bad request", times=1,
                            headers={"Content-Type": "text/plain"})
        with pytest.raises(TokenResponseError) as info:
            provider.token()
        assert info.value.status_code == 400 and not info.value.retryable
        stack.as_.fail_next("temporarily_unavailable", status=503)
        assert provider.token() == old
        assert len(stack.as_.token_requests()) == 4


def test_a_burst_of_401s_for_one_token_renews_once(new_session):
    """Eight requests carry the same (revoked) token and are all refused: the first to
    handle its 401 re-discovers and renews; the others take the new token (no second
    discovery, no second token request)."""
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        session = new_session()
        session.auth = provider
        assert rpc(session, stack.mcp_url).status_code == 200
        stack.as_.revoke()
        stack.as_.delay = 0.3
        metadata = len(stack.as_.metadata_requests())
        prm = len(stack.mcp.prm_requests())
        sessions = [new_session() for _ in range(8)]
        for s in sessions:
            s.auth = provider
        statuses = []
        at_once([lambda s=s, i=i: statuses.append(rpc(s, stack.mcp_url, 10 + i).status_code)
                 for i, s in enumerate(sessions)])
        assert statuses == [200] * 8
        assert len(stack.as_.token_requests()) == 2
        # The protected resource metadata is fetched again once; the authorization
        # server's metadata is reused because the PRM still names the same issuer.
        assert len(stack.as_.metadata_requests()) == metadata
        assert len(stack.mcp.prm_requests()) == prm + 1


def test_a_403_that_is_not_insufficient_scope_is_returned_as_it_is(new_session):
    """Only ``error="insufficient_scope"`` starts a step-up (RFC 6750 §3.1, SEP-2350);
    another 403 with a challenge is the server's answer, not a reason for a new token."""
    with LoopbackStack() as stack:
        session = new_session()
        session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        assert rpc(session, stack.mcp_url).status_code == 200
        stack.mcp.set_route(stack.mcp.path, 403, {"error": "forbidden"}, method="POST",
                            times=1, headers={"WWW-Authenticate":
                                              'Bearer error="invalid_token", scope="admin"'})
        reply = rpc(session, stack.mcp_url, msg_id=2)
        assert reply.status_code == 403 and reply.history == []
        assert len(stack.as_.token_requests()) == 1


def test_basic_credentials_use_the_standard_base64_alphabet(stack):
    """RFC 7617 §2 / RFC 4648 §4: Basic uses base64 with "+" and "/", not base64url. A
    "~" (unreserved, so left as it is by the RFC 6749 §2.3.1 form-encoding) every third
    octet produces them."""
    stack.as_.register_client("c~", client_secret="~~~~~~~~~")
    provider = ClientCredentialsProvider("c~", "~~~~~~~~~", server_url=stack.mcp_url,
                                         token_endpoint_auth_method="client_secret_basic")
    assert provider.token()
    (record,) = stack.as_.token_requests()
    assert record.info["auth_method"] == "client_secret_basic"
    assert record.info["client_id"] == "c~"


# -- cached discovery results are re-checked against the provider's policy ---------------------

def _plant(path, genuine, hostile):
    """Rewrite ``genuine`` to ``hostile`` in every string value (not in the keys) of the
    cache file: what a local user who can write the file could do."""
    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, str):
            return value.replace(genuine, hostile)
        return value

    with open(path) as f:
        doc = json.load(f)
    planted = swap(doc)
    assert planted != doc
    with open(path, "w") as f:
        json.dump(planted, f)


def test_a_cached_discovery_naming_another_issuer_is_not_used_by_a_pinned_provider(tmp_path):
    """Even with allow_issuer_change=True, expected_issuer is a pin: a cached target
    naming another AS is discarded and discovery runs again."""
    path = str(tmp_path / "cache.json")
    with LoopbackStack() as stack, AuthorizationServer() as evil:
        evil.register_client(stack.client_id, client_secret=stack.client_secret)

        def provider(scope):
            return ClientCredentialsProvider(
                stack.client_id, stack.client_secret, expected_issuer=stack.issuer,
                allow_issuer_change=True, scope=scope, server_url=stack.mcp_url,
                cache=FileTokenCache(path))

        assert provider("a").token()
        _plant(path, stack.issuer, evil.issuer)
        assert provider("b").token()                     # another scope: a new token
        assert evil.requests == []
        assert len(stack.as_.token_requests()) == 2


def test_a_cached_discovery_naming_another_issuer_does_not_break_a_bound_provider(tmp_path):
    """A provider bound to its first AS finds, for a second server, a cached target
    naming another AS: it is ignored (discovery runs again and finds the bound AS)."""
    path = str(tmp_path / "cache.json")
    with AuthorizationServer() as genuine, AuthorizationServer() as evil:
        for server in (genuine, evil):
            server.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[genuine]) as a, \
                MCPServer(authorization_servers=[genuine]) as b:
            assert ClientCredentialsProvider("c", "pw", cache=FileTokenCache(path)).token(b.url)
            _plant(path, genuine.issuer, evil.issuer)
            provider = ClientCredentialsProvider("c", "pw", cache=FileTokenCache(path))
            assert provider.token(a.url)                 # bound to genuine now
            assert provider.token(b.url)
            assert evil.requests == []


def test_pinned_providers_sharing_a_cache_file_keep_their_discovery_apart(tmp_path):
    """Two jobs pinned to different AS for one MCP server share a cache file; the next
    run of each starts warm: no metadata fetched again."""
    path = str(tmp_path / "cache.json")
    with AuthorizationServer() as as1, AuthorizationServer() as as2:
        as1.register_client("c", client_secret="pw")
        as2.register_client("c", client_secret="pw")
        with MCPServer(authorization_servers=[as1, as2]) as mcp:
            def run(server):
                return ClientCredentialsProvider("c", "pw", expected_issuer=server.issuer,
                                                 cache=FileTokenCache(path)).token(mcp.url)

            first = {s.issuer: run(s) for s in (as1, as2)}
            fetched = (len(as1.metadata_requests()), len(as2.metadata_requests()))
            again = {s.issuer: run(s) for s in (as1, as2)}
            assert again == first
            assert (len(as1.metadata_requests()), len(as2.metadata_requests())) == fetched
            assert len(as1.token_requests()) == 1 and len(as2.token_requests()) == 1


# -- ID-JAG reuse ends at the earlier of its exp and the IdP's expires_in ----------------------

@pytest.mark.parametrize("exp_after, expires_in", [(600, 60), (60, 600)],
                         ids=["expires_in-first", "exp-first"])
def test_an_id_jag_is_reused_only_until_the_earlier_expiry(exp_after, expires_in):
    pytest.importorskip("cryptography")
    from mcpauth import CrossAppAccessProvider, JwtAuthGrant

    clock = FakeClock()
    with LoopbackStack(idp=True, as_options={"clock": clock, "token_lifetime": 40}) as stack:
        stack.as_.reject_replayed_id_jag = False   # re-redeeming an ID-JAG is allowed
        calls = []

        def callback(ctx):
            now = int(clock())
            header = {"typ": "oauth-id-jag+jwt"}
            claims = {"iss": stack.idp.issuer, "sub": "alice", "aud": stack.issuer,
                      "client_id": stack.client_id, "resource": ctx.resource_url,
                      "iat": now, "exp": now + exp_after, "jti": os.urandom(8).hex()}
            calls.append(now)
            return JwtAuthGrant(stack.idp.sign(claims, header), expires_in=expires_in)

        provider = CrossAppAccessProvider(callback, stack.client_id, stack.client_secret,
                                          server_url=stack.mcp_url, clock=clock)
        assert provider.token()
        assert len(calls) == 1
        clock.now += 45        # the access token (40 s) expired; the ID-JAG is due too
        assert provider.token()
        assert len(calls) == 2
        assert len(stack.as_.token_requests()) == 2


# -- the cache's temporary file is never opened through a planted link -------------------------

def test_a_planted_link_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    """The temporary name has 48 random bits; suppose another local user guessed it and
    put a symlink there. The write must fail (O_EXCL, O_NOFOLLOW) rather than write
    tokens into the file the link points to."""
    import secrets  # what mcpauth.filecache names its temporary files with

    monkeypatch.setattr(secrets, "token_hex", lambda n: "guessed")
    path = tmp_path / "cache.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    os.symlink(str(victim), str(tmp_path / ".cache.json.guessed.tmp"))
    cache = FileTokenCache(str(path))
    with pytest.warns(Warning):
        cache.set_discovery("https://mcp.example.com/mcp", {"issuer": "x"})
    assert victim.read_text() == "untouched"
