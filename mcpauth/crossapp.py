"""Cross-app access (Enterprise-Managed Authorization, SEP-990): the ID-JAG exchanges.

A service acts for a user who already signed in at the enterprise IdP, in two legs:

1. **At the IdP**, RFC 8693 §2.1 token exchange (draft-ietf-oauth-identity-assertion-
   authz-grant "Token Exchange"; EXT-EMA §4): the user's ID token (or SAML assertion, or
   IdP refresh token) becomes an Identity Assertion JWT Authorization Grant (ID-JAG) for
   one authorization server (``audience`` = its issuer) and one resource. The response
   (RFC 8693 §2.2.1) must say ``issued_token_type`` = ID-JAG and ``token_type`` ``N_A``.
   :func:`request_jwt_authorization_grant`, :func:`discover_and_request_jwt_auth_grant`
   (RFC 8414 / OpenID Connect discovery of the IdP, with the §3.3 issuer check).
2. **At the MCP server's authorization server**, the RFC 7523 §2.1 JWT bearer grant with
   the ID-JAG as ``assertion`` and the client's own credentials (EXT-EMA §5):
   :func:`exchange_jwt_auth_grant`, or :class:`CrossAppAccessProvider`, which also
   discovers that server (RFC 9728, RFC 8414) and hands its validated issuer to your
   callback as the ID-JAG audience (EXT-EMA §7.6).

``resource`` (RFC 8707) is sent in both legs. ID tokens, ID-JAGs and
secrets never appear in exception messages, reprs or log lines (EXT-EMA §7.3, §7.4.2).
An ID-JAG is checked before it is used: it must be a compact JWT (RFC 7515 §7.1), and
the provider sends one only to the authorization server its ``aud`` names (EXT-EMA
§7.5.4).
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import _mask, jws
from .discovery import AuthorizationServerMetadata, fetch_authorization_server_metadata
from .errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    OAuthError,
    TokenResponseError,
    clean_peer_text,
)
from .grants import (
    GRANT_TYPE_JWT_BEARER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_REFRESH_TOKEN,
    TOKEN_TYPE_SAML2,
    ClientAuth,
    ClientSecretBasic,
    ClientSecretPost,
    NoClientAuth,
    PrivateKeyJwt,
    TokenResponse,
    request_token,
    select_auth_method,
    validate_scope,
)
from .cache import TokenCache
from .providers import (DEFAULT_MAX_STEP_UP, DEFAULT_REFRESH_SKEW, OAuthProvider, _Target,
                        _credential_of, _oauth_options)
from .transport import DEFAULT_TIMEOUT, RequestsTransport, Transport, check_url, redact_url

__all__ = [
    "MCP_EXTENSION",
    "SUBJECT_TOKEN_TYPES",
    "TYP_ID_JAG",
    "ID_JAG_REFRESH_SKEW",
    "JwtAuthGrant",
    "CrossAppAccessContext",
    "CrossAppAccessProvider",
    "request_jwt_authorization_grant",
    "discover_and_request_jwt_auth_grant",
    "exchange_jwt_auth_grant",
]

logger = logging.getLogger("mcpauth")

#: The MCP extension a client declares when it uses cross-app access (SEP-990).
MCP_EXTENSION = "io.modelcontextprotocol/enterprise-managed-authorization"
#: ``subject_token_type`` values accepted at the IdP (ID-JAG "Token Exchange"; RFC 8693 §3).
SUBJECT_TOKEN_TYPES = (TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_SAML2, TOKEN_TYPE_REFRESH_TOKEN)
#: The JWS ``typ`` of an ID-JAG (ID-JAG §3, RFC 8725 §3.11).
TYP_ID_JAG = "oauth-id-jag+jwt"
#: Seconds before its expiry at which a cached ID-JAG is no longer reused (J6).
ID_JAG_REFRESH_SKEW = 30.0

_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")

GrantSource = Union[str, "JwtAuthGrant"]


class JwtAuthGrant(object):
    """An ID-JAG obtained from the IdP (RFC 8693 §2.2.1 response, ID-JAG "Response").

    The grant itself is a secret: it is kept in a private slot, and neither ``repr`` nor
    ``str`` shows it. Pass the object (or :attr:`jwt_auth_grant`) to
    :func:`exchange_jwt_auth_grant`, or return it from a :class:`CrossAppAccessProvider`
    assertion callback.

    Attributes:
        jwt_auth_grant: the ID-JAG (a compact JWT).
        expires_in: its lifetime in seconds as the IdP said, or None.
        scope: the granted scope if the IdP said, else None.
        received_at: ``time.time()`` when the response arrived.
        exp: the ID-JAG's own ``exp`` claim (read, not verified), or None.
    """

    __slots__ = ("_jwt_auth_grant", "expires_in", "scope", "received_at", "exp")

    def __init__(self, jwt_auth_grant: str, expires_in: Optional[float] = None,
                 scope: Optional[str] = None, received_at: Optional[float] = None,
                 exp: Optional[float] = None) -> None:
        if not isinstance(jwt_auth_grant, str) or not jwt_auth_grant:
            raise ConfigurationError("jwt_auth_grant must be a non-empty string")
        _mask.remember(jwt_auth_grant)
        self._jwt_auth_grant = jwt_auth_grant
        self.expires_in = expires_in
        self.scope = scope
        self.received_at = time.time() if received_at is None else received_at
        self.exp = exp

    @property
    def jwt_auth_grant(self) -> str:
        """The ID-JAG."""
        return self._jwt_auth_grant

    @property
    def expires_at(self) -> Optional[float]:
        """When the grant expires (``time.time()`` clock): the earlier of ``received_at +
        expires_in`` and the ``exp`` claim, or None when neither is known."""
        candidates = []  # type: List[float]
        if self.expires_in is not None:
            candidates.append(self.received_at + self.expires_in)
        if self.exp is not None:
            candidates.append(self.exp)
        return min(candidates) if candidates else None

    def __repr__(self) -> str:
        return "JwtAuthGrant(jwt_auth_grant=[secure], expires_in={!r}, scope={!r})".format(
            self.expires_in, self.scope)

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("JwtAuthGrant holds an ID-JAG and cannot be pickled")


# ---------------------------------------------------------------------------------------
# Argument checks (all before any I/O)
# ---------------------------------------------------------------------------------------

def _require_token(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError("{} must be a non-empty string".format(what))
    return value


def _require_uri(value: Any, what: str) -> str:
    """An absolute URI without a fragment (RFC 8707 §2, RFC 8414 §2)."""
    if not isinstance(value, str) or not value or any(c <= " " for c in value):
        raise ConfigurationError("{} must be an absolute URI".format(what))
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigurationError("{} must be an absolute URI".format(what)) from None
    if not parts.scheme or not parts.netloc or "#" in value:
        raise ConfigurationError("{} must be an absolute URI without a fragment, got {}".format(
            what, redact_url(value)))
    return value


def _check_subject_token_type(value: Any) -> str:
    if value not in SUBJECT_TOKEN_TYPES:
        raise ConfigurationError("subject_token_type must be one of {}".format(
            ", ".join(SUBJECT_TOKEN_TYPES)))
    return str(value)


def _check_method(method: Optional[str]) -> Optional[str]:
    if method is not None and method not in _AUTH_METHODS:
        raise ConfigurationError("token_endpoint_auth_method must be one of {}".format(
            ", ".join(_AUTH_METHODS)))
    return method


def _client_auth(client_id: Any, client_secret: Optional[str], private_key: Any,
                 algorithm: Optional[str], method: Optional[str],
                 advertised: Optional[Tuple[str, ...]] = None,
                 signing_algs: Optional[Tuple[str, ...]] = None) -> ClientAuth:
    """Build the one client authentication for a token request (RFC 6749 §2.3)."""
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError("client_id must be a non-empty string")
    if client_secret is not None and private_key is not None:
        raise ConfigurationError("pass client_secret or private_key, not both (RFC 6749 "
                                 "§2.3: one authentication method per request)")
    chosen = select_auth_method(advertised, _check_method(method),
                                has_secret=client_secret is not None,
                                has_key=private_key is not None)
    if chosen in ("client_secret_basic", "client_secret_post"):
        if client_secret is None:
            raise ConfigurationError("{} needs a client_secret".format(chosen))
        if chosen == "client_secret_post":
            return ClientSecretPost(client_id, client_secret)
        return ClientSecretBasic(client_id, client_secret)
    if chosen == "private_key_jwt":
        if private_key is None:
            raise ConfigurationError("private_key_jwt needs a private_key")
        auth = PrivateKeyJwt(client_id, private_key, algorithm)
        if signing_algs is not None and auth.algorithm not in signing_algs:
            raise ConfigurationError(
                "the server accepts {} for private_key_jwt, not {}".format(
                    ", ".join(signing_algs) or "no algorithm", auth.algorithm))
        return auth
    if client_secret is not None or private_key is not None:
        raise ConfigurationError("token_endpoint_auth_method 'none' sends no credential; "
                                 "do not pass client_secret or private_key with it")
    return NoClientAuth(client_id)


def _grant_string(value: Any, what: str = "jwt_auth_grant") -> str:
    if isinstance(value, JwtAuthGrant):
        value = value.jwt_auth_grant
    elif not isinstance(value, str) or not value:
        raise ConfigurationError("{} must be the ID-JAG as a non-empty string (or a "
                                 "JwtAuthGrant)".format(what))
    _mask.remember(value)
    if not jws.is_compact_jws(value):
        # RFC 7523 §2.1: the assertion "MUST contain a single JWT"; never quoted.
        raise ConfigurationError("{} is not a compact JWT (three base64url parts; RFC 7515 "
                                 "§7.1)".format(what))
    return str(value)


def _audiences(claims: Dict[str, Any]) -> List[str]:
    """The ``aud`` claim as a list of strings (RFC 7519 §4.1.3: a string or an array)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _is_issuer(audience: str, issuer: str) -> bool:
    """``audience`` names ``issuer``, allowing one trailing slash either way."""
    return audience in (issuer, issuer + "/") or audience + "/" == issuer


