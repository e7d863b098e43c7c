"""Benchmarks (not tests): each peer-facing parser on the worst input known for it, at its cap.

Run: ``python tests/bench/bench_hostile_input.py``. Prints seconds per call (best of 3)
for an input of the size the caps allow (1 MiB for metadata, token responses and other
bodies; 16 MiB for a JSON-RPC error message); nothing is asserted. The linearity itself
is checked by the timing ladders in tests/test_hostile_input.py.
"""

import base64
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from mcpauth import discovery, grants, jws  # noqa: E402
from mcpauth.errors import MCPAuthError, clean_peer_text  # noqa: E402
from mcpauth.providers import _supported_scope  # noqa: E402
from mcpauth.transport import HttpResponse, loads_json  # noqa: E402

MIB = 1024 * 1024
JSON = (("Content-Type", "application/json"),)


def best(func, arg, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            func(arg)
        except (ValueError, MCPAuthError):
            pass
        times.append(time.perf_counter() - start)
    return min(times)


def worst_json(size):
    # Over 200 brackets (the nesting pre-scan runs), then an unterminated string of \".
    return "[]" * 201 + '"' + '\\"' * ((size - 404) // 2)


def scopes_doc(size):
    scopes, total, i = [], 0, 0
    while total < size - 200:
        scopes.append("scope:%d" % i)
        total += len(scopes[-1]) + 4  # quotes, comma and space
        i += 1
    return json.dumps({"resource": "https://mcp.example/mcp",
                       "authorization_servers": ["https://as.example"],
                       "scopes_supported": scopes}), scopes


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def main():
    doc, scopes = scopes_doc(MIB - 4096)
    token_body = worst_json(MIB).encode("ascii")
    part = b64(worst_json(MIB * 3 // 4).encode("ascii"))
    rows = [
        ("loads_json, unterminated \\\" string after 402 brackets", loads_json, worst_json(MIB)),
        ("loads_json, 200 levels then 1 MiB of []", loads_json,
         "[" * 199 + "[]," * (MIB // 3) + "[]" + "]" * 199),
        ("loads_json, 4300-digit integers filling 1 MiB", loads_json,
         "[" + ",".join(["7" * 4300] * (MIB // 4301)) + "]"),
        ("parse_protected_resource_metadata, %d scopes" % len(scopes),
         discovery.parse_protected_resource_metadata,
         HttpResponse(200, JSON, doc.encode("ascii"), "https://mcp.example/.well-known/x")),
        ("normalize_scope of those scopes (once per list)", grants.normalize_scope, scopes),
        ("  then per request with a cached token (the memoised scope)",
         _supported_scope, tuple(scopes)),
        ("parse_token_response, worst JSON", grants.parse_token_response,
         HttpResponse(200, JSON, token_body, "https://as.example/token")),
        ("parse_www_authenticate, 1 MiB of escaped quotes", discovery.parse_www_authenticate,
         'Bearer realm="' + '\\"' * (MIB // 2) + '"'),
        ("parse_www_authenticate, 1 MiB of parameters", discovery.parse_www_authenticate,
         "Bearer " + ", ".join('p%d="v"' % i for i in range(MIB // 12))),
        ("decode_unverified, 1 MiB token", jws.decode_unverified, part + "." + part + ".s"),
        ("clean_peer_text, 16 MiB of U+2028", clean_peer_text, "\u2028" * (16 * MIB)),
    ]
    try:
        import cryptography  # noqa: F401
    except ImportError:
        pass
    else:
        rows.append(("load_private_key, 1 MiB JWK text",
                     jws.load_private_key,
                     '{"kty": "EC", "crv": "P-256", "d": ' + worst_json(MIB - 40)))
        rows.append(("verify, 1 MiB token", lambda t: jws.verify(t, KEY, ["ES256"]),
                     part + "." + part + ".s"))
        n = (1 << 8191) | 1
        rows.append(("load_private_key, RSA JWK at the 8192-bit bound (bad d)",
                     jws.load_private_key,
                     {"kty": "RSA", "n": b64(n.to_bytes(1024, "big")), "e": "AQAB",
                      "d": b64((n - 2).to_bytes(1024, "big"))}))
    print("Python {}.{}".format(*sys.version_info[:2]))
    for name, func, arg in rows:
        print("  {:<68} {:8.4f} s".format(name, best(func, arg)))


if __name__ == "__main__":
    try:
        KEY = jws.generate_private_key("EC")
    except MCPAuthError:
        KEY = None
    main()
