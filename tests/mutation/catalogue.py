"""The mutation catalogue: one-line bugs a real change could make in a security check.

Each mutant is (file, exact original snippet, replacement, reason, tests). The snippet is
matched as text, not by line number, so mutants survive unrelated edits; a snippet that
no longer occurs exactly once is reported as "not applicable" (update it when the code
moves). Where the same bug has had more than one spelling of the code, ``original`` and
``replacement`` (and ``file``, if it moved) are tuples of the forms, tried in order.
``tests`` are the test files (or node ids) that must fail when the mutant is applied,
fastest killer first; ``equivalent`` explains a mutant that cannot change behaviour (it
is listed, not run).

Run it with ``tox -e mutation`` or ``python tests/mutation/run.py``.
"""

from collections import namedtuple

Mutant = namedtuple("Mutant", "id file original replacement reason tests equivalent")

T_EXACT = "tests/test_exact_checks.py"
T_TRANSPORT = "tests/test_transport.py"
T_DISCOVERY = "tests/test_discovery.py"
T_E2E = "tests/test_e2e_providers.py"
T_BEARER = "tests/test_bearer.py"
T_GRANTS = "tests/test_grants.py"
T_JWS = "tests/test_jws.py"
T_CACHE = "tests/test_cache.py"
T_CLI = "tests/test_cli.py"
T_CROSSAPP = "tests/test_crossapp.py"
T_WORKLOAD = "tests/test_workload.py"
T_ERRORS = "tests/test_errors.py"
T_CACHE_TRUST = "tests/test_cache_trust.py"
T_REDIS = "tests/test_rediscache.py"
T_DPOP = "tests/test_dpop.py"
T_MASK = "tests/test_mask.py"
T_MASK_KILLERS = "tests/test_mask_killers.py"
T_FORK = "tests/test_fork.py"
T_BACKOFF = "tests/test_backoff.py"

MUTANTS = []


def mutant(id, file, original, replacement, reason, tests, equivalent=None):
    if isinstance(file, str):
        file = "mcpauth/" + file
    else:
        file = tuple("mcpauth/" + f for f in file)
    MUTANTS.append(Mutant(id, file, original, replacement, reason, tuple(tests), equivalent))


# -- redirects of credentialed requests (OAuth 2.1 §7.5.3) ---------------------------------
mutant("redirect-credentialed", "transport.py",
       "and not request.credentialed and hops < self.max_redirects",
       "and hops < self.max_redirects",
       "a credentialed GET follows a same-origin redirect, re-sending its credentials",
       [T_EXACT, T_TRANSPORT])
mutant("redirect-any-method", "transport.py",
       'location and request.method == "GET"',
       "location",
       "a POST is re-sent (body and all) to the Location on its own origin",
       [T_EXACT, T_TRANSPORT])
mutant("redirect-cross-origin", "transport.py",
       "if origin is None or _origin(target) != origin:",
       "if origin is None:",
       "metadata GETs follow redirects to another origin (SSRF guard bypass)",
       [T_TRANSPORT])
mutant("redirect-one-more", "transport.py",
       "and hops < self.max_redirects):",
       "and hops <= self.max_redirects):",
       "one same-origin redirect more than max_redirects is followed",
       [T_TRANSPORT])

# -- https policy --------------------------------------------------------------------------
mutant("https-flag-inverted", "transport.py",
       'if scheme == "http" and not allow_insecure_http and not is_loopback_host(host):',
       'if scheme == "http" and allow_insecure_http and not is_loopback_host(host):',
       "plain http to any host is allowed unless the caller opts in to it",
       [T_TRANSPORT])
mutant("https-any-scheme", "transport.py",
       'if scheme not in ("https", "http") or not host:',
       "if not host:",
       "a non-http(s) scheme passes check_url",
       [T_TRANSPORT])
mutant("https-localhost-prefix", "transport.py",
       'if host == "localhost":',
       'if host.startswith("localhost"):',
       "localhost.evil.net counts as loopback, so plain http to it is allowed",
       [T_TRANSPORT])
mutant("https-private-is-loopback", "transport.py",
       "return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))",
       "return bool(address.is_loopback or address.is_private)",
       "private addresses (10/8, 192.168/16) count as loopback for plain http",
       [T_TRANSPORT])
mutant("https-fragment", "transport.py",
       'if "#" in url:  # RFC 6749',
       'if url.endswith("#"):  # RFC 6749',
       "an endpoint URL with a fragment is accepted",
       [T_TRANSPORT])
mutant("body-cap-length", "transport.py",
       ("length.isdigit() and int(length) > limit:",
        "or int(digits or 0) > limit):"),
       ("length.isdigit() and int(length) > 2 * limit:",
        "or int(digits or 0) > 2 * limit):"),
       "a declared body over the cap is read",
       [T_EXACT, T_TRANSPORT])
mutant("body-cap-stream", "transport.py",
       "if size > limit:",
       "if size > 2 * limit:",
       "a streamed body over the cap is read",
       [T_TRANSPORT])

# -- secrets in reprs ----------------------------------------------------------------------
mutant("repr-header-case", "transport.py",
       '"[secure]" if k.lower() in SENSITIVE_HEADERS else v',
       '"[secure]" if k in SENSITIVE_HEADERS else v',
       "an Authorization header spelled with capitals shows in a request repr",
       [T_TRANSPORT])
mutant("repr-form-secret", "transport.py",
       '"client_secret", "client_assertion", "assertion",',
       '"client_assertion", "assertion",',
       "client_secret shows in a token request repr",
       [T_TRANSPORT])
