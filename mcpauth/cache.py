"""Token stores.

A provider keeps two things per MCP server: what discovery found (the resource, the
authorization server, its token endpoint) and the tokens it obtained. Tokens are keyed
by (issuer, resource, client_id, scope, credential fingerprint) (:func:`token_key`) so a
token is never sent to a server other than the one it was obtained for (MCP "Token
Handling"), and never reused by a credential other than the one that obtained it. Every
store uses the same keys: :func:`token_key`, :func:`discovery_key` and
:func:`credential_fingerprint` are the whole scheme.

:class:`MemoryTokenCache` is the default. :class:`FileTokenCache` (module
:mod:`mcpauth.filecache`) keeps the same data in a 0600 JSON file shared by processes, so
a cron job with a valid cached token sends only its MCP request; ``RedisTokenCache``
(:mod:`mcpauth.rediscache`) in Redis, for a fleet of hosts. Stores hold absolute expiry
times (``time.time()`` clock; RFC 6749 §5.1 ``expires_in`` counted from when the response
arrived), never a client secret, a private key or an assertion (MCP security best
practices, "Token Theft": secure token storage).
"""

import abc
import base64
import contextlib
import hashlib
import json
import logging
import math
import sys
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional

from . import _fork
from .errors import ConfigurationError, warn_caller
from .grants import TokenResponse, _is_access_token

__all__ = ["TokenCache", "MemoryTokenCache", "FileTokenCache", "token_key",
           "discovery_key", "credential_fingerprint",
           "FILE_FORMAT", "FILE_VERSION", "DEFAULT_LOCK_TIMEOUT", "MAX_FILE_BYTES"]

logger = logging.getLogger("mcpauth")

# --------------------------------------------------------------------------------------
# The key scheme, shared by every store (memory, file, and any store of your own)
# --------------------------------------------------------------------------------------

#: PBKDF2 iterations of :func:`credential_fingerprint`: a guess at a weak secret costs
#: this many HMAC-SHA256 computations (a few milliseconds, once per provider).
FINGERPRINT_ITERATIONS = 20000
_FINGERPRINT_LABEL = b"mcpauth token-cache credential fingerprint v1"
#: Purposes whose credential is public or random, not a secret (no stretching).
_PUBLIC_PURPOSES = frozenset(["jwk_thumbprint", "instance"])


def token_key(issuer: Optional[str], resource: str, client_id: Optional[str],
              scope: Optional[str], credential: Optional[str] = None) -> str:
    """The cache key for a token: JSON of (issuer, resource, client_id, sorted scope,
    credential fingerprint).

    Every store uses it as is (a file's JSON member name, a Redis key suffix, ...). The
    issuer and resource keep tokens with the server they were issued for (MCP "Token
    Handling"); ``credential`` (from :func:`credential_fingerprint`) keeps them with the
    credential that obtained them, so a wrong or rotated secret or key never reuses a
    token obtained with another one.
    """
    scopes = " ".join(sorted(set((scope or "").split()))) or None
    return json.dumps([issuer, resource, client_id, scopes, credential],
                      separators=(",", ":"))


def discovery_key(server_url: str, client_id: Optional[str], expected_issuer: Optional[str],
                  issuer: Optional[str], token_endpoint: Optional[str],
                  resource: Optional[str], allow_resource_prefix: bool) -> str:
    """The cache key for a discovery result: the server and the provider settings that
    shape the result, so jobs with different clients or different ``issuer`` /
    ``token_endpoint`` / ``resource`` settings never pick up each other's authorization
    server (RFC 9728 §7.6, MCP "Authorization Server Discovery")."""
    return json.dumps([server_url, client_id, expected_issuer, issuer, token_endpoint,
                       resource, allow_resource_prefix], separators=(",", ":"))


