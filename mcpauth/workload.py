"""Workload identity federation (SEP-1933, MCP ext-auth draft): a platform JWT as the grant.

A workload (a Kubernetes pod, a CI job, a cloud function) holds a short-lived JWT issued
by its platform. :class:`WorkloadIdentityProvider` presents it to the MCP server's
authorization server with the RFC 7523 §2.1 JWT bearer grant:
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, ``assertion=<the JWT>``,
``resource`` (RFC 8707, always) and ``scope``. There is no client
secret and no client authentication (RFC 7523 §3.1 makes it optional; EXT-WIF needs
none); ``client_id`` is sent only when configured.

* K1: the grant above, one JWT in ``assertion`` (RFC 7523 §2.1 "MUST contain a single
  JWT").
* K2: the JWT must be a compact JWS (RFC 7515 §7.1: three base64url parts). It is
  decoded, not verified, and refused before anything is sent when its ``aud`` names
  neither the authorization server's validated issuer (with or without one trailing
  slash) nor its token endpoint (EXT-WIF names the token endpoint;
  draft-ietf-oauth-rfc7523bis allows either and makes the client "responsible for
  ensuring that the audience ... is appropriate"): a platform JWT is a bearer
  credential, and a malicious MCP server may name an authorization server of its own
  (audience injection; EXT-EMA §7.5.4 "MUST NOT leak"). It is also
  refused when it expired more than :data:`EXP_LEEWAY` seconds ago (RFC 7523 §3: the
  server must reject it anyway); a token without a usable ``exp``, or expired within
  the leeway (clock skew), is sent with a warning.
* K3: after ``invalid_grant``, ``invalid_scope`` or ``unauthorized_client`` nothing is
  retried and no other grant is tried: the error is raised from the request that needed
  the token.
* K4: the JWT is fetched again for every token request (Kubernetes rotates projected
  service-account tokens in place), from the callable or by re-reading the file.
"""

import logging
import os
import re
import time
from typing import Any, Callable, List, Optional, Tuple, Union

from . import _mask, jws
from .errors import AuthorizationServerMismatchError, ConfigurationError, clean_peer_text
from .grants import GRANT_TYPE_JWT_BEARER, ClientAuth, NoClientAuth
from .cache import TokenCache
from .providers import (DEFAULT_MAX_STEP_UP, DEFAULT_REFRESH_SKEW, OAuthProvider, _Target,
                        _oauth_options)
from .transport import DEFAULT_TIMEOUT, Transport, redact_url

__all__ = ["WorkloadIdentityProvider", "MAX_ASSERTION_FILE_BYTES", "EXP_LEEWAY"]

logger = logging.getLogger("mcpauth")

#: A workload token file larger than this is refused (JWTs are a few kilobytes).
MAX_ASSERTION_FILE_BYTES = 64 * 1024
#: Seconds past its ``exp`` after which a workload token is refused instead of sent
#: (clock skew between this host and the authorization server; RFC 7519 §4.1.4).
EXP_LEEWAY = 60.0

# A compact JWS whose header starts with '{"' (base64url "eyJ"): a token passed where a
# file path was expected.
_LOOKS_LIKE_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

AssertionSource = Union[Callable[[], str], str, "os.PathLike[str]"]


