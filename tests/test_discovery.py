"""Tests for mcpauth.discovery: RFC 9110 §11 challenges, RFC 9728, RFC 8414, MCP discovery.

Vectors are REQUIREMENTS.md §2.5 (well-known URLs) and §2.6 (WWW-Authenticate); the
conformance layouts are modelcontextprotocol/conformance src/scenarios/client/auth/
discovery-metadata.ts (metadata-default, metadata-var1..3), resource-mismatch,
metadata-issuer-mismatch and authorization-server-migration.
"""

import json
import logging
import pickle
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from mcpauth.discovery import (
    WELL_KNOWN_OAUTH,
    WELL_KNOWN_OIDC,
    WELL_KNOWN_PRM,
    AuthorizationServerMetadata,
    Challenge,
    ProtectedResourceMetadata,
    authorization_server_metadata_urls,
    bearer_challenge,
    discover,
    fetch_authorization_server_metadata,
    fetch_protected_resource_metadata,
    parse_authorization_server_metadata,
    parse_protected_resource_metadata,
    parse_www_authenticate,
    protected_resource_metadata_urls,
    validate_resource,
    validate_resource_metadata_url,
)
from mcpauth.errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    IssuerMismatchError,
    ProtocolError,
    ResourceMismatchError,
    TransportError,
)
from mcpauth.transport import HttpRequest, HttpResponse, RequestsTransport, Transport, check_url

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    hypothesis = None


# --------------------------------------------------------------------------------------
# Fakes
# --------------------------------------------------------------------------------------

JSON = (("Content-Type", "application/json; charset=utf-8"),)


def json_response(doc, status=200, headers=JSON):
    return HttpResponse(status, headers, json.dumps(doc).encode("utf-8"))


def text_response(status, body=b"nope", ctype="text/plain"):
    return HttpResponse(status, (("Content-Type", ctype),), body)


class FakeTransport(Transport):
    """Records HttpRequests; answers from a URL map (404 for anything unmapped).

    Applies the https policy like RequestsTransport, so an InsecureEndpointError is
    raised before a request is recorded.
    """

    def __init__(self, routes=None, allow_insecure_http=False):
        self.routes = dict(routes or {})
        self.requests = []
        self.allow_insecure_http = allow_insecure_http

    def __call__(self, request):
        check_url(request.url, self.allow_insecure_http)
        self.requests.append(request)
        answer = self.routes.get(request.url)
        if answer is None:
            return text_response(404)._replace(url=request.url)
        if isinstance(answer, Exception):
            raise answer
        return answer._replace(url=request.url)

    @property
    def urls(self):
        return [r.url for r in self.requests]


MCP = "https://mcp.example.com/mcp"
AS1 = "https://as1.example.com"
AS2 = "https://as2.example.com/tenant2"


def prm_doc(resource=MCP, servers=(AS1,), **extra):
    doc = {"resource": resource, "authorization_servers": list(servers)}
    doc.update(extra)
    return doc


def as_doc(issuer, token_endpoint=None, **extra):
    doc = {"issuer": issuer, "token_endpoint": token_endpoint or issuer.rstrip("/") + "/token"}
    doc.update(extra)
    return doc


# --------------------------------------------------------------------------------------
# WWW-Authenticate: REQUIREMENTS §2.6 vectors
# --------------------------------------------------------------------------------------

V9_URL = "http://localhost:1234/.well-known/oauth-protected-resource/mcp"

WWW_AUTHENTICATE_VECTORS = [
    # 1. RFC 9728 §5.1
    ('Bearer resource_metadata="https://resource.example.com/.well-known/oauth-protected-resource"',
     [Challenge("bearer", {"resource_metadata":
                           "https://resource.example.com/.well-known/oauth-protected-resource"})]),
    # 2. MCP 401
    ('Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", '
     'scope="files:read"',
     [Challenge("bearer", {"resource_metadata":
                           "https://mcp.example.com/.well-known/oauth-protected-resource",
                           "scope": "files:read"})]),
    # 3. MCP 403
    ('Bearer error="insufficient_scope", scope="files:write", resource_metadata='
     '"https://mcp.example.com/.well-known/oauth-protected-resource", error_description='
     '"File write permission required for this operation"',
     [Challenge("bearer", {
         "error": "insufficient_scope", "scope": "files:write",
         "resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource",
         "error_description": "File write permission required for this operation"})]),
    # 4. RFC 6750 §3
    ('Bearer realm="example", error="invalid_token", error_description="The access token expired"',
     [Challenge("bearer", {"realm": "example", "error": "invalid_token",
                           "error_description": "The access token expired"})]),
    # 5. comma inside quotes (RFC 6750 §3)
    ('Bearer scope="urn:example:channel=HBO&urn:example:rating=G,PG-13"',
     [Challenge("bearer", {"scope": "urn:example:channel=HBO&urn:example:rating=G,PG-13"})]),
    # 6. RFC 9449 Fig. 17: bare Bearer, then DPoP
    ('Bearer, DPoP algs="ES256 PS256"',
     [Challenge("bearer", {}), Challenge("dpop", {"algs": "ES256 PS256"})]),
    # 7. RFC 9449 Fig. 18
    ('Bearer error="invalid_token", error_description="Invalid token", DPoP algs="ES256 PS256"',
     [Challenge("bearer", {"error": "invalid_token", "error_description": "Invalid token"}),
      Challenge("dpop", {"algs": "ES256 PS256"})]),
    # 8. RFC 9449 Fig. 24
    ('DPoP error="use_dpop_nonce", '
     'error_description="Resource server requires nonce in DPoP proof"',
     [Challenge("dpop", {"error": "use_dpop_nonce",
                         "error_description": "Resource server requires nonce in DPoP proof"})]),
    # 9. conformance DPoP 401
    ('DPoP error="use_dpop_nonce", resource_metadata="{}"'.format(V9_URL),
     [Challenge("dpop", {"error": "use_dpop_nonce", "resource_metadata": V9_URL})]),
    # 10. case-insensitive scheme and parameter names (RFC 9110 §11)
    ('bearer Resource_Metadata="https://x/.well-known/oauth-protected-resource"',
     [Challenge("bearer",
                {"resource_metadata": "https://x/.well-known/oauth-protected-resource"})]),
    # 11. two header fields joined by requests with ", "
    ('Bearer resource_metadata="https://x/prm", scope="a b", '
     'DPoP algs="ES256", error="use_dpop_nonce"',
     [Challenge("bearer", {"resource_metadata": "https://x/prm", "scope": "a b"}),
      Challenge("dpop", {"algs": "ES256", "error": "use_dpop_nonce"})]),
    # 12. unquoted value that is not a strict token (":")
    ("Bearer scope=files:read", [Challenge("bearer", {"scope": "files:read"})]),
]


@pytest.mark.parametrize("value,expected", WWW_AUTHENTICATE_VECTORS)
def test_www_authenticate_vectors(value, expected):
    assert parse_www_authenticate(value) == expected


def test_www_authenticate_two_header_fields_via_http_response():
    # Vector 11 as it really arrives: two WWW-Authenticate lines, joined by the response.
    response = HttpResponse(401, (
        ("WWW-Authenticate", 'Bearer resource_metadata="https://x/prm"'),
        ("www-authenticate", 'DPoP algs="ES256 PS256"'),
    ))
    assert parse_www_authenticate(response.header("WWW-Authenticate")) == [
        Challenge("bearer", {"resource_metadata": "https://x/prm"}),
        Challenge("dpop", {"algs": "ES256 PS256"}),
    ]


@pytest.mark.parametrize("value,expected", [
    # quoted-pair escapes, RFC 9110 §5.6.4
    (r'Bearer realm="a\"b\\c\d"', [Challenge("bearer", {"realm": 'a"b\\cd'})]),
    # OWS/BWS around "=", tabs, empty list elements
    ('Bearer  realm = "x" ,\t, scope\t=\ty , ,',
     [Challenge("bearer", {"realm": "x", "scope": "y"})]),
    ("  ,, Bearer", [Challenge("bearer", {})]),
    # token68 (RFC 9110 §11.2) and a following challenge
    ("Basic YWxhZGRpbjpvcGVuc2VzYW1l==, Bearer realm=x",
     [Challenge("basic", {}, "YWxhZGRpbjpvcGVuc2VzYW1l=="), Challenge("bearer", {"realm": "x"})]),
    ("Negotiate a87421000492aa874209af8bc028",
     [Challenge("negotiate", {}, "a87421000492aa874209af8bc028")]),
    # empty quoted value
    ('Bearer realm=""', [Challenge("bearer", {"realm": ""})]),
    # a value that is a token68-looking string
    ("Bearer scope=abc==", [Challenge("bearer", {"scope": "abc=="})]),
    # non-ASCII (obs-text, as requests decodes headers as latin-1)
    ('Bearer realm="caf\u00e9"', [Challenge("bearer", {"realm": "caf\u00e9"})]),
    # parameter after a bare scheme and a comma is attached to it (documented leniency)
    ('Bearer, realm="x"', [Challenge("bearer", {"realm": "x"})]),
])
def test_www_authenticate_syntax(value, expected):
    assert parse_www_authenticate(value) == expected


