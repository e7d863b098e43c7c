"""Cross-app access (SEP-990, ID-JAG) end to end, against mcpauth.testing.

The loopback IdP implements the RFC 8693 token exchange for ID-JAGs and the loopback
authorization server the RFC 7523 JWT bearer grant that redeems them (ID-JAG
"Processing Rules": typ, aud = issuer, client_id = the authenticated client, resource).
Requirement ids (D1, J2, ...) refer to shared/REQUIREMENTS.md.
"""

import json
import logging
import pickle
import threading
import time

import pytest

pytest.importorskip("cryptography")

from mcpauth import (  # noqa: E402
    AuthorizationServerMismatchError,
    ConfigurationError,
    CrossAppAccessContext,
    CrossAppAccessProvider,
    InsecureEndpointError,
    IssuerMismatchError,
    JwtAuthGrant,
    OAuthError,
    TokenResponseError,
    discover_and_request_jwt_auth_grant,
    exchange_jwt_auth_grant,
    jws,
    request_jwt_authorization_grant,
)
from mcpauth.crossapp import ID_JAG_REFRESH_SKEW  # noqa: E402
from mcpauth.grants import (  # noqa: E402
    GRANT_TYPE_JWT_BEARER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_REFRESH_TOKEN,
    TOKEN_TYPE_SAML2,
)
from mcpauth.testing import AuthorizationServer, LoopbackStack  # noqa: E402

ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}


def whoami(session, url, msg_id=1):
    body = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}, "_meta": META}}
    return session.post(url, json=body, headers={
        "Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call", "Mcp-Name": "whoami"})


@pytest.fixture
def stack():
    with LoopbackStack(idp=True) as s:
        yield s


def idp_secret(stack):
    return stack.idp_client.client_secret


def secrets_of(stack, *extra):
    return [stack.client_secret, idp_secret(stack)] + [e for e in extra if e]


def assert_clean(text, secrets):
    for secret in secrets:
        assert secret not in text


def grant_for(stack, id_token, **kw):
    """Leg 1 with the stack's IdP client (Basic by default)."""
    return request_jwt_authorization_grant(
        stack.idp.token_endpoint, id_token, stack.issuer, stack.mcp.resource,
        stack.idp_client.client_id, client_secret=idp_secret(stack), **kw)


class Assertion(object):
    """An assertion callback that asks the loopback IdP, recording each context."""

    def __init__(self, stack, id_token=None, **kw):
        self.stack = stack
        self.id_token = id_token or stack.id_token("alice@example.com")
        self.kw = kw
        self.contexts = []

    def __call__(self, ctx):
        self.contexts.append(ctx)
        return discover_and_request_jwt_auth_grant(
            self.stack.idp.issuer, self.id_token, ctx.authorization_server_url,
            ctx.resource_url, self.stack.idp_client.client_id, idp_secret(self.stack),
            scope=ctx.scope, session=ctx.session, **self.kw)


def test_public_names_are_exported_from_the_package():
    import mcpauth
    import mcpauth.crossapp

    for name in ("CrossAppAccessContext", "CrossAppAccessProvider", "JwtAuthGrant",
                 "discover_and_request_jwt_auth_grant", "exchange_jwt_auth_grant",
                 "request_jwt_authorization_grant"):
        assert name in mcpauth.__all__
        assert getattr(mcpauth, name) is getattr(mcpauth.crossapp, name)


# ==========================================================================================
# Leg 1: request_jwt_authorization_grant (RFC 8693 at the IdP)
# ==========================================================================================


def test_token_exchange_request_and_result(stack):
    id_token = stack.id_token("alice@example.com")
    grant = grant_for(stack, id_token, scope="tools")
    (record,) = stack.idp.token_requests()
    # J2: exactly these parameters, resource always (D1), client auth Basic (E3)
    assert record.form == {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "audience": stack.issuer,
        "resource": stack.mcp.resource,
        "scope": "tools",
        "subject_token": id_token,
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
    }
    assert record.info["auth_method"] == "client_secret_basic"
    assert record.headers["Content-Type"] == "application/x-www-form-urlencoded"
    # J3: the result
    assert isinstance(grant, JwtAuthGrant)
    assert grant.expires_in == 300 and grant.scope == "tools"
    header, claims = jws.decode_unverified(grant.jwt_auth_grant)
    assert header["typ"] == "oauth-id-jag+jwt"
    assert claims["aud"] == stack.issuer and claims["sub"] == "alice@example.com"
    assert claims["client_id"] == stack.client_id
    assert abs(grant.expires_at - claims["exp"]) <= 2
    # the grant is a secret
    assert grant.jwt_auth_grant not in repr(grant) and "[secure]" in repr(grant)
    assert grant.jwt_auth_grant not in str(grant)
    with pytest.raises(TypeError):
        pickle.dumps(grant)


def test_token_exchange_client_secret_post(stack):
    grant_for(stack, stack.id_token(), token_endpoint_auth_method="client_secret_post")
    record = stack.idp.token_requests()[0]
    assert record.info["auth_method"] == "client_secret_post"
    assert record.form["client_id"] == stack.idp_client.client_id
    assert "Authorization" not in record.headers                          # E2


