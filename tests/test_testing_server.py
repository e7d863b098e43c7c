"""Tests for mcpauth.testing: the loopback AS, IdP and MCP server, over real sockets.

Driven with plain ``requests`` (not mcpauth's providers) so the servers are checked
independently of the client they will referee. Everything binds 127.0.0.1.
"""

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import pytest
import requests

from mcpauth.testing import (
    AuthorizationServer,
    Headers,
    LoopbackStack,
    MCPServer,
    RecordedRequest,
)
from mcpauth.testing.authserver import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)

pytestmark = pytest.mark.e2e

ACCEPT = "application/json, text/event-stream"
V_STATELESS = "2026-07-28"
FORM = "application/x-www-form-urlencoded"


# -- helpers ---------------------------------------------------------------------------


def basic(client_id, secret):
    """RFC 6749 §2.3.1: form-encode (Appendix B) id and secret, then Basic."""
    raw = quote_plus(client_id, safe="") + ":" + quote_plus(secret, safe="")
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def post_token(as_, data, headers=None, **kwargs):
    return requests.post(as_.token_endpoint, data=data, headers=headers or {}, timeout=5,
                         allow_redirects=False, **kwargs)


def cc_token(stack, scope=None, resource=None):
    data = {"grant_type": "client_credentials",
            "resource": stack.mcp.resource if resource is None else resource}
    if scope:
        data["scope"] = scope
    resp = post_token(stack.as_, data,
                      {"Authorization": basic(stack.client_id, stack.client_secret)})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def mcp_post(url, body, token=None, headers=None, accept=ACCEPT,
             content_type="application/json"):
    h = {"Accept": accept, "Content-Type": content_type}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    return requests.post(url, data=json.dumps(body).encode("utf-8"), headers=h, timeout=5)


def stateless(url, token, method, params=None, msg_id=1, version=V_STATELESS,
              name=None, headers=None, meta=True):
    params = dict(params or {})
    if meta:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version,
                           "io.modelcontextprotocol/clientCapabilities": {}}
    h = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    h.update(headers or {})
    body = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    return mcp_post(url, body, token, h)


def sse_messages(text):
    """Parse an SSE body into the JSON messages of its data lines."""
    out = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n")
                         if line.startswith("data:"))
        if data.strip():
            out.append(json.loads(data))
    return out


def jws():
    pytest.importorskip("cryptography")
    from mcpauth import jws as module
    return module


def client_assertion(key, client_id, aud, lifetime=60, jti=None, alg="ES256", **claims):
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now,
            "exp": now + lifetime, "jti": jti or str(uuid.uuid4())}
    body.update(claims)
    return jws().sign(body, key, alg, headers={"typ": "client-authentication+jwt"})


@pytest.fixture
def stack():
    with LoopbackStack(allowed_scopes=["read", "write"]) as s:
        yield s


@pytest.fixture
def as_():
    with AuthorizationServer() as server:
        yield server


@pytest.fixture
def ec_key():
    return jws().generate_private_key("EC", curve="P-256")


# -- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant,issuer_path,expected_path", [
    ("oauth", "", "/.well-known/oauth-authorization-server"),
    ("oidc", "", "/.well-known/openid-configuration"),
    ("oauth", "/tenant1", "/.well-known/oauth-authorization-server/tenant1"),
    ("oidc", "/tenant1", "/.well-known/openid-configuration/tenant1"),
    ("oidc-append", "/tenant1", "/tenant1/.well-known/openid-configuration"),
    ("oauth", "/", "/.well-known/oauth-authorization-server"),  # RFC 8414 §3.1 slash
])
def test_metadata_served_only_at_the_chosen_well_known_path(variant, issuer_path,
                                                            expected_path):
    with AuthorizationServer(issuer_path, metadata_variant=variant) as server:
        assert server.metadata_path == expected_path
        resp = requests.get(server.base_url + expected_path, timeout=5)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json"
        doc = resp.json()
        assert doc["issuer"] == server.base_url + issuer_path
        assert doc["token_endpoint"] == server.base_url + issuer_path.rstrip("/") + "/token"
        others = {"/.well-known/oauth-authorization-server" + issuer_path.rstrip("/"),
                  "/.well-known/openid-configuration" + issuer_path.rstrip("/"),
                  issuer_path.rstrip("/") + "/.well-known/openid-configuration"}
        for path in others - {expected_path}:
            assert requests.get(server.base_url + path, timeout=5).status_code == 404
        assert [r.url_path for r in server.metadata_requests()] == [expected_path]


def test_metadata_members_and_overrides(as_):
    doc = as_.metadata()
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "private_key_jwt"]
    assert "ES256" in doc["token_endpoint_auth_signing_alg_values_supported"]
    assert GRANT_JWT_BEARER in doc["grant_types_supported"]
    as_.metadata_override = {"issuer": "https://attacker.example.com",
                             "token_endpoint": None}
    doc = requests.get(as_.metadata_url, timeout=5).json()
    assert doc["issuer"] == "https://attacker.example.com"
    assert "token_endpoint" not in doc
    as_.metadata_override = {"token_endpoint": "http://as.example/token"}
    as_.metadata_content_type = "text/html"
    resp = requests.get(as_.metadata_url, timeout=5)
    assert resp.json()["token_endpoint"] == "http://as.example/token"
    assert resp.headers["Content-Type"] == "text/html"


def test_metadata_auth_methods_omitted_means_basic_only():
    with AuthorizationServer(token_endpoint_auth_methods_supported=None) as server:
        server.register_client("c", client_secret="s")
        assert "token_endpoint_auth_methods_supported" not in server.metadata()
        ok = post_token(server, {"grant_type": "client_credentials"},
                        {"Authorization": basic("c", "s")})
        assert ok.status_code == 200
        refused = post_token(server, {"grant_type": "client_credentials", "client_id": "c",
                                      "client_secret": "s"})
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_client"


