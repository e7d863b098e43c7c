"""mcpauth: synchronous machine-to-machine OAuth for MCP servers.

Attach a provider to a ``requests.Session`` (``session.auth = provider``); it
discovers the authorization server (RFC 9728, RFC 8414), gets tokens, and retries a
refused request once with a new token.
"""

import logging

from ._version import __version__
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

from .cache import FileTokenCache, MemoryTokenCache, TokenCache
from .dpop import DPoPKey
from .rediscache import RedisTokenCache
from .providers import (
    AuthContext,
    AuthProvider,
    BearerTokenProvider,
    ClientCredentialsProvider,
    PrivateKeyJwtProvider,
)
from .crossapp import (
    CrossAppAccessContext,
    CrossAppAccessProvider,
    JwtAuthGrant,
    discover_and_request_jwt_auth_grant,
    exchange_jwt_auth_grant,
    request_jwt_authorization_grant,
)
from .workload import WorkloadIdentityProvider
from .client import MCPClient

logging.getLogger("mcpauth").addHandler(logging.NullHandler())

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
