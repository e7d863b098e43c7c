"""DPoP (RFC 9449): the proof primitive, the verifier, and every OAuth provider's use of
them against mcpauth.testing's servers, which check every proof for real."""

import json
import pickle

import pytest
import requests

pytest.importorskip("cryptography")

from mcpauth import (  # noqa: E402
    ClientCredentialsProvider,
    ConfigurationError,
    PrivateKeyJwtProvider,
    TokenResponseError,
    UnauthorizedError,
    jws,
)
from mcpauth.cache import FileTokenCache  # noqa: E402
from mcpauth.dpop import (  # noqa: E402
    DPoPKey,
    DPoPProofError,
    NonceStore,
    access_token_hash,
    htu_of,
    make_proof,
    verify_proof,
)
from mcpauth.testing import LoopbackStack  # noqa: E402
from test_e2e_providers import rpc as stateless_rpc  # noqa: E402

ACCEPT = "application/json, text/event-stream"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}

# RFC 9449 §4.1 / Fig. 4 example key and the proofs of Figures 3, 7 and 13.
RFC_JWK = {"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
           "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"}
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
RFC_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
_RFC_HEADER = ("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZ"
               "yaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX28"
               "2NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19")
RFC_TOKEN_PROOF = _RFC_HEADER + (
    ".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1w"
    "bGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4P"
    "tFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg")
RFC_REFRESH_PROOF = _RFC_HEADER + (
    ".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1w"
    "bGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjY1Mjk2fQ.pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5QsGS"
    "uKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA")
RFC_RESOURCE_PROOF = _RFC_HEADER + (
    ".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFt"
    "cGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc0"
    "5yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF"
    "8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA")
RESOURCE = "https://resource.example.org/protectedresource"
TOKEN_URL = "https://server.example.com/token"


@pytest.fixture(scope="module")
def key():
    return DPoPKey.generate()


def parts(proof):
    return jws.decode_unverified(proof)


# -- RFC 9449 vectors -----------------------------------------------------------------------

def test_rfc9449_thumbprint_and_ath():
    assert jws.jwk_thumbprint(RFC_JWK) == RFC_JKT                      # Fig. 9 cnf.jkt
    assert access_token_hash(RFC_TOKEN) == RFC_ATH                     # §7.1


@pytest.mark.parametrize("proof, iat", [(RFC_TOKEN_PROOF, 1562262616),
                                        (RFC_REFRESH_PROOF, 1562265296)])
def test_rfc9449_token_request_proofs_verify(proof, iat):
    claims = verify_proof(proof, "POST", TOKEN_URL, now=iat, jkt=RFC_JKT)
    assert claims["jkt"] == RFC_JKT and claims["jti"] == "-BwC3ESc6acc2lTc"
    with pytest.raises(DPoPProofError):                                # 5 min later: stale
        verify_proof(proof, "POST", TOKEN_URL, now=iat + 301)


def test_rfc9449_resource_proof_verifies():
    claims = verify_proof(RFC_RESOURCE_PROOF, "GET", RESOURCE, access_token=RFC_TOKEN,
                          now=1562262618, jkt=RFC_JKT)
    assert claims["ath"] == RFC_ATH
    with pytest.raises(DPoPProofError, match="ath"):
        verify_proof(RFC_RESOURCE_PROOF, "GET", RESOURCE, access_token=RFC_TOKEN + "x",
                     now=1562262618)


# -- the proof primitive ---------------------------------------------------------------------

def test_proof_header_and_claims(key):
    proof = key.proof("POST", "https://as.example/token?x=1#frag")
    header, claims = parts(proof)
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()}
    assert "d" not in header["jwk"]
    assert set(claims) == {"jti", "htm", "htu", "iat"}                 # no ath at the AS
    assert claims["htm"] == "POST" and claims["htu"] == "https://as.example/token"
    assert len(jws.b64url_decode(claims["jti"])) * 8 >= 96
    assert verify_proof(proof, "POST", "https://as.example/token")["jkt"] == key.thumbprint


