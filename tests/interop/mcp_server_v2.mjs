// Loopback MCP server for mcpauth's interop tests, built with the official TypeScript SDK v2
// (@modelcontextprotocol/server: McpServer + createMcpHandler, which serves the stateless
// 2026-07-28 lifecycle and, unless legacy = "reject", the 2025 lifecycle as a stateless
// fallback), on plain node:http, protected by the SDK's requireBearerAuth fetch gate.
//
// Access tokens are RFC 9068 JWTs from the oidc-provider AS (as.mjs), checked as in
// mcp_server.mjs (jose: signature against the AS JWKS, iss, aud = this server's URL, typ at+jwt).
// The protected resource metadata (RFC 9728 §3) comes from the SDK's oauthMetadataResponse.
//
// Usage: node mcp_server_v2.mjs CONFIG.json
//   CONFIG = {
//     "port": 0,
//     "issuer": "http://127.0.0.1:Q",   // optional; if absent, read {"issuer": ...} from stdin
//     "scopes_supported": ["mcp:tools"],
//     "required_scopes": [],
//     "response_mode": "auto",          // modern replies: "auto" | "json" | "sse"
//     "legacy": "stateless",            // 2025 traffic: "stateless" (served) | "reject"
//     "log": "/path/mcp-requests.jsonl"
//   }
// Start-up protocol: the same as mcp_server.mjs (listening line, issuer on stdin, ready line).
// Tools: echo {message}; add {a, b}; whoami {}; notify {count} (sends `count`
// notifications/message before its result, so an SSE reply interleaves them); route {region,
// priority, note} whose region and priority carry SEP-2243 `x-mcp-header` (Region, Priority):
// the SDK refuses a call without matching Mcp-Param-* headers (400, -32020).
// Log lines: method, path, status, authorization_scheme, rpc_method, the MCP headers,
// meta_protocol_version and client_extensions (from params._meta), accept, content_type,
// response_content_type, client_id, www_authenticate.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as readline from 'node:readline';
import { Readable } from 'node:stream';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import {
  McpServer,
  OAuthError,
  OAuthErrorCode,
  createMcpHandler,
  getOAuthProtectedResourceMetadataUrl,
  oauthMetadataResponse,
  requireBearerAuth,
} from '@modelcontextprotocol/server';
import * as z from 'zod';

function fail(message) {
  process.stderr.write(`mcp_server_v2.mjs: ${message}\n`);
  process.exit(2);
}

const configPath = process.argv[2];
if (!configPath) fail('usage: node mcp_server_v2.mjs CONFIG.json');
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const port = Number(config.port ?? 0);
const scopesSupported = config.scopes_supported ?? ['mcp:tools'];
const requiredScopes = config.required_scopes ?? [];

function logLine(record) {
  if (config.log) fs.appendFileSync(config.log, `${JSON.stringify(record)}\n`);
}

function readIssuerFromStdin() {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin });
    const onClose = () => reject(new Error('stdin closed before the issuer line'));
    rl.once('close', onClose);
    rl.once('line', (line) => {
      rl.off('close', onClose);
      rl.close();
      try {
        resolve(JSON.parse(line).issuer);
      } catch (err) {
        reject(err);
      }
    });
  });
}