def test_www_authenticate_duplicate_params_first_wins():
    value = 'Bearer resource_metadata="https://good/prm", RESOURCE_METADATA="https://evil/prm"'
    assert parse_www_authenticate(value) == [
        Challenge("bearer", {"resource_metadata": "https://good/prm"})]


@pytest.mark.parametrize("value,expected", [
    (None, []),
    ("", []),
    (",,,,", []),
    (" , ,\t,", []),
    # unterminated quote: the challenge, with the parameters read before it
    ('Bearer realm="x", error="unterminated', [Challenge("bearer", {"realm": "x"})]),
    ('Bearer realm="x', [Challenge("bearer", {})]),
    # "Bearer realm" (missing value) is grammatically a token68; "realm=" too
    ("Bearer realm", [Challenge("bearer", {}, "realm")]),
    ("Bearer realm=", [Challenge("bearer", {}, "realm=")]),
    # ... and a parameter after a token68 is garbage
    ('Bearer realm=, scope="a"', [Challenge("bearer", {}, "realm=")]),
    ('Bearer realm=, , DPoP algs=ES256', [Challenge("bearer", {}, "realm="),
                                          Challenge("dpop", {"algs": "ES256"})]),
    # NUL bytes and control characters stop parsing
    ("Bearer\x00 realm=x", [Challenge("bearer", {})]),
    ('Bearer realm="a\x00b", DPoP algs=x', [Challenge("bearer", {})]),
    ("Bearer realm=x\x00, DPoP", [Challenge("bearer", {})]),
    ("\x00Bearer", []),
    # parameter with no challenge
    ('realm="x", Bearer', []),
    ("=", []),
    ('"Bearer"', []),
    # missing comma between parameters
    ('Bearer realm="a" error="b"', [Challenge("bearer", {})]),
    ('Bearer realm="a"b', [Challenge("bearer", {})]),
    # a scheme glued to garbage
    ('Bearer"x"', [Challenge("bearer", {})]),
    # a second bare word where a parameter is due
    ('Bearer realm "x"', [Challenge("bearer", {})]),
    # "=" with no value after it
    ('Bearer a="x", b=, c=d', [Challenge("bearer", {"a": "x"})]),
    ('Bearer a="x", b= "y"', [Challenge("bearer", {"a": "x", "b": "y"})]),
])
def test_www_authenticate_garbage(value, expected):
    assert parse_www_authenticate(value) == expected


@pytest.mark.parametrize("value", [b'Bearer realm="x"', 42, ["Bearer"], object()])
def test_www_authenticate_non_string_is_empty(value):
    assert parse_www_authenticate(value) == []


def test_www_authenticate_huge_input_is_capped_and_fast():
    start = time.monotonic()
    assert parse_www_authenticate('Bearer realm="' + "a" * 100000 + '"') == [
        Challenge("bearer", {})]  # the quote is cut by the 16 KiB cap: unterminated
    many = ", ".join('p{}="v"'.format(i) for i in range(20000))
    result = parse_www_authenticate("Bearer " + many)
    assert len(result) == 1 and 0 < len(result[0].params) < 20000
    assert parse_www_authenticate("," * 100000) == []
    assert parse_www_authenticate("\\" * 100000) == []
    assert parse_www_authenticate('Bearer x="' + "\\\"" * 50000) == [Challenge("bearer", {})]
    late = "Bearer " + " " * 17000 + 'resource_metadata="https://evil/"'
    assert parse_www_authenticate(late) == [Challenge("bearer", {})]
    assert time.monotonic() - start < 5.0


def test_bearer_challenge():
    assert bearer_challenge('DPoP algs="ES256", Bearer scope="a"') == Challenge(
        "bearer", {"scope": "a"})
    assert bearer_challenge('DPoP algs="ES256"') is None
    assert bearer_challenge(None) is None
    assert bearer_challenge("Bearer") == Challenge("bearer", {})


# --------------------------------------------------------------------------------------
# Well-known URLs: REQUIREMENTS §2.5
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("server_url,expected", [
    ("https://resource.example.com", ["https://resource.example.com" + WELL_KNOWN_PRM]),
    ("https://resource.example.com/", ["https://resource.example.com" + WELL_KNOWN_PRM]),
    ("https://resource.example.com/resource1",
     ["https://resource.example.com/.well-known/oauth-protected-resource/resource1",
      "https://resource.example.com/.well-known/oauth-protected-resource"]),
    ("https://example.com/public/mcp",
     ["https://example.com/.well-known/oauth-protected-resource/public/mcp",
      "https://example.com/.well-known/oauth-protected-resource"]),
    # conformance: server .../mcp -> .../oauth-protected-resource/mcp
    ("http://localhost:1234/mcp",
     ["http://localhost:1234/.well-known/oauth-protected-resource/mcp",
      "http://localhost:1234/.well-known/oauth-protected-resource"]),
    # REQUIREMENTS §5 item 8: RFC 9728 §3.1 removes only a "/" right after the host
    ("https://example.com/mcp/",
     ["https://example.com/.well-known/oauth-protected-resource/mcp/",
      "https://example.com/.well-known/oauth-protected-resource"]),
    # query, fragment and userinfo dropped; port kept
    ("https://user:pw@example.com:8443/mcp?key=secret#frag",
     ["https://example.com:8443/.well-known/oauth-protected-resource/mcp",
      "https://example.com:8443/.well-known/oauth-protected-resource"]),
    ("http://[::1]:8080/mcp",
     ["http://[::1]:8080/.well-known/oauth-protected-resource/mcp",
      "http://[::1]:8080/.well-known/oauth-protected-resource"]),
])
def test_protected_resource_metadata_urls(server_url, expected):
    assert protected_resource_metadata_urls(server_url) == expected


@pytest.mark.parametrize("server_url", [
    "mcp.example.com", "/mcp", "ftp://example.com/mcp", "https://", "https://h:99999/",
    "https://exa mple.com/", "", None, 42,
])
def test_protected_resource_metadata_urls_bad_server_url(server_url):
    with pytest.raises(ConfigurationError):
        protected_resource_metadata_urls(server_url)


@pytest.mark.parametrize("issuer,expected", [
    ("https://example.com/issuer1",
     ["https://example.com/.well-known/oauth-authorization-server/issuer1",
      "https://example.com/.well-known/openid-configuration/issuer1",
      "https://example.com/issuer1/.well-known/openid-configuration"]),
    ("https://auth.example.com/tenant1",
     ["https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
      "https://auth.example.com/.well-known/openid-configuration/tenant1",
      "https://auth.example.com/tenant1/.well-known/openid-configuration"]),
    ("https://auth.example.com",
     ["https://auth.example.com/.well-known/oauth-authorization-server",
      "https://auth.example.com/.well-known/openid-configuration"]),
    ("https://example.com:8443/issuer1",
     ["https://example.com:8443/.well-known/oauth-authorization-server/issuer1",
      "https://example.com:8443/.well-known/openid-configuration/issuer1",
      "https://example.com:8443/issuer1/.well-known/openid-configuration"]),
    ("https://example.com/issuer1/",
     ["https://example.com/.well-known/oauth-authorization-server/issuer1",
      "https://example.com/.well-known/openid-configuration/issuer1",
      "https://example.com/issuer1/.well-known/openid-configuration"]),
    ("https://auth.chat.example/",
     ["https://auth.chat.example/.well-known/oauth-authorization-server",
      "https://auth.chat.example/.well-known/openid-configuration"]),
])
def test_authorization_server_metadata_urls(issuer, expected):
    assert authorization_server_metadata_urls(issuer) == expected
    assert expected[0].startswith(issuer.split("/")[0] + "//")