def test_set_route_canned_responses(as_):
    as_.set_route(as_.metadata_path, 500, "boom", times=1)
    first = requests.get(as_.metadata_url, timeout=5)
    assert (first.status_code, first.text) == (500, "boom")
    assert requests.get(as_.metadata_url, timeout=5).json()["issuer"] == as_.issuer
    as_.set_route(as_.metadata_path, 200, b"not json{", {"Content-Type": "application/json"})
    assert requests.get(as_.metadata_url, timeout=5).content == b"not json{"
    big = b"x" * (2 * 1024 * 1024)
    as_.set_route(as_.metadata_path, 200, big, {"Content-Type": "application/json"})
    assert len(requests.get(as_.metadata_url, timeout=5).content) == len(big)
    as_.clear_route(as_.metadata_path)
    assert requests.get(as_.metadata_url, timeout=5).json()["issuer"] == as_.issuer
    as_.set_route("/elsewhere", 302, None, {"Location": "http://127.0.0.2:1/x"},
                  method="GET")
    resp = requests.get(as_.base_url + "/elsewhere", timeout=5, allow_redirects=False)
    assert (resp.status_code, resp.headers["Location"]) == (302, "http://127.0.0.2:1/x")


# -- token endpoint: client authentication ---------------------------------------------


def test_basic_auth_form_decodes_id_and_secret(as_):
    """REQUIREMENTS §2.4: id "a:b", secret "p w+%" -> Basic YSUzQWI6cCt3JTJCJTI1."""
    as_.register_client("a:b", client_secret="p w+%")
    header = basic("a:b", "p w+%")
    assert header == "Basic YSUzQWI6cCt3JTJCJTI1"
    resp = post_token(as_, {"grant_type": "client_credentials"}, {"Authorization": header})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert as_.introspect(body["access_token"])["client_id"] == "a:b"
    rec = as_.token_requests()[-1]
    assert rec.info["auth_method"] == "client_secret_basic"
    assert rec.info["client_id"] == "a:b"


def test_basic_auth_without_form_encoding_is_refused_with_401(as_):
    as_.register_client("a:b", client_secret="p w+%")
    raw = "Basic " + base64.b64encode(b"a:b:p w+%").decode()
    resp = post_token(as_, {"grant_type": "client_credentials"}, {"Authorization": raw})
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert resp.headers["Cache-Control"] == "no-store"


def test_rfc6749_basic_vector(as_):
    as_.register_client("s6BhdRkqt3", client_secret="7Fjfp0ZBr1KtDRbnfVdmIw")
    header = basic("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw")
    assert header == "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"
    assert post_token(as_, {"grant_type": "client_credentials"},
                      {"Authorization": header}).status_code == 200