def test_proof_with_token_and_nonce_and_fresh_jti(key):
    first = key.proof("GET", "https://rs.example/mcp", "tok", nonce="n-1")
    second = key.proof("GET", "https://rs.example/mcp", "tok", nonce="n-1")
    c1, c2 = parts(first)[1], parts(second)[1]
    assert c1["ath"] == access_token_hash("tok") and c1["nonce"] == "n-1"
    assert c1["jti"] != c2["jti"]                                      # RFC 9449 §4.2


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256", "RS256", "ES384"])
def test_generated_keys_of_each_algorithm(alg):
    key = DPoPKey.generate(alg)
    proof = make_proof(key, "GET", "https://rs.example/mcp", "t")
    assert parts(proof)[0]["alg"] == alg
    verify_proof(proof, "GET", "https://rs.example/mcp", access_token="t", jkt=key.thumbprint)


def test_algorithm_is_chosen_from_the_server_list():
    ec = DPoPKey.generate()
    rsa = DPoPKey(DPoPKey.generate("RS256").signing_key)                # no fixed alg
    assert ec.algorithm_for(["RS256", "ES256"]) == "ES256"
    assert rsa.algorithm_for(["RS256"]) == "RS256"
    assert rsa.algorithm_for(None) == "PS256"
    with pytest.raises(ConfigurationError, match="EdDSA"):
        ec.algorithm_for(["EdDSA"])
    with pytest.raises(ConfigurationError):
        DPoPKey(ec, "RS256")                                           # not this key's alg
    with pytest.raises(ConfigurationError):
        DPoPKey.generate("HS256")                                       # symmetric: never


def test_key_forms_repr_and_pickle(key):
    pem = DPoPKey(jws.generate_private_key("EC"))
    assert DPoPKey(pem).thumbprint == pem.thumbprint
    text = repr(key)
    assert key.thumbprint in text and "'d'" not in text and "PRIVATE" not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_htu_drops_query_and_fragment_only():
    assert htu_of("https://a.example:8443/p/q?x=1#y") == "https://a.example:8443/p/q"
    with pytest.raises(ConfigurationError):
        htu_of("ftp://a.example/x")


# -- the verifier: each RFC 9449 §4.3 rule ---------------------------------------------------

def _forge(key, header=None, claims=None, alg="ES256"):
    base_header = {"typ": "dpop+jwt", "jwk": key.public_jwk()}
    base_header.update(header or {})
    base_claims = {"jti": "j-1", "htm": "GET", "htu": "https://rs.example/mcp",
                   "iat": 1700000000}
    base_claims.update(claims or {})
    return jws.sign(base_claims, key.signing_key, alg, headers=base_header)


@pytest.mark.parametrize("header, claims, words", [
    ({"typ": "JWT"}, None, "typ"),
    (None, {"htm": "POST"}, "htm"),
    (None, {"htu": "https://rs.example/mcp-admin"}, "htu"),             # look-alike path
    (None, {"htu": "https://rs.example.evil/mcp"}, "htu"),              # look-alike host
    (None, {"htu": "https://rs.example/mcp?q=1"}, "htu"),
    (None, {"iat": 1700000000 - 301}, "iat"),
    (None, {"iat": 1700000000 + 60}, "iat"),
    (None, {"jti": ""}, "jti"),
    (None, {"ath": "x"}, "ath"),                                         # ath at a token request
])
def test_verifier_refuses(key, header, claims, words):
    proof = _forge(key, header, claims)
    with pytest.raises(DPoPProofError, match=words):
        verify_proof(proof, "GET", "https://rs.example/mcp", now=1700000000)


def test_verifier_accepts_the_normalised_htu(key):
    proof = _forge(key, claims={"htu": "HTTPS://RS.example:443/mcp"})
    verify_proof(proof, "GET", "https://rs.example/mcp", now=1700000000)