@pytest.mark.parametrize("issuer", [
    "https://as.example.com?tenant=1", "https://as.example.com/#x", "as.example.com",
    "urn:example:as", "", "https://as.example.com/a b",
])
def test_authorization_server_metadata_urls_bad_issuer(issuer):
    with pytest.raises(DiscoveryError):
        authorization_server_metadata_urls(issuer)


def test_well_known_constants():
    assert WELL_KNOWN_PRM == "/.well-known/oauth-protected-resource"
    assert WELL_KNOWN_OAUTH == "/.well-known/oauth-authorization-server"
    assert WELL_KNOWN_OIDC == "/.well-known/openid-configuration"


# --------------------------------------------------------------------------------------
# Protected resource metadata parsing (RFC 9728 §3.2)
# --------------------------------------------------------------------------------------

PRM_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def _prm_response(doc, **kw):
    return json_response(doc, **kw)._replace(url=PRM_URL)


def test_parse_prm_rfc9728_example():
    # RFC 9728 §3.2 example response (abridged), plus an unknown member.
    doc = {
        "resource": "https://resource.example.com",
        "authorization_servers": ["https://as1.example.com", "https://as2.example.net"],
        "bearer_methods_supported": ["header", "body"],
        "scopes_supported": ["profile", "email", "phone"],
        "resource_documentation": "https://resource.example.com/resource_documentation.html",
        "x_unknown": {"nested": [1, 2]},
    }
    prm = parse_protected_resource_metadata(_prm_response(doc))
    assert prm == ProtectedResourceMetadata(
        "https://resource.example.com", ("https://as1.example.com", "https://as2.example.net"),
        ("profile", "email", "phone"), PRM_URL, doc)
    assert prm.raw["x_unknown"] == {"nested": [1, 2]}


def test_parse_prm_optional_members():
    prm = parse_protected_resource_metadata(_prm_response({"resource": MCP}),
                                            require_authorization_servers=False)
    assert prm.authorization_servers == () and prm.scopes_supported is None
    prm = parse_protected_resource_metadata(_prm_response(
        {"resource": MCP, "authorization_servers": None, "scopes_supported": None}),
        require_authorization_servers=False)
    assert prm.authorization_servers == () and prm.scopes_supported is None


@pytest.mark.parametrize("ctype", [
    "application/json", "Application/JSON; charset=UTF-8", "application/problem+json",
])
def test_parse_prm_content_types_accepted(ctype):
    prm = parse_protected_resource_metadata(
        _prm_response(prm_doc(), headers=(("Content-Type", ctype),)))
    assert prm.resource == MCP


@pytest.mark.parametrize("response,status", [
    (text_response(200, b"<html>hi</html>", "text/html"), 200),
    (HttpResponse(200, (), json.dumps(prm_doc()).encode()), 200),  # no content type
    (text_response(200, b"not json", "application/json"), 200),
    (text_response(200, b"\xff\xfe", "application/json"), 200),
    (text_response(200, b"[1, 2]", "application/json"), 200),
    (text_response(200, b'"a string"', "application/json"), 200),
    (text_response(200, b"", "application/json"), 200),
    (text_response(200, b"[" * 100000, "application/json"), 200),
    (text_response(200, b"{" + b" " * (1024 * 1024) + b"}", "application/json"), 200),
    (json_response(prm_doc(), status=201), 201),
    (json_response(prm_doc(), status=404), 404),
    (json_response(prm_doc(), status=500), 500),
])
def test_parse_prm_bad_responses(response, status):
    with pytest.raises(DiscoveryError) as info:
        parse_protected_resource_metadata(response._replace(url=PRM_URL))
    assert info.value.status_code == status


@pytest.mark.parametrize("doc", [
    {"authorization_servers": [AS1]},
    prm_doc(resource=""),
    prm_doc(resource=None),
    prm_doc(resource=42),
    prm_doc(resource=["https://mcp.example.com/mcp"]),
    prm_doc(resource="mcp.example.com"),
    prm_doc(resource="/mcp"),
    prm_doc(resource="https://mcp.example.com#fragment"),
    prm_doc(resource="https://mcp.example.com/mcp#"),
    prm_doc(resource="urn:example:mcp"),
    prm_doc(resource="https://mcp.example.com/m cp"),
    prm_doc(servers=()),
    {"resource": MCP},
    {"resource": MCP, "authorization_servers": AS1},
    {"resource": MCP, "authorization_servers": [AS1, 42]},
    {"resource": MCP, "authorization_servers": [{"issuer": AS1}]},
    prm_doc(servers=["as.example.com"]),
    prm_doc(servers=["javascript:alert(1)"]),
    prm_doc(scopes_supported="a b"),
    prm_doc(scopes_supported=["a", None]),
])
def test_parse_prm_bad_documents(doc):
    with pytest.raises(DiscoveryError) as info:
        parse_protected_resource_metadata(_prm_response(doc))
    assert info.value.status_code == 200
    assert "mcp.example.com/.well-known" in str(info.value)


def test_parse_prm_error_messages_never_carry_the_body():
    secret = "body-marker-d0d0"
    with pytest.raises(DiscoveryError) as info:
        parse_protected_resource_metadata(text_response(
            200, ("<html>" + secret + "</html>").encode(), "application/json"))
    assert secret not in str(info.value) and secret not in repr(info.value)


# --------------------------------------------------------------------------------------
# RFC 9728 §3.3 resource validation
# --------------------------------------------------------------------------------------

def _prm(resource):
    return ProtectedResourceMetadata(resource, (AS1,), None, PRM_URL, {})


@pytest.mark.parametrize("resource,server_url", [
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com", "https://mcp.example.com"),
    ("https://mcp.example.com/mcp?x=1", "https://mcp.example.com/mcp?x=1"),
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp#ignored"),
])
def test_validate_resource_exact(resource, server_url):
    validate_resource(_prm(resource), server_url)
    validate_resource(_prm(resource), server_url, allow_prefix=True)


@pytest.mark.parametrize("resource,server_url", [
    ("https://mcp.example.com", "https://mcp.example.com/mcp"),      # var2 shape
    ("https://mcp.example.com/", "https://mcp.example.com"),         # "/" is not ""
    ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"),
    ("https://MCP.example.com/mcp", "https://mcp.example.com/mcp"),  # no case folding
    ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp?x=1"),
    ("https://mcp.example.com/MCP", "https://mcp.example.com/mcp"),
])
def test_validate_resource_strict_rejects_near_misses(resource, server_url):
    with pytest.raises(ResourceMismatchError) as info:
        validate_resource(_prm(resource), server_url)
    assert info.value.received is not None and info.value.expected is not None