def _audience_text(audiences: List[str]) -> str:
    """The ``aud`` values for a message: redacted, cleaned, at most three."""
    if not audiences:
        return "missing"
    shown = ", ".join(clean_peer_text(redact_url(a), 100) or "?" for a in audiences[:3])
    return shown + (", ..." if len(audiences) > 3 else "")


def _typ_is_id_jag(typ: Any) -> bool:
    # RFC 7515 §4.1.9: typ is a media type, compared case-insensitively, and the
    # "application/" prefix may be omitted.
    if not isinstance(typ, str):
        return False
    value = typ.lower()
    if value.startswith("application/"):
        value = value[len("application/"):]
    return value == TYP_ID_JAG


# ---------------------------------------------------------------------------------------
# Leg 1: the token exchange at the IdP (RFC 8693)
# ---------------------------------------------------------------------------------------

def _idp_error(exc: OAuthError) -> OAuthError:
    if exc.error == "insufficient_user_authentication":
        # ID-JAG "Step-Up Authentication" (RFC 9470): only the user can fix this.
        message = ("the IdP refused the token exchange with insufficient_user_authentication: "
                   "the user's sign-in does not meet the IdP's policy (step-up "
                   "authentication, RFC 9470). A machine client cannot step up; have the "
                   "user sign in again as the IdP requires and use the new ID token")
        if exc.error_description:
            message += " (IdP: {})".format(exc.error_description)
    else:
        # exc.message names the IdP's token endpoint, the client id and the method.
        message = "token exchange at the IdP failed: {}".format(exc.message)
    return exc._reworded(message)