def test_token_exchange_private_key_jwt(stack):
    key = jws.generate_private_key("EC", curve="P-256")
    stack.idp.register_client("idp-pkj", public_jwk=key.public_jwk(),
                              idjag_client_id=stack.client_id)
    id_token = stack.idp.issue_id_token("bob@example.com", aud="idp-pkj")
    grant = request_jwt_authorization_grant(
        stack.idp.token_endpoint, id_token, stack.issuer, stack.mcp.resource, "idp-pkj",
        private_key=key, issuer=stack.idp.issuer)
    record = stack.idp.token_requests()[0]
    assert record.info["auth_method"] == "private_key_jwt"
    assert record.info["client_assertion_claims"]["aud"] == stack.idp.issuer
    assert "client_secret" not in record.form and "Authorization" not in record.headers
    assert jws.decode_unverified(grant.jwt_auth_grant)[1]["sub"] == "bob@example.com"


def test_token_exchange_without_credentials_sends_client_id_only(stack):
    # The conformance IdP checks no client authentication; this one requires it.
    with pytest.raises(OAuthError) as info:
        request_jwt_authorization_grant(
            stack.idp.token_endpoint, stack.id_token(), stack.issuer, stack.mcp.resource,
            stack.idp_client.client_id)
    assert info.value.error == "invalid_client"
    form = stack.idp.token_requests()[0].form
    assert form["client_id"] == stack.idp_client.client_id
    assert "client_secret" not in form and "client_assertion" not in form


@pytest.mark.parametrize("token_type", [TOKEN_TYPE_SAML2, TOKEN_TYPE_REFRESH_TOKEN])
def test_other_subject_token_types_are_sent(stack, token_type):
    # The loopback IdP only exchanges ID tokens: the point is what was sent.
    with pytest.raises(OAuthError) as info:
        grant_for(stack, "PHNhbWw-opaque-subject", subject_token_type=token_type)
    assert info.value.error == "invalid_request"
    assert stack.idp.token_requests()[0].form["subject_token_type"] == token_type
    assert "PHNhbWw-opaque-subject" not in str(info.value)


def test_n_a_token_type_is_case_insensitive(stack):
    stack.idp.exchange_token_type = "n_a"
    assert grant_for(stack, stack.id_token()).scope is None


def test_wrong_issued_token_type_is_refused(stack):
    id_token = stack.id_token()
    stack.idp.issued_token_type_override = "urn:ietf:params:oauth:token-type:access_token"
    with pytest.raises(TokenResponseError) as info:
        grant_for(stack, id_token)
    message = str(info.value)
    assert "issued_token_type" in message and "access_token" in message
    assert TOKEN_TYPE_ID_JAG in message
    assert_clean(message, secrets_of(stack, id_token))
    issued = stack.idp.issued_id_jags()
    assert issued and issued[0]["jti"] not in message


def test_bearer_token_type_is_refused(stack):
    stack.idp.exchange_token_type = "Bearer"         # J3: N_A is REQUIRED (F2)
    with pytest.raises(TokenResponseError) as info:
        grant_for(stack, stack.id_token())
    assert "token_type" in str(info.value) and "n_a" in str(info.value)


@pytest.mark.parametrize("body, words", [
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A"}, "no access_token"),
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A",
      "access_token": "opaque-not-a-jwt"}, "not a compact JWT"),
    ({"access_token": "x.y.z", "token_type": "N_A"}, "issued_token_type"),
    # not base64url in the signature part (decode_unverified never reads it)
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A",
      "access_token": "e30.e30.opaque-not-a-jwt!"}, "not a compact JWT"),
    # B: not 1*VSCHAR at all (RFC 6749 Appendix A.12)
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A",
      "access_token": "e30.e30.opaque-not-a-jwt\r\nX-Injected: 1"}, "A.12"),
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A",
      "access_token": "e30.e30.opaque-not-a-jwt\u20ac"}, "A.12"),
    # E: JSON nested past the recursion limit in the header (RecursionError before)
    ({"issued_token_type": TOKEN_TYPE_ID_JAG, "token_type": "N_A",
      "access_token": jws.b64url_encode(b'{"typ":' + b"[" * 100000 + b"]" * 100000 + b"}")
      + ".e30.opaque-not-a-jwt"}, "not a compact JWT"),
], ids=["no-token", "opaque", "no-itt", "bad-signature-part", "crlf", "non-ascii",
        "deep-json"])
def test_unusable_exchange_responses(stack, body, words):
    stack.idp.set_route(stack.idp.token_path, 200, body, method="POST")
    id_token = stack.id_token()
    with pytest.raises(TokenResponseError) as info:
        grant_for(stack, id_token)
    assert words in str(info.value)
    assert "token exchange" in str(info.value)
    assert_clean(str(info.value), secrets_of(stack, id_token, "opaque-not-a-jwt"))


@pytest.mark.parametrize("exp", [b"1" + b"0" * 400, b"-Infinity", b"NaN", b'"soon"'],
                         ids=["1e400", "-inf", "nan", "string"])
