"""Benchmark (not a test): what DPoP costs per request (RFC 9449 §7.1 proofs).

Run: ``python tests/bench/bench_dpop.py``. Prints median times; nothing is asserted.

For ES256 and EdDSA keys, compares:

* the hand floor: one signature over a pre-serialised header and the request's claims
  (``jti``, ``htm``, ``htu``, ``iat``, ``ath``), base64url, and the two headers set on a
  prepared request: the least any DPoP client must do per request;
* ``DPoPKey.proof()`` alone;
* the whole attach path: ``provider(prepared_request)`` with a cached DPoP token
  (token lookup, proof, ``Authorization: DPoP`` and ``DPoP`` headers).

The target is an attach cost of at most 1.2x the ES256 floor.
"""

import base64
import hashlib
import json
import os
import secrets
import statistics
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import requests  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: E402
    decode_dss_signature,
)

from mcpauth import ClientCredentialsProvider  # noqa: E402
from mcpauth.dpop import DPoPKey  # noqa: E402
from mcpauth.testing import LoopbackStack  # noqa: E402


def interleaved_us(stmts, number, rounds=15):
    """Median microseconds per call of each statement, timed in alternation round by
    round, so that load from other processes falls on all of them alike."""
    samples = [[] for _ in stmts]
    for _ in range(rounds):
        for i, stmt in enumerate(stmts):
            samples[i].append(timeit.timeit(stmt, number=number) / number * 1e6)
    return [statistics.median(x) for x in samples]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_floor(key, alg, url, token):
    """The per-request work of a minimal hand-written DPoP client."""
    private = key.signing_key._key
    header = b64(json.dumps({"typ": "dpop+jwt", "alg": alg, "jwk": key.public_jwk()},
                            separators=(",", ":")).encode())
    prepared = requests.Request("POST", url, data=b"{}").prepare()

    if alg == "ES256":
        def sign(data):
            r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sign = private.sign

    def once():
        claims = {"jti": b64(secrets.token_bytes(16)), "htm": "POST", "htu": url,
                  "iat": int(time.time()),
                  "ath": b64(hashlib.sha256(token.encode("ascii")).digest())}
        signing_input = header + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
        proof = signing_input + "." + b64(sign(signing_input.encode("ascii")))
        prepared.headers["Authorization"] = "DPoP " + token
        prepared.headers["DPoP"] = proof
    return once


def main():
    number = 200
    with LoopbackStack() as stack:
        floor_es256 = None
        print("DPoP per-request cost (median of 15 interleaved rounds of %d):" % number)
        for alg in ("ES256", "EdDSA"):
            key = DPoPKey.generate(alg)
            provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                                 dpop_key=key, server_url=stack.mcp_url)
            token = provider.token()
            prepared = requests.Request("POST", stack.mcp_url, data=b"{}").prepare()
            floor, proof, attach = interleaved_us([
                hand_floor(key, alg, stack.mcp_url, token),
                lambda k=key, t=token: k.proof("POST", stack.mcp_url, t),
                lambda p=provider, r=prepared: p(r)], number)
            if floor_es256 is None:
                floor_es256 = floor
            print("  %-5s hand floor (sign + headers)        %8.1f us" % (alg, floor))
            print("  %-5s DPoPKey.proof()                     %8.1f us  x%.2f of its floor"
                  % (alg, proof, proof / floor))
            print("  %-5s provider(request), cached token     %8.1f us  x%.2f of its floor,"
                  " x%.2f of the ES256 floor" % (alg, attach, attach / floor,
                                                  attach / floor_es256))


if __name__ == "__main__":
    main()
