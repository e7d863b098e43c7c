"""mcpauth.grants: token requests, client authentication, token responses (pure, no sockets)."""

import base64
import json
import logging
from urllib.parse import parse_qs, unquote_plus

import pytest

from mcpauth import grants
from mcpauth.errors import ConfigurationError, OAuthError, TokenResponseError
from mcpauth.transport import HttpResponse


TOKEN_URL = "https://as.example/token"
CC = [("grant_type", "client_credentials")]


def _response(status, body, ctype="application/json", url="https://as.example/token"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
    return HttpResponse(status, (("Content-Type", ctype),), body, url)


def _basic_of(request):
    value = request.header("Authorization")
    assert value.startswith("Basic ")
    return base64.b64decode(value[6:]).decode("utf-8")


# -- RFC 6749 §2.3.1 and Appendix B (REQUIREMENTS §2.4, E3) ---------------------------------

@pytest.mark.parametrize("client_id, secret, expected", [
    # RFC 6749 §2.3.1 example
    ("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw", "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"),
    # computed vectors: ':' in the id, space '+' '%' in the secret
    ("a:b", "p w+%", "Basic YSUzQWI6cCt3JTJCJTI1"),
    ("client@example.com", "s3cr3t/=?",
     "Basic Y2xpZW50JTQwZXhhbXBsZS5jb206czNjcjN0JTJGJTNEJTNG"),
])
def test_client_secret_basic_vectors(client_id, secret, expected):
    req = grants.build_token_request(TOKEN_URL, CC,
                                     grants.ClientSecretBasic(client_id, secret))
    assert req.header("Authorization") == expected
    # E2: Basic only; nothing in the body
    assert "client_secret" not in req.form() and "client_id" not in req.form()


def test_appendix_b_encoding_round_trips_through_the_basic_header():
    secret = " %&+\u00a3\u20ac"
    req = grants.build_token_request(TOKEN_URL, CC,
                                     grants.ClientSecretBasic("id", secret))
    user, _, password = _basic_of(req).partition(":")
    assert password == "+%25%26%2B%C2%A3%E2%82%AC"  # RFC 6749 Appendix B
    assert unquote_plus(password) == secret


def test_client_secret_post_puts_credentials_in_the_body_only():
    req = grants.build_token_request(TOKEN_URL, CC,
                                     grants.ClientSecretPost("cid", "s3cret"))
    assert req.header("Authorization") is None
    assert req.form() == {"grant_type": "client_credentials", "client_id": "cid",
                          "client_secret": "s3cret"}


def test_token_request_shape_rfc6749_4_4_2():
    """A3, D1: POST, form-urlencoded UTF-8, one value per key, no query, resource sent."""
    fields = [("grant_type", "client_credentials"), ("scope", "mcp:tools"),
              ("resource", "https://mcp.example.com/mcp")]
    req = grants.build_token_request("https://as.example/token", fields,
                                     grants.ClientSecretBasic("s6BhdRkqt3",
                                                              "7Fjfp0ZBr1KtDRbnfVdmIw"))
    assert req.method == "POST"
    assert req.header("Content-Type") == "application/x-www-form-urlencoded"
    assert "?" not in req.url
    assert req.credentialed is True
    parsed = parse_qs(req.body.decode("ascii"), strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    assert b"resource=https%3A%2F%2Fmcp.example.com%2Fmcp" in req.body
    assert parsed["grant_type"] == ["client_credentials"]


def test_duplicate_parameter_is_refused():
    with pytest.raises(ConfigurationError):
        grants.build_token_request("https://as.example/token",
                                   [("grant_type", "client_credentials"), ("client_id", "x")],
                                   grants.ClientSecretPost("cid", "s"))


@pytest.mark.parametrize("bad", ["", None, 5])
def test_secret_must_be_a_non_empty_string(bad):
    with pytest.raises(ConfigurationError):
        grants.ClientSecretBasic("cid", bad)
    with pytest.raises(ConfigurationError):
        grants.ClientSecretPost("cid", bad)


def test_client_auth_reprs_and_pickling_hide_the_secret():
    import pickle

    secret = "Zq8-very-secret-Value"
    for auth in (grants.ClientSecretBasic("cid", secret), grants.ClientSecretPost("cid", secret)):
        assert secret not in repr(auth) and "cid" in repr(auth)
        with pytest.raises(TypeError):
            pickle.dumps(auth)


def test_none_auth_sends_only_the_client_id():
    req = grants.build_token_request("https://as.example/token", [("grant_type", "x")],
                                     grants.NoClientAuth("wl"))
    assert req.form() == {"grant_type": "x", "client_id": "wl"}
    req = grants.build_token_request("https://as.example/token", [("grant_type", "x")],
                                     grants.NoClientAuth(None))
    assert req.form() == {"grant_type": "x"}


# -- C5: choosing the method --------------------------------------------------------------------

@pytest.mark.parametrize("advertised, configured, expected", [
    (None, None, "client_secret_basic"),                      # RFC 8414 §2 default
    (["client_secret_basic", "client_secret_post"], None, "client_secret_basic"),
    (["client_secret_post"], None, "client_secret_post"),
    (["private_key_jwt", "client_secret_post"], None, "client_secret_post"),
    (["client_secret_basic"], "client_secret_post", "client_secret_post"),  # configured wins
])
def test_select_auth_method(advertised, configured, expected):
    assert grants.select_auth_method(advertised, configured) == expected


def test_unadvertised_method_is_a_warning_not_a_failure(caplog):
    caplog.set_level(logging.WARNING, "mcpauth")
    assert grants.select_auth_method(["none"]) == "client_secret_basic"
    assert "does not advertise client_secret_basic" in caplog.text


def test_unknown_configured_method_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        grants.select_auth_method(None, "tls_client_auth")


# -- D5: scope syntax ---------------------------------------------------------------------------

def test_scope_validation():
    assert grants.validate_scope("b a  b") == "b a"
    assert grants.validate_scope(None) is None
    assert grants.validate_scope("") is None
    for bad in ('a"b', "a\\b", "caf\u00e9", "a\tb"):
        with pytest.raises(ConfigurationError):
            grants.validate_scope(bad)
    with pytest.raises(ConfigurationError):
        grants.validate_scope(["a"])


@pytest.mark.parametrize("bad", ["read\n", "read\r\n", "read\nwrite", "\n", "a b\n"])
def test_scope_with_a_trailing_line_break_is_refused(bad):
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ); a regex `$` also
    # matches before a final newline, so the whole token must match (\Z / fullmatch).
    with pytest.raises(ConfigurationError):
        grants.validate_scope(bad)
    with pytest.raises(ConfigurationError):
        grants.normalize_scope([bad])


# -- F1, F2, F5: parsing responses --------------------------------------------------------------

def test_parse_rfc6749_4_4_3_response():
    resp = _response(200, {"access_token": "2YotnFZFEjr1zCsicMWpAA", "token_type": "example",
                           "expires_in": 3600, "example_parameter": "example_value"})
    with pytest.raises(TokenResponseError):  # F2: "example" is not a type we understand
        grants.parse_token_response(resp)
    tok = grants.parse_token_response(resp, token_types=("example",), received_at=1000.0)
    assert tok.access_token == "2YotnFZFEjr1zCsicMWpAA"
    assert tok.expires_at == 4600.0


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_bearer_is_case_insensitive(token_type):
    tok = grants.parse_token_response(
        _response(200, {"access_token": "t", "token_type": token_type}))
    assert tok.token_type == token_type and tok.expires_in is None


@pytest.mark.parametrize("expires_in, expected", [(3600, 3600.0), ("3600", 3600.0), (1.5, 1.5)])
def test_expires_in_number_or_numeric_string(expires_in, expected):
    tok = grants.parse_token_response(_response(
        200, {"access_token": "t", "token_type": "Bearer", "expires_in": expires_in}))
    assert tok.expires_in == expected


@pytest.mark.parametrize("body", [
    {"token_type": "Bearer"},
    {"access_token": "", "token_type": "Bearer"},
    {"access_token": 5, "token_type": "Bearer"},
    {"access_token": "t"},
    {"access_token": "t", "token_type": "mac"},
    {"access_token": "t", "token_type": "N_A"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": "soon"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": -1},
    {"access_token": "t", "token_type": "Bearer", "expires_in": True},
    {"access_token": "t", "token_type": "Bearer", "scope": ["a"]},
    [1, 2],
])
def test_unusable_success_bodies(body):
    with pytest.raises(TokenResponseError) as info:
        grants.parse_token_response(_response(200, body))
    assert "t\"" not in str(info.value)


@pytest.mark.parametrize("token", [
    "SECRET-AT\r\nX-Injected: 1",     # header injection / http.client ValueError
    "SECRET-AT\n",
    "SECRET-\u20ac",                   # UnicodeEncodeError in http.client
    "SECRET-\u00e9",                   # latin-1 encodable, still not VSCHAR
    "SECRET\x00AT",
    "SECRET\tAT",
    "SECRET\x7fAT",
], ids=["crlf", "lf", "euro", "latin1", "nul", "tab", "del"])
def test_access_token_outside_rfc6749_a12_is_refused(token):
    """RFC 6749 Appendix A.12: access-token = 1*VSCHAR (%x20-7E)."""
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 60}
    with pytest.raises(TokenResponseError) as info:
        grants.parse_token_response(_response(200, body))
    message = str(info.value) + repr(info.value)
    assert "SECRET" not in message
    assert "A.12" in message and info.value.status_code == 200