def _grant_from_response(token: TokenResponse, token_endpoint: str) -> JwtAuthGrant:
    grant = token.access_token
    try:
        if not jws.is_compact_jws(grant):
            raise ValueError("not a compact JWS")
        header, claims = jws.decode_unverified(grant)
    except (ValueError, TypeError):
        raise TokenResponseError(
            "the IdP's token exchange response from {} holds an ID-JAG that is not a "
            "compact JWT (ID-JAG §3)".format(
                redact_url(token_endpoint))) from None
    if not _typ_is_id_jag(header.get("typ")):
        # The client does not verify the ID-JAG (the authorization server does); a wrong
        # typ is worth a warning because the authorization server must refuse it.
        logger.warning("the ID-JAG from %s has typ %r, not %s; the authorization server "
                       "will probably refuse it", redact_url(token_endpoint),
                       clean_peer_text(header.get("typ"), 60), TYP_ID_JAG)
    return JwtAuthGrant(grant, token.expires_in, token.scope, received_at=token.received_at,
                        exp=jws.numeric_date(claims.get("exp")))


def _exchange_at_idp(transport: Transport, token_endpoint: str, id_token: str,
                     audience: str, resource: str, client_auth: ClientAuth,
                     scope: Optional[str], subject_token_type: str,
                     issuer: Optional[str]) -> JwtAuthGrant:
    # ID-JAG "Token Exchange" / EXT-EMA §4 parameters; resource is always sent (D1, the
    # conformance IdP requires it).
    _mask.remember(id_token)
    fields = [
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("requested_token_type", TOKEN_TYPE_ID_JAG),
        ("audience", audience),
        ("resource", resource),
    ]
    if scope:
        fields.append(("scope", scope))
    fields.append(("subject_token", id_token))
    fields.append(("subject_token_type", subject_token_type))
    try:
        # RFC 8693 §2.2.1 / ID-JAG "Response": issued_token_type MUST be the ID-JAG type
        # and token_type is N_A (compared case-insensitively; "Bearer" is refused, F2).
        token = request_token(transport, token_endpoint, fields, client_auth, issuer=issuer,
                              token_types=("n_a",), issued_token_type=TOKEN_TYPE_ID_JAG)
    except OAuthError as exc:
        raise _idp_error(exc) from exc
    except TokenResponseError as exc:
        raise TokenResponseError(
            "the IdP's token exchange response from {} cannot be used: {}".format(
                redact_url(token_endpoint), exc.message), status_code=exc.status_code) from exc
    grant = _grant_from_response(token, token_endpoint)
    logger.info("ID-JAG issued by %s for audience %s, expires_in=%s",
                redact_url(token_endpoint), redact_url(audience),
                "unknown" if grant.expires_in is None else int(grant.expires_in))
    return grant


