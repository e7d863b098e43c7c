"""Smoke tests for the interop peers, driven with plain ``requests`` (no mcpauth code).

They prove the peers behave as mcpauth's interop tests assume: RFC 8414 / OIDC discovery,
client_credentials (RFC 6749 §4.4) with client_secret_basic/post (§2.3.1) and
private_key_jwt (RFC 7523 §2.2, RS256 and ES256), RFC 8707 resource-bound JWT access tokens
(RFC 9068), the MCP server's 401 + ``resource_metadata`` (RFC 9728 §5.1) and its protected
resource metadata (RFC 9728 §3), and MCP initialize / tools/list / tools/call over
Streamable HTTP (SSE and JSON replies, sessionless and stateful); and that the SDK 2.x
peer speaks the stateless 2026-07-28 wire (SEP-2575 ``_meta``, SEP-2243 headers) next to
its stateless 2025 fallback.

Skipped when the Node peers are not installed (tests/interop/install.sh), failing instead
when ``MCPAUTH_REQUIRE_NODE=1``.
"""

import base64
import json
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote_plus

import pytest
import requests

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCEPT = "application/json, text/event-stream"
BASIC_SECRET = "s3cr3t:+/ &="  # needs form-urlencoding in Basic (RFC 6749 §2.3.1)
TIMEOUT = 10


# --- key and JWS helpers (cryptography used directly, not mcpauth) -------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_bytes(value: int, length: Optional[int] = None) -> bytes:
    size = length if length is not None else (value.bit_length() + 7) // 8
    return value.to_bytes(size, "big")


class Key(object):
    def __init__(self, alg: str) -> None:
        from cryptography.hazmat.backends import default_backend
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        self.alg = alg
        self.kid = alg.lower() + "-" + uuid.uuid4().hex[:8]
        if alg == "RS256":
            self.private = rsa.generate_private_key(65537, 2048, default_backend())
            numbers = self.private.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "n": b64url(int_bytes(numbers.n)),
                        "e": b64url(int_bytes(numbers.e))}  # type: Dict[str, str]
        else:
            self.private = ec.generate_private_key(ec.SECP256R1(), default_backend())
            numbers = self.private.public_key().public_numbers()
            self.jwk = {"kty": "EC", "crv": "P-256", "x": b64url(int_bytes(numbers.x, 32)),
                        "y": b64url(int_bytes(numbers.y, 32))}
        self.jwk.update({"kid": self.kid, "alg": alg, "use": "sig"})

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        if self.alg == "RS256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return int_bytes(r, 32) + int_bytes(s, 32)  # JOSE raw r||s (RFC 7518 §3.4)


def assertion(key: Key, client_id: str, aud: Any, typ: Optional[str] = "client-authentication+jwt",
              **claims: Any) -> str:
    """RFC 7523 §3 client assertion; ``claims`` override the defaults, None drops one."""
    header = {"alg": key.alg, "kid": key.kid}  # type: Dict[str, Any]
    if typ is not None:
        header["typ"] = typ
    now = int(time.time())
    payload = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
               "jti": uuid.uuid4().hex}  # type: Dict[str, Any]
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(payload).encode()))
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")))