def test_verifier_refuses_bad_keys_signatures_and_nonces(key):
    good = _forge(key)
    verify_proof(good, "GET", "https://rs.example/mcp", now=1700000000)
    h, p, s = good.split(".")
    tampered = h + "." + jws.b64url_encode(b'{"jti":"j-2","htm":"GET","htu":'
                                           b'"https://rs.example/mcp","iat":1700000000}') + "." + s
    with pytest.raises(DPoPProofError, match="signature"):
        verify_proof(tampered, "GET", "https://rs.example/mcp", now=1700000000)
    private = dict(key.public_jwk(), d="AAAA")
    with pytest.raises(DPoPProofError, match="private"):
        verify_proof(_forge(key, {"jwk": private}), "GET", "https://rs.example/mcp",
                     now=1700000000)
    other = DPoPKey.generate()
    with pytest.raises(DPoPProofError, match="signature"):
        verify_proof(_forge(key, {"jwk": other.public_jwk()}), "GET",
                     "https://rs.example/mcp", now=1700000000)
    with pytest.raises(DPoPProofError) as info:
        verify_proof(good, "GET", "https://rs.example/mcp", now=1700000000, nonce="n")
    assert info.value.error == "use_dpop_nonce"
    with pytest.raises(DPoPProofError) as info:
        verify_proof(good, "GET", "https://rs.example/mcp", now=1700000000,
                     jkt=other.thumbprint)
    assert info.value.error == "invalid_token"
    unsigned = jws.b64url_encode(b'{"typ":"dpop+jwt","alg":"none"}') + "." + p + "."
    for bad in (unsigned, "x.y.z", None, 42):
        with pytest.raises(DPoPProofError):
            verify_proof(bad, "GET", "https://rs.example/mcp", now=1700000000)


def test_nonce_store_is_per_origin_and_replaced():
    store = NonceStore()
    assert store.remember("https://a.example/token", "n1")
    assert store.get("https://A.example:443/other") == "n1"
    assert store.get("https://a.example:8443/token") is None
    assert store.get("http://a.example/token") is None
    assert not store.remember("https://a.example/x", "n1")
    assert store.remember("https://a.example/x", "n2")
    assert store.get("https://a.example/") == "n2"
    for bad in (None, "", 'a"b', "a\nb", 7):
        assert not store.remember("https://a.example/", bad)
    assert store.get("https://a.example/") == "n2"


# -- providers against the loopback servers ---------------------------------------------------

def rpc(session, url, method="tools/list", msg_id=1, params=None):
    return stateless_rpc(session, url, method, params, msg_id)


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def provider(stack, **kw):
    kw.setdefault("dpop_key", DPoPKey.generate())
    return ClientCredentialsProvider(stack.client_id, stack.client_secret, **kw)


def test_token_and_resource_requests_carry_proofs(stack, session):
    session.auth = p = provider(stack)
    for i in range(2):
        assert rpc(session, stack.mcp_url, msg_id=i).status_code == 200
    (token_request,) = stack.as_.token_requests()
    header, claims = parts(token_request.headers["DPoP"])
    assert header["jwk"] == p.dpop_key.public_jwk() and claims["htm"] == "POST"
    assert claims["htu"] == stack.as_.token_endpoint and "ath" not in claims
    (issued,) = stack.as_.issued_tokens()
    assert issued["cnf"] == {"jkt": p.dpop_key.thumbprint}
    sent = [r for r in stack.mcp.mcp_requests() if r.status == 200]
    assert len(sent) == 2
    jtis = set()
    for record in sent:
        scheme, _, token = record.headers["Authorization"].partition(" ")
        assert scheme == "DPoP"
        claims = record.info["dpop_claims"]
        assert claims["ath"] == access_token_hash(token)
        assert claims["htu"] == stack.mcp_url and claims["htm"] == "POST"
        jtis.add(claims["jti"])
    assert len(jtis) == 2


def test_proof_matches_the_url_actually_sent(stack, session):
    session.auth = provider(stack)
    r = session.post(stack.mcp_url + "?trace=1", json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}},
        headers={"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28",
                 "Mcp-Method": "tools/list"})
    assert r.status_code == 200
    assert parts(r.request.headers["DPoP"])[1]["htu"] == stack.mcp_url


def test_bearer_answer_is_refused_unless_allowed(stack, session):
    stack.as_.dpop_token_type = "Bearer"
    session.auth = provider(stack)
    with pytest.raises(TokenResponseError, match="Bearer"):
        rpc(session, stack.mcp_url)
    session.auth = provider(stack, dpop_accept_bearer=True)
    r = rpc(session, stack.mcp_url)
    assert r.status_code == 200
    assert r.request.headers["Authorization"].startswith("Bearer ")
    assert "DPoP" not in r.request.headers
    assert "cnf" not in stack.as_.issued_tokens()[-1]


def test_dpop_bound_token_sent_as_bearer_is_refused(stack, session):
    p = provider(stack, server_url=stack.mcp_url)
    token = p.token()
    r = session.post(stack.mcp_url, headers={"Authorization": "Bearer " + token})
    assert r.status_code == 401 and "DPoP" in r.headers["WWW-Authenticate"]


