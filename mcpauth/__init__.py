"""mcpauth: synchronous machine-to-machine OAuth for MCP servers.

Attach a provider to a ``requests.Session`` (``session.auth = provider``); it
discovers the authorization server (RFC 9728, RFC 8414), gets tokens, and retries a
refused request once with a new token.
"""

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any, List

#: The release (setup.cfg says the same; tests/test_packaging.py checks it).
__version__ = "0.1.0"

from .errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    InsufficientScopeError,
    InvalidKeyError,
    IssuerMismatchError,
    MCPAuthError,
    MCPAuthWarning,
    MCPError,
    MissingDependencyError,
    OAuthError,
    ProtocolError,
    ResourceMismatchError,
    TokenResponseError,
    TransportError,
    UnauthorizedError,
)

from .cache import MemoryTokenCache, TokenCache
from .providers import (
    AuthContext,
    AuthProvider,
    BearerTokenProvider,
    ClientCredentialsProvider,
    PrivateKeyJwtProvider,
)

logging.getLogger("mcpauth").addHandler(logging.NullHandler())

# Imported on first use (PEP 562), so that ``import mcpauth`` costs a provider user only
# what the providers need; Python 3.6 has no module __getattr__ and imports them now.
_LAZY = {
    "CrossAppAccessContext": "crossapp",
    "CrossAppAccessProvider": "crossapp",
    "JwtAuthGrant": "crossapp",
    "discover_and_request_jwt_auth_grant": "crossapp",
    "exchange_jwt_auth_grant": "crossapp",
    "request_jwt_authorization_grant": "crossapp",
    "WorkloadIdentityProvider": "workload",
    "MCPClient": "client",
    "RedisTokenCache": "rediscache",
    "DPoPKey": "dpop",
    "FileTokenCache": "filecache",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


if sys.version_info < (3, 7) or TYPE_CHECKING:
    from .crossapp import (  # noqa: F401
        CrossAppAccessContext,
        CrossAppAccessProvider,
        JwtAuthGrant,
        discover_and_request_jwt_auth_grant,
        exchange_jwt_auth_grant,
        request_jwt_authorization_grant,
    )
    from .workload import WorkloadIdentityProvider  # noqa: F401
    from .client import MCPClient  # noqa: F401
    from .rediscache import RedisTokenCache  # noqa: F401
    from .dpop import DPoPKey  # noqa: F401
    from .filecache import FileTokenCache  # noqa: F401

__all__ = [
    # Providers (requests auth)
    "AuthContext",
    "AuthProvider",
    "BearerTokenProvider",
    "ClientCredentialsProvider",
    "CrossAppAccessContext",
    "CrossAppAccessProvider",
    "PrivateKeyJwtProvider",
    "WorkloadIdentityProvider",
    # DPoP (RFC 9449): sender-constrained tokens
    "DPoPKey",
    # Cross-app access: the ID-JAG exchanges (RFC 8693, RFC 7523)
    "JwtAuthGrant",
    "discover_and_request_jwt_auth_grant",
    "exchange_jwt_auth_grant",
    "request_jwt_authorization_grant",
    # MCP client (Streamable HTTP, both lifecycles)
    "MCPClient",
    # Token caches
    "FileTokenCache",
    "MemoryTokenCache",
    "RedisTokenCache",
    "TokenCache",
    # Errors and warnings
    "AuthorizationServerMismatchError",
    "ConfigurationError",
    "DiscoveryError",
    "InsecureEndpointError",
    "InsufficientScopeError",
    "InvalidKeyError",
    "IssuerMismatchError",
    "MCPAuthError",
    "MCPAuthWarning",
    "MCPError",
    "MissingDependencyError",
    "OAuthError",
    "ProtocolError",
    "ResourceMismatchError",
    "TokenResponseError",
    "TransportError",
    "UnauthorizedError",
    # Version
    "__version__",
]
