"""Cold flows against loopback servers: requests to the first 200, and after a 401;
token requests when 8, 32 and 128 threads start cold at once.

Run: ``python tests/bench/bench_flows.py [--smoke]``. Counts are HTTP requests the
servers received (lower is better); times are wall medians. Peers are given what they
need that mcpauth discovers (the token endpoint), and share one client/session across
threads as their documentation suggests.
"""

import threading
import time

from _harness import SMOKE, peer, versions

import requests

from mcpauth import ClientCredentialsProvider
from mcpauth.testing import LoopbackStack

BODY = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-11-25"}


def served(stack):
    return len(stack.mcp.requests) + len(stack.as_.requests)


def post(session, stack):
    response = session.post(stack.mcp_url, json=BODY, headers=HEADERS)
    assert response.status_code == 200, response.status_code


def to_first_200(stack):
    before = served(stack)
    session = requests.Session()
    session.auth = ClientCredentialsProvider(stack.client_id, stack.client_secret)
    post(session, stack)
    cold = served(stack) - before
    stack.as_.revoke()
    before = served(stack)
    post(session, stack)
    return cold, served(stack) - before


def threads(stack, count, make_auth):
    """Token requests and wall time when ``count`` threads call at once, cold."""
    auth = make_auth()
    session = requests.Session()
    session.auth = auth
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=count)
    session.mount("http://", adapter)
    before = len(stack.as_.token_requests())
    barrier = threading.Barrier(count)
    errors = []

    def work():
        barrier.wait()
        try:
            post(session, stack)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(count)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    session.close()
    if errors:
        return "error: %s" % type(errors[0]).__name__, elapsed
    return len(stack.as_.token_requests()) - before, elapsed


def authlib_auth(stack):
    rc = peer("authlib.integrations.requests_client")
    if rc is None:
        return None
    lock = threading.Lock()
    state = {}

    class Auth(requests.auth.AuthBase):
        # Authlib's OAuth2Session.fetch_token per thread without a shared cache is what
        # its client credentials examples do; a lock-guarded shared token is the best
        # a user can build on it: both shown.
        def __call__(self, r):
            with lock:
                if "token" not in state:
                    s = rc.OAuth2Session(stack.client_id, stack.client_secret)
                    state["token"] = s.fetch_token(stack.as_.token_endpoint,
                                                   grant_type="client_credentials",
                                                   resource=stack.mcp_url)
            r.headers["Authorization"] = "Bearer " + state["token"]["access_token"]
            return r
    return Auth


def main():
    print("cold flows; " + versions())
    with LoopbackStack() as stack:
        cold, after = to_first_200(stack)
        print("\nRequests to the first 200 (mcpauth ClientCredentialsProvider, nothing configured "
              "but the URL and the credentials)")
        print("  cold: %d (401, PRM, AS metadata, token, retry)" % cold)
        print("  after the token is revoked (401): %d" % after)
        print("\nToken requests when N threads start cold at once (and wall time)")
        for count in ((8,) if SMOKE else (8, 32, 128)):
            rows = [("mcpauth ClientCredentialsProvider",
                     lambda: ClientCredentialsProvider(stack.client_id, stack.client_secret)),
                    ("mcpauth, given token_endpoint= (as the peer is)",
                     lambda: ClientCredentialsProvider(
                         stack.client_id, stack.client_secret, issuer=stack.issuer,
                         token_endpoint=stack.as_.token_endpoint, resource=stack.mcp_url))]
            peer_auth = authlib_auth(stack)
            if peer_auth is not None:
                rows.append(("Authlib fetch_token under a lock (serialised)", peer_auth))
            for name, make in rows:
                tokens, elapsed = threads(stack, count, make)
                print("  %3d threads  %-48s %s token request(s)  %7.1f ms"
                      % (count, name, tokens, elapsed * 1e3))


if __name__ == "__main__":
    main()
