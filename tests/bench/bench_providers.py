"""Benchmarks (not tests): what mcpauth costs per request and per assertion.

Run: ``python tests/bench/bench_providers.py`` (or ``tox -e bench``). Prints a table of
median times over repeated runs; nothing is asserted. Numbers depend on the machine.

1. Adapter overhead with a cached token: ``provider(prepared_request)`` versus setting
   the header by hand, and a full loopback round trip with and without the provider.
2. Assertion signing: one ``private_key_jwt`` client assertion per algorithm.
3. Key loading (RSA keys are validated by cryptography, which is slow).
"""

import os
import statistics
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import requests  # noqa: E402

from mcpauth import BearerTokenProvider, ClientCredentialsProvider, jws  # noqa: E402
from mcpauth.grants import PrivateKeyJwt  # noqa: E402
from mcpauth.testing import LoopbackStack  # noqa: E402


def median_us(stmt, number, repeat=7):
    times = timeit.repeat(stmt, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def row(name, us, base=None):
    ratio = "" if base is None else "  x%.2f" % (us / base)
    print("  %-58s %10.1f us%s" % (name, us, ratio))


def bench_adapter():
    print("Adapter, cached token (per request):")
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             server_url=stack.mcp_url)
        token = provider.token()
        req = requests.Request("POST", stack.mcp_url, data=b"{}",
                               headers={"Content-Type": "application/json"}).prepare()

        def by_hand():
            r = req.copy()
            r.headers["Authorization"] = "Bearer " + token
            return r

        def with_provider():
            return provider(req.copy())

        base = median_us(by_hand, 20000)
        row("PreparedRequest.copy() + header set by hand", base)
        row("PreparedRequest.copy() + ClientCredentialsProvider", median_us(with_provider, 20000),
            base)
        byo = BearerTokenProvider(token)
        row("PreparedRequest.copy() + BearerTokenProvider",
            median_us(lambda: byo(req.copy()), 20000), base)

        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                     "io.modelcontextprotocol/clientCapabilities": {}}}}
        headers = {"Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
        plain = requests.Session()
        plain.headers["Authorization"] = "Bearer " + token
        authed = requests.Session()
        authed.auth = provider
        plain.post(stack.mcp_url, json=body, headers=headers)
        authed.post(stack.mcp_url, json=body, headers=headers)
        base = median_us(lambda: plain.post(stack.mcp_url, json=body, headers=headers), 200)
        row("loopback POST, token in session headers", base)
        row("loopback POST, session.auth = provider",
            median_us(lambda: authed.post(stack.mcp_url, json=body, headers=headers), 200), base)
        plain.close()
        authed.close()


def bench_signing():
    print("Client assertion signing (per assertion):")
    keys = [("RS256", jws.generate_private_key("RSA", key_size=2048)),
            ("PS256", None),
            ("ES256", jws.generate_private_key("EC", curve="P-256")),
            ("ES384", jws.generate_private_key("EC", curve="P-384")),
            ("EdDSA", jws.generate_private_key("OKP"))]
    keys[1] = ("PS256", keys[0][1])
    for alg, key in keys:
        auth = PrivateKeyJwt("bench-client", key, alg)
        us = median_us(lambda auth=auth: auth.build_assertion("https://as.example", "x"), 300)
        row("%s build_assertion (claims, JSON, sign, base64url)" % alg, us)


def bench_loading():
    print("Key loading:")
    from cryptography.hazmat.primitives import serialization

    for kty, kw in (("RSA", {"key_size": 2048}), ("EC", {"curve": "P-256"})):
        key = jws.generate_private_key(kty, **kw)
        pem = key._key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        us = median_us(lambda pem=pem: jws.load_private_key(pem), 20)
        row("load_private_key(%s PEM)" % kty, us)


def main():
    import cryptography

    print("mcpauth benchmarks: Python %s, requests %s, cryptography %s" % (
        sys.version.split()[0], requests.__version__, cryptography.__version__))
    start = time.monotonic()
    bench_adapter()
    bench_signing()
    bench_loading()
    print("done in %.1f s" % (time.monotonic() - start))


if __name__ == "__main__":
    main()
