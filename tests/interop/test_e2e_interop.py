"""mcpauth end to end against independently written servers on loopback.

The peers (tests/interop/peers.py) are an OAuth 2.0 authorization server built on
oidc-provider and an MCP server built with the official TypeScript SDK, behind the SDK's
``requireBearerAuth`` with protected resource metadata (RFC 9728). mcpauth is used only
through its public API, as a user would: a provider plus :class:`mcpauth.MCPClient`.

Covered: the client credentials grant (RFC 6749 §4.4) with client_secret_basic and
client_secret_post (§2.3.1) and with private_key_jwt (RFC 7523 §2.2, RS256 and ES256),
RFC 8707 resource indicators, discovery (RFC 9728, RFC 8414) pinned with
``expected_issuer``, and MCP initialize / tools/list / tools/call (the SDK 1.x server,
sessionless, SSE replies). And the negative: a pin that does not match refuses before any
request reaches the authorization server. The MCP wire itself (both SDK generations,
sessions, fallback) is covered by test_client_interop.py.

Skipped when the Node peers are not installed (tests/interop/install.sh), failing instead
when ``MCPAUTH_REQUIRE_NODE=1`` (as in the tox ``interop`` env).
"""

import json
from typing import Any, Dict, List, Tuple

import pytest

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py
from mcpauth import (
    AuthorizationServerMismatchError,
    ClientCredentialsProvider,
    MCPClient,
    PrivateKeyJwtProvider,
)

# A secret that Basic auth only carries intact when form-urlencoded first (RFC 6749 §2.3.1);
# oidc-provider decodes it, so a client that skips the encoding is refused.
BASIC_SECRET = "s3cr3t:+/ &="
POST_SECRET = "post-secret"
JWT_TYP = "client-authentication+jwt"
LEGACY_WIRE = "2025-11-25"
TOOLS = ["add", "echo", "poll", "whoami"]


@pytest.fixture(scope="module")
def keys() -> Dict[str, Any]:
    pytest.importorskip("cryptography")
    from mcpauth.jws import generate_private_key

    return {"RS256": generate_private_key("RSA"), "ES256": generate_private_key("EC")}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: Any, keys: Dict[str, Any]) -> Any:
    from mcpauth.jws import jwk_thumbprint

    def jwk(alg: str) -> Dict[str, Any]:
        public = dict(keys[alg].public_jwk())
        public.update(alg=alg, use="sig", kid=jwk_thumbprint(keys[alg]))
        return public

    clients = [
        peers_mod.secret_client("basic-client", BASIC_SECRET, "client_secret_basic"),
        peers_mod.secret_client("post-client", POST_SECRET, "client_secret_post"),
        peers_mod.jwt_client("rs-client", [jwk("RS256")],
                             token_endpoint_auth_signing_alg="RS256"),
        peers_mod.jwt_client("es-client", [jwk("ES256")],
                             token_endpoint_auth_signing_alg="ES256"),
    ]
    running = peers_mod.start_peers(tmp_path_factory.mktemp("interop"), clients)
    yield running
    running.stop()


def token_requests(peers: Any, since: int = 0) -> List[Dict[str, Any]]:
    entries = peers_mod.settled_log(peers.as_requests,
                                    lambda e: any(r.get("path") == "/token" for r in e[since:]))
    return [r for r in entries[since:] if r.get("path") == "/token"]


def log_sizes(peers: Any) -> Tuple[int, int]:
    """How many requests each peer has logged, late lines of earlier tests included."""
    as_log = peers_mod.settled_log(peers.as_requests)
    return len(as_log), len(peers_mod.settled_log(peers.mcp_requests))


def use_tools(client: Any) -> Dict[str, Any]:
    """What a user's job does: list the tools, call each one; return what came back."""
    info = client.connect()
    names = sorted(t["name"] for t in client.list_tools())
    echo = client.call_tool("echo", {"message": "hi"})
    add = client.call_tool("add", {"a": 2, "b": 3})
    whoami = client.call_tool("whoami", {})
    for result in (echo, add, whoami):
        assert not result.get("isError"), result
    return {
        "info": info, "protocol_version": client.protocol_version, "tools": names,
        "echo": echo["content"][0]["text"], "add": add["content"][0]["text"],
        "claims": json.loads(whoami["content"][0]["text"]),
    }


