"""Providers: ``requests`` auth objects that put a Bearer token on every MCP request.

Attach one to a session (``session.auth = provider``). On every request the provider
adds ``Authorization: Bearer <token>`` (RFC 6750 §2.1; never in the URL, MCP "Token
Requirements"). When the server answers 401 it gets a new token (discovering the
authorization server first if needed) and replays the request exactly once; a second
401 raises :class:`~mcpauth.errors.UnauthorizedError`. A 403 ``insufficient_scope``
challenge makes OAuth providers ask for the union of the current and the challenged
scopes, a bounded number of times (MCP "Step-Up Authorization Flow").

The adapter follows requests' ``HTTPDigestAuth``: a response hook that reads and closes
the refused response, rewinds the body, re-signs a copy of the request, sends it on the
same connection adapter and appends the refused response to ``history``. Retry state
lives on the ``PreparedRequest``, never in shared counters.

Trust model of the OAuth providers: the MCP server names its authorization server
(RFC 9728), and that server's metadata must name itself (RFC 8414 §3.3). Without
``expected_issuer`` the first authorization server the MCP server names receives the
client's credentials (trust on first use), and the credentials are then bound to it:
discovery that later leads anywhere else raises
:class:`~mcpauth.errors.AuthorizationServerMismatchError` (MCP "Authorization Server
Binding", SEP-2352) unless ``allow_issuer_change=True``. With ``expected_issuer``,
discovery that leads anywhere else raises before anything at all is sent.
"""

import functools
import logging
import os
import threading
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Tuple, Union, cast)
from urllib.parse import urlsplit, urlunsplit

import requests

from . import _fork, _mask
from ._holdoff import HoldOff
from .cache import (MemoryTokenCache, TokenCache, credential_fingerprint, discovery_key,
                    token_key)
from .errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    InsufficientScopeError,
    MCPAuthError,
    ProtocolError,
    UnauthorizedError,
    clean_peer_text,
)
from .grants import (
    GRANT_TYPE_CLIENT_CREDENTIALS,
    ClientAuth,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    TokenResponse,
    _is_access_token,
    _vschar_problem,
    normalize_scope,
    request_token,
    select_auth_method,
    validate_scope,
)
from .transport import (
    DEFAULT_TIMEOUT,
    RequestsTransport,
    Transport,
    check_ip_literal,
    check_url,
    identical_resource,
    redact_url,
)

if TYPE_CHECKING:
    # Imported where used: discovery (RFC 9728, RFC 8414) when a provider first needs
    # it, DPoP (RFC 9449) when one is given dpop_key=; ``import mcpauth`` pays for neither.
    from . import discovery as _discovery
    from .dpop import DPoPKey, NonceStore

__all__ = [
    "AuthContext",
    "AuthProvider",
    "OAuthProvider",
    "BearerTokenProvider",
    "ClientCredentialsProvider",
    "PrivateKeyJwtProvider",
    "DEFAULT_REFRESH_SKEW",
    "DEFAULT_MAX_STEP_UP",
    "DEFAULT_HOLD_OFF",
    "DEFAULT_MAX_RETRY_AFTER",
]

logger = logging.getLogger("mcpauth")

#: Seconds before expiry at which a token is renewed (google-auth's REFRESH_THRESHOLD idea).
DEFAULT_REFRESH_SKEW = 60.0
#: How many times a request may step up its scope after 403 insufficient_scope.
DEFAULT_MAX_STEP_UP = 2
#: Seconds a provider sends no token request after a retryable failure without
#: ``Retry-After`` (connection refused, timeout, 5xx, 429, temporarily_unavailable).
DEFAULT_HOLD_OFF = 5.0
#: The longest ``Retry-After`` honoured, in seconds; a longer one is cut to this.
DEFAULT_MAX_RETRY_AFTER = 300.0

# Retry-After holds an authorization server's token endpoint for the whole process.
_AUTHORIZATION_SERVERS = HoldOff()


class AuthContext(NamedTuple):
    """What :meth:`AuthProvider.on_unauthorized` receives.

    Attributes:
        response: the refused ``requests.Response`` (read ``WWW-Authenticate`` from it).
        server_url: the MCP server URL (scheme, host, port and path of the request).
        session: the ``requests.Session`` given to the provider (``session=``), whose TLS
            and proxy settings its own HTTP calls use; None when it was given none.
        challenge: the parsed Bearer challenge, or None if the server sent none.
    """

    response: Any
    server_url: str
    session: Any
    challenge: "Optional[_discovery.Challenge]"


def server_url_of(url: str) -> str:
    """The MCP server URL a request targets: the URL without userinfo, query or fragment.

    Userinfo is dropped so that credentials embedded in a URL never become an RFC 8707
    ``resource`` or a cache key.

    Raises:
        ConfigurationError: ``url`` cannot be parsed (a malformed IPv6 literal or port).
    """
    server = _SERVER_OF.get(url) if type(url) is str else None
    if server is None:
        try:
            parts = urlsplit(url)
            _ = parts.port  # ValueError for a port that is not a number in range
            check_ip_literal(parts)
        except (TypeError, ValueError, AttributeError):
            raise ConfigurationError("server URL {} is not a valid URL".format(
                redact_url(url) if isinstance(url, str) else type(url).__name__)) from None
        netloc = parts.netloc.rpartition("@")[2]
        server = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        _memo_put(_SERVER_OF, url, server)
    return server


def _covers(base: str, server: str) -> bool:
    """True if ``server`` is ``base`` or below it (same origin, path-segment prefix)."""
    covered = _COVERS.get((base, server))
    if covered is None:
        b, s = urlsplit(base), urlsplit(server)
        covered = ((b.scheme.lower(), b.netloc.lower()) == (s.scheme.lower(), s.netloc.lower())
                   and (s.path == b.path or s.path.startswith(b.path.rstrip("/") + "/")
                        or b.path.rstrip("/") == ""))
        _memo_put(_COVERS, (base, server), covered)
    return covered


# Memos of the two pure URL functions above, so that the per-request path parses no URL
# (a process talks to a handful of servers; the bound only stops unbounded growth).
_SERVER_OF: Dict[str, str] = {}
_COVERS = {}  # type: Dict[Tuple[str, str], bool]
_MEMO_MAX = 512


