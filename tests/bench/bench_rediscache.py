"""Benchmarks (not tests): what RedisTokenCache costs and saves.

Run: ``python tests/bench/bench_rediscache.py`` (or ``tox -e bench``); needs redis-server
and redis-py. Prints numbers; nothing is asserted.

1. Added latency per request with a warm cache: ``provider(prepared_request)`` with the
   memory cache versus a warm RedisTokenCache (its memory layer answers; no Redis round
   trip) versus a raw Redis GET, for scale.
2. Token requests when N processes start cold at the same moment (target: 1 for every N).
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))

import redis  # noqa: E402
import requests  # noqa: E402

from mcpauth import ClientCredentialsProvider, RedisTokenCache  # noqa: E402
from mcpauth.rediscache import generate_cache_key  # noqa: E402
from mcpauth.testing import LoopbackStack  # noqa: E402

from redis_server import RedisServer, spawn_workers, worker_results  # noqa: E402


def median_us(stmt, number, repeat=7):
    times = timeit.repeat(stmt, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def row(name, us, base=None):
    ratio = "" if base is None else "  x%.2f (+%.2f us)" % (us / base, us - base)
    print("  %-58s %10.2f us%s" % (name, us, ratio))


def bench_warm(server, key):
    print("Warm cache, per request (provider(prepared_request)):")
    with LoopbackStack() as stack:
        memory = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                           server_url=stack.mcp_url)
        shared = ClientCredentialsProvider(
            stack.client_id, stack.client_secret, server_url=stack.mcp_url,
            cache=RedisTokenCache.from_url(server.unix_url, key))
        memory.token()
        shared.token()
        req = requests.Request("POST", stack.mcp_url, data=b"{}",
                               headers={"Content-Type": "application/json"}).prepare()
        base = median_us(lambda: memory(req.copy()), 20000)
        row("MemoryTokenCache (the default)", base)
        row("RedisTokenCache, warm", median_us(lambda: shared(req.copy()), 20000), base)
        client = redis.Redis(unix_socket_path=server.socket, socket_timeout=1)
        client.set("bench", "x" * 200)
        row("for scale: one Redis GET over a unix socket", median_us(
            lambda: client.get("bench"), 2000))


def bench_cold(server, key):
    print("Token requests when N processes start cold together (target 1):")
    for n in (1, 10, 50):
        server.kill()
        server.start()  # empty
        tmp = tempfile.mkdtemp()
        try:
            with LoopbackStack() as stack:
                stack.as_.delay = 0.2
                started = time.monotonic()
                results = worker_results(spawn_workers(n, [server.unix_url, server.tcp_url],
                                                       key, stack, tmp))
                wall = time.monotonic() - started
                errors = sum(r["errors"] for r in results)
                print("  N=%-3d token requests: %d, distinct tokens: %d, errors: %d, "
                      "slowest cold call %.2f s (wall %.1f s incl. start-up)" % (
                          n, len(stack.as_.token_requests()),
                          len({r["tokens"][0] for r in results if r["tokens"]}), errors,
                          max(r["first"] for r in results), wall))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    print("RedisTokenCache benchmarks: Python %s, redis-py %s" % (
        sys.version.split()[0], redis.__version__))
    server = RedisServer().start()
    key = generate_cache_key()
    try:
        bench_warm(server, key)
        bench_cold(server, key)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