mutant("peer-text-c1", "errors.py",
       ('return (ch < " " or "\\x7f" <= ch <= "\\x9f" or ch in "\\u2028\\u2029"',
        '_UNSAFE_CATEGORIES = frozenset(["Cc", "Cf", "Zl", "Zp", "Cs"])'),
       ('return (ch < " " or ch in "\\u2028\\u2029"',
        '_UNSAFE_CATEGORIES = frozenset(["Zl", "Zp", "Cs"])'),
       "control characters (DEL, C1 such as NEL) from a peer reach messages and logs",
       [T_ERRORS])
mutant("peer-text-limit", "errors.py",
       ("if len(out) > limit:", "    if len(value) > limit:\n        return clean_text(",
        "if len(out) > limit or len(value) > window:"),
       ("if len(out) > 100 * limit:",
        "    if len(value) > 100 * limit:\n        return clean_text(",
        "if False:"),
       "peer text is not truncated",
       [T_ERRORS])

mutant("redact-url-query", "transport.py",
       ('return urlunsplit((parts.scheme, host, parts.path, "", ""))',
        'return clean_text(urlunsplit((parts.scheme, host, parts.path, "", "")))'),
       ('return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))',
        'return clean_text(urlunsplit((parts.scheme, host, parts.path, parts.query, "")))'),
       "a query string (which may carry a key or token) reaches messages and logs",
       [T_TRANSPORT])
mutant("repr-request-url", "transport.py",
       "self.method, redact_url(self.url), headers, body, self.credentialed)",
       "self.method, self.url, headers, body, self.credentialed)",
       "userinfo and query of a request URL show in its repr",
       [T_TRANSPORT])
mutant("bearer-source-syntax", "providers.py",
       "        if not _is_access_token(value):\n",
       "        if not value:\n",
       "a token source returning a value with CR LF injects a header",
       [T_BEARER])

# -- issuer match (RFC 8414 §3.3) and pinning ----------------------------------------------
mutant("issuer-normalised", "discovery.py",
       "    if received != issuer:\n",
       '    if received.rstrip("/") != issuer.rstrip("/"):\n',
       "metadata naming issuer https://as/ is used for https://as",
       [T_DISCOVERY])
mutant("issuer-prefix", "discovery.py",
       "    if received != issuer:\n",
       "    if not received.startswith(issuer):\n",
       "metadata naming a look-alike issuer that extends the expected one is used",
       [T_DISCOVERY])
mutant("pin-look-alike", "discovery.py",
       "if expected_issuer not in listed:",
       "if not any(s.startswith(expected_issuer) for s in listed):",
       "a listed AS whose issuer merely extends the pinned one passes the pin",
       [T_EXACT, T_DISCOVERY, T_E2E])
mutant("pin-configured-issuer", "discovery.py",
       "if listed and issuer not in listed:",
       "if False:",
       "a configured issuer is used although the resource names other AS",
       [T_DISCOVERY, T_E2E])
mutant("pin-after-fetch", "discovery.py",
       "if expected_issuer is not None and metadata.issuer != expected_issuer:",
       "if False:",
       "the last line of the pin is dropped",
       [T_DISCOVERY],
       equivalent="unreachable: the chosen AS is expected_issuer and the RFC 8414 §3.3 "
                  "echo check already required metadata.issuer == chosen")
mutant("ssrf-link-local", "discovery.py",
       "address.is_link_local or address.is_multicast",
       "address.is_multicast",
       "169.254.169.254 named by a resource server is fetched",
       [T_DISCOVERY])
mutant("ssrf-as-url", "discovery.py",
       "        validate_resource_metadata_url(chosen, server_url)\n",
       "",
       "an authorization server at 169.254.169.254 named by the resource server is fetched",
       [T_DISCOVERY, T_E2E])
mutant("ssrf-loopback", "discovery.py",
       "or (address.is_loopback and not is_loopback_host(server_host))):",
       "):",
       "a remote resource server can make the client fetch 127.0.0.1",
       [T_DISCOVERY])
mutant("outage-429-skipped", "discovery.py",
       "if 400 <= status < 500 and status != 429:",
       "if 400 <= status < 500:",
       "a 429 is taken for 'not published here' instead of a retryable outage",
       [T_DISCOVERY])

# -- resource validation (RFC 9728 §3.3, RFC 8707) -----------------------------------------
mutant("resource-prefix", "transport.py",
       '    return resource == server_url.split("#", 1)[0]\n',
       '    return server_url.split("#", 1)[0].startswith(resource)\n',
       "PRM for /mcp is accepted for /mcp-admin (and for any longer URL)",
       [T_DISCOVERY, T_E2E])
mutant("resource-casefold", "transport.py",
       '    return resource == server_url.split("#", 1)[0]\n',
       '    return resource.lower() == server_url.split("#", 1)[0].lower()\n',
       "a resource differing in case is accepted (not identical)",
       [T_DISCOVERY])
mutant("resource-segment", "discovery.py",
       '    if not prefix_path.endswith("/"):\n        prefix_path += "/"\n',
       "",
       "with allow_prefix, /mcp covers /mcpxxx",
       [T_DISCOVERY])
mutant("resource-origin", "discovery.py",
       "and _origin_key(have) == _origin_key(want)",
       "and have.hostname == want.hostname",
       "with allow_prefix, another port or scheme on the host is accepted",
       [T_DISCOVERY])

# -- server binding of tokens (server_url=, resource=) -------------------------------------
mutant("bind-path-segment", "providers.py",
       ('or s.path.startswith(base_path + "/")',
        's.path.startswith(b.path.rstrip("/") + "/")'),
       ("or s.path.startswith(base_path)",
        's.path.startswith(b.path.rstrip("/"))'),
       "a token bound to /mcp goes to /mcp-admin",
       [T_EXACT, T_BEARER, T_E2E])