def _memo_put(memo: Dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def _credential_of(auth: Optional[ClientAuth]) -> Optional[Tuple[str, str]]:
    """What tokens obtained with ``auth`` are tied to in a cache: (purpose, credential).

    A client secret; for ``private_key_jwt`` the RFC 7638 thumbprint of the key (or of
    the ``public_jwk`` declared for a signer or assertion callable). A callable with no
    declared public key cannot be told from another one: its tokens are tied to this
    provider instance (the caller keeps the result).
    """
    if isinstance(auth, ClientSecretPost):
        return "client_secret", auth._client_secret
    if isinstance(auth, PrivateKeyJwt):
        thumbprint = auth.key_thumbprint()
        if thumbprint is not None:
            return "jwk_thumbprint", thumbprint
        import secrets

        return "instance", secrets.token_hex(16)
    return None


@functools.lru_cache(maxsize=32)
def _supported_scope(scopes: Tuple[str, ...]) -> Optional[str]:
    """The scope asked for from a PRM ``scopes_supported``, computed once per list: it
    is part of the token cache key, needed on every request, and a peer's list may hold
    tens of thousands of entries."""
    return normalize_scope(scopes, "scopes_supported")


def missing_path_hint(url: Optional[str]) -> str:
    """A hint for a server URL without a path (``https://host`` for ``https://host/mcp``).

    MCP servers live at a path (the MCP "Streamable HTTP" endpoint, commonly ``/mcp``),
    and RFC 9728 metadata is looked up per path, so a bare origin usually fails with a
    protocol error or a 404 that does not say why. Returns "" when the URL has a path.
    """
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    if not parts.netloc or parts.path not in ("", "/"):
        return ""
    return ("; the URL {} has no path, and MCP servers are usually at one: did you mean "
            "{}/mcp?".format(redact_url(url or ""), redact_url(url or "").rstrip("/")))


_TOKEN_CACHE_METHODS = ("get_token", "set_token", "delete_token", "get_discovery",
                        "set_discovery", "delete_discovery", "lock")


def _check_type(value: Any, name: str, types: Tuple[type, ...], what: str) -> None:
    """TypeError unless ``value`` is one of ``types`` (a bool is never a number here)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise TypeError("{} must be {}, not {}".format(name, what, type(value).__name__))


def _check_cache(cache: Any) -> None:
    if cache is None or isinstance(cache, TokenCache) or all(
            callable(getattr(cache, m, None)) for m in _TOKEN_CACHE_METHODS):
        return
    if isinstance(cache, (str, bytes, os.PathLike)):
        raise TypeError("cache must be a TokenCache, not a {} path: pass "
                        "cache=FileTokenCache(path)".format(type(cache).__name__))
    raise TypeError("cache must be a TokenCache (MemoryTokenCache, FileTokenCache or a "
                    "subclass), not {}".format(type(cache).__name__))


def _peer_scope(value: str, what: str) -> Optional[str]:
    """A scope received from a peer: invalid syntax is the peer's fault, not ours."""
    try:
        return validate_scope(value, what)
    except ConfigurationError:
        raise ProtocolError("the {} is not a valid RFC 6749 §3.3 scope".format(what)) from None


def _challenge_of(response: Any) -> "Optional[_discovery.Challenge]":
    """The Bearer or DPoP challenge of a response (RFC 6750 §3, RFC 9449 §7.1): the first
    one with an ``error``, else the Bearer one, else the DPoP one."""
    value = response.headers.get("WWW-Authenticate")
    if not value:
        return None
    from . import discovery as _discovery

    found = [c for c in _discovery.parse_www_authenticate(value)
             if c.scheme in ("bearer", "dpop")]
    for challenge in found:
        if "error" in challenge.params:
            return challenge
    for challenge in found:
        if challenge.scheme == "bearer":
            return challenge
    return found[0] if found else None


def _unauthorized(message: str, challenge: "Optional[_discovery.Challenge]",
                  status: int = 401) -> UnauthorizedError:
    params = challenge.params if challenge is not None else {}
    return UnauthorizedError(
        message, status_code=status, error=params.get("error"),
        error_description=params.get("error_description"), scope=params.get("scope"),
        resource_metadata=params.get("resource_metadata"))


def _no_position() -> None:
    return None


_CaseInsensitiveDict: Any = requests.structures.CaseInsensitiveDict


def _bearer_field(token: str) -> Tuple[str, str]:
    """The ``Authorization`` field that sends ``token`` as a Bearer token (RFC 6750 §2.1)."""
    return ("Authorization", "Bearer " + token)


def _set_bearer(headers: Any, field: Tuple[str, str]) -> None:
    """Set the ``Authorization`` ``field`` (name, "Bearer <token>") and drop any ``DPoP``
    header (RFC 9449 §7.1: a Bearer request carries no proof)."""
    if type(headers) is _CaseInsensitiveDict:
        # What headers[...] = and pop() do, without their per-call overhead and the
        # KeyError pop() raises inside for a missing name (most of attaching a token).
        store = headers._store
        store["authorization"] = field
        store.pop("dpop", None)
    else:
        headers[field[0]] = field[1]
        headers.pop("DPoP", None)


_CHALLENGE_STATUSES = frozenset([401, 403])


class AuthProvider(requests.auth.AuthBase):
    """Base class of every provider; subclass it to bring your own token.

    Implement :meth:`token` (called before every request; return None to send no
    ``Authorization`` header) and optionally :meth:`on_unauthorized` (called once when
    the server answers 401; make :meth:`token` return something better, or raise).

    Example::

        class VaultToken(AuthProvider):
            def token(self):
                return vault.read("mcp-token")

        session.auth = VaultToken()
    """

    #: Attempts at 403 ``insufficient_scope`` step-up per request (OAuth providers).
    max_step_up = DEFAULT_MAX_STEP_UP
    #: Tokens belong to a principal other than the client (see OAuthProvider cache_key).
    _tokens_are_per_principal = False
    #: The MCP extension id a client declares when using this provider (2026-07-28
    #: ``clientCapabilities.extensions``), or None.
    mcp_extension: Optional[str] = None
    #: The DPoP key of providers configured with ``dpop_key=`` (RFC 9449); with it,
    #: ``_dpop_nonces``, ``_dpop_algorithm`` and ``_unbound_tokens`` are set too.
    _dpop: "Optional[DPoPKey]" = None
    _dpop_nonces: "NonceStore"
    _dpop_algorithm: Optional[str] = None
    _unbound_tokens: Dict[str, bool]

    def token(self) -> Optional[str]:
        """The access token to send, or None to send none."""
        raise NotImplementedError("subclasses of AuthProvider implement token()")

    def on_unauthorized(self, ctx: AuthContext) -> None:
        """Called when the server answered 401; by default, give up.

        Raises:
            UnauthorizedError: always, in this default implementation.
        """
        raise _unauthorized(
            "the MCP server refused the request (HTTP 401) and {} has no way to get a new "
            "token".format(type(self).__name__), ctx.challenge)

    # -- hooks for subclasses ------------------------------------------------------------

    def _token_for(self, server_url: str) -> Optional[str]:
        return self.token()

    def _session_for_context(self) -> Any:
        return None

    def _step_up(self, ctx: AuthContext) -> bool:
        """Try to obtain a token with more scope; return False if this provider cannot."""
        return False

    def _apply(self, request: Any, token: str) -> None:
        """Put ``token`` on ``request`` (a PreparedRequest), with a fresh DPoP proof for
        exactly this method and URL when the token is DPoP-bound (RFC 9449 §7.1)."""
        dpop = self._dpop
        if dpop is None or token in self._unbound_tokens:
            _set_bearer(request.headers, _bearer_field(token))
            return
        # Made now, from the request as prepared: htm/htu match what is sent, and a
        # replay (401, step-up, nonce) gets its own proof with a new jti (RFC 9449 §4.2).
        nonce = self._dpop_nonces.get(request.url)
        request.headers["Authorization"] = "DPoP " + token
        request.headers["DPoP"] = dpop.proof(request.method, request.url, token, nonce,
                                             algorithm=self._dpop_algorithm,
                                             body=_body_octets(request.body))
        request._mcpauth_dpop_nonce = nonce

    def _after_send(self, r: Any, server: str, kwargs: Dict[str, Any]) -> Any:
        """Keep the resource server's latest DPoP nonce, and answer its
        ``use_dpop_nonce`` challenge by one replay with the new nonce (RFC 9449 §9).
        That replay is not the single 401 replay: the token was not refused."""
        if self._dpop is None:
            return r
        request = r.request
        self._dpop_nonces.remember(request.url, r.headers.get("DPoP-Nonce"))
        if r.status_code != 401 or getattr(request, "_mcpauth_nonce_retry", False):
            return r
        if request.headers.get("DPoP") is None:
            return r
        challenge = _challenge_of(r)
        if challenge is None or challenge.scheme != "dpop" or \
                challenge.params.get("error") != "use_dpop_nonce":
            return r
        nonce = self._dpop_nonces.get(request.url)
        if nonce is None or nonce == getattr(request, "_mcpauth_dpop_nonce", None):
            return r  # no new nonce to try: an ordinary 401
        logger.info("%s asked for a DPoP nonce; retrying once with it", redact_url(server))
        self._check_replayable(r, challenge, 401)
        retry = self._resend(r, server, kwargs, nonce_retry=True)
        self._dpop_nonces.remember(retry.request.url, retry.headers.get("DPoP-Nonce"))
        return retry

    # -- the requests adapter ------------------------------------------------------------

    def __call__(self, r: Any) -> Any:
        # The per-request path: no URL parsing, no lock, no exception (see server_url_of),
        # and so no fork check (a system call): the paths that take a lock make it.
        url = r.url
        server = _SERVER_OF.get(url) or server_url_of(url)
        token = self._token_for(server)
        if token:
            self._apply(r, token)
        return self._track(r, server)

    def _track(self, r: Any, server: str) -> Any:
        """Mark ``r`` as a request of ours to ``server``, with where its body starts, and
        hook its response (the 401 replay and step-up need both)."""
        r._mcpauth_server = server
        body = r.body
        r._mcpauth_body_pos = (None if body is None or isinstance(body, (bytes, str))
                               else getattr(body, "tell", _no_position)())
        r.hooks["response"].append(self._handle_response)
        return r

    def _handle_response(self, r: Any, **kwargs: Any) -> Any:
        request = r.request
        server = getattr(request, "_mcpauth_server", None)
        if server is None:
            # A redirected copy of our request (requests drops Authorization across
            # hosts) or someone else's: never attach a token to it.
            return r
        r = self._answer(r, server, kwargs)
        if r.is_redirect:
            # requests copies this request for the redirect and drops only Authorization
            # (across hosts): the DPoP proof, made for this URL alone, goes nowhere else.
            request.headers.pop("DPoP", None)
        return r

    def _answer(self, r: Any, server: str, kwargs: Dict[str, Any]) -> Any:
        if r.status_code in _CHALLENGE_STATUSES:
            _fork.check()  # what follows takes locks (Python 3.6 has no fork hook)
        r = self._after_send(r, server, kwargs)
        if r.status_code == 401:
            return self._handle_401(r, server, kwargs)
        if r.status_code == 403:
            challenge = _challenge_of(r)
            if challenge is not None and challenge.params.get("error") == "insufficient_scope":
                return self._handle_403(r, server, challenge, 0, kwargs)
        return r

    def _handle_401(self, r: Any, server: str, kwargs: Dict[str, Any]) -> Any:
        challenge = _challenge_of(r)
        ctx = AuthContext(r, server, self._session_for_context(), challenge)
        # A 401 to a request that carried no token is how every first run starts (the
        # challenge names the metadata): routine, so DEBUG. A refused token is news: INFO.
        sent_token = r.request.headers.get("Authorization") is not None
        logger.log(logging.INFO if sent_token else logging.DEBUG,
                   "%s answered 401%s%s; getting a new token and retrying once",
                   redact_url(server), "" if sent_token else " to a request without a token",
                   " (error=%s)" % clean_peer_text(challenge.params["error"], 100)
                   if challenge is not None and "error" in challenge.params else "")
        self._check_replayable(r, challenge, 401)
        try:
            self.on_unauthorized(ctx)
        except BaseException:
            _discard(r)
            raise
        retry = self._after_send(self._resend(r, server, kwargs), server, kwargs)
        if retry.status_code == 401:
            _discard(retry)
            raise _unauthorized(
                "the MCP server refused a freshly obtained token (HTTP 401 twice)",
                _challenge_of(retry))
        if retry.status_code == 403:
            again = _challenge_of(retry)
            if again is not None and again.params.get("error") == "insufficient_scope":
                return self._handle_403(retry, server, again, 0, kwargs)
        return retry

    def _handle_403(self, r: Any, server: str, challenge: "_discovery.Challenge", steps: int,
                    kwargs: Dict[str, Any]) -> Any:
        while True:
            required = challenge.params.get("scope")
            if steps >= self.max_step_up:
                _discard(r)
                raise InsufficientScopeError(
                    "the MCP server requires scope {!r} (HTTP 403 insufficient_scope) "
                    "after {} step-up attempt(s)".format(required, steps),
                    required_scope=required,
                    error_description=challenge.params.get("error_description"),
                    resource_metadata=challenge.params.get("resource_metadata"))
            ctx = AuthContext(r, server, self._session_for_context(), challenge)
            self._check_replayable(r, challenge, 403)
            try:
                stepped = self._step_up(ctx)
            except BaseException:
                _discard(r)
                raise
            if not stepped:
                _discard(r)
                raise InsufficientScopeError(
                    "the MCP server requires scope {!r} (HTTP 403 insufficient_scope) and "
                    "{} cannot request more scope".format(required, type(self).__name__),
                    required_scope=required,
                    error_description=challenge.params.get("error_description"),
                    resource_metadata=challenge.params.get("resource_metadata"))
            steps += 1
            logger.info("stepping up scope for %s to include %r (attempt %d)",
                        redact_url(server), required, steps)
            r = self._after_send(self._resend(r, server, kwargs), server, kwargs)
            if r.status_code == 401:
                _discard(r)
                raise _unauthorized("the MCP server refused the stepped-up token (HTTP 401)",
                                    _challenge_of(r))
            if r.status_code != 403:
                return r
            next_challenge = _challenge_of(r)
            if next_challenge is None or next_challenge.params.get("error") != "insufficient_scope":
                return r
            challenge = next_challenge

    def _check_replayable(self, r: Any, challenge: "Optional[_discovery.Challenge]",
                          status: int) -> None:
        body = r.request.body
        if body is None or isinstance(body, (bytes, str)):
            return
        if r.request._mcpauth_body_pos is not None and hasattr(body, "seek"):
            return
        _discard(r)
        if status == 403:
            raise InsufficientScopeError(
                "the MCP server requires more scope (HTTP 403), but the request body is a "
                "stream that cannot be rewound, so the request was not replayed",
                required_scope=challenge.params.get("scope") if challenge else None)
        raise _unauthorized(
            "the MCP server answered 401, but the request body is a stream that cannot be "
            "rewound, so the request was not replayed with a new token", challenge)

    def _resend(self, r: Any, server: str, kwargs: Dict[str, Any],
                nonce_retry: bool = False) -> Any:
        pos = r.request._mcpauth_body_pos
        if pos is not None:
            r.request.body.seek(pos)
        _discard(r)
        prep = r.request.copy()
        requests.cookies.extract_cookies_to_jar(  # type: ignore[no-untyped-call]
            prep._cookies, r.request, r.raw)
        prep.prepare_cookies(prep._cookies)
        token = self._token_for(server)
        if not token:
            raise _unauthorized("no token is available to retry the request", None)
        self._apply(prep, token)
        prep._mcpauth_server = server
        prep._mcpauth_body_pos = pos
        prep._mcpauth_nonce_retry = nonce_retry
        retry = r.connection.send(prep, **kwargs)
        retry.history.append(r)
        retry.request = prep
        return retry


def _body_octets(body: Any) -> Optional[bytes]:
    """The octets a prepared body sends, for the DPoP ``content_digest`` (SEP-1932); None
    for no body or a stream (not read ahead of sending)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        try:
            return body.encode("iso-8859-1")  # how http.client sends a str body
        except UnicodeEncodeError:
            return None
    return None


def _discard(r: Any) -> None:
    """Read and release a response we will not return (HTTPDigestAuth does the same)."""
    try:
        _ = r.content
    except Exception:  # a broken body on a refused response does not matter
        pass
    r.close()


#: The keyword arguments of OAuthProvider.__init__, which every provider spells out
#: in its own signature (so that type checkers see them) and passes on.
_OAUTH_OPTIONS = ("client_id", "scope", "expected_issuer", "issuer", "token_endpoint",
                  "resource", "server_url", "allow_resource_prefix", "session", "timeout",
                  "allow_insecure_http", "cache", "refresh_skew", "max_step_up", "clock",
                  "transport", "allow_issuer_change", "cache_key", "dpop_key",
                  "dpop_accept_bearer", "dpop_reuse_client_key")


def _oauth_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """The OAuthProvider options among a subclass constructor's ``locals()``."""
    return {name: arguments[name] for name in _OAUTH_OPTIONS}


class _Target(NamedTuple):
    """Where and how to get tokens for one MCP server (serialisable for caches)."""

    server_url: str
    resource: str
    issuer: Optional[str]
    token_endpoint: str
    auth_methods: Optional[Tuple[str, ...]]
    signing_algs: Optional[Tuple[str, ...]]
    scopes_supported: Optional[Tuple[str, ...]]
    #: The scope of the 401 challenge that led to discovery (kept so a later run with a
    #: file cache computes the same token key).
    challenge_scope: Optional[str] = None
    #: The authorization server's ``dpop_signing_alg_values_supported`` (RFC 9449 §5.1).
    dpop_algs: Optional[Tuple[str, ...]] = None
    #: The PRM's ``dpop_bound_access_tokens_required`` (RFC 9728 §2).
    dpop_required: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, value: Dict[str, Any]) -> "Optional[_Target]":
        try:
            def tup(x: Any) -> Optional[Tuple[str, ...]]:
                if x is None:
                    return None
                if not isinstance(x, list) or not all(isinstance(i, str) for i in x):
                    raise ValueError("not a list of strings")
                return tuple(x)

            for name in ("server_url", "resource", "token_endpoint"):
                if not isinstance(value.get(name), str):
                    return None
            issuer = value.get("issuer")
            if issuer is not None and not isinstance(issuer, str):
                return None
            challenge_scope = value.get("challenge_scope")
            if challenge_scope is not None:
                challenge_scope = validate_scope(challenge_scope)
            return cls(value["server_url"], value["resource"], issuer,
                       value["token_endpoint"], tup(value.get("auth_methods")),
                       tup(value.get("signing_algs")), tup(value.get("scopes_supported")),
                       challenge_scope, tup(value.get("dpop_algs")),
                       value.get("dpop_required") is True)
        except (ValueError, TypeError, AttributeError, ConfigurationError):
            return None


