"""The fast paths keep every check: cached-token attach, 401 recovery, deferred key loading.

Each test fails on a build that takes the shortcut too far (serves a token the cache no
longer holds, skips a changed authorization server, accepts a malformed key silently)
or not at all (re-fetches what did not change, loads a key nothing signs with).
"""

import os
import subprocess
import sys

import pytest
import requests

from mcpauth import (BearerTokenProvider, ClientCredentialsProvider, ConfigurationError,
                     InvalidKeyError, PrivateKeyJwtProvider)
from mcpauth.testing import AuthorizationServer, LoopbackStack

jws = pytest.importorskip("mcpauth.jws")
pytest.importorskip("cryptography")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _requests_to_200(stack, session):
    before = len(stack.mcp.requests) + len(stack.as_.requests)
    response = session.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1,
                                                 "method": "tools/list", "params": {}},
                            headers={"Accept": "application/json, text/event-stream",
                                     "MCP-Protocol-Version": "2025-11-25"})
    assert response.status_code == 200
    return len(stack.mcp.requests) + len(stack.as_.requests) - before


def test_after_a_revoked_token_four_requests_to_the_next_200(new_session):
    # 401, the protected resource metadata again (has the AS moved?), a token, the retry.
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        session = new_session()
        session.auth = provider
        _requests_to_200(stack, session)
        assert _requests_to_200(stack, session) == 1
        stack.as_.revoke()
        metadata_before = len(stack.as_.metadata_requests())
        assert _requests_to_200(stack, session) == 4
        assert len(stack.as_.metadata_requests()) == metadata_before


def test_after_a_401_a_moved_authorization_server_is_fetched_and_refused(new_session):
    # The PRM now names another AS: its metadata is fetched (not the old one reused),
    # and the credentials, bound to the first AS, are not sent there.
    from mcpauth import AuthorizationServerMismatchError

    with LoopbackStack() as stack, AuthorizationServer() as other:
        other.register_client(stack.client_id, client_secret=stack.client_secret)
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        session = new_session()
        session.auth = provider
        _requests_to_200(stack, session)
        stack.mcp.authorization_servers = [other]
        stack.as_.revoke()
        with pytest.raises(AuthorizationServerMismatchError):
            _requests_to_200(stack, session)
        assert other.token_requests() == []


def test_cached_token_record_follows_expiry_and_refusal(new_session):
    now = [1000.0]
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             clock=lambda: now[0])
        session = new_session()
        session.auth = provider
        _requests_to_200(stack, session)
        _requests_to_200(stack, session)
        first = stack.as_.issued_tokens()[-1]
        tokens = len(stack.as_.token_requests())
        # Past the renewal time the per-request record is not used: a new token.
        now[0] += 3600 * 2
        _requests_to_200(stack, session)
        assert len(stack.as_.token_requests()) == tokens + 1
        assert stack.as_.issued_tokens()[-1] != first


def test_bearer_token_source_is_checked_whenever_it_changes():
    values = ["good-token", "bad\r\ntoken"]
    provider = BearerTokenProvider(lambda: values[0])
    assert provider.token() == "good-token"
    assert provider.token() == "good-token"
    values[0] = values[1]
    with pytest.raises(ConfigurationError):
        provider.token()


def test_bearer_request_path_checks_a_changed_token_too():
    values = ["good-token"]
    provider = BearerTokenProvider(lambda: values[0])
    provider(_prepared("https://mcp.example.com/mcp"))
    values[0] = "bad\r\nX-Injected: 1"
    with pytest.raises(ConfigurationError):
        provider(_prepared("https://mcp.example.com/mcp"))


def _pem(key):
    from cryptography.hazmat.primitives import serialization

    return key._key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


@pytest.mark.parametrize("kty,kw,alg", [("RSA", {"key_size": 2048}, "RS256"),
                                        ("EC", {"curve": "P-384"}, "ES384"),
                                        ("OKP", {}, "EdDSA")])
def test_key_algorithms_reads_the_structure(kty, kw, alg):
    key = jws.generate_private_key(kty, **kw)
    pem = _pem(key)
    assert jws.key_algorithms(pem)[0] == alg
    assert jws.key_algorithms(pem.decode())[0] == alg
    if kty == "EC":
        assert jws.key_algorithms(_ec_private_jwk(key))[0] == alg


def _ec_private_jwk(key, d_from=None):
    size = (key.key_size + 7) // 8
    d = (d_from or key)._key.private_numbers().private_value.to_bytes(size, "big")
    return dict(key.public_jwk(), d=jws.b64url_encode(d))


