"""Benchmark (not a test): token requests made by 100 calls while the AS is down.

Run: ``python tests/bench/bench_outage.py``. Each scenario makes 100 ``provider.token()``
calls, back to back and then paced (one call every 50 ms, 5 s in all), while the loopback
authorization server answers every token request with 503 ``temporarily_unavailable``
(with ``Retry-After: 2``, or without the header), or while nothing listens on its port.
Prints the token requests that reached the server (or connection attempts) and the
slowest call. Nothing is asserted.
"""

import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from mcpauth import ClientCredentialsProvider, MCPAuthError  # noqa: E402
from mcpauth.testing import LoopbackStack  # noqa: E402

CALLS = 100


def run(provider, pace):
    slowest = 0.0
    for _ in range(CALLS):
        started = time.monotonic()
        try:
            provider.token()
        except MCPAuthError:
            pass
        slowest = max(slowest, time.monotonic() - started)
        if pace:
            time.sleep(pace)
    return slowest


def with_server(retry_after, pace):
    with LoopbackStack() as stack:
        headers = [("Retry-After", retry_after)] if retry_after else []
        stack.as_.fail_next("temporarily_unavailable", status=503, count=10 * CALLS,
                            headers=headers)
        provider = ClientCredentialsProvider(
            stack.client_id, stack.client_secret, token_endpoint=stack.as_.token_endpoint,
            issuer=stack.issuer + "/" + str(pace) + str(retry_after),  # no shared hold
            server_url=stack.mcp_url)
        slowest = run(provider, pace)
        return len(stack.as_.token_requests()), slowest


def without_server(pace):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    attempts = []

    class Counting(ClientCredentialsProvider):
        def _fetch_token(self, target, scope):
            attempts.append(1)
            return ClientCredentialsProvider._fetch_token(self, target, scope)

    provider = Counting("c", "s", token_endpoint="http://127.0.0.1:%d/token" % port,
                        issuer="http://127.0.0.1:%d" % port,
                        server_url="http://127.0.0.1:%d/mcp" % port)
    slowest = run(provider, pace)
    return len(attempts), slowest


def main():
    print("%-44s %10s %12s" % ("100 calls during an outage", "requests", "slowest call"))
    for pace in (0, 0.05):
        how = "back to back" if not pace else "one per 50 ms"
        for label, result in (
                ("503 + Retry-After: 2, " + how, with_server("2", pace)),
                ("503 without Retry-After, " + how, with_server(None, pace)),
                ("connection refused, " + how, without_server(pace))):
            print("%-44s %10d %10.1f ms" % (label, result[0], result[1] * 1000))


if __name__ == "__main__":
    main()
