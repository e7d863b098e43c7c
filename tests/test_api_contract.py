"""Footguns of the Python API and errors that say where and how, as contract tests.

Against real loopback servers (mcpauth.testing) and real keys: a secret read with its
newline, a cache given as a path, misspelt keyword arguments (mypy --strict), a refused
client named with its token endpoint, client id and method, a server URL without its
path; and keys that never leave an HSM or a KMS (a signing callable, an assertion
callable) held to the same claims and checks as a local key.
"""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcpauth import (ClientCredentialsProvider, ConfigurationError, DiscoveryError,
                     InvalidKeyError, OAuthError, PrivateKeyJwtProvider)
from mcpauth.cache import FileTokenCache
from mcpauth.testing import LoopbackStack

needs_cryptography = pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None, reason="needs the cryptography package")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


# ---------------------------------------------------------------- secrets (RFC 6749 A.2)


@pytest.mark.parametrize("bad, what", [
    ("{}\n", "a line break (CR or LF) at its end"),
    ("{}\r\n", "a line break (CR or LF) at its end"),
    ("{}\nsecond-line", "a line break (CR or LF) inside it"),
    ("{}\x00", "a control character"),
    ("{}\x1b[2J", "a control character"),
    ("{}\x85", "a control character"),
])
def test_a_secret_with_a_line_break_or_control_character_is_refused_at_construction(bad, what):
    secret = "Sup3r-s3cret-value"
    with pytest.raises(ConfigurationError) as info:
        ClientCredentialsProvider("cid", bad.format(secret), server_url="https://mcp.example/mcp")
    message = str(info.value)
    assert what in message and "RFC 6749 Appendix A.2" in message
    assert secret not in message and secret not in repr(info.value)
    if "line break" in what:
        assert ".strip()" in message


def test_the_newline_of_a_secret_file_is_what_the_message_explains(tmp_path):
    path = tmp_path / "secret"
    path.write_text("value-from-a-file\n")
    with open(str(path)) as f:
        secret = f.read()
    with pytest.raises(ConfigurationError, match=r"open\(\.\.\.\)\.read\(\) keeps the file's "):
        ClientCredentialsProvider("cid", secret)


def test_printable_secrets_including_non_ascii_are_accepted(stack):
    # RFC 6749 Appendix B shows how non-ASCII is form-encoded: such secrets work.
    stack.as_.register_client("u-client", client_secret=" %&+\u00a3\u20ac")
    provider = ClientCredentialsProvider("u-client", " %&+\u00a3\u20ac",
                                         server_url=stack.mcp_url)
    assert provider.token()


# ---------------------------------------------------------------- wrong types


@pytest.mark.parametrize("kwargs, fragment", [
    ({"cache": "/path/tokens.json"}, "cache must be a TokenCache, not a str path: pass "
                                     "cache=FileTokenCache(path)"),
    ({"cache": Path("/path/tokens.json")}, "cache=FileTokenCache(path)"),
    ({"cache": {}}, "cache must be a TokenCache"),
    ({"timeout": "3"}, "timeout must be a number of seconds, not str"),
    ({"timeout": True}, "timeout must be a number of seconds, not bool"),
    ({"refresh_skew": "60"}, "refresh_skew must be a number of seconds"),
    ({"max_step_up": 1.5}, "max_step_up must be an int"),
    ({"allow_insecure_http": "yes"}, "allow_insecure_http must be True or False"),
    ({"expected_issuer": b"https://as.example"}, "expected_issuer must be a str"),
    ({"server_url": 42}, "server_url must be a str"),
    ({"clock": 5}, "clock must be a callable"),
    ({"session": "https://proxy"}, "session must be a requests.Session"),
    ({"transport": "urllib3"}, "transport must be callable"),
])
def test_wrong_argument_types_fail_at_construction_with_type_error(kwargs, fragment):
    with pytest.raises(TypeError) as info:
        ClientCredentialsProvider("cid", "secret", **kwargs)
    assert fragment in str(info.value)
    with pytest.raises(TypeError):
        PrivateKeyJwtProvider("cid", assertion=lambda aud: "x", **kwargs)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"key_id": 7}, "key_id must be a str, not int"),
    ({"typ": b"JWT"}, "typ must be a str, not bytes"),
    ({"audience": ["https://as.example"]}, "audience must be a str, not list"),
    ({"algorithm": 256}, "algorithm must be a str, not int"),
    ({"claims": [("tenant", "t1")]}, "claims must be a mapping, not list"),
    ({"jwt_lifetime_seconds": "300"}, "jwt_lifetime_seconds must be an int, not str"),
    ({"jwt_lifetime_seconds": True}, "jwt_lifetime_seconds must be an int, not bool"),
])
def test_wrong_private_key_jwt_option_types_are_type_errors(kwargs, fragment):
    # Otherwise kid 7, typ b"JWT" or aud ["..."] would go into every assertion and fail
    # only at the authorization server, as invalid_client.
    with pytest.raises(TypeError) as info:
        PrivateKeyJwtProvider("cid", assertion=lambda aud: "x", **kwargs)
    assert fragment in str(info.value)