_UNCHECKED = object()


class _ServerState(object):
    """Per-MCP-server state: discovery result and scope bookkeeping."""

    __slots__ = ("lock", "target", "challenge_scope", "step_up_scope", "token_seen", "fast",
                 "covered")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: The ``resource`` setting this server was checked to be covered by (the
        #: provider's binding, MCP "Token Handling"); _UNCHECKED before any check.
        self.covered: Any = _UNCHECKED
        self.target: Optional[_Target] = None
        self.challenge_scope: Optional[str] = None
        self.step_up_scope: Optional[str] = None
        # (received_at, expires_at) of the last token this provider used or fetched, so
        # that a token found in the cache is logged once, not on every request.
        self.token_seen: Optional[Tuple[float, Optional[float]]] = None
        #: The per-request fast path: an immutable record (access token, renew-at time,
        #: the target and scopes whose cache key it was read under, and the Bearer
        #: Authorization field, None for a DPoP-bound token), replaced whole, read
        #: without a lock; valid only while those three are still the current ones.
        self.fast: Optional[Tuple[str, float, _Target, Optional[str], Optional[str],
                                  Optional[Tuple[str, str]]]] = None


TokenSource = Union[str, Callable[[], Optional[str]]]


class BearerTokenProvider(AuthProvider):
    """Bring your own token: an API key, a gateway token, a secret-store lookup.

    ``token`` is a string, or a zero-argument callable consulted before every request
    (return None to send no ``Authorization`` header). The token is opaque to mcpauth
    and is only ever sent in the ``Authorization`` header (RFC 6750 §2.1).

    Without ``on_unauthorized``, a 401 raises :class:`~mcpauth.errors.UnauthorizedError`
    carrying the server's challenge (error, description, scope, resource_metadata). With
    it, ``on_unauthorized(ctx)`` runs (``ctx`` is an :class:`AuthContext`; typically the
    hook fetches a new token that ``token`` will then return), and the request is replayed
    exactly once; a second 401 raises ``UnauthorizedError``. An exception raised by the
    hook propagates unchanged.

    Args:
        token: the token, or a callable returning it.
        on_unauthorized: ``callable(ctx) -> None``, called once per refused request.
        session: given to the hook as ``ctx.session``.
        server_url: bind the token to this MCP server (MCP "Token Handling"): a request to any
            other server (another origin, or a path outside this one) raises
            :class:`~mcpauth.errors.ConfigurationError` instead of carrying the token.
            Recommended whenever the session also talks to other hosts.
        dpop_key: the key a DPoP-bound token is bound to (a :class:`mcpauth.dpop.DPoPKey`
            or anything it loads): the token is then sent as ``Authorization: DPoP`` with
            a fresh proof per request, and the server's nonces are followed (RFC 9449).
    """

    def __init__(self, token: TokenSource,
                 on_unauthorized: Optional[Callable[[AuthContext], None]] = None,
                 session: Any = None, server_url: Optional[str] = None,
                 dpop_key: Any = None) -> None:
        self.server_url = server_url_of(server_url) if server_url else None
        if dpop_key is not None:
            # A token already bound to this key (RFC 9449): sent with the DPoP scheme
            # and a proof per request, following the server's nonces (§7.1, §9).
            from .dpop import DPoPKey, NonceStore

            self._dpop = DPoPKey(dpop_key)
            self._dpop_nonces = NonceStore()
            self._unbound_tokens = {}
        if isinstance(token, str):
            if not token:
                raise ConfigurationError("token must be a non-empty string or a callable")
            if not _is_access_token(token):
                # Refused now, as a client secret is; described, never shown.
                problem = _vschar_problem(token)
                raise ConfigurationError(
                    "token contains {}; a bearer token is printable ASCII (RFC 6749 "
                    "Appendix A.12){}".format(
                        problem or "a character other than printable ASCII",
                        "; a token read with open(...).read() keeps the file's newline: "
                        "use .read().strip()" if problem and problem.startswith(
                            "a line break") else ""))
            value = token
            _mask.hold(self, token)
            self._source: Callable[[], Optional[str]] = lambda: value
        elif callable(token):
            self._source = token
        else:
            raise ConfigurationError("token must be a non-empty string or a callable")
        if on_unauthorized is not None and not callable(on_unauthorized):
            raise ConfigurationError("on_unauthorized must be callable")
        self._hook = on_unauthorized
        self._session = session
        #: The last token that passed the check, and its Authorization field.
        self._field: Tuple[Any, Tuple[str, str]] = (_UNCHECKED, ("", ""))
        #: The last server found within ``server_url``, with that ``server_url`` (the
        #: binding check's result).
        self._covered: Tuple[Any, Optional[str]] = (_UNCHECKED, None)

    def __repr__(self) -> str:
        return "BearerTokenProvider(token=[secure], on_unauthorized={})".format(
            "set" if self._hook is not None else "None")

    def __reduce__(self) -> Any:
        raise TypeError("BearerTokenProvider holds a token and cannot be pickled")

    def token(self) -> Optional[str]:
        return self._checked(self._source())

    def _checked(self, value: Any) -> Optional[str]:
        """``value`` from the token source, refused unless it is None or a token."""
        if value is None or value is self._field[0]:
            return value  # str is immutable: a value that passed the check still passes
        if not _is_access_token(value):
            raise ConfigurationError(
                "the token source returned something other than a non-empty string of "
                "printable ASCII characters (RFC 6749 Appendix A.12)")
        token = cast(str, value)  # checked: a str of VSCHARs
        _fork.check()  # the masking registry's lock (Python 3.6 has no fork hook)
        _mask.remember(token)
        self._field = (token, _bearer_field(token))
        return token

    def __call__(self, r: Any) -> Any:
        # The per-request path (as in AuthProvider.__call__, no fork check): a server
        # already found within the binding, the source consulted once, and a token that
        # already passed the check sent as it is.
        server = _SERVER_OF.get(r.url) or server_url_of(r.url)
        covered = self._covered
        if self.server_url is not None and not (
                server is covered[1] and self.server_url is covered[0]):
            self._check_binding(server)
        token = self._source()
        field = self._field
        if token is field[0] and self._dpop is None:
            _set_bearer(r.headers, field[1])
        else:
            token = self._checked(token)
            if token:
                self._apply(r, token)
        return self._track(r, server)

    def _token_for(self, server_url: str) -> Optional[str]:
        self._check_binding(server_url)
        return self.token()

    def _check_binding(self, server_url: str) -> None:
        if self.server_url is not None and not _covers(self.server_url, server_url):
            raise ConfigurationError(
                "this BearerTokenProvider is bound to {}; refusing to send its token to "
                "{}".format(redact_url(self.server_url), redact_url(server_url)))
        self._covered = (self.server_url, server_url)

    def on_unauthorized(self, ctx: AuthContext) -> None:
        if self._hook is None:
            AuthProvider.on_unauthorized(self, ctx)
        else:
            self._hook(ctx)

    def _session_for_context(self) -> Any:
        return self._session


class OAuthProvider(AuthProvider):
    """Shared machinery of the OAuth providers: discovery, caching, refresh, single-flight.

    ``cache_key`` labels the principal a token is for in the token cache: tokens are
    cached per (issuer, resource, client_id + cache_key, scope). Providers whose tokens
    belong to someone ``client_id`` does not name (cross-app access: an end user;
    workload identity: a workload) use a random per-instance label unless one is given,
    so two of them sharing one cache never exchange tokens; pass a stable ``cache_key``
    (the user's or workload's id) to reuse tokens from a ``FileTokenCache`` across runs.

    Back-off (RFC 9110 §10.2.3, RFC 6585 §4): after a retryable token-request failure
    no request goes to that token endpoint until the 429/503 ``Retry-After`` has passed
    (at most ``max_retry_after`` seconds; every provider of the process waits), or,
    without the header, for ``hold_off`` seconds (this provider only). Calls in between
    raise the same retryable error at once, its ``retry_after`` the seconds left; a token
    that is still valid stays in use meanwhile. Discovery that fails the same way is held
    off the same way. Both are attributes to set on an instance.

    Not used directly; see :class:`ClientCredentialsProvider` and
    :class:`PrivateKeyJwtProvider`. Subclasses implement :meth:`_client_auth` and
    :meth:`_grant_fields`.
    """

    #: Seconds without token requests after a retryable failure without Retry-After.
    hold_off = DEFAULT_HOLD_OFF
    #: The longest Retry-After honoured, in seconds.
    max_retry_after = DEFAULT_MAX_RETRY_AFTER

    def __init__(self, *, client_id: Optional[str] = None, scope: Optional[str] = None,
                 expected_issuer: Optional[str] = None, issuer: Optional[str] = None,
                 token_endpoint: Optional[str] = None, resource: Optional[str] = None,
                 server_url: Optional[str] = None, allow_resource_prefix: bool = False,
                 session: Any = None, timeout: float = DEFAULT_TIMEOUT,
                 allow_insecure_http: bool = False, cache: Optional[TokenCache] = None,
                 refresh_skew: float = DEFAULT_REFRESH_SKEW,
                 max_step_up: int = DEFAULT_MAX_STEP_UP,
                 clock: Callable[[], float] = time.time,
                 transport: Optional[Transport] = None,
                 allow_issuer_change: bool = False,
                 cache_key: Optional[str] = None, dpop_key: Any = None,
                 dpop_accept_bearer: bool = False,
                 dpop_reuse_client_key: bool = False) -> None:
        # Wrong types fail here, not at the first request (TypeError, as in the stdlib).
        for name, value in (("client_id", client_id), ("expected_issuer", expected_issuer),
                            ("issuer", issuer), ("token_endpoint", token_endpoint),
                            ("server_url", server_url)):
            if value is not None:
                _check_type(value, name, (str,), "a str")
        for name, flag in (("allow_resource_prefix", allow_resource_prefix),
                           ("allow_insecure_http", allow_insecure_http),
                           ("allow_issuer_change", allow_issuer_change),
                           ("dpop_accept_bearer", dpop_accept_bearer),
                           ("dpop_reuse_client_key", dpop_reuse_client_key)):
            _check_type(flag, name, (bool,), "True or False")
        _check_type(timeout, "timeout", (int, float), "a number of seconds")
        _check_type(refresh_skew, "refresh_skew", (int, float), "a number of seconds")
        _check_type(max_step_up, "max_step_up", (int,), "an int")
        _check_cache(cache)
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds, not {}".format(
                type(clock).__name__))
        if transport is not None and not callable(transport):
            raise TypeError("transport must be callable, not {}".format(
                type(transport).__name__))
        if session is not None and not callable(getattr(session, "request", None)):
            raise TypeError("session must be a requests.Session, not {}".format(
                type(session).__name__))
        self.client_id = client_id
        if cache_key is not None and (not isinstance(cache_key, str) or not cache_key):
            raise ConfigurationError("cache_key must be a non-empty string")
        if cache_key is None and self._tokens_are_per_principal:
            # The token belongs to an end user or a workload that client_id does not
            # name: never share it through a cache unless the caller labels the principal.
            import secrets

            cache_key = "instance:" + secrets.token_hex(12)
        self._cache_identity = cache_key
        self._fingerprint = None  # type: Optional[str]
        self.allow_issuer_change = allow_issuer_change
        # H1 / SEP-2352: credentials are bound to the first authorization server they
        # are used with (or to the pinned one) and never sent to another.
        self._bound_issuer: Optional[str] = expected_issuer or issuer
        self.scope = validate_scope(scope)
        self.expected_issuer = expected_issuer
        self.issuer = issuer
        if token_endpoint is not None:
            check_url(token_endpoint, allow_insecure_http, "token_endpoint")
        self.token_endpoint = token_endpoint
        if resource is not None and not isinstance(resource, str):
            raise ConfigurationError("resource must be a URL string")
        self.resource = resource
        self.server_url = server_url_of(server_url) if server_url else None
        if (expected_issuer is not None and issuer is not None
                and expected_issuer != issuer):
            raise ConfigurationError("issuer and expected_issuer disagree")
        self.allow_resource_prefix = allow_resource_prefix
        if refresh_skew < 0:
            raise ConfigurationError("refresh_skew must not be negative")
        self.refresh_skew = float(refresh_skew)
        if max_step_up < 0:
            raise ConfigurationError("max_step_up must not be negative")
        self.max_step_up = max_step_up
        self._clock = clock
        self._transport = transport or RequestsTransport(
            session, timeout=timeout, allow_insecure_http=allow_insecure_http)
        self._session = session
        self._cache = cache if cache is not None else MemoryTokenCache()
        self._states: Dict[str, _ServerState] = {}
        self._states_lock = threading.Lock()
        self._holds = HoldOff()
        _fork.register(self)
        self._init_dpop(dpop_key, dpop_accept_bearer, dpop_reuse_client_key)

    def _init_dpop(self, dpop_key: Any, accept_bearer: bool, reuse_client_key: bool) -> None:
        """DPoP (RFC 9449): ``dpop_key`` is a DPoPKey, anything it loads, or True for a
        new in-memory ES256 key; None or False: no DPoP."""
        self._dpop_accept_bearer = accept_bearer
        self._dpop_algorithm: Optional[str] = None
        self._unbound_tokens: Dict[str, bool] = {}
        if dpop_key is None or dpop_key is False:
            return
        from .dpop import DPoPKey, NonceStore

        self._dpop_nonces = NonceStore()
        key = DPoPKey.generate() if dpop_key is True else DPoPKey(dpop_key)
        client_jwt = getattr(self, "_jwt", None)
        if isinstance(client_jwt, PrivateKeyJwt) and not reuse_client_key \
                and client_jwt.key_thumbprint() == key.thumbprint:
            # RFC 9449 §11.5 keeps proof keys and client keys apart; one key for both
            # would let a token-binding proof double as client authentication material.
            raise ConfigurationError(
                "dpop_key is the client authentication key; use a separate DPoP key "
                "(mcpauth.dpop.DPoPKey.generate()), or pass dpop_reuse_client_key=True")
        self._dpop = key

    @property
    def dpop_key(self) -> "Optional[DPoPKey]":
        """The DPoP key tokens are bound to, or None (its repr shows only the thumbprint)."""
        return self._dpop

    def __repr__(self) -> str:
        return "{}(client_id={!r}, scope={!r}, expected_issuer={!r})".format(
            type(self).__name__, self.client_id, self.scope, self.expected_issuer)

    def __reduce__(self) -> Any:
        raise TypeError("{} holds credentials and cannot be pickled".format(
            type(self).__name__))

    def _after_fork(self) -> None:
        """In a forked child: new locks (a parent's thread may have held the old ones)."""
        self._states_lock = threading.Lock()
        for state in list(self._states.values()):
            state.lock = threading.RLock()

    # -- subclass interface --------------------------------------------------------------

    def _client_auth(self, target: _Target) -> ClientAuth:
        raise NotImplementedError

    def _credential(self) -> Optional[Tuple[str, str]]:
        """(purpose, credential) that cached tokens are tied to, or None (see
        :func:`mcpauth.cache.credential_fingerprint`)."""
        return None

    def _grant_fields(self, target: _Target, scope: Optional[str]) -> List[Tuple[str, str]]:
        fields = [("grant_type", GRANT_TYPE_CLIENT_CREDENTIALS)]
        if scope:
            fields.append(("scope", scope))
        fields.append(("resource", target.resource))
        return fields

    # -- public API ----------------------------------------------------------------------

    def token(self, server_url: Optional[str] = None) -> Optional[str]:
        """A valid access token for ``server_url`` (default: the configured or last server).

        Discovers and requests a token as needed, without sending anything to the MCP
        server unless its metadata can only be found from its 401 challenge.

        Raises:
            ConfigurationError: no server URL is known.
            MCPAuthError: discovery or the token request failed.
        """
        _fork.check()
        server = server_url_of(server_url) if server_url else self.server_url
        if server is None:
            raise ConfigurationError("token() needs a server_url (pass one, or configure "
                                     "server_url= on the provider)")
        state = self._state(server)
        target = self._target(server, state)
        if target is None:
            with state.lock:
                if state.target is None:
                    state.target = self._discover_without_challenge(server, state)
                target = state.target
        return self._ensure_token(server, state, target)

    def on_unauthorized(self, ctx: AuthContext) -> None:
        """Drop the refused token, re-discover, and obtain a new token.

        Discovery is re-done (RFC 9728 §5.2 B7) because a refused token may mean the
        server moved to another authorization server (SEP-2352).
        """
        state = self._state(ctx.server_url)
        challenge = ctx.challenge
        params = challenge.params if challenge is not None else {}
        refused = _bearer_of(ctx.response.request)
        with state.lock:
            state.fast = None
            if params.get("scope"):
                state.challenge_scope = _peer_scope(params["scope"], "scope in the 401 challenge")
            target = previous = state.target
            if refused is not None and target is not None:
                key = self._key(target, state)
                current = self._cache.get_token(key)
                if current is not None and current.access_token != refused:
                    return  # another thread already replaced the refused token
                self._cache.delete_token(key, refused)
                self._cache.delete_discovery(self._discovery_key(ctx.server_url))
                state.target = None
            if state.target is None:
                state.target = self._discover(
                    ctx.server_url, params.get("resource_metadata"), state.challenge_scope,
                    previous=previous)
            self._ensure_token(ctx.server_url, state, state.target, refused=refused)

    # -- internals -------------------------------------------------------------------------

    def _session_for_context(self) -> Any:
        return self._session

    def _state(self, server: str) -> _ServerState:
        state = self._states.get(server)  # states are never removed: no lock to read one
        if state is not None:
            return state
        with self._states_lock:
            state = self._states.get(server)
            if state is None:
                state = self._states[server] = _ServerState()
                if self.server_url is None:
                    self.server_url = server
            return state

    def _target(self, server: str, state: _ServerState) -> Optional[_Target]:
        target = state.target
        if target is not None:
            return target
        with state.lock:
            if state.target is None:
                cached = self._cache.get_discovery(self._discovery_key(server))
                if cached is not None:
                    loaded = _Target.from_dict(cached)
                    problem = ("it is malformed" if loaded is None
                               else self._cached_target_problem(server, loaded))
                    if problem is not None:
                        logger.warning("ignoring the cached discovery result for %s: %s; "
                                       "discovering again", redact_url(server), problem)
                    else:
                        assert loaded is not None
                        self._bind_issuer(server, loaded.issuer)
                        state.target = loaded
            return state.target

    def _discovery_key(self, server: str) -> str:
        """Where this provider's discovery result for ``server`` lives in the cache.

        Keyed by the configuration that shapes the result, not by the server alone: two
        jobs sharing a cache file with different clients or different ``issuer`` /
        ``token_endpoint`` / ``resource`` settings must never pick up each other's
        authorization server (H1, B6).
        """
        return discovery_key(server, self.client_id, self.expected_issuer, self.issuer,
                             self.token_endpoint, self.resource, self.allow_resource_prefix)

    def _cached_target_problem(self, server: str, target: _Target) -> Optional[str]:
        """Why a cached discovery result may not be used by this provider, or None.

        A cache is storage, not a peer we verified: before a credential goes anywhere,
        the result is held to the same policy discovery applies (the pin, the bound
        issuer of SEP-2352, the https rule, RFC 8707 / RFC 9728 §3.3 resource match).
        """
        if target.server_url != server:
            return "it is for another server"
        pinned = self.expected_issuer or self.issuer
        if pinned is not None and target.issuer != pinned:
            return "its issuer is not the configured one"
        if self.token_endpoint is not None and target.token_endpoint != self.token_endpoint:
            return "its token endpoint is not the configured one"
        if target.issuer is None and self.token_endpoint is None:
            return "it names no issuer"
        allow_http = bool(getattr(self._transport, "allow_insecure_http", False))
        try:
            check_url(target.token_endpoint, allow_http, "cached token endpoint")
            if target.issuer is not None:
                check_url(target.issuer, allow_http, "cached issuer")
        except MCPAuthError as exc:
            return str(exc)
        if self.resource is not None:
            if target.resource != self.resource:
                return "its resource is not the configured one"
        elif not identical_resource(target.resource, server):  # else the RFC 9728 check
            from . import discovery as _discovery

            try:
                _discovery.validate_resource(
                    _discovery.ProtectedResourceMetadata(target.resource, (), None,
                                                         "the cache", {}),
                    server, allow_prefix=self.allow_resource_prefix)
            except MCPAuthError:
                return "its resource {} is not this server's".format(
                    redact_url(target.resource))
        with self._states_lock:
            bound = self._bound_issuer
        if bound is not None and target.issuer != bound and not self.allow_issuer_change:
            return "its issuer is not the one this provider's credentials are bound to"
        return None

    def _preferred_issuer(self) -> Optional[str]:
        """The issuer discovery must find: the pin, else the bound one (unless moves are
        allowed). Discovery then picks it from ``authorization_servers`` even when it is
        not listed first, and refuses before fetching anything if it is absent."""
        if self.expected_issuer is not None or self.allow_issuer_change:
            return self.expected_issuer
        with self._states_lock:
            return self._bound_issuer

    def _bind_issuer(self, server: str, issuer: Optional[str]) -> None:
        """Tie this provider's credentials to ``issuer``, or refuse a different one."""
        if issuer is None:
            return
        with self._states_lock:
            bound = self._bound_issuer
            if bound is None or bound == issuer:
                self._bound_issuer = issuer
                return
            if self.allow_issuer_change:
                logger.warning("%s now uses authorization server %s instead of %s "
                               "(allow_issuer_change=True)", redact_url(server),
                               redact_url(issuer), redact_url(bound))
                self._bound_issuer = issuer
                return
        raise AuthorizationServerMismatchError(
            "{} names authorization server {}, but this provider's credentials are bound "
            "to {}; refusing to send them there (pin expected_issuer=, or pass "
            "allow_issuer_change=True if the client is registered at both)".format(
                redact_url(server), redact_url(issuer), redact_url(bound)),
            expected_issuer=bound, issuer=issuer)

    def __call__(self, r: Any) -> Any:
        # The per-request path with a valid cached token: immutable records read without
        # a lock, no URL parsing, no method call but the clock (a fork check is a system
        # call: only the paths that take a lock make it).
        server = _SERVER_OF.get(r.url, "")  # "" (not memoised yet) names no state
        state = self._states.get(server)
        if state is not None:
            fast = state.fast
            # The record is valid while this server was checked against the current
            # `resource`, it was read under the current target and scopes, and before
            # its renewal time.
            if (fast is not None and state.covered is self.resource
                    and fast[2] is state.target and fast[3] is state.challenge_scope
                    and fast[4] is state.step_up_scope and self._clock() < fast[1]):
                if fast[5] is not None:
                    _set_bearer(r.headers, fast[5])
                else:
                    self._apply(r, fast[0])  # DPoP-bound: a proof for this very request
                return self._track(r, server)
        return AuthProvider.__call__(self, r)

    def _token_for(self, server: str) -> Optional[str]:
        _fork.check()  # what follows takes locks (Python 3.6 has no fork hook)
        state = self._states.get(server)
        resource = self.resource
        if state is None or state.covered is not resource:
            # Once per server (and per resource setting): the check's result is kept.
            if resource is not None and not _covers(resource, server):
                raise ConfigurationError(
                    "this provider is configured for resource {}; refusing to send its "
                    "token to {}".format(redact_url(resource), redact_url(server)))
            state = state or self._state(server)
            state.covered = resource
        target = self._target(server, state)
        if target is None and self.token_endpoint is not None:
            with state.lock:
                if state.target is None:
                    state.target = self._discover(server, None)
                target = state.target
        if target is None:
            # Cold: send without a token; the 401 challenge tells us where to go (B1).
            return None
        return self._ensure_token(server, state, target)

    def _effective_scope(self, state: _ServerState, target: _Target) -> Optional[str]:
        # D3, with the caller's configuration first: configured scope, else the 401
        # challenge's scope, else every PRM scopes_supported, else none.
        base: Optional[str] = None
        if self.scope is not None:
            base = self.scope
        elif state.challenge_scope is not None:
            base = state.challenge_scope
        elif target.challenge_scope is not None:
            base = target.challenge_scope
        elif target.scopes_supported:
            base = _supported_scope(target.scopes_supported)
        if state.step_up_scope is None:
            return base
        return normalize_scope((base or "").split() + state.step_up_scope.split())

    def _key(self, target: _Target, state: _ServerState) -> str:
        client = self.client_id
        if self._cache_identity is not None:
            client = "{}#{}".format(client or "", self._cache_identity)
        if self._dpop is not None:
            # A DPoP-bound token is useless without its key: tokens of another key (or
            # of no key) never share an entry (RFC 9449 §6: cnf.jkt).
            client = "{}#dpop:{}".format(client or "", self._dpop.thumbprint)
        fingerprint = self._fingerprint
        if fingerprint is None:
            credential = self._credential()
            if credential is not None:
                # Computed once (PBKDF2): the hot path only reads the attribute.
                fingerprint = self._fingerprint = credential_fingerprint(
                    credential[0], credential[1], self.client_id)
        return token_key(target.issuer, target.resource, client,
                         self._effective_scope(state, target), fingerprint)

    def _needs_refresh(self, token: TokenResponse, now: float) -> bool:
        return now >= self._refresh_at(token)

    def _refresh_at(self, token: TokenResponse) -> float:
        expires_at = token.expires_at
        if expires_at is None:
            return float("inf")
        lifetime = max(expires_at - token.received_at, 0.0)
        # Renew `refresh_skew` seconds early, but never before half the lifetime has
        # passed: short-lived tokens must not be renewed on every call (msal does that).
        return max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)

    def _ensure_token(self, server: str, state: _ServerState, target: _Target,
                      refused: Optional[str] = None) -> str:
        if target.dpop_required and self._dpop is None:
            raise ConfigurationError(
                "{} requires DPoP-bound tokens (dpop_bound_access_tokens_required in its "
                "protected resource metadata, RFC 9728 §2); pass dpop_key= (for example "
                "mcpauth.dpop.DPoPKey.generate())".format(redact_url(server)))
        if self._dpop is not None and self._dpop_algorithm is None:
            # A cached token too gets proofs in the alg the servers accept (RFC 9449 §5.1).
            self._dpop_algorithm = self._dpop.algorithm_for(target.dpop_algs)
        challenge_scope, step_up_scope = state.challenge_scope, state.step_up_scope
        key = self._key(target, state)
        token = self._usable(self._cache.get_token(key))
        now = self._clock()
        if token is not None and token.access_token != refused:
            self._note_token_type(token)
            refresh_at = self._refresh_at(token)
            if now < refresh_at:
                if state.token_seen != (token.received_at, token.expires_at):
                    self._log_cached_token(server, state, token, now)
                if refused is None:
                    access = token.access_token
                    state.fast = (access, refresh_at, target, challenge_scope, step_up_scope,
                                  None if self._dpop is not None and
                                  access not in self._unbound_tokens
                                  else _bearer_field(access))
                return token.access_token
            expires_at = token.expires_at
            if expires_at is not None and now < expires_at:
                # In the renewal window but still valid: one thread renews, the others
                # keep using the current token instead of queueing behind it.
                if not state.lock.acquire(blocking=False):
                    return token.access_token
                try:
                    return self._renew(server, state, target, key, refused,
                                       fallback=token).access_token
                finally:
                    state.lock.release()
        with state.lock:
            return self._renew(server, state, target, key, refused).access_token

    def _renew(self, server: str, state: _ServerState, target: _Target, key: str,
               refused: Optional[str], fallback: Optional[TokenResponse] = None
               ) -> TokenResponse:
        # Single-flight: whoever holds state.lock fetches; latecomers find the result.
        with self._cache.lock(key):
            token = self._usable(self._cache.get_token(key))
            now = self._clock()
            if (token is not None and token.access_token != refused
                    and not self._needs_refresh(token, now)):
                self._note_token_type(token)
                return token
            endpoint = target.token_endpoint
            try:
                # While the authorization server is held off, fail fast (no request).
                _AUTHORIZATION_SERVERS.check(endpoint)
                self._holds.check(endpoint)
            except MCPAuthError:
                if fallback is not None and self._still_valid(fallback):
                    return fallback
                raise
            try:
                token = self._fetch_token(target, self._effective_scope(state, target))
            except MCPAuthError as exc:
                if exc.retryable:
                    self._hold_off(endpoint, exc)
                if fallback is not None and self._still_valid(fallback) and exc.retryable:
                    logger.warning("token renewal for %s failed (%s); the current token "
                                   "stays in use until it expires", redact_url(server), exc)
                    return fallback
                raise
            self._cache.set_token(key, token)
            state.token_seen = (token.received_at, token.expires_at)
            self._note_token_type(token)
            return token

    def _still_valid(self, token: TokenResponse) -> bool:
        return token.expires_at is not None and self._clock() < token.expires_at

    def _hold_off(self, key: str, exc: MCPAuthError) -> None:
        """Send nothing for ``key`` (a token endpoint, or discovery for a server) for a
        while after a retryable failure.

        A ``Retry-After`` (capped at ``max_retry_after``) holds it for every provider of
        the process; without one, this provider alone holds off for ``hold_off``
        seconds. ``exc.retry_after`` says how long.
        """
        if exc.retry_after is not None:
            seconds = min(float(exc.retry_after), self.max_retry_after)
            _AUTHORIZATION_SERVERS.hold(key, seconds, exc)
        else:
            seconds = self.hold_off
            self._holds.hold(key, seconds, exc)
        exc.retry_after = seconds
        what = key if key.startswith("discovery for ") else "token request to " + redact_url(key)
        logger.info("%s failed; nothing more is sent for %.1f s", what, seconds)

    @staticmethod
    def _log_cached_token(server: str, state: _ServerState, token: TokenResponse,
                          now: float) -> None:
        """DEBUG, once per token: a warm run says which token it uses and for how long."""
        state.token_seen = (token.received_at, token.expires_at)
        expires_at = token.expires_at
        logger.debug("using the cached token for %s (%s)", redact_url(server),
                     "no expiry given" if expires_at is None
                     else "expires in %d s" % max(int(expires_at - now), 0))

    def _usable(self, token: Optional[TokenResponse]) -> Optional[TokenResponse]:
        """A cached token, unless it is a Bearer token (accepted by an earlier run with
        ``dpop_accept_bearer``) and this run refuses Bearer answers (RFC 9449 §5)."""
        if token is not None and self._dpop is not None and not self._dpop_accept_bearer \
                and token.token_type.lower() != "dpop":
            return None
        return token

    def _note_token_type(self, token: TokenResponse) -> None:
        """Remember unbound (Bearer) tokens accepted with ``dpop_accept_bearer``."""
        if self._dpop is not None and token.token_type.lower() != "dpop":
            if len(self._unbound_tokens) > 64:
                self._unbound_tokens.clear()
            self._unbound_tokens[token.access_token] = True

    def _dpop_options(self, target: _Target) -> Dict[str, Any]:
        """The DPoP keyword arguments of :func:`mcpauth.grants.request_token`."""
        if self._dpop is None:
            return {}
        algorithm = self._dpop.algorithm_for(target.dpop_algs)
        self._dpop_algorithm = algorithm
        return {"dpop": self._dpop, "dpop_algorithm": algorithm,
                "dpop_nonces": self._dpop_nonces,
                "dpop_accept_bearer": self._dpop_accept_bearer}

    def _fetch_token(self, target: _Target, scope: Optional[str]) -> TokenResponse:
        client_auth = self._client_auth(target)
        return request_token(self._transport, target.token_endpoint,
                             self._grant_fields(target, scope), client_auth,
                             issuer=target.issuer, clock=self._clock,
                             **self._dpop_options(target))

    def _discover(self, server: str, resource_metadata_url: Optional[str],
                  challenge_scope: Optional[str] = None,
                  previous: Optional[_Target] = None) -> _Target:
        if self.token_endpoint is not None:
            target = _Target(server, self.resource or server, self.issuer or
                             self.expected_issuer, self.token_endpoint, None, None, None,
                             challenge_scope)
        else:
            from . import discovery as _discovery

            held = "discovery for " + server
            _AUTHORIZATION_SERVERS.check(held)
            self._holds.check(held)
            try:
                result = _discovery.discover(
                    self._transport, server, resource_metadata_url=resource_metadata_url,
                    expected_issuer=self._preferred_issuer(), issuer=self.issuer,
                    allow_resource_prefix=self.allow_resource_prefix,
                    known_metadata=_metadata_of(previous))
            except MCPAuthError as exc:
                if exc.retryable:
                    self._hold_off(held, exc)
                hint = missing_path_hint(server)
                if hint and isinstance(exc, DiscoveryError) and type(exc) is DiscoveryError:
                    raise exc._reworded(exc.message + hint) from exc
                raise
            md = result.metadata
            scopes = result.prm.scopes_supported if result.prm is not None else None
            # RFC 9449 §5.1 (AS), else RFC 9728 §2 (PRM): the algs the servers accept.
            algs = md.raw.get("dpop_signing_alg_values_supported")
            prm_algs = result.prm.raw.get("dpop_signing_alg_values_supported") \
                if result.prm is not None else None
            if algs is None and isinstance(prm_algs, list) and prm_algs and all(
                    isinstance(a, str) for a in prm_algs):
                algs = prm_algs
            target = _Target(server, self.resource or result.resource, result.issuer,
                             md.token_endpoint, md.token_endpoint_auth_methods_supported,
                             md.token_endpoint_auth_signing_alg_values_supported, scopes,
                             challenge_scope, tuple(algs) if algs is not None else None,
                             result.prm is not None and
                             result.prm.raw.get("dpop_bound_access_tokens_required") is True)
        self._bind_issuer(server, target.issuer)
        self._cache.set_discovery(self._discovery_key(server), target.to_dict())
        return target

    def _discover_without_challenge(self, server: str, state: _ServerState) -> _Target:
        """Discovery for token(): well-known URLs first, then the server's own 401."""
        try:
            return self._discover(server, None)
        except DiscoveryError as first:
            from . import discovery as _discovery

            challenge = _discovery.fetch_challenge(self._transport, server, first)
            if challenge is None:
                raise first
            if challenge.params.get("scope"):
                state.challenge_scope = _peer_scope(challenge.params["scope"],
                                                    "scope in the 401 challenge")
            url = challenge.params.get("resource_metadata")
            if url is None:
                raise first
            return self._discover(server, url, state.challenge_scope)

    def _step_up(self, ctx: AuthContext) -> bool:
        challenged = ctx.challenge.params.get("scope") if ctx.challenge else None
        if not challenged:
            return False
        state = self._state(ctx.server_url)
        with state.lock:
            target = state.target
            if target is None:
                return False
            challenged = _peer_scope(challenged, "scope in the 403 challenge") or ""
            current = self._effective_scope(state, target)
            # SEP-2350: ask for the union of what we had and what is required.
            union = normalize_scope((current or "").split() + challenged.split())
            previous = state.step_up_scope
            state.fast = None
            state.step_up_scope = normalize_scope((previous or "").split() + challenged.split())
            try:
                self._ensure_token(ctx.server_url, state, target,
                                   refused=_bearer_of(ctx.response.request))
            except BaseException:
                # A refused step-up (invalid_scope, say) must not poison later requests.
                state.step_up_scope = previous
                raise
            logger.debug("stepped-up scope for %s: %s", redact_url(ctx.server_url), union)
        return True


