// Drives an MCP server with the official TypeScript SDK v2 client (@modelcontextprotocol/client),
// for tests/interop/test_sdk_clients.py: mcpauth.testing's MCPServer must satisfy the official
// clients on both protocol versions.
//
// Usage: node sdk_client.mjs URL TOKEN MODE
//   MODE: "legacy" (initialize, 2025-11-25), "auto" (server/discover, fallback to legacy) or a
//   pinned modern version such as "2026-07-28".
// Prints one JSON line: {protocol_version, tools, add, is_error}; exits 1 with the error on
// stderr when the client refuses the server's answers.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, token, mode] = process.argv.slice(2);
const negotiation = mode === 'legacy' || mode === 'auto' ? mode : { pin: mode };
const client = new Client({ name: 'mcpauth-interop-sdk-client', version: '1.0.0' },
  { versionNegotiation: { mode: negotiation } });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
try {
  await client.connect(transport);
  const tools = await client.listTools();
  const result = await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
  process.stdout.write(`${JSON.stringify({
    protocol_version: client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion,
    tools: tools.tools.map((tool) => tool.name),
    add: result.content.filter((c) => c.type === 'text').map((c) => c.text),
    is_error: Boolean(result.isError),
  })}\n`);
  await client.close();
} catch (err) {
  process.stderr.write(`sdk_client.mjs: ${err.stack ?? err}\n`);
  process.exit(1);
}