def test_unusable_exp_in_the_id_jag_is_ignored(stack, exp):
    """An exp float() cannot take (OverflowError before) counts as no exp."""
    grant = (jws.b64url_encode(b'{"typ":"oauth-id-jag+jwt","alg":"ES256"}') + "."
             + jws.b64url_encode(b'{"exp":' + exp + b"}") + ".c2ln")
    stack.idp.set_route(stack.idp.token_path, 200, {
        "access_token": grant, "token_type": "N_A", "issued_token_type": TOKEN_TYPE_ID_JAG},
        method="POST")
    result = grant_for(stack, stack.id_token())
    assert result.jwt_auth_grant == grant
    assert result.exp is None and result.expires_at is None


def test_insufficient_user_authentication_is_a_typed_error(stack):
    stack.idp.require_step_up = True
    id_token = stack.id_token()
    with pytest.raises(OAuthError) as info:
        grant_for(stack, id_token)
    exc = info.value
    assert exc.error == "insufficient_user_authentication"                  # J8
    assert "cannot step up" in str(exc) and "sign in again" in str(exc)
    assert exc.error_description == "step-up authentication required"
    assert not exc.retryable
    assert_clean(str(exc) + repr(exc), secrets_of(stack, id_token))


def test_idp_errors_keep_their_code(stack):
    expired = stack.id_token(lifetime=-30)
    with pytest.raises(OAuthError) as info:
        grant_for(stack, expired)
    assert info.value.error == "invalid_grant" and info.value.status_code == 400
    assert "token exchange at the IdP" in str(info.value)
    assert_clean(str(info.value), secrets_of(stack, expired))


def test_insecure_idp_is_refused_before_any_request():
    for call in (
        lambda: request_jwt_authorization_grant(
            "http://idp.example.com/token", "id-token-secret", "https://as.example.com",
            "https://mcp.example.com/mcp", "client", client_secret="s"),
        lambda: discover_and_request_jwt_auth_grant(
            "http://idp.example.com", "id-token-secret", "https://as.example.com",
            "https://mcp.example.com/mcp", "client", "s"),
    ):
        with pytest.raises(InsecureEndpointError) as info:
            call()
        assert "https is required" in str(info.value)
        assert "id-token-secret" not in str(info.value)


@pytest.mark.parametrize("override, words", [
    ({"id_token": ""}, "id_token"),
    ({"id_token": None}, "id_token"),
    ({"audience": "not a uri"}, "audience"),
    ({"audience": "https://as.example.com#frag"}, "audience"),
    ({"resource": "/mcp"}, "resource"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}, "subject_token_type"),
    ({"scope": 'a"b'}, "scope"),
    ({"client_id": ""}, "client_id"),
    ({"private_key": "x"}, "not both"),
    ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "none"}, "none"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "private_key"),
])
def test_bad_arguments_are_configuration_errors(stack, override, words):
    kw = dict(token_endpoint=stack.idp.token_endpoint, id_token="secret-id-token",
              audience=stack.issuer, resource=stack.mcp.resource, client_id="idp-client",
              client_secret="secret-client-secret")
    kw.update(override)
    with pytest.raises(ConfigurationError) as info:
        request_jwt_authorization_grant(**kw)
    assert words in str(info.value)
    assert_clean(str(info.value), ["secret-id-token", "secret-client-secret"])
    assert stack.idp.requests == []


# ==========================================================================================
# discover_and_request_jwt_auth_grant
# ==========================================================================================


def test_discovery_then_exchange(stack):
    id_token = stack.id_token()
    grant = discover_and_request_jwt_auth_grant(
        stack.idp.issuer, id_token, stack.issuer, stack.mcp.resource,
        stack.idp_client.client_id, idp_secret(stack), scope="tools")
    assert grant.scope == "tools"
    assert len(stack.idp.metadata_requests()) == 1
    record = stack.idp.token_requests()[0]
    assert record.info["auth_method"] == "client_secret_basic"
    assert record.form["audience"] == stack.issuer


def test_discovery_uses_the_advertised_client_authentication(stack):
    stack.idp.token_endpoint_auth_methods_supported = ["client_secret_post"]
    discover_and_request_jwt_auth_grant(
        stack.idp.issuer, stack.id_token(), stack.issuer, stack.mcp.resource,
        stack.idp_client.client_id, idp_secret(stack))
    assert stack.idp.token_requests()[0].info["auth_method"] == "client_secret_post"


def test_discovery_private_key_jwt_audience_is_the_idp_issuer(stack):
    key = jws.generate_private_key("EC", curve="P-256")
    stack.idp.register_client("idp-pkj", public_jwk=key.public_jwk(),
                              idjag_client_id=stack.client_id)
    discover_and_request_jwt_auth_grant(
        stack.idp.issuer, stack.idp.issue_id_token("u", aud="idp-pkj"), stack.issuer,
        stack.mcp.resource, "idp-pkj", private_key=key)
    record = stack.idp.token_requests()[0]
    assert record.info["auth_method"] == "private_key_jwt"
    assert record.info["client_assertion_claims"]["aud"] == stack.idp.issuer


