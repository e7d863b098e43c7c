"""A wired set of loopback servers: authorization server, MCP server, optional IdP.

The MCP server trusts the authorization server (its PRM lists the AS issuer and it
validates tokens by in-process introspection); the authorization server trusts the IdP's
ID-JAGs (EXT-EMA); one confidential client is registered at the AS and, with an IdP, one
client at the IdP whose ID-JAGs name the AS client (``idjag_client_id``).
"""

import secrets
from typing import Any, Dict, Optional, Sequence

from .authserver import AuthorizationServer, Client, IdentityProvider
from .mcpserver import MCPServer

__all__ = ["LoopbackStack"]


class LoopbackStack(object):
    """Start an AS, an MCP server and optionally an IdP, wired together.

    Args:
        client_id: the client registered at the AS.
        client_secret: its secret (default: random; read it from :attr:`client_secret`).
        auth_method: the client's only accepted auth method (None: any).
        public_jwk: the client's key for ``private_key_jwt``.
        allowed_scopes: scopes the client may get (None: any).
        default_scopes: scopes granted when the request names none.
        idp: also start an :class:`IdentityProvider` (needs ``cryptography``).
        idp_client_id: the client registered at the IdP.
        idp_client_secret: its secret (default: random).
        issuer_path: the AS issuer path.
        as_options: keyword arguments for :class:`AuthorizationServer`.
        mcp_options: keyword arguments for :class:`MCPServer`
            (``authorization_servers`` defaults to the AS).
        idp_options: keyword arguments for :class:`IdentityProvider`.

    Attributes:
        as_, mcp, idp: the servers (``idp`` is None without ``idp=True``).
        client: the AS :class:`Client`; idp_client: the IdP one (or None).
    """

    def __init__(self, *, client_id: str = "test-client",
                 client_secret: Optional[str] = None,
                 auth_method: Optional[str] = None, public_jwk: Any = None,
                 allowed_scopes: Optional[Sequence[str]] = None,
                 default_scopes: Optional[Sequence[str]] = None,
                 idp: bool = False, idp_client_id: str = "idp-client",
                 idp_client_secret: Optional[str] = None,
                 issuer_path: str = "",
                 as_options: Optional[Dict[str, Any]] = None,
                 mcp_options: Optional[Dict[str, Any]] = None,
                 idp_options: Optional[Dict[str, Any]] = None) -> None:
        self.as_ = AuthorizationServer(issuer_path, **dict(as_options or {}))
        self.idp: Optional[IdentityProvider] = None
        try:
            mcp_kwargs = dict(mcp_options or {})
            mcp_kwargs.setdefault("authorization_servers", [self.as_])
            self.mcp = MCPServer(**mcp_kwargs)
            if idp:
                self.idp = IdentityProvider(**dict(idp_options or {}))
        except BaseException:
            self.stop()
            raise
        self.client: Client = self.as_.register_client(
            client_id,
            client_secret=secrets.token_urlsafe(24) if client_secret is None
            else client_secret,
            public_jwk=public_jwk, auth_method=auth_method, allowed_scopes=allowed_scopes,
            default_scopes=default_scopes)
        self.idp_client: Optional[Client] = None
        if self.idp is not None:
            self.idp_client = self.idp.register_client(
                idp_client_id,
                client_secret=secrets.token_urlsafe(24) if idp_client_secret is None
                else idp_client_secret,
                idjag_client_id=client_id)
            self.as_.trust_idp(self.idp)

    def __repr__(self) -> str:
        return "LoopbackStack(issuer=%r, mcp_url=%r)" % (self.as_.issuer, self.mcp.url)

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint URL."""
        return self.mcp.url

    @property
    def issuer(self) -> str:
        """The AS issuer."""
        return self.as_.issuer

    @property
    def client_id(self) -> str:
        """The client registered at the AS."""
        return self.client.client_id

    @property
    def client_secret(self) -> Optional[str]:
        """Its secret."""
        return self.client.client_secret

    def id_token(self, sub: str = "user@example.com", lifetime: int = 3600) -> str:
        """An ID token from the IdP for the IdP client (requires ``idp=True``)."""
        if self.idp is None or self.idp_client is None:
            raise RuntimeError("LoopbackStack was built without idp=True")
        return self.idp.issue_id_token(sub, aud=self.idp_client.client_id, lifetime=lifetime)

    def start(self) -> "LoopbackStack":
        """Start every server. Returns self."""
        self.as_.start()
        self.mcp.start()
        if self.idp is not None:
            self.idp.start()
        return self

    def stop(self) -> None:
        """Stop every server."""
        for server in (getattr(self, "mcp", None), self.idp, self.as_):
            if server is not None:
                server.stop()

    def __enter__(self) -> "LoopbackStack":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