def check_session(peers: Any, facts: Dict[str, Any], client_id: str, since: int) -> None:
    assert facts["protocol_version"] == LEGACY_WIRE  # the SDK server speaks 2025-11-25
    assert facts["tools"] == TOOLS
    assert (facts["echo"], facts["add"]) == ("hi", "5")
    # The token the SDK server verified is oidc-provider's RFC 9068 JWT for this client,
    # bound to the MCP server by RFC 8707.
    claims = facts["claims"]
    assert claims["client_id"] == client_id
    assert claims["aud"] == peers.mcp_url
    assert claims["iss"] == peers.issuer
    def mine(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return [r for r in entries[since:] if r.get("client_id") == client_id]

    def done(entries: List[Dict[str, Any]]) -> bool:
        return sum(r.get("rpc_method") == "tools/call" for r in mine(entries)) >= 3

    calls = mine(peers_mod.settled_log(peers.mcp_requests, done))
    assert [r["rpc_method"] for r in calls if r.get("rpc_method") == "tools/call"] == [
        "tools/call"] * 3
    assert all(r["status"] in (200, 202) for r in calls), calls
    assert all(r["authorization_scheme"] == "Bearer" for r in calls)


@pytest.mark.parametrize("client_id,secret,method", [
    ("basic-client", BASIC_SECRET, None),  # chosen from the metadata: basic is listed first
    ("post-client", POST_SECRET, "client_secret_post"),
], ids=["client_secret_basic", "client_secret_post"])
def test_client_secret(peers: Any, client_id: str, secret: str, method: Any) -> None:
    before, mcp_before = log_sizes(peers)
    provider = ClientCredentialsProvider(client_id, secret, expected_issuer=peers.issuer,
                                         token_endpoint_auth_method=method)
    with MCPClient(peers.mcp_url, auth=provider, protocol_version=LEGACY_WIRE) as client:
        facts = use_tools(client)
    check_session(peers, facts, client_id, mcp_before)
    (token,) = token_requests(peers, before)  # one token for the whole session
    assert token["status"] == 200
    assert token["grant_type"] == "client_credentials"
    assert token["client_auth_method"] == (method or "client_secret_basic")
    assert token["resource"] == peers.mcp_url


@pytest.mark.parametrize("alg,client_id", [("RS256", "rs-client"), ("ES256", "es-client")])
def test_private_key_jwt(peers: Any, keys: Dict[str, Any], alg: str, client_id: str) -> None:
    from mcpauth.jws import jwk_thumbprint

    before, mcp_before = log_sizes(peers)
    provider = PrivateKeyJwtProvider(client_id, keys[alg], alg, expected_issuer=peers.issuer,
                                     key_id=jwk_thumbprint(keys[alg]))
    with MCPClient(peers.mcp_url, auth=provider, protocol_version=LEGACY_WIRE) as client:
        facts = use_tools(client)
    check_session(peers, facts, client_id, mcp_before)
    (token,) = token_requests(peers, before)
    assert token["status"] == 200
    assert token["client_auth_method"] == "private_key_jwt"
    assert token["resource"] == peers.mcp_url
    header = token["client_assertion"]["header"]
    claims = token["client_assertion"]["claims"]
    assert (header["alg"], header["typ"], header["kid"]) == (alg, JWT_TYP,
                                                             jwk_thumbprint(keys[alg]))
    # RFC 7523bis: the audience is the issuer; oidc-provider verified the signature
    # (for ES256 that means a JOSE R||S signature, not DER).
    assert claims["aud"] == peers.issuer
    assert claims["iss"] == claims["sub"] == client_id


def test_wrong_expected_issuer_sends_nothing_to_the_authorization_server(peers: Any) -> None:
    before = len(peers_mod.settled_log(peers.as_requests))
    provider = ClientCredentialsProvider("basic-client", BASIC_SECRET,
                                         expected_issuer="http://127.0.0.1:9/elsewhere")
    with pytest.raises(AuthorizationServerMismatchError) as info:
        with MCPClient(peers.mcp_url, auth=provider, protocol_version=LEGACY_WIRE) as client:
            client.list_tools()
    assert BASIC_SECRET not in str(info.value) and BASIC_SECRET not in repr(info.value)
    # Refused from the protected resource metadata alone: no metadata fetch, no token
    # request, so the secret never left the process. (Give a late log line time to land.)
    entries = peers_mod.settled_log(peers.as_requests, lambda e: len(e) > before, timeout=0.5)
    assert entries[before:] == []