mutant("bind-host-prefix", "providers.py",
       ("if (b.scheme.lower(), b.netloc.lower()) != (s.scheme.lower(), s.netloc.lower()):",
        "covered = ((b.scheme.lower(), b.netloc.lower()) == (s.scheme.lower(), s.netloc.lower())"),
       ("if not s.netloc.lower().startswith(b.netloc.lower()):",
        "covered = (s.netloc.lower().startswith(b.netloc.lower())"),
       "a token bound to mcp.example.com goes to mcp.example.com.evil.net (or over http)",
       [T_EXACT, T_BEARER])
mutant("bind-userinfo", "providers.py",
       'netloc = parts.netloc.rpartition("@")[2]',
       "netloc = parts.netloc",
       "userinfo in a request URL becomes the RFC 8707 resource and the cache key",
       [T_E2E, T_BEARER, T_EXACT])

# -- issuer binding (SEP-2352) and cached discovery ----------------------------------------
mutant("bind-issuer", "providers.py",
       "            if bound is None or bound == issuer:\n",
       "            if bound is None or issuer is not None:\n",
       "credentials bound to one AS are sent to another one",
       [T_EXACT, T_E2E])
mutant("bind-issuer-discovery", "providers.py",
       "        with self._states_lock:\n            return self._bound_issuer\n",
       "        return None\n",
       "discovery no longer refuses an AS other than the bound one up front",
       [T_E2E, T_EXACT])
mutant("cached-target-pin", "providers.py",
       "if pinned is not None and target.issuer != pinned:",
       "if False:",
       "a cached discovery result naming another issuer is used despite the pin",
       [T_EXACT, T_E2E, T_CACHE])
mutant("cached-target-bound", "providers.py",
       ("return bound is None or target.issuer == bound or self.allow_issuer_change",
        "if bound is not None and target.issuer != bound and not self.allow_issuer_change:"),
       ("return True", "if False:"),
       "a cached discovery result naming another AS is used by a bound provider",
       [T_EXACT, T_E2E, T_CACHE])
mutant("cached-resource-skip", "providers.py",
       "elif not identical_resource(target.resource, server):",
       "elif False:",
       "a cached discovery result for another resource is used without the RFC 9728 check",
       [T_CACHE_TRUST])
mutant("cached-resource-prefix", "transport.py",
       '    return resource == server_url.split("#", 1)[0]\n',
       '    return resource.startswith(server_url.split("#", 1)[0])\n',
       "a resource that merely extends the server URL (/mcp-admin) passes as identical",
       [T_CACHE_TRUST, T_DISCOVERY])

# -- token cache key -----------------------------------------------------------------------
mutant("key-issuer", "providers.py",
       "return token_key(target.issuer, target.resource, client,",
       "return token_key(None, target.resource, client,",
       "tokens of two AS (same client id and resource) share a cache entry",
       [T_EXACT, T_E2E])
mutant("key-issuer-scheme", "cache.py",
       ("return json.dumps([issuer, resource, client_id, scopes]",
        "return json.dumps([issuer, resource, client_id, scopes, credential]"),
       ("return json.dumps([resource, client_id, scopes]",
        "return json.dumps([resource, client_id, scopes, credential]"),
       "the key scheme itself drops the issuer",
       [T_EXACT, T_CACHE])
mutant("key-principal", "providers.py",
       'client = "{}#{}".format(client or "", self._cache_identity)',
       "client = client",
       "tokens of two users or workloads (same client) share a cache entry",
       [T_CROSSAPP, T_WORKLOAD, T_E2E])
mutant("key-resource", "cache.py",
       ("return json.dumps([issuer, resource, client_id, scopes]",
        "return json.dumps([issuer, resource, client_id, scopes, credential]"),
       ("return json.dumps([issuer, client_id, scopes]",
        "return json.dumps([issuer, client_id, scopes, credential]"),
       "tokens for two MCP servers of one AS share a cache entry",
       [T_E2E, T_CACHE])
mutant("discovery-key-pin", ("providers.py", "cache.py"),
       ("return json.dumps([server, self.client_id, self.expected_issuer, self.issuer,",
        "return json.dumps([server_url, client_id, expected_issuer, issuer, token_endpoint,"),
       ("return json.dumps([server, self.client_id, self.issuer,",
        "return json.dumps([server_url, client_id, issuer, token_endpoint,"),
       "providers pinned to different AS share a cached discovery result",
       [T_EXACT, T_E2E, T_CACHE])

# -- expiry arithmetic and single-flight ---------------------------------------------------
mutant("refresh-min", "providers.py",
       ("refresh_at = max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)",
        "return max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)"),
       ("refresh_at = min(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)",
        "return min(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)"),
       "tokens are renewed at half-life even when the skew is small",
       [T_E2E])
mutant("refresh-skew-sign", "providers.py",
       ("refresh_at = max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)",
        "return max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)"),
       ("refresh_at = max(token.received_at + lifetime / 2.0, expires_at + self.refresh_skew)",
        "return max(token.received_at + lifetime / 2.0, expires_at + self.refresh_skew)"),
       "tokens are renewed only after they expired (and sent expired meanwhile)",
       [T_E2E])
mutant("refresh-at-expiry", "providers.py",
       ("        return now >= refresh_at\n",
        "        return max(token.received_at + lifetime / 2.0, expires_at - self.refresh_skew)\n"),
       ("        return now >= expires_at\n",
        "        return expires_at\n"),
       "no proactive renewal: tokens are used up to the last second",
       [T_E2E])
