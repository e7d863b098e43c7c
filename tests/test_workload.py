"""Workload identity federation (SEP-1933) end to end, against mcpauth.testing.

The loopback authorization server trusts a platform token issuer
(``trust_workload_issuer``) and redeems its JWTs with the RFC 7523 §2.1 JWT bearer grant,
without client authentication. Requirement ids (K1-K4, D1) refer to
shared/REQUIREMENTS.md; scenario names follow the conformance suite's auth/wif-jwt-bearer.
"""

import logging
import os
import pathlib
import pickle
import time
import uuid

import pytest

pytest.importorskip("cryptography")

from mcpauth import (  # noqa: E402
    AuthorizationServerMismatchError,
    ConfigurationError,
    OAuthError,
    UnauthorizedError,
    WorkloadIdentityProvider,
    jws,
)
from mcpauth.grants import GRANT_TYPE_JWT_BEARER  # noqa: E402
from mcpauth.testing import AuthorizationServer, LoopbackStack  # noqa: E402

PLATFORM = "https://platform.example"
ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}


def whoami(session, url, msg_id=1):
    body = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}, "_meta": META}}
    return session.post(url, json=body, headers={
        "Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call", "Mcp-Name": "whoami"})


@pytest.fixture(scope="module")
def platform_key():
    return jws.generate_private_key("EC", curve="P-256")


@pytest.fixture
def stack(platform_key):
    with LoopbackStack() as s:
        s.as_.trust_workload_issuer(PLATFORM, platform_key.public_jwk(),
                                    allowed_subjects=["wl-1"], allowed_scopes=["read"])
        yield s


class Platform(object):
    """Mints platform JWTs the way a workload platform would, recording each one."""

    def __init__(self, stack, key):
        self.stack = stack
        self.key = key
        self.issued = []

    def jwt(self, **claims):
        now = int(time.time())
        body = {"iss": PLATFORM, "sub": "wl-1", "aud": self.stack.issuer, "iat": now,
                "exp": now + 600, "jti": str(uuid.uuid4())}
        body.update(claims)
        token = jws.sign(dict((k, v) for k, v in body.items() if v is not None), self.key,
                         "ES256", headers={"typ": "JWT"})
        self.issued.append(token)
        return token

    __call__ = jwt


@pytest.fixture
def platform(stack, platform_key):
    return Platform(stack, platform_key)


def token_requests(stack):
    return stack.as_.token_requests()


def test_exported_from_the_package():
    import mcpauth.workload

    assert "WorkloadIdentityProvider" in mcpauth.__all__
    assert mcpauth.WorkloadIdentityProvider is mcpauth.workload.WorkloadIdentityProvider


# -- K1: the grant --------------------------------------------------------------------------


def test_callable_end_to_end(stack, platform, session, caplog):
    provider = WorkloadIdentityProvider(platform, scope="read")
    session.auth = provider
    assert provider.mcp_extension is None
    with caplog.at_level(logging.DEBUG, logger="mcpauth"):
        reply = whoami(session, stack.mcp_url)
    assert reply.status_code == 200
    assert reply.json()["result"]["structuredContent"] == {
        "client_id": None, "scope": "read", "sub": "wl-1"}
    (record,) = token_requests(stack)
    # K1: jwt-bearer, the JWT, resource (D1), scope; no client id, no client auth
    assert record.form == {"grant_type": GRANT_TYPE_JWT_BEARER,
                           "assertion": platform.issued[0], "scope": "read",
                           "resource": stack.mcp.resource}
    assert "Authorization" not in record.headers
    assert record.info["assertion_kind"] == "workload"
    # the token is reused: no second platform call or token request
    assert whoami(session, stack.mcp_url, msg_id=2).status_code == 200
    assert len(platform.issued) == 1 and len(token_requests(stack)) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    access = stack.mcp.mcp_requests()[-1].headers["Authorization"][7:]
    assert "token issued by" in logged
    for secret in (platform.issued[0], access):
        assert secret not in logged
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_client_id_is_sent_only_when_configured(stack, platform, session):
    session.auth = WorkloadIdentityProvider(platform, client_id="wl-client")
    assert whoami(session, stack.mcp_url).status_code == 200
    form = token_requests(stack)[0].form
    assert form["client_id"] == "wl-client"
    assert "client_secret" not in form and "client_assertion" not in form