def request_jwt_authorization_grant(
        token_endpoint: str, id_token: str, audience: str, resource: str, client_id: str, *,
        client_secret: Optional[str] = None, private_key: Any = None,
        algorithm: Optional[str] = None, token_endpoint_auth_method: Optional[str] = None,
        scope: Optional[str] = None, subject_token_type: str = TOKEN_TYPE_ID_TOKEN,
        session: Any = None, timeout: float = DEFAULT_TIMEOUT,
        allow_insecure_http: bool = False, issuer: Optional[str] = None) -> JwtAuthGrant:
    """Exchange the user's ID token for an ID-JAG at the IdP (RFC 8693 §2.1, §2.2).

    Sends ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
    ``requested_token_type=urn:ietf:params:oauth:token-type:id-jag``, ``audience``,
    ``resource`` (always), ``scope`` (if given), ``subject_token`` and
    ``subject_token_type`` (ID-JAG "Token Exchange"; EXT-EMA §4), with one client
    authentication: ``client_secret_basic`` (the default with a secret),
    ``client_secret_post``, ``private_key_jwt`` (with ``private_key``; its ``aud`` is
    ``issuer``, else the token endpoint) or, with neither, ``client_id`` alone.

    Args:
        token_endpoint: the IdP's token endpoint (https, or http on loopback).
        id_token: the user's ID token (or SAML assertion / IdP refresh token, per
            ``subject_token_type``). Never logged.
        audience: the issuer identifier of the MCP server's authorization server
            (EXT-EMA §4: "MUST be the issuer identifier"); take it from discovery.
        resource: the MCP server's resource identifier (RFC 8707).
        client_id: the client registered at the IdP.
        client_secret: its secret, if it authenticates with one.
        private_key: its key, for ``private_key_jwt`` (RFC 7523 §2.2).
        algorithm: the JWS algorithm for ``private_key_jwt`` (default: the key's).
        token_endpoint_auth_method: force ``client_secret_basic``,
            ``client_secret_post``, ``private_key_jwt`` or ``none``.
        scope: space-separated scopes to request at the resource.
        subject_token_type: ``urn:ietf:params:oauth:token-type:id_token`` (default),
            ``...:saml2`` or ``...:refresh_token``.
        session: a ``requests.Session`` whose TLS and proxy settings apply.
        timeout: seconds for the request.
        allow_insecure_http: allow plain http to a non-loopback host (tests only).
        issuer: the IdP's issuer identifier (the ``aud`` of a ``private_key_jwt``).

    Returns:
        The :class:`JwtAuthGrant` (``.jwt_auth_grant``, ``.expires_in``, ``.scope``).

    Raises:
        ConfigurationError: a missing or malformed argument (before any I/O).
        InsecureEndpointError: ``token_endpoint`` is not https (nor loopback http).
        OAuthError: the IdP refused (RFC 6749 §5.2), e.g. ``invalid_grant``, or
            ``insufficient_user_authentication`` (a step-up a machine cannot do).
        TokenResponseError: a response without the grant, with another
            ``issued_token_type`` or ``token_type``, or whose grant is not a JWT.
        TransportError: no response.
    """
    check_url(token_endpoint, allow_insecure_http, "IdP token endpoint")
    _require_token(id_token, "id_token")
    _require_uri(audience, "audience")
    _require_uri(resource, "resource")
    subject_token_type = _check_subject_token_type(subject_token_type)
    scope = validate_scope(scope)
    client_auth = _client_auth(client_id, client_secret, private_key, algorithm,
                               token_endpoint_auth_method)
    transport = RequestsTransport(session, timeout=timeout,
                                  allow_insecure_http=allow_insecure_http)
    return _exchange_at_idp(transport, token_endpoint, id_token, audience, resource,
                            client_auth, scope, subject_token_type, issuer)


def _check_idp_metadata(metadata: AuthorizationServerMetadata) -> None:
    # ID-JAG "Authorization Server (IdP) Metadata": SHOULD list the ID-JAG type. Absence
    # is not an error (the member is recent); a list without it is worth a warning.
    types = metadata.raw.get("identity_chaining_requested_token_types_supported")
    if isinstance(types, list) and TOKEN_TYPE_ID_JAG not in types:
        logger.warning("IdP %s does not list %s in "
                       "identity_chaining_requested_token_types_supported; trying anyway",
                       redact_url(metadata.issuer), TOKEN_TYPE_ID_JAG)
    grants = metadata.grant_types_supported
    if grants is not None and GRANT_TYPE_TOKEN_EXCHANGE not in grants:
        logger.warning("IdP %s does not list the token-exchange grant in "
                       "grant_types_supported; trying anyway", redact_url(metadata.issuer))