mutant("expires-at-now", "grants.py",
       "        return self.received_at + self.expires_in\n",
       "        return time.time() + self.expires_in\n",
       "expiry counted from now, so a token never expires",
       [T_E2E, T_GRANTS])
mutant("expires-in-negative", "grants.py",
       "value != value or value < 0 or value > 10 ** 9:",
       "value != value or value > 10 ** 9:",
       "a negative expires_in is accepted",
       [T_GRANTS])
mutant("expired-token-while-renewing", "providers.py",
       "if expires_at is not None and now < expires_at:",
       "if expires_at is not None:",
       "an expired token is handed out while another thread renews",
       [T_EXACT, T_E2E])
mutant("single-flight-proactive-wait", "providers.py",
       "if not state.lock.acquire(blocking=False):",
       "if not state.lock.acquire(blocking=True):",
       "valid-token holders queue behind the renewal",
       [T_EXACT, T_E2E])
mutant("single-flight-recheck", "providers.py",
       "                    and not self._needs_refresh(token, now)):\n",
       "                    and False):\n",
       "whoever waited on the lock fetches again instead of taking the fresh token",
       [T_EXACT, T_E2E, T_CACHE])
mutant("single-flight-401", "providers.py",
       "if current is not None and current.access_token != refused:\n"
       "                    return  # another thread",
       "if False:\n                    return  # another thread",
       "every thread refused with the same token fetches a new one",
       [T_EXACT, T_E2E])
mutant("fallback-non-retryable", "providers.py",
       ("and self._clock() < fallback.expires_at and exc.retryable:",
        "if fallback is not None and self._still_valid(fallback) and exc.retryable:"),
       ("and self._clock() < fallback.expires_at:",
        "if fallback is not None and self._still_valid(fallback):"),
       "a revoked client (invalid_client) keeps using its old token silently",
       [T_E2E, T_EXACT])
mutant("retryable-4xx", "grants.py",
       "exc.retryable = response.status >= 500 or response.status == 429",
       "exc.retryable = response.status >= 400",
       "a 4xx without an OAuth body counts as a transient outage",
       [T_EXACT, T_GRANTS, T_E2E, T_CLI])

# -- 401 / 403 bounds ----------------------------------------------------------------------
mutant("401-twice", "providers.py",
       "        if retry.status_code == 401:\n            _discard(retry)\n",
       "        if retry.status_code == 401 and False:\n            _discard(retry)\n",
       "a second 401 is returned instead of raising (the refused token is not reported)",
       [T_E2E, T_BEARER])
mutant("403-any", "providers.py",
       "if challenge is not None and challenge.params.get(\"error\") == \"insufficient_scope\":\n"
       "                return self._handle_403(r, server, challenge, 0, kwargs)",
       "if challenge is not None:\n"
       "                return self._handle_403(r, server, challenge, 0, kwargs)",
       "any 403 with a challenge starts a step-up",
       [T_EXACT, T_E2E])
mutant("403-bound", "providers.py",
       "if steps >= self.max_step_up:",
       "if steps > self.max_step_up:",
       "one step-up more than max_step_up",
       [T_E2E])
mutant("exit-401-403", "cli.py",
       "and getattr(exc, \"status_code\", None) in (401, 403)):",
       "and getattr(exc, \"status_code\", None) in (401,)):",
       "a 403 refusal exits 5 (protocol) instead of 3 (authorization)",
       [T_CLI])

# -- client authentication encoding (RFC 6749 §2.3.1) --------------------------------------
mutant("basic-id-encoding", "grants.py",
       'raw = "{}:{}".format(quote_plus(client_id, safe=""), quote_plus(secret, safe=""))',
       'raw = "{}:{}".format(client_id, quote_plus(secret, safe=""))',
       "a client id with ':' or '%' is not form-encoded in Basic",
       [T_GRANTS, T_E2E])
mutant("basic-secret-encoding", "grants.py",
       'raw = "{}:{}".format(quote_plus(client_id, safe=""), quote_plus(secret, safe=""))',
       'raw = "{}:{}".format(quote_plus(client_id, safe=""), secret)',
       "a secret with reserved characters is not form-encoded in Basic",
       [T_GRANTS, T_E2E])
mutant("basic-b64-alphabet", "grants.py",
       'self._header = "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")',
       'self._header = "Basic " + base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")',
       "Basic credentials in the URL-safe alphabet",
       [T_EXACT, T_GRANTS, T_E2E])
mutant("auth-method-post-first", "grants.py",
       'elif advertised is None or "client_secret_basic" in advertised:',
       "elif advertised is None:",
       "the secret goes in the body when the AS accepts Basic too",
       [T_GRANTS, T_E2E])
mutant("duplicate-parameter", "grants.py",
       "if len(set(names)) != len(names):",
       "if False:",
       "a parameter sent twice (RFC 6749 §3.2)",
       [T_GRANTS])

# -- token response checks -----------------------------------------------------------------
mutant("access-token-dollar", "grants.py",
       ('_ACCESS_TOKEN = lazy_pattern(r"\\A[\\x20-\\x7e]+\\Z")',
        '_ACCESS_TOKEN = re.compile(r"\\A[\\x20-\\x7e]+\\Z")'),
       ('_ACCESS_TOKEN = lazy_pattern(r"^[\\x20-\\x7e]+$")',
        '_ACCESS_TOKEN = re.compile(r"^[\\x20-\\x7e]+$")'),
       "an access token ending in a line feed is accepted (header injection)",
       [T_GRANTS, T_BEARER])
mutant("token-type-any", "grants.py",
       "if token_type.lower() not in token_types:",
       "if not token_type:",
       "a DPoP or N_A token is used as a Bearer token (F2)",
       [T_GRANTS])