def test_token_without_an_mcp_request(stack, platform):
    provider = WorkloadIdentityProvider(platform, server_url=stack.mcp_url,
                                        expected_issuer=stack.issuer)
    assert stack.as_.introspect(provider.token())["sub"] == "wl-1"
    assert stack.mcp.mcp_requests() == []


def test_expected_issuer_pin(stack, platform, session):
    session.auth = WorkloadIdentityProvider(platform, expected_issuer="https://as.example")
    with pytest.raises(AuthorizationServerMismatchError):
        whoami(session, stack.mcp_url)
    assert platform.issued == [] and token_requests(stack) == []


# -- K4: a fresh platform token for every token request ----------------------------------------


def test_file_is_read_again_for_every_token_request(stack, platform, session, tmp_path):
    path = tmp_path / "token"
    path.write_text(platform.jwt() + "\n")
    provider = WorkloadIdentityProvider(str(path))
    session.auth = provider
    assert whoami(session, stack.mcp_url).status_code == 200
    path.write_text(platform.jwt())                   # the kubelet rotates it in place
    stack.as_.revoke()                               # force a new access token
    reply = whoami(session, stack.mcp_url, msg_id=2)
    assert reply.status_code == 200 and [h.status_code for h in reply.history] == [401]
    assert [r.form["assertion"] for r in token_requests(stack)] == platform.issued
    assert str(path) in repr(provider) and platform.issued[0] not in repr(provider)
    with pytest.raises(TypeError):
        pickle.dumps(provider)


def test_path_like_assertion(stack, platform, tmp_path):
    path = pathlib.Path(str(tmp_path)) / "token"
    path.write_text(platform.jwt())
    provider = WorkloadIdentityProvider(path, server_url=stack.mcp_url)
    assert stack.as_.introspect(provider.token())["sub"] == "wl-1"


def test_callable_is_called_for_every_token_request(stack, platform, session):
    session.auth = WorkloadIdentityProvider(platform)
    whoami(session, stack.mcp_url)
    stack.as_.revoke()
    whoami(session, stack.mcp_url, msg_id=2)
    assert len(platform.issued) == 2
    assert [r.form["assertion"] for r in token_requests(stack)] == platform.issued


# -- bad input ------------------------------------------------------------------------------------


def test_missing_file(stack, session, tmp_path):
    path = os.path.join(str(tmp_path), "absent-token")
    session.auth = WorkloadIdentityProvider(path)
    with pytest.raises(ConfigurationError) as info:
        whoami(session, stack.mcp_url)
    assert str(info.value) == "workload token file {} does not exist".format(path)
    assert token_requests(stack) == []


def test_empty_file(stack, session, tmp_path):
    path = tmp_path / "token"
    path.write_text("  \n")
    session.auth = WorkloadIdentityProvider(str(path))
    with pytest.raises(ConfigurationError) as info:
        whoami(session, stack.mcp_url)
    assert str(info.value) == "workload token file {} is empty".format(path)
    assert token_requests(stack) == []


def test_unreadable_or_odd_files(stack, tmp_path):
    provider = WorkloadIdentityProvider(str(tmp_path), server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError) as info:
        provider.token()
    assert "is a directory" in str(info.value)
    garbage = tmp_path / "garbage"
    garbage.write_text("secret-but-not-a-jwt")
    with pytest.raises(ConfigurationError) as info:
        WorkloadIdentityProvider(str(garbage), server_url=stack.mcp_url).token()
    assert "does not hold a single compact JWT" in str(info.value)
    assert "secret-but-not-a-jwt" not in str(info.value)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigurationError) as info:
        WorkloadIdentityProvider(str(binary), server_url=stack.mcp_url).token()
    assert "not UTF-8" in str(info.value)
    big = tmp_path / "big"
    big.write_bytes(b"a" * (64 * 1024 + 1))
    with pytest.raises(ConfigurationError) as info:
        WorkloadIdentityProvider(str(big), server_url=stack.mcp_url).token()
    assert "larger than" in str(info.value)
    assert token_requests(stack) == []


