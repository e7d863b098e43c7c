"""DPoP (RFC 9449) against independently written peers on loopback.

The authorization server is oidc-provider with its DPoP feature on (as.mjs); the resource
server (dpop_rs.mjs) is written on ``jose`` and verifies the access token against the AS
JWKS and every RFC 9449 §4.3 rule of the proof, including that the proof key's thumbprint
is the token's ``cnf.jkt``. mcpauth is used through its public API only. Covered: client
credentials + DPoP with client_secret_basic and with private_key_jwt (ES256 client key,
EdDSA DPoP key), both servers' nonces (§8, §9), the PRM's
``dpop_bound_access_tokens_required``, and a token presented with another key.
"""

from typing import Any, Dict

import pytest
import requests

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py
from mcpauth import (
    BearerTokenProvider,
    ClientCredentialsProvider,
    ConfigurationError,
    PrivateKeyJwtProvider,
    UnauthorizedError,
)

SECRET = "dpop-secret"


@pytest.fixture(scope="module")
def client_key() -> Any:
    pytest.importorskip("cryptography")
    from mcpauth.jws import generate_private_key

    return generate_private_key("EC")


def _clients(client_key: Any) -> Any:
    from mcpauth.jws import jwk_thumbprint

    public = dict(client_key.public_jwk(), alg="ES256", use="sig",
                  kid=jwk_thumbprint(client_key))
    return [peers_mod.secret_client("dpop-basic", SECRET),
            peers_mod.jwt_client("dpop-jwt", [public])]


@pytest.fixture(scope="module")
def peers(tmp_path_factory: Any, client_key: Any) -> Any:
    with peers_mod.start_peers(tmp_path_factory.mktemp("dpop"), _clients(client_key),
                               dpop="on") as running:
        yield running


@pytest.fixture(scope="module")
def nonce_peers(tmp_path_factory: Any, client_key: Any) -> Any:
    with peers_mod.start_peers(tmp_path_factory.mktemp("dpop-nonce"), _clients(client_key),
                               dpop="nonce") as running:
        yield running


def call(provider: Any, url: str) -> Dict[str, Any]:
    with requests.Session() as session:
        session.auth = provider
        reply = session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


def token_requests(peers: Any) -> Any:
    return [r for r in peers_mod.settled_log(peers.as_requests) if r["path"] == "/token"]


def test_client_secret_with_dpop(peers: Any) -> None:
    from mcpauth.dpop import DPoPKey
    from mcpauth.jws import decode_unverified

    key = DPoPKey.generate()
    provider = ClientCredentialsProvider("dpop-basic", SECRET, dpop_key=key)
    for _ in range(2):
        answer = call(provider, peers.mcp_url)
        assert answer["jkt"] == key.thumbprint and answer["alg"] == "ES256"
    claims = decode_unverified(provider.token(peers.mcp_url))[1]
    assert claims["cnf"] == {"jkt": key.thumbprint} and claims["aud"] == peers.mcp_url
    (request,) = [r for r in token_requests(peers) if r.get("client_id") == "dpop-basic"]
    assert request["status"] == 200 and request["dpop"]["header"]["typ"] == "dpop+jwt"
    assert request["dpop"]["claims"]["htu"] == peers.token_endpoint
    served = [r for r in peers_mod.settled_log(peers.mcp_requests)
              if r.get("status") == 200 and r.get("jkt") == key.thumbprint]
    assert len(served) == 2


def test_private_key_jwt_with_an_eddsa_dpop_key(peers: Any, client_key: Any) -> None:
    from mcpauth.dpop import DPoPKey

    key = DPoPKey.generate("EdDSA")
    provider = PrivateKeyJwtProvider("dpop-jwt", client_key, dpop_key=key)
    answer = call(provider, peers.mcp_url)
    assert answer == {"ok": True, "client_id": "dpop-jwt", "jkt": key.thumbprint,
                      "alg": "EdDSA"}
    request = [r for r in token_requests(peers) if r.get("client_id") == "dpop-jwt"][-1]
    assert request["client_auth_method"] == "private_key_jwt"
    assert request["dpop"]["header"]["alg"] == "EdDSA"


def test_both_servers_nonces(nonce_peers: Any) -> None:
    from mcpauth.dpop import DPoPKey

    key = DPoPKey.generate()
    provider = ClientCredentialsProvider("dpop-basic", SECRET, dpop_key=key)
    assert call(provider, nonce_peers.mcp_url)["jkt"] == key.thumbprint
    statuses = [(r["status"], r.get("error")) for r in token_requests(nonce_peers)]
    assert statuses == [(400, "use_dpop_nonce"), (200, None)]
    rs = [(r["status"], r.get("error")) for r in peers_mod.settled_log(
        nonce_peers.mcp_requests) if r["method"] == "POST"]
    # cold (no token) 401, the token's first use 401 use_dpop_nonce, then 200
    assert rs == [(401, None), (401, "use_dpop_nonce"), (200, None)]


def test_dpop_required_by_the_resource_and_bound_to_the_key(peers: Any) -> None:
    from mcpauth.dpop import DPoPKey

    with pytest.raises(ConfigurationError, match="dpop_bound_access_tokens_required"):
        call(ClientCredentialsProvider("dpop-basic", SECRET), peers.mcp_url)
    token = ClientCredentialsProvider("dpop-basic", SECRET, dpop_key=DPoPKey.generate(),
                                      server_url=peers.mcp_url).token()
    with pytest.raises(UnauthorizedError):
        call(BearerTokenProvider(token, dpop_key=DPoPKey.generate()), peers.mcp_url)
    refused = peers_mod.settled_log(peers.mcp_requests)[-1]
    assert refused["status"] == 401 and "cnf.jkt" in refused["error_description"]