def _metadata_of(target: Optional[_Target]) -> "Optional[_discovery.AuthorizationServerMetadata]":
    """The AS metadata a discovered target was built from (what the provider uses of it)."""
    if target is None or target.issuer is None:
        return None
    from . import discovery as _discovery

    return _discovery.AuthorizationServerMetadata(
        target.issuer, target.token_endpoint, target.auth_methods, target.signing_algs, None,
        None, "", {})


def _bearer_of(request: Any) -> Optional[str]:
    value = request.headers.get("Authorization") if request is not None else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and value[:7].lower() == "bearer ":
        return value[7:]
    if value and value[:5].lower() == "dpop ":
        return value[5:]
    return None


class ClientCredentialsProvider(OAuthProvider):
    """The client credentials grant with a client secret (RFC 6749 §4.4).

    The client authenticates with ``client_secret_basic`` (the default, id and secret
    form-urlencoded as RFC 6749 §2.3.1 requires) or ``client_secret_post``, chosen from
    the authorization server's ``token_endpoint_auth_methods_supported`` unless
    ``token_endpoint_auth_method`` says which one the client was registered with.

    Args:
        client_id: the registered client identifier.
        client_secret: the client secret. Never logged, never in a repr.
        scope: space-separated scopes to request. Wins over the 401 challenge's scope
            and the server's ``scopes_supported``.
        expected_issuer: the authorization server this client is registered with; any
            other raises :class:`~mcpauth.errors.AuthorizationServerMismatchError`
            before a secret is sent.
        token_endpoint_auth_method: ``"client_secret_basic"`` or ``"client_secret_post"``.
        issuer: skip RFC 9728 AS selection and use this authorization server.
        token_endpoint: skip discovery entirely and send token requests here.
        resource: the RFC 8707 ``resource`` to send, overriding discovery.
        server_url: the MCP server URL, needed only to call :meth:`token` directly.
        allow_resource_prefix: accept a PRM ``resource`` that is a same-origin path
            prefix of the server URL (what the official SDKs accept); exact by default.
        allow_issuer_change: let the credentials go to an authorization server other
            than the first one they were used with (bound by default, SEP-2352).
        session: a ``requests.Session`` whose TLS and proxy settings discovery and token
            requests use (its auth, headers and cookies are not sent there).
        timeout: seconds for each discovery or token request.
        allow_insecure_http: allow http to non-loopback hosts (tests only).
        cache: a :class:`~mcpauth.cache.TokenCache` (default: in memory).
        refresh_skew: renew tokens this many seconds before they expire.
        max_step_up: attempts at 403 ``insufficient_scope`` step-up per request.
        clock: returns the time in seconds (for tests).
    """

    mcp_extension = "io.modelcontextprotocol/oauth-client-credentials"

    def __init__(self, client_id: str, client_secret: str, *, scope: Optional[str] = None,
                 expected_issuer: Optional[str] = None,
                 token_endpoint_auth_method: Optional[str] = None,
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
        if token_endpoint_auth_method not in (None, "client_secret_basic",
                                              "client_secret_post"):
            raise ConfigurationError(
                "token_endpoint_auth_method must be client_secret_basic or "
                "client_secret_post for a client secret")
        # Validate the credentials now, before any I/O.
        self._basic = ClientSecretBasic(client_id, client_secret)
        self._post = ClientSecretPost(client_id, client_secret)
        self.token_endpoint_auth_method = token_endpoint_auth_method
        super().__init__(**_oauth_options(locals()))

    def _client_auth(self, target: _Target) -> ClientAuth:
        method = select_auth_method(target.auth_methods, self.token_endpoint_auth_method)
        return self._post if method == "client_secret_post" else self._basic

    def _credential(self) -> Optional[Tuple[str, str]]:
        return _credential_of(self._post)


class PrivateKeyJwtProvider(OAuthProvider):
    """The client credentials grant with a ``private_key_jwt`` assertion (RFC 7523 §2.2).

    The key is given as ``private_key``, or stays in an HSM, a cloud KMS or a signing
    service and is reached through exactly one of ``signer`` (sign these bytes) or
    ``assertion`` (give me an assertion for this audience); see
    :class:`mcpauth.grants.PrivateKeyJwt` for the checks each gets.

    Args:
        client_id: the registered client identifier (``iss`` and ``sub`` of assertions).
        private_key: PEM (str or bytes), DER bytes, a JWK dict or a loaded key; loaded once.
        algorithm: JWS algorithm; by default the key's (RS256 for RSA, ES256 for P-256,
            ES384 for P-384, EdDSA for Ed25519), or ``public_jwk``'s.
        signer: ``callable(signing_input: bytes) -> bytes``, the signature by a key held
            elsewhere (ECDSA as R||S or DER). Give ``public_jwk`` (every signature is then
            verified before use) or at least ``algorithm``.
        public_jwk: the public JWK of the key behind ``signer`` or ``assertion``.
        assertion: ``callable(audience: str) -> str`` returning a finished client
            assertion; it must have the claims a local key's would (``iss`` = ``sub`` =
            client_id, ``aud`` = audience, ``exp`` within 3600 s, ``jti``).
        jwt_lifetime_seconds: assertion lifetime (``exp`` - ``iat``), default 300.
        claims: extra assertion claims (cannot replace iss, sub, aud, exp, iat, jti).
        key_id: the ``kid`` header, e.g. ``mcpauth.jws.jwk_thumbprint(key)``.
        audience: override ``aud`` (default: the authorization server's issuer).
        typ: the ``typ`` header (default ``client-authentication+jwt``).
        Other keyword arguments: as :class:`ClientCredentialsProvider`.
    """

    mcp_extension = "io.modelcontextprotocol/oauth-client-credentials"

    def __init__(self, client_id: str, private_key: Any = None,
                 algorithm: Optional[str] = None, *,
                 signer: Optional[Callable[[bytes], bytes]] = None,
                 public_jwk: Optional[Dict[str, Any]] = None,
                 assertion: Optional[Callable[[str], str]] = None,
                 jwt_lifetime_seconds: int = 300, claims: Optional[Dict[str, Any]] = None,
                 key_id: Optional[str] = None, scope: Optional[str] = None,
                 expected_issuer: Optional[str] = None, audience: Optional[str] = None,
                 typ: Optional[str] = "client-authentication+jwt",
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
        # Else they would go into every assertion and fail only at the AS.
        for name, value in (("algorithm", algorithm), ("key_id", key_id), ("typ", typ),
                            ("audience", audience)):
            if value is not None:
                _check_type(value, name, (str,), "a str")
        if claims is not None:
            _check_type(claims, "claims", (Mapping,), "a mapping")
        _check_type(jwt_lifetime_seconds, "jwt_lifetime_seconds", (int,), "an int")
        self._jwt = PrivateKeyJwt(client_id, private_key, algorithm,
                                  lifetime=jwt_lifetime_seconds, audience=audience, typ=typ,
                                  key_id=key_id, claims=claims, clock=clock, signer=signer,
                                  public_jwk=public_jwk, assertion=assertion)
        self.algorithm = self._jwt.algorithm
        super().__init__(**_oauth_options(locals()))

    def _client_auth(self, target: _Target) -> ClientAuth:
        select_auth_method(target.auth_methods, "private_key_jwt")
        algs = target.signing_algs
        if algs is not None and self.algorithm is not None and self.algorithm not in algs:
            raise ConfigurationError(
                "the authorization server accepts {} for private_key_jwt, not {}".format(
                    ", ".join(algs) or "no algorithm", self.algorithm))
        return self._jwt

    def _credential(self) -> Optional[Tuple[str, str]]:
        return _credential_of(self._jwt)