@pytest.mark.parametrize("token", [
    "a", "2YotnFZFEjr1zCsicMWpAA", "a b~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", "eyJ.eyJ.sig-_=="])
def test_every_vschar_access_token_is_accepted(token):
    body = {"access_token": token, "token_type": "Bearer"}
    assert grants.parse_token_response(_response(200, body)).access_token == token


def test_non_json_success_body():
    with pytest.raises(TokenResponseError) as info:
        grants.parse_token_response(_response(200, b"<html>secret-page</html>", "text/html"))
    assert "secret-page" not in str(info.value)


def test_rfc6749_5_2_error_becomes_oauth_error():
    resp = _response(400, {"error": "invalid_client", "error_description": "bad\nclient",
                           "error_uri": "https://as.example/e"})
    with pytest.raises(OAuthError) as info:
        grants.parse_token_response(resp)
    exc = info.value
    assert exc.error == "invalid_client" and exc.status_code == 400
    assert exc.error_description == "bad client"  # newline (log injection) removed
    assert str(exc) == "invalid_client: bad client"
    assert not exc.retryable


def test_error_in_a_200_body_is_an_oauth_error():
    with pytest.raises(OAuthError) as info:
        grants.parse_token_response(_response(200, {"error": "invalid_scope"}))
    assert info.value.error == "invalid_scope"


