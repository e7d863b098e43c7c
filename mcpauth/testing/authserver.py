"""A loopback OAuth authorization server and enterprise IdP, for tests (stdlib only).

What it implements, strictly enough to catch a client that gets it wrong:

* RFC 8414 §3 metadata at one well-known location (``metadata_variant``: ``oauth`` =
  ``/.well-known/oauth-authorization-server{path}``, ``oidc`` =
  ``/.well-known/openid-configuration{path}``, ``oidc-append`` =
  ``{path}/.well-known/openid-configuration``); the other locations are 404.
* The token endpoint, RFC 6749 §3.2: POST only, ``application/x-www-form-urlencoded``,
  no parameter twice, no parameters in the URI; §5.1 / §5.2 responses with
  ``Cache-Control: no-store``.
* Client authentication, RFC 6749 §2.3: exactly one method per request;
  ``client_secret_basic`` with the §2.3.1 / Appendix B form-urldecoding of id and secret;
  ``client_secret_post``; ``private_key_jwt`` (RFC 7523 §2.2 / §3, RFC 7521 §4.2, with
  the draft-ietf-oauth-rfc7523bis ``aud`` = issuer rule and ``jti`` replay detection).
* Grants: ``client_credentials`` (RFC 6749 §4.4), ``jwt-bearer`` (RFC 7523 §2.1) for an
  ID-JAG from a trusted IdP (draft-ietf-oauth-identity-assertion-authz-grant, "Processing
  Rules") or a workload-identity JWT (SEP-1933), and, on :class:`IdentityProvider`, RFC
  8693 token exchange producing an ID-JAG.
* RFC 8707 ``resource`` is validated (absolute, no fragment) and bound to the token, so
  the MCP test server can refuse a token minted for another resource.

Tokens are random opaque strings kept in memory; :meth:`AuthorizationServer.introspect`
answers in-process. Signature checks use :mod:`mcpauth.jws` (imported lazily, so the
module imports without ``cryptography``).

This server is for loopback tests only: it binds ``127.0.0.1`` and nothing else.
"""

import base64
import binascii
import hmac
import json
import re
import secrets
import time
from typing import (Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple,
                    Union)
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from ._http import Clock, LoopbackServer, RecordedRequest, Response, not_found
from .dpop import DPoPChecker

__all__ = [
    "AuthorizationServer",
    "CLIENT_ASSERTION_TYPE_JWT_BEARER",
    "Client",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_JWT_BEARER",
    "GRANT_PROFILE_ID_JAG",
    "GRANT_TOKEN_EXCHANGE",
    "IdentityProvider",
    "TOKEN_TYPE_ID_JAG",
    "TOKEN_TYPE_ID_TOKEN",
    "TYP_ID_JAG",
]

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPE_ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
GRANT_PROFILE_ID_JAG = "urn:ietf:params:oauth:grant-profile:id-jag"
TYP_ID_JAG = "oauth-id-jag+jwt"

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SIGNING_ALGS = ("RS256", "ES256", "PS256", "ES384", "EdDSA")
METADATA_VARIANTS = ("oauth", "oidc", "oidc-append")

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"\A[\x21\x23-\x5B\x5D-\x7E]+\Z")  # \Z: `$` allows a final "\n"
_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
_UNSET = object()

Key = Any  # a public JWK dict, a cryptography public key, a jws.SigningKey or PEM bytes


class Client(object):
    """A client registration at a test authorization server.

    Attributes:
        client_id: the identifier.
        public_jwk: the key ``private_key_jwt`` assertions must verify with, or None.
        auth_method: the only accepted ``token_endpoint_auth_method`` (None: any the
            server supports and the client has credentials for).
        allowed_scopes: scopes the client may be granted (None: any).
        default_scopes: scopes granted when the request names none.
        grant_types: grants the client may use (None: any the server supports).
        idjag_client_id: at an IdP, the resource-AS ``client_id`` put in ID-JAGs.
    """

    __slots__ = ("client_id", "_client_secret", "public_jwk", "auth_method",
                 "allowed_scopes", "default_scopes", "grant_types", "idjag_client_id")

    def __init__(self, client_id: str, client_secret: Optional[str] = None,
                 public_jwk: Key = None, auth_method: Optional[str] = None,
                 allowed_scopes: Optional[Sequence[str]] = None,
                 default_scopes: Optional[Sequence[str]] = None,
                 grant_types: Optional[Sequence[str]] = None,
                 idjag_client_id: Optional[str] = None) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.public_jwk = public_jwk
        self.auth_method = auth_method
        self.allowed_scopes = None if allowed_scopes is None else frozenset(allowed_scopes)
        self.default_scopes = frozenset(default_scopes or ())
        self.grant_types = None if grant_types is None else frozenset(grant_types)
        self.idjag_client_id = idjag_client_id

    @property
    def client_secret(self) -> Optional[str]:
        """The registered secret (tests need it to build requests)."""
        return self._client_secret

    def __repr__(self) -> str:
        return "Client(client_id=%r, auth_method=%r, client_secret=%s)" % (
            self.client_id, self.auth_method,
            "[secure]" if self._client_secret is not None else None)


class _Trusted(object):
    __slots__ = ("issuer", "key", "allowed_subjects", "allowed_scopes")

    def __init__(self, issuer: str, key: Key,
                 allowed_subjects: Optional[Sequence[str]] = None,
                 allowed_scopes: Optional[Sequence[str]] = None) -> None:
        self.issuer = issuer
        self.key = key
        self.allowed_subjects = None if allowed_subjects is None else frozenset(
            allowed_subjects)
        self.allowed_scopes = None if allowed_scopes is None else frozenset(allowed_scopes)


class _OAuthFailure(Exception):
    """An RFC 6749 §5.2 error response to send."""

    def __init__(self, error: str, description: Optional[str] = None, status: int = 400,
                 headers: Optional[List[Tuple[str, str]]] = None) -> None:
        Exception.__init__(self, error)
        self.error = error
        self.description = description
        self.status = status
        self.headers = list(headers or [])