def jwt_parts(token: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


# --- MCP helpers ---------------------------------------------------------------------------

def rpc_messages(response: requests.Response) -> List[Dict[str, Any]]:
    ctype = response.headers.get("Content-Type", "")
    if ctype.startswith("text/event-stream"):
        return [json.loads(line[len("data:"):].strip())
                for line in response.text.splitlines() if line.startswith("data:")]
    return [response.json()]


def rpc(url: str, token: str, method: str, params: Optional[Dict[str, Any]] = None,
        id_: Optional[int] = 1, headers: Optional[Dict[str, str]] = None) -> requests.Response:
    body = {"jsonrpc": "2.0", "method": method}  # type: Dict[str, Any]
    if params is not None:
        body["params"] = params
    if id_ is not None:
        body["id"] = id_
    all_headers = {"Accept": ACCEPT, "Content-Type": "application/json",
                   "Authorization": "Bearer " + token}
    all_headers.update(headers or {})
    return requests.post(url, json=body, headers=all_headers, timeout=TIMEOUT)


def initialize(url: str, token: str) -> Tuple[requests.Response, Dict[str, Any]]:
    response = rpc(url, token, "initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "peers-smoke", "version": "0"}})
    assert response.status_code == 200, response.text
    (message,) = rpc_messages(response)
    return response, message


def run_mcp_session(url: str, token: str) -> Dict[str, Any]:
    """initialize, initialized, tools/list, tools/call x3; return facts for assertions."""
    response, init = initialize(url, token)
    version = init["result"]["protocolVersion"]
    headers = {"MCP-Protocol-Version": version}
    session = response.headers.get("Mcp-Session-Id")
    if session:
        headers["Mcp-Session-Id"] = session
    notified = rpc(url, token, "notifications/initialized", id_=None, headers=headers)
    listed = rpc(url, token, "tools/list", {}, id_=2, headers=headers)
    echo = rpc(url, token, "tools/call", {"name": "echo", "arguments": {"message": "hi"}},
               id_=3, headers=headers)
    add = rpc(url, token, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}},
              id_=4, headers=headers)
    whoami = rpc(url, token, "tools/call", {"name": "whoami", "arguments": {}}, id_=5,
                 headers=headers)
    for r in (listed, echo, add, whoami):
        assert r.status_code == 200, r.text
    return {
        "init": init, "session": session, "content_type": response.headers["Content-Type"],
        "notified_status": notified.status_code,
        "tools": sorted(t["name"] for t in rpc_messages(listed)[0]["result"]["tools"]),
        "echo": rpc_messages(echo)[0]["result"]["content"][0]["text"],
        "add": rpc_messages(add)[0]["result"]["content"][0]["text"],
        "claims": json.loads(rpc_messages(whoami)[0]["result"]["content"][0]["text"]),
    }


def parse_challenge(header: str) -> Dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split('", '):
        name, _, value = part.partition("=")
        params[name.strip()] = value.strip().strip('"')
    return params


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys() -> Dict[str, Key]:
    pytest.importorskip("cryptography")
    return {"RS256": Key("RS256"), "ES256": Key("ES256")}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: Any, keys: Dict[str, Key]) -> Any:
    clients = [
        peers_mod.secret_client("basic-client", BASIC_SECRET, "client_secret_basic"),
        peers_mod.secret_client("post-client", "post-secret", "client_secret_post"),
        peers_mod.jwt_client("rs-client", [keys["RS256"].jwk]),
        peers_mod.jwt_client("es-client", [keys["ES256"].jwk]),
    ]
    running = peers_mod.start_peers(tmp_path_factory.mktemp("peers"), clients)
    yield running
    running.stop()


def token_request(peers: Any, data: Dict[str, str], **kwargs: Any) -> requests.Response:
    form = {"grant_type": "client_credentials"}
    form.update(data)
    return requests.post(peers.token_endpoint, data=form, timeout=TIMEOUT, **kwargs)


def basic_auth() -> Tuple[str, str]:
    return (quote_plus("basic-client"), quote_plus(BASIC_SECRET))


# --- tests ---------------------------------------------------------------------------------

def test_discovery(peers: Any) -> None:
    oidc = requests.get(peers.issuer + "/.well-known/openid-configuration", timeout=TIMEOUT)
    rfc8414 = requests.get(peers.issuer + "/.well-known/oauth-authorization-server",
                           timeout=TIMEOUT)
    assert oidc.status_code == 200 and rfc8414.status_code == 200
    assert oidc.json() == rfc8414.json()
    meta = rfc8414.json()
    assert meta["issuer"] == peers.issuer
    assert meta["token_endpoint"] == peers.token_endpoint
    assert meta["jwks_uri"] == peers.jwks_uri
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "private_key_jwt"]
    assert "client_credentials" in meta["grant_types_supported"]
    assert "ES256" in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert "RS256" in meta["token_endpoint_auth_signing_alg_values_supported"]


def test_unauthenticated_401_names_prm(peers: Any) -> None:
    response = requests.post(peers.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers={"Accept": ACCEPT}, timeout=TIMEOUT)
    assert response.status_code == 401
    challenge = parse_challenge(response.headers["WWW-Authenticate"])
    assert challenge == {"error": "invalid_token",
                         "error_description": "Missing Authorization header",
                         "resource_metadata": peers.prm_url}
    origin = peers.mcp_url[:-len("/mcp")]
    assert peers.prm_url == origin + "/.well-known/oauth-protected-resource/mcp"


def test_protected_resource_metadata(peers: Any) -> None:
    response = requests.get(peers.prm_url, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"resource": peers.mcp_url, "authorization_servers": [peers.issuer],
                               "scopes_supported": ["mcp:tools"],
                               "resource_name": "mcpauth interop MCP server"}