@pytest.mark.parametrize("bad", [
    b"-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
    b"-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
    b"-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    b"-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n",
    b"\x30\x03\x02\x01\x00",
    {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    "/etc/keys/client.pem",
])
def test_malformed_keys_are_still_refused_at_construction(bad):
    assert jws.key_algorithms(bad) is None
    with pytest.raises(InvalidKeyError):
        PrivateKeyJwtProvider("client", bad)


def test_small_rsa_key_refused_at_construction_without_loading():
    from cryptography.hazmat.backends import default_backend  # cryptography < 3.1 needs it
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(65537, 1024, default_backend())
    from cryptography.hazmat.primitives import serialization
    pem = small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(InvalidKeyError, match="1024 bits"):
        jws.key_algorithms(pem)
    with pytest.raises(InvalidKeyError, match="1024 bits"):
        PrivateKeyJwtProvider("client", pem)


def test_deferred_key_is_fully_loaded_before_it_signs():
    # A JWK whose private part does not match its public part passes the structure check
    # but is refused before anything is signed with it.
    a = jws.generate_private_key("EC", curve="P-256")
    b = jws.generate_private_key("EC", curve="P-256")
    mixed = _ec_private_jwk(a, d_from=b)
    assert jws.key_algorithms(mixed) == ("ES256",)
    provider = PrivateKeyJwtProvider("client", mixed, token_endpoint="https://as.example/t",
                                     resource="https://mcp.example/mcp")
    with pytest.raises(InvalidKeyError):
        provider._jwt.build_assertion("https://as.example", "https://as.example/t")


def test_constructing_with_a_pem_key_imports_no_cryptography(tmp_path):
    key = jws.generate_private_key("RSA", key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(key))
    code = ("import sys; from mcpauth import PrivateKeyJwtProvider; "
            "p = PrivateKeyJwtProvider('c', open(sys.argv[1], 'rb').read(), "
            "server_url='https://mcp.example/mcp'); "
            "assert p.algorithm == 'RS256'; "
            "print('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT,
                         stdout=subprocess.PIPE, check=True).stdout
    assert out.strip() == b"False"


def test_a_bearer_request_never_carries_a_dpop_header():
    # The cheap header removal of the per-request path removes it, whatever its case.
    provider = BearerTokenProvider("tok")
    for name in ("DPoP", "dpop", "DPOP"):
        r = requests.Request("GET", "https://mcp.example.com/mcp", headers={name: "x"}).prepare()
        provider(r)
        assert r.headers["Authorization"] == "Bearer tok"
        assert "DPoP" not in r.headers


def test_unloaded_rsa_thumbprint_is_the_loaded_one():
    from cryptography.hazmat.primitives import serialization

    key = jws.generate_private_key("RSA", key_size=2048)
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        for enc in (serialization.Encoding.PEM, serialization.Encoding.DER):
            data = key._key.private_bytes(enc, fmt, serialization.NoEncryption())
            assert jws.unloaded_thumbprint(data) == key.thumbprint()
    assert jws.unloaded_thumbprint(_pem(jws.generate_private_key("EC", curve="P-256"))) is None


def test_a_second_run_with_the_same_pem_key_reuses_the_cached_token(tmp_path):
    # The cache ties tokens to the key's thumbprint: a new provider (a new cron run) with
    # the key still unloaded must compute the same one and find the token.
    from mcpauth import FileTokenCache

    key = jws.generate_private_key("RSA", key_size=2048)
    pem = _pem(key)
    with LoopbackStack(public_jwk=key.public_jwk()) as stack:
        path = str(tmp_path / "cache.json")
        first = PrivateKeyJwtProvider(stack.client_id, pem, server_url=stack.mcp_url,
                                      cache=FileTokenCache(path))
        token = first.token()
        requests_before = len(stack.as_.token_requests())
        second = PrivateKeyJwtProvider(stack.client_id, pem, server_url=stack.mcp_url,
                                       cache=FileTokenCache(path))
        assert second.token() == token
        assert len(stack.as_.token_requests()) == requests_before
        assert second._jwt._key is None  # nothing signed, nothing loaded


def _prepared(url):
    return requests.Request("POST", url, data=b"{}").prepare()


def test_bound_bearer_fast_path_still_refuses_another_server_after_a_good_one():
    # The per-request path remembers the last server that passed the binding check; a
    # request elsewhere (another path, a look-alike that extends the string) is checked.
    provider = BearerTokenProvider("tok", server_url="https://mcp.example.com/mcp")
    for _ in range(2):
        assert provider(_prepared("https://mcp.example.com/mcp")).headers[
            "Authorization"] == "Bearer tok"
    for other in ("https://mcp.example.com/mcp-admin", "https://mcp.example.com.evil/mcp"):
        with pytest.raises(ConfigurationError):
            provider(_prepared(other))
        assert provider(_prepared("https://mcp.example.com/mcp")).headers[
            "Authorization"] == "Bearer tok"


def test_bearer_fast_path_follows_a_changed_binding():
    provider = BearerTokenProvider("tok", server_url="https://mcp.example.com/mcp")
    provider(_prepared("https://mcp.example.com/mcp"))
    provider.server_url = "https://other.example.com/mcp"
    with pytest.raises(ConfigurationError):
        provider(_prepared("https://mcp.example.com/mcp"))


def test_bearer_fast_path_sends_what_the_source_returns_now():
    values = ["tok-1"]
    provider = BearerTokenProvider(lambda: values[0])
    assert provider(_prepared("https://mcp.example.com/mcp")).headers[
        "Authorization"] == "Bearer tok-1"
    values[0] = "tok-2"
    assert provider(_prepared("https://mcp.example.com/mcp")).headers[
        "Authorization"] == "Bearer tok-2"
    values[0] = None
    assert "Authorization" not in provider(_prepared("https://mcp.example.com/mcp")).headers


def test_bearer_with_a_dpop_key_proves_every_request_not_only_the_first():
    from mcpauth.dpop import DPoPKey

    provider = BearerTokenProvider("tok", dpop_key=DPoPKey.generate())
    proofs = set()
    for _ in range(3):
        r = provider(_prepared("https://mcp.example.com/mcp"))
        assert r.headers["Authorization"] == "DPoP tok"
        proofs.add(r.headers["DPoP"])
    assert len(proofs) == 3


def _served_twice(stack, session):
    """A provider that has sent two requests: the second from its cached-token record."""
    provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                         server_url=stack.mcp_url)
    session.auth = provider
    _requests_to_200(stack, session)
    _requests_to_200(stack, session)
    return provider


