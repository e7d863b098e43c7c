"""One "host" process of the fleet tests in test_rediscache.py.

Configuration comes from the environment (the client secret and cache key never go on a
command line). The process builds its provider and cache, says it is ready, waits for the
go file, then either takes one token (mode "once") or calls token() in a loop for
WORKER_SECONDS after the first one (mode "loop"), and prints a JSON summary on stdout.
"""

import json
import os
import sys
import time
import warnings

from mcpauth import ClientCredentialsProvider
from mcpauth.rediscache import RedisTokenCache


def main():
    env = os.environ
    warnings.simplefilter("ignore")  # the warnings are the parent's business (stderr noise)
    cache = RedisTokenCache.from_url(env["WORKER_REDIS_URL"], env["WORKER_CACHE_KEY"],
                                     timeout=0.5, retry_interval=0.3, lock_wait=10)
    provider = ClientCredentialsProvider(env["WORKER_CLIENT_ID"], env["WORKER_CLIENT_SECRET"],
                                         server_url=env["WORKER_MCP_URL"], cache=cache)
    with open(os.path.join(env["WORKER_READY_DIR"], str(os.getpid())), "w"):
        pass
    go = env["WORKER_GO_FILE"]
    while not os.path.exists(go):
        time.sleep(0.002)
    tokens = []
    calls = errors = 0
    first = slowest = 0.0  # the first (cold) call; the slowest of the others
    end = None
    while True:
        started = time.monotonic()
        try:
            token = provider.token()
        except Exception as exc:  # report, never crash: the parent counts failures
            errors += 1
            sys.stderr.write("call failed: {}\n".format(type(exc).__name__))
        else:
            if not tokens or tokens[-1] != token:
                tokens.append(token)
        calls += 1
        if end is None:  # the run lasts WORKER_SECONDS from the first token on
            first = time.monotonic() - started
            end = time.monotonic() + float(env.get("WORKER_SECONDS", "0"))
        else:
            slowest = max(slowest, time.monotonic() - started)
        if env["WORKER_MODE"] == "once" or time.monotonic() >= end:
            break
        time.sleep(0.02)
    json.dump({"calls": calls, "errors": errors, "tokens": tokens, "first": first,
               "slowest": slowest},
              sys.stdout)


if __name__ == "__main__":
    main()
