"""DPoP (RFC 9449) review findings: each test failed before its fix."""

import pytest
import requests

pytest.importorskip("cryptography")

from mcpauth import (  # noqa: E402
    ClientCredentialsProvider,
    ConfigurationError,
    MCPAuthError,
    TokenResponseError,
    jws,
)
from mcpauth.cache import FileTokenCache  # noqa: E402
from mcpauth.dpop import DPoPKey, DPoPProofError, NonceStore, htu_of, verify_proof  # noqa: E402
from mcpauth.testing import LoopbackStack  # noqa: E402
from mcpauth.testing._http import LoopbackServer  # noqa: E402
from test_e2e_providers import rpc  # noqa: E402


@pytest.fixture(scope="module")
def key():
    return DPoPKey.generate()


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


def test_htu_never_carries_userinfo(key):
    # RFC 9449 §4.2: htu is the target URI (RFC 9110 §7.1), which has no userinfo
    # (deprecated, RFC 9110 §4.2.4); requests keeps it in PreparedRequest.url, and a
    # password must not ride along in every proof.
    assert htu_of("https://user:s3cret@A.example:8443/p?q#f") == "https://A.example:8443/p"
    assert htu_of("https://@a.example/p") == "https://a.example/p"
    prepared = requests.Request("POST", "https://user:s3cret@rs.example/mcp").prepare()
    proof = key.proof(prepared.method, prepared.url, "tok")
    claims = jws.decode_unverified(proof)[1]
    assert claims["htu"] == "https://rs.example/mcp" and "s3cret" not in str(claims)
    verify_proof(proof, "POST", "https://rs.example/mcp", access_token="tok")


@pytest.mark.parametrize("nonce", ["a b", " ", "caf\u00e9", "a\tb", "a\x7fb"])
def test_nonces_outside_nqchar_are_refused(key, nonce):
    # RFC 9449 §8.1: nonce = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E (no space).
    store = NonceStore()
    assert not store.remember("https://a.example/", nonce)
    assert store.get("https://a.example/") is None
    with pytest.raises(ConfigurationError, match="nonce"):
        key.proof("POST", "https://a.example/token", nonce=nonce)


def test_nqchar_nonce_is_accepted(key):
    nonce = "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"
    store = NonceStore()
    assert store.remember("https://a.example/", nonce)
    proof = key.proof("POST", "https://a.example/token", nonce=nonce)
    assert jws.decode_unverified(proof)[1]["nonce"] == nonce


def test_cached_bearer_token_is_not_used_when_bearer_answers_are_refused(stack, tmp_path):
    # A Bearer token accepted by a run with dpop_accept_bearer=True must not be picked up
    # from the cache by a run that refuses Bearer answers (RFC 9449 §5).
    stack.as_.dpop_token_type = "Bearer"
    path = str(tmp_path / "tokens.json")
    dpop_key = DPoPKey.generate()

    def make(**kw):
        return ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                         dpop_key=dpop_key, cache=FileTokenCache(path),
                                         server_url=stack.mcp_url, **kw)

    lenient = make(dpop_accept_bearer=True)
    bearer = lenient.token()
    strict = make()
    with pytest.raises(TokenResponseError, match="Bearer"):
        strict.token()
    assert len(stack.as_.token_requests()) == 2
    stack.as_.dpop_token_type = "DPoP"
    assert strict.token() != bearer
    assert make(dpop_accept_bearer=True).token() != bearer  # the DPoP token, cached now


def test_dpop_proof_does_not_follow_a_redirect(stack):
    # requests drops Authorization on a redirect to another host but keeps other headers:
    # the proof (and its key and nonce) must not go to the new host either.
    with LoopbackServer() as other, requests.Session() as session:
        other.set_route("/elsewhere", 200, {"ok": True})
        session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                                 dpop_key=DPoPKey.generate())
        assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
        stack.mcp.set_route("/mcp", 307, headers=[("Location", other.base_url + "/elsewhere")])
        r = rpc(session, stack.mcp_url, "tools/list", msg_id=2)
        assert r.status_code == 200 and r.history[0].status_code == 307
        (hop,) = other.requests
        assert hop.headers.get("Authorization") is None
        assert hop.headers.get("DPoP") is None