def test_test_server_refuses_a_replayed_proof(stack, session):
    p = provider(stack, server_url=stack.mcp_url)
    token = p.token()
    proof = p.dpop_key.proof("POST", stack.mcp_url, token)
    headers = {"Authorization": "DPoP " + token, "DPoP": proof, "Accept": ACCEPT,
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    assert session.post(stack.mcp_url, json=body, headers=headers).status_code == 200
    again = session.post(stack.mcp_url, json=body, headers=headers)
    assert again.status_code == 401 and "invalid_dpop_proof" in again.headers["WWW-Authenticate"]
    other = DPoPKey.generate()
    headers["DPoP"] = other.proof("POST", stack.mcp_url, token)          # another key
    assert session.post(stack.mcp_url, json=body, headers=headers).status_code == 401


def test_authorization_server_nonce_is_retried_once_and_followed(stack, session):
    stack.as_.dpop.nonce = "as-1"
    stack.as_.dpop.rotate_nonce = True
    session.auth = p = provider(stack)
    assert rpc(session, stack.mcp_url).status_code == 200
    stack.as_.revoke()
    assert rpc(session, stack.mcp_url, msg_id=2).status_code == 200
    # 400 use_dpop_nonce, then 200; the second token request already used the nonce the
    # 200 announced (RFC 9449 §8.2), so no second 400.
    assert [r.status for r in stack.as_.token_requests()] == [400, 200, 200]
    nonces = [parts(r.headers["DPoP"])[1].get("nonce") for r in stack.as_.token_requests()]
    assert nonces[0] is None and nonces[1] == "as-1" and nonces[2] not in (None, "as-1")
    assert p.dpop_key is not None


def test_authorization_server_nonce_is_not_retried_twice(stack):
    stack.as_.dpop.nonce = "as-1"
    p = provider(stack, server_url=stack.mcp_url)
    stack.as_.dpop.rotate_nonce = False
    stack.as_.fail_next("use_dpop_nonce", 400)       # no DPoP-Nonce header: no retry
    from mcpauth import OAuthError
    with pytest.raises(OAuthError) as info:
        p.token()
    assert info.value.error == "use_dpop_nonce"
    assert len(stack.as_.token_requests()) == 1


def test_resource_server_nonce_retry_is_not_the_401_replay(stack, session):
    stack.mcp.dpop.nonce = "rs-1"
    session.auth = provider(stack)
    r = rpc(session, stack.mcp_url)
    assert r.status_code == 200
    # cold 401 (no token), token, replay -> 401 use_dpop_nonce, nonce retry -> 200
    assert [m.status for m in stack.mcp.mcp_requests()] == [401, 401, 200]
    # The token is then refused (revoked) and the nonce changes: 401 invalid_token ->
    # new token -> replay with the old nonce -> 401 use_dpop_nonce -> retry -> 200.
    stack.as_.revoke()
    stack.mcp.dpop.nonce = "rs-2"
    r = rpc(session, stack.mcp_url, msg_id=2)
    assert r.status_code == 200
    assert [m.status for m in stack.mcp.mcp_requests()][3:] == [401, 401, 200]
    assert stack.mcp.mcp_requests()[-1].info["dpop_claims"]["nonce"] == "rs-2"
    assert len(stack.as_.token_requests()) == 2


def test_resource_server_nonce_loop_stops(stack, session):
    stack.mcp.dpop.nonce = "rs-1"
    stack.mcp.dpop.rotate_nonce = True       # each accepted proof changes it, silently
    session.auth = provider(stack)
    assert rpc(session, stack.mcp_url).status_code == 200
    stack.mcp.dpop.nonce = "stuck"
    stack.mcp.dpop.rotate_nonce = False
    assert rpc(session, stack.mcp_url, msg_id=2).status_code == 200
    statuses = [m.status for m in stack.mcp.mcp_requests()]
    assert statuses[-2:] == [401, 200]


def test_step_up_replay_has_its_own_proof(session):
    with LoopbackStack(mcp_options={"required_scope": "mcp:write",
                                    "challenge_scope": "mcp:basic"}) as stack:
        session.auth = provider(stack)
        assert rpc(session, stack.mcp_url).status_code == 200
        r = rpc(session, stack.mcp_url, "tools/call", 2, {"name": "whoami", "arguments": {}})
        assert r.status_code == 200 and [h.status_code for h in r.history] == [403]
        last = stack.mcp.mcp_requests()[-1]
        assert last.headers["Authorization"].startswith("DPoP ")
        assert last.info["dpop_claims"]["ath"] == access_token_hash(
            last.headers["Authorization"][5:])


def test_prm_requiring_dpop_needs_a_key(session):
    with LoopbackStack() as stack:
        stack.mcp.prm_override = {"dpop_bound_access_tokens_required": True}
        session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        with pytest.raises(ConfigurationError, match="dpop_bound_access_tokens_required"):
            rpc(session, stack.mcp_url)
        assert stack.as_.token_requests() == []                      # nothing was sent
        session.auth = provider(stack)
        assert rpc(session, stack.mcp_url).status_code == 200


def test_algorithm_follows_the_authorization_server(stack, session):
    stack.as_.dpop_signing_algs = ["RS256"]
    rsa = jws.generate_private_key("RSA")
    session.auth = provider(stack, dpop_key=rsa)
    assert rpc(session, stack.mcp_url).status_code == 200
    assert parts(stack.as_.token_requests()[0].headers["DPoP"])[0]["alg"] == "RS256"
    assert parts(stack.mcp.mcp_requests()[-1].headers["DPoP"])[0]["alg"] == "RS256"
    stack.as_.dpop_signing_algs = ["EdDSA"]
    with LoopbackStack(as_options={}) as other:
        other.as_.dpop_signing_algs = ["EdDSA"]
        with requests.Session() as s:
            s.auth = provider(other, dpop_key=DPoPKey.generate("ES256"))
            with pytest.raises(ConfigurationError, match="EdDSA"):
                rpc(s, other.mcp_url)


def test_dpop_key_true_generates_one():
    with LoopbackStack() as stack:
        p = provider(stack, dpop_key=True, server_url=stack.mcp_url)
        assert p.dpop_key is not None and p.dpop_key.algorithm == "ES256"
        p.token()
        assert stack.as_.issued_tokens()[0]["cnf"]["jkt"] == p.dpop_key.thumbprint


def test_client_key_is_not_the_dpop_key_unless_asked(stack, session):
    client_key = jws.generate_private_key("EC")
    stack.as_.register_client("jwt-client", public_jwk=client_key.public_jwk())
    with pytest.raises(ConfigurationError, match="client authentication key"):
        PrivateKeyJwtProvider("jwt-client", client_key, dpop_key=client_key)
    same = PrivateKeyJwtProvider("jwt-client", client_key, dpop_key=client_key,
                                 dpop_reuse_client_key=True)
    assert same.dpop_key.thumbprint == client_key.thumbprint()
    session.auth = p = PrivateKeyJwtProvider("jwt-client", client_key,
                                             dpop_key=DPoPKey.generate("EdDSA"))
    assert rpc(session, stack.mcp_url).status_code == 200
    assert stack.as_.token_requests()[0].info["auth_method"] == "private_key_jwt"
    assert stack.as_.issued_tokens()[0]["cnf"]["jkt"] == p.dpop_key.thumbprint


def test_file_cache_keys_tokens_by_thumbprint(stack, tmp_path):
    path = str(tmp_path / "tokens.json")
    key_a = jws.generate_private_key("EC")
    first = provider(stack, dpop_key=key_a, cache=FileTokenCache(path),
                     server_url=stack.mcp_url)
    token = first.token()
    again = provider(stack, dpop_key=DPoPKey(key_a), cache=FileTokenCache(path),
                     server_url=stack.mcp_url)
    assert again.token() == token                                     # same key: reused
    other = provider(stack, dpop_key=DPoPKey.generate(), cache=FileTokenCache(path),
                     server_url=stack.mcp_url)
    assert other.token() != token                                     # another key: never
    plain = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                      cache=FileTokenCache(path), server_url=stack.mcp_url)
    assert plain.token() not in (token, other.token())                # no key: never
    assert len(stack.as_.token_requests()) == 3
    with open(path) as f:
        text = f.read()
    private_d = jws.b64url_encode(key_a._key.private_numbers().private_value.to_bytes(
        32, "big"))
    assert private_d not in text and key_a.thumbprint() in text
    json.loads(text)