@pytest.mark.parametrize("value, words", [
    (None, "returned NoneType"),
    (b"eyJ.a.b", "returned bytes"),
    ("", "empty string"),
    ("   ", "empty string"),
    ("secret-value", "single compact JWT"),
    ("one.two.three four", "single compact JWT"),
    ("e30.e30.s\u00efg", "single compact JWT"),       # non-ASCII signature part
    ("e30.e30.sig!", "single compact JWT"),             # not base64url
    ("e30\r\n.e30.sig", "single compact JWT"),
    ("a.b.c", "not a JWT"),
])
def test_callable_returning_something_unusable(stack, session, value, words):
    session.auth = WorkloadIdentityProvider(lambda: value)
    with pytest.raises(ConfigurationError) as info:
        whoami(session, stack.mcp_url)
    assert words in str(info.value)
    assert "secret-value" not in str(info.value)
    assert token_requests(stack) == []


def test_constructor_refuses_a_jwt_given_as_a_path(platform):
    token = platform.jwt()
    with pytest.raises(ConfigurationError) as info:
        WorkloadIdentityProvider(token)
    assert "looks like a JWT" in str(info.value) and token not in str(info.value)
    for bad in (42, None, ""):
        with pytest.raises(ConfigurationError):
            WorkloadIdentityProvider(bad)


def test_exceptions_from_the_callable_propagate(stack, session):
    class PlatformDown(Exception):
        pass

    boom = PlatformDown()

    def source():
        raise boom

    session.auth = WorkloadIdentityProvider(source)
    with pytest.raises(PlatformDown) as info:
        whoami(session, stack.mcp_url)
    assert info.value is boom


# -- K2: client-side checks ----------------------------------------------------------------------


def _mismatch_checks(info, stack, token, issuer):
    message = str(info.value)
    assert token not in message and token not in repr(info.value)
    assert "refusing to send it" in message
    assert issuer in message
    assert info.value.issuer == issuer


def test_refuses_a_foreign_audience(stack, platform, session):
    session.auth = WorkloadIdentityProvider(lambda: platform.jwt(aud="https://wrong.example"))
    with pytest.raises(AuthorizationServerMismatchError) as info:
        whoami(session, stack.mcp_url)
    _mismatch_checks(info, stack, platform.issued[0], stack.issuer)
    assert "https://wrong.example" in str(info.value)
    assert info.value.expected_issuer == "https://wrong.example"
    assert token_requests(stack) == []                # nothing reached the token endpoint
    assert len(platform.issued) == 1


def test_refuses_when_the_mcp_server_names_another_authorization_server(
        stack, platform, session):
    """Audience injection: the platform JWT is for stack's AS; the MCP server names evil."""
    evil = AuthorizationServer().start()
    try:
        stack.mcp.authorization_servers = [evil]
        session.auth = WorkloadIdentityProvider(platform)
        with pytest.raises(AuthorizationServerMismatchError) as info:
            whoami(session, stack.mcp_url)
        _mismatch_checks(info, stack, platform.issued[0], evil.issuer)
        assert info.value.expected_issuer == stack.issuer
        assert evil.token_requests() == [] and token_requests(stack) == []
        assert all(r.path != "/token" for r in evil.requests)
    finally:
        evil.stop()


@pytest.mark.parametrize("aud", [None, [], 42, ["https://wrong.example", 7]])
def test_refuses_a_token_without_a_usable_audience(stack, platform, aud):
    provider = WorkloadIdentityProvider(lambda: platform.jwt(aud=aud),
                                        server_url=stack.mcp_url)
    with pytest.raises(AuthorizationServerMismatchError) as info:
        provider.token()
    assert token_requests(stack) == []
    assert platform.issued[0] not in str(info.value)