@pytest.mark.parametrize("resource,server_url", [
    ("http://localhost:3000", "http://localhost:3000/mcp"),          # conformance var2
    ("https://mcp.example.com/", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com/api", "https://mcp.example.com/api/v1"),
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"),
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp?x=1"),
    ("https://MCP.Example.com/mcp", "HTTPS://mcp.example.com/mcp/tools"),
    ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com", "https://mcp.example.com"),
    ("https://mcp.example.com/", "https://mcp.example.com"),
])
def test_validate_resource_prefix_accepts(resource, server_url):
    validate_resource(_prm(resource), server_url, allow_prefix=True)


@pytest.mark.parametrize("resource,server_url", [
    ("https://mcp.example.com/mcp", "https://mcp.example.com/mcpxxx"),
    ("https://mcp.example.com/folder/", "https://mcp.example.com/folder"),
    ("https://mcp.example.com/mcp/tools", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com:8443/mcp", "https://mcp.example.com/mcp"),
    ("https://other.example.com/mcp", "https://mcp.example.com/mcp"),
    ("https://example.com/mcp", "https://mcp.example.com/mcp"),
    ("http://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
    ("https://evil.example.com/mcp", "https://mcp.example.com/mcp"),
])
def test_validate_resource_prefix_rejects(resource, server_url):
    for allow_prefix in (False, True):
        with pytest.raises(ResourceMismatchError) as info:
            validate_resource(_prm(resource), server_url, allow_prefix=allow_prefix)
        message = str(info.value)
        assert resource.split("://")[1].split("/")[0].lower() in message.lower()
        assert "mcp.example.com" in message


def test_validate_resource_message_redacts_query():
    with pytest.raises(ResourceMismatchError) as info:
        validate_resource(_prm("https://mcp.example.com/mcp"),
                          "https://mcp.example.com/mcp?api_key=hunter2")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value.__dict__)
    assert "differ only" in str(info.value)


# --------------------------------------------------------------------------------------
# RFC 8414 authorization server metadata
# --------------------------------------------------------------------------------------

AS_URL = AS1 + WELL_KNOWN_OAUTH


def _as_response(doc, **kw):
    return json_response(doc, **kw)._replace(url=AS_URL)


def test_parse_as_metadata_m2m_without_authorization_endpoint():
    # RFC 8414 §2 requires authorization_endpoint only for grants that use it; the SDKs'
    # schemas reject this document (REFERENCE §1.2).
    doc = as_doc(AS1, token_endpoint_auth_methods_supported=["private_key_jwt"],
                 token_endpoint_auth_signing_alg_values_supported=["ES256", "RS256"],
                 grant_types_supported=["client_credentials"], scopes_supported=["mcp"],
                 unknown_member={"a": 1})
    md = parse_authorization_server_metadata(_as_response(doc), AS1)
    assert md == AuthorizationServerMetadata(
        AS1, AS1 + "/token", ("private_key_jwt",), ("ES256", "RS256"),
        ("client_credentials",), ("mcp",), AS_URL, doc)
    assert "authorization_endpoint" not in md.raw


def test_parse_as_metadata_optional_lists_absent():
    md = parse_authorization_server_metadata(_as_response(as_doc(AS1)), AS1)
    assert md.token_endpoint_auth_methods_supported is None
    assert md.token_endpoint_auth_signing_alg_values_supported is None
    assert md.grant_types_supported is None and md.scopes_supported is None


def test_parse_as_metadata_issuer_mismatch_mcp_attacker_example():
    # MCP-ASD: a document fetched from attacker.example that says "issuer":
    # "https://honest.example" MUST be rejected.
    response = json_response(as_doc("https://honest.example"))._replace(
        url="https://attacker.example/.well-known/oauth-authorization-server")
    with pytest.raises(IssuerMismatchError) as info:
        parse_authorization_server_metadata(response, "https://attacker.example")
    assert info.value.expected == "https://attacker.example"
    assert info.value.received == "https://honest.example"
    assert isinstance(info.value, DiscoveryError)


@pytest.mark.parametrize("expected,received", [
    ("https://auth.chat.example/", "https://auth.chat.example"),
    ("https://auth.chat.example", "https://auth.chat.example/"),
    ("https://as.example.com", "https://AS.example.com"),
    ("https://as.example.com", "https://as.example.com:443"),
    ("https://as.example.com/tenant1", "https://as.example.com/tenant1/"),
    ("https://as.example.com", "https://as.example.com "),
])
def test_parse_as_metadata_issuer_compared_exactly(expected, received):
    with pytest.raises(IssuerMismatchError):
        parse_authorization_server_metadata(_as_response(as_doc(received)), expected)


def test_parse_as_metadata_trailing_slash_issuer_exact_match():
    issuer = "https://auth.chat.example/"
    md = parse_authorization_server_metadata(
        _as_response(as_doc(issuer, "https://auth.chat.example/oauth2/token")), issuer)
    assert md.issuer == issuer


@pytest.mark.parametrize("token_endpoint", [
    "http://as.example.com/token", "http://10.0.0.1/token",
])
def test_parse_as_metadata_http_token_endpoint_rejected(token_endpoint):
    with pytest.raises(InsecureEndpointError):
        parse_authorization_server_metadata(_as_response(as_doc(AS1, token_endpoint)), AS1)
    md = parse_authorization_server_metadata(_as_response(as_doc(AS1, token_endpoint)), AS1,
                                             allow_insecure_http=True)
    assert md.token_endpoint == token_endpoint


@pytest.mark.parametrize("token_endpoint", [
    "http://localhost:8080/token", "http://127.0.0.1:9/token", "http://[::1]/token",
])
def test_parse_as_metadata_http_loopback_token_endpoint_allowed(token_endpoint):
    md = parse_authorization_server_metadata(_as_response(as_doc(AS1, token_endpoint)), AS1)
    assert md.token_endpoint == token_endpoint


@pytest.mark.parametrize("doc", [
    {"token_endpoint": AS1 + "/token"},
    {"issuer": None, "token_endpoint": AS1 + "/token"},
    {"issuer": [AS1], "token_endpoint": AS1 + "/token"},
    {"issuer": AS1},
    {"issuer": AS1, "token_endpoint": ""},
    {"issuer": AS1, "token_endpoint": None},
    {"issuer": AS1, "token_endpoint": ["https://as1.example.com/token"]},
    {"issuer": AS1, "token_endpoint": "/token"},
    {"issuer": AS1, "token_endpoint": "https://as1.example.com/token#f"},
    {"issuer": AS1, "token_endpoint": "ftp://as1.example.com/token"},
    as_doc(AS1, token_endpoint_auth_methods_supported="client_secret_basic"),
    as_doc(AS1, token_endpoint_auth_signing_alg_values_supported=[None]),
    as_doc(AS1, grant_types_supported={"client_credentials": True}),
    as_doc(AS1, scopes_supported=[1]),
    as_doc(AS1,
           authorization_grant_profiles_supported="urn:ietf:params:oauth:grant-profile:id-jag"),
    as_doc(AS1, dpop_signing_alg_values_supported=[["ES256"]]),
])
def test_parse_as_metadata_bad_documents(doc):
    with pytest.raises(DiscoveryError) as info:
        parse_authorization_server_metadata(_as_response(doc), AS1)
    assert not isinstance(info.value, IssuerMismatchError)  # issuer is AS1 or unusable


@pytest.mark.parametrize("response", [
    text_response(200, b"<html/>", "text/html"),
    text_response(200, b"[]", "application/json"),
    text_response(200, b"{bad", "application/json"),
    json_response(as_doc(AS1), status=404),
    json_response(as_doc(AS1), status=302),
])
def test_parse_as_metadata_bad_responses(response):
    with pytest.raises(DiscoveryError):
        parse_authorization_server_metadata(response._replace(url=AS_URL), AS1)


# --------------------------------------------------------------------------------------
# Fetching protected resource metadata
# --------------------------------------------------------------------------------------

PATH_PRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
ROOT_PRM = "https://mcp.example.com/.well-known/oauth-protected-resource"


def test_fetch_prm_path_based_first():
    t = FakeTransport({PATH_PRM: json_response(prm_doc()),
                       ROOT_PRM: json_response(prm_doc(servers=["https://wrong.example"]))})
    prm = fetch_protected_resource_metadata(t, MCP)
    assert t.urls == [PATH_PRM]  # conformance prm-priority-order: root never requested
    assert prm.authorization_servers == (AS1,) and prm.url == PATH_PRM
    req = t.requests[0]
    assert req.method == "GET" and req.header("Accept") == "application/json"
    assert req.body is None and not req.credentialed


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410])
def test_fetch_prm_4xx_falls_back_to_root(status):
    t = FakeTransport({PATH_PRM: text_response(status), ROOT_PRM: json_response(prm_doc())})
    prm = fetch_protected_resource_metadata(t, MCP)
    assert t.urls == [PATH_PRM, ROOT_PRM] and prm.url == ROOT_PRM


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_fetch_prm_outage_not_masked(status):
    t = FakeTransport({PATH_PRM: text_response(status), ROOT_PRM: json_response(prm_doc())})
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(t, MCP)
    assert info.value.retryable is True and info.value.status_code == status
    assert t.urls == [PATH_PRM]
    # retryable survives pickling (it is set on the instance)
    assert pickle.loads(pickle.dumps(info.value)).retryable is True


@pytest.mark.parametrize("status", [204, 301, 304])
def test_fetch_prm_odd_status_raises_not_retryable(status):
    t = FakeTransport({PATH_PRM: text_response(status), ROOT_PRM: json_response(prm_doc())})
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(t, MCP)
    assert info.value.retryable is False and t.urls == [PATH_PRM]


def test_fetch_prm_invalid_200_raises_without_trying_root():
    t = FakeTransport({PATH_PRM: text_response(200, b"<html/>", "text/html"),
                       ROOT_PRM: json_response(prm_doc())})
    with pytest.raises(DiscoveryError):
        fetch_protected_resource_metadata(t, MCP)
    assert t.urls == [PATH_PRM]


def test_fetch_prm_nothing_published():
    t = FakeTransport()
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(t, MCP)
    assert "does not publish protected resource metadata" in str(info.value)
    assert PATH_PRM in str(info.value) and ROOT_PRM in str(info.value)
    assert info.value.retryable is False and info.value.status_code == 404
    t = FakeTransport({ROOT_PRM: text_response(403)})
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(t, MCP)
    assert info.value.status_code == 403  # the last 4xx: "absent", not "bad document"
    assert t.urls == [PATH_PRM, ROOT_PRM]