mutant("issued-token-type", "grants.py",
       "if issued_token_type is not None and itt != issued_token_type:",
       "if issued_token_type is not None and itt is None:",
       "an RFC 8693 exchange returning another token type is accepted",
       [T_GRANTS, T_CROSSAPP])

# -- assertion claims (RFC 7523 §3) --------------------------------------------------------
mutant("assertion-aud", "grants.py",
       "        audience = self.audience or issuer\n",
       "        audience = self.audience or token_endpoint\n",
       "the assertion aud is the token endpoint, not the issuer (7523bis)",
       [T_GRANTS, T_E2E])
mutant("assertion-exp", "grants.py",
       '"exp": now + self.lifetime,',
       '"exp": now + self.lifetime * 60,',
       "assertions live 60 times longer than configured",
       [T_GRANTS])
mutant("assertion-jti", "grants.py",
       '"jti": secrets.token_urlsafe(24),',
       '"jti": self.client_id,',
       "every assertion has the same jti (replay detection refuses the second)",
       [T_GRANTS, T_E2E])
mutant("assertion-sub", "grants.py",
       '"sub": self.client_id,',
       '"sub": audience,',
       "sub is not the client id",
       [T_GRANTS])
mutant("assertion-lifetime-bound", "grants.py",
       "0 < lifetime <= MAX_ASSERTION_LIFETIME):",
       "0 < lifetime):",
       "a day-long assertion lifetime is accepted",
       [T_GRANTS])
mutant("assertion-registered-claims", "grants.py",
       "clash = sorted(_REGISTERED_CLAIMS.intersection(extra))",
       "clash = []",
       "extra claims replace aud, iss or exp",
       [T_GRANTS])

# -- signature encoding (RFC 7515, 7518) ---------------------------------------------------
mutant("ecdsa-der", "jws.py",
       'return r.to_bytes(size, "big") + s.to_bytes(size, "big")',
       "return self._key.sign(data, ec.ECDSA(hash_alg))",
       "ECDSA signatures in DER instead of R||S",
       [T_JWS])
mutant("ecdsa-short", "jws.py",
       'return r.to_bytes(size, "big") + s.to_bytes(size, "big")',
       'return r.to_bytes((r.bit_length() + 7) // 8, "big") + s.to_bytes(size, "big")',
       "R shortened when it has leading zero octets (RFC 7518 §3.4 MUST NOT)",
       [T_JWS])
mutant("rsa-padding", "jws.py",
       "    return padding.PKCS1v15()\n",
       "    return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=32)\n",
       "RS256 signed with PSS",
       [T_JWS])
mutant("b64url-padding", "jws.py",
       'return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode("ascii")',
       'return base64.urlsafe_b64encode(bytes(data)).decode("ascii")',
       "base64url with padding in a JWS",
       [T_JWS])
mutant("jws-alg-header", "jws.py",
       '    header["alg"] = algorithm\n',
       '    header.setdefault("alg", algorithm)\n',
       "equivalent of checking alg twice",
       [T_JWS],
       equivalent="the line above already refuses a headers['alg'] that differs, so "
                  "setdefault and assignment always leave the same value")

# -- audience checks of tokens we pass on --------------------------------------------------
mutant("idjag-aud-prefix", "crossapp.py",
       'return audience in (issuer, issuer + "/") or audience + "/" == issuer',
       "return audience.startswith(issuer)",
       "an ID-JAG for https://as.example.com.evil.net goes to https://as.example.com",
       [T_EXACT, T_CROSSAPP])
mutant("idjag-aud-reverse-prefix", "crossapp.py",
       'return audience in (issuer, issuer + "/") or audience + "/" == issuer',
       "return issuer.startswith(audience)",
       "an ID-JAG whose aud is a prefix of the issuer is sent",
       [T_EXACT, T_CROSSAPP])
mutant("idjag-aud-rstrip", "crossapp.py",
       'return audience in (issuer, issuer + "/") or audience + "/" == issuer',
       'return audience.rstrip("/") == issuer.rstrip("/")',
       "an ID-JAG for issuer + '//' is sent",
       [T_EXACT, T_CROSSAPP])
mutant("idjag-aud-any", "crossapp.py",
       "if not any(_is_issuer(a, issuer) for a in audiences):",
       "if not audiences:",
       "an ID-JAG for any AS is sent",
       [T_CROSSAPP, T_EXACT])
mutant("idjag-expiry-max", "crossapp.py",
       "return grant, (min(candidates) if candidates else None)",
       "return grant, (max(candidates) if candidates else None)",
       "an ID-JAG is reused past the earlier of exp and expires_in",
       [T_EXACT, T_CROSSAPP])
mutant("workload-aud-prefix", "workload.py",
       '    return audience in (url, url + "/") or audience + "/" == url',
       "    return audience.startswith(url)",
       "a workload JWT for https://as.example.com.evil.net goes to https://as.example.com",
       [T_EXACT, T_WORKLOAD])
mutant("workload-aud-reverse-prefix", "workload.py",
       '    return audience in (url, url + "/") or audience + "/" == url',
       "    return url.startswith(audience)",
       "a workload JWT whose aud is a prefix of the issuer is sent",
       [T_EXACT, T_WORKLOAD])
mutant("workload-aud-endpoint", "workload.py",
       "if not any(_names(a, target.issuer) or _names(a, target.token_endpoint)",
       "if not any(_names(a, target.issuer) or target.token_endpoint.startswith(a)",
       "a workload JWT whose aud is a prefix of the token endpoint is sent",
       [T_EXACT, T_WORKLOAD])