def test_oauth_fast_path_follows_a_changed_resource_setting(new_session):
    # The record says which `resource` the server was checked against; set another one
    # and the next request is checked again (and refused), not served from the record.
    with LoopbackStack() as stack:
        provider = _served_twice(stack, new_session())
        provider.resource = stack.mcp_url + "-admin"
        with pytest.raises(ConfigurationError):
            provider(_prepared(stack.mcp_url))


def test_oauth_fast_path_checks_a_server_that_only_token_was_asked_for(new_session):
    # token(url) fills the record for a server without the binding check (nothing is
    # sent there); a request to that server must still be checked.
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             server_url=stack.mcp_url,
                                             token_endpoint=stack.as_.token_endpoint,
                                             resource=stack.mcp_url)
        other = stack.mcp_url + "-admin"
        provider.token(other)
        provider.token(other)  # the second one is read from the cache: the record
        assert provider._states[other].fast is not None
        with pytest.raises(ConfigurationError):
            provider(_prepared(other))


@pytest.mark.parametrize("field", ["target", "challenge_scope", "step_up_scope"])
def test_oauth_fast_record_is_not_used_under_a_changed_target_or_scope(new_session, field):
    # A thread may write the record just after another one changed the server's target
    # or scopes (a 401 re-discovery, a 403 step-up): the record carries what it was read
    # under, and a change sends the next request through the slow path (a new cache key).
    with LoopbackStack() as stack:
        provider = _served_twice(stack, new_session())
        state = provider._states[provider.server_url]
        assert state.fast is not None
        slow = []
        real = provider._ensure_token

        def spy(*args, **kwargs):
            slow.append(args)
            return real(*args, **kwargs)

        provider._ensure_token = spy
        provider(_prepared(stack.mcp_url))
        assert slow == []  # the record serves an unchanged server
        if field == "target":
            state.target = state.target._replace()  # equal, but not the one read under
        else:
            setattr(state, field, "extra")
        provider(_prepared(stack.mcp_url))
        assert len(slow) == 1


def test_a_warm_cron_call_loads_neither_discovery_nor_cryptography(tmp_path):
    # The warm `mcpauth call` with a PEM key: one HTTP request, the cached discovery
    # result rechecked without the discovery module (its resource is this server's, RFC
    # 9728 §3.3), nothing signed so no key loaded.
    key = jws.generate_private_key("RSA", key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(key))
    os.chmod(str(path), 0o600)
    # What the call itself loads (on Python 3.6, ``import mcpauth`` loads discovery).
    code = ("import io, sys\nfrom mcpauth.cli import main\n"
            "before = set(sys.modules)\n"
            "status = main(sys.argv[1:], stdout=io.StringIO())\n"
            "print(status, sorted(m for m in ('mcpauth.discovery', 'cryptography') "
            "if m in sys.modules and m not in before))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPAUTH_")}
    with LoopbackStack(public_jwk=key.public_jwk()) as stack:
        argv = [sys.executable, "-c", code, "call", stack.mcp_url, "add", "--arg", "a=2",
                "--arg", "b=3", "--client-id", stack.client_id, "--private-key-file",
                str(path), "--cache", str(tmp_path / "cache.json")]
        runs = []
        for _ in range(2):
            before = len(stack.mcp.requests) + len(stack.as_.requests)
            out = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 check=True, universal_newlines=True).stdout
            runs.append((out.strip(), len(stack.mcp.requests) + len(stack.as_.requests)
                         - before))
    assert runs[0][0] in ("0 ['cryptography', 'mcpauth.discovery']",  # the cold run
                          "0 ['cryptography']" if sys.version_info < (3, 7) else None)
    assert runs[1] == ("0 []", 1), runs  # one request: the tool call