def test_fetch_prm_header_url_used_alone():
    custom = "https://mcp.example.com/custom/metadata/location.json"
    t = FakeTransport({custom: json_response(prm_doc()), PATH_PRM: json_response(prm_doc())})
    prm = fetch_protected_resource_metadata(t, MCP, custom)
    assert t.urls == [custom] and prm.url == custom
    t = FakeTransport({PATH_PRM: json_response(prm_doc()), ROOT_PRM: json_response(prm_doc())})
    with pytest.raises(DiscoveryError):
        fetch_protected_resource_metadata(t, MCP, custom)  # 404: no fallback
    assert t.urls == [custom]


def test_fetch_prm_header_url_on_another_host_is_allowed():
    other = "https://metadata.example.net/prm"
    t = FakeTransport({other: json_response(prm_doc())})
    assert fetch_protected_resource_metadata(t, MCP, other).url == other


def test_fetch_prm_resource_mismatch():
    t = FakeTransport({PATH_PRM: json_response(prm_doc(resource="https://evil.example.com/mcp"))})
    with pytest.raises(ResourceMismatchError):
        fetch_protected_resource_metadata(t, MCP)
    with pytest.raises(ResourceMismatchError):
        fetch_protected_resource_metadata(t, MCP, allow_prefix=True)


def test_fetch_prm_prefix_option():
    t = FakeTransport({ROOT_PRM: json_response(prm_doc(resource="https://mcp.example.com"))})
    with pytest.raises(ResourceMismatchError):
        fetch_protected_resource_metadata(t, MCP)
    prm = fetch_protected_resource_metadata(t, MCP, allow_prefix=True)
    assert prm.resource == "https://mcp.example.com"


def test_fetch_prm_require_authorization_servers_flag():
    t = FakeTransport({PATH_PRM: json_response({"resource": MCP})})
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(t, MCP)
    assert "authorization_servers" in str(info.value)
    prm = fetch_protected_resource_metadata(t, MCP, require_authorization_servers=False)
    assert prm.authorization_servers == ()


def test_fetch_prm_https_policy_before_sending():
    t = FakeTransport()
    with pytest.raises(InsecureEndpointError):
        fetch_protected_resource_metadata(t, "http://mcp.example.com/mcp")
    with pytest.raises(InsecureEndpointError):
        fetch_protected_resource_metadata(t, MCP, "http://mcp.example.com/prm")
    assert t.urls == []
    t = FakeTransport({"http://mcp.example.com/.well-known/oauth-protected-resource/mcp":
                       json_response(prm_doc(resource="http://mcp.example.com/mcp"))},
                      allow_insecure_http=True)
    assert fetch_protected_resource_metadata(t, "http://mcp.example.com/mcp").resource == (
        "http://mcp.example.com/mcp")


def test_fetch_prm_transport_error_propagates():
    t = FakeTransport({PATH_PRM: TransportError("GET failed: could not connect")})
    with pytest.raises(TransportError):
        fetch_protected_resource_metadata(t, MCP)
    assert t.urls == [PATH_PRM]


# --------------------------------------------------------------------------------------
# A6 / RFC 9728 §7.7: resource_metadata URL guard
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest",
    "http://169.254.169.254/latest/meta-data/",
    "https://2852039166/latest",              # 169.254.169.254 as one number
    "https://0xa9.0xfe.0xa9.0xfe/latest",
    "https://[fe80::1]/prm",
    "https://[::ffff:169.254.169.254]/prm",
    "https://0.0.0.0/prm",
    "https://[::]/prm",
    "https://224.0.0.1/prm",
    "https://240.0.0.1/prm",
    "https://127.0.0.1/prm",                  # loopback while the MCP server is remote
    "https://[::1]/prm",
    "https://mcp.example.com/prm#frag",
    "file:///etc/passwd",
    "gopher://mcp.example.com/",
    "",
])
def test_resource_metadata_url_guard_rejects(url):
    with pytest.raises(DiscoveryError):
        validate_resource_metadata_url(url, MCP)
    t = FakeTransport(allow_insecure_http=True)
    with pytest.raises(DiscoveryError):
        fetch_protected_resource_metadata(t, MCP, url)
    assert t.urls == []


@pytest.mark.parametrize("url,server_url", [
    ("https://metadata.example.net/prm", MCP),
    ("https://10.0.0.5/prm", MCP),                      # private ranges are allowed
    ("https://cafe.be/prm", MCP),                       # hex-looking name, not an address
    ("http://127.0.0.1:9000/prm", "http://localhost:8000/mcp"),
    ("http://localhost:9000/prm", "http://127.0.0.1:8000/mcp"),
    ("https://169.254.10.10/prm", "https://169.254.10.10/mcp"),  # the server's own host
])
def test_resource_metadata_url_guard_allows(url, server_url):
    validate_resource_metadata_url(url, server_url)


def test_resource_metadata_url_same_origin_option():
    validate_resource_metadata_url("https://mcp.example.com/custom.json", MCP, same_origin=True)
    validate_resource_metadata_url("https://MCP.example.com:443/x", MCP, same_origin=True)
    for url in ("https://metadata.example.net/prm", "https://mcp.example.com:8443/prm",
                "http://mcp.example.com/prm"):
        validate_resource_metadata_url(url, MCP)
        with pytest.raises(DiscoveryError):
            validate_resource_metadata_url(url, MCP, same_origin=True)


# --------------------------------------------------------------------------------------
# Fetching authorization server metadata
# --------------------------------------------------------------------------------------

T1 = "https://auth.example.com/tenant1"
T1_URLS = authorization_server_metadata_urls(T1)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_fetch_as_metadata_order_with_path(index):
    t = FakeTransport({T1_URLS[index]: json_response(as_doc(T1))})
    md = fetch_authorization_server_metadata(t, T1)
    assert t.urls == T1_URLS[:index + 1] and md.url == T1_URLS[index]
    assert "https://auth.example.com" + WELL_KNOWN_OAUTH not in t.urls


def test_fetch_as_metadata_pathless():
    t = FakeTransport({AS1 + WELL_KNOWN_OIDC: json_response(as_doc(AS1))})
    md = fetch_authorization_server_metadata(t, AS1)
    assert t.urls == [AS1 + WELL_KNOWN_OAUTH, AS1 + WELL_KNOWN_OIDC] and md.issuer == AS1


def test_fetch_as_metadata_nothing_found():
    t = FakeTransport()
    with pytest.raises(DiscoveryError) as info:
        fetch_authorization_server_metadata(t, T1)
    assert t.urls == T1_URLS
    assert "does not publish metadata" in str(info.value) and not info.value.retryable
    assert info.value.status_code == 404


def test_fetch_as_metadata_issuer_mismatch_stops():
    t = FakeTransport({T1_URLS[0]: json_response(as_doc("https://attacker.example.com")),
                       T1_URLS[1]: json_response(as_doc(T1))})
    with pytest.raises(IssuerMismatchError):
        fetch_authorization_server_metadata(t, T1)
    assert t.urls == T1_URLS[:1]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_fetch_as_metadata_outage_not_masked(status):
    t = FakeTransport({T1_URLS[0]: text_response(status), T1_URLS[1]: json_response(as_doc(T1))})
    with pytest.raises(DiscoveryError) as info:
        fetch_authorization_server_metadata(t, T1)
    assert info.value.retryable and t.urls == T1_URLS[:1]


def test_fetch_as_metadata_invalid_200_raises():
    t = FakeTransport({T1_URLS[0]: text_response(200, b"<html/>", "text/html"),
                       T1_URLS[1]: json_response(as_doc(T1))})
    with pytest.raises(DiscoveryError):
        fetch_authorization_server_metadata(t, T1)
    assert t.urls == T1_URLS[:1]


def test_fetch_as_metadata_insecure_policy_follows_transport():
    issuer = "http://as.example.com"
    routes = {issuer + WELL_KNOWN_OAUTH: json_response(as_doc(issuer))}
    t = FakeTransport(routes)
    with pytest.raises(InsecureEndpointError):
        fetch_authorization_server_metadata(t, issuer)
    assert t.urls == []
    t = FakeTransport(routes, allow_insecure_http=True)
    assert fetch_authorization_server_metadata(t, issuer).token_endpoint == issuer + "/token"
    # https metadata, http token endpoint: refused unless the transport allows http
    routes = {AS1 + WELL_KNOWN_OAUTH: json_response(as_doc(AS1, "http://as1.example.com/token"))}
    with pytest.raises(InsecureEndpointError):
        fetch_authorization_server_metadata(FakeTransport(routes), AS1)
    md = fetch_authorization_server_metadata(FakeTransport(routes, allow_insecure_http=True), AS1)
    assert md.token_endpoint == "http://as1.example.com/token"