mutant("workload-expired", "workload.py",
       "if exp + EXP_LEEWAY <= now:",
       "if exp + 10 * EXP_LEEWAY <= now:",
       "a workload JWT expired minutes ago is still sent",
       [T_WORKLOAD])

# -- cache file permissions ----------------------------------------------------------------
mutant("cache-file-mode", "filecache.py",
       "os.fchmod(fd, 0o600)  # whatever the umask did",
       "os.fchmod(fd, 0o644)  # whatever the umask did",
       "the token file is readable by every local user",
       [T_CACHE])
mutant("cache-dir-mode", "filecache.py",
       "os.mkdir(directory, 0o700)",
       "os.mkdir(directory, 0o755)",
       "directories created for the cache are world-readable",
       [T_CACHE])
mutant("cache-tmp-nofollow", "filecache.py",
       "os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC",
       "os.O_WRONLY | os.O_CREAT | _O_CLOEXEC",
       "the temporary file is opened through a planted symlink",
       [T_EXACT, T_CACHE])
mutant("cache-lock-mode", "filecache.py",
       ("fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)",
        "fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)"),
       ("fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o666)",
        "fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o666)"),
       "the lock file is created world-writable and followed through a symlink",
       [T_CACHE])

# -- the command's refusals ----------------------------------------------------------------
mutant("cli-refuse-secret-flags", "cli.py",
       'if hasattr(args, "refused_" + flag[2:].replace("-", "_")):',
       'if hasattr(args, "refused_" + flag[2:].replace("-", "_")) and flag == "--password":',
       "--client-secret, --token and --private-key values are accepted silently",
       [T_EXACT, T_CLI])
mutant("cli-echo-value", "cli.py",
       'detail = re.split(r"[:\'\\"]", detail, maxsplit=1)[0].strip() or "invalid value"',
       'detail = detail.strip() or "invalid value"',
       "argparse's quoted value (maybe a misplaced secret) is echoed",
       [T_CLI])
mutant("cli-echo-option", "cli.py",
       "if _SHOWN_OPTION.match(name) and len(name) <= 40:",
       "if name.startswith(\"--\"):",
       "an unknown --option made of a pasted secret is echoed",
       [T_CLI])

# -- Redis token cache: AES-GCM at rest ------------------------------------------------------
mutant("redis-aad-key", "rediscache.py",
       'kind.encode("ascii"), key.encode("utf-8")))',
       'kind.encode("ascii")))',
       "a sealed entry copied under another key (another principal's) still opens",
       [T_REDIS])
mutant("redis-nonce-fixed", "rediscache.py",
       "nonce = os.urandom(_NONCE_BYTES)",
       "nonce = bytes(_NONCE_BYTES)",
       "every entry sealed with the same AES-GCM nonce (keystream reuse)",
       [T_REDIS])

# -- DPoP proofs (RFC 9449 §4.2) ----------------------------------------------------------------
mutant("dpop-jti-fixed", "dpop.py",
       "jws.b64url_encode(secrets.token_bytes(16))",
       "jws.b64url_encode(bytes(16))",
       "every proof has the same jti, so a server's replay check refuses all but the first",
       [T_DPOP])
mutant("dpop-ath-encoding", "dpop.py",
       "return jws.b64url_encode(hashlib.sha256(raw).digest())",
       'return jws.b64url_encode(hashlib.sha256(raw).hexdigest().encode("ascii"))',
       "ath is base64url of the hex digest, not of the hash octets",
       [T_DPOP])
mutant("dpop-htu-query", "dpop.py",
       'return urlunsplit((parts.scheme, netloc, parts.path, "", ""))',
       'return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))',
       "htu keeps the query (which may carry secrets) against RFC 9449 §4.2",
       [T_DPOP])

# -- cache trust boundary (owner and modes, like OpenSSH StrictModes) -----------------------
mutant("trust-owner", "filecache.py",
       '    if st.st_uid not in (os.geteuid(), 0):\n        return "{} belongs to another user',
       '    if False:\n        return "{} belongs to another user',
       "a cache file or directory owned by another user is trusted",
       [T_CACHE_TRUST, T_CACHE])
mutant("trust-group-write", "filecache.py",
       "    if st.st_mode & 0o022:\n",
       "    if st.st_mode & 0o002:\n",
       "a group-writable cache file or directory is trusted",
       [T_CACHE_TRUST, T_CACHE])
mutant("trust-sticky", "filecache.py",
       "if own or not st.st_mode & stat.S_ISVTX:",
       "if own:",
       "a world-writable parent directory without the sticky bit is trusted",
       [T_CACHE_TRUST, T_CACHE])
mutant("trust-readable-tightened", "filecache.py",
       'if os.name == "posix" and st.st_mode & 0o077:',
       'if os.name == "posix" and st.st_mode & 0o007:',
       "a group-readable cache file is left readable",
       [T_CACHE_TRUST, T_CACHE])
mutant("trust-regular-file", "filecache.py",
       "        if not stat.S_ISREG(st.st_mode):\n",
       "        if False:\n",
       "a FIFO or device at the cache path is used",
       [T_CACHE_TRUST, T_CACHE])

mutant("wire-403-challenge", "_wire.py",
       'if status in (401, 403) and "WWW-Authenticate" in headers:',
       'if status == 401 and "WWW-Authenticate" in headers:',
       "a 403 insufficient_scope challenge is reported as a plain HTTP error",
       ["tests/test_client.py", "tests/test_client_wire.py"])

mutant("signing-key-alg", "jws.py",
       "        if algorithm not in self._algorithms:  # which only holds",
       "        if False:  # which only holds",
       "a key signs under an alg of another key type (RFC 8725 §3.1)",
       [T_JWS, T_GRANTS])