@pytest.mark.parametrize("variant", ["oidc", "oidc-append"])
def test_discovery_openid_configuration_variants(variant):
    options = {"metadata_variant": variant, "issuer_path": "/tenant1"}
    with LoopbackStack(idp=True, idp_options=options) as stack:
        grant = discover_and_request_jwt_auth_grant(
            stack.idp.issuer, stack.id_token(), stack.issuer, stack.mcp.resource,
            stack.idp_client.client_id, idp_secret(stack))
        assert stack.idp.issuer.endswith("/tenant1")
        assert jws.decode_unverified(grant.jwt_auth_grant)[1]["iss"] == stack.idp.issuer


def test_discovery_checks_the_idp_issuer(stack):
    with pytest.raises(IssuerMismatchError):
        discover_and_request_jwt_auth_grant(
            stack.idp.issuer + "/", stack.id_token(), stack.issuer, stack.mcp.resource,
            stack.idp_client.client_id, idp_secret(stack))
    assert stack.idp.token_requests() == []


def test_discovery_warns_when_the_idp_does_not_list_id_jag(stack, caplog):
    stack.idp.metadata_override = {
        "identity_chaining_requested_token_types_supported": ["urn:example:other"]}
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        discover_and_request_jwt_auth_grant(
            stack.idp.issuer, stack.id_token(), stack.issuer, stack.mcp.resource,
            stack.idp_client.client_id, idp_secret(stack))
    assert any("identity_chaining_requested_token_types_supported" in r.getMessage()
               for r in caplog.records)


def test_discovery_validates_arguments_before_any_request(stack):
    with pytest.raises(ConfigurationError):
        discover_and_request_jwt_auth_grant(
            stack.idp.issuer, "", stack.issuer, stack.mcp.resource, "c", "s")
    with pytest.raises(ConfigurationError):
        discover_and_request_jwt_auth_grant(
            stack.idp.issuer, "tok", stack.issuer, stack.mcp.resource, "c", "s",
            private_key="also")
    assert stack.idp.requests == []


# ==========================================================================================
# Leg 2: exchange_jwt_auth_grant (RFC 7523 at the MCP server's authorization server)
# ==========================================================================================


def test_exchange_jwt_auth_grant_basic_default(stack, new_session):
    grant = grant_for(stack, stack.id_token("carol@example.com"))
    token = exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                                    client_secret=stack.client_secret,
                                    resource=stack.mcp.resource, scope="tools")
    (record,) = stack.as_.token_requests()
    assert record.form == {"grant_type": GRANT_TYPE_JWT_BEARER,
                           "assertion": grant.jwt_auth_grant, "scope": "tools",
                           "resource": stack.mcp.resource}
    assert record.info["auth_method"] == "client_secret_basic"
    assert record.info["assertion_kind"] == "id-jag"
    info = stack.as_.introspect(token.access_token)
    assert info["sub"] == "carol@example.com" and info["resource"] == stack.mcp.resource
    assert token.scope == "tools"
    # the access token works at the MCP server
    session = new_session()
    session.headers["Authorization"] = "Bearer " + token.access_token
    reply = whoami(session, stack.mcp_url)
    assert reply.json()["result"]["structuredContent"]["sub"] == "carol@example.com"


def test_exchange_jwt_auth_grant_post_and_string_grant(stack):
    grant = grant_for(stack, stack.id_token()).jwt_auth_grant
    exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                            client_secret=stack.client_secret,
                            token_endpoint_auth_method="client_secret_post",
                            resource=stack.mcp.resource)
    record = stack.as_.token_requests()[0]
    assert record.info["auth_method"] == "client_secret_post"
    assert record.form["assertion"] == grant


def test_exchange_jwt_auth_grant_private_key_jwt():
    key = jws.generate_private_key("EC", curve="P-256")
    with LoopbackStack(idp=True, public_jwk=key.public_jwk(),
                       auth_method="private_key_jwt") as stack:
        grant = grant_for(stack, stack.id_token())
        exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                                private_key=key, issuer=stack.issuer,
                                resource=stack.mcp.resource)
        record = stack.as_.token_requests()[0]
        assert record.info["auth_method"] == "private_key_jwt"
        assert record.info["client_assertion_claims"]["aud"] == stack.issuer