def test_a_duck_typed_cache_and_a_real_session_are_accepted(stack, tmp_path, new_session):
    class Wrapped(object):  # not a TokenCache subclass, but has its methods
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

    provider = ClientCredentialsProvider(
        stack.client_id, stack.client_secret, server_url=stack.mcp_url,
        cache=Wrapped(FileTokenCache(str(tmp_path / "t.json"))), session=new_session(),
        timeout=5, refresh_skew=30, max_step_up=1)
    assert provider.token()


def test_misspelt_keyword_arguments_are_type_errors_for_python_and_for_mypy():
    with pytest.raises(TypeError, match="timeot"):
        ClientCredentialsProvider("cid", "secret", timeot=3)
    with pytest.raises(TypeError, match="timeot"):
        PrivateKeyJwtProvider("cid", assertion=lambda aud: "x", timeot=3)
    # And for mypy --strict: tests/typing/provider_options.py, run by tox -e typing.
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed here (tox -e typing runs this check)")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "tests/typing/provider_options.py"], cwd=str(ROOT), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------------------- errors with where and how


def test_invalid_client_names_the_token_endpoint_client_id_and_method(stack):
    provider = ClientCredentialsProvider(stack.client_id, "wrong-secret",
                                         server_url=stack.mcp_url)
    with pytest.raises(OAuthError) as info:
        provider.token()
    exc = info.value
    token_endpoint = stack.as_.token_endpoint
    assert str(exc).startswith(
        "invalid_client from the token endpoint {} (client id {!r}, client authentication "
        "client_secret_basic)".format(token_endpoint, stack.client_id)), str(exc)
    assert exc.error == "invalid_client"
    assert (exc.token_endpoint, exc.client_id, exc.auth_method) == (
        token_endpoint, stack.client_id, "client_secret_basic")
    assert "wrong-secret" not in str(exc)


def test_invalid_client_without_a_description_still_says_what_to_check(stack):
    stack.as_.register_client("post-client", client_secret="right",
                              auth_method="client_secret_post")
    provider = ClientCredentialsProvider("post-client", "right", server_url=stack.mcp_url,
                                         token_endpoint_auth_method="client_secret_post")
    stack.as_.fail_next("invalid_client", status=401)  # no error_description
    with pytest.raises(OAuthError) as info:
        provider.token()
    assert info.value.error_description is None
    assert str(info.value) == (
        "invalid_client from the token endpoint {} (client id 'post-client', client "
        "authentication client_secret_post): the authorization server did not accept the "
        "client's authentication: check the client id, the secret or key, and the "
        "authentication method the client is registered with".format(
            stack.as_.token_endpoint))


def test_a_server_url_without_its_path_gets_a_hint(stack):
    from urllib.parse import urlsplit

    parts = urlsplit(stack.mcp_url)
    assert parts.path == "/mcp"
    origin = "{}://{}".format(parts.scheme, parts.netloc)
    provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
    with pytest.raises(DiscoveryError) as info:
        provider.token(origin)
    assert str(info.value).endswith(
        "; the URL {0} has no path, and MCP servers are usually at one: did you mean "
        "{0}/mcp?".format(origin)), str(info.value)
    # A URL with a path gets no such hint, even when discovery fails.
    with pytest.raises(DiscoveryError) as info:
        provider.token(origin + "/other")
    assert "has no path" not in str(info.value)


# ---------------------------------------------------------------- keys in an HSM or KMS