mutant("assertion-prepared-stale", "grants.py",
       "if prepared is None or prepared[0] != settings:",
       "if prepared is None:",
       "an assertion keeps the header of the first one after typ, kid or alg changed",
       [T_GRANTS])
mutant("sse-idle-never-reset", "_wire.py",
       "idle = 0 if parser.last_event_id != seen else idle + 1",
       "idle += 1",
       "resumes that bring new events back off as if the server sent nothing (the SSE "
       "retry field ignored)",
       ["tests/test_client_wire.py"])

# -- secret masking (credentials echoed by a peer) ---------------------------------------
mutant("mask-remember-stale", "_mask.py",
       "            _remembered.popitem(last=False)\n        _dirty = True\n",
       "            _remembered.popitem(last=False)\n",
       "a token or assertion obtained after the last rebuild is shown unmasked",
       [T_MASK, T_MASK_KILLERS])
mutant("mask-hold-stale", "_mask.py",
       "        _held[handle] = held\n        _dirty = True\n",
       "        _held[handle] = held\n",
       "a client secret registered after the last rebuild is shown unmasked",
       [T_MASK, T_MASK_KILLERS])
mutant("mask-never-rebuilt", "_mask.py",
       "    if _dirty:\n        with _lock:",
       "    if False:\n        with _lock:",
       "nothing registered since import is ever masked",
       [T_MASK])
mutant("mask-form-encoded", "_mask.py",
       'for encoded in (quote_plus(value, safe=""), quote(value, safe="")):',
       'for encoded in (quote(value, safe=""),):',
       "a secret echoed form-encoded (spaces as '+') is shown",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-percent-lowercase", "_mask.py",
       "out.add(_PERCENT.sub(lambda m: m.group(0).lower(), encoded))",
       "out.add(encoded)",
       "a secret echoed with lowercase percent-escapes is shown",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-json-escaped", "_mask.py",
       "out = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}",
       "out = {value}",
       "a secret echoed JSON-escaped (a quote or backslash in it) is shown",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-basic-base64", "_mask.py",
       ('encoded = {base64.b64encode(p.encode("utf-8")).decode("ascii").rstrip("=") '
        'for p in pairs}'),
       "encoded = set()",
       "the Base64 of id:secret (the Basic header value) echoed by a peer is shown",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-min-length", "_mask.py",
       "MIN_LENGTH = 8\n",
       "MIN_LENGTH = 40\n",
       "secrets shorter than 40 characters are never masked",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-longest-first", "_mask.py",
       "_forms = tuple(sorted(every, key=len, reverse=True))",
       "_forms = tuple(sorted(every, key=len))",
       "a shorter form masked first leaves the rest of a longer one shown",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-one-pass", "_mask.py",
       "_PASSES = 4\n",
       "_PASSES = 1\n",
       "a credential split around another one's mask survives",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS, T_CLI])
mutant("mask-log-filter", "_mask.py",
       "                record.msg = masked\n",
       "                record.msg = message\n",
       "log records keep the credential",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_E2E, T_GRANTS])
mutant("mask-before-truncate", "errors.py",
       ('out = mask("".join(" " if _is_unsafe_char(ch) else ch for ch in mask(value)))',
        "out = mask(clean_text(mask(value[:window])))"),
       ('out = "".join(" " if _is_unsafe_char(ch) else ch for ch in value)',
        "out = mask(clean_text(mask(value[:limit])))"),
       "peer text is cut before masking, so a prefix of a secret survives",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS])
mutant("mask-exception-message", "errors.py",
       "            message = mask(message)\n",
       "            message = message\n",
       "exception messages built from peer text keep the credential",
       [T_MASK_KILLERS, T_MASK, T_ERRORS, T_GRANTS])
mutant("mask-held-secret", "grants.py",
       "_mask.hold(self, secret, *_mask.basic_forms(client_id, secret))",
       "_mask.hold(self, *_mask.basic_forms(client_id, secret))",
       "the raw client secret (Basic) is not registered for masking",
       [T_MASK_KILLERS, T_MASK, T_GRANTS, T_ERRORS, T_CLI])
mutant("mask-access-token", "grants.py",
       "_mask.remember(access_token, refresh_token)",
       "_mask.remember(refresh_token)",
       "an access token echoed by a peer is shown",
       [T_MASK, T_GRANTS, T_ERRORS, T_E2E])
mutant("mask-assertion", "grants.py",
       "_mask.remember(assertion)",
       "pass",
       "a client assertion echoed by a peer is shown",
       [T_MASK, T_GRANTS, T_ERRORS])
mutant("mask-workload-jwt", "workload.py",
       "_mask.remember(value)",
       "pass",
       "a workload JWT echoed by the AS is shown",
       [T_MASK, T_WORKLOAD])

# -- scope syntax (RFC 6749 §3.3) --------------------------------------------------------------
mutant("scope-anchor", "grants.py",
       'r"\\A[\\x21\\x23-\\x5b\\x5d-\\x7e]+\\Z")',
       'r"\\A[\\x21\\x23-\\x5b\\x5d-\\x7e]+$")',
       "a scope token with a final line break is accepted (`$` matches before it)",
       [T_GRANTS])

# -- fork safety (a child never inherits a lock nobody in it will release) --------------------
mutant("fork-pid-check", "_fork.py",
       "    if os.getpid() != _pid:\n",
       "    if False:\n",
       "a fork the hook did not see (Python 3.6, a fork from C) keeps the parent's held locks",
       [T_FORK])
mutant("fork-reset-objects", "_fork.py",
       "        obj._after_fork()\n",
       "        pass\n",
       "a forked child blocks for good on a lock a thread of its parent held",
       [T_FORK])

