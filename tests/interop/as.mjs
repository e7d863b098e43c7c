// Loopback OAuth 2.0 authorization server for mcpauth's interop tests, built on
// oidc-provider (panva/node-oidc-provider), an independent, certified implementation.
//
// Machine-to-machine only: the client_credentials grant (RFC 6749 §4.4) with
// client_secret_basic, client_secret_post and private_key_jwt (RFC 7523 §2.2) client
// authentication, RFC 8707 resource indicators, RFC 9068 JWT access tokens (aud = resource),
// RFC 7662 introspection, RFC 8414 / OIDC discovery.
//
// Usage: node as.mjs CONFIG.json
//   CONFIG = {
//     "port": 0,                                  // 0 = pick a free port (default)
//     "resource": "http://127.0.0.1:P/mcp",       // the one resource server (required)
//     "scopes": ["mcp:tools"],                    // scopes for that resource (default shown)
//     "access_token_ttl": 300,                    // seconds (default 300)
//     "default_resource": false,                  // true: a request without `resource` gets
//                                                 //   a JWT for "resource"; false: opaque token
//     "hide_oauth_metadata": false,               // true: 404 on /.well-known/oauth-authorization-server
//     "dpop_nonce": false,                        // true: DPoP proofs need a server nonce (RFC 9449 §8)
//     "log": "/path/as-requests.jsonl",           // optional: one JSON line per request
//     "clients": [ {client_id, client_secret?, token_endpoint_auth_method, jwks?, scope?, ...} ]
//   }
// Clients default to grant_types ["client_credentials"], no redirect URIs, scope = all scopes.
// Once listening it prints one line on stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:P","port":P,"token_endpoint":...,"jwks_uri":...}
// The issuer is plain http on 127.0.0.1: loopback only, never expose this.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

function fail(message) {
  process.stderr.write(`as.mjs: ${message}\n`);
  process.exit(2);
}

const configPath = process.argv[2] || process.env.MCPAUTH_AS_CONFIG;
if (!configPath) fail('usage: node as.mjs CONFIG.json');
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
if (typeof config.resource !== 'string') fail('config.resource (the MCP server URL) is required');

const port = Number(config.port ?? process.env.PORT ?? 0);
const scopes = config.scopes ?? ['mcp:tools'];
const accessTokenTTL = Number(config.access_token_ttl ?? 300);
const logPath = config.log;

function logLine(record) {
  if (logPath) fs.appendFileSync(logPath, `${JSON.stringify(record)}\n`);
}

// Fresh signing keys per run; the JWKS is published at jwks_uri.
function signingJwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}` };
}

const jwks = {
  keys: [
    signingJwk('rsa', { modulusLength: 2048 }, 'RS256'),
    signingJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

function clientMetadata(client) {
  return {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: scopes.join(' '),
    ...client,
  };
}

// Decoded header and claims of a JWT, for the request log (never the signature).
function peek(jwt) {
  try {
    const [h, p] = String(jwt).split('.');
    return {
      header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
      claims: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
    };
  } catch {
    return { malformed: true };
  }
}

const server = http.createServer();
server.on('error', (err) => fail(`listen failed: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map(clientMetadata),
    jwks,
    scopes,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // RFC 9449: a token request with a DPoP proof gets a DPoP-bound token (cnf.jkt).
      dPoP: config.dpop_nonce
        ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
        : { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf;
          return config.default_resource ? config.resource : undefined;
        },
        useGrantedResource() {
          return true;
        },
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== config.resource) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            scope: scopes.join(' '),
            audience: config.resource,
            accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: accessTokenTTL,
    },
  });

  // Request log and optional hiding of the RFC 8414 well-known path.
  provider.use(async (ctx, next) => {
    if (config.hide_oauth_metadata && ctx.path.startsWith('/.well-known/oauth-authorization-server')) {
      ctx.status = 404;
      ctx.body = { error: 'not_found' };
      return;
    }
    await next();
    const record = { peer: 'as', method: ctx.method, path: ctx.path, status: ctx.status };
    const params = ctx.oidc?.params;
    if (ctx.method === 'POST' && params) {
      record.params = Object.keys(params).filter((k) => params[k] !== undefined).sort();
      record.grant_type = params.grant_type;
      record.resource = params.resource;
      record.scope = params.scope;
      record.client_id_param = params.client_id;
      record.authorization_scheme = ctx.headers.authorization?.split(' ')[0];
      if (ctx.headers.dpop) record.dpop = peek(ctx.headers.dpop);
      if (params.client_assertion) record.client_assertion = peek(params.client_assertion);
      record.client_id = ctx.oidc.client?.clientId;
      record.client_auth_method = ctx.oidc.client?.clientAuthMethod;
    }
    if (ctx.status >= 400 && ctx.body && typeof ctx.body === 'object') {
      record.error = ctx.body.error;
      record.error_description = ctx.body.error_description;
      record.error_detail = ctx.state.errorDetail;
    }
    logLine(record);
  });

  for (const event of ['grant.error', 'introspection.error', 'discovery.error', 'jwks.error', 'server_error']) {
    provider.on(event, (ctx, err) => {
      const detail = err?.error_detail ?? err?.cause?.message;
      if (ctx?.state) ctx.state.errorDetail = detail;
      process.stderr.write(`as.mjs ${event}: ${err?.message} (${err?.error_description ?? ''}) ${detail ?? ''}\n`);
    });
  }

  server.on('request', provider.callback());

  process.stdout.write(`${JSON.stringify({
    ready: true,
    issuer,
    port: actualPort,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    introspection_endpoint: `${issuer}/token/introspection`,
  })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