@pytest.mark.parametrize("htu", [
    "https://evil.example@rs.example/mcp",          # userinfo that looks like a host
    "https://rs.example@evil.example/mcp",
    "https://rs.example/mcp/",
    "https://rs.example/mcpx",
    "https://rs.example:4430/mcp",
    "http://rs.example/mcp",
    "https://rs.example/mcp#frag",
])
def test_verifier_refuses_look_alike_htu(key, htu):
    proof = jws.sign({"jti": "j", "htm": "GET", "htu": htu, "iat": 1700000000},
                     key.signing_key, "ES256",
                     headers={"typ": "dpop+jwt", "jwk": key.public_jwk()})
    with pytest.raises(DPoPProofError, match="htu"):
        verify_proof(proof, "GET", "https://rs.example/mcp", now=1700000000)


def test_verifier_accepts_an_at_sign_in_the_path(key):
    url = "https://rs.example/users/@me"
    verify_proof(key.proof("GET", url), "GET", url)


@pytest.mark.parametrize("alg, public", [
    ("ES256", {"kty", "crv", "x", "y"}),
    ("EdDSA", {"kty", "crv", "x"}),
    ("PS256", {"kty", "n", "e"}),
])
def test_proof_header_has_the_public_jwk_only_and_jti_has_128_bits(alg, public):
    # RFC 9449 §4.2: the jwk "MUST NOT contain a private key"; jti has >= 96 random bits.
    dpop_key = DPoPKey.generate(alg)
    jtis = set()
    for _ in range(200):
        header, claims = jws.decode_unverified(dpop_key.proof("post", "https://a.example/t"))
        assert header["typ"] == "dpop+jwt" and header["alg"] == alg
        assert set(header["jwk"]) == public
        assert len(jws.b64url_decode(claims["jti"])) == 16
        assert claims["htm"] == "post" and "ath" not in claims and "nonce" not in claims
        jtis.add(claims["jti"])
    assert len(jtis) == 200


def test_concurrent_proofs_and_nonces_stay_consistent(key):
    # DPoPKey caches the last ath and each URL's htu; NonceStore is shared by threads.
    from concurrent.futures import ThreadPoolExecutor

    store = NonceStore()

    def work(n):
        for i in range(100):
            token, url = "tok-%d-%d" % (n, i % 3), "https://h%d.example/p%d" % (n, i % 5)
            store.remember(url, "n%d-%d" % (n, i))
            nonce = store.get(url)
            assert nonce.startswith("n%d-" % n)
            verify_proof(key.proof("GET", url, token, nonce), "GET", url,
                         access_token=token, nonce=nonce)
        return n

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(work, range(6))) == list(range(6))


@pytest.mark.parametrize("bad", [5, {"ES256": True}, "ES256", [1, None], [], True])
def test_malformed_dpop_algorithm_lists_are_a_typed_error_or_ignored(stack, bad):
    # Peer metadata: a dpop_signing_alg_values_supported that is not a list of strings
    # (RFC 8414 §2 / RFC 9449 §5.1: a JSON array) never escapes as a TypeError, and a
    # string is not read as a list of its characters.
    stack.as_.metadata_override["dpop_signing_alg_values_supported"] = bad
    with requests.Session() as session:
        session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                                 dpop_key=DPoPKey.generate())
        try:
            r = rpc(session, stack.mcp_url, "tools/list")
        except MCPAuthError as exc:
            assert "E, S" not in str(exc)
        else:
            assert r.status_code == 200


def test_warm_run_signs_resource_proofs_with_the_servers_algorithm(stack, tmp_path):
    # A token from the cache: the proofs to the MCP server still use the alg chosen from
    # dpop_signing_alg_values_supported (RFC 9449 §5.1), not the key's default (PS256).
    stack.as_.dpop_signing_algs = ["RS256"]
    stack.mcp.dpop.algorithms = ("RS256",)
    path = str(tmp_path / "tokens.json")
    rsa = jws.generate_private_key("RSA", key_size=2048)
    for _ in range(2):
        with requests.Session() as session:
            session.auth = ClientCredentialsProvider(
                stack.client_id, stack.client_secret, dpop_key=DPoPKey(rsa),
                cache=FileTokenCache(path), server_url=stack.mcp_url)
            assert rpc(session, stack.mcp_url, "tools/list").status_code == 200
    assert len(stack.as_.token_requests()) == 1
    assert {jws.decode_unverified(r.headers["DPoP"])[0]["alg"]
            for r in stack.mcp.mcp_requests() if r.headers.get("DPoP")} == {"RS256"}
