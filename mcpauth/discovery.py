"""Discovery: which authorization server protects an MCP server, and where its token endpoint is.

Pure functions plus thin fetchers (``fetch_*`` and :func:`discover` are the only ones that
call a :class:`~mcpauth.transport.Transport`):

* ``WWW-Authenticate`` parsing, RFC 9110 §11.6.1 (``challenge``, ``auth-param``,
  ``token68``, ``quoted-string``), for RFC 9728 §5.1 ``resource_metadata`` and the
  RFC 6750 §3 / RFC 9449 §7.1 challenge parameters.
* Protected resource metadata, RFC 9728 §3.1 (well-known URL), §3.2 (response),
  §3.3 (``resource`` validation), §7.7 (SSRF), and the MCP "Authorization Server
  Discovery" rules (header URL first, then path-based, then root; ``authorization_servers``
  must be non-empty). SSRF: the peer-named URLs pass
  :func:`validate_resource_metadata_url` before they are fetched, and
  :class:`~mcpauth.transport.RequestsTransport` follows a metadata redirect only within
  the same origin, so no redirect hop leaves the host that was checked (a redirect to
  another origin ends discovery with a :class:`DiscoveryError`).
* Authorization server metadata, RFC 8414 §3 and §3.1 (path insertion), §3.2 (response),
  §3.3 (``issuer`` must be identical), plus OpenID Connect Discovery 1.0 §4, tried in the
  MCP order.

Deliberate differences from the official MCP SDKs:

* There is no "legacy" fallback. When discovery fails, the caller gets a typed error; no
  credential is ever posted to ``<mcp-origin>/token`` on a guess.
* A 5xx or 429 during discovery raises a retryable :class:`DiscoveryError` instead of
  being treated as "no metadata" (an outage must not change which server gets secrets).
* A 200 that fails validation raises; it is not skipped.
* ``authorization_endpoint`` is not required: a client-credentials-only authorization
  server may omit it (RFC 8414 §2 makes it required only for grants that use it).
* Issuers and resources are compared as exact strings, never through a URL normalizer
  (a normalizer that appends "/" broke the Python SDK, python-sdk issue #1919).
"""

import ipaddress
import logging
import re
import socket
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import SplitResult, urljoin, urlsplit

from ._compat import lazy_pattern
from .errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    IssuerMismatchError,
    ResourceMismatchError,
    clean_peer_text,
)
from .grants import normalize_scope
from .transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HttpRequest,
    HttpResponse,
    Transport,
    check_ip_literal,
    check_url,
    identical_resource,
    is_loopback_host,
    parse_json_object,
    redact_url,
)

__all__ = [
    "WELL_KNOWN_PRM",
    "WELL_KNOWN_OAUTH",
    "WELL_KNOWN_OIDC",
    "MAX_WWW_AUTHENTICATE_CHARS",
    "Challenge",
    "parse_www_authenticate",
    "bearer_challenge",
    "ProtectedResourceMetadata",
    "AuthorizationServerMetadata",
    "DiscoveryResult",
    "protected_resource_metadata_urls",
    "authorization_server_metadata_urls",
    "parse_protected_resource_metadata",
    "parse_authorization_server_metadata",
    "validate_resource",
    "validate_resource_metadata_url",
    "fetch_protected_resource_metadata",
    "fetch_authorization_server_metadata",
    "fetch_challenge",
    "discover",
]

logger = logging.getLogger("mcpauth")

#: RFC 9728 §3 well-known suffix.
WELL_KNOWN_PRM = "/.well-known/oauth-protected-resource"
#: RFC 8414 §3 well-known suffix.
WELL_KNOWN_OAUTH = "/.well-known/oauth-authorization-server"
#: OpenID Connect Discovery 1.0 §4 well-known suffix.
WELL_KNOWN_OIDC = "/.well-known/openid-configuration"

#: Characters of a ``WWW-Authenticate`` value looked at; the rest is ignored.
MAX_WWW_AUTHENTICATE_CHARS = 16 * 1024

# Multi-valued authorization server members that must be JSON arrays of strings
# (RFC 8414 §2; the last two are read by the cross-app and DPoP code from ``raw``).
_AS_STRING_LISTS = (
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "grant_types_supported",
    "scopes_supported",
    "authorization_grant_profiles_supported",
    "dpop_signing_alg_values_supported",
)


# --------------------------------------------------------------------------------------
# WWW-Authenticate (RFC 9110 §11.6.1)
# --------------------------------------------------------------------------------------

class Challenge(NamedTuple):
    """One authentication challenge (RFC 9110 §11.3).

    Attributes:
        scheme: the auth-scheme, lowercased (``"bearer"``, ``"dpop"``).
        params: auth-param names lowercased, values unquoted and unescaped; on a
            duplicate name the first occurrence wins.
        token68: the token68 form (``Basic abc==``), when the challenge uses it.
    """

    scheme: str
    params: Dict[str, str]
    token68: Optional[str] = None


# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#       / "~" / DIGIT / ALPHA                                       (RFC 9110 §5.6.2)
_TOKEN_RE = lazy_pattern(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="   (§11.2)
_TOKEN68_RE = lazy_pattern(r"[A-Za-z0-9\-._~+/]+=*")
# OWS / BWS = *( SP / HTAB ); CR and LF are tolerated too (obs-fold survivors).
_OWS_RE = lazy_pattern(r"[ \t\r\n]*")
# #rule list: empty elements and OWS around commas are allowed (§5.6.1.2).
_SEPARATORS_RE = lazy_pattern(r"[ \t\r\n,]*")
# quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; qdtext excludes CTLs other
# than HTAB, and quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (§5.6.4).
_QUOTED_RE = lazy_pattern(
    r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_QUOTED_PAIR_RE = lazy_pattern(r"\\(.)", re.DOTALL)
# An unquoted value should be a token, but deployed servers send e.g. scope=files:read
# (":" is not a tchar); accept anything up to whitespace, a comma or a quote, as the
# SDKs' regex does.
_BARE_VALUE_RE = lazy_pattern(r'[^\x00-\x20",\\\x7f]+')
_WS_OR_COMMA = " \t\r\n,"


def parse_www_authenticate(value: Optional[str]) -> List[Challenge]:
    """Parse a ``WWW-Authenticate`` field value into its challenges (RFC 9110 §11.6.1).

    The value may hold several challenges, from one field line or from several joined
    with ``", "`` (as ``requests`` does). Scheme and parameter names are matched
    case-insensitively (returned lowercased); values may be tokens or quoted strings
    (with commas and ``\\`` escapes inside); a challenge may carry a token68 instead.
    Unquoted values are accepted up to the next whitespace or comma, so
    ``Bearer scope=files:read`` works.

    This never raises. Parsing stops at the first thing that fits no rule; the
    challenges (and parameters) read before that point are returned. A parameter
    straight after a bare scheme and a comma (``Bearer, realm="x"``) is attached to
    that scheme. Input beyond :data:`MAX_WWW_AUTHENTICATE_CHARS` is ignored.

    Args:
        value: the header value, or None.

    Returns:
        The challenges in order; ``[]`` for None, a non-string or garbage.
    """
    if not isinstance(value, str):
        return []
    s = value[:MAX_WWW_AUTHENTICATE_CHARS]
    n = len(s)
    challenges: List[Challenge] = []
    pos = 0
    # True right after "scheme SP" when what follows is not a token68: it must be a param.
    expect_param = False
    while True:
        pos = _end(_SEPARATORS_RE, s, pos)
        if pos >= n:
            break
        name = _TOKEN_RE.match(s, pos)
        if name is None:
            break
        after_name = _end(_OWS_RE, s, name.end())
        if after_name < n and s[after_name] == "=":
            # auth-param = token BWS "=" BWS ( token / quoted-string )
            if not challenges or challenges[-1].token68 is not None:
                break  # a parameter with no challenge to belong to
            value_text, value_end = _param_value(s, _end(_OWS_RE, s, after_name + 1))
            if value_text is None:
                break  # missing value, unterminated quote, control character
            pos = _end(_OWS_RE, s, value_end)
            if pos < n and s[pos] != ",":
                break  # e.g. realm="a"b or two params without a comma
            challenges[-1].params.setdefault(name.group().lower(), value_text)
            expect_param = False
            continue
        if expect_param:
            break
        # challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
        challenges.append(Challenge(name.group().lower(), {}))
        if name.end() < n and s[name.end()] not in _WS_OR_COMMA:
            break  # e.g. Bearer"x" or Bearer\x00
        pos = after_name
        if pos >= n or s[pos] == ",":
            continue
        token68 = _TOKEN68_RE.match(s, pos)
        if token68 is not None:
            after = _end(_OWS_RE, s, token68.end())
            if after >= n or s[after] == ",":
                challenges[-1] = challenges[-1]._replace(token68=token68.group())
                pos = after
                continue
        expect_param = True
    return challenges


def bearer_challenge(value: Optional[str]) -> Optional[Challenge]:
    """The first ``Bearer`` challenge in a ``WWW-Authenticate`` value (RFC 6750 §3).

    Args:
        value: the header value, or None.

    Returns:
        The challenge, or None when there is no Bearer challenge.
    """
    for challenge in parse_www_authenticate(value):
        if challenge.scheme == "bearer":
            return challenge
    return None


def _end(pattern: "re.Pattern[str]", s: str, pos: int) -> int:
    match = pattern.match(s, pos)
    return pos if match is None else match.end()


def _param_value(s: str, pos: int) -> Tuple[Optional[str], int]:
    if pos < len(s) and s[pos] == '"':
        quoted = _QUOTED_RE.match(s, pos)
        if quoted is None:
            return None, pos
        return _QUOTED_PAIR_RE.sub(r"\1", quoted.group(1)), quoted.end()
    bare = _BARE_VALUE_RE.match(s, pos)
    if bare is None:
        return None, pos
    return bare.group(), bare.end()


# --------------------------------------------------------------------------------------
# Metadata values
# --------------------------------------------------------------------------------------

class ProtectedResourceMetadata(NamedTuple):
    """An RFC 9728 §2 protected resource metadata document that passed §3.2 checks.

    Attributes:
        resource: the resource identifier, exactly as the document wrote it.
        authorization_servers: issuer identifiers, in the document's order.
        scopes_supported: the advertised scopes, or None when absent.
        url: where the document was fetched.
        raw: the whole document (members mcpauth does not understand are kept here).
    """

    resource: str
    authorization_servers: Tuple[str, ...]
    scopes_supported: Optional[Tuple[str, ...]]
    url: str
    raw: Dict[str, Any]


class AuthorizationServerMetadata(NamedTuple):
    """RFC 8414 §2 authorization server metadata that passed the §3.3 issuer check.

    Attributes:
        issuer: the issuer identifier (identical to the one it was fetched for).
        token_endpoint: an https URL (or http on a loopback host).
        token_endpoint_auth_methods_supported: None when absent (RFC 8414 §2 then
            means ``client_secret_basic``).
        token_endpoint_auth_signing_alg_values_supported: None when absent.
        grant_types_supported: None when absent.
        scopes_supported: None when absent.
        url: where the document was fetched.
        raw: the whole document.
    """

    issuer: str
    token_endpoint: str
    token_endpoint_auth_methods_supported: Optional[Tuple[str, ...]]
    token_endpoint_auth_signing_alg_values_supported: Optional[Tuple[str, ...]]
    grant_types_supported: Optional[Tuple[str, ...]]
    scopes_supported: Optional[Tuple[str, ...]]
    url: str
    raw: Dict[str, Any]


class DiscoveryResult(NamedTuple):
    """What :func:`discover` found.

    Attributes:
        resource: the RFC 8707 ``resource`` value to send: the PRM ``resource`` byte for
            byte, or the server URL when there is no PRM and an issuer was configured.
        issuer: the validated authorization server issuer.
        metadata: its metadata.
        prm: the protected resource metadata, or None when it was absent and tolerated.
    """

    resource: str
    issuer: str
    metadata: AuthorizationServerMetadata
    prm: Optional[ProtectedResourceMetadata]


# --------------------------------------------------------------------------------------
# Well-known URLs (RFC 9728 §3.1, RFC 8414 §3 / §3.1, MCP order)
# --------------------------------------------------------------------------------------

def _split_http_url(url: Any) -> Optional[SplitResult]:
    """``urlsplit(url)`` for an absolute http(s) URL with a host, else None."""
    if not isinstance(url, str) or not url:
        return None
    if any(ch <= " " or ch == "\x7f" for ch in url):
        return None  # whitespace and control characters are never part of a URI
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # ValueError for a port that is not a number in range
        check_ip_literal(parts)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return parts


def _origin(parts: SplitResult) -> str:
    # The host[:port] part exactly as written, minus any userinfo (never sent anywhere).
    return "{}://{}".format(parts.scheme, parts.netloc.rpartition("@")[2])


def protected_resource_metadata_urls(server_url: str) -> List[str]:
    """The well-known URLs for a resource's metadata, in the MCP order (RFC 9728 §3.1).

    ``https://host/public/mcp`` gives
    ``https://host/.well-known/oauth-protected-resource/public/mcp`` and then
    ``https://host/.well-known/oauth-protected-resource``; a URL whose path is empty or
    ``/`` gives only the root URL.

    The path is inserted exactly as written. RFC 9728 §3.1 removes only a "/" that
    directly follows the host, so ``https://host/mcp/`` gives
    ``.../oauth-protected-resource/mcp/`` (as the Python SDK does; the TypeScript SDK
    strips it). The query and fragment of the server URL are dropped, and so is
    any userinfo.

    Args:
        server_url: the MCP server URL.

    Returns:
        One or two absolute URLs.

    Raises:
        ConfigurationError: ``server_url`` is not an absolute http(s) URL.
    """
    parts = _split_http_url(server_url)
    if parts is None:
        raise ConfigurationError("server URL must be an absolute http(s) URL, got {}".format(
            redact_url(server_url) if isinstance(server_url, str) else type(server_url).__name__))
    origin = _origin(parts)
    urls: List[str] = []
    if parts.path not in ("", "/"):
        urls.append(origin + WELL_KNOWN_PRM + parts.path)
    urls.append(origin + WELL_KNOWN_PRM)
    return urls


def authorization_server_metadata_urls(issuer: str) -> List[str]:
    """The metadata URLs to try for ``issuer``, in the MCP order (RFC 8414 §3, §3.1).

    For an issuer with a path (``https://as/tenant1``)::

        https://as/.well-known/oauth-authorization-server/tenant1   RFC 8414 §3.1
        https://as/.well-known/openid-configuration/tenant1         RFC 8414 §5
        https://as/tenant1/.well-known/openid-configuration         OIDC Discovery §4

    For a pathless issuer (``https://as`` or ``https://as/``) the first two, without a
    path. Any terminating "/" of the path is removed before inserting (RFC 8414 §3.1);
    the port is kept. The root URL is never tried for an issuer with a path.

    Args:
        issuer: the issuer identifier.

    Returns:
        Three or two absolute URLs.

    Raises:
        DiscoveryError: ``issuer`` is not an absolute http(s) URL, or has a query or
            fragment (RFC 8414 §2 forbids both).
    """
    parts = _split_http_url(issuer)
    if parts is None or parts.query or parts.fragment or "#" in issuer or "?" in issuer:
        raise DiscoveryError(
            "authorization server issuer {!r} is not an absolute http(s) URL without "
            "query or fragment (RFC 8414 §2)".format(clean_peer_text(issuer, 200)))
    origin = _origin(parts)
    path = parts.path.rstrip("/")
    if not path:
        return [origin + WELL_KNOWN_OAUTH, origin + WELL_KNOWN_OIDC]
    return [origin + WELL_KNOWN_OAUTH + path, origin + WELL_KNOWN_OIDC + path,
            origin + path + WELL_KNOWN_OIDC]


# --------------------------------------------------------------------------------------
# Parsing and validation (pure)
# --------------------------------------------------------------------------------------

def _json_document(response: HttpResponse, what: str) -> Dict[str, Any]:
    """RFC 9728 §3.2 / RFC 8414 §3.2: a 200 ``application/json`` object."""
    where = redact_url(response.url)
    if response.status != 200:
        raise DiscoveryError("{} request to {} returned HTTP {}, expected 200".format(
            what, where, response.status), status_code=response.status)
    if len(response.body) > DEFAULT_MAX_RESPONSE_BYTES:
        raise DiscoveryError("{} from {} is {} bytes, over the {} byte limit".format(
            what, where, len(response.body), DEFAULT_MAX_RESPONSE_BYTES),
            status_code=response.status)
    media_type = response.media_type
    if not (media_type == "application/json"
            or (media_type.startswith("application/") and media_type.endswith("+json"))):
        raise DiscoveryError("{} from {} has content type {!r}, expected application/json".format(
            what, where, clean_peer_text(media_type, 100)), status_code=response.status)
    return parse_json_object(response, what, DiscoveryError)


def _string_list(doc: Dict[str, Any], member: str, what: str,
                 response: HttpResponse) -> Optional[Tuple[str, ...]]:
    """A member that must be a JSON array of strings when present (null = absent)."""
    value = doc.get(member)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError("{} from {}: {} must be a JSON array of strings".format(
            what, redact_url(response.url), member), status_code=response.status)
    return tuple(value)


def _is_absolute_http_uri(value: Any) -> bool:
    # RFC 8707 §2 / RFC 9728 §1.2: an absolute URI with no fragment (http(s) for MCP).
    return (_split_http_url(value) is not None and "#" not in value)


def parse_protected_resource_metadata(
        response: HttpResponse, *,
        require_authorization_servers: bool = True) -> ProtectedResourceMetadata:
    """Check and parse a protected resource metadata response (RFC 9728 §3.2).

    The response must be a 200 with ``application/json`` (or ``application/*+json``)
    holding a JSON object. ``resource`` must be an absolute http(s) URI without a
    fragment; ``authorization_servers`` an array of absolute http(s) URLs (the https
    policy is applied when one is fetched); ``scopes_supported`` an array of RFC 6749
    §3.3 scope-tokens.
    Members not understood are ignored (§3.2) but kept in ``raw``. ``resource`` is
    *not* compared with anything here; see :func:`validate_resource`.

    Args:
        response: the HTTP response.
        require_authorization_servers: MCP "Authorization Server Location" requires at
            least one entry; pass False when an issuer is configured.

    Returns:
        The metadata.

    Raises:
        DiscoveryError: any check failed (``.status_code`` is the HTTP status).
    """
    what = "protected resource metadata"
    doc = _json_document(response, what)
    where = redact_url(response.url)
    resource = doc.get("resource")
    if not isinstance(resource, str) or not _is_absolute_http_uri(resource):
        raise DiscoveryError(
            "{} from {} has no valid resource (an absolute http(s) URI without a "
            "fragment is required, RFC 9728 §2)".format(what, where),
            status_code=response.status)
    servers = _string_list(doc, "authorization_servers", what, response) or ()
    for server in servers:
        if _split_http_url(server) is None:
            raise DiscoveryError("{} from {} lists an authorization server that is not an "
                                 "absolute http(s) URL: {!r}".format(
                                     what, where, clean_peer_text(server, 200)),
                                 status_code=response.status)
    if require_authorization_servers and not servers:
        raise DiscoveryError(
            "{} from {} lists no authorization_servers (MCP requires at least one; "
            "configure the issuer explicitly to proceed without)".format(what, where),
            status_code=response.status)
    scopes = _string_list(doc, "scopes_supported", what, response)
    if scopes is not None:
        try:
            normalize_scope(scopes)
        except ConfigurationError:  # the peer's fault, not the caller's
            raise DiscoveryError(
                "{} from {}: scopes_supported holds a value that is not an RFC 6749 §3.3 "
                "scope-token".format(what, where), status_code=response.status) from None
    return ProtectedResourceMetadata(resource, servers, scopes, response.url, doc)


def _path_prefix_match(prefix_path: str, path: str) -> bool:
    # Path-segment prefix: "/mcp" covers "/mcp" and "/mcp/x" but not "/mcpxxx";
    # "/folder/" does not cover "/folder" (as the TS SDK's checkResourceAllowed).
    prefix_path = prefix_path or "/"
    path = path or "/"
    if path == prefix_path:
        return True
    if not prefix_path.endswith("/"):
        prefix_path += "/"
    return path.startswith(prefix_path)


def _origin_key(parts: SplitResult) -> Tuple[str, str, Optional[int]]:
    port = parts.port
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return (parts.scheme, (parts.hostname or "").lower(), port)


def validate_resource(prm: ProtectedResourceMetadata, server_url: str, *,
                      allow_prefix: bool = False) -> None:
    """Check that protected resource metadata describes ``server_url`` (RFC 9728 §3.3).

    By default ``prm.resource`` must be identical to ``server_url`` (without its
    fragment, which is never sent): a code-point comparison, with no case folding,
    default-port or trailing-slash normalization (RFC 9728 §3.3 "identical", §7.3).
    The client's URL is configuration, so a difference in case is reported rather than
    guessed away.

    With ``allow_prefix`` the rule the MCP SDKs use applies instead: same origin
    (scheme and host case-insensitive, default ports filled in) and the PRM path is a
    path-segment prefix of the server path; queries are ignored. ``/mcp`` covers
    ``/mcp/tools`` but not ``/mcpxxx``; ``/folder/`` does not cover ``/folder``. The
    conformance scenario ``auth/metadata-var2`` (PRM ``resource`` ``http://localhost:P``
    for server ``http://localhost:P/mcp``) needs it.

    Args:
        prm: the parsed metadata.
        server_url: the URL the client sends MCP requests to.
        allow_prefix: accept the same-origin path-prefix relaxation.

    Raises:
        ResourceMismatchError: the metadata is for another resource; it MUST NOT be used.
    """
    if identical_resource(prm.resource, server_url):
        return
    expected = server_url.split("#", 1)[0]
    received = prm.resource
    if allow_prefix:
        have = _split_http_url(received)
        want = _split_http_url(expected)
        if (have is not None and want is not None
                and _origin_key(have) == _origin_key(want)
                and _path_prefix_match(have.path, want.path)):
            return
    hint = ""
    if redact_url(received) == redact_url(expected):
        hint = " (they differ only in letter case, port, userinfo or query)"
    rule = ("the same origin and a path prefix" if allow_prefix
            else "identical strings (RFC 9728 §3.3)")
    raise ResourceMismatchError(
        "protected resource metadata at {} is for resource {}, not for {}{}; "
        "{} required, so it cannot be used".format(
            redact_url(prm.url), redact_url(received), redact_url(expected), hint, rule),
        expected=redact_url(expected), received=redact_url(received))


def parse_authorization_server_metadata(response: HttpResponse, issuer: str, *,
                                        allow_insecure_http: bool = False
                                        ) -> AuthorizationServerMetadata:
    """Check and parse an authorization server metadata response (RFC 8414 §3.2, §3.3).

    The response must be a 200 JSON object whose ``issuer`` is identical to ``issuer``
    (a plain string comparison: ``https://as/`` and ``https://as`` differ). A
    ``token_endpoint`` is required and must pass the https policy.
    ``authorization_endpoint`` is not required. The multi-valued members mcpauth reads
    must be JSON arrays of strings when present.

    Args:
        response: the HTTP response.
        issuer: the issuer the metadata was requested for.
        allow_insecure_http: allow a plain-http token endpoint on a non-loopback host.

    Returns:
        The metadata.

    Raises:
        IssuerMismatchError: ``issuer`` in the document is a different string.
        DiscoveryError: not a 200 JSON object, no usable ``token_endpoint``, or a
            malformed member.
        InsecureEndpointError: the token endpoint is plain http on a non-loopback host.
    """
    what = "authorization server metadata"
    doc = _json_document(response, what)
    where = redact_url(response.url)
    received = doc.get("issuer")
    if not isinstance(received, str):
        raise DiscoveryError("{} from {} has no issuer string (RFC 8414 §2)".format(
            what, where), status_code=response.status)
    if received != issuer:
        # RFC 8414 §3.3: "If these values are not identical, the data contained in the
        # response MUST NOT be used."
        raise IssuerMismatchError(
            "{} from {} names issuer {!r}, but it was fetched for {!r}; the values must be "
            "identical (RFC 8414 §3.3), so the metadata cannot be used".format(
                what, where, clean_peer_text(received, 200), clean_peer_text(issuer, 200)),
            expected=issuer, received=clean_peer_text(received, 200))
    token_endpoint = doc.get("token_endpoint")
    if not isinstance(token_endpoint, str) or not _is_absolute_http_uri(token_endpoint):
        raise DiscoveryError("{} from {} has no token_endpoint that is an absolute http(s) "
                             "URL without a fragment".format(what, where),
                             status_code=response.status)
    check_url(token_endpoint, allow_insecure_http, "token_endpoint")
    lists: Dict[str, Optional[Tuple[str, ...]]] = {}
    for member in _AS_STRING_LISTS:
        lists[member] = _string_list(doc, member, what, response)
    return AuthorizationServerMetadata(
        issuer=received,
        token_endpoint=token_endpoint,
        token_endpoint_auth_methods_supported=lists["token_endpoint_auth_methods_supported"],
        token_endpoint_auth_signing_alg_values_supported=lists[
            "token_endpoint_auth_signing_alg_values_supported"],
        grant_types_supported=lists["grant_types_supported"],
        scopes_supported=lists["scopes_supported"],
        url=response.url,
        raw=doc,
    )


def _ip_of(host: str) -> Optional[Any]:
    """The address an IP-literal host denotes (including inet_aton's odd forms), or None."""
    host = host.strip("[]").split("%", 1)[0]  # drop an IPv6 zone ("fe80::1%eth0")
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        # "2852039166", "0xa9.0xfe.0xa9.0xfe" and "169.254.43518" all reach
        # 169.254.169.254 through getaddrinfo; normalize them the same way.
        if not host or not all(ch in "0123456789abcdefxABCDEFX." for ch in host):
            return None
        try:
            address = ipaddress.ip_address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def validate_resource_metadata_url(url: str, server_url: str, *,
                                   same_origin: bool = False) -> None:
    """Guard a URL the resource server handed us against SSRF (RFC 9728 §7.7).

    Used for the ``resource_metadata`` URL from a ``WWW-Authenticate`` header and for
    the ``authorization_servers`` entry mcpauth fetches; it is a cheap first line, not
    a complete defence. Always rejected: a URL that is not absolute http(s) or has a
    fragment, and an IP-literal host that is link-local (``169.254.169.254``, cloud
    metadata services), multicast, unspecified or reserved, or loopback while the MCP
    server itself is not on a loopback host. Host names are not resolved, so a name
    that resolves to an internal address passes (filter those in a proxy); private
    ranges such as ``10.0.0.0/8`` are allowed because internal MCP deployments use
    them. The https policy is applied separately by the transport.

    Args:
        url: the URL from the peer.
        server_url: the MCP server URL.
        same_origin: also require ``url`` to be on the server's origin (scheme, host,
            port). Stricter than MCP requires (its examples put PRM on the resource's
            own host, but the spec allows any); opt-in.

    Raises:
        DiscoveryError: the URL is refused.
    """
    parts = _split_http_url(url)
    if parts is None or "#" in url:
        raise DiscoveryError("URL {!r} from the resource server is not an absolute http(s) "
                             "URL without a fragment".format(clean_peer_text(url, 200)))
    server = _split_http_url(server_url)
    server_host = (server.hostname or "") if server is not None else ""
    host = parts.hostname or ""
    if host != server_host.lower():
        address = _ip_of(host)
        if address is not None and (
                address.is_link_local or address.is_multicast or address.is_unspecified
                or address.is_reserved
                or (address.is_loopback and not is_loopback_host(server_host))):
            raise DiscoveryError(
                "refusing to fetch {} named by the resource server: {} is a link-local, "
                "loopback or reserved address (RFC 9728 §7.7)".format(
                    redact_url(url), clean_peer_text(host, 200)))
    if same_origin and (server is None or _origin_key(parts) != _origin_key(server)):
        raise DiscoveryError("refusing to fetch {}: it is not on the MCP server's origin "
                             "{}".format(redact_url(url), redact_url(server_url)))


# --------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------

def _allow_http(transport: Transport) -> bool:
    return bool(getattr(transport, "allow_insecure_http", False))


def _get(transport: Transport, url: str, what: str) -> HttpResponse:
    # The transport applies the https policy too; checking here keeps it for custom
    # transports and raises before anything is sent.
    check_url(url, _allow_http(transport), what)
    # Not logged here: the transport logs each request once, with its status and time.
    response = transport(HttpRequest.get_json(url))
    if not response.url:
        response = response._replace(url=url)
    return response


def _try_next(response: HttpResponse, what: str) -> bool:
    """True for "not here, try the next URL"; raise for an outage or an odd status."""
    status = response.status
    if status == 200:
        return False
    if 400 <= status < 500 and status != 429:
        return True
    where = redact_url(response.url)
    if status == 429 or status >= 500:
        error = DiscoveryError(
            "{} at {} is unavailable (HTTP {}); try again later".format(what, where, status),
            status_code=status)
        error.retryable = True
        raise error
    location = response.header("Location")
    if 300 <= status < 400 and location:
        # RequestsTransport follows redirects only within one origin: this one leaves it.
        try:
            target = redact_url(urljoin(response.url, location))
        except ValueError:
            target = "<unparseable URL>"
        raise DiscoveryError(
            "{} request to {} was redirected (HTTP {}) to {}, and the redirect was not "
            "followed: metadata redirects are followed only within the origin of the URL, "
            "whose host passed the SSRF checks (RFC 9728 §7.7)".format(
                what, where, status, clean_peer_text(target, 200)),
            status_code=status)
    raise DiscoveryError("{} request to {} returned HTTP {}, expected 200".format(
        what, where, status), status_code=status)


def _first_published(transport: Transport, urls: List[str],
                     what: str) -> Tuple[Optional[HttpResponse], int]:
    """GET ``urls`` in order: (the first 200, 200), or (None, the last 4xx) (see _try_next)."""
    status = 404
    for url in urls:
        response = _get(transport, url, what)
        if not _try_next(response, what):
            return response, 200
        status = response.status
    return None, status


def _find_prm(transport: Transport, server_url: str, resource_metadata_url: Optional[str],
              require_authorization_servers: bool
              ) -> Tuple[Optional[ProtectedResourceMetadata], List[str], int]:
    """Fetch PRM; (None, tried URLs, last status) when every candidate answered 4xx."""
    if resource_metadata_url is not None:
        # RFC 9728 §5.1 / MCP: the header URL, and only it (the TS SDK does not fall
        # back either; falling back would let a 404 there redirect us elsewhere).
        validate_resource_metadata_url(resource_metadata_url, server_url)
        urls = [resource_metadata_url]
    else:
        urls = protected_resource_metadata_urls(server_url)
    what = "protected resource metadata"
    response, status = _first_published(transport, urls, what)
    if response is None:
        return None, urls, status
    prm = parse_protected_resource_metadata(
        response, require_authorization_servers=require_authorization_servers)
    logger.debug("discovery: %s %s names resource %s and %d authorization server(s)",
                 what, redact_url(prm.url), redact_url(prm.resource),
                 len(prm.authorization_servers))
    return prm, urls, 200


def _not_published(server_url: str, urls: List[str], status: int) -> DiscoveryError:
    # status_code is the last 4xx, so a caller can tell "absent" from a bad document
    # (status 200) or an outage (retryable).
    return DiscoveryError("{} does not publish protected resource metadata (tried: {})".format(
        redact_url(server_url), ", ".join(redact_url(u) for u in urls)), status_code=status)


def fetch_protected_resource_metadata(
        transport: Transport, server_url: str, resource_metadata_url: Optional[str] = None,
        *, allow_prefix: bool = False,
        require_authorization_servers: bool = True) -> ProtectedResourceMetadata:
    """Find, fetch and validate the protected resource metadata of ``server_url``.

    With ``resource_metadata_url`` (from a 401's ``WWW-Authenticate``, RFC 9728 §5.1)
    only that URL is fetched, after :func:`validate_resource_metadata_url`. Otherwise the
    :func:`protected_resource_metadata_urls` are tried in order (MCP). A 4xx other than
    429 means "try the next URL"; a 5xx or 429 raises at once (an outage is not
    "no metadata"); a 200 that fails validation raises. Then :func:`validate_resource`.

    Args:
        transport: sends the GETs.
        server_url: the MCP server URL.
        resource_metadata_url: the ``resource_metadata`` URL from the server, if any.
        allow_prefix: see :func:`validate_resource`.
        require_authorization_servers: see :func:`parse_protected_resource_metadata`.

    Returns:
        The validated metadata.

    Raises:
        DiscoveryError: nothing published (``status_code`` is the last 4xx), an invalid
            document (``status_code`` 200), or unavailable (``retryable``, 5xx/429).
        ResourceMismatchError: the metadata is for another resource.
        InsecureEndpointError: a URL is plain http on a non-loopback host.
        TransportError: no response.
    """
    prm, urls, status = _find_prm(transport, server_url, resource_metadata_url,
                                  require_authorization_servers)
    if prm is None:
        raise _not_published(server_url, urls, status)
    validate_resource(prm, server_url, allow_prefix=allow_prefix)
    return prm


def fetch_authorization_server_metadata(transport: Transport,
                                        issuer: str) -> AuthorizationServerMetadata:
    """Fetch and validate the metadata of ``issuer`` (RFC 8414 §3, OIDC Discovery §4).

    The :func:`authorization_server_metadata_urls` are tried in order. A 4xx other
    than 429 means "try the next URL"; a 5xx or 429 raises at once; a 200 that fails
    validation raises, and an issuer mismatch stops the search (RFC 8414 §3.3: the data
    MUST NOT be used). Plain http is allowed per ``transport.allow_insecure_http``.

    Args:
        transport: sends the GETs.
        issuer: the issuer identifier, compared exactly with the document's.

    Returns:
        The validated metadata.

    Raises:
        IssuerMismatchError: the document names another issuer.
        DiscoveryError: nothing published, invalid, or unavailable (``retryable``).
        InsecureEndpointError: a metadata URL or the token endpoint is plain http on a
            non-loopback host.
        TransportError: no response.
    """
    what = "authorization server metadata"
    urls = authorization_server_metadata_urls(issuer)
    response, status = _first_published(transport, urls, what)
    if response is None:
        raise DiscoveryError(
            "authorization server {} does not publish metadata (tried: {})".format(
                redact_url(issuer), ", ".join(redact_url(u) for u in urls)),
            status_code=status)
    metadata = parse_authorization_server_metadata(
        response, issuer, allow_insecure_http=_allow_http(transport))
    logger.debug("discovery: %s %s names token endpoint %s", what, redact_url(response.url),
                 redact_url(metadata.token_endpoint))
    return metadata


def _servers_text(servers: Tuple[str, ...]) -> str:
    shown = ", ".join(redact_url(s) for s in servers[:5])
    if len(servers) > 5:
        shown += ", ..."
    return shown or "none"


def fetch_challenge(transport: Transport, server_url: str,
                    discovery_error: DiscoveryError) -> Optional[Challenge]:
    """Ask the MCP server itself for its Bearer challenge, after :func:`discover` failed.

    A server may publish its protected resource metadata only in the ``resource_metadata``
    parameter of its 401 challenge (RFC 9728 §5.1). This POSTs an unauthenticated
    JSON-RPC ``ping`` to ``server_url`` to get one, but only when ``discovery_error`` says
    the metadata is simply not published at the well-known URLs (a 4xx that is not
    retryable): a mismatch, a bad document or an outage is reported as it is.

    Args:
        transport: sends the POST.
        server_url: the MCP server URL.
        discovery_error: what :func:`discover` raised without a ``resource_metadata_url``.

    Returns:
        The first Bearer challenge (RFC 6750 §3) of a 401 answer; None when the error is
        not "not published" (nothing is sent), the answer is not a 401, or it has no
        Bearer challenge.

    Raises:
        TransportError, InsecureEndpointError: as the transport.
    """
    status = discovery_error.status_code
    not_published = (type(discovery_error) is DiscoveryError and not discovery_error.retryable
                     and status is not None and 400 <= status < 500)
    if not not_published:
        return None
    probe = HttpRequest(
        "POST", server_url,
        (("Content-Type", "application/json"),
         ("Accept", "application/json, text/event-stream")),
        b'{"jsonrpc":"2.0","id":"mcpauth-probe","method":"ping"}')
    response = transport(probe)
    if response.status != 401:
        return None
    return bearer_challenge(response.header("WWW-Authenticate"))


def discover(transport: Transport, server_url: str, *,
             resource_metadata_url: Optional[str] = None,
             expected_issuer: Optional[str] = None, issuer: Optional[str] = None,
             allow_resource_prefix: bool = False,
             known_metadata: Optional[AuthorizationServerMetadata] = None) -> DiscoveryResult:
    """Find the authorization server for ``server_url`` and its token endpoint.

    1. Protected resource metadata (:func:`fetch_protected_resource_metadata`; RFC 9728,
       MCP). When ``issuer`` is configured, metadata that is simply absent (every URL
       answered 4xx) is tolerated, and the resource is then ``server_url``.
    2. The authorization server: ``issuer`` if configured (it must be listed when the
       PRM lists any); else ``expected_issuer``, which must be listed in
       ``authorization_servers`` (exact string); else the first entry (MCP leaves the
       choice to the client).
    3. Its metadata (:func:`fetch_authorization_server_metadata`; RFC 8414 §3.3).

    No secret is involved, and nothing is fetched from an authorization server other
    than the one chosen. There is no fallback to ``<mcp-origin>/token``.

    Args:
        transport: sends the GETs.
        server_url: the MCP server URL.
        resource_metadata_url: ``resource_metadata`` from the server's 401, if any.
        expected_issuer: pin: refuse any authorization server but this one.
        issuer: an explicitly configured authorization server ("the authorization
            server is configuration, not discovery").
        allow_resource_prefix: see :func:`validate_resource`.
        known_metadata: metadata fetched and validated earlier; used instead of a fetch
            when the authorization server chosen now is its issuer (a re-discovery after a
            refused token re-reads the protected resource metadata to notice a moved
            authorization server, and needs the AS metadata again only if it moved).

    Returns:
        The resource to request tokens for, the issuer, and both documents.

    Raises:
        ConfigurationError: ``server_url`` or ``issuer`` is not usable, or ``issuer``
            and ``expected_issuer`` disagree.
        AuthorizationServerMismatchError: the resource names other authorization
            servers than the configured or pinned one.
        ResourceMismatchError, IssuerMismatchError, DiscoveryError,
        InsecureEndpointError, TransportError: as the fetchers.
    """
    if _split_http_url(server_url) is None or "#" in server_url:
        raise ConfigurationError("server URL must be an absolute http(s) URL without a "
                                 "fragment (RFC 8707 §2)")
    if issuer is not None:
        parts = _split_http_url(issuer)
        if parts is None or parts.query or "#" in issuer or "?" in issuer:
            raise ConfigurationError("issuer must be an absolute http(s) URL without query "
                                     "or fragment (RFC 8414 §2)")
        if expected_issuer is not None and expected_issuer != issuer:
            raise ConfigurationError("issuer and expected_issuer are both set and differ")

    logger.debug("discovery: start for %s", redact_url(server_url))
    prm, tried, status = _find_prm(transport, server_url, resource_metadata_url,
                                   require_authorization_servers=issuer is None)
    if prm is None:
        if issuer is None:
            raise _not_published(server_url, tried, status)
        logger.debug("discovery: no protected resource metadata; using configured issuer %s "
                     "and resource %s", redact_url(issuer), redact_url(server_url))
        resource = server_url
    else:
        validate_resource(prm, server_url, allow_prefix=allow_resource_prefix)
        resource = prm.resource

    listed = prm.authorization_servers if prm is not None else ()
    if issuer is not None:
        chosen = issuer
        if listed and issuer not in listed:
            raise AuthorizationServerMismatchError(
                "{} names authorization server(s) {}, not the configured issuer {}".format(
                    redact_url(server_url), _servers_text(listed), redact_url(issuer)),
                expected_issuer=issuer, issuer=listed[0])
    elif expected_issuer is not None:
        if expected_issuer not in listed:
            # Raised before anything is fetched from the other server (MCP: "MUST NOT
            # assume that credentials valid for one authorization server will be
            # accepted by another").
            raise AuthorizationServerMismatchError(
                "{} names authorization server(s) {}; expected_issuer {} is not among "
                "them".format(redact_url(server_url), _servers_text(listed),
                              redact_url(expected_issuer)),
                expected_issuer=expected_issuer, issuer=listed[0] if listed else None)
        chosen = expected_issuer
    else:
        chosen = listed[0]
        # Peer-supplied: the same SSRF guard as the resource_metadata URL.
        validate_resource_metadata_url(chosen, server_url)
    logger.debug("discovery: authorization server %s", redact_url(chosen))

    if known_metadata is not None and known_metadata.issuer == chosen:
        logger.debug("discovery: authorization server unchanged; metadata not re-fetched")
        metadata = known_metadata
    else:
        metadata = fetch_authorization_server_metadata(transport, chosen)
    if expected_issuer is not None and metadata.issuer != expected_issuer:
        # Unreachable after the §3.3 echo check, kept as the last line of the pin.
        raise AuthorizationServerMismatchError(
            "authorization server {} is not expected_issuer {}".format(
                redact_url(metadata.issuer), redact_url(expected_issuer)),
            expected_issuer=expected_issuer, issuer=metadata.issuer)
    return DiscoveryResult(resource, metadata.issuer, metadata, prm)