def test_unbound_token_after_a_refused_bearer_answer_is_not_retried(stack, session):
    stack.as_.dpop_token_type = "Bearer"
    session.auth = provider(stack)
    with pytest.raises(TokenResponseError):
        rpc(session, stack.mcp_url)
    assert len(stack.as_.token_requests()) == 1
    assert not isinstance(TokenResponseError("x"), UnauthorizedError)


# -- the command ---------------------------------------------------------------------------

def _clean_env(monkeypatch):
    import os
    for name in list(os.environ):
        if name.startswith("MCPAUTH_"):
            monkeypatch.delenv(name)


def test_command_dpop_key_file_and_variable(stack, tmp_path, monkeypatch):
    import io
    from mcpauth import cli
    _clean_env(monkeypatch)
    key = jws.generate_private_key("EC")
    path = tmp_path / "dpop.jwk"
    jwk = dict(key.public_jwk(), d=jws.b64url_encode(
        key._key.private_numbers().private_value.to_bytes(32, "big")))
    path.write_text(json.dumps(jwk))
    monkeypatch.setenv("MCPAUTH_CLIENT_ID", stack.client_id)
    monkeypatch.setenv("MCPAUTH_CLIENT_SECRET", stack.client_secret)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["token", stack.mcp_url, "--dpop-key-file", str(path)], out, err) == 0, \
        err.getvalue()
    assert stack.as_.introspect(out.getvalue().strip())["cnf"] == {"jkt": key.thumbprint()}
    monkeypatch.setenv("MCPAUTH_DPOP_KEY_FILE", str(path))
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["token", stack.mcp_url], out, err) == 0, err.getvalue()
    assert stack.as_.introspect(out.getvalue().strip())["cnf"] == {"jkt": key.thumbprint()}
    assert jwk["d"] not in err.getvalue()
    path.write_text("not a key")
    err = io.StringIO()
    assert cli.main(["token", stack.mcp_url], io.StringIO(), err) == cli.EXIT_USAGE
    assert "MCPAUTH_DPOP_KEY_FILE" in err.getvalue()
    path.write_text(json.dumps(jwk))
    monkeypatch.delenv("MCPAUTH_CLIENT_SECRET")
    monkeypatch.setenv("MCPAUTH_TOKEN", "tok")
    err = io.StringIO()
    assert cli.main(["token", stack.mcp_url], io.StringIO(), err) == cli.EXIT_USAGE
    assert "--token-file" in err.getvalue()


