"""Loopback test servers: an OAuth authorization server, an enterprise IdP and a
protected MCP server, stdlib only, for mcpauth's own tests, ``mcpauth demo`` and your
tests. They bind ``127.0.0.1`` on an ephemeral port, serve from daemon threads, record
every request, and print nothing.

* :class:`AuthorizationServer`: RFC 8414 metadata, the RFC 6749 token endpoint with
  client_secret_basic / client_secret_post / private_key_jwt (RFC 7523 §2.2, 7523bis),
  client_credentials (§4.4), jwt-bearer (RFC 7523 §2.1) for ID-JAGs and workload
  identity, RFC 8707 resource binding; failure injection and canned responses.
* :class:`IdentityProvider`: ID tokens and RFC 8693 token exchange for ID-JAGs.
* :class:`MCPServer`: RFC 9728 metadata, RFC 6750 bearer challenges, MCP over Streamable
  HTTP in the stateful (2025-xx) and stateless (2026-07-28) lifecycles.
* :class:`LoopbackStack`: all three wired together.

Example::

    import requests
    from mcpauth.testing import LoopbackStack

    with LoopbackStack(allowed_scopes=["tools"]) as stack:
        token = requests.post(stack.as_.token_endpoint, data={
            "grant_type": "client_credentials", "scope": "tools",
            "resource": stack.mcp.resource,
        }, auth=(stack.client_id, stack.client_secret)).json()["access_token"]
        reply = requests.post(stack.mcp_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientCapabilities": {}}},
        }, headers={"Authorization": "Bearer " + token,
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": "tools/call", "Mcp-Name": "add"})
        assert reply.json()["result"]["content"][0]["text"] == "3"
        assert stack.as_.token_requests()[0].info["auth_method"] == "client_secret_basic"

(``requests`` encodes Basic credentials without the RFC 6749 §2.3.1 form-encoding; that
is harmless for ids and secrets made only of unreserved characters, as here.)

The IdP and every signature check need ``cryptography`` (through :mod:`mcpauth.jws`,
imported lazily); the rest does not.
"""

from ._http import Headers, RecordedRequest
from .authserver import AuthorizationServer, Client, IdentityProvider
from .mcpserver import MCPServer
from .stack import LoopbackStack

__all__ = [
    "AuthorizationServer",
    "Client",
    "Headers",
    "IdentityProvider",
    "LoopbackStack",
    "MCPServer",
    "RecordedRequest",
]