def test_exchange_jwt_auth_grant_errors(stack):
    grant = grant_for(stack, stack.id_token())
    exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                            client_secret=stack.client_secret, resource=stack.mcp.resource)
    # the loopback server accepts an ID-JAG once (RFC 7523 §3 replay protection)
    with pytest.raises(OAuthError) as info:
        exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                                client_secret=stack.client_secret,
                                resource=stack.mcp.resource)
    assert info.value.error == "invalid_grant"
    assert_clean(str(info.value) + repr(info.value),
                 secrets_of(stack, grant.jwt_auth_grant))
    # ... unless it lets clients re-submit it (ID-JAG "Refresh Token")
    stack.as_.reject_replayed_id_jag = False
    exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                            client_secret=stack.client_secret, resource=stack.mcp.resource)
    with pytest.raises(ConfigurationError):
        exchange_jwt_auth_grant(stack.as_.token_endpoint, "", stack.client_id,
                                client_secret="s")
    for bad in ("e30.e30.sig\r\nX: 1", "e30.e30.s\u00efg", "one.two", "opaque"):
        with pytest.raises(ConfigurationError) as bad_info:
            exchange_jwt_auth_grant(stack.as_.token_endpoint, bad, stack.client_id,
                                    client_secret="s")
        assert "compact JWT" in str(bad_info.value) and bad not in str(bad_info.value)
    with pytest.raises(ConfigurationError):
        exchange_jwt_auth_grant(stack.as_.token_endpoint, grant, stack.client_id,
                                client_secret="s", resource="relative/path")
    with pytest.raises(InsecureEndpointError):
        exchange_jwt_auth_grant("http://as.example.com/token", grant, "c", client_secret="s")
    assert len(stack.as_.token_requests()) == 3


# ==========================================================================================
# CrossAppAccessProvider
# ==========================================================================================


def test_provider_end_to_end(stack, caplog, new_session):
    assertion = Assertion(stack)
    session = new_session()
    provider = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                      session=session)
    session.auth = provider
    assert provider.mcp_extension == "io.modelcontextprotocol/enterprise-managed-authorization"
    with caplog.at_level(logging.DEBUG, logger="mcpauth"):
        reply = whoami(session, stack.mcp_url)
        again = whoami(session, stack.mcp_url, msg_id=2)
    assert reply.status_code == 200 and again.status_code == 200 and again.history == []
    who = reply.json()["result"]["structuredContent"]
    assert who == {"client_id": stack.client_id, "scope": "", "sub": "alice@example.com"}
    # the callback ran once, after discovery, with the validated issuer (J5)
    (ctx,) = assertion.contexts
    assert isinstance(ctx, CrossAppAccessContext)
    assert ctx.authorization_server_url == stack.issuer
    assert ctx.resource_url == stack.mcp.resource
    assert ctx.scope is None
    assert ctx.session is session                     # the caller's TLS/proxy settings
    assert ctx.server_url == stack.mcp_url
    # leg 1 (J2) and leg 2 (J4, Basic, resource D1)
    (exchange,) = stack.idp.token_requests()
    assert exchange.form["audience"] == stack.issuer
    assert exchange.form["resource"] == stack.mcp.resource
    (bearer,) = stack.as_.token_requests()
    assert bearer.form["grant_type"] == GRANT_TYPE_JWT_BEARER
    assert bearer.form["resource"] == stack.mcp.resource
    assert bearer.info["auth_method"] == "client_secret_basic"
    assert bearer.info["assertion_kind"] == "id-jag"
    # no secret, ID token, ID-JAG or access token in any log line
    token = (stack.mcp.mcp_requests()[-1].headers["Authorization"])[7:]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ID-JAG issued by" in logged
    assert_clean(logged, secrets_of(stack, assertion.id_token, bearer.form["assertion"],
                                    token))
    assert stack.client_secret not in repr(provider)
    with pytest.raises(TypeError):
        pickle.dumps(provider)


def test_provider_token_without_an_mcp_request(stack):
    provider = CrossAppAccessProvider(Assertion(stack), stack.client_id, stack.client_secret,
                                      server_url=stack.mcp_url)
    token = provider.token()
    assert stack.as_.introspect(token)["sub"] == "alice@example.com"
    assert stack.mcp.mcp_requests() == []


def test_provider_audience_is_the_issuer_exactly():
    # J5: PRM names "http://127.0.0.1:P/" (trailing slash); audience is exactly that.
    with LoopbackStack(idp=True, issuer_path="/") as stack:
        assertion = Assertion(stack)
        provider = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                          server_url=stack.mcp_url)
        provider.token()
        assert stack.issuer.endswith("/")
        assert assertion.contexts[0].authorization_server_url == stack.issuer
        assert stack.idp.token_requests()[0].form["audience"] == stack.issuer


def test_provider_scope_reaches_both_legs(stack, new_session):
    assertion = Assertion(stack)
    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                          scope="tools")
    who = whoami(session, stack.mcp_url).json()["result"]["structuredContent"]
    assert who["scope"] == "tools"
    assert assertion.contexts[0].scope == "tools"
    assert stack.idp.token_requests()[0].form["scope"] == "tools"
    assert stack.as_.token_requests()[0].form["scope"] == "tools"


def test_provider_step_up_asks_for_a_new_id_jag_with_the_union_scope(new_session):
    with LoopbackStack(idp=True, mcp_options={"required_scope": "tools"}) as stack:
        assertion = Assertion(stack)
        session = new_session()
        session.auth = CrossAppAccessProvider(assertion, stack.client_id,
                                              stack.client_secret)
        reply = whoami(session, stack.mcp_url)
        assert reply.status_code == 200
        assert [r.status for r in stack.mcp.mcp_requests()] == [401, 403, 200]
        assert [c.scope for c in assertion.contexts] == [None, "tools"]
        exchanges = stack.idp.token_requests()
        assert "scope" not in exchanges[0].form and exchanges[1].form["scope"] == "tools"
        assert stack.as_.token_requests()[1].form["scope"] == "tools"
        assert reply.json()["result"]["structuredContent"]["scope"] == "tools"


