"""Workload identity federation (SEP-1933, MCP ext-auth draft): a platform JWT as the grant.

A workload (a Kubernetes pod, a CI job, a cloud function) holds a short-lived JWT issued
by its platform. :class:`WorkloadIdentityProvider` presents it to the MCP server's
authorization server with the RFC 7523 §2.1 JWT bearer grant:
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, ``assertion=<the JWT>``,
``resource`` (RFC 8707, always; REQUIREMENTS D1) and ``scope``. There is no client
secret and no client authentication (RFC 7523 §3.1 makes it optional; EXT-WIF needs
none); ``client_id`` is sent only when configured.

* K1: the grant above, one JWT in ``assertion`` (RFC 7523 §2.1 "MUST contain a single
  JWT").
* K2: the JWT is decoded, not verified, and a warning is logged when its ``aud`` is
  neither the authorization server's issuer nor its token endpoint (EXT-WIF names the
  token endpoint; draft-ietf-oauth-rfc7523bis allows either) or when it has expired.
* K3: after ``invalid_grant``, ``invalid_scope`` or ``unauthorized_client`` nothing is
  retried and no other grant is tried: the error is raised from the request that needed
  the token.
* K4: the JWT is fetched again for every token request (Kubernetes rotates projected
  service-account tokens in place), from the callable or by re-reading the file.
"""

import logging
import os
import re
from typing import Any, Callable, List, Optional, Tuple, Union

from . import jws
from .errors import ConfigurationError
from .grants import GRANT_TYPE_JWT_BEARER, ClientAuth, NoClientAuth
from .providers import OAuthProvider, _Target
from .transport import redact_url

__all__ = ["WorkloadIdentityProvider", "MAX_ASSERTION_FILE_BYTES"]

logger = logging.getLogger("mcpauth")

#: A workload token file larger than this is refused (JWTs are a few kilobytes).
MAX_ASSERTION_FILE_BYTES = 64 * 1024

# A compact JWS whose header starts with '{"' (base64url "eyJ"): a token passed where a
# file path was expected.
_LOOKS_LIKE_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

AssertionSource = Union[Callable[[], str], str, "os.PathLike[str]"]


class WorkloadIdentityProvider(OAuthProvider):
    """Authenticate as a workload with its platform-issued JWT (SEP-1933, RFC 7523 §2.1).

    Trust model: the authorization server trusts the platform's token issuer (it holds
    its keys) and maps the token's ``sub`` to a workload; the client holds no secret.
    The platform JWT is a bearer credential for whoever receives it, so pin the
    authorization server with ``expected_issuer``: without it, whichever server the MCP
    server names receives the token.

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
            passed by mistake is recognised and refused without echoing it).
    """

    def __init__(self, assertion: AssertionSource, *, scope: Optional[str] = None,
                 expected_issuer: Optional[str] = None, client_id: Optional[str] = None,
                 **options: Any) -> None:
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
        super().__init__(client_id=client_id, scope=scope, expected_issuer=expected_issuer,
                         **options)
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
        if value.count(".") != 2 or any(c <= " " for c in value):
            # RFC 7523 §2.1: the assertion "MUST contain a single JWT".
            raise ConfigurationError("{} does not hold a single compact JWT".format(where))
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
        """K2: warn about a token the server will refuse (decoded, never verified)."""
        try:
            _, claims = jws.decode_unverified(assertion)
        except ValueError:
            raise ConfigurationError("the workload assertion is not a JWT (its header or "
                                     "claims are not base64url-encoded JSON)") from None
        accepted = set(u.rstrip("/") for u in (target.issuer, target.token_endpoint) if u)
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else (
            [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else [])
        if not any(a.rstrip("/") in accepted for a in auds):
            logger.warning("the workload token's aud is neither the authorization server's "
                           "issuer %s nor its token endpoint %s; the server will probably "
                           "refuse it (EXT-WIF, RFC 7523 §3)",
                           redact_url(target.issuer) if target.issuer else "(unknown)",
                           redact_url(target.token_endpoint))
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            logger.warning("the workload token has no numeric exp claim; the authorization "
                           "server will probably refuse it (RFC 7523 §3)")
        else:
            now = self._clock()
            if exp <= now:
                logger.warning("the workload token expired %d s ago; the platform should "
                               "have replaced it (EXT-WIF: fetch a fresh token)",
                               int(now - exp))