def test_bearer_token_provider_presents_a_bound_token_of_your_own(stack, session):
    from mcpauth import BearerTokenProvider
    key = DPoPKey.generate()
    token = stack.as_.issue_token(stack.client_id, resource=stack.mcp.resource,
                                  jkt=key.thumbprint)
    stack.mcp.dpop.nonce = "rs-1"
    session.auth = BearerTokenProvider(token, dpop_key=key)
    r = rpc(session, stack.mcp_url)
    assert r.status_code == 200
    assert [m.status for m in stack.mcp.mcp_requests()] == [401, 200]     # nonce retry
    assert r.request.headers["Authorization"] == "DPoP " + token
    session.auth = BearerTokenProvider(token)                             # no key: refused
    with pytest.raises(UnauthorizedError):
        rpc(session, stack.mcp_url, msg_id=2)
    session.auth = BearerTokenProvider(token, dpop_key=DPoPKey.generate())  # wrong key
    with pytest.raises(UnauthorizedError):
        rpc(session, stack.mcp_url, msg_id=3)


# -- fuzz: any input gets the documented error ----------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

ANY = st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.lists(st.text()),
                st.dictionaries(st.text(), st.text()))


@settings(max_examples=200, deadline=None)
@given(proof=st.one_of(ANY, st.builds(lambda a, b, c: ".".join((a, b, c)),
                                      st.text(), st.text(), st.text())),
       method=st.text(), url=st.text())
def test_verify_proof_raises_only_its_error(proof, method, url):
    with pytest.raises(DPoPProofError):
        verify_proof(proof, method, url)


@settings(max_examples=200, deadline=None)
@given(value=ANY)
def test_htu_nonce_store_and_key_loading_take_any_input(value):
    try:
        htu_of(value)
    except ConfigurationError:
        pass
    store = NonceStore()
    store.remember("https://a.example/", value)
    assert store.get("https://a.example/") in (None, value)
    try:
        DPoPKey(value)
    except ConfigurationError:
        pass