def test_client_secret_post(as_):
    as_.register_client("poster", client_secret="s e/cret")
    ok = post_token(as_, {"grant_type": "client_credentials", "client_id": "poster",
                          "client_secret": "s e/cret"})
    assert ok.status_code == 200
    assert as_.token_requests()[-1].info["auth_method"] == "client_secret_post"
    bad = post_token(as_, {"grant_type": "client_credentials", "client_id": "poster",
                           "client_secret": "wrong"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in bad.headers


def test_registered_auth_method_is_enforced(as_):
    as_.register_client("basic-only", client_secret="s", auth_method="client_secret_basic")
    resp = post_token(as_, {"grant_type": "client_credentials", "client_id": "basic-only",
                            "client_secret": "s"})
    assert resp.json()["error"] == "invalid_client"


def test_two_auth_methods_in_one_request_are_refused(as_):
    """RFC 6749 §2.3: "MUST NOT use more than one authentication method"."""
    as_.register_client("c", client_secret="s")
    resp = post_token(as_, {"grant_type": "client_credentials", "client_id": "c",
                            "client_secret": "s"}, {"Authorization": basic("c", "s")})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"
    assert "more than one" in resp.json()["error_description"]


def test_duplicate_parameters_are_refused(as_):
    """RFC 6749 §3.2: parameters MUST NOT be included more than once."""
    as_.register_client("c", client_secret="s")
    body = "grant_type=client_credentials&scope=a&scope=b"
    resp = post_token(as_, body, {"Authorization": basic("c", "s"), "Content-Type": FORM})
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_request",
                           "error_description": "parameter 'scope' included more than once"}
    rec = as_.token_requests()[-1]
    assert rec.form_lists["scope"] == ["a", "b"] and rec.status == 400


@pytest.mark.parametrize("method,path_suffix,content_type,status", [
    ("GET", "", None, 405),
    ("POST", "?client_secret=s", FORM, 400),
    ("POST", "", "application/json", 400),
])
def test_token_endpoint_request_shape(as_, method, path_suffix, content_type, status):
    as_.register_client("c", client_secret="s")
    headers = {"Authorization": basic("c", "s")}
    if content_type:
        headers["Content-Type"] = content_type
    resp = requests.request(method, as_.token_endpoint + path_suffix,
                            data="grant_type=client_credentials" if method == "POST" else None,
                            headers=headers, timeout=5)
    assert resp.status_code == status
    assert resp.json()["error"] == "invalid_request"


def test_unknown_and_missing_grant_type(as_):
    as_.register_client("c", client_secret="s")
    auth = {"Authorization": basic("c", "s")}
    assert post_token(as_, {"grant_type": "password"}, auth).json()["error"] == \
        "unsupported_grant_type"
    assert post_token(as_, {"scope": "x"}, auth).json()["error"] == "invalid_request"
    assert post_token(as_, {"grant_type": "client_credentials"}).json()["error"] == \
        "invalid_client"


def test_scope_checks(as_):
    as_.register_client("c", client_secret="s", allowed_scopes=["read", "write"],
                        default_scopes=["read"])
    auth = {"Authorization": basic("c", "s")}
    granted = post_token(as_, {"grant_type": "client_credentials"}, auth).json()
    assert granted["scope"] == "read"
    both = post_token(as_, {"grant_type": "client_credentials", "scope": "write read"}, auth)
    assert both.json()["scope"] == "read write"
    assert as_.introspect(both.json()["access_token"])["scopes"] == {"read", "write"}
    for scope in ("admin", 'bad"quote', "two  spaces", ""):
        resp = post_token(as_, {"grant_type": "client_credentials", "scope": scope}, auth)
        assert resp.json()["error"] == "invalid_scope", scope


def test_scope_with_a_trailing_line_break_is_invalid_scope(as_):
    # RFC 6749 §3.3: a client with no scope restriction still cannot be granted "read\n".
    as_.register_client("open", client_secret="s")
    auth = {"Authorization": basic("open", "s")}
    for scope in ("read\n", "read\nwrite", "read write\n"):
        resp = post_token(as_, {"grant_type": "client_credentials", "scope": scope}, auth)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope", scope
    assert post_token(as_, {"grant_type": "client_credentials", "scope": "read"},
                      auth).json()["scope"] == "read"


def test_resource_is_validated_and_bound(as_):
    as_.register_client("c", client_secret="s")
    auth = {"Authorization": basic("c", "s")}
    for bad in ("mcp.example.com", "https://mcp.example.com/mcp#frag"):
        resp = post_token(as_, {"grant_type": "client_credentials", "resource": bad}, auth)
        assert resp.json()["error"] == "invalid_target"
    resp = post_token(as_, {"grant_type": "client_credentials",
                            "resource": "https://mcp.example.com/mcp"}, auth)
    info = as_.introspect(resp.json()["access_token"])
    assert info["resource"] == "https://mcp.example.com/mcp"
    assert as_.token_requests()[-1].form["resource"] == "https://mcp.example.com/mcp"
    as_.require_resource = True
    assert post_token(as_, {"grant_type": "client_credentials"}, auth).json()["error"] == \
        "invalid_target"


# -- private_key_jwt ----------------------------------------------------------------------


def test_private_key_jwt_accepted_and_recorded(as_, ec_key):
    as_.register_client("jwt-client", public_jwk=ec_key.public_jwk())
    assertion = client_assertion(ec_key, "jwt-client", as_.issuer)
    resp = post_token(as_, {"grant_type": "client_credentials",
                            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
                            "client_assertion": assertion})
    assert resp.status_code == 200, resp.text
    rec = as_.token_requests()[-1]
    assert rec.info["auth_method"] == "private_key_jwt"
    assert rec.info["client_assertion_header"]["typ"] == "client-authentication+jwt"
    # aud as a one-member list is accepted too (7523bis -03 changelog)
    listed = client_assertion(ec_key, "jwt-client", [as_.issuer])
    assert post_token(as_, {"grant_type": "client_credentials",
                            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
                            "client_assertion": listed}).status_code == 200


def _pkj(as_, assertion, assertion_type=CLIENT_ASSERTION_TYPE_JWT_BEARER):
    return post_token(as_, {"grant_type": "client_credentials",
                            "client_assertion_type": assertion_type,
                            "client_assertion": assertion})


def test_private_key_jwt_rejections(as_, ec_key):
    as_.register_client("jwt-client", public_jwk=ec_key.public_jwk())
    other = jws().generate_private_key("EC", curve="P-256")
    cases = {
        "bad signature": client_assertion(other, "jwt-client", as_.issuer),
        "aud = token endpoint": client_assertion(ec_key, "jwt-client", as_.token_endpoint),
        "expired": client_assertion(ec_key, "jwt-client", as_.issuer, lifetime=-5),
        "exp too far": client_assertion(ec_key, "jwt-client", as_.issuer, lifetime=3600),
        "iss != sub": client_assertion(ec_key, "jwt-client", as_.issuer, iss="someone"),
        "iat in future": client_assertion(ec_key, "jwt-client", as_.issuer,
                                          iat=int(time.time()) + 300),
        "unknown client": client_assertion(ec_key, "nobody", as_.issuer),
    }
    for name, assertion in cases.items():
        resp = _pkj(as_, assertion)
        assert resp.status_code == 400, name
        assert resp.json()["error"] == "invalid_client", name
    good = client_assertion(ec_key, "jwt-client", as_.issuer)
    wrong_type = _pkj(as_, good, "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    assert wrong_type.json()["error"] == "invalid_client"
    assert _pkj(as_, good + "." + good).json()["error"] == "invalid_client"
    assert as_.token_requests()[-1].status == 400


def test_private_key_jwt_replayed_jti_refused(as_, ec_key):
    as_.register_client("jwt-client", public_jwk=ec_key.public_jwk())
    assertion = client_assertion(ec_key, "jwt-client", as_.issuer, jti="once")
    assert _pkj(as_, assertion).status_code == 200
    replay = _pkj(as_, assertion)
    assert replay.json() == {"error": "invalid_client",
                             "error_description": "jti has already been used"}
    fresh_same_jti = client_assertion(ec_key, "jwt-client", as_.issuer, jti="once")
    assert _pkj(as_, fresh_same_jti).json()["error"] == "invalid_client"


def test_private_key_jwt_typ_requirement_and_legacy_audience(as_, ec_key):
    as_.register_client("jwt-client", public_jwk=ec_key.public_jwk())
    as_.require_assertion_typ = "client-authentication+jwt"
    now = int(time.time())
    untyped = jws().sign({"iss": "jwt-client", "sub": "jwt-client", "aud": as_.issuer,
                          "exp": now + 60, "jti": "u1"}, ec_key, "ES256")
    assert _pkj(as_, untyped).json()["error"] == "invalid_client"
    as_.require_assertion_typ = None
    as_.client_assertion_audiences = [as_.token_endpoint]
    legacy = client_assertion(ec_key, "jwt-client", as_.token_endpoint)
    assert _pkj(as_, legacy).status_code == 200


# -- token response knobs and failure injection ------------------------------------------


def test_response_knobs(as_):
    as_.register_client("c", client_secret="s")
    auth = {"Authorization": basic("c", "s")}
    as_.expires_in_as_string = True
    as_.token_type = "mac"
    as_.extra_token_response = {"refresh_token": "rt", "extra": 1}
    body = post_token(as_, {"grant_type": "client_credentials"}, auth).json()
    assert body["expires_in"] == "3600" and body["token_type"] == "mac"
    assert body["refresh_token"] == "rt" and body["extra"] == 1
    as_.omit_access_token = True
    assert "access_token" not in post_token(as_, {"grant_type": "client_credentials"},
                                            auth).json()


def test_failure_injection_and_redirect(as_):
    as_.register_client("c", client_secret="s")
    auth = {"Authorization": basic("c", "s")}
    as_.next_error = ("invalid_client", 401)
    assert as_.next_error == ("invalid_client", 401)
    first = post_token(as_, {"grant_type": "client_credentials"}, auth)
    assert (first.status_code, first.json()["error"]) == (401, "invalid_client")
    assert post_token(as_, {"grant_type": "client_credentials"}, auth).status_code == 200
    as_.fail_next("temporarily_unavailable", 503, count=2)
    statuses = [post_token(as_, {"grant_type": "client_credentials"}, auth).status_code
                for _ in range(3)]
    assert statuses == [503, 503, 200]
    as_.redirect_token_endpoint_to = "http://127.0.0.2:9/token"
    moved = post_token(as_, {"grant_type": "client_credentials"}, auth)
    assert (moved.status_code, moved.headers["Location"]) == (307,
                                                              "http://127.0.0.2:9/token")


def test_concurrent_token_requests_all_succeed(as_):
    as_.register_client("c", client_secret="s")
    as_.delay = 0.2
    auth = {"Authorization": basic("c", "s")}

    def one(_):
        return post_token(as_, {"grant_type": "client_credentials"}, auth)

    started = time.time()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    elapsed = time.time() - started
    assert [r.status_code for r in results] == [200] * 20
    assert len({r.json()["access_token"] for r in results}) == 20
    assert len(as_.token_requests()) == 20
    assert elapsed < 20 * 0.2 / 2  # served in parallel, not one after another


def test_token_expiry_uses_the_injected_clock(stack):
    now = [1000.0]
    stack.as_.clock = lambda: now[0]
    token = cc_token(stack)
    assert stack.as_.introspect(token)["exp"] == 4600.0
    assert mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                    "params": {"protocolVersion": "2025-11-25"}},
                    token).status_code == 200
    now[0] = 4600.0
    assert stack.as_.introspect(token) is None
    resp = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, token)
    assert resp.status_code == 401


