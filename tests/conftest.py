"""Shared pytest configuration (keep small; module-specific fixtures live in their modules)."""

import pytest
import requests

from mcpauth.testing import MCPServer


@pytest.fixture
def new_session():
    """A factory of requests sessions, each closed when the test ends (no leaked sockets)."""
    sessions = []

    def make():
        session = requests.Session()
        sessions.append(session)
        return session

    yield make
    while sessions:
        sessions.pop().close()


@pytest.fixture
def session(new_session):
    """One requests session, closed when the test ends."""
    return new_session()


@pytest.fixture
def make_server(request):
    """A factory of started loopback MCP servers (mcpauth.testing) that accept the test
    module's ``TOKEN``; each is stopped when the test ends, and must have hit no bug."""
    servers = []

    def make(**kw):
        kw.setdefault("static_tokens", {request.module.TOKEN: "mcp:tools"})
        server = MCPServer(**kw)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()
        assert server.errors == []