@settings(max_examples=100, deadline=None)
@given(method=ANY, url=ANY, token=ANY, nonce=ANY)
def test_proof_arguments_are_checked(key, method, url, token, nonce):
    try:
        proof = key.proof(method, url, token, nonce)
    except ConfigurationError:
        return
    verify_proof(proof, method, url, access_token=token, nonce=nonce)


# -- content_digest (SEP-1932), PRM algorithms, bounded nonce retries ------------------------

def test_content_digest_vector_and_claim(key):
    from mcpauth.dpop import content_digest
    body = b'{"jsonrpc":"2.0","method":"tools/list","id":1}'
    assert content_digest(body) == "sha-256=:pxujFJZ8BH/qCc88lZtf1b46yTddP/2ToG0EmC/Qp6k=:"
    assert content_digest(b'{"hello": "world"}') == \
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    proof = key.proof("POST", "https://rs.example/mcp", "t", body=body)
    verify_proof(proof, "POST", "https://rs.example/mcp", access_token="t", body=body)
    with pytest.raises(DPoPProofError, match="content_digest"):
        verify_proof(proof, "POST", "https://rs.example/mcp", access_token="t", body=b"{}")
    with pytest.raises(DPoPProofError, match="content_digest"):
        verify_proof(key.proof("POST", "https://rs.example/mcp", "t"), "POST",
                     "https://rs.example/mcp", access_token="t", body=body)


def test_resource_proofs_carry_the_body_digest(stack, session):
    stack.mcp.dpop.require_content_digest = True
    session.auth = provider(stack)
    r = rpc(session, stack.mcp_url)
    assert r.status_code == 200
    record = stack.mcp.mcp_requests()[-1]
    from mcpauth.dpop import content_digest
    assert record.info["dpop_claims"]["content_digest"] == content_digest(record.body)
    token_proof = parts(stack.as_.token_requests()[0].headers["DPoP"])[1]
    assert "content_digest" not in token_proof                    # never at the AS


def test_prm_algorithms_when_the_authorization_server_lists_none(stack, session):
    stack.mcp.prm_override = {"dpop_signing_alg_values_supported": ["EdDSA"]}
    session.auth = provider(stack, dpop_key=jws.generate_private_key("OKP"))
    assert rpc(session, stack.mcp_url).status_code == 200
    assert parts(stack.as_.token_requests()[0].headers["DPoP"])[0]["alg"] == "EdDSA"
    with LoopbackStack() as other, requests.Session() as s:
        other.mcp.prm_override = {"dpop_signing_alg_values_supported": ["EdDSA"]}
        s.auth = provider(other, dpop_key=DPoPKey.generate("ES256"))
        with pytest.raises(ConfigurationError, match="EdDSA"):
            rpc(s, other.mcp_url)


def test_a_server_that_always_wants_a_new_nonce_gets_bounded_retries(stack, session):
    session.auth = provider(stack)
    assert rpc(session, stack.mcp_url).status_code == 200
    before = len(stack.mcp.mcp_requests())

    refusals = []

    def refuse(record, url, access_token=None, jkt=None, body=None):
        # every DPoP request is refused, with a nonce never seen before
        refusals.append(record)
        stack.mcp.dpop.nonce = "n-%d" % len(refusals)
        raise DPoPProofError("nonce", "use_dpop_nonce")

    stack.mcp.dpop.check = refuse
    with pytest.raises(UnauthorizedError):
        rpc(session, stack.mcp_url, msg_id=2)
    # one nonce retry, the single 401 replay with a new token, its one nonce retry: 4
    assert len(stack.mcp.mcp_requests()) - before == 4


@pytest.mark.parametrize("kind", ["EC", "RSA"])
def test_client_key_given_as_pem_is_not_the_dpop_key_unless_asked(kind):
    # A PEM key is loaded only before its first signature; the RFC 9449 §11.5 check must
    # still recognise it as the client key at construction.
    from cryptography.hazmat.primitives import serialization

    key = jws.generate_private_key(kind)
    pem = key._key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    with pytest.raises(ConfigurationError, match="client authentication key"):
        PrivateKeyJwtProvider("jwt-client", pem, dpop_key=pem)
    same = PrivateKeyJwtProvider("jwt-client", pem, dpop_key=pem,
                                 dpop_reuse_client_key=True)
    assert same.dpop_key.thumbprint == key.thumbprint()
