// Loopback MCP server for mcpauth's interop tests, built with the official TypeScript SDK
// (@modelcontextprotocol/sdk: McpServer + StreamableHTTPServerTransport on express), and
// protected by the SDK's requireBearerAuth middleware.
//
// Access tokens are RFC 9068 JWTs from the oidc-provider AS (as.mjs): signature checked
// against the AS JWKS with jose, iss = AS issuer, aud = this server's resource URL
// (RFC 8707), typ at+jwt. 401s carry `WWW-Authenticate: Bearer ... resource_metadata=...`
// (RFC 9728 §5.1); the protected resource metadata (RFC 9728 §3) is served by the SDK's
// mcpAuthMetadataRouter at /.well-known/oauth-protected-resource/mcp.
//
// Usage: node mcp_server.mjs CONFIG.json
//   CONFIG = {
//     "port": 0,                        // 0 = pick a free port (default)
//     "issuer": "http://127.0.0.1:Q",   // optional; if absent, read {"issuer": ...} from stdin
//     "scopes_supported": ["mcp:tools"],
//     "required_scopes": [],            // requireBearerAuth requiredScopes (403 if missing)
//     "json_response": false,           // true: application/json replies; false: SSE
//     "stateful": false,                // true: Mcp-Session-Id sessions; false: sessionless
//     "retry_interval_ms": null,        // with stateful: an event store and this SSE `retry`,
//                                       // so streams can be closed early and resumed by GET
//     "log": "/path/mcp-requests.jsonl" // optional: one JSON line per request
//   }
// Start-up protocol (lets the AS learn this server's URL before the server learns the issuer):
//   1. binds, prints {"listening":true,"port":P,"url":"http://127.0.0.1:P/mcp"}
//   2. reads one JSON line {"issuer": "..."} from stdin, unless config.issuer is set
//   3. fetches the AS metadata and prints {"ready":true,"url":...,"prm_url":...,...}
// Tools: echo {message} -> message; add {a, b} -> a+b; whoami {} -> token claims as JSON;
// poll {delay_ms} -> closes its SSE stream at once when the transport can be resumed
// (SEP-1699 polling), then answers "polled" after delay_ms (on the resumed GET stream).

import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as readline from 'node:readline';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import {
  getOAuthProtectedResourceMetadataUrl,
  mcpAuthMetadataRouter,
} from '@modelcontextprotocol/sdk/server/auth/router.js';
import * as z from 'zod';

function fail(message) {
  process.stderr.write(`mcp_server.mjs: ${message}\n`);
  process.exit(2);
}

const configPath = process.argv[2] || process.env.MCPAUTH_MCP_CONFIG;
if (!configPath) fail('usage: node mcp_server.mjs CONFIG.json');
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const port = Number(config.port ?? process.env.PORT ?? 0);
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
  const server = new McpServer({ name: 'mcpauth-interop-mcp', version: '1.0.0' });
  server.registerTool('echo', {
    description: 'Returns its message argument as text',
    inputSchema: { message: z.string() },
  }, async ({ message }) => ({ content: [{ type: 'text', text: message }] }));
  server.registerTool('add', {
    description: 'Adds two numbers',
    inputSchema: { a: z.number(), b: z.number() },
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  server.registerTool('whoami', {
    description: 'Returns the verified access token claims as JSON text',
  }, async (extra) => ({
    content: [{ type: 'text', text: JSON.stringify(extra.authInfo?.extra?.claims ?? null) }],
  }));
  server.registerTool('poll', {
    description: 'Closes its SSE stream early, then answers after delay_ms',
    inputSchema: { delay_ms: z.number() },
  }, async ({ delay_ms }, extra) => {
    extra.closeSSEStream?.();
    await new Promise((resolve) => setTimeout(resolve, delay_ms));
    return { content: [{ type: 'text', text: 'polled' }] };
  });
  return server;
}

const app = createMcpExpressApp({ host: '127.0.0.1' });
const httpServer = app.listen(port, '127.0.0.1');
httpServer.on('error', (err) => fail(`listen failed: ${err.message}`));
await new Promise((resolve) => httpServer.once('listening', resolve));

const actualPort = httpServer.address().port;
const origin = `http://127.0.0.1:${actualPort}`;
const mcpUrl = new URL(`${origin}/mcp`);
const prmUrl = getOAuthProtectedResourceMetadataUrl(mcpUrl);
process.stdout.write(`${JSON.stringify({ listening: true, port: actualPort, url: mcpUrl.href })}\n`);

const issuer = config.issuer ?? await readIssuerFromStdin();
// RFC 8414 §3 first, then OpenID Connect Discovery 1.0 §4.
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
      throw new InvalidTokenError(`Invalid access token: ${err.code ?? err.message}`);
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

// Request log (registered first so it sees every request, including 401s).
app.use((req, res, next) => {
  // A GET stream the client closes once it has its reply never 'finish'es: log it on 'close'.
  res.on(req.method === 'GET' ? 'close' : 'finish', () => {
    const body = req.body && typeof req.body === 'object' ? req.body : undefined;
    logLine({
      peer: 'mcp',
      method: req.method,
      path: req.originalUrl.split('?')[0],
      status: res.statusCode,
      authorization_scheme: req.headers.authorization?.split(' ')[0],
      rpc_method: Array.isArray(body) ? body.map((m) => m.method) : body?.method,
      mcp_protocol_version: req.headers['mcp-protocol-version'],
      mcp_session_id: req.headers['mcp-session-id'],
      last_event_id: req.headers['last-event-id'],
      accept: req.headers.accept,
      response_content_type: res.getHeader('content-type'),
      client_id: req.auth?.clientId,
      token_jti: req.auth?.extra?.claims?.jti,
      www_authenticate: res.getHeader('www-authenticate'),
    });
  });
  next();
});

app.use(mcpAuthMetadataRouter({
  oauthMetadata,
  resourceServerUrl: mcpUrl,
  scopesSupported,
  resourceName: 'mcpauth interop MCP server',
}));

const bearer = requireBearerAuth({
  verifier,
  requiredScopes,
  resourceMetadataUrl: prmUrl,
  expectedResource: mcpUrl,
});

const sessions = new Map();

async function handleStateless(req, res) {
  const server = buildMcpServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: Boolean(config.json_response),
  });
  res.on('close', () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
}

async function handleStateful(req, res) {
  const sessionId = req.headers['mcp-session-id'];
  let transport = sessionId ? sessions.get(sessionId) : undefined;
  if (!transport) {
    if (sessionId || req.method !== 'POST') {
      res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
      return;
    }
    const resumable = config.retry_interval_ms != null
      ? { eventStore: new InMemoryEventStore(), retryInterval: config.retry_interval_ms } : {};
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: Boolean(config.json_response),
      onsessioninitialized: (id) => sessions.set(id, transport),
      ...resumable,
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await buildMcpServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
}

const handler = config.stateful ? handleStateful : handleStateless;

app.all('/mcp', bearer, async (req, res) => {
  if (!config.stateful && req.method !== 'POST') {
    res.set('Allow', 'POST').status(405).json({
      jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null,
    });
    return;
  }
  try {
    await handler(req, res);
  } catch (err) {
    process.stderr.write(`mcp_server.mjs: ${err.stack}\n`);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  }
});

process.stdout.write(`${JSON.stringify({
  ready: true,
  port: actualPort,
  url: mcpUrl.href,
  prm_url: prmUrl,
  issuer: oauthMetadata.issuer,
  stateful: Boolean(config.stateful),
  json_response: Boolean(config.json_response),
})}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