def credential_fingerprint(purpose: str, credential: str, client_id: Optional[str]) -> str:
    """A fingerprint of ``credential`` for :func:`token_key` that does not reveal it.

    PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) of the credential, salted with a fixed label,
    ``purpose`` (what the credential is: ``"client_secret"``, ``"jwk_thumbprint"``) and
    the client id, :data:`FINGERPRINT_ITERATIONS` rounds, truncated to 128 bits, in
    base64url. Not a plain hash: a guessable secret would be one hash away from its
    fingerprint, and a cache file or a Redis key listing is readable by more parties
    than the secret is. A credential that is no secret (``"jwk_thumbprint"``: the RFC
    7638 thumbprint of a public key; ``"instance"``: a random label) has nothing to
    guess: one SHA-256 of the same salted input, with no stretching to pay for on
    every cold start.

    Raises:
        ConfigurationError: ``purpose`` or ``credential`` is not a non-empty str.
    """
    if not isinstance(purpose, str) or not purpose:
        raise ConfigurationError("the fingerprint purpose must be a non-empty string")
    if not isinstance(credential, str) or not credential:
        raise ConfigurationError("the credential to fingerprint must be a non-empty string")
    salt = b"\0".join([_FINGERPRINT_LABEL, purpose.encode("utf-8"),
                       (client_id or "").encode("utf-8")])
    if purpose in _PUBLIC_PURPOSES:
        digest = hashlib.sha256(salt + b"\0" + credential.encode("utf-8")).digest()[:16]
    else:
        digest = hashlib.pbkdf2_hmac("sha256", credential.encode("utf-8"), salt,
                                     FINGERPRINT_ITERATIONS, 16)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class TokenCache(abc.ABC):
    """Where providers keep tokens and discovery results. Implementations are thread-safe."""

    @abc.abstractmethod
    def get_token(self, key: str) -> Optional[TokenResponse]:
        """The stored token for ``key``, or None."""

    @abc.abstractmethod
    def set_token(self, key: str, token: TokenResponse) -> None:
        """Store ``token`` under ``key``."""

    @abc.abstractmethod
    def delete_token(self, key: str, access_token: Optional[str] = None) -> None:
        """Forget the token under ``key`` (only if it is ``access_token``, when given)."""

    @abc.abstractmethod
    def get_discovery(self, server_url: str) -> Optional[Dict[str, Any]]:
        """What discovery found for ``server_url`` (a JSON-able dict), or None."""

    @abc.abstractmethod
    def set_discovery(self, server_url: str, value: Dict[str, Any]) -> None:
        """Store discovery results for ``server_url``."""

    @abc.abstractmethod
    def delete_discovery(self, server_url: str) -> None:
        """Forget discovery results for ``server_url``."""

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while a token for ``key`` is requested (cross-process stores lock a file)."""
        yield


class MemoryTokenCache(TokenCache):
    """An in-process store (the default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = {}  # type: Dict[str, TokenResponse]
        self._discovery = {}  # type: Dict[str, Dict[str, Any]]
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "MemoryTokenCache(tokens={}, servers={})".format(
            len(self._tokens), len(self._discovery))

    def get_token(self, key: str) -> Optional[TokenResponse]:
        with self._lock:
            return self._tokens.get(key)

    def set_token(self, key: str, token: TokenResponse) -> None:
        with self._lock:
            self._tokens[key] = token

    def delete_token(self, key: str, access_token: Optional[str] = None) -> None:
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and (access_token is None
                                        or current.access_token == access_token):
                del self._tokens[key]

    def get_discovery(self, server_url: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            value = self._discovery.get(server_url)
            return dict(value) if value is not None else None

    def set_discovery(self, server_url: str, value: Dict[str, Any]) -> None:
        with self._lock:
            self._discovery[server_url] = dict(value)

    def delete_discovery(self, server_url: str) -> None:
        with self._lock:
            self._discovery.pop(server_url, None)


# --------------------------------------------------------------------------------------
# Stored entries, the same in every store (memory, file, Redis)
# --------------------------------------------------------------------------------------

_TOKEN_STR_FIELDS = ("scope", "issued_token_type")


def _warn(message: str) -> None:
    logger.warning("%s", message)
    warn_caller(message)


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _token_from_entry(entry: Any) -> Optional[TokenResponse]:
    """A TokenResponse from a stored entry, or None if the entry is malformed."""
    if not isinstance(entry, dict):
        return None
    access_token = entry.get("access_token")
    token_type = entry.get("token_type")
    received_at = entry.get("received_at")  # type: Any
    expires_in = entry.get("expires_in")
    if not _is_access_token(access_token) \
            or not isinstance(token_type, str) or not token_type \
            or not _is_number(received_at) \
            or not (expires_in is None or _is_number(expires_in)):
        return None
    for name in _TOKEN_STR_FIELDS:
        if not (entry.get(name) is None or isinstance(entry.get(name), str)):
            return None
    return TokenResponse(str(access_token), token_type,
                         None if expires_in is None else float(expires_in),
                         scope=entry.get("scope"),
                         issued_token_type=entry.get("issued_token_type"),
                         received_at=float(received_at))


def _entry_from_token(token: TokenResponse) -> Dict[str, Any]:
    # The refresh token is deliberately not written: nothing here uses it (M2M grants
    # are re-run instead), and a long-lived credential should not sit in a file.
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "expires_at": token.expires_at,
        "received_at": token.received_at,
        "scope": token.scope,
        "issued_token_type": token.issued_token_type,
    }


# The file store is a module of its own (mcpauth.filecache): ``import mcpauth`` does not
# load it until a FileTokenCache is used. Its names stay importable from here.
_FILE_NAMES = ("FileTokenCache", "FILE_FORMAT", "FILE_VERSION", "DEFAULT_LOCK_TIMEOUT",
               "MAX_FILE_BYTES")


def __getattr__(name: str) -> Any:
    if name not in _FILE_NAMES:
        raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
    from . import filecache

    return getattr(filecache, name)


if sys.version_info < (3, 7) or TYPE_CHECKING:  # no module __getattr__ before 3.7
    from .filecache import (  # noqa: E402,F401
        DEFAULT_LOCK_TIMEOUT, FILE_FORMAT, FILE_VERSION, MAX_FILE_BYTES, FileTokenCache)
