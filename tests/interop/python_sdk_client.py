"""Drive mcpauth.testing's MCPServer with the official Python MCP SDK client (PyPI ``mcp``).

Run by tests/interop/test_sdk_clients.py with the tox ``interop`` env's Python, where
tox.ini installs ``mcp`` (the SDK needs Python >= 3.10): ``python python_sdk_client.py URL
TOKEN MODE`` with MODE ``legacy`` (initialize, 2025-11-25), ``2026-07-28`` (stateless) or
``auto`` (server/discover, then the stateless wire). Prints one JSON line: the negotiated
version, the tool names, and the text of an ``add`` call.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, mode: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + token})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
            tools = await client.list_tools()
            result = await client.call_tool("add", {"a": 2, "b": 3})
            print(json.dumps({
                "protocol_version": client.protocol_version,
                "tools": [tool.name for tool in tools.tools],
                "add": [c.text for c in result.content if c.type == "text"],
                "is_error": bool(result.is_error),
            }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