def test_refuses_a_foreign_audience_with_a_configured_token_endpoint(stack, platform):
    provider = WorkloadIdentityProvider(lambda: platform.jwt(aud="https://wrong.example"),
                                        server_url=stack.mcp_url,
                                        token_endpoint=stack.as_.token_endpoint)
    with pytest.raises(AuthorizationServerMismatchError) as info:
        provider.token()
    assert "issuer unknown" in str(info.value)
    assert token_requests(stack) == []


def test_token_endpoint_audience_is_fine(stack, platform, session, caplog):
    session.auth = WorkloadIdentityProvider(
        lambda: platform.jwt(aud=[stack.as_.token_endpoint]))
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        assert whoami(session, stack.mcp_url).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("shape", ["slash", "list"])
def test_issuer_audience_variants_are_sent(stack, platform, shape):
    """aud = the issuer with one trailing slash, or a list holding the issuer."""
    aud = stack.issuer + "/" if shape == "slash" else ["https://other.example", stack.issuer]
    provider = WorkloadIdentityProvider(lambda: platform.jwt(aud=aud),
                                        server_url=stack.mcp_url)
    if shape == "list":
        assert provider.token()
    else:
        # The loopback AS is strict about the slash; what matters is that it was asked.
        with pytest.raises(OAuthError) as info:
            provider.token()
        assert info.value.error == "invalid_grant"
    assert len(token_requests(stack)) == 1
    assert token_requests(stack)[0].form["assertion"] == platform.issued[0]


def test_refuses_an_expired_token(stack, platform, session):
    session.auth = WorkloadIdentityProvider(
        lambda: platform.jwt(exp=int(time.time()) - 120))
    with pytest.raises(ConfigurationError) as info:
        whoami(session, stack.mcp_url)
    assert "expired" in str(info.value) and "refusing" in str(info.value)
    assert platform.issued[0] not in str(info.value)
    assert token_requests(stack) == []                # wif-assertion-expired never sent


def test_warns_about_a_token_expired_within_the_leeway(stack, platform, session, caplog):
    session.auth = WorkloadIdentityProvider(
        lambda: platform.jwt(exp=int(time.time()) - 5))
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        with pytest.raises(OAuthError) as info:
            whoami(session, stack.mcp_url)
    assert info.value.error == "invalid_grant"       # the AS decides (clock skew)
    assert any("expired" in r.getMessage() for r in caplog.records)
    assert len(token_requests(stack)) == 1