# --------------------------------------------------------------------------------------
# discover()
# --------------------------------------------------------------------------------------

def _world(prm=None, *issuers, **extra_routes):
    routes = {PATH_PRM: json_response(prm or prm_doc())}
    for issuer in issuers:
        routes[authorization_server_metadata_urls(issuer)[0]] = json_response(as_doc(issuer))
    routes.update(extra_routes)
    return FakeTransport(routes)


def test_discover_default_uses_first_authorization_server():
    t = _world(prm_doc(servers=[AS1, AS2]), AS1, AS2)
    result = discover(t, MCP)
    assert result.issuer == AS1 and result.resource == MCP
    assert result.metadata.token_endpoint == AS1 + "/token"
    assert result.prm is not None and result.prm.authorization_servers == (AS1, AS2)
    assert t.urls == [PATH_PRM, AS1 + WELL_KNOWN_OAUTH]


def test_discover_expected_issuer_selects_listed_server():
    t = _world(prm_doc(servers=[AS1, AS2]), AS1, AS2)
    result = discover(t, MCP, expected_issuer=AS2)
    assert result.issuer == AS2
    assert t.urls == [PATH_PRM, authorization_server_metadata_urls(AS2)[0]]
    assert not any("as1.example.com" in u for u in t.urls)


def test_discover_expected_issuer_not_listed_makes_no_request_to_other_as():
    # REQUIREMENTS B6; conformance authorization-server-migration with a pin to AS1.
    t = _world(prm_doc(servers=[AS2]), AS1, AS2)
    with pytest.raises(AuthorizationServerMismatchError) as info:
        discover(t, MCP, expected_issuer=AS1)
    assert info.value.expected_issuer == AS1 and info.value.issuer == AS2
    assert t.urls == [PATH_PRM]


def test_discover_mismatch_message_lists_servers_bounded():
    servers = ["https://as{}.example.com".format(i) for i in range(7)]
    t = _world(prm_doc(servers=servers))
    with pytest.raises(AuthorizationServerMismatchError) as info:
        discover(t, MCP, expected_issuer=AS2)
    message = str(info.value)
    assert "as4.example.com" in message and "as5.example.com" not in message
    assert message.count("...") == 1


def test_discover_pin_checked_against_returned_metadata(monkeypatch):
    # Defence in depth: even if the metadata fetch returned another issuer (a future
    # bug in the §3.3 echo check), the pin still refuses it.
    import mcpauth.discovery as discovery

    def broken_fetch(transport, issuer):
        return discovery.AuthorizationServerMetadata(
            AS1, AS1 + "/token", None, None, None, None, AS1 + WELL_KNOWN_OAUTH, {})

    monkeypatch.setattr(discovery, "fetch_authorization_server_metadata", broken_fetch)
    t = _world(prm_doc(servers=[AS2]))
    with pytest.raises(AuthorizationServerMismatchError) as info:
        discover(t, MCP, expected_issuer=AS2)
    assert info.value.issuer == AS1 and info.value.expected_issuer == AS2


def test_fetch_uses_request_url_when_transport_gives_none():
    class NoUrlTransport(FakeTransport):
        def __call__(self, request):
            return super().__call__(request)._replace(url="")

    t = NoUrlTransport({PATH_PRM: json_response(prm_doc())})
    assert fetch_protected_resource_metadata(t, MCP).url == PATH_PRM


def test_discover_expected_issuer_compared_exactly():
    t = _world(prm_doc(servers=[AS1]), AS1)
    with pytest.raises(AuthorizationServerMismatchError):
        discover(t, MCP, expected_issuer=AS1 + "/")
    assert t.urls == [PATH_PRM]


def test_discover_configured_issuer_tolerates_absent_prm():
    t = FakeTransport({AS1 + WELL_KNOWN_OAUTH: json_response(as_doc(AS1))})
    result = discover(t, MCP, issuer=AS1)
    assert result.prm is None and result.resource == MCP and result.issuer == AS1
    assert t.urls == [PATH_PRM, ROOT_PRM, AS1 + WELL_KNOWN_OAUTH]


def test_discover_configured_issuer_does_not_mask_prm_outage():
    t = FakeTransport({PATH_PRM: text_response(503),
                       AS1 + WELL_KNOWN_OAUTH: json_response(as_doc(AS1))})
    with pytest.raises(DiscoveryError) as info:
        discover(t, MCP, issuer=AS1)
    assert info.value.retryable and t.urls == [PATH_PRM]


def test_discover_configured_issuer_with_prm_without_servers():
    t = _world({"resource": MCP}, AS1)
    result = discover(t, MCP, issuer=AS1)
    assert result.prm is not None and result.resource == MCP and result.issuer == AS1


def test_discover_configured_issuer_not_listed():
    t = _world(prm_doc(servers=[AS2]), AS1, AS2)
    with pytest.raises(AuthorizationServerMismatchError) as info:
        discover(t, MCP, issuer=AS1)
    assert info.value.expected_issuer == AS1 and info.value.issuer == AS2
    assert t.urls == [PATH_PRM]


def test_discover_configured_issuer_still_validates_resource():
    t = _world(prm_doc(resource="https://evil.example.com/mcp"), AS1)
    with pytest.raises(ResourceMismatchError):
        discover(t, MCP, issuer=AS1)
    assert t.urls == [PATH_PRM]


def test_discover_bad_configuration_before_any_request():
    t = _world(prm_doc(), AS1)
    with pytest.raises(ConfigurationError):
        discover(t, MCP, issuer=AS1, expected_issuer=AS2)
    with pytest.raises(ConfigurationError):
        discover(t, MCP, issuer="as1.example.com")
    with pytest.raises(ConfigurationError):
        discover(t, MCP, issuer=AS1 + "?x=1")
    with pytest.raises(ConfigurationError):
        discover(t, "https://mcp.example.com/mcp#frag")
    with pytest.raises(ConfigurationError):
        discover(t, "mcp.example.com/mcp")
    assert t.urls == []


def test_discover_no_legacy_fallback():
    # REFERENCE §1.3: the SDKs fall back to <mcp-origin>/token (and origin AS metadata)
    # when PRM is missing. mcpauth raises instead and requests nothing else.
    t = FakeTransport({
        "https://mcp.example.com" + WELL_KNOWN_OAUTH:
            json_response(as_doc("https://mcp.example.com")),
    })
    with pytest.raises(DiscoveryError) as info:
        discover(t, MCP)
    assert "does not publish protected resource metadata" in str(info.value)
    assert t.urls == [PATH_PRM, ROOT_PRM]
    assert all(r.method == "GET" and r.body is None for r in t.requests)


def test_discover_prm_500_is_not_a_fallback():
    t = FakeTransport({PATH_PRM: text_response(500), ROOT_PRM: json_response(prm_doc())})
    with pytest.raises(DiscoveryError) as info:
        discover(t, MCP)
    assert info.value.retryable and t.urls == [PATH_PRM]


def test_discover_resource_mismatch_conformance():
    # conformance auth/resource-mismatch: no request beyond PRM.
    t = _world(prm_doc(resource="https://evil.example.com/mcp"), AS1)
    for allow in (False, True):
        with pytest.raises(ResourceMismatchError):
            discover(t, MCP, allow_resource_prefix=allow)
    assert t.urls == [PATH_PRM, PATH_PRM]


def test_discover_metadata_issuer_mismatch_conformance():
    # conformance auth/metadata-issuer-mismatch: AS metadata at the right URL names
    # https://attacker.example.com; nothing under /mismatched-as/ may be requested.
    base = "http://localhost:4001"
    server = "http://localhost:4000/mcp"
    doc = {"issuer": "https://attacker.example.com",
           "token_endpoint": base + "/mismatched-as/token",
           "authorization_endpoint": base + "/mismatched-as/authorize"}
    t = FakeTransport({
        "http://localhost:4000/.well-known/oauth-protected-resource/mcp":
            json_response(prm_doc(resource=server, servers=[base])),
        base + WELL_KNOWN_OAUTH: json_response(doc),
        base + WELL_KNOWN_OIDC: json_response(as_doc(base)),
    })
    with pytest.raises(IssuerMismatchError):
        discover(t, server)
    assert t.urls[-1] == base + WELL_KNOWN_OAUTH
    assert not any("mismatched-as" in u for u in t.urls)