def test_basic_auth_token_and_mcp_calls(peers: Any) -> None:
    response = token_request(peers, {"resource": peers.mcp_url, "scope": "mcp:tools"},
                             auth=basic_auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "mcp:tools"
    header, claims = jwt_parts(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert claims["aud"] == peers.mcp_url and claims["iss"] == peers.issuer
    assert claims["client_id"] == "basic-client"

    facts = run_mcp_session(peers.mcp_url, body["access_token"])
    assert facts["init"]["result"]["protocolVersion"] == "2025-11-25"
    assert facts["session"] is None  # sessionless
    assert facts["content_type"].startswith("text/event-stream")
    assert facts["notified_status"] == 202
    assert facts["tools"] == ["add", "echo", "poll", "whoami"]
    assert (facts["echo"], facts["add"]) == ("hi", "5")
    assert facts["claims"]["client_id"] == "basic-client"

    log = [r for r in peers_mod.settled_log(peers.as_requests)
           if r["path"] == "/token" and r["status"] == 200]
    assert log[-1]["client_auth_method"] == "client_secret_basic"
    assert log[-1]["resource"] == peers.mcp_url


def test_basic_auth_needs_form_urlencoding(peers: Any) -> None:
    raw = token_request(peers, {"resource": peers.mcp_url}, auth=("basic-client", BASIC_SECRET))
    assert raw.status_code == 401 and raw.json()["error"] == "invalid_client"


def test_post_auth(peers: Any) -> None:
    response = token_request(peers, {"resource": peers.mcp_url, "client_id": "post-client",
                                     "client_secret": "post-secret"})
    assert response.status_code == 200, response.text
    facts = run_mcp_session(peers.mcp_url, response.json()["access_token"])
    assert facts["claims"]["client_id"] == "post-client"


@pytest.mark.parametrize("alg,client_id", [("RS256", "rs-client"), ("ES256", "es-client")])
def test_private_key_jwt_aud_issuer(peers: Any, keys: Dict[str, Key], alg: str,
                                    client_id: str) -> None:
    jwt = assertion(keys[alg], client_id, peers.issuer)
    response = token_request(peers, {"resource": peers.mcp_url, "client_assertion_type": JWT_BEARER,
                                     "client_assertion": jwt})
    assert response.status_code == 200, response.text
    facts = run_mcp_session(peers.mcp_url, response.json()["access_token"])
    assert facts["claims"]["client_id"] == client_id
    entry = [r for r in peers_mod.settled_log(peers.as_requests)
             if r.get("client_id") == client_id][-1]
    assert entry["client_auth_method"] == "private_key_jwt"
    assert entry["client_assertion"]["header"]["typ"] == "client-authentication+jwt"


@pytest.mark.parametrize("variant,expected,detail", [
    ("aud=token_endpoint", 200, None),
    ("aud=[issuer]", 200, None),
    ("no typ", 200, None),
    ("typ=JWT", 200, None),
    ("aud=issuer/", 401, "audience (aud) must equal"),
    ("aud=mcp_url", 401, "audience (aud) must equal"),
    ("no jti", 401, "unique jti (JWT ID) must be provided"),
    ("no exp", 401, "expiration must be specified"),
    ("expired", 401, "jwt expired"),
    ("DER signature", 401, "signature verification failed"),
])
def test_private_key_jwt_claim_rules(peers: Any, keys: Dict[str, Key], variant: str,
                                     expected: int, detail: Optional[str]) -> None:
    key = keys["ES256"]
    kwargs = {}  # type: Dict[str, Any]
    aud = peers.issuer  # type: Any
    if variant == "aud=token_endpoint":
        aud = peers.token_endpoint
    elif variant == "aud=[issuer]":
        aud = [peers.issuer]
    elif variant == "aud=issuer/":
        aud = peers.issuer + "/"
    elif variant == "aud=mcp_url":
        aud = peers.mcp_url
    elif variant == "no typ":
        kwargs["typ"] = None
    elif variant == "typ=JWT":
        kwargs["typ"] = "JWT"
    elif variant == "no jti":
        kwargs["jti"] = None
    elif variant == "no exp":
        kwargs["exp"] = None
    elif variant == "expired":
        kwargs["exp"] = int(time.time()) - 120
        kwargs["iat"] = int(time.time()) - 180
    jwt = assertion(key, "es-client", aud, **kwargs)
    if variant == "DER signature":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        signing_input = jwt.rsplit(".", 1)[0]
        der = key.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        jwt = signing_input + "." + b64url(der)
    response = token_request(peers, {"resource": peers.mcp_url, "client_assertion_type": JWT_BEARER,
                                     "client_assertion": jwt})
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.json()["error"] == "invalid_client"
        assert detail in peers_mod.settled_log(peers.as_requests)[-1]["error_detail"]


def test_private_key_jwt_replay_rejected(peers: Any, keys: Dict[str, Key]) -> None:
    jwt = assertion(keys["RS256"], "rs-client", peers.issuer)
    form = {"resource": peers.mcp_url, "client_assertion_type": JWT_BEARER, "client_assertion": jwt}
    assert token_request(peers, form).status_code == 200
    again = token_request(peers, form)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def test_token_without_resource_is_rejected_by_mcp(peers: Any) -> None:
    response = token_request(peers, {"scope": "mcp:tools"}, auth=basic_auth())
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert token.count(".") == 0  # opaque: no audience without RFC 8707 resource
    mcp = rpc(peers.mcp_url, token, "ping")
    assert mcp.status_code == 401
    challenge = parse_challenge(mcp.headers["WWW-Authenticate"])
    assert challenge["error"] == "invalid_token"
    assert challenge["resource_metadata"] == peers.prm_url


def test_unknown_resource_is_invalid_target(peers: Any) -> None:
    response = token_request(peers, {"resource": peers.mcp_url + "/other"}, auth=basic_auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_json_stateful_and_required_scope(tmp_path: Any) -> None:
    clients = [peers_mod.secret_client("c", "s", "client_secret_post")]
    with peers_mod.start_peers(tmp_path, clients, scopes=["mcp:tools", "mcp:admin"],
                               required_scopes=["mcp:admin"], json_response=True,
                               stateful=True, hide_oauth_metadata=True,
                               access_token_ttl=60) as running:
        meta = requests.get(running.issuer + "/.well-known/oauth-authorization-server",
                            timeout=TIMEOUT)
        assert meta.status_code == 404
        creds = {"client_id": "c", "client_secret": "s", "resource": running.mcp_url}
        narrow = dict(creds, scope="mcp:tools")
        token = token_request(running, narrow).json()["access_token"]
        forbidden = rpc(running.mcp_url, token, "ping")
        assert forbidden.status_code == 403
        assert parse_challenge(forbidden.headers["WWW-Authenticate"]) == {
            "error": "insufficient_scope", "error_description": "Insufficient scope",
            "scope": "mcp:admin", "resource_metadata": running.prm_url}

        wide = token_request(running, dict(creds, scope="mcp:tools mcp:admin")).json()
        assert wide["expires_in"] == 60
        facts = run_mcp_session(running.mcp_url, wide["access_token"])
        assert facts["content_type"].startswith("application/json")
        assert facts["session"]
        assert (facts["echo"], facts["add"]) == ("hi", "5")
        sessions = {r.get("mcp_session_id") for r in peers_mod.settled_log(running.mcp_requests)
                    if r.get("rpc_method") == "tools/call"}
        assert sessions == {facts["session"]}
    assert running._as.proc.poll() is not None and running._mcp.proc.poll() is not None


def test_sdk_v2_speaks_both_wires(tmp_path: Any) -> None:
    clients = [peers_mod.secret_client("c", "s", "client_secret_post")]
    with peers_mod.start_peers(tmp_path, clients, sdk="v2", response_mode="json") as running:
        token = token_request(running, {"client_id": "c", "client_secret": "s",
                                        "resource": running.mcp_url}).json()["access_token"]
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}
        modern = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}
        discover = rpc(running.mcp_url, token, "server/discover", {"_meta": meta},
                       headers=modern)
        assert discover.status_code == 200, discover.text
        assert discover.headers["Content-Type"].startswith("application/json")
        result = discover.json()["result"]
        assert result["supportedVersions"] == ["2026-07-28"]
        assert result["resultType"] == "complete"
        no_method = rpc(running.mcp_url, token, "tools/list", {"_meta": meta},
                        headers={"MCP-Protocol-Version": "2026-07-28"})
        assert no_method.status_code == 400 and no_method.json()["error"]["code"] == -32020
        facts = run_mcp_session(running.mcp_url, token)  # the 2025 fallback
        assert facts["init"]["result"]["protocolVersion"] == "2025-11-25"
        assert facts["tools"] == ["add", "echo", "notify", "route", "whoami"]
        assert (facts["echo"], facts["add"]) == ("hi", "5")
        assert facts["claims"]["client_id"] == "c"