def discover_and_request_jwt_auth_grant(
        idp_url: str, id_token: str, audience: str, resource: str, client_id: str,
        client_secret: Optional[str] = None, scope: Optional[str] = None,
        session: Any = None, *, private_key: Any = None, algorithm: Optional[str] = None,
        token_endpoint_auth_method: Optional[str] = None,
        subject_token_type: str = TOKEN_TYPE_ID_TOKEN, timeout: float = DEFAULT_TIMEOUT,
        allow_insecure_http: bool = False) -> JwtAuthGrant:
    """Discover the IdP's token endpoint, then :func:`request_jwt_authorization_grant`.

    The IdP metadata is fetched from the RFC 8414 §3.1 and OpenID Connect Discovery §4
    locations in the MCP order, and its ``issuer`` must equal ``idp_url`` exactly
    (RFC 8414 §3.3). The client authentication is the one the IdP advertises in
    ``token_endpoint_auth_methods_supported`` (``client_secret_basic`` when it lists
    it or lists nothing, else ``client_secret_post``; ``private_key_jwt`` with a key),
    unless ``token_endpoint_auth_method`` says otherwise.

    Args:
        idp_url: the IdP's issuer identifier (https, or http on loopback).
        id_token, audience, resource, client_id, client_secret, scope, private_key,
            algorithm, token_endpoint_auth_method, subject_token_type, session,
            timeout, allow_insecure_http: as :func:`request_jwt_authorization_grant`.

    Returns:
        The :class:`JwtAuthGrant`.

    Raises:
        ConfigurationError: a missing or malformed argument (before any I/O).
        InsecureEndpointError: ``idp_url`` or its token endpoint is not https.
        IssuerMismatchError: the metadata names another issuer.
        DiscoveryError: no usable metadata.
        OAuthError, TokenResponseError, TransportError: as
            :func:`request_jwt_authorization_grant`.
    """
    check_url(idp_url, allow_insecure_http, "IdP URL")
    _require_token(id_token, "id_token")
    _require_uri(audience, "audience")
    _require_uri(resource, "resource")
    subject_token_type = _check_subject_token_type(subject_token_type)
    scope = validate_scope(scope)
    # Validate the credentials before any I/O; the method is chosen after discovery.
    _client_auth(client_id, client_secret, private_key, algorithm, token_endpoint_auth_method)
    transport = RequestsTransport(session, timeout=timeout,
                                  allow_insecure_http=allow_insecure_http)
    metadata = fetch_authorization_server_metadata(transport, idp_url)
    _check_idp_metadata(metadata)
    client_auth = _client_auth(client_id, client_secret, private_key, algorithm,
                               token_endpoint_auth_method,
                               metadata.token_endpoint_auth_methods_supported,
                               metadata.token_endpoint_auth_signing_alg_values_supported)
    return _exchange_at_idp(transport, metadata.token_endpoint, id_token, audience, resource,
                            client_auth, scope, subject_token_type, metadata.issuer)


# ---------------------------------------------------------------------------------------
# Leg 2: the JWT bearer grant at the MCP server's authorization server (RFC 7523)
# ---------------------------------------------------------------------------------------

def _jwt_bearer_fields(grant: str, scope: Optional[str],
                       resource: Optional[str]) -> List[Tuple[str, str]]:
    # RFC 7523 §2.1 / ID-JAG "Access Token Request"; resource per D1.
    fields = [("grant_type", GRANT_TYPE_JWT_BEARER), ("assertion", grant)]
    if scope:
        fields.append(("scope", scope))
    if resource is not None:
        fields.append(("resource", resource))
    return fields


def exchange_jwt_auth_grant(
        token_endpoint: str, jwt_auth_grant: GrantSource, client_id: str, *,
        client_secret: Optional[str] = None, private_key: Any = None,
        algorithm: Optional[str] = None, token_endpoint_auth_method: Optional[str] = None,
        resource: Optional[str] = None, scope: Optional[str] = None,
        issuer: Optional[str] = None, session: Any = None, timeout: float = DEFAULT_TIMEOUT,
        allow_insecure_http: bool = False) -> TokenResponse:
    """Redeem an ID-JAG for an access token at the MCP server's authorization server.

    RFC 7523 §2.1 JWT bearer grant (``grant_type=urn:ietf:params:oauth:grant-type:
    jwt-bearer``, ``assertion=<ID-JAG>``) as profiled by ID-JAG "Access Token Request"
    and EXT-EMA §5: the client authenticates with its own credentials at this server,
    ``client_secret_basic`` by default (what the conformance suite requires),
    ``client_secret_post`` or ``private_key_jwt`` on request.

    Args:
        token_endpoint: the authorization server's token endpoint.
        jwt_auth_grant: the ID-JAG, or the :class:`JwtAuthGrant` holding it.
        client_id: the client registered at this authorization server (the ID-JAG's
            ``client_id`` claim must name it).
        client_secret: its secret.
        private_key: its key, for ``private_key_jwt`` (``aud`` = ``issuer``).
        algorithm: the JWS algorithm for ``private_key_jwt``.
        token_endpoint_auth_method: ``client_secret_basic`` (default with a secret),
            ``client_secret_post``, ``private_key_jwt`` or ``none``.
        resource: the RFC 8707 resource to send (always sent).
        scope: space-separated scopes to request.
        issuer: the authorization server's issuer identifier.
        session, timeout, allow_insecure_http: as
            :func:`request_jwt_authorization_grant`.

    Returns:
        The access token response (:class:`~mcpauth.grants.TokenResponse`).

    Raises:
        ConfigurationError: a missing or malformed argument (before any I/O).
        InsecureEndpointError: ``token_endpoint`` is not https (nor loopback http).
        OAuthError: the server refused, e.g. ``invalid_grant`` for an expired,
            replayed or mis-addressed ID-JAG.
        TokenResponseError, TransportError: an unusable response, or none.
    """
    check_url(token_endpoint, allow_insecure_http, "token endpoint")
    grant = _grant_string(jwt_auth_grant)
    if resource is not None:
        _require_uri(resource, "resource")
    scope = validate_scope(scope)
    client_auth = _client_auth(client_id, client_secret, private_key, algorithm,
                               token_endpoint_auth_method)
    transport = RequestsTransport(session, timeout=timeout,
                                  allow_insecure_http=allow_insecure_http)
    return request_token(transport, token_endpoint, _jwt_bearer_fields(grant, scope, resource),
                         client_auth, issuer=issuer)


