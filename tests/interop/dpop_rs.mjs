// A loopback resource server that accepts only DPoP-bound access tokens (RFC 9449 §7),
// for mcpauth's interop tests. Written on `jose` (panva), independently of mcpauth: it
// verifies the access token (an RFC 9068 JWT from oidc-provider, checked against the AS
// JWKS, issuer and audience), and the DPoP proof as RFC 9449 §4.3 lists: one DPoP header,
// typ dpop+jwt, an asymmetric alg, an embedded public jwk that verifies the signature, htm
// and htu of this request, iat within 300 s, a jti never seen before, ath = SHA-256 of the
// token, and the proof key's thumbprint equal to the token's cnf.jkt (§6). With
// "require_nonce" it demands its own nonce first (401 use_dpop_nonce + DPoP-Nonce, §9).
//
// Same start-up protocol as mcp_server.mjs: prints {"listening":true,"url":...}, reads
// {"issuer":...} on stdin, prints {"ready":true,"url":...,"prm_url":...}.
// POST /mcp answers 200 {"ok":true,"client_id":...,"jkt":...}; errors are 401 with
// WWW-Authenticate: DPoP error=..., resource_metadata=... . One JSON log line per request.
//
// Usage: node dpop_rs.mjs CONFIG.json   CONFIG = {"port":0, "log":"...", "require_nonce":false}

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as readline from 'node:readline';

import { EmbeddedJWK, calculateJwkThumbprint, createRemoteJWKSet, jwtVerify } from 'jose';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const NONCE = `rs-${crypto.randomBytes(12).toString('base64url')}`;
const ALGS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];
const seenJti = new Set();
let issuer;
let jwks;
let url;
let prmUrl;

function log(record) {
  if (config.log) fs.appendFileSync(config.log, `${JSON.stringify(record)}\n`);
}

function normalized(u) {
  const p = new URL(u);
  return `${p.protocol}//${p.host}${p.pathname}`;
}

class Refusal extends Error {
  constructor(error, description, nonce = false) {
    super(description);
    this.error = error;
    this.nonce = nonce;
  }
}

async function check(req) {
  const authz = req.headers.authorization || '';
  const [scheme, token] = authz.split(' ');
  if (!authz) throw new Refusal(undefined, 'no token');
  if (scheme !== 'DPoP' || !token) throw new Refusal('invalid_token', 'DPoP scheme required');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, jwks, { issuer, audience: url }));
  } catch (err) {
    throw new Refusal('invalid_token', `access token: ${err.code || err.message}`);
  }
  const jkt = claims.cnf && claims.cnf.jkt;
  if (!jkt) throw new Refusal('invalid_token', 'access token is not DPoP-bound (no cnf.jkt)');
  const raw = req.headersDistinct.dpop || [];
  if (raw.length !== 1 || raw[0].includes(',')) throw new Refusal('invalid_dpop_proof', 'exactly one DPoP header');
  let proof;
  try {
    proof = await jwtVerify(raw[0], EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ALGS });
  } catch (err) {
    throw new Refusal('invalid_dpop_proof', `proof: ${err.code || err.message}`);
  }
  const { payload, protectedHeader } = proof;
  if (protectedHeader.jwk.d !== undefined) throw new Refusal('invalid_dpop_proof', 'private jwk');
  if (typeof payload.jti !== 'string' || !payload.jti) throw new Refusal('invalid_dpop_proof', 'no jti');
  if (payload.htm !== req.method) throw new Refusal('invalid_dpop_proof', 'htm');
  if (typeof payload.htu !== 'string' || payload.htu.includes('?') || payload.htu.includes('#')
      || normalized(payload.htu) !== normalized(new URL(req.url, url).href)) {
    throw new Refusal('invalid_dpop_proof', 'htu');
  }
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > 300) {
    throw new Refusal('invalid_dpop_proof', 'iat');
  }
  const ath = crypto.createHash('sha256').update(token, 'ascii').digest('base64url');
  if (payload.ath !== ath) throw new Refusal('invalid_dpop_proof', 'ath');
  if (seenJti.has(payload.jti)) throw new Refusal('invalid_dpop_proof', 'jti replayed');
  seenJti.add(payload.jti);
  if (await calculateJwkThumbprint(protectedHeader.jwk, 'sha256') !== jkt) {
    throw new Refusal('invalid_token', 'proof key is not the token cnf.jkt');
  }
  if (config.require_nonce && payload.nonce !== NONCE) {
    throw new Refusal('use_dpop_nonce', 'Resource server requires nonce in DPoP proof', true);
  }
  return { client_id: claims.client_id, jkt, alg: protectedHeader.alg, nonce: payload.nonce };
}

const server = http.createServer(async (req, res) => {
  const record = { peer: 'rs', method: req.method, path: req.url,
    authorization_scheme: (req.headers.authorization || '').split(' ')[0] || undefined };
  if (req.method === 'GET' && new URL(req.url, url).pathname === new URL(prmUrl).pathname) {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ resource: url, authorization_servers: [issuer],
      bearer_methods_supported: ['header'], dpop_bound_access_tokens_required: true,
      dpop_signing_alg_values_supported: ALGS }));
    record.status = 200;
    log(record);
    return;
  }
  for await (const _ of req) { /* drain the body */ }
  try {
    const info = await check(req);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ ok: true, ...info }));
    Object.assign(record, { status: 200 }, info);
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    const params = [];
    if (err.error) params.push(`error="${err.error}"`, `error_description="${err.message}"`);
    params.push(`algs="${ALGS.join(' ')}"`, `resource_metadata="${prmUrl}"`);
    const headers = { 'Content-Type': 'application/json', 'WWW-Authenticate': `DPoP ${params.join(', ')}` };
    if (err.nonce) headers['DPoP-Nonce'] = NONCE;
    res.writeHead(401, headers);
    res.end(JSON.stringify({ error: err.error || 'unauthorized' }));
    Object.assign(record, { status: 401, error: err.error, error_description: err.message });
  }
  log(record);
});

server.listen(config.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  url = `http://127.0.0.1:${port}/mcp`;
  prmUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
  process.stdout.write(`${JSON.stringify({ listening: true, url })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const message = JSON.parse(line);
    if (!message.issuer || issuer) return;
    issuer = message.issuer;
    jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
    process.stdout.write(`${JSON.stringify({ ready: true, url, prm_url: prmUrl })}\n`);
  });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
