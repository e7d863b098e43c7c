"""Token stores.

A provider keeps two things per MCP server: what discovery found (the resource, the
authorization server, its token endpoint) and the tokens it obtained. Tokens are keyed
by (issuer, resource, client_id, scope) so a token is never sent to a server other than
the one it was obtained for (MCP "Token Handling"; REQUIREMENTS G2, H1).

:class:`MemoryTokenCache` is the default. Stores hold absolute expiry times (``time.time()``
clock), never a client secret or a private key.
"""

import abc
import contextlib
import json
import threading
from typing import Any, Dict, Iterator, Optional

from .grants import TokenResponse

__all__ = ["TokenCache", "MemoryTokenCache", "token_key"]


def token_key(issuer: Optional[str], resource: str, client_id: Optional[str],
              scope: Optional[str]) -> str:
    """The cache key for a token: JSON of (issuer, resource, client_id, sorted scope)."""
    scopes = " ".join(sorted(set((scope or "").split()))) or None
    return json.dumps([issuer, resource, client_id, scopes], separators=(",", ":"))


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