def test_body_over_cap_gets_413(as_):
    resp = requests.post(as_.token_endpoint, data=b"a" * (1024 * 1024 + 1),
                         headers={"Content-Type": FORM}, timeout=5)
    assert resp.status_code == 413
    assert as_.requests[-1].status == 413


# -- MCP server: bearer challenges ---------------------------------------------------------


def test_mcp_401_challenge_format(stack):
    resp = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert resp.status_code == 401
    prm = stack.mcp.base_url + "/.well-known/oauth-protected-resource/mcp"
    # RFC 6750 §3.1: "If the request lacks any authentication information ..., the
    # resource server SHOULD NOT include an error code or other error information."
    assert resp.headers["WWW-Authenticate"] == 'Bearer resource_metadata="%s"' % prm
    assert "error" not in resp.json()
    stack.mcp.bare_challenge_when_missing = False  # as servers that send one anyway
    assert mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                    ).headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="Missing Authorization header", '
        'resource_metadata="%s"' % prm)
    bad = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, "nope")
    assert bad.status_code == 401
    assert 'error_description="Invalid or expired token"' in bad.headers["WWW-Authenticate"]
    stack.mcp.challenge_scope = "read"
    stack.mcp.bare_challenge_when_missing = True
    bare = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert bare.headers["WWW-Authenticate"] == (
        'Bearer scope="read", resource_metadata="%s"' % prm)
    stack.mcp.include_resource_metadata_in_challenge = False
    assert "resource_metadata" not in mcp_post(
        stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, "x"
    ).headers["WWW-Authenticate"]
    for method in ("GET", "DELETE"):
        assert requests.request(method, stack.mcp_url, timeout=5).status_code == 401
    assert len(stack.mcp.mcp_requests()) == 7


