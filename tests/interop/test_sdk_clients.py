"""mcpauth.testing's MCPServer satisfies the official SDK clients on both protocol versions.

Users test their own MCP clients against :class:`mcpauth.testing.MCPServer`, so the
official clients must accept it: the TypeScript SDK v2 client (``@modelcontextprotocol/
client``, pinned in package-lock.json) and the Python SDK client (PyPI ``mcp``, installed
by the tox ``interop`` env), each with the initialize handshake (2025-11-25), pinned to
2026-07-28 (stateless; SEP-2549 makes ``ttlMs`` and ``cacheScope`` required on list
results) and with version negotiation (``server/discover``), against JSON and SSE replies.
Each client lists the tools and calls ``add``.
"""

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

import peers as peers_mod  # tests/interop/peers.py, on sys.path by conftest.py
from mcpauth.testing import MCPServer

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "sdk-client-test-token"
MODES = ["legacy", "2026-07-28", "auto"]
EXPECTED_VERSION = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28", "auto": "2026-07-28"}
REQUIRE = os.environ.get("MCPAUTH_REQUIRE_NODE") == "1"


def _run(argv: List[str]) -> Dict[str, Any]:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                          cwd=HERE)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-3000:]
    return json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])


def _check(report: Dict[str, Any], mode: str, server: MCPServer) -> None:
    assert report["protocol_version"] == EXPECTED_VERSION[mode]
    assert report["tools"] == ["echo", "add", "whoami", "fail"]
    assert report["add"] == ["5"] and report["is_error"] is False
    lifecycles = {r.info.get("lifecycle") for r in server.calls()}
    assert lifecycles == {"stateful" if mode == "legacy" else "stateless"}


@pytest.fixture(params=["json", "sse"])
def server(request: Any) -> Any:
    with MCPServer(static_tokens={TOKEN: ""}, response_mode=request.param) as srv:
        yield srv
        assert srv.errors == []


@pytest.mark.parametrize("mode", MODES)
def test_typescript_sdk_client(server: MCPServer, mode: str) -> None:
    report = _run([peers_mod.NODE, os.path.join(HERE, "sdk_client.mjs"), server.url, TOKEN,
                   mode])
    _check(report, mode, server)


python_sdk = pytest.mark.skipif(
    not REQUIRE and (sys.version_info < (3, 10) or importlib.util.find_spec("mcp") is None),
    reason="the Python MCP SDK (PyPI mcp, Python >= 3.10) is not installed; the tox "
           "interop env installs it")


@python_sdk
@pytest.mark.parametrize("mode", MODES)
def test_python_sdk_client(server: MCPServer, mode: str) -> None:
    report = _run([sys.executable, os.path.join(HERE, "python_sdk_client.py"), server.url,
                   TOKEN, mode])
    _check(report, mode, server)