def test_discover_rejects_link_local_authorization_server_from_prm():
    t = _world(prm_doc(servers=["https://169.254.169.254"]))
    with pytest.raises(DiscoveryError):
        discover(t, MCP)
    assert t.urls == [PATH_PRM]


def test_discover_authorization_server_migration():
    # conformance auth/authorization-server-migration: PRM flips to AS2; re-discovery
    # follows it, and a pin to AS1 refuses it.
    t = _world(prm_doc(servers=[AS1]), AS1, AS2)
    assert discover(t, MCP).issuer == AS1
    t.routes[PATH_PRM] = json_response(prm_doc(servers=[AS2]))
    assert discover(t, MCP).issuer == AS2
    before = list(t.urls)
    with pytest.raises(AuthorizationServerMismatchError):
        discover(t, MCP, expected_issuer=AS1)
    assert t.urls[len(before):] == [PATH_PRM]


# conformance layouts (REQUIREMENTS §2.5, discovery-metadata.ts); P = MCP, Q = AS
P = "http://localhost:3000"
Q = "http://localhost:3001"
P_MCP = P + "/mcp"


def _traps(t):
    bad = {P + WELL_KNOWN_PRM, Q + WELL_KNOWN_OAUTH}
    return [u for u in t.urls if u in bad]


def test_conformance_metadata_default():
    prm_url = P + "/.well-known/oauth-protected-resource/mcp"
    t = FakeTransport({
        prm_url: json_response(prm_doc(resource=P_MCP, servers=[Q])),
        Q + WELL_KNOWN_OAUTH: json_response(as_doc(Q)),
    })
    header = 'Bearer resource_metadata="{}"'.format(prm_url)
    url = bearer_challenge(header).params["resource_metadata"]
    result = discover(t, P_MCP, resource_metadata_url=url)
    assert t.urls == [prm_url, Q + WELL_KNOWN_OAUTH]
    assert P + WELL_KNOWN_PRM not in t.urls  # prm-priority-order trap
    assert result.resource == P_MCP and result.metadata.token_endpoint == Q + "/token"