def _der_signer(key):
    """What a KMS or PKCS#11 gives back for ECDSA: a DER ECDSA-Sig-Value."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    raw_key = key._key  # the test plays the HSM, which holds the private key

    def sign(data):
        assert isinstance(data, bytes)
        return raw_key.sign(data, ec.ECDSA(hashes.SHA256()))
    return sign


@pytest.fixture
def ec_key():
    from mcpauth import jws

    return jws.generate_private_key("EC")


def _register(stack, key, client_id="kms-client"):
    stack.as_.register_client(client_id, public_jwk=key.public_jwk(),
                              auth_method="private_key_jwt")
    return client_id


@needs_cryptography
def test_a_signing_callable_with_der_ecdsa_gets_a_token_with_raw_r_s(stack, ec_key):
    from mcpauth import jws

    client_id = _register(stack, ec_key)
    provider = PrivateKeyJwtProvider(client_id, signer=_der_signer(ec_key),
                                     public_jwk=ec_key.public_jwk(), key_id="k1",
                                     server_url=stack.mcp_url)
    assert provider.algorithm == "ES256"
    assert provider.token()
    assertion = stack.as_.token_requests()[0].form["client_assertion"]
    header, claims = jws.decode_unverified(assertion)
    assert header == {"alg": "ES256", "kid": "k1", "typ": "client-authentication+jwt"}
    assert len(jws.b64url_decode(assertion.split(".")[2])) == 64  # RFC 7518 §3.4 R||S
    assert jws.verify(assertion, ec_key.public_jwk(), ["ES256"])
    assert claims["iss"] == claims["sub"] == client_id
    assert claims["aud"] == stack.as_.issuer and claims["exp"] - claims["iat"] == 300
    assert repr(provider._jwt).endswith("key=signer)")


@needs_cryptography
def test_a_signing_callable_returning_raw_r_s_with_only_the_algorithm(stack, ec_key):
    client_id = _register(stack, ec_key)
    provider = PrivateKeyJwtProvider(client_id, signer=lambda data: ec_key.sign(data, "ES256"),
                                     algorithm="ES256", server_url=stack.mcp_url)
    assert provider.token()


@needs_cryptography
def test_a_signer_using_another_key_is_caught_before_anything_is_sent(stack, ec_key):
    from mcpauth import jws

    other = jws.generate_private_key("EC")
    client_id = _register(stack, ec_key)
    provider = PrivateKeyJwtProvider(client_id, signer=_der_signer(other),
                                     public_jwk=ec_key.public_jwk(), server_url=stack.mcp_url)
    with pytest.raises(InvalidKeyError, match="does not verify with the declared public key"):
        provider.token()
    assert stack.as_.token_requests() == []


@needs_cryptography
@pytest.mark.parametrize("returned, error", [
    (b"\x00" * 63, "returned 63 bytes, which is not an ES256 signature (R||S of 64 bytes, "
                   "or DER)"),
    ("not-bytes", "returned str, not the signature bytes"),
])
def test_a_signer_returning_garbage_gets_a_clear_error(stack, ec_key, returned, error):
    client_id = _register(stack, ec_key)
    provider = PrivateKeyJwtProvider(client_id, signer=lambda data: returned,
                                     algorithm="ES256", server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError) as info:
        provider.token()
    assert error in str(info.value)
    assert stack.as_.token_requests() == []


@needs_cryptography
def test_signer_configuration_is_checked_at_construction(ec_key):
    rsa_jwk = {"kty": "RSA", "n": "sXch", "e": "AQAB"}
    with pytest.raises(ConfigurationError, match="public_jwk= .* or algorithm="):
        PrivateKeyJwtProvider("c", signer=lambda d: b"")
    with pytest.raises(ConfigurationError, match="exactly one of private_key, signer"):
        PrivateKeyJwtProvider("c", ec_key, signer=lambda d: b"")
    with pytest.raises(ConfigurationError, match="exactly one of private_key, signer"):
        PrivateKeyJwtProvider("c")
    with pytest.raises(TypeError, match="signer must be callable"):
        PrivateKeyJwtProvider("c", signer=b"key", algorithm="ES256")
    with pytest.raises(ConfigurationError, match="'RS256' cannot be used with this EC key"):
        PrivateKeyJwtProvider("c", signer=lambda d: b"", public_jwk=ec_key.public_jwk(),
                              algorithm="RS256")
    with pytest.raises(InvalidKeyError, match="holds a private key"):
        PrivateKeyJwtProvider("c", signer=lambda d: b"",
                              public_jwk=dict(rsa_jwk, d="secret-part"))
    with pytest.raises(ConfigurationError):
        PrivateKeyJwtProvider("c", signer=lambda d: b"", algorithm="HS256")


def test_der_to_jose_conversion_vectors():
    from mcpauth import jws

    # SEQUENCE { INTEGER 0x00ff (positive, padded), INTEGER 0x01 }
    der = bytes([0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x01])
    assert jws._der_ecdsa_to_jose(der, 32) == (b"\x00" * 31 + b"\xff") + (b"\x00" * 31 + b"\x01")
    for bad in (der[:-1], der + b"\x00", bytes([0x31]) + der[1:],
                bytes([0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01]),  # negative r
                bytes([0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),  # r = 0
                bytes([0x30, 0x24, 0x02, 0x21]) + b"\x01" * 33 + bytes([0x02, 0x01, 0x01])):
        assert jws._der_ecdsa_to_jose(bad, 32) is None, bad


def _assertion_for(key, client_id, audience, **changes):
    from mcpauth import jws

    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
              "exp": now + 120, "jti": "j-" + str(time.time())}
    claims.update(changes)
    for name, value in list(claims.items()):
        if value is None:
            del claims[name]
    return jws.sign(claims, key, "ES256", headers={"typ": "JWT"})


@needs_cryptography
def test_an_assertion_callable_gets_the_audience_and_its_assertion_is_sent(stack, ec_key):
    client_id = _register(stack, ec_key)
    audiences = []

    def assertion(audience):
        audiences.append(audience)
        return _assertion_for(ec_key, client_id, audience)

    provider = PrivateKeyJwtProvider(client_id, assertion=assertion,
                                     public_jwk=ec_key.public_jwk(), server_url=stack.mcp_url)
    assert provider.token()
    assert audiences == [stack.as_.issuer]
    assert stack.as_.token_requests()[0].form["client_id"] == client_id


@needs_cryptography
@pytest.mark.parametrize("changes, problem", [
    ({"iss": "someone-else"}, "has iss other than the client id"),
    ({"sub": None}, "has sub other than the client id"),
    ({"aud": "https://other.example"}, "is not addressed to"),
    ({"aud": ["AUD", "https://other.example"]}, "is not addressed to"),
    ({"exp": 1000}, "has expired or has no exp"),
    ({"exp": None}, "has expired or has no exp"),
    ({"exp": int(time.time()) + 7200}, "lives longer than 3600 seconds"),
    ({"jti": None}, "has no jti"),
])
def test_an_assertion_from_the_callable_gets_the_checks_a_local_one_meets(
        stack, ec_key, changes, problem):
    client_id = _register(stack, ec_key)

    def assertion(audience):
        fixed = dict(changes)
        if fixed.get("aud") == ["AUD", "https://other.example"]:
            fixed["aud"] = [audience, "https://other.example"]  # RFC 7523bis: sole value
        return _assertion_for(ec_key, client_id, audience, **fixed)

    provider = PrivateKeyJwtProvider(client_id, assertion=assertion, server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError) as info:
        provider.token()
    assert problem in str(info.value)
    assert "RFC 7523" in str(info.value) and "eyJ" not in str(info.value)
    assert stack.as_.token_requests() == []


@needs_cryptography
def test_an_assertion_signed_by_another_key_or_alg_is_refused(stack, ec_key):
    from mcpauth import jws

    client_id = _register(stack, ec_key)
    other = jws.generate_private_key("EC")
    provider = PrivateKeyJwtProvider(
        client_id, assertion=lambda aud: _assertion_for(other, client_id, aud),
        public_jwk=ec_key.public_jwk(), server_url=stack.mcp_url)
    with pytest.raises(InvalidKeyError, match="does not verify with the declared public_jwk"):
        provider.token()
    provider = PrivateKeyJwtProvider(
        client_id, assertion=lambda aud: _assertion_for(ec_key, client_id, aud),
        algorithm="EdDSA", server_url=stack.mcp_url)
    with pytest.raises(ConfigurationError, match="signed with ES256, not the declared EdDSA"):
        provider.token()
    for bad in ("not a jwt", None, "a.b.c"):
        provider = PrivateKeyJwtProvider(client_id, assertion=lambda aud, bad=bad: bad,
                                         server_url=stack.mcp_url)
        with pytest.raises(ConfigurationError, match="from the assertion callable"):
            provider.token()
    assert stack.as_.token_requests() == []