class WorkloadIdentityProvider(OAuthProvider):
    """Authenticate as a workload with its platform-issued JWT (SEP-1933, RFC 7523 §2.1).

    Trust model: the authorization server trusts the platform's token issuer (it holds
    its keys) and maps the token's ``sub`` to a workload; the client holds no secret.
    The platform JWT is a bearer credential for whoever receives it. It is sent only
    to an authorization server its ``aud`` names (the issuer or the token endpoint), so
    an MCP server that names another server gets an error, not the token; pin the
    authorization server with ``expected_issuer`` as well, so the refusal comes from
    discovery, before any request to that server.

    Args:
        assertion: a zero-argument callable returning the platform JWT, or the path of a
            file holding it (``str`` or ``os.PathLike``), read again for every token
            request, e.g. ``/var/run/secrets/tokens/mcp-token`` for a Kubernetes
            projected service-account token. Never logged.
        scope: space-separated scopes to request.
        expected_issuer: the only authorization server to accept (recommended).
        client_id: sent as ``client_id`` when given (informational; no authentication).
        Other keyword arguments: as :class:`~mcpauth.ClientCredentialsProvider`
            (``issuer``, ``token_endpoint``, ``resource``, ``session``, ``cache``, ...).

    Raises:
        ConfigurationError: ``assertion`` is neither a callable nor a path (a JWT string
            passed by mistake is recognised and refused without echoing it). When a
            token is needed: the workload token is not a compact JWT, or expired more
            than :data:`EXP_LEEWAY` seconds ago.
        AuthorizationServerMismatchError: when a token is needed, the workload token's
            ``aud`` names neither the authorization server's issuer nor its token
            endpoint; nothing is sent (``expected_issuer`` attribute: its first ``aud``;
            ``issuer``: the server it would have gone to).
    """

    _tokens_are_per_principal = True

    def __init__(self, assertion: AssertionSource, *, scope: Optional[str] = None,
                 expected_issuer: Optional[str] = None, client_id: Optional[str] = None,
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
        self._source = None  # type: Optional[Callable[[], Any]]
        self._path = None  # type: Optional[str]
        if callable(assertion):
            self._source = assertion
        elif isinstance(assertion, (str, os.PathLike)):
            path = os.fspath(assertion)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if not path:
                raise ConfigurationError("assertion is an empty file path")
            if _LOOKS_LIKE_JWT.match(path) and not os.path.exists(path):
                raise ConfigurationError(
                    "assertion looks like a JWT, not a file path; pass a callable that "
                    "returns the current token (for example lambda: token) or the path of "
                    "the file the platform writes it to")
            self._path = path
        else:
            raise ConfigurationError(
                "assertion must be a callable returning the workload JWT, or the path of a "
                "file holding it, not {}".format(type(assertion).__name__))
        super().__init__(**_oauth_options(locals()))
        self._no_auth = NoClientAuth(client_id)

    def __repr__(self) -> str:
        return "WorkloadIdentityProvider(assertion={}, client_id={!r}, scope={!r}, " \
               "expected_issuer={!r})".format(
                   "file {!r}".format(self._path) if self._path is not None else "callable",
                   self.client_id, self.scope, self.expected_issuer)

    # -- OAuthProvider hooks ------------------------------------------------------------------

    def _client_auth(self, target: _Target) -> ClientAuth:
        # K1: no client authentication. token_endpoint_auth_methods_supported describes
        # how *clients* authenticate, so a list without "none" says nothing about this
        # grant (RFC 7523 §3.1: client authentication is optional) and is not warned about.
        return self._no_auth

    def _grant_fields(self, target: _Target, scope: Optional[str]) -> List[Tuple[str, str]]:
        assertion = self._read_assertion()
        self._check_claims(assertion, target)
        fields = [("grant_type", GRANT_TYPE_JWT_BEARER), ("assertion", assertion)]
        if scope:
            fields.append(("scope", scope))
        fields.append(("resource", target.resource))
        return fields

    # -- internals ----------------------------------------------------------------------------

    def _read_assertion(self) -> str:
        """The current platform JWT (K4: fetched afresh for every token request)."""
        if self._path is not None:
            value = self._read_file(self._path)  # type: Any
            where = "workload token file {}".format(self._path)
        else:
            assert self._source is not None
            value = self._source()
            where = "the assertion callable"
            if not isinstance(value, str):
                raise ConfigurationError(
                    "{} returned {}, not the workload JWT as a non-empty string".format(
                        where, type(value).__name__))
            value = value.strip()
            if not value:
                raise ConfigurationError("{} returned an empty string".format(where))
        _mask.remember(value)
        if not jws.is_compact_jws(value):
            # RFC 7523 §2.1: the assertion "MUST contain a single JWT"; a compact JWS is
            # three base64url parts (RFC 7515 §7.1), so no space, line break or non-ASCII.
            raise ConfigurationError("{} does not hold a single compact JWT (three "
                                     "base64url parts)".format(where))
        return str(value)

    @staticmethod
    def _read_file(path: str) -> str:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_ASSERTION_FILE_BYTES + 1)
        except FileNotFoundError:
            raise ConfigurationError("workload token file {} does not exist".format(
                path)) from None
        except IsADirectoryError:
            raise ConfigurationError("workload token file {} is a directory".format(
                path)) from None
        except OSError as exc:
            raise ConfigurationError("cannot read workload token file {}: {}".format(
                path, exc.strerror or type(exc).__name__)) from None
        if len(data) > MAX_ASSERTION_FILE_BYTES:
            raise ConfigurationError("workload token file {} is larger than {} bytes; it "
                                     "does not hold a JWT".format(path,
                                                                  MAX_ASSERTION_FILE_BYTES))
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigurationError("workload token file {} is not UTF-8 text".format(
                path)) from None
        if not text:
            raise ConfigurationError("workload token file {} is empty".format(path))
        return text

    def _check_claims(self, assertion: str, target: _Target) -> None:
        """K2: refuse a token meant for another server or long expired (decoded, never
        verified); warn about one the server will probably refuse."""
        try:
            _, claims = jws.decode_unverified(assertion)
        except ValueError:
            raise ConfigurationError("the workload assertion is not a JWT (its header or "
                                     "claims are not base64url-encoded JSON)") from None
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else (
            [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else [])
        if not any(_names(a, target.issuer) or _names(a, target.token_endpoint)
                   for a in auds):
            shown = ", ".join(clean_peer_text(redact_url(a), 100) or "?" for a in auds[:3])
            raise AuthorizationServerMismatchError(
                "the workload token's audience is {} but the authorization server is {} "
                "(token endpoint {}); refusing to send it (EXT-WIF, RFC 7523 §3)".format(
                    (shown + (", ..." if len(auds) > 3 else "")) or "missing",
                    redact_url(target.issuer) if target.issuer else "(issuer unknown)",
                    redact_url(target.token_endpoint)),
                expected_issuer=auds[0] if auds else None, issuer=target.issuer)
        exp = jws.numeric_date(claims.get("exp"))
        if exp is None:
            logger.warning("the workload token has no numeric exp claim (a finite "
                           "NumericDate); the authorization server will probably refuse "
                           "it (RFC 7523 §3)")
            return
        now = self._clock()
        if exp + EXP_LEEWAY <= now:
            raise ConfigurationError(
                "the workload token expired {} s ago; refusing to send it (the "
                "authorization server must reject it, RFC 7523 §3). The platform should "
                "have replaced it: check that the token file or callable gives the "
                "current token (EXT-WIF)".format(int(now - exp)))
        if exp <= now:
            logger.warning("the workload token expired %d s ago; sending it anyway (within "
                           "%g s of clock skew), but the platform should have replaced it "
                           "(EXT-WIF: fetch a fresh token)", int(now - exp), EXP_LEEWAY)


def _names(audience: str, url: Optional[str]) -> bool:
    """``audience`` is ``url``, allowing one trailing slash either way."""
    if not url:
        return False
    return audience in (url, url + "/") or audience + "/" == url