function buildMcpServer() {
  const server = new McpServer({ name: 'mcpauth-interop-mcp-v2', version: '1.0.0' },
    { capabilities: { logging: {} } });
  server.registerTool('echo', {
    description: 'Returns its message argument as text',
    inputSchema: z.object({ message: z.string() }),
  }, async ({ message }) => ({ content: [{ type: 'text', text: message }] }));
  server.registerTool('add', {
    description: 'Adds two numbers',
    inputSchema: z.object({ a: z.number(), b: z.number() }),
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  server.registerTool('whoami', {
    description: 'Returns the verified access token claims as JSON text',
  }, async (ctx) => ({
    content: [{ type: 'text', text: JSON.stringify(ctx.http?.authInfo?.extra?.claims ?? null) }],
  }));
  server.registerTool('notify', {
    description: 'Sends count notifications/message before its result',
    inputSchema: z.object({ count: z.number() }),
  }, async ({ count }, ctx) => {
    for (let i = 0; i < count; i += 1) {
      await ctx.mcpReq.notify({
        method: 'notifications/message',
        params: { level: 'info', logger: 'interop', data: `notification ${i}` },
      });
    }
    return { content: [{ type: 'text', text: `sent ${count}` }] };
  });
  server.registerTool('route', {
    description: 'Answers with the region and priority it was routed by',
    inputSchema: z.object({
      region: z.string().meta({ 'x-mcp-header': 'Region' }),
      priority: z.number().int().optional().meta({ 'x-mcp-header': 'Priority' }),
      note: z.string().optional(),
    }),
  }, async ({ region, priority }) => ({
    content: [{ type: 'text', text: `${region}/${priority ?? '-'}` }],
  }));
  return server;
}

const handler = createMcpHandler(() => buildMcpServer(), {
  legacy: config.legacy ?? 'stateless',
  responseMode: config.response_mode ?? 'auto',
  keepAliveMs: 0,
});

// Bind first: the AS needs this server's URL (its resource) before it starts.
const httpServer = http.createServer();
httpServer.on('error', (err) => fail(`listen failed: ${err.message}`));
await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
const actualPort = httpServer.address().port;
const origin = `http://127.0.0.1:${actualPort}`;
const mcpUrl = new URL(`${origin}/mcp`);
const prmUrl = getOAuthProtectedResourceMetadataUrl(mcpUrl);
process.stdout.write(`${JSON.stringify({ listening: true, port: actualPort, url: mcpUrl.href })}\n`);

const issuer = config.issuer ?? await readIssuerFromStdin();
let oauthMetadata;
for (const wellKnown of ['oauth-authorization-server', 'openid-configuration']) {
  const response = await fetch(`${issuer}/.well-known/${wellKnown}`);
  if (response.ok) {
    oauthMetadata = await response.json();
    break;
  }
}
if (!oauthMetadata) fail(`no AS metadata at ${issuer}`);
const jwks = createRemoteJWKSet(new URL(oauthMetadata.jwks_uri));

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: oauthMetadata.issuer,
        audience: mcpUrl.href,
        typ: 'at+jwt',
        algorithms: ['RS256', 'PS256', 'ES256'],
      }));
    } catch (err) {
      throw new OAuthError(OAuthErrorCode.InvalidToken,
        `Invalid access token: ${err.code ?? err.message}`);
    }
    const aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
    return {
      token,
      clientId: payload.client_id,
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ') : [],
      expiresAt: payload.exp,
      resource: new URL(aud),
      extra: { claims: payload },
    };
  },
};
const gate = requireBearerAuth({
  verifier, requiredScopes, resourceMetadataUrl: prmUrl, expectedResource: mcpUrl,
});
const metadataOptions = {
  oauthMetadata,
  resourceServerUrl: mcpUrl,
  scopesSupported,
  resourceName: 'mcpauth interop MCP server (SDK v2)',
  dangerouslyAllowInsecureIssuerUrl: true,
};

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function serve(request) {
  const url = new URL(request.url);
  const metadata = oauthMetadataResponse(request, metadataOptions);
  if (metadata) return { response: metadata };
  if (url.pathname !== '/mcp') return { response: new Response('not found', { status: 404 }) };
  const auth = await gate(request);
  if (auth instanceof Response) return { response: auth };
  return { response: await handler.fetch(request, { authInfo: auth }), auth };
}

httpServer.on('request', async (req, res) => {
  let body;
  let rpcMethod;
  let meta;
  try {
    body = await readBody(req);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const hasBody = !['GET', 'HEAD'].includes(req.method);
    try {
      const message = hasBody && body.length ? JSON.parse(body.toString('utf8')) : undefined;
      rpcMethod = message?.method;
      meta = message?.params?._meta;
    } catch {
      rpcMethod = undefined;
    }
    const request = new Request(`${origin}${req.url}`, {
      method: req.method, headers, body: hasBody ? body : undefined,
    });
    const { response, auth } = await serve(request);
    res.on('finish', () => logLine({
      peer: 'mcp',
      method: req.method,
      path: req.url.split('?')[0],
      status: res.statusCode,
      authorization_scheme: req.headers.authorization?.split(' ')[0],
      rpc_method: rpcMethod,
      mcp_protocol_version: req.headers['mcp-protocol-version'],
      mcp_method: req.headers['mcp-method'],
      mcp_name: req.headers['mcp-name'],
      mcp_param_headers: Object.fromEntries(Object.entries(req.headers)
        .filter(([name]) => name.startsWith('mcp-param-'))),
      mcp_session_id: req.headers['mcp-session-id'],
      meta_protocol_version: meta?.['io.modelcontextprotocol/protocolVersion'],
      client_extensions: Object.keys(
        meta?.['io.modelcontextprotocol/clientCapabilities']?.extensions ?? {}),
      accept: req.headers.accept,
      content_type: req.headers['content-type'],
      response_content_type: response.headers.get('content-type'),
      client_id: auth?.clientId,
      www_authenticate: response.headers.get('www-authenticate'),
    }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) {
      Readable.fromWeb(response.body).pipe(res);
    } else {
      res.end();
    }
  } catch (err) {
    process.stderr.write(`mcp_server_v2.mjs: ${err.stack}\n`);
    if (!res.headersSent) {
      res.writeHead(500, { 'Content-Type': 'application/json' });
    }
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
  }
});

process.stdout.write(`${JSON.stringify({
  ready: true,
  port: actualPort,
  url: mcpUrl.href,
  prm_url: prmUrl,
  issuer: oauthMetadata.issuer,
  sdk: 'v2',
  response_mode: config.response_mode ?? 'auto',
  legacy: config.legacy ?? 'stateless',
})}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