# ---------------------------------------------------------------------------------------
# The provider
# ---------------------------------------------------------------------------------------

class CrossAppAccessContext(NamedTuple):
    """What a :class:`CrossAppAccessProvider` assertion callback receives.

    Attributes:
        authorization_server_url: the MCP server's authorization server issuer, validated
            through RFC 9728 and RFC 8414 §3.3 (and ``expected_issuer`` if set). Use it,
            and nothing else, as the token exchange ``audience`` (EXT-EMA §7.6, J5).
        resource_url: the MCP server's resource identifier (the validated PRM
            ``resource``), for the token exchange ``resource``.
        scope: the scope about to be requested, or None.
        session: the ``requests.Session`` the provider uses for its own HTTP calls, so
            the IdP call gets the same TLS and proxy settings.
        server_url: the MCP server URL.
    """

    authorization_server_url: str
    resource_url: str
    scope: Optional[str]
    session: Any
    server_url: str


AssertionCallback = Callable[[CrossAppAccessContext], GrantSource]


class CrossAppAccessProvider(OAuthProvider):
    """Cross-app access: act for a signed-in enterprise user (SEP-990, EXT-EMA).

    For each MCP server the provider discovers the authorization server and resource
    (RFC 9728, RFC 8414), then calls ``assertion(ctx)`` (a
    :class:`CrossAppAccessContext`) for an ID-JAG whose audience is
    ``ctx.authorization_server_url``, typically::

        def assertion(ctx):
            return discover_and_request_jwt_auth_grant(
                "https://idp.example.com", id_token, ctx.authorization_server_url,
                ctx.resource_url, "idp-client-id", idp_secret, scope=ctx.scope,
                session=ctx.session)

    and redeems it with the JWT bearer grant (RFC 7523 §2.1) plus ``resource`` and
    ``scope``, authenticating as ``client_id`` at the authorization server:
    ``client_secret_basic`` by default (or when advertised), ``client_secret_post`` when
    only that is advertised, ``private_key_jwt`` with ``private_key``.

    ID-JAG lifecycle (ID-JAG "Refresh Token"; J6): a grant is cached per (issuer,
    resource, scope) and re-submitted for new access tokens until
    :data:`ID_JAG_REFRESH_SKEW` seconds before it expires (``expires_in`` of a
    :class:`JwtAuthGrant`, else the JWT's ``exp``); a grant with no known expiry is not
    reused. If the authorization server answers ``invalid_grant`` to a *reused* grant
    (some servers refuse a replayed ``jti``, RFC 7523 §3), the grant is dropped and the
    callback is asked once more, in the same token request; a fresh grant that is
    refused raises. Nothing loops.

    Trust model: the IdP is configuration (your callback); the authorization server is
    discovery, pinned with ``expected_issuer``. Without the pin, whichever
    authorization server the MCP server names becomes the audience of the user's
    ID-JAG and receives this client's credentials. An ID-JAG whose ``aud`` (read, not
    verified) is not that server's issuer (allowing one trailing slash) is never sent
    to it: :class:`~mcpauth.errors.AuthorizationServerMismatchError` is raised before
    the token request (EXT-EMA §7.5.4: no leak to third-party origins). The assertion
    must be a compact JWT (three base64url parts). The ID-JAG and the credentials stay
    in memory. Access tokens are the user's: in a shared token cache they are labelled
    per provider instance unless ``cache_key=`` (the user's id) is given, so providers
    for different users never see each other's tokens.

    Args:
        assertion: ``callable(ctx) -> str`` returning the ID-JAG (or a
            :class:`JwtAuthGrant`). Its exceptions propagate unchanged.
        client_id: the client registered at the MCP server's authorization server.
        client_secret: its secret.
        private_key: its key, for ``private_key_jwt`` (instead of a secret).
        algorithm: the JWS algorithm for ``private_key_jwt``.
        token_endpoint_auth_method: force ``client_secret_basic``,
            ``client_secret_post``, ``private_key_jwt``, or ``none`` (a public client
            with neither secret nor key).
        scope: space-separated scopes (wins over the challenge and ``scopes_supported``).
        expected_issuer: the only authorization server to accept.
        Other keyword arguments: as :class:`~mcpauth.ClientCredentialsProvider`.

    Raises:
        ConfigurationError: at construction, for unusable arguments; when a token is
            needed, for an assertion that is not a compact JWT.
        AuthorizationServerMismatchError: when a token is needed, the ID-JAG from the
            callback is addressed to another authorization server (its
            ``expected_issuer`` attribute is the ID-JAG's first ``aud``, ``issuer`` the
            server it would have gone to).
    """

    mcp_extension = MCP_EXTENSION

    _tokens_are_per_principal = True

    def __init__(self, assertion: AssertionCallback, client_id: str,
                 client_secret: Optional[str] = None, *, private_key: Any = None,
                 algorithm: Optional[str] = None,
                 token_endpoint_auth_method: Optional[str] = None,
                 scope: Optional[str] = None, expected_issuer: Optional[str] = None,
                 issuer: Optional[str] = None, token_endpoint: Optional[str] = None,
                 resource: Optional[str] = None, server_url: Optional[str] = None,
                 allow_resource_prefix: bool = False, allow_issuer_change: bool = False,
                 session: Any = None, timeout: float = DEFAULT_TIMEOUT,
                 allow_insecure_http: bool = False, cache: Optional[TokenCache] = None,
                 refresh_skew: float = DEFAULT_REFRESH_SKEW,
                 max_step_up: int = DEFAULT_MAX_STEP_UP,
                 clock: Callable[[], float] = time.time,
                 transport: Optional[Transport] = None,
                 cache_key: Optional[str] = None, dpop_key: Any = None,
                 dpop_accept_bearer: bool = False,
                 dpop_reuse_client_key: bool = False) -> None:
        if not callable(assertion):
            raise ConfigurationError("assertion must be a callable(ctx) returning the ID-JAG")
        if not isinstance(client_id, str) or not client_id:
            # ID-JAG "Processing Rules": the grant's client_id must name this client.
            raise ConfigurationError("client_id must be a non-empty string")
        method = _check_method(token_endpoint_auth_method)
        if client_secret is not None and private_key is not None:
            raise ConfigurationError("pass client_secret or private_key, not both")
        self._jwt = None  # type: Optional[PrivateKeyJwt]
        self._basic = None  # type: Optional[ClientSecretBasic]
        self._post = None  # type: Optional[ClientSecretPost]
        if private_key is not None:
            if method not in (None, "private_key_jwt"):
                raise ConfigurationError("a private_key means private_key_jwt, not {}".format(
                    method))
            self._jwt = PrivateKeyJwt(client_id, private_key, algorithm,
                                      clock=clock)
        elif client_secret is not None:
            if method not in (None, "client_secret_basic", "client_secret_post"):
                raise ConfigurationError("a client_secret means client_secret_basic or "
                                         "client_secret_post, not {}".format(method))
            self._basic = ClientSecretBasic(client_id, client_secret)
            self._post = ClientSecretPost(client_id, client_secret)
        elif method != "none":
            # EXT-EMA §5: the client authenticates at the resource authorization server.
            raise ConfigurationError(
                "CrossAppAccessProvider needs client_secret or private_key to authenticate "
                "at the MCP server's authorization server (EXT-EMA §5); pass "
                "token_endpoint_auth_method='none' for a public client")
        self._none = NoClientAuth(client_id)
        self.token_endpoint_auth_method = method
        self._assertion = assertion
        self._grants = {}  # type: Dict[Tuple[str, str, Optional[str]], Tuple[str, float]]
        self._grants_lock = threading.Lock()
        super().__init__(**_oauth_options(locals()))

    def _after_fork(self) -> None:
        super()._after_fork()
        self._grants_lock = threading.Lock()

    # -- OAuthProvider hooks -----------------------------------------------------------------

    def _client_auth(self, target: _Target) -> ClientAuth:
        if self._jwt is not None:
            select_auth_method(target.auth_methods, "private_key_jwt")
            algs = target.signing_algs
            if algs is not None and self._jwt.algorithm not in algs:
                raise ConfigurationError(
                    "the authorization server accepts {} for private_key_jwt, not {}".format(
                        ", ".join(algs) or "no algorithm", self._jwt.algorithm))
            return self._jwt
        if self._basic is not None and self._post is not None:
            method = select_auth_method(target.auth_methods, self.token_endpoint_auth_method)
            return self._post if method == "client_secret_post" else self._basic
        select_auth_method(target.auth_methods, "none")
        return self._none

    def _credential(self) -> Optional[Tuple[str, str]]:
        return _credential_of(self._jwt or self._post)

    def _grant_fields(self, target: _Target, scope: Optional[str]) -> List[Tuple[str, str]]:
        grant, _ = self._obtain_grant(target, scope, fresh=False)
        return _jwt_bearer_fields(grant, scope, target.resource)

    def _fetch_token(self, target: _Target, scope: Optional[str]) -> TokenResponse:
        client_auth = self._client_auth(target)  # configuration errors before the IdP call
        grant, reused = self._obtain_grant(target, scope, fresh=False)
        try:
            return self._redeem(target, scope, client_auth, grant)
        except OAuthError as exc:
            if exc.error != "invalid_grant":
                raise
            self._forget_grant(target, scope, grant)
            if not reused:
                raise
            logger.info("the authorization server %s refused a reused ID-JAG "
                        "(invalid_grant); asking for a new one, once",
                        redact_url(target.issuer or target.token_endpoint))
        grant, _ = self._obtain_grant(target, scope, fresh=True)
        try:
            return self._redeem(target, scope, client_auth, grant)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                self._forget_grant(target, scope, grant)
            raise

    # -- internals ------------------------------------------------------------------------------

    def _redeem(self, target: _Target, scope: Optional[str], client_auth: ClientAuth,
                grant: str) -> TokenResponse:
        return request_token(self._transport, target.token_endpoint,
                             _jwt_bearer_fields(grant, scope, target.resource), client_auth,
                             issuer=target.issuer, clock=self._clock,
                             **self._dpop_options(target))

    @staticmethod
    def _grant_key(target: _Target, scope: Optional[str]) -> Tuple[str, str, Optional[str]]:
        scopes = " ".join(sorted(set((scope or "").split()))) or None
        return (target.issuer or "", target.resource, scopes)

    def _forget_grant(self, target: _Target, scope: Optional[str], grant: str) -> None:
        key = self._grant_key(target, scope)
        with self._grants_lock:
            cached = self._grants.get(key)
            if cached is not None and cached[0] == grant:
                del self._grants[key]

    def _obtain_grant(self, target: _Target, scope: Optional[str],
                      fresh: bool) -> Tuple[str, bool]:
        """The ID-JAG to redeem and whether it is a reused one."""
        if not target.issuer:
            # J5: the audience comes only from a validated issuer, never from a guess.
            raise ConfigurationError(
                "cross-app access needs the authorization server's issuer as the ID-JAG "
                "audience (EXT-EMA §4); pass issuer= or expected_issuer= together with "
                "token_endpoint=, or let discovery find it")
        key = self._grant_key(target, scope)
        now = self._clock()
        if not fresh:
            with self._grants_lock:
                cached = self._grants.get(key)
            if cached is not None and now < cached[1] - ID_JAG_REFRESH_SKEW:
                logger.debug("reusing the cached ID-JAG for %s", redact_url(target.resource))
                return cached[0], True
        ctx = CrossAppAccessContext(target.issuer, target.resource, scope,
                                    self._session_for_context(), target.server_url)
        grant, expires_at = self._check_assertion(self._assertion(ctx), target, now)
        with self._grants_lock:
            if expires_at is not None and now < expires_at - ID_JAG_REFRESH_SKEW:
                self._grants[key] = (grant, expires_at)
            else:
                self._grants.pop(key, None)
        return grant, False

    def _check_assertion(self, value: Any, target: _Target,
                         now: float) -> Tuple[str, Optional[float]]:
        expires_in = None  # type: Optional[float]
        if isinstance(value, JwtAuthGrant):
            grant = value.jwt_auth_grant
            expires_in = value.expires_in
        elif isinstance(value, str):
            grant = value
        else:
            raise ConfigurationError(
                "the assertion callback returned {}, not the ID-JAG as a non-empty "
                "string".format(type(value).__name__))
        if not grant:
            raise ConfigurationError("the assertion callback returned an empty string, "
                                     "not the ID-JAG")
        _mask.remember(grant)
        if not jws.is_compact_jws(grant):
            raise ConfigurationError("the assertion callback did not return a single "
                                     "compact JWT (three base64url parts; an ID-JAG is a "
                                     "JWT, RFC 7523 §2.1)")
        try:
            header, claims = jws.decode_unverified(grant)
        except ValueError:
            raise ConfigurationError("the assertion callback returned something that is not "
                                     "a JWT (its header or claims are not base64url "
                                     "JSON)") from None
        if not _typ_is_id_jag(header.get("typ")):
            logger.warning("the ID-JAG from the assertion callback does not have typ %s; "
                           "the authorization server will probably refuse it", TYP_ID_JAG)
        issuer = target.issuer or ""
        audiences = _audiences(claims)
        if not any(_is_issuer(a, issuer) for a in audiences):
            # EXT-EMA §7.5.4: an ID-JAG minted for another
            # authorization server is not sent to this one (a malicious MCP server
            # naming its own server would otherwise collect it with our credentials).
            raise AuthorizationServerMismatchError(
                "the ID-JAG's audience is {} but the authorization server is {}; refusing "
                "to send it. Request it with audience=ctx.authorization_server_url "
                "(EXT-EMA §4)".format(_audience_text(audiences), redact_url(issuer)),
                expected_issuer=audiences[0] if audiences else None, issuer=issuer)
        candidates = []  # type: List[float]
        if expires_in is not None:
            candidates.append(now + expires_in)
        exp = jws.numeric_date(claims.get("exp"))
        if exp is not None:
            candidates.append(exp)
            if exp <= now:
                logger.warning("the ID-JAG from the assertion callback has already expired")
        return grant, (min(candidates) if candidates else None)