def test_provider_expected_issuer_pin(stack, new_session):
    assertion = Assertion(stack)
    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                          expected_issuer="https://login.example.com")
    with pytest.raises(AuthorizationServerMismatchError):
        whoami(session, stack.mcp_url)
    # the user's ID token never left: the callback was not called
    assert assertion.contexts == [] and stack.idp.requests == []
    assert stack.as_.token_requests() == []


def test_provider_reuses_the_id_jag_until_it_expires(stack, new_session):
    """J6: a new access token re-submits the cached ID-JAG; an old one is replaced."""
    stack.as_.reject_replayed_id_jag = False
    offset = [0.0]
    assertion = Assertion(stack)
    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                          clock=lambda: time.time() + offset[0])
    assert whoami(session, stack.mcp_url).status_code == 200
    stack.as_.revoke()                               # the access token dies early
    reply = whoami(session, stack.mcp_url, msg_id=2)
    assert reply.status_code == 200 and [h.status_code for h in reply.history] == [401]
    assert len(assertion.contexts) == 1              # same ID-JAG, no IdP call
    first, second = stack.as_.token_requests()
    assert first.form["assertion"] == second.form["assertion"]
    # past expiry minus the skew, the IdP is asked again (ID-JAG lifetime 300 s)
    offset[0] = 300 - ID_JAG_REFRESH_SKEW + 1
    stack.as_.revoke()
    assert whoami(session, stack.mcp_url, msg_id=3).status_code == 200
    assert len(assertion.contexts) == 2
    assert stack.as_.token_requests()[2].form["assertion"] != first.form["assertion"]


def test_provider_asks_once_more_when_a_reused_id_jag_is_refused(stack, new_session):
    """A server that refuses replayed ID-JAGs: one invalid_grant, one new grant, done."""
    assert stack.as_.reject_replayed_id_jag is True
    assertion = Assertion(stack)
    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret)
    assert whoami(session, stack.mcp_url).status_code == 200
    stack.as_.revoke()
    assert whoami(session, stack.mcp_url, msg_id=2).status_code == 200
    errors = [r.info.get("error") for r in stack.as_.token_requests()]
    assert errors == [None, "invalid_grant", None]
    assert len(assertion.contexts) == 2 and len(stack.idp.token_requests()) == 2


def test_provider_does_not_loop_when_a_fresh_id_jag_is_refused(stack, new_session):
    calls = []

    def wrong_resource(ctx):
        calls.append(ctx)
        return request_jwt_authorization_grant(
            stack.idp.token_endpoint, stack.id_token(), ctx.authorization_server_url,
            "https://elsewhere.example/mcp", stack.idp_client.client_id,
            client_secret=idp_secret(stack))

    session = new_session()
    session.auth = CrossAppAccessProvider(wrong_resource, stack.client_id,
                                          stack.client_secret)
    with pytest.raises(OAuthError) as info:
        whoami(session, stack.mcp_url)
    assert info.value.error == "invalid_grant"
    assert len(calls) == 1 and len(stack.as_.token_requests()) == 1
    assert len(stack.mcp.mcp_requests()) == 1


@pytest.mark.parametrize("value, words", [
    (None, "NoneType"),
    (b"eyJ.bytes.grant", "bytes"),
    ("", "empty"),
    ("opaque-secret-grant", "single compact JWT"),
    ("e30.e30.opaque-secret-grant\u00e9", "single compact JWT"),
    ("e30.e30.opaque-secret-grant!", "single compact JWT"),
    ("a.b.c", "not a JWT"),
    (jws.b64url_encode(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}")
     + ".e30.opaque-secret-grant", "not a JWT"),
], ids=["none", "bytes", "empty", "opaque", "non-ascii", "not-b64url", "not-json",
        "deep-json"])
def test_provider_refuses_a_bad_assertion_result(stack, value, words, new_session):
    session = new_session()
    session.auth = CrossAppAccessProvider(lambda ctx: value, stack.client_id,
                                          stack.client_secret)
    with pytest.raises(ConfigurationError) as info:
        whoami(session, stack.mcp_url)
    assert words in str(info.value)
    assert_clean(str(info.value), secrets_of(stack, "opaque-secret-grant"))
    assert stack.as_.token_requests() == []