def _aud_list(aud: Any) -> List[str]:
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _echo(record: RecordedRequest) -> str:
    """Everything secret a token request carried, in every form it arrived in."""
    parts = []
    body = record.body.decode("utf-8", "replace")
    parts.append(body)
    authz = record.headers.get("Authorization") or ""
    if authz:
        parts.append(authz)
        try:
            pair = base64.b64decode(authz.split(" ", 1)[-1]).decode("utf-8")
            parts.append(pair)
            parts.append(":".join(unquote_plus(half) for half in pair.split(":", 1)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
    parts.extend(value for _, value in parse_qsl(body, keep_blank_values=True))
    return " ".join(parts)


def parse_scope(value: Optional[str]) -> Optional[Set[str]]:
    """Parse an RFC 6749 §3.3 scope string; None when absent.

    Raises:
        _OAuthFailure: ``invalid_scope`` when the string is malformed.
    """
    if value is None:
        return None
    tokens = value.split(" ")
    if not value or any(not _SCOPE_TOKEN.match(t) for t in tokens):
        raise _OAuthFailure("invalid_scope", "malformed scope (RFC 6749 section 3.3)")
    return set(tokens)


class AuthorizationServer(LoopbackServer):
    """A loopback OAuth 2.0 authorization server (RFC 6749, 8414, 7523, 8707).

    Args:
        issuer_path: path appended to ``http://127.0.0.1:PORT`` to form the issuer
            (``""``, ``"/tenant1"``, or ``"/"`` for an issuer with a trailing slash).
        token_endpoint_auth_methods_supported: advertised and accepted methods; None
            omits the metadata member and accepts only ``client_secret_basic``, the
            RFC 8414 §2 default.
        signing_algs: JWS algorithms accepted for assertions (and advertised).
        metadata_variant: ``"oauth"``, ``"oidc"`` or ``"oidc-append"``.
        include_authorization_endpoint: advertise ``authorization_endpoint`` (it answers
            ``unsupported_response_type``; this server is for M2M flows).
        grant_types_supported: advertised and accepted grants.
        token_lifetime: ``expires_in`` of issued tokens (None: omitted, never expire).
        scopes_supported: advertised scopes; when set, other scopes are
            ``invalid_scope``.
        extra_metadata: members added to the metadata document.
        clock: time source (``time.time``), used for every expiry decision.
        max_assertion_lifetime: largest ``exp - now`` accepted on a client assertion.
        clock_skew: leeway for ``iat`` / ``nbf`` in the future.

    Test knobs (plain attributes, set any time): ``metadata_override`` (dict merged over
    the document; a None value removes a member), ``metadata_content_type``,
    ``token_lifetime``, ``expires_in_as_string``, ``token_type``, ``omit_access_token``,
    ``extra_token_response``, ``delay`` (seconds before each token response),
    ``redirect_token_endpoint_to`` (answer 307 there), ``client_assertion_audiences``
    (accepted assertion ``aud`` values; default the issuer only),
    ``require_assertion_typ``, ``require_jti``, ``require_resource``,
    ``allowed_resources``, ``reject_replayed_id_jag`` (default True: an ID-JAG's ``jti``
    is accepted once, RFC 7523 §3 "MAY ensure that JWTs are not replayed"; False lets a
    client re-submit the original ID-JAG as the ID-JAG draft's "Refresh Token" section
    allows), ``echo_credentials`` (every error response's ``error_description`` repeats
    what the request carried: the raw form body, the ``Authorization`` header, the
    decoded Basic ``id:secret`` and each form value, as a careless or hostile server
    might); failures via :attr:`next_error` / :meth:`fail_next`; any canned response
    via :meth:`set_route`.
    """

    def __init__(self, issuer_path: str = "", *,
                 token_endpoint_auth_methods_supported: Optional[Sequence[str]] = AUTH_METHODS,
                 signing_algs: Sequence[str] = SIGNING_ALGS,
                 metadata_variant: str = "oauth",
                 include_authorization_endpoint: bool = False,
                 grant_types_supported: Optional[Sequence[str]] = None,
                 token_lifetime: Optional[int] = 3600,
                 scopes_supported: Optional[Sequence[str]] = None,
                 extra_metadata: Optional[Dict[str, Any]] = None,
                 clock: Optional[Clock] = None,
                 max_assertion_lifetime: int = 600,
                 clock_skew: int = 30) -> None:
        if issuer_path and (not issuer_path.startswith("/") or "?" in issuer_path
                            or "#" in issuer_path):
            raise ValueError("issuer_path must be empty or a path starting with '/'")
        if metadata_variant not in METADATA_VARIANTS:
            raise ValueError("metadata_variant must be one of %s" % (METADATA_VARIANTS,))
        LoopbackServer.__init__(self)
        self.issuer_path = issuer_path
        self.token_endpoint_auth_methods_supported = (
            None if token_endpoint_auth_methods_supported is None
            else list(token_endpoint_auth_methods_supported))
        self.signing_algs = list(signing_algs)
        self.metadata_variant = metadata_variant
        self.include_authorization_endpoint = include_authorization_endpoint
        self.grant_types_supported = list(
            grant_types_supported if grant_types_supported is not None
            else self._default_grant_types())
        self.token_lifetime = token_lifetime
        self.scopes_supported = None if scopes_supported is None else list(scopes_supported)
        self.extra_metadata = dict(extra_metadata or {})
        self.clock: Clock = clock or time.time
        self.max_assertion_lifetime = max_assertion_lifetime
        self.clock_skew = clock_skew
        # knobs
        self.metadata_override: Dict[str, Any] = {}
        self.metadata_content_type = "application/json"
        self.expires_in_as_string = False
        self.token_type = "Bearer"
        self.omit_access_token = False
        self.extra_token_response: Dict[str, Any] = {}
        self.delay = 0.0
        self.redirect_token_endpoint_to: Optional[str] = None
        self.client_assertion_audiences: Optional[List[str]] = None
        self.require_assertion_typ: Optional[str] = None
        self.require_jti = True
        self.require_resource = False
        self.reject_replayed_id_jag = True
        self.echo_credentials = False
        self.allowed_resources: Optional[List[str]] = None
        # DPoP (RFC 9449): proofs are checked whenever a DPoP header is sent; with
        # require_dpop, a request without one is refused. Bound tokens get token_type
        # dpop_token_type and cnf.jkt. dpop_signing_algs is advertised when set.
        self.dpop = DPoPChecker(self.clock)
        self.require_dpop = False
        self.dpop_token_type = "DPoP"
        self.dpop_signing_algs: Optional[List[str]] = None
        # state (guarded by self._lock)
        self._clients: Dict[str, Client] = {}
        self._tokens: Dict[str, Dict[str, Any]] = {}
        self._seen_jti: Dict[Tuple[str, str], float] = {}
        self._failures: List[_OAuthFailure] = []
        self._trusted_idps: Dict[str, _Trusted] = {}
        self._trusted_workloads: Dict[str, _Trusted] = {}

    def _default_grant_types(self) -> List[str]:
        return [GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER]

    def __repr__(self) -> str:
        return "%s(issuer=%r)" % (type(self).__name__, self.issuer)

    # -- URLs ------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier: ``http://127.0.0.1:PORT`` + ``issuer_path``."""
        return self.base_url + self.issuer_path

    url = issuer

    @property
    def _base_path(self) -> str:
        # RFC 8414 §3.1: "any terminating "/" MUST be removed" before inserting.
        return self.issuer_path.rstrip("/")

    @property
    def token_path(self) -> str:
        """Path of the token endpoint (``{issuer path}/token``)."""
        return self._base_path + "/token"

    @property
    def token_endpoint(self) -> str:
        """Absolute URL of the token endpoint."""
        return self.base_url + self.token_path

    @property
    def jwks_uri(self) -> str:
        """Absolute URL of the JWK Set (empty for a plain AS)."""
        return self.base_url + self._base_path + "/jwks"

    @property
    def metadata_path(self) -> str:
        """The one path that serves the metadata document, per ``metadata_variant``."""
        if self.metadata_variant == "oauth":
            return "/.well-known/oauth-authorization-server" + self._base_path
        if self.metadata_variant == "oidc":
            return "/.well-known/openid-configuration" + self._base_path
        return self._base_path + "/.well-known/openid-configuration"

    @property
    def metadata_url(self) -> str:
        """Absolute URL of the metadata document."""
        return self.base_url + self.metadata_path

    # -- configuration ---------------------------------------------------------------

    def register_client(self, client_id: str, *, client_secret: Optional[str] = None,
                        public_jwk: Key = None, auth_method: Optional[str] = None,
                        allowed_scopes: Optional[Sequence[str]] = None,
                        default_scopes: Optional[Sequence[str]] = None,
                        grant_types: Optional[Sequence[str]] = None,
                        idjag_client_id: Optional[str] = None) -> Client:
        """Register (or replace) a client.

        Args:
            client_id: the identifier.
            client_secret: for ``client_secret_basic`` / ``client_secret_post``.
            public_jwk: for ``private_key_jwt`` (JWK dict, public key, SigningKey, PEM).
            auth_method: the only method accepted for this client (None: any).
                ``"none"`` registers a public client identified by ``client_id`` alone.
            allowed_scopes: scopes it may get (None: any).
            default_scopes: scopes granted when the request has no ``scope``.
            grant_types: grants it may use (None: any supported).
            idjag_client_id: at an IdP, the ``client_id`` claim of ID-JAGs it gets.

        Returns:
            The :class:`Client` record.
        """
        client = Client(client_id, client_secret, public_jwk, auth_method, allowed_scopes,
                        default_scopes, grant_types, idjag_client_id)
        with self._lock:
            self._clients[client_id] = client
        return client

    def client(self, client_id: str) -> Optional[Client]:
        """The registered client, or None."""
        with self._lock:
            return self._clients.get(client_id)

    def trust_idp(self, issuer: Union[str, "IdentityProvider"], public_jwk: Key = None) -> None:
        """Accept ID-JAGs (jwt-bearer assertions, ``typ`` ``oauth-id-jag+jwt``) from an IdP.

        Args:
            issuer: the IdP issuer, or an :class:`IdentityProvider` (its key is used).
            public_jwk: the IdP's verification key when ``issuer`` is a string.
        """
        name: str = issuer.issuer if isinstance(issuer, IdentityProvider) else issuer
        key: Key = issuer.public_jwk if isinstance(issuer, IdentityProvider) else public_jwk
        if key is None:
            raise ValueError("trust_idp needs the IdP's public key")
        with self._lock:
            self._trusted_idps[name] = _Trusted(name, key)

    def trust_workload_issuer(self, issuer: str, public_jwk: Key, *,
                              allowed_subjects: Optional[Sequence[str]] = None,
                              allowed_scopes: Optional[Sequence[str]] = None) -> None:
        """Accept workload-identity JWTs (jwt-bearer grant without client auth; SEP-1933).

        Args:
            issuer: the platform token issuer (``iss``).
            public_jwk: its verification key.
            allowed_subjects: ``sub`` values allowed (others: ``unauthorized_client``).
            allowed_scopes: scopes they may get (others: ``invalid_scope``).
        """
        with self._lock:
            self._trusted_workloads[issuer] = _Trusted(issuer, public_jwk, allowed_subjects,
                                                       allowed_scopes)

    # -- failure injection -----------------------------------------------------------------

    def fail_next(self, error: str = "server_error", status: int = 400, count: int = 1,
                  description: Optional[str] = None,
                  headers: Optional[Sequence[Tuple[str, str]]] = None) -> None:
        """Answer the next ``count`` token requests with an RFC 6749 §5.2 error."""
        with self._lock:
            for _ in range(count):
                self._failures.append(_OAuthFailure(error, description, status,
                                                    list(headers or [])))

    @property
    def next_error(self) -> Optional[Tuple[str, int]]:
        """The next injected ``(error, status)``; assign a tuple to inject one, None to clear."""
        with self._lock:
            if not self._failures:
                return None
            return (self._failures[0].error, self._failures[0].status)

    @next_error.setter
    def next_error(self, value: Optional[Sequence[Any]]) -> None:
        if value is None:
            with self._lock:
                del self._failures[:]
            return
        items = list(value)
        self.fail_next(str(items[0]), int(items[1]) if len(items) > 1 else 400,
                       description=str(items[2]) if len(items) > 2 else None)

    # -- tokens ----------------------------------------------------------------------------

    def issue_token(self, client_id: Optional[str] = None, scope: Sequence[str] = (),
                    resource: Optional[str] = None, lifetime: Any = _UNSET,
                    sub: Optional[str] = None, grant_type: str = "test",
                    jkt: Optional[str] = None) -> str:
        """Mint an access token directly (no HTTP), e.g. for bring-your-own-token tests.

        With ``jkt`` the token is DPoP-bound to that key thumbprint (``cnf.jkt``).

        Returns:
            The opaque token string.
        """
        life = self.token_lifetime if lifetime is _UNSET else lifetime
        token = "at-" + secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            self._tokens[token] = {
                "active": True, "client_id": client_id, "scope": frozenset(scope),
                "resource": resource, "iat": int(now), "sub": sub,
                "exp": None if life is None else now + float(life),
                "iss": self.issuer, "grant_type": grant_type,
            }
            if jkt is not None:
                self._tokens[token]["cnf"] = {"jkt": jkt}
        return token

    def introspect(self, token: str) -> Optional[Dict[str, Any]]:
        """In-process token introspection (RFC 7662-like), for the MCP test server.

        Returns:
            None when the token is unknown, revoked or expired; otherwise a dict with
            ``active``, ``client_id``, ``scope`` (space-joined), ``scopes`` (a set),
            ``resource``, ``exp``, ``iat``, ``iss``, ``sub`` and ``grant_type``.
        """
        with self._lock:
            info = self._tokens.get(token)
            if info is None or not info["active"]:
                return None
            info = dict(info)
        if info["exp"] is not None and info["exp"] <= self.clock():
            return None
        info["scopes"] = set(info["scope"])
        info["scope"] = " ".join(sorted(info["scope"]))
        return info

    def revoke(self, token: Optional[str] = None) -> None:
        """Revoke one token, or every token issued so far when ``token`` is None."""
        with self._lock:
            for key, info in self._tokens.items():
                if token is None or key == token:
                    info["active"] = False

    def issued_tokens(self) -> List[Dict[str, Any]]:
        """Metadata of every token issued (without the token strings), oldest first."""
        with self._lock:
            return [dict(v) for v in self._tokens.values()]

    # -- recording helpers ----------------------------------------------------------------

    def token_requests(self) -> List[RecordedRequest]:
        """Recorded POSTs to the token endpoint."""
        return self.requests_to(self.token_path, "POST")

    def metadata_requests(self) -> List[RecordedRequest]:
        """Recorded requests for the metadata document."""
        return self.requests_to(self.metadata_path)

    # -- metadata --------------------------------------------------------------------------

    def metadata(self) -> Dict[str, Any]:
        """The RFC 8414 §2 document this server serves (after overrides)."""
        doc: Dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": list(self.grant_types_supported),
        }
        methods = self.token_endpoint_auth_methods_supported
        if methods is not None:
            doc["token_endpoint_auth_methods_supported"] = list(methods)
            if "private_key_jwt" in methods:
                doc["token_endpoint_auth_signing_alg_values_supported"] = list(
                    self.signing_algs)
        if self.scopes_supported is not None:
            doc["scopes_supported"] = list(self.scopes_supported)
        if self.dpop_signing_algs is not None:
            doc["dpop_signing_alg_values_supported"] = list(self.dpop_signing_algs)
        if GRANT_JWT_BEARER in self.grant_types_supported:
            # ID-JAG "Resource Authorization Server Metadata"
            doc["authorization_grant_profiles_supported"] = [GRANT_PROFILE_ID_JAG]
        if self.include_authorization_endpoint:
            doc["authorization_endpoint"] = self.base_url + self._base_path + "/authorize"
            doc["response_types_supported"] = ["code"]
            doc["code_challenge_methods_supported"] = ["S256"]
        if self.metadata_variant != "oauth":
            # OpenID Connect Discovery 1.0 §3 REQUIRED members
            doc["jwks_uri"] = self.jwks_uri
            doc.setdefault("response_types_supported", ["code"])
            doc["subject_types_supported"] = ["public"]
            doc["id_token_signing_alg_values_supported"] = ["ES256"]
        self._extend_metadata(doc)
        doc.update(self.extra_metadata)
        for key, value in dict(self.metadata_override).items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return doc

    def _extend_metadata(self, doc: Dict[str, Any]) -> None:
        """Subclass hook to add members."""

    def jwks(self) -> Dict[str, Any]:
        """The JWK Set served at :attr:`jwks_uri`."""
        return {"keys": []}

    # -- request handling ------------------------------------------------------------------

    def handle(self, record: RecordedRequest) -> Response:
        path = record.url_path
        if path == self.metadata_path:
            if record.method != "GET":
                return Response.json(405, {"error": "method_not_allowed"}, [("Allow", "GET")])
            body = json.dumps(self.metadata(), sort_keys=True).encode("utf-8")
            return Response(200, [("Content-Type", self.metadata_content_type)], body)
        if path == self.token_path:
            return self._token_endpoint(record)
        if path == self._base_path + "/jwks" and record.method == "GET":
            return Response.json(200, self.jwks())
        if self.include_authorization_endpoint and path == self._base_path + "/authorize":
            return Response.json(400, {"error": "unsupported_response_type",
                                       "error_description": "M2M test server"})
        return not_found()

    def _token_endpoint(self, record: RecordedRequest) -> Response:
        if self.redirect_token_endpoint_to:
            return Response(307, [("Location", self.redirect_token_endpoint_to)])
        if self.delay:
            record.info["_delay"] = self.delay
        try:
            body = self._token_flow(record)
        except _OAuthFailure as failure:
            record.info["error"] = failure.error
            err: Dict[str, Any] = {"error": failure.error}
            description = failure.description
            if self.echo_credentials:
                description = "{} (received: {})".format(description or failure.error,
                                                        _echo(record))
            if description:
                err["error_description"] = description
            return Response.json(failure.status, err, _NO_STORE + failure.headers)
        return Response.json(200, body, _NO_STORE + self.dpop.nonce_headers())

    def _token_flow(self, record: RecordedRequest) -> Dict[str, Any]:
        with self._lock:
            injected = self._failures.pop(0) if self._failures else None
        if injected is not None:
            record.info["injected"] = True
            raise injected
        # RFC 6749 §3.2: "The client MUST use the HTTP "POST" method".
        if record.method != "POST":
            raise _OAuthFailure("invalid_request", "the token endpoint requires POST", 405,
                                [("Allow", "POST")])
        # §2.3.1: credentials "MUST NOT be included in the request URI".
        if urlsplit(record.path).query:
            raise _OAuthFailure("invalid_request", "parameters in the request URI")
        ctype = (record.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise _OAuthFailure("invalid_request",
                                "Content-Type must be application/x-www-form-urlencoded")
        try:
            text = record.body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except (UnicodeDecodeError, ValueError):
            raise _OAuthFailure("invalid_request", "malformed form body") from None
        # §3.2: "Request and response parameters MUST NOT be included more than once."
        # (RFC 8707 allows several `resource`; mcpauth sends one, so this server is strict.)
        form: Dict[str, str] = {}
        for key, value in pairs:
            if key in form:
                raise _OAuthFailure("invalid_request",
                                    "parameter %r included more than once" % key)
            form[key] = value
        grant_type = form.get("grant_type")
        record.info["grant_type"] = grant_type
        self._check_dpop(record)
        client = self._authenticate(record, form)
        if not grant_type:
            raise _OAuthFailure("invalid_request", "grant_type is required")
        if grant_type not in self.grant_types_supported:
            raise _OAuthFailure("unsupported_grant_type", "grant_type not supported")
        if client is not None and client.grant_types is not None and \
                grant_type not in client.grant_types:
            raise _OAuthFailure("unauthorized_client", "grant_type not allowed for client")
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            return self._grant_client_credentials(record, form, client)
        if grant_type == GRANT_JWT_BEARER:
            return self._grant_jwt_bearer(record, form, client)
        return self._other_grant(grant_type, record, form, client)

    def _other_grant(self, grant_type: str, record: RecordedRequest, form: Dict[str, str],
                     client: Optional[Client]) -> Dict[str, Any]:
        raise _OAuthFailure("unsupported_grant_type", "grant_type not supported")

    def _check_dpop(self, record: RecordedRequest) -> None:
        """RFC 9449 §5: check a token request's proof (400 invalid_dpop_proof, or 400
        use_dpop_nonce with ``DPoP-Nonce``, §8)."""
        from ..dpop import DPoPProofError

        if record.headers.get("DPoP") is None:
            if self.require_dpop:
                raise _OAuthFailure("invalid_dpop_proof", "a DPoP proof is required")
            return
        try:
            self.dpop.check(record, self.token_endpoint)
        except DPoPProofError as exc:
            record.info["dpop_error"] = str(exc)
            if exc.error == "use_dpop_nonce":
                raise _OAuthFailure("use_dpop_nonce", "Authorization server requires "
                                    "nonce in DPoP proof", 400,
                                    self.dpop.nonce_headers()) from None
            raise _OAuthFailure("invalid_dpop_proof", str(exc)) from None

    # -- client authentication (RFC 6749 §2.3) -----------------------------------------

    def _accepted_methods(self) -> List[str]:
        methods = self.token_endpoint_auth_methods_supported
        return ["client_secret_basic"] if methods is None else list(methods)

    def _authenticate(self, record: RecordedRequest,
                      form: Dict[str, str]) -> Optional[Client]:
        authz = record.headers.get("Authorization")
        methods: List[str] = []
        if authz is not None:
            if authz.split(" ", 1)[0].lower() != "basic":
                raise _OAuthFailure("invalid_request",
                                    "unsupported Authorization scheme at the token endpoint")
            methods.append("client_secret_basic")
        if "client_secret" in form:
            methods.append("client_secret_post")
        if "client_assertion" in form or "client_assertion_type" in form:
            methods.append("private_key_jwt")
        # §2.3: "The client MUST NOT use more than one authentication method in each
        # request."
        if len(methods) > 1:
            raise _OAuthFailure("invalid_request",
                                "more than one client authentication method: "
                                + ", ".join(methods))
        basic = bool(methods) and methods[0] == "client_secret_basic"

        def invalid_client(description: str) -> _OAuthFailure:
            if basic:
                return _OAuthFailure("invalid_client", description, 401,
                                     [("WWW-Authenticate", 'Basic realm="%s"' % self.issuer)])
            return _OAuthFailure("invalid_client", description, 400)

        if not methods:
            client_id = form.get("client_id")
            if client_id is None:
                return None
            with self._lock:
                client = self._clients.get(client_id)
            if client is None or client.auth_method != "none":
                # Not a public client: leave unauthenticated (a workload jwt-bearer
                # request may carry an informational client_id, SEP-1933).
                record.info["unauthenticated_client_id"] = client_id
                return None
            if "none" not in self._accepted_methods():
                raise invalid_client("auth method none is not supported")
            record.info["auth_method"] = "none"
            record.info["client_id"] = client_id
            return client
        method = methods[0]
        record.info["auth_method"] = method
        if method not in self._accepted_methods():
            raise invalid_client("client authentication method %s is not supported" % method)
        if method == "client_secret_basic":
            client = self._auth_basic(authz or "", invalid_client)
        elif method == "client_secret_post":
            client = self._auth_post(form, invalid_client)
        else:
            client = self._auth_private_key_jwt(record, form, invalid_client)
        if client.auth_method is not None and client.auth_method != method:
            raise invalid_client("client is registered for %s" % client.auth_method)
        # RFC 7521 §4.2: a client_id parameter "MUST identify the same client".
        if "client_id" in form and form["client_id"] != client.client_id:
            raise invalid_client("client_id does not match the authenticated client")
        record.info["client_id"] = client.client_id
        return client

    def _lookup(self, client_id: str) -> Optional[Client]:
        with self._lock:
            return self._clients.get(client_id)

    def _check_secret(self, client_id: str, secret: str,
                      invalid_client: Callable[[str], _OAuthFailure]) -> Client:
        client = self._lookup(client_id)
        if client is None:
            raise invalid_client("unknown client")
        expected = client.client_secret
        if expected is None or not hmac.compare_digest(secret.encode("utf-8"),
                                                       expected.encode("utf-8")):
            raise invalid_client("client authentication failed")
        return client

    def _auth_basic(self, authz: str,
                    invalid_client: Callable[[str], _OAuthFailure]) -> Client:
        parts = authz.split(" ", 1)
        try:
            raw = base64.b64decode(parts[1].strip().encode("ascii"), validate=True)
            decoded = raw.decode("utf-8")
        except (IndexError, ValueError, binascii.Error, UnicodeError):
            raise invalid_client("malformed Basic credentials") from None
        if ":" not in decoded:
            raise invalid_client("malformed Basic credentials")
        # RFC 6749 §2.3.1: id and secret are encoded with Appendix B
        # (application/x-www-form-urlencoded) before Basic; undo it.
        enc_id, enc_secret = decoded.split(":", 1)
        return self._check_secret(unquote_plus(enc_id), unquote_plus(enc_secret),
                                  invalid_client)

    def _auth_post(self, form: Dict[str, str],
                   invalid_client: Callable[[str], _OAuthFailure]) -> Client:
        client_id = form.get("client_id")
        if not client_id:
            raise invalid_client("client_id is required with client_secret")
        return self._check_secret(client_id, form.get("client_secret", ""), invalid_client)

    def _auth_private_key_jwt(self, record: RecordedRequest, form: Dict[str, str],
                              invalid_client: Callable[[str], _OAuthFailure]) -> Client:
        from .. import jws

        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT_BEARER:
            raise invalid_client("client_assertion_type must be " +
                                 CLIENT_ASSERTION_TYPE_JWT_BEARER)
        assertion = form.get("client_assertion") or ""
        # RFC 7523 §2.2: the value "MUST NOT contain more than one JWT".
        if assertion.count(".") != 2:
            raise invalid_client("client_assertion must be a single compact JWS")
        try:
            header, claims = jws.decode_unverified(assertion)
        except Exception:
            raise invalid_client("malformed client_assertion") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise invalid_client("malformed client_assertion")
        record.info["client_assertion_header"] = dict(header)
        record.info["client_assertion_claims"] = dict(claims)
        sub = claims.get("sub")
        # RFC 7523 §3 / OIDC Core §9: iss and sub are both the client_id.
        if not isinstance(sub, str) or claims.get("iss") != sub:
            raise invalid_client("client_assertion iss and sub must both be the client_id")
        client = self._lookup(sub)
        if client is None:
            raise invalid_client("unknown client")
        if client.public_jwk is None:
            raise invalid_client("client has no registered key")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.signing_algs:
            raise invalid_client("client_assertion alg is not allowed")
        if self.require_assertion_typ is not None and \
                header.get("typ") != self.require_assertion_typ:
            raise invalid_client("client_assertion typ must be %s" % self.require_assertion_typ)
        try:
            claims = json.loads(jws.verify(assertion, client.public_jwk, [alg]).decode("utf-8"))
        except ImportError:  # MissingDependencyError: a setup problem, not a bad peer
            raise
        except Exception:
            raise invalid_client("client_assertion signature is invalid") from None
        if not isinstance(claims, dict):
            raise invalid_client("malformed client_assertion")
        # draft-ietf-oauth-rfc7523bis: aud is the issuer identifier as its sole value.
        audiences = self.client_assertion_audiences or [self.issuer]
        if not any(a in audiences for a in _aud_list(claims.get("aud"))):
            raise invalid_client("client_assertion aud must be the issuer identifier")
        now = self.clock()
        exp = _number(claims.get("exp"))
        if exp is None:
            raise invalid_client("client_assertion has no exp")
        if exp <= now:
            raise invalid_client("client_assertion has expired")
        if exp - now > self.max_assertion_lifetime:
            raise invalid_client("client_assertion exp is too far in the future")
        for name in ("iat", "nbf"):
            if name in claims:
                value = _number(claims[name])
                if value is None or value > now + self.clock_skew:
                    raise invalid_client("client_assertion %s is in the future" % name)
        self._check_jti(client.client_id, claims, exp, invalid_client, self.require_jti)
        return client

    def _check_jti(self, scope_key: str, claims: Dict[str, Any], exp: float,
                   failure: Callable[[str], _OAuthFailure], required: bool) -> None:
        jti = claims.get("jti")
        if jti is None:
            if required:
                raise failure("jti is required")
            return
        if not isinstance(jti, str) or not jti:
            raise failure("jti must be a non-empty string")
        now = self.clock()
        with self._lock:
            for key in [k for k, v in self._seen_jti.items() if v < now - self.clock_skew]:
                del self._seen_jti[key]
            if (scope_key, jti) in self._seen_jti:
                raise failure("jti has already been used")
            self._seen_jti[(scope_key, jti)] = exp

    # -- grants ----------------------------------------------------------------------------

    def _check_resource(self, form: Dict[str, str]) -> Optional[str]:
        resource = form.get("resource")
        if resource is None:
            if self.require_resource:
                raise _OAuthFailure("invalid_target", "resource is required (RFC 8707)")
            return None
        parts = urlsplit(resource)
        # RFC 8707 §2: "MUST be an absolute URI ... MUST NOT include a fragment".
        if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
            raise _OAuthFailure("invalid_target", "resource must be an absolute URI "
                                "without a fragment")
        if self.allowed_resources is not None and resource not in self.allowed_resources:
            raise _OAuthFailure("invalid_target", "unknown resource")
        return resource

    def _grant_scope(self, requested: Optional[Set[str]], default: Set[str],
                     *limits: Optional[FrozenSet[str]]) -> Set[str]:
        granted = set(default) if requested is None else requested
        for limit in limits:
            if limit is not None and not granted <= limit:
                raise _OAuthFailure("invalid_scope", "scope not allowed")
        if self.scopes_supported is not None and not granted <= set(self.scopes_supported):
            raise _OAuthFailure("invalid_scope", "unknown scope")
        return granted

    def _token_response(self, record: RecordedRequest, client_id: Optional[str],
                        scope: Set[str], resource: Optional[str], sub: Optional[str],
                        grant_type: str) -> Dict[str, Any]:
        record.info["granted_scope"] = " ".join(sorted(scope))
        record.info["resource"] = resource
        # A server answering dpop_token_type "Bearer" acts as one that ignores DPoP.
        jkt = record.info.get("dpop_jkt") if self.dpop_token_type.lower() == "dpop" else None
        body: Dict[str, Any] = {
            "token_type": self.dpop_token_type if "dpop_jkt" in record.info else self.token_type}
        if not self.omit_access_token:
            body["access_token"] = self.issue_token(client_id, sorted(scope), resource,
                                                    sub=sub, grant_type=grant_type, jkt=jkt)
        if self.token_lifetime is not None:
            body["expires_in"] = (str(self.token_lifetime) if self.expires_in_as_string
                                  else self.token_lifetime)
        if scope:
            body["scope"] = " ".join(sorted(scope))
        for key, value in dict(self.extra_token_response).items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _grant_client_credentials(self, record: RecordedRequest, form: Dict[str, str],
                                  client: Optional[Client]) -> Dict[str, Any]:
        # OAuth 2.1 §4.2: only confidential clients; "MUST authenticate the client".
        if client is None:
            raise _OAuthFailure("invalid_client", "client authentication is required")
        if client.auth_method == "none":
            raise _OAuthFailure("unauthorized_client", "public clients cannot use "
                                "client_credentials")
        scope = self._grant_scope(parse_scope(form.get("scope")), set(client.default_scopes),
                                  client.allowed_scopes)
        resource = self._check_resource(form)
        return self._token_response(record, client.client_id, scope, resource, None,
                                    GRANT_CLIENT_CREDENTIALS)

    def _verify_jwt(self, token: str, key: Key, failure: Callable[[str], _OAuthFailure],
                    what: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Verify a JWS with ``key`` (alg from ``signing_algs``); return header, claims."""
        from .. import jws

        if token.count(".") != 2:
            raise failure("%s must be a single compact JWS" % what)
        try:
            header, _ = jws.decode_unverified(token)
        except Exception:
            raise failure("malformed %s" % what) from None
        alg = header.get("alg") if isinstance(header, dict) else None
        if not isinstance(alg, str) or alg not in self.signing_algs:
            raise failure("%s alg is not allowed" % what)
        try:
            claims = json.loads(jws.verify(token, key, [alg]).decode("utf-8"))
        except ImportError:  # MissingDependencyError: a setup problem, not a bad peer
            raise
        except Exception:
            raise failure("%s signature is invalid" % what) from None
        if not isinstance(claims, dict):
            raise failure("malformed %s" % what)
        return dict(header), claims

    def _check_times(self, claims: Dict[str, Any],
                     failure: Callable[[str], _OAuthFailure], what: str) -> float:
        now = self.clock()
        exp = _number(claims.get("exp"))
        if exp is None:
            raise failure("%s has no exp" % what)
        if exp <= now:
            raise failure("%s has expired" % what)
        for name in ("iat", "nbf"):
            if name in claims:
                value = _number(claims[name])
                if value is None or value > now + self.clock_skew:
                    raise failure("%s %s is in the future" % (what, name))
        return exp

    def _grant_jwt_bearer(self, record: RecordedRequest, form: Dict[str, str],
                          client: Optional[Client]) -> Dict[str, Any]:
        from .. import jws

        assertion = form.get("assertion")
        if not assertion:
            raise _OAuthFailure("invalid_request", "assertion is required")
        if assertion.count(".") != 2:
            # RFC 7523 §2.1: "MUST contain a single JWT".
            raise _OAuthFailure("invalid_grant", "assertion must be a single JWT")
        try:
            header, claims = jws.decode_unverified(assertion)
        except Exception:
            raise _OAuthFailure("invalid_grant", "malformed assertion") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _OAuthFailure("invalid_grant", "malformed assertion")
        record.info["assertion_header"] = dict(header)
        record.info["assertion_claims"] = dict(claims)
        iss = claims.get("iss")
        with self._lock:
            idp = self._trusted_idps.get(iss) if isinstance(iss, str) else None
            workload = self._trusted_workloads.get(iss) if isinstance(iss, str) else None
        if idp is not None:
            return self._grant_id_jag(record, form, client, assertion, idp)
        if workload is not None:
            return self._grant_workload(record, form, client, assertion, workload)
        raise _OAuthFailure("invalid_grant", "assertion issuer is not trusted")

    def _grant_id_jag(self, record: RecordedRequest, form: Dict[str, str],
                      client: Optional[Client], assertion: str,
                      idp: _Trusted) -> Dict[str, Any]:
        def invalid_grant(description: str) -> _OAuthFailure:
            return _OAuthFailure("invalid_grant", description)

        record.info["assertion_kind"] = "id-jag"
        # EXT-EMA §5: the client authenticates at the resource AS.
        if client is None:
            raise _OAuthFailure("invalid_client", "client authentication is required")
        header, claims = self._verify_jwt(assertion, idp.key, invalid_grant, "ID-JAG")
        if header.get("typ") != TYP_ID_JAG:
            raise invalid_grant("ID-JAG typ must be %s" % TYP_ID_JAG)
        if self.issuer not in _aud_list(claims.get("aud")):
            raise invalid_grant("ID-JAG aud must be this authorization server's issuer")
        exp = self._check_times(claims, invalid_grant, "ID-JAG")
        if claims.get("client_id") != client.client_id:
            raise invalid_grant("ID-JAG client_id does not match the authenticated client")
        if not isinstance(claims.get("sub"), str):
            raise invalid_grant("ID-JAG has no sub")
        resource = self._check_resource(form)
        claim_resource = claims.get("resource")
        if resource is not None and claim_resource is not None and \
                resource not in _aud_list(claim_resource):
            raise invalid_grant("resource does not match the ID-JAG resource")
        if resource is None and isinstance(claim_resource, str):
            resource = claim_resource
        if self.reject_replayed_id_jag:
            self._check_jti(idp.issuer, claims, exp, invalid_grant, True)
        elif not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise invalid_grant("jti is required")
        claim_scope = claims.get("scope")
        jag_scopes = parse_scope(claim_scope) if isinstance(claim_scope, str) else None
        scope = self._grant_scope(parse_scope(form.get("scope")),
                                  set(jag_scopes or client.default_scopes),
                                  None if jag_scopes is None else frozenset(jag_scopes),
                                  client.allowed_scopes)
        return self._token_response(record, client.client_id, scope, resource,
                                    claims["sub"], GRANT_JWT_BEARER)

    def _grant_workload(self, record: RecordedRequest, form: Dict[str, str],
                        client: Optional[Client], assertion: str,
                        trusted: _Trusted) -> Dict[str, Any]:
        def invalid_grant(description: str) -> _OAuthFailure:
            return _OAuthFailure("invalid_grant", description)

        record.info["assertion_kind"] = "workload"
        header, claims = self._verify_jwt(assertion, trusted.key, invalid_grant,
                                          "assertion")
        # EXT-WIF: aud is the token endpoint; 7523bis also allows the issuer.
        if not set(_aud_list(claims.get("aud"))) & {self.issuer, self.token_endpoint}:
            raise invalid_grant("assertion aud must be the issuer or the token endpoint")
        exp = self._check_times(claims, invalid_grant, "assertion")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise invalid_grant("assertion has no sub")
        self._check_jti(trusted.issuer, claims, exp, invalid_grant, False)
        if trusted.allowed_subjects is not None and sub not in trusted.allowed_subjects:
            raise _OAuthFailure("unauthorized_client", "workload is not authorized")
        record.info["workload_sub"] = sub
        scope = self._grant_scope(parse_scope(form.get("scope")), set(),
                                  trusted.allowed_scopes,
                                  client.allowed_scopes if client is not None else None)
        resource = self._check_resource(form)
        return self._token_response(record, client.client_id if client else None, scope,
                                    resource, sub, GRANT_JWT_BEARER)


class IdentityProvider(AuthorizationServer):
    """An enterprise IdP: issues ID tokens and exchanges them for ID-JAGs (RFC 8693).

    Token exchange (EXT-EMA §4, ID-JAG "Token Exchange") requires client authentication
    (§7.7 "MUST be enforced"), ``requested_token_type`` = ID-JAG, a ``subject_token`` of
    type ``id_token`` that this IdP signed, unexpired, whose ``aud`` is the authenticated
    client, plus ``audience`` and ``resource``. The ID-JAG is ES256 with
    ``typ: oauth-id-jag+jwt`` and claims ``iss sub aud client_id resource scope jti iat
    exp`` (``client_id`` is the client's ``idjag_client_id``, else its own id).

    Args:
        issuer_path: as for :class:`AuthorizationServer`.
        signing_key: a ``jws.SigningKey`` (default: a new EC P-256 key).
        **kwargs: passed to :class:`AuthorizationServer`.

    Knobs: ``require_step_up`` (answer ``insufficient_user_authentication``),
    ``issued_token_type_override``, ``exchange_token_type`` (``"N_A"``),
    ``id_jag_lifetime`` (300), ``require_exchange_resource`` (True),
    ``trusted_audiences`` (None: any ``audience``).
    """

    def __init__(self, issuer_path: str = "", *, signing_key: Any = None,
                 **kwargs: Any) -> None:
        from .. import jws

        # The key first: if cryptography is missing, no socket has been bound yet.
        self._key = signing_key if signing_key is not None else \
            jws.generate_private_key(kty="EC", curve="P-256")
        AuthorizationServer.__init__(self, issuer_path, **kwargs)
        self.require_step_up = False
        self.issued_token_type_override: Optional[str] = None
        self.exchange_token_type = "N_A"
        self.id_jag_lifetime = 300
        self.require_exchange_resource = True
        self.trusted_audiences: Optional[List[str]] = None
        self._id_jags: List[Dict[str, Any]] = []

    def _default_grant_types(self) -> List[str]:
        return [GRANT_TOKEN_EXCHANGE, GRANT_CLIENT_CREDENTIALS]

    def _extend_metadata(self, doc: Dict[str, Any]) -> None:
        doc["jwks_uri"] = self.jwks_uri
        doc["identity_chaining_requested_token_types_supported"] = [TOKEN_TYPE_ID_JAG]

    @property
    def public_jwk(self) -> Dict[str, Any]:
        """The IdP's public signing key as a JWK (what a resource AS trusts)."""
        return dict(self._key.public_jwk())

    def jwks(self) -> Dict[str, Any]:
        jwk = self.public_jwk
        jwk.setdefault("kid", self._key.thumbprint())
        jwk.setdefault("alg", "ES256")
        jwk.setdefault("use", "sig")
        return {"keys": [jwk]}

    def sign(self, claims: Dict[str, Any], headers: Optional[Dict[str, Any]] = None,
             algorithm: str = "ES256") -> str:
        """Sign arbitrary claims with the IdP key (to craft good or bad tokens in tests)."""
        from .. import jws

        hdr = {"kid": self._key.thumbprint()}
        hdr.update(headers or {})
        return str(jws.sign(dict(claims), self._key, algorithm, headers=hdr))

    def issue_id_token(self, sub: str = "user@example.com", aud: Optional[str] = None,
                       lifetime: int = 3600,
                       extra_claims: Optional[Dict[str, Any]] = None) -> str:
        """Issue an OIDC ID token (ES256, ``typ: JWT``) as the user's SSO would.

        Args:
            sub: the user.
            aud: the IdP client id (default: the only registered client).
            lifetime: seconds until ``exp`` (negative for an expired token).
            extra_claims: added to / overriding the claims.

        Returns:
            The compact JWS.
        """
        if aud is None:
            with self._lock:
                ids = list(self._clients)
            if len(ids) != 1:
                raise ValueError("pass aud= (the IdP client id)")
            aud = ids[0]
        now = int(self.clock())
        claims = {"iss": self.issuer, "sub": sub, "aud": aud, "iat": now,
                  "exp": now + int(lifetime), "jti": secrets.token_urlsafe(12)}
        if "@" in sub:
            claims["email"] = sub
        claims.update(extra_claims or {})
        return self.sign(claims, {"typ": "JWT"})

    def issued_id_jags(self) -> List[Dict[str, Any]]:
        """Claims of every ID-JAG issued so far."""
        with self._lock:
            return [dict(c) for c in self._id_jags]

    def _other_grant(self, grant_type: str, record: RecordedRequest, form: Dict[str, str],
                     client: Optional[Client]) -> Dict[str, Any]:
        if grant_type != GRANT_TOKEN_EXCHANGE:
            return AuthorizationServer._other_grant(self, grant_type, record, form, client)
        return self._token_exchange(record, form, client)

    def _token_exchange(self, record: RecordedRequest, form: Dict[str, str],
                        client: Optional[Client]) -> Dict[str, Any]:
        def invalid_request(description: str) -> _OAuthFailure:
            return _OAuthFailure("invalid_request", description)

        def invalid_grant(description: str) -> _OAuthFailure:
            return _OAuthFailure("invalid_grant", description)

        for name in ("requested_token_type", "subject_token_type", "audience", "resource"):
            record.info[name] = form.get(name)
        if client is None:
            raise _OAuthFailure("invalid_client", "client authentication is required")
        if form.get("requested_token_type") != TOKEN_TYPE_ID_JAG:
            raise invalid_request("requested_token_type must be " + TOKEN_TYPE_ID_JAG)
        subject_token = form.get("subject_token")
        if not subject_token:
            raise invalid_request("subject_token is required")
        if form.get("subject_token_type") != TOKEN_TYPE_ID_TOKEN:
            raise invalid_request("unsupported subject_token_type")
        audience = form.get("audience")
        if not audience:
            raise invalid_request("audience is required")
        if self.trusted_audiences is not None and audience not in self.trusted_audiences:
            raise _OAuthFailure("invalid_target", "unknown audience")
        if self.require_exchange_resource and "resource" not in form:
            raise invalid_request("resource is required")
        resource = self._check_resource(form)
        _, id_claims = self._verify_jwt(subject_token, self._key, invalid_grant,
                                        "subject_token")
        if id_claims.get("iss") != self.issuer:
            raise invalid_grant("subject_token was not issued by this IdP")
        self._check_times(id_claims, invalid_grant, "subject_token")
        if client.client_id not in _aud_list(id_claims.get("aud")):
            raise invalid_grant("subject_token aud is not the authenticated client")
        if not isinstance(id_claims.get("sub"), str):
            raise invalid_grant("subject_token has no sub")
        scope = self._grant_scope(parse_scope(form.get("scope")), set(),
                                  client.allowed_scopes)
        if self.require_step_up:
            raise _OAuthFailure("insufficient_user_authentication",
                                "step-up authentication required")
        now = int(self.clock())
        jag: Dict[str, Any] = {
            "iss": self.issuer, "sub": id_claims["sub"], "aud": audience,
            "client_id": client.idjag_client_id or client.client_id,
            "jti": secrets.token_urlsafe(16), "iat": now,
            "exp": now + int(self.id_jag_lifetime)}
        if resource is not None:
            jag["resource"] = resource
        if scope:
            jag["scope"] = " ".join(sorted(scope))
        if "email" in id_claims:
            jag["email"] = id_claims["email"]
        with self._lock:
            self._id_jags.append(dict(jag))
        record.info["id_jag_claims"] = dict(jag)
        body: Dict[str, Any] = {
            "access_token": self.sign(jag, {"typ": TYP_ID_JAG}),
            "issued_token_type": self.issued_token_type_override or TOKEN_TYPE_ID_JAG,
            "token_type": self.exchange_token_type,
            "expires_in": int(self.id_jag_lifetime),
        }
        if scope:
            body["scope"] = " ".join(sorted(scope))
        return body