def test_5xx_without_error_body_is_retryable_and_hides_the_body():
    with pytest.raises(TokenResponseError) as info:
        grants.parse_token_response(_response(503, b"upstream token=abc123", "text/plain"))
    assert info.value.retryable and info.value.status_code == 503
    assert "abc123" not in str(info.value)


def test_redirect_from_token_endpoint_is_an_error():
    resp = HttpResponse(307, (("Location", "https://evil.example/token"),), b"",
                        "https://as.example/token")
    with pytest.raises(TokenResponseError) as info:
        grants.parse_token_response(resp)
    assert "redirect" in str(info.value)


def test_token_exchange_issued_token_type_is_checked():
    body = {"access_token": "jag", "token_type": "N_A",
            "issued_token_type": grants.TOKEN_TYPE_ID_JAG}
    tok = grants.parse_token_response(_response(200, body), token_types=("n_a",),
                                      issued_token_type=grants.TOKEN_TYPE_ID_JAG)
    assert tok.issued_token_type == grants.TOKEN_TYPE_ID_JAG
    body["issued_token_type"] = grants.TOKEN_TYPE_ACCESS_TOKEN
    with pytest.raises(TokenResponseError):
        grants.parse_token_response(_response(200, body), token_types=("n_a",),
                                    issued_token_type=grants.TOKEN_TYPE_ID_JAG)


def test_token_response_repr_hides_the_token():
    tok = grants.TokenResponse("tok-Secret-123", "Bearer", 60.0, "a b")
    assert "tok-Secret-123" not in repr(tok)
    assert "[secure]" in repr(tok)


# -- E5-E7: private_key_jwt ---------------------------------------------------------------------