def test_provider_refuses_an_id_jag_for_another_authorization_server(stack, new_session):
    """Audience injection (EXT-EMA §7.5.4): the MCP server now names an AS of its own;
    the callback hands back an ID-JAG minted for the real one. Nothing reaches evil."""
    grant = grant_for(stack, stack.id_token())
    evil = AuthorizationServer().start()
    try:
        evil.register_client(stack.client_id, client_secret="evil-knows-nothing")
        stack.mcp.authorization_servers = [evil]
        session = new_session()
        session.auth = CrossAppAccessProvider(lambda ctx: grant, stack.client_id,
                                              stack.client_secret)
        with pytest.raises(AuthorizationServerMismatchError) as info:
            whoami(session, stack.mcp_url)
        message = str(info.value)
        assert "refusing to send it" in message
        assert stack.issuer in message and evil.issuer in message
        assert info.value.expected_issuer == stack.issuer
        assert info.value.issuer == evil.issuer
        assert_clean(message + repr(info.value), secrets_of(stack, grant.jwt_auth_grant))
        assert evil.token_requests() == [] and stack.as_.token_requests() == []
        assert all(r.method != "POST" for r in evil.requests)
    finally:
        evil.stop()


@pytest.mark.parametrize("aud", [None, [], ["https://elsewhere.example"], 7])
def test_provider_refuses_an_id_jag_without_the_issuer_as_audience(stack, aud):
    claims = {"typ": "x"}
    if aud is not None:
        claims = {"aud": aud}
    grant = (jws.b64url_encode(b'{"typ":"oauth-id-jag+jwt","alg":"ES256"}') + "."
             + jws.b64url_encode(json.dumps(claims).encode()) + ".c2ln")
    provider = CrossAppAccessProvider(lambda ctx: grant, stack.client_id,
                                      stack.client_secret, server_url=stack.mcp_url)
    with pytest.raises(AuthorizationServerMismatchError) as info:
        provider.token()
    assert grant not in str(info.value)
    assert stack.as_.token_requests() == []


@pytest.mark.parametrize("shape", ["slash", "list"])
def test_provider_sends_an_id_jag_whose_audience_names_the_issuer(stack, shape):
    """aud = the issuer plus one trailing slash, or a list holding the issuer: sent
    (the loopback AS verifies the signature and refuses this unsigned one)."""
    aud = stack.issuer + "/" if shape == "slash" else ["https://other.example", stack.issuer]
    grant = (jws.b64url_encode(b'{"typ":"oauth-id-jag+jwt","alg":"ES256"}') + "."
             + jws.b64url_encode(json.dumps({"aud": aud}).encode()) + ".c2ln")
    provider = CrossAppAccessProvider(lambda ctx: grant, stack.client_id,
                                      stack.client_secret, server_url=stack.mcp_url)
    with pytest.raises(OAuthError) as info:
        provider.token()
    assert info.value.error == "invalid_grant"
    (record,) = stack.as_.token_requests()
    assert record.form["assertion"] == grant


def test_provider_assertion_exception_propagates_unchanged(stack, new_session):
    class IdPDown(Exception):
        pass

    boom = IdPDown("no")

    def assertion(ctx):
        raise boom

    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret)
    with pytest.raises(IdPDown) as info:
        whoami(session, stack.mcp_url)
    assert info.value is boom
    assert stack.as_.token_requests() == []


def test_provider_step_up_at_the_idp_surfaces(stack, new_session):
    stack.idp.require_step_up = True
    session = new_session()
    session.auth = CrossAppAccessProvider(Assertion(stack), stack.client_id,
                                          stack.client_secret)
    with pytest.raises(OAuthError) as info:
        whoami(session, stack.mcp_url)
    assert info.value.error == "insufficient_user_authentication"
    assert stack.as_.token_requests() == []


def test_provider_post_when_only_post_is_advertised(stack):
    stack.as_.token_endpoint_auth_methods_supported = ["client_secret_post"]
    provider = CrossAppAccessProvider(Assertion(stack), stack.client_id, stack.client_secret,
                                      server_url=stack.mcp_url)
    provider.token()
    record = stack.as_.token_requests()[0]
    assert record.info["auth_method"] == "client_secret_post"
    assert "Authorization" not in record.headers


def test_provider_private_key_jwt(new_session):
    key = jws.generate_private_key("EC", curve="P-256")
    with LoopbackStack(idp=True, public_jwk=key.public_jwk(),
                       auth_method="private_key_jwt") as stack:
        session = new_session()
        session.auth = CrossAppAccessProvider(Assertion(stack), stack.client_id,
                                              private_key=key)
        assert whoami(session, stack.mcp_url).status_code == 200
        record = stack.as_.token_requests()[0]
        assert record.info["auth_method"] == "private_key_jwt"
        assert record.info["client_assertion_claims"]["aud"] == stack.issuer


def test_provider_accepts_a_jwt_auth_grant(stack, new_session):
    stack.as_.reject_replayed_id_jag = False
    grants = []

    def assertion(ctx):
        grants.append(grant_for(stack, stack.id_token()))
        return grants[-1]

    session = new_session()
    session.auth = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret)
    assert whoami(session, stack.mcp_url).status_code == 200
    stack.as_.revoke()
    assert whoami(session, stack.mcp_url, msg_id=2).status_code == 200
    assert len(grants) == 1                           # cached for its expires_in
    assert [r.form["assertion"] for r in stack.as_.token_requests()] == \
        [grants[0].jwt_auth_grant] * 2