def test_conformance_metadata_var1():
    prm_url = P + "/.well-known/oauth-protected-resource/mcp"
    oidc = dict(as_doc(Q), jwks_uri=Q + "/jwks", subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"])
    t = FakeTransport({
        prm_url: json_response(prm_doc(resource=P_MCP, servers=[Q])),
        Q + WELL_KNOWN_OIDC: json_response(oidc),
    })
    result = discover(t, P_MCP)
    assert t.urls == [prm_url, Q + WELL_KNOWN_OAUTH, Q + WELL_KNOWN_OIDC]
    assert result.issuer == Q and result.metadata.raw["jwks_uri"] == Q + "/jwks"


def test_conformance_metadata_var2():
    issuer = Q + "/tenant1"
    t = FakeTransport({
        P + WELL_KNOWN_PRM: json_response(prm_doc(resource=P, servers=[issuer])),
        Q + WELL_KNOWN_OAUTH + "/tenant1": json_response(as_doc(issuer)),
        Q + WELL_KNOWN_OAUTH: json_response(as_doc(Q)),  # trap
    })
    with pytest.raises(ResourceMismatchError):
        discover(t, P_MCP)  # strict by default: "http://localhost:3000" != ".../mcp"
    t.requests[:] = []
    result = discover(t, P_MCP, allow_resource_prefix=True)
    assert result.resource == P  # sent back exactly, no "/" added
    assert t.urls == [P + "/.well-known/oauth-protected-resource/mcp", P + WELL_KNOWN_PRM,
                      Q + WELL_KNOWN_OAUTH + "/tenant1"]
    assert Q + WELL_KNOWN_OAUTH not in t.urls  # authorization-server-metadata-wrong-path


def test_conformance_metadata_var3():
    issuer = Q + "/tenant1"
    custom = P + "/custom/metadata/location.json"
    t = FakeTransport({
        custom: json_response(prm_doc(resource=P_MCP, servers=[issuer])),
        Q + "/tenant1" + WELL_KNOWN_OIDC: json_response(as_doc(issuer)),
        Q + WELL_KNOWN_OAUTH: json_response(as_doc(Q)),  # trap
    })
    result = discover(t, P_MCP, resource_metadata_url=custom)
    assert t.urls == [custom] + authorization_server_metadata_urls(issuer)
    assert _traps(t) == [] and result.issuer == issuer


def test_discover_logs_urls_but_never_bodies_or_queries(caplog):
    marker = "body-marker-5e5e"
    prm = prm_doc(resource=MCP + "?k=1", servers=[AS1], note=marker)
    t = FakeTransport({
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp":
            json_response(prm),
        AS1 + WELL_KNOWN_OAUTH: json_response(as_doc(AS1, note=marker)),
    })
    with caplog.at_level(logging.DEBUG, logger="mcpauth"):
        discover(t, MCP + "?k=1")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PATH_PRM in text and AS1 + WELL_KNOWN_OAUTH in text
    assert marker not in text and "k=1" not in text
    assert all(r.name == "mcpauth" for r in caplog.records)


# --------------------------------------------------------------------------------------
# End to end over a real loopback socket
# --------------------------------------------------------------------------------------

class _ThreadingServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    routes = {}  # path -> (status, headers, body); set per server
    seen = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        self.seen.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server():
    handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    server = _ThreadingServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.e2e
def test_e2e_discover_with_requests_transport(loopback_server):
    requests = pytest.importorskip("requests")
    server, handler = loopback_server
    base = "http://127.0.0.1:{}".format(server.server_address[1])
    mcp_url = base + "/mcp"
    prm_path = "/.well-known/oauth-protected-resource/mcp"
    ctype = {"Content-Type": "application/json"}
    handler.routes.update({
        "/mcp": (401, {"WWW-Authenticate": 'Bearer resource_metadata="{}{}", scope="mcp"'.format(
            base, prm_path)}, b""),
        prm_path: (200, ctype, json.dumps(prm_doc(resource=mcp_url, servers=[base + "/tenant1"],
                                                  scopes_supported=["mcp"])).encode()),
        "/.well-known/oauth-authorization-server/tenant1": (200, ctype, json.dumps(as_doc(
            base + "/tenant1", token_endpoint_auth_methods_supported=["client_secret_post"]
        )).encode()),
    })
    with requests.Session() as session:
        transport = RequestsTransport(session=session, timeout=10)
        challenge_response = transport(HttpRequest.get_json(mcp_url))
        assert challenge_response.status == 401
        challenge = bearer_challenge(challenge_response.header("WWW-Authenticate"))
        assert challenge is not None and challenge.params["scope"] == "mcp"
        result = discover(transport, mcp_url,
                          resource_metadata_url=challenge.params["resource_metadata"])
    assert result.resource == mcp_url
    assert result.issuer == base + "/tenant1"
    assert result.metadata.token_endpoint == base + "/tenant1/token"
    assert result.metadata.token_endpoint_auth_methods_supported == ("client_secret_post",)
    assert result.prm is not None and result.prm.scopes_supported == ("mcp",)
    assert handler.seen == ["/mcp", prm_path, "/.well-known/oauth-authorization-server/tenant1"]


@pytest.mark.e2e
def test_e2e_prm_fallback_and_missing_as(loopback_server):
    requests = pytest.importorskip("requests")
    server, handler = loopback_server
    base = "http://127.0.0.1:{}".format(server.server_address[1])
    handler.routes[WELL_KNOWN_PRM] = (200, {"Content-Type": "application/json"},
                                      json.dumps(prm_doc(resource=base, servers=[base])).encode())
    with requests.Session() as session:
        transport = RequestsTransport(session=session, timeout=10)
        with pytest.raises(DiscoveryError) as info:
            discover(transport, base + "/mcp", allow_resource_prefix=True)
    assert "does not publish metadata" in str(info.value)
    assert handler.seen == ["/.well-known/oauth-protected-resource/mcp", WELL_KNOWN_PRM,
                            WELL_KNOWN_OAUTH, WELL_KNOWN_OIDC]


class _RemoteHostsTransport(RequestsTransport):
    """RequestsTransport whose non-loopback hosts answer from a dict instead of the network.

    The remote MCP server and the attacker's host exist only here; everything the
    transport then does (redirect decisions, the https policy, real loopback sockets) is
    the real code.
    """

    def __init__(self, fake, **kwargs):
        super().__init__(timeout=10, **kwargs)
        self.fake = fake
        self.sent = []

    def _send_once(self, request, *args):
        self.sent.append(request.url)
        if request.url in self.fake:
            return self.fake[request.url]._replace(url=request.url)
        assert "127.0.0.1" in request.url, request.url   # nothing else leaves the test
        return RequestsTransport._send_once(self, request, *args)


def _redirect(location, status=302):
    return HttpResponse(status, (("Location", location),), b"")


@pytest.mark.e2e
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_e2e_prm_redirect_cannot_reach_an_internal_address(loopback_server, status):
    """C (RFC 9728 §7.7): the header URL is on an attacker host that passes the guard and
    redirects to a loopback service the guard refuses for a remote MCP server."""
    pytest.importorskip("requests")
    server, handler = loopback_server
    internal = "http://127.0.0.1:{}/admin/delete?all=1".format(server.server_address[1])
    handler.routes["/admin/delete?all=1"] = (200, {"Content-Type": "application/json"},
                                             json.dumps(prm_doc()).encode())
    with pytest.raises(DiscoveryError):
        validate_resource_metadata_url(internal, MCP)      # refused when named directly
    transport = _RemoteHostsTransport({"https://attacker.example/prm":
                                       _redirect(internal, status)})
    with pytest.raises(DiscoveryError) as info:
        fetch_protected_resource_metadata(transport, MCP, "https://attacker.example/prm")
    assert "redirected (HTTP {})".format(status) in str(info.value)
    assert "all=1" not in str(info.value)                   # redacted
    assert info.value.status_code == status and not info.value.retryable
    assert handler.seen == []
    assert transport.sent == ["https://attacker.example/prm"]


@pytest.mark.e2e
def test_e2e_as_metadata_redirect_cannot_reach_an_internal_address(loopback_server):
    pytest.importorskip("requests")
    server, handler = loopback_server
    internal = "http://127.0.0.1:{}/admin".format(server.server_address[1])
    handler.routes["/admin"] = (200, {"Content-Type": "application/json"},
                                json.dumps(as_doc("https://attacker.example")).encode())
    transport = _RemoteHostsTransport({
        PRM_URL: json_response(prm_doc(servers=["https://attacker.example"])),
        "https://attacker.example" + WELL_KNOWN_OAUTH: _redirect(internal),
    })
    with pytest.raises(DiscoveryError) as info:
        discover(transport, MCP)
    assert "authorization server metadata" in str(info.value)
    assert "redirected" in str(info.value)
    assert handler.seen == []
    assert transport.sent == [PRM_URL, "https://attacker.example" + WELL_KNOWN_OAUTH]


@pytest.mark.e2e
def test_e2e_same_origin_metadata_redirects_are_followed(loopback_server):
    pytest.importorskip("requests")
    server, handler = loopback_server
    base = "http://127.0.0.1:{}".format(server.server_address[1])
    ctype = {"Content-Type": "application/json"}
    handler.routes.update({
        "/.well-known/oauth-protected-resource/mcp": (307, {"Location": "/prm.json"}, b""),
        "/prm.json": (200, ctype, json.dumps(prm_doc(resource=base + "/mcp",
                                                     servers=[base])).encode()),
        WELL_KNOWN_OAUTH: (301, {"Location": base + "/as.json"}, b""),
        "/as.json": (200, ctype, json.dumps(as_doc(base)).encode()),
    })
    result = discover(RequestsTransport(timeout=10), base + "/mcp")
    assert result.issuer == base and result.metadata.token_endpoint == base + "/token"
    assert handler.seen == ["/.well-known/oauth-protected-resource/mcp", "/prm.json",
                            WELL_KNOWN_OAUTH, "/as.json"]


@pytest.mark.e2e
def test_e2e_cross_origin_redirect_between_loopback_servers_is_not_followed(loopback_server):
    pytest.importorskip("requests")
    server, handler = loopback_server
    other = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    other_server = _ThreadingServer(("127.0.0.1", 0), other)
    thread = threading.Thread(target=other_server.serve_forever, daemon=True)
    thread.start()
    try:
        base = "http://127.0.0.1:{}".format(server.server_address[1])
        elsewhere = "http://127.0.0.1:{}/prm".format(other_server.server_address[1])
        handler.routes["/.well-known/oauth-protected-resource/mcp"] = (
            302, {"Location": elsewhere}, b"")
        with pytest.raises(DiscoveryError) as info:
            fetch_protected_resource_metadata(RequestsTransport(timeout=10), base + "/mcp")
        assert elsewhere in str(info.value) and "not followed" in str(info.value)
        assert other.seen == []
        assert handler.seen == ["/.well-known/oauth-protected-resource/mcp"]
    finally:
        other_server.shutdown()
        other_server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------------------
# Property tests (h11 fuzz contract: garbage is accepted or raises the documented error)
# --------------------------------------------------------------------------------------

if hypothesis is not None:
    _SETTINGS = hypothesis.settings(max_examples=300, deadline=None, database=None)
    _PIECES = ["Bearer", "DPoP", "Basic", " ", "\t", ",", "=", '"', "\\", "realm", "scope",
               "resource_metadata", "abc==", "x", "\x00", "\r\n", ":", "/", "\u00e9"]
    _TOKEN = st.from_regex(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}\Z")
    _QUOTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e)
                        | st.sampled_from(["\t", "\u00e9"]), max_size=30)

    @_SETTINGS
    @hypothesis.given(st.text(max_size=300) | st.lists(st.sampled_from(_PIECES)).map("".join))
    def test_property_www_authenticate_never_raises(value):
        result = parse_www_authenticate(value)
        assert isinstance(result, list)
        for challenge in result:
            assert isinstance(challenge, Challenge)
            assert challenge.scheme == challenge.scheme.lower() and challenge.scheme
            assert all(k == k.lower() and isinstance(v, str) for k, v in challenge.params.items())

    @_SETTINGS
    @hypothesis.given(_TOKEN, st.lists(st.tuples(_TOKEN, _QUOTABLE), max_size=6))
    def test_property_www_authenticate_round_trip(scheme, params):
        rendered = ", ".join('{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"'))
                             for k, v in params)
        expected = {}
        for k, v in params:
            expected.setdefault(k.lower(), v)
        value = scheme + (" " + rendered if rendered else "") + ", DPoP algs=ES256"
        assert parse_www_authenticate(value) == [
            Challenge(scheme.lower(), expected), Challenge("dpop", {"algs": "ES256"})]

    _JSON = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20)
        | st.sampled_from([MCP, AS1, AS1 + "/token", "http://as.example/token", ""]),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["resource", "authorization_servers", "issuer",
                                           "token_endpoint", "scopes_supported",
                                           "grant_types_supported"]) | st.text(max_size=5),
                          inner, max_size=6),
        max_leaves=20)

    def _call_parsers(response):
        for call in (lambda: parse_protected_resource_metadata(response),
                     lambda: parse_protected_resource_metadata(
                         response, require_authorization_servers=False),
                     lambda: parse_authorization_server_metadata(response, AS1)):
            try:
                call()
            except (ProtocolError, InsecureEndpointError):
                pass

    @_SETTINGS
    @hypothesis.given(st.binary(max_size=300),
                      st.sampled_from(["application/json", "text/html", ""]),
                      st.sampled_from([200, 404, 500]))
    def test_property_parsers_on_arbitrary_bytes(body, ctype, status):
        response = HttpResponse(status, (("Content-Type", ctype),), body, PRM_URL)
        for call in (lambda: parse_protected_resource_metadata(response),
                     lambda: parse_authorization_server_metadata(response, AS1)):
            with pytest.raises(ProtocolError):
                call()  # bytes are never a valid document here, short of a miracle

    @_SETTINGS
    @hypothesis.given(_JSON)
    def test_property_parsers_on_arbitrary_json(doc):
        _call_parsers(HttpResponse(200, JSON, json.dumps(doc).encode("utf-8"), PRM_URL))

    @_SETTINGS
    @hypothesis.given(st.text(max_size=60))
    def test_property_url_builders_raise_only_documented_errors(url):
        try:
            protected_resource_metadata_urls(url)
        except ConfigurationError:
            pass
        try:
            authorization_server_metadata_urls(url)
        except DiscoveryError:
            pass
        try:
            validate_resource_metadata_url(url, MCP, same_origin=True)
        except DiscoveryError:
            pass
else:  # pragma: no cover
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_property_tests_need_hypothesis():
        raise AssertionError("unreachable")