@pytest.fixture(scope="module")
def ec_key():
    pytest.importorskip("cryptography")
    from mcpauth import jws

    return jws.generate_private_key("EC", curve="P-256")


def test_private_key_jwt_assertion_claims(ec_key):
    from mcpauth import jws

    auth = grants.PrivateKeyJwt("client-1", ec_key, clock=lambda: 1700000000.0,
                                key_id="k1", claims={"tenant": "t"})
    req = grants.build_token_request(
        "https://as.example/oauth/token", [("grant_type", "client_credentials")], auth,
        issuer="https://as.example")
    form = req.form()
    assert req.header("Authorization") is None                              # E2
    assert "client_secret" not in form
    assert form["client_assertion_type"] == grants.CLIENT_ASSERTION_TYPE_JWT_BEARER  # E5
    payload = jws.verify(form["client_assertion"], ec_key.public_jwk(), ["ES256"])
    claims = json.loads(payload.decode("utf-8"))
    header, _ = jws.decode_unverified(form["client_assertion"])
    assert header == {"alg": "ES256", "typ": "client-authentication+jwt", "kid": "k1"}
    assert claims["iss"] == claims["sub"] == "client-1"                     # E6
    assert claims["aud"] == "https://as.example"                            # issuer, a string
    assert claims["exp"] - claims["iat"] == 300 and claims["iat"] == 1700000000
    assert claims["tenant"] == "t"
    second = grants.build_token_request(
        "https://as.example/oauth/token", [("grant_type", "client_credentials")], auth,
        issuer="https://as.example").form()["client_assertion"]
    assert jws.decode_unverified(second)[1]["jti"] != claims["jti"]


def test_private_key_jwt_audience_override_and_token_endpoint_fallback(ec_key):
    from mcpauth import jws

    auth = grants.PrivateKeyJwt("c", ec_key, audience="https://legacy.example/token")
    assert jws.decode_unverified(auth.build_assertion("https://as.example", "x"))[1]["aud"] == \
        "https://legacy.example/token"
    auth = grants.PrivateKeyJwt("c", ec_key, typ=None)
    token = auth.build_assertion(None, "https://as.example/token")
    header, claims = jws.decode_unverified(token)
    assert claims["aud"] == "https://as.example/token" and "typ" not in header


def test_assertion_header_follows_changed_settings(ec_key):
    # The encoded header is prepared once; typ, key_id and algorithm are public
    # attributes, and an assertion always carries their current values.
    from mcpauth import jws
    from mcpauth.errors import InvalidKeyError

    auth = grants.PrivateKeyJwt("c", ec_key, key_id="k1")
    first = jws.decode_unverified(auth.build_assertion("https://as.example", "x"))[0]
    assert first == {"alg": "ES256", "typ": "client-authentication+jwt", "kid": "k1"}
    auth.key_id, auth.typ = "k2", "JWT"
    token = auth.build_assertion("https://as.example", "x")
    assert jws.decode_unverified(token)[0] == {"alg": "ES256", "typ": "JWT", "kid": "k2"}
    jws.verify(token, ec_key.public_jwk(), ["ES256"])
    auth.algorithm = "RS256"  # a key that cannot sign it is refused, as by jws.sign
    with pytest.raises(InvalidKeyError):
        auth.build_assertion("https://as.example", "x")


@pytest.mark.parametrize("claims", [{"aud": "x"}, {"iss": "x"}, {"exp": 1}, {"jti": "j"}])
def test_claims_cannot_replace_registered_claims(ec_key, claims):
    with pytest.raises(ConfigurationError):
        grants.PrivateKeyJwt("c", ec_key, claims=claims)


@pytest.mark.parametrize("lifetime", [0, -5, 3601, 1.5, True])
def test_assertion_lifetime_bounds(ec_key, lifetime):
    with pytest.raises(ConfigurationError):
        grants.PrivateKeyJwt("c", ec_key, lifetime=lifetime)


def test_algorithm_must_fit_the_key(ec_key):
    with pytest.raises(ConfigurationError):
        grants.PrivateKeyJwt("c", ec_key, algorithm="RS256")
    with pytest.raises(ConfigurationError):
        grants.PrivateKeyJwt("c", ec_key, algorithm="none")