def test_prm_document_and_locations(stack):
    doc = requests.get(stack.mcp.prm_url, timeout=5).json()
    assert doc == {"resource": stack.mcp_url, "authorization_servers": [stack.as_.issuer],
                   "bearer_methods_supported": ["header"]}
    stack.mcp.prm_override = {"resource": "https://evil.example.com/mcp",
                              "authorization_servers": []}
    doc = requests.get(stack.mcp.prm_url, timeout=5).json()
    assert doc["resource"] == "https://evil.example.com/mcp"
    assert doc["authorization_servers"] == []
    with MCPServer(prm_location="root", resource="http://x", scopes_supported=["a"],
                   authorization_servers=["https://as.example"]) as root:
        assert root.prm_path == "/.well-known/oauth-protected-resource"
        doc = requests.get(root.prm_url, timeout=5).json()
        assert doc["resource"] == "http://x" and doc["scopes_supported"] == ["a"]
        assert requests.get(root.base_url + "/.well-known/oauth-protected-resource/mcp",
                            timeout=5).status_code == 404
    with MCPServer(prm_location="custom") as custom:
        assert custom.prm_url.endswith("/custom/metadata/location.json")
        assert requests.get(custom.prm_url, timeout=5).status_code == 200
        challenge = mcp_post(custom.url, {}).headers["WWW-Authenticate"]
        assert custom.prm_url in challenge


def test_token_for_another_resource_is_refused(stack):
    with MCPServer(authorization_servers=[stack.as_]) as other:
        token_for_other = cc_token(stack, resource=other.url)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        ok = stateless(other.url, token_for_other, "ping")
        assert ok.status_code == 200, ok.text
        refused = stateless(stack.mcp_url, token_for_other, "ping")
        assert refused.status_code == 401
        assert "another resource" in refused.headers["WWW-Authenticate"]
        assert mcp_post(stack.mcp_url, ping, token_for_other).status_code == 401


def test_require_resource_binding_and_static_tokens(stack):
    unbound = stack.as_.issue_token(stack.client_id)
    assert stateless(stack.mcp_url, unbound, "ping").status_code == 200
    stack.mcp.require_resource_binding = True
    assert stateless(stack.mcp_url, unbound, "ping").status_code == 401
    with MCPServer(static_tokens={"byo-token": "read"}) as byo:
        assert stateless(byo.url, "byo-token", "ping").status_code == 200
        assert stateless(byo.url, "other", "ping").status_code == 401
        who = stateless(byo.url, "byo-token", "tools/call", {"name": "whoami"}, name="whoami")
        assert json.loads(who.json()["result"]["content"][0]["text"])["scope"] == "read"


def test_insufficient_scope_403(stack):
    stack.mcp.required_scope = "write"
    token = cc_token(stack, scope="read")
    listed = stateless(stack.mcp_url, token, "tools/list")
    assert listed.status_code == 200
    call = stateless(stack.mcp_url, token, "tools/call", {"name": "echo"}, name="echo")
    assert call.status_code == 403
    assert call.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The token lacks the '
        'required scope", scope="write", resource_metadata="%s"' % stack.mcp.prm_url)
    upgraded = cc_token(stack, scope="read write")
    assert stateless(stack.mcp_url, upgraded, "tools/call", {"name": "echo"},
                     name="echo").status_code == 200


def test_mcp_fail_next(stack):
    token = cc_token(stack)
    stack.mcp.fail_next(401, count=2)
    stack.mcp.fail_next(403, scope="admin")
    codes = [stateless(stack.mcp_url, token, "ping").status_code for _ in range(4)]
    assert codes == [401, 401, 403, 200]
    stack.mcp.fail_next(403, scope="admin")
    resp = stateless(stack.mcp_url, token, "ping")
    assert 'scope="admin"' in resp.headers["WWW-Authenticate"]


# -- MCP server: stateful lifecycle ---------------------------------------------------------


def _init(url, token, version="2025-11-25", headers=None):
    return mcp_post(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}}, token, headers)


def test_stateful_lifecycle_without_sessions(stack):
    token = cc_token(stack)
    init = _init(stack.mcp_url, token, "2025-06-18")
    assert init.status_code == 200
    result = init.json()["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["capabilities"] == {"tools": {}}
    assert result["serverInfo"]["name"] == "mcpauth-test-server"
    assert "Mcp-Session-Id" not in init.headers
    note = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    token, {"MCP-Protocol-Version": "2025-06-18"})
    assert (note.status_code, note.content) == (202, b"")
    listed = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                      token, {"MCP-Protocol-Version": "2025-06-18"})
    names = [t["name"] for t in listed.json()["result"]["tools"]]
    assert names == ["echo", "add", "whoami", "fail"]
    missing = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                       token)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == -32000
    wrong = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                     token, {"MCP-Protocol-Version": "2025-11-25"})
    assert wrong.status_code == 400
    unknown = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 4, "method": "nope"},
                       token, {"MCP-Protocol-Version": "2025-06-18"})
    assert unknown.status_code == 200 and unknown.json()["error"]["code"] == -32601
    # an unsupported requested version gets the latest supported one
    assert _init(stack.mcp_url, token, "1999-01-01").json()["result"][
        "protocolVersion"] == "2025-11-25"
    assert [r.info["lifecycle"] for r in stack.mcp.calls("initialize")] == ["stateful"] * 2


def test_stateful_sessions(stack):
    token = cc_token(stack)
    stack.mcp.sessions_enabled = True
    early = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                     token, {"MCP-Protocol-Version": "2025-11-25"})
    assert early.status_code == 400
    assert early.json()["error"]["message"] == "Bad Request: Server not initialized"
    init = _init(stack.mcp_url, token)
    sid = init.headers["Mcp-Session-Id"]
    hdrs = {"MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid}
    mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
             token, hdrs)
    assert stack.mcp.sessions[sid] == {"version": "2025-11-25", "initialized": True}
    ok = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, token, hdrs)
    assert ok.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    no_sid = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 3, "method": "ping"}, token,
                      {"MCP-Protocol-Version": "2025-11-25"})
    assert no_sid.status_code == 400
    gone = requests.delete(stack.mcp_url, headers={"Authorization": "Bearer " + token,
                                                   "Mcp-Session-Id": sid}, timeout=5)
    assert gone.status_code == 200
    after = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 4, "method": "ping"}, token, hdrs)
    assert after.status_code == 404