def test_provider_constructor_checks(stack):
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider("not callable", "c", "s")
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider(lambda ctx: "", None, token_endpoint_auth_method="none")
    with pytest.raises(ConfigurationError) as info:
        CrossAppAccessProvider(lambda ctx: "", "c")
    assert "client_secret or private_key" in str(info.value)
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider(lambda ctx: "", "c", "s", private_key="k")
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider(lambda ctx: "", "c", "s",
                               token_endpoint_auth_method="private_key_jwt")
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider(lambda ctx: "", "c", "s", scope='bad"scope')
    # a public client, explicitly
    public = CrossAppAccessProvider(lambda ctx: "", "c", token_endpoint_auth_method="none")
    assert repr(public).startswith("CrossAppAccessProvider(client_id='c'")


def test_provider_needs_an_issuer_for_the_audience(stack):
    calls = []
    provider = CrossAppAccessProvider(calls.append, stack.client_id, stack.client_secret,
                                      token_endpoint=stack.as_.token_endpoint,
                                      server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError) as info:
        provider.token()
    assert "audience" in str(info.value) and calls == []
    # with issuer= it works without discovery
    provider = CrossAppAccessProvider(Assertion(stack), stack.client_id, stack.client_secret,
                                      token_endpoint=stack.as_.token_endpoint,
                                      issuer=stack.issuer, server_url=stack.mcp_url)
    assert stack.as_.introspect(provider.token())["sub"] == "alice@example.com"


def test_provider_single_flight(stack):
    assertion = Assertion(stack)
    provider = CrossAppAccessProvider(assertion, stack.client_id, stack.client_secret,
                                      server_url=stack.mcp_url)
    results = []
    barrier = threading.Barrier(6)

    def worker():
        barrier.wait()
        results.append(provider.token())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 6 and len(set(results)) == 1
    assert len(assertion.contexts) == 1 and len(stack.as_.token_requests()) == 1


# -- tokens belong to the user, not to the client: a shared cache never mixes them --------------

def test_users_sharing_a_cache_never_get_each_others_tokens(stack, new_session):
    from mcpauth import MemoryTokenCache

    shared = MemoryTokenCache()
    subjects = []
    for user in ("alice@example.com", "bob@example.com"):
        session = new_session()
        session.auth = CrossAppAccessProvider(
            Assertion(stack, stack.id_token(user)), stack.client_id, stack.client_secret,
            cache=shared)
        reply = whoami(session, stack.mcp_url)
        subjects.append(reply.json()["result"]["structuredContent"]["sub"])
    assert subjects == ["alice@example.com", "bob@example.com"]
    assert len(stack.as_.token_requests()) == 2


def test_a_stable_cache_key_lets_a_new_provider_reuse_the_users_token(stack, new_session):
    from mcpauth import MemoryTokenCache

    shared = MemoryTokenCache()
    for _ in range(2):   # two "runs" for the same user, each with a new provider
        session = new_session()
        session.auth = CrossAppAccessProvider(
            Assertion(stack), stack.client_id, stack.client_secret, cache=shared,
            cache_key="alice@example.com")
        assert whoami(session, stack.mcp_url).status_code == 200
    assert len(stack.as_.token_requests()) == 1
    with pytest.raises(ConfigurationError):
        CrossAppAccessProvider(Assertion(stack), stack.client_id, stack.client_secret,
                               cache_key="")


def test_a_stable_cache_key_never_lets_a_wrong_client_secret_reuse_the_token(stack):
    """The cache key names the user; the credential fingerprint in it still keeps a
    mistyped or rotated client secret from reusing the token the right one obtained."""
    from mcpauth import MemoryTokenCache, OAuthError

    shared = MemoryTokenCache()

    def provider(secret):
        return CrossAppAccessProvider(Assertion(stack), stack.client_id, secret,
                                      cache=shared, cache_key="alice@example.com",
                                      server_url=stack.mcp_url)

    first = provider(stack.client_secret).token()
    with pytest.raises(OAuthError) as caught:
        provider(stack.client_secret + "x").token()
    assert caught.value.error == "invalid_client"
    assert provider(stack.client_secret).token() == first
    assert len(stack.as_.token_requests()) == 2


def test_provider_with_dpop_binds_the_access_token(stack, new_session):
    # RFC 9449 §5: the jwt-bearer leg at the MCP server's AS carries the proof; the
    # ID-JAG exchange at the IdP does not (its token is not presented to the resource).
    from mcpauth.dpop import DPoPKey

    key = DPoPKey.generate()
    session = new_session()
    session.auth = CrossAppAccessProvider(Assertion(stack), stack.client_id,
                                          stack.client_secret, session=session,
                                          dpop_key=key)
    assert whoami(session, stack.mcp_url).status_code == 200
    assert "DPoP" not in stack.idp.token_requests()[0].headers
    assert stack.as_.token_requests()[0].info["dpop_jkt"] == key.thumbprint
    assert stack.as_.issued_tokens()[0]["cnf"] == {"jkt": key.thumbprint}
    assert stack.mcp.mcp_requests()[-1].headers["Authorization"].startswith("DPoP ")