def test_warns_about_a_missing_exp(stack, platform, caplog):
    provider = WorkloadIdentityProvider(lambda: platform.jwt(exp=None),
                                        server_url=stack.mcp_url)
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        with pytest.raises(OAuthError):
            provider.token()
    assert any("no numeric exp" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("exp", [b"-Infinity", b"Infinity", b"NaN", b"1" + b"0" * 400,
                                 b"true", b'"1700000000"'],
                         ids=["-inf", "inf", "nan", "1e400", "bool", "string"])
def test_unusable_exp_is_a_warning_not_a_crash(stack, platform_key, caplog, exp):
    """exp values json accepts but float arithmetic does not (OverflowError before)."""
    claims = (b'{"iss":"' + PLATFORM.encode() + b'","sub":"wl-1","aud":"'
              + stack.issuer.encode() + b'","iat":1,"jti":"j","exp":' + exp + b"}")
    token = jws.sign(claims, platform_key, "ES256")
    provider = WorkloadIdentityProvider(lambda: token, server_url=stack.mcp_url)
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        try:
            provider.token()                          # the AS decides what it accepts
        except OAuthError:
            pass
    assert any("no numeric exp" in r.getMessage() for r in caplog.records)
    assert len(token_requests(stack)) == 1


def test_deeply_nested_claims_are_a_configuration_error(stack):
    deep = jws.b64url_encode(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}")
    token = jws.b64url_encode(b'{"alg":"ES256"}') + "." + deep + ".c2ln"
    provider = WorkloadIdentityProvider(lambda: token, server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError) as info:
        provider.token()
    assert "not a JWT" in str(info.value)
    assert token_requests(stack) == []


# -- K3: no retry, no other grant ---------------------------------------------------------------


@pytest.mark.parametrize("claims, scope, error", [
    ({"exp": -5}, None, "invalid_grant"),          # expired 5 s ago (relative, see below)
    ({"sub": "wl-2"}, None, "unauthorized_client"),
    ({}, "admin", "invalid_scope"),
])
def test_no_retry_and_no_fallback_after_a_final_error(stack, platform, session, claims,
                                                      scope, error):
    if "exp" in claims:
        # Relative to now, not to collection time: the token must be only just expired
        # (inside the provider's leeway) when the test runs, so that the AS refuses it.
        claims = dict(claims, exp=int(time.time()) + claims["exp"])
    session.auth = WorkloadIdentityProvider(lambda: platform.jwt(**claims), scope=scope)
    with pytest.raises(OAuthError) as info:
        whoami(session, stack.mcp_url)
    assert info.value.error == error and not info.value.retryable
    assert [r.form["grant_type"] for r in token_requests(stack)] == [GRANT_TYPE_JWT_BEARER]
    assert len(platform.issued) == 1
    assert len(stack.mcp.mcp_requests()) == 1        # the refused cold request only
    assert platform.issued[0] not in str(info.value) + repr(info.value)


def test_failure_on_the_401_path_does_not_loop(stack, platform, session):
    good = [True]
    session.auth = WorkloadIdentityProvider(
        lambda: platform.jwt() if good[0] else platform.jwt(sub="wl-2"))
    assert whoami(session, stack.mcp_url).status_code == 200
    good[0] = False
    stack.as_.revoke()
    with pytest.raises(OAuthError) as info:
        whoami(session, stack.mcp_url, msg_id=2)
    assert info.value.error == "unauthorized_client"
    assert len(token_requests(stack)) == 2            # one success, one refusal
    assert len(stack.mcp.mcp_requests()) == 3         # cold 401, ok, refused; no replay


def test_second_401_after_a_fresh_token_is_final(stack, platform, session):
    session.auth = WorkloadIdentityProvider(platform)
    stack.mcp.fail_next(401, count=3)
    with pytest.raises(UnauthorizedError):
        whoami(session, stack.mcp_url)
    assert len(token_requests(stack)) == 1
    assert len(stack.mcp.mcp_requests()) == 2


def test_workloads_sharing_a_cache_keep_their_own_tokens(stack, platform, new_session):
    """Tokens are the workload's: providers sharing one cache do not reuse each other's
    tokens (a random per-instance label) unless a cache_key names the workload."""
    from mcpauth import MemoryTokenCache

    shared = MemoryTokenCache()
    for _ in range(2):
        session = new_session()
        session.auth = WorkloadIdentityProvider(platform.jwt, cache=shared)
        assert whoami(session, stack.mcp_url).status_code == 200
    assert len(token_requests(stack)) == 2
    for _ in range(2):
        session = new_session()
        session.auth = WorkloadIdentityProvider(platform.jwt, cache=shared, cache_key="wl-1")
        assert whoami(session, stack.mcp_url).status_code == 200
    assert len(token_requests(stack)) == 3        # the labelled token is reused


def test_dpop_binds_the_workload_token(stack, platform, session):
    from mcpauth.dpop import DPoPKey

    key = DPoPKey.generate("EdDSA")
    session.auth = WorkloadIdentityProvider(platform, scope="read", dpop_key=key)
    assert whoami(session, stack.mcp_url).status_code == 200
    (request,) = token_requests(stack)
    assert request.info["dpop_jkt"] == key.thumbprint
    assert stack.as_.issued_tokens()[0]["cnf"] == {"jkt": key.thumbprint}
    last = stack.mcp.mcp_requests()[-1]
    assert last.headers["Authorization"].startswith("DPoP ") and last.headers["DPoP"]