def test_accept_and_content_type_enforced(stack):
    token = cc_token(stack)
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert mcp_post(stack.mcp_url, body, token, accept="application/json").status_code == 406
    assert mcp_post(stack.mcp_url, body, token,
                    content_type="text/plain").status_code == 415
    assert requests.get(stack.mcp_url, headers={"Authorization": "Bearer " + token},
                        timeout=5).status_code == 405
    garbage = requests.post(stack.mcp_url, data=b"{not json", timeout=5, headers={
        "Authorization": "Bearer " + token, "Accept": ACCEPT,
        "Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == -32700


# -- MCP server: stateless lifecycle --------------------------------------------------------


def test_stateless_tools(stack):
    token = cc_token(stack, scope="read")
    listed = stateless(stack.mcp_url, token, "tools/list")
    assert listed.status_code == 200
    assert listed.json()["result"]["resultType"] == "complete"
    echo = stateless(stack.mcp_url, token, "tools/call",
                     {"name": "echo", "arguments": {"x": "y"}}, name="echo")
    assert json.loads(echo.json()["result"]["content"][0]["text"]) == {"x": "y"}
    add = stateless(stack.mcp_url, token, "tools/call",
                    {"name": "add", "arguments": {"a": 2, "b": 3.5}}, name="add")
    assert add.json()["result"]["content"][0]["text"] == "5.5"
    who = stateless(stack.mcp_url, token, "tools/call", {"name": "whoami"}, name="whoami")
    assert who.json()["result"]["structuredContent"] == {
        "client_id": stack.client_id, "scope": "read", "sub": None}
    fail = stateless(stack.mcp_url, token, "tools/call", {"name": "fail"}, name="fail")
    assert fail.json()["result"]["isError"] is True
    unknown = stateless(stack.mcp_url, token, "tools/call", {"name": "nope"}, name="nope")
    assert unknown.json()["error"]["code"] == -32602
    bad_args = stateless(stack.mcp_url, token, "tools/call",
                         {"name": "add", "arguments": {"a": "1", "b": 2}}, name="add")
    assert bad_args.json()["error"]["code"] == -32602
    nomethod = stateless(stack.mcp_url, token, "frobnicate")
    assert nomethod.status_code == 404 and nomethod.json()["error"]["code"] == -32601
    encoded = "=?base64?" + base64.b64encode("echo".encode()).decode() + "?="
    assert stateless(stack.mcp_url, token, "tools/call", {"name": "echo"},
                     name=encoded).status_code == 200
    rec = stack.mcp.calls("tools/call")[0]
    assert rec.info["lifecycle"] == "stateless"
    assert rec.info["protocol_version"] == V_STATELESS
    assert rec.info["token_info"]["client_id"] == stack.client_id


def test_stateless_validation_errors(stack):
    token = cc_token(stack)
    no_meta = stateless(stack.mcp_url, token, "tools/list", meta=False,
                        headers={"MCP-Protocol-Version": V_STATELESS})
    # no _meta and a 2026 header -> stateless path -> -32602
    assert no_meta.status_code == 400 and no_meta.json()["error"]["code"] == -32602
    mismatch = stateless(stack.mcp_url, token, "tools/list",
                         headers={"MCP-Protocol-Version": "2027-01-01"})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    unsupported = stateless(stack.mcp_url, token, "tools/list", version="2027-01-01")
    assert unsupported.status_code == 400
    error = unsupported.json()["error"]
    assert error["code"] == -32022
    assert error["data"] == {"supported": [V_STATELESS], "requested": "2027-01-01"}
    wrong_method = stateless(stack.mcp_url, token, "tools/list",
                             headers={"Mcp-Method": "tools/call"})
    assert wrong_method.json()["error"]["code"] == -32020
    no_name = stateless(stack.mcp_url, token, "tools/call", {"name": "echo"})
    assert no_name.status_code == 400 and no_name.json()["error"]["code"] == -32020
    wrong_name = stateless(stack.mcp_url, token, "tools/call", {"name": "echo"}, name="add")
    assert wrong_name.json()["error"]["code"] == -32020


def test_stateless_only_and_legacy_only_servers(stack):
    token = cc_token(stack)
    stack.mcp.stateless_only = True
    init = _init(stack.mcp_url, token)
    assert init.status_code == 404
    assert init.json()["error"] == {"code": -32601, "message": "Method not found: initialize"}
    bare = mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, token)
    assert bare.status_code == 400 and bare.json()["error"]["code"] == -32602
    stack.mcp.stateless_only = False
    stack.mcp.legacy_only = True
    legacy = stateless(stack.mcp_url, token, "tools/list")
    assert legacy.status_code == 400
    assert legacy.json()["error"]["code"] == -32000
    assert "Unsupported protocol version" in legacy.json()["error"]["message"]


def test_sse_response_mode(stack):
    stack.mcp.response_mode = "sse"
    stack.mcp.sse_notifications = 2
    stack.mcp.sse_priming_event = True
    token = cc_token(stack)
    resp = stateless(stack.mcp_url, token, "tools/call",
                     {"name": "add", "arguments": {"a": 1, "b": 2}}, msg_id=7, name="add")
    assert resp.headers["Content-Type"] == "text/event-stream"
    messages = sse_messages(resp.text)
    assert [m.get("method") for m in messages[:2]] == ["notifications/message"] * 2
    reply = [m for m in messages if m.get("id") == 7]
    assert reply[0]["result"]["content"][0]["text"] == "3"
    # transport errors stay plain JSON
    err = stateless(stack.mcp_url, token, "tools/list", version="2027-01-01")
    assert err.headers["Content-Type"] == "application/json"


def test_tools_list_pagination(stack):
    stack.mcp.page_size = 3
    token = cc_token(stack)
    first = stateless(stack.mcp_url, token, "tools/list").json()["result"]
    assert len(first["tools"]) == 3
    second = stateless(stack.mcp_url, token, "tools/list",
                       {"cursor": first["nextCursor"]}).json()["result"]
    assert [t["name"] for t in second["tools"]] == ["fail"]
    assert "nextCursor" not in second
    bad = stateless(stack.mcp_url, token, "tools/list", {"cursor": "zzz"})
    assert bad.json()["error"]["code"] == -32602


def test_add_tool(stack):
    stack.mcp.add_tool("shout", lambda args, tok: args["text"].upper(), "Upper-cases.")
    token = cc_token(stack)
    resp = stateless(stack.mcp_url, token, "tools/call",
                     {"name": "shout", "arguments": {"text": "hi"}}, name="shout")
    assert resp.json()["result"]["content"] == [{"type": "text", "text": "HI"}]


# -- IdP, ID-JAG and workload identity ---------------------------------------------------


@pytest.fixture
def xaa():
    jws()
    with LoopbackStack(idp=True, allowed_scopes=["read"]) as s:
        yield s


def _exchange(stack, id_token, **over):
    data = {"grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": id_token, "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "audience": stack.as_.issuer, "resource": stack.mcp.resource, "scope": "read"}
    data.update(over)
    data = dict((k, v) for k, v in data.items() if v is not None)
    return post_token(stack.idp, data, {"Authorization": basic(
        stack.idp_client.client_id, stack.idp_client.client_secret)})


def _jwt_bearer(stack, assertion, client_id=None, secret=None, **over):
    data = {"grant_type": GRANT_JWT_BEARER, "assertion": assertion,
            "resource": stack.mcp.resource}
    data.update(over)
    return post_token(stack.as_, data, {"Authorization": basic(
        client_id or stack.client_id, secret or stack.client_secret)})


def test_cross_app_access_full_flow(xaa):
    exchanged = _exchange(xaa, xaa.id_token("alice@example.com"))
    assert exchanged.status_code == 200, exchanged.text
    body = exchanged.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ID_JAG
    assert body["token_type"] == "N_A" and body["expires_in"] == 300
    header, claims = jws().decode_unverified(body["access_token"])
    assert header["typ"] == "oauth-id-jag+jwt" and header["alg"] == "ES256"
    assert claims["aud"] == xaa.as_.issuer and claims["client_id"] == xaa.client_id
    assert claims["resource"] == xaa.mcp.resource and claims["sub"] == "alice@example.com"
    assert claims["exp"] - claims["iat"] == 300
    assert xaa.idp.issued_id_jags()[0]["jti"] == claims["jti"]
    granted = _jwt_bearer(xaa, body["access_token"])
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "read"
    rec = xaa.as_.token_requests()[-1]
    assert rec.info["assertion_kind"] == "id-jag"
    token = granted.json()["access_token"]
    who = stateless(xaa.mcp_url, token, "tools/call", {"name": "whoami"}, name="whoami")
    assert who.json()["result"]["structuredContent"]["sub"] == "alice@example.com"
    # ID-JAG replay is refused (jti)
    assert _jwt_bearer(xaa, body["access_token"]).json()["error"] == "invalid_grant"
    # the IdP metadata advertises the ID-JAG token type
    doc = requests.get(xaa.idp.metadata_url, timeout=5).json()
    assert doc["identity_chaining_requested_token_types_supported"] == [TOKEN_TYPE_ID_JAG]
    assert requests.get(doc["jwks_uri"], timeout=5).json()["keys"][0]["kty"] == "EC"


def test_token_exchange_rejections(xaa):
    good = xaa.id_token()
    cases = [
        ({"subject_token": xaa.idp.issue_id_token(aud="someone-else")}, "invalid_grant"),
        ({"subject_token": xaa.id_token(lifetime=-10)}, "invalid_grant"),
        ({"audience": None}, "invalid_request"),
        ({"resource": None}, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
         "invalid_request"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"},
         "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
    ]
    xaa.idp_client.allowed_scopes = frozenset(["read"])
    for over, error in cases:
        resp = _exchange(xaa, good, **over)
        assert resp.status_code == 400, over
        assert resp.json()["error"] == error, over
    key = jws().generate_private_key()
    forged = jws().sign({"iss": xaa.idp.issuer, "sub": "x", "aud": "idp-client",
                         "exp": int(time.time()) + 60}, key, "ES256")
    assert _exchange(xaa, forged).json()["error"] == "invalid_grant"
    unauthenticated = post_token(xaa.idp, {"grant_type": GRANT_TOKEN_EXCHANGE,
                                           "subject_token": good})
    assert unauthenticated.json()["error"] == "invalid_client"
    xaa.idp.require_step_up = True
    step_up = _exchange(xaa, good)
    assert step_up.json()["error"] == "insufficient_user_authentication"
    xaa.idp.require_step_up = False
    xaa.idp.issued_token_type_override = "urn:ietf:params:oauth:token-type:access_token"
    assert _exchange(xaa, good).json()["issued_token_type"].endswith("access_token")


def test_id_jag_rejections_at_the_resource_as(xaa):
    def jag(**claims):
        now = int(time.time())
        base = {"iss": xaa.idp.issuer, "sub": "u", "aud": xaa.as_.issuer,
                "client_id": xaa.client_id, "resource": xaa.mcp.resource,
                "jti": str(uuid.uuid4()), "iat": now, "exp": now + 300}
        base.update(claims)
        return xaa.idp.sign(dict((k, v) for k, v in base.items() if v is not None),
                            {"typ": "oauth-id-jag+jwt"})

    xaa.as_.register_client("other", client_secret="s2")
    assert _jwt_bearer(xaa, jag(), "other", "s2").json()["error"] == "invalid_grant"
    assert _jwt_bearer(xaa, jag(aud="https://elsewhere")).json()["error"] == "invalid_grant"
    assert _jwt_bearer(xaa, jag(exp=int(time.time()) - 1)).json()["error"] == "invalid_grant"
    assert _jwt_bearer(xaa, jag(resource="https://other/mcp")).json()["error"] == \
        "invalid_grant"
    untyped = xaa.idp.sign({"iss": xaa.idp.issuer, "sub": "u", "aud": xaa.as_.issuer,
                            "client_id": xaa.client_id, "exp": int(time.time()) + 60,
                            "jti": "t"}, {"typ": "JWT"})
    assert _jwt_bearer(xaa, untyped).json()["error"] == "invalid_grant"
    no_auth = post_token(xaa.as_, {"grant_type": GRANT_JWT_BEARER, "assertion": jag()})
    assert no_auth.json()["error"] == "invalid_client"
    assert _jwt_bearer(xaa, jag()).status_code == 200


def test_workload_identity_jwt_bearer(as_, ec_key):
    as_.trust_workload_issuer("https://platform.example", ec_key.public_jwk(),
                              allowed_subjects=["wl-1"], allowed_scopes=["read"])

    def platform_jwt(**claims):
        now = int(time.time())
        base = {"iss": "https://platform.example", "sub": "wl-1", "aud": as_.issuer,
                "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        base.update(claims)
        return jws().sign(base, ec_key, "ES256", headers={"typ": "JWT"})

    def grant(assertion, **extra):
        data = {"grant_type": GRANT_JWT_BEARER, "assertion": assertion,
                "resource": "https://mcp.example/mcp"}
        data.update(extra)
        return post_token(as_, data)

    ok = grant(platform_jwt(), scope="read")
    assert ok.status_code == 200, ok.text
    info = as_.introspect(ok.json()["access_token"])
    assert info["sub"] == "wl-1" and info["client_id"] is None
    assert info["resource"] == "https://mcp.example/mcp"
    assert grant(platform_jwt(aud=as_.token_endpoint)).status_code == 200
    assert grant(platform_jwt(aud="https://wrong.example")).json()["error"] == "invalid_grant"
    assert grant(platform_jwt(exp=int(time.time()) - 1)).json()["error"] == "invalid_grant"
    assert grant(platform_jwt(iss="https://unknown")).json()["error"] == "invalid_grant"
    assert grant(platform_jwt(sub="wl-2")).json()["error"] == "unauthorized_client"
    assert grant(platform_jwt(), scope="admin").json()["error"] == "invalid_scope"
    assert grant("not-a-jwt").json()["error"] == "invalid_grant"
    assert post_token(as_, {"grant_type": GRANT_JWT_BEARER}).json()["error"] == \
        "invalid_request"
    replay = platform_jwt()
    assert grant(replay).status_code == 200
    assert grant(replay).json()["error"] == "invalid_grant"


# -- recording, lifecycle, hygiene -----------------------------------------------------------


def test_recorded_request_and_headers():
    headers = Headers([("Authorization", "Bearer secret-token"), ("X-A", "1"),
                       ("x-a", "2")])
    assert headers.get("authorization") == "Bearer secret-token"
    assert headers.get_all("X-A") == ["1", "2"] and "x-A" in headers
    assert "secret-token" not in repr(headers)
    rec = RecordedRequest("POST", "/token?a=1", Headers([("Content-Type", FORM)]),
                          b"grant_type=x&scope=a+b", 0.0, 200)
    assert rec.form == {"grant_type": "x", "scope": "a b"}
    assert rec.query == {"a": ["1"]} and rec.url_path == "/token"
    assert repr(rec) == "RecordedRequest(POST /token -> 200)"


def test_reprs_hide_secrets(stack):
    assert stack.client_secret not in repr(stack.client)
    assert stack.client_secret not in repr(stack)
    assert repr(stack.as_) == "AuthorizationServer(issuer=%r)" % stack.as_.issuer


def test_reset_records_and_revoke(stack):
    token = cc_token(stack)
    assert len(stack.as_.token_requests()) == 1
    stack.as_.reset_records()
    assert stack.as_.requests == []
    stack.as_.revoke(token)
    assert stateless(stack.mcp_url, token, "ping").status_code == 401


def test_stop_closes_keep_alive_connections():
    server = AuthorizationServer().start()
    with requests.Session() as session:
        assert session.get(server.metadata_url, timeout=5).status_code == 200
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(server.metadata_url, timeout=5)
    server.stop()  # idempotent


def test_servers_bind_loopback_and_write_nothing_to_stderr(capfd, stack):
    assert stack.as_.base_url.startswith("http://127.0.0.1:")
    assert stack.mcp._httpd.server_address[0] == "127.0.0.1"
    requests.get(stack.as_.base_url + "/missing", timeout=5)
    mcp_post(stack.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert stack.as_.errors == [] and stack.mcp.errors == []


def test_loopback_stack_docstring_example():
    with LoopbackStack(allowed_scopes=["tools"]) as stack:
        token = requests.post(stack.as_.token_endpoint, data={
            "grant_type": "client_credentials", "scope": "tools",
            "resource": stack.mcp.resource,
        }, auth=(stack.client_id, stack.client_secret), timeout=5).json()["access_token"]
        reply = stateless(stack.mcp_url, token, "tools/call",
                          {"name": "add", "arguments": {"a": 1, "b": 2}}, name="add")
        assert reply.json()["result"]["content"][0]["text"] == "3"