mutant("fork-check-slow-path", "providers.py",
       "        _fork.check()  # what follows takes locks (Python 3.6 has no fork hook)\n"
       "        state = self._states.get(server)\n",
       "        state = self._states.get(server)\n",
       "the per-request path makes no fork check, and its slow path (locks) forgets it too",
       [T_FORK])
mutant("fork-check-401", "providers.py",
       "        if r.status_code in _CHALLENGE_STATUSES:\n            _fork.check()",
       "        if False:\n            _fork.check()",
       "a child answering a 401 takes the provider's lock a thread of its parent held",
       [T_FORK])

mutant("fingerprint-secret-unstretched", "cache.py",
       '_PUBLIC_PURPOSES = frozenset(["jwk_thumbprint", "instance"])',
       '_PUBLIC_PURPOSES = frozenset(["jwk_thumbprint", "instance", "client_secret"])',
       "a weak client secret is one SHA-256 away from the fingerprint in a cache or Redis key",
       [T_CACHE_TRUST])

# -- the per-request fast path keeps every check of the slow one -----------------------------
T_PERF = "tests/test_perf_paths.py"
mutant("fast-covered", "providers.py",
       "if (fast is not None and state.covered is self.resource\n",
       "if (fast is not None\n",
       "a record filled by token(url) sends the token to a server outside `resource`",
       [T_PERF])
mutant("fast-target", "providers.py",
       "                    and fast[2] is state.target and fast[3] is state.challenge_scope\n"
       "                    and fast[4] is state.step_up_scope and self._clock() < fast[1]):\n"
       "                if fast[5]",
       "                    and fast[3] is state.challenge_scope\n"
       "                    and fast[4] is state.step_up_scope and self._clock() < fast[1]):\n"
       "                if fast[5]",
       "a token read under an old discovery result outlives a moved authorization server",
       [T_PERF, T_E2E])
mutant("fast-clock", "providers.py",
       "                    and fast[4] is state.step_up_scope and self._clock() < fast[1]):\n"
       "                if fast[5]",
       "                    and fast[4] is state.step_up_scope):\n"
       "                if fast[5]",
       "a cached token is sent past its renewal time (and past its expiry)",
       [T_PERF, T_E2E])
mutant("fast-challenge-scope", "providers.py",
       "                    and fast[2] is state.target and fast[3] is state.challenge_scope\n",
       "                    and fast[2] is state.target\n",
       "a token read before a 401 named a new scope is sent under the new one",
       [T_PERF])
mutant("fast-step-up", "providers.py",
       "                    and fast[4] is state.step_up_scope and self._clock() < fast[1]):\n"
       "                if fast[5]",
       "                    and self._clock() < fast[1]):\n"
       "                if fast[5]",
       "after a 403 step-up, the token without the new scope is sent again",
       [T_PERF, T_E2E])
mutant("bearer-fast-server", "providers.py",
       "                server is covered[1] and self.server_url is covered[0]):",
       "                self.server_url is covered[0]):",
       "a bound BearerTokenProvider sends its token anywhere after one good request",
       [T_PERF])
mutant("bearer-fast-binding", "providers.py",
       "                server is covered[1] and self.server_url is covered[0]):",
       "                server is covered[1]):",
       "a changed server_url binding is not checked again",
       [T_PERF])
mutant("bearer-fast-dpop", "providers.py",
       "        if token is field[0] and self._dpop is None:",
       "        if token is field[0]:",
       "a DPoP-bound bearer token goes out as Bearer, without a proof, after the first request",
       [T_PERF, T_DPOP])
mutant("bearer-fast-unchecked", "providers.py",
       "        if token is field[0] and self._dpop is None:",
       "        if token is not None and self._dpop is None:",
       "a new token from the source is sent without the RFC 6749 A.12 check (header injection)",
       [T_PERF, T_BEARER])
mutant("fast-record-dpop", "providers.py",
       "                                  None if self._dpop is not None and\n",
       "                                  None if False and\n",
       "a DPoP-bound token is sent as Bearer, without a proof, from the second request on",
       [T_DPOP, T_PERF])

# -- back-off and Retry-After (RFC 9110 §10.2.3, RFC 6585 §4) -----------------------------------
mutant("retry-after-429", "grants.py",
       "if response.status in (429, 503):",
       "if response.status == 503:",
       "a 429's Retry-After is ignored",
       [T_BACKOFF])
mutant("retry-after-negative", "grants.py",
       'r"\\A[0-9]{1,9}\\Z")',
       'r"\\A-?[0-9]{1,9}\\Z")',
       "a negative Retry-After is taken as a delay",
       [T_BACKOFF])
mutant("retry-after-cap", "providers.py",
       "seconds = min(float(exc.retry_after), self.max_retry_after)",
       "seconds = float(exc.retry_after)",
       "a server's Retry-After of days stops every token request for days",
       [T_BACKOFF])
mutant("retry-after-shared", "providers.py",
       "_AUTHORIZATION_SERVERS.hold(key, seconds, exc)",
       "self._holds.hold(key, seconds, exc)",
       "other providers of the process keep sending to a server that asked for a pause",
       [T_BACKOFF])
mutant("holdoff-later-deadline-wins", "_holdoff.py",
       "if current is None or current[0] < deadline:",
       "if True:",
       "a shorter hold (another provider's hold_off) cuts short a server's Retry-After",
       [T_BACKOFF])
mutant("holdoff-expiry", "_holdoff.py",
       "        if left <= 0:\n",
       "        if left <= -1:\n",
       "a hold lasts a second longer than asked (an expired deadline still raises)",
       [T_BACKOFF])
