"""A cron run as a process: ``mcpauth call`` with a FileTokenCache, cold and warm.

Run: ``python tests/bench/bench_cron.py [--smoke]``. Loopback servers run in this
process; every row is a new ``python`` process that calls the ``add`` tool once
(protocol 2026-07-28, stateless) and exits. The floor is a process that imports
requests and sends that one POST with a token it already knows. Rows: mcpauth warm
(the token and discovery are in the cache file: 1 HTTP request), mcpauth cold (an
empty cache file: metadata, token, call), with a client secret and with a private key
(RS256 PEM file); peers (cold: they keep no token cache between processes):
Authlib's and requests-oauthlib's client credentials ``fetch_token`` + the POST.
Peak RSS is each process's ``ru_maxrss``.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from _harness import MINIMA, ROOT, SMOKE, peer, table, versions

from mcpauth import jws
from mcpauth.testing import LoopbackStack

VERSION = "2026-07-28"
BODY = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 2, "b": 3},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION,
                             "io.modelcontextprotocol/clientCapabilities": {},
                             "io.modelcontextprotocol/clientInfo": {"name": "cron",
                                                                    "version": "1"}}}}

FLOOR = """import sys, requests
r = requests.post(sys.argv[1], json=%r, headers={"Authorization": "Bearer " + sys.argv[2],
    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": %r,
    "Mcp-Method": "tools/call", "Mcp-Name": "add"})
assert r.status_code == 200, r.status_code
""" % (BODY, VERSION)

PEER = """import sys, requests
%s
r = requests.post(sys.argv[1], json=%r, headers={"Authorization": "Bearer " + token,
    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": %r,
    "Mcp-Method": "tools/call", "Mcp-Name": "add"})
assert r.status_code == 200, r.status_code
"""
AUTHLIB = PEER % ("""from authlib.integrations.requests_client import OAuth2Session
s = OAuth2Session(sys.argv[2], sys.argv[3])
token = s.fetch_token(sys.argv[4], grant_type="client_credentials",
                      resource=sys.argv[1])["access_token"]""", BODY, VERSION)
OAUTHLIB = PEER % ("""from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session
s = OAuth2Session(client=BackendApplicationClient(client_id=sys.argv[2]))
token = s.fetch_token(sys.argv[4], client_id=sys.argv[2], client_secret=sys.argv[3],
                      resource=sys.argv[1])["access_token"]""", BODY, VERSION)


# The installed ``mcpauth`` command, as pip's console-script wrapper runs it (``python -m
# mcpauth`` would also pay for runpy, which the command does not import).
COMMAND = "import sys\nfrom mcpauth.cli import main\nsys.exit(main())\n"


# Peak RSS: the process's own VmHWM at exit (ru_maxrss of a child would include the
# forked copy of this parent from before exec). A separate pass, so that wall times are
# of the plain commands.
RSS = """import atexit, runpy, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            sys.stderr.write("VMHWM %s\\n" % line.split()[1])
atexit.register(report)
mode, target = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    sys.argv[0] = "-c"
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
"""


def run(argv, env):
    """Wall seconds of one process."""
    start = time.perf_counter()
    code = subprocess.call(argv, env=env, stdout=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit("benchmark process failed: %s" % " ".join(argv[:4]))
    return time.perf_counter() - start


def peak_rss(argv, env):
    """Peak RSS (KiB) of the same process."""
    wrapped = [argv[0], "-c", RSS] + argv[1:]
    proc = subprocess.run(wrapped, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, universal_newlines=True)
    for line in proc.stderr.splitlines():
        if line.startswith("VMHWM "):
            return float(line.split()[1])
    raise SystemExit("no peak RSS from: %s" % proc.stderr[-300:])


def main():
    print("cron run as a process; " + versions())
    rounds = 1 if SMOKE else 15
    key = jws.generate_private_key("RSA", key_size=2048)
    from cryptography.hazmat.primitives import serialization
    pem = key._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    with tempfile.TemporaryDirectory() as tmp, \
            LoopbackStack(public_jwk=key.public_jwk()) as stack:
        os.chmod(tmp, 0o700)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pyc")
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # loopback http, for requests-oauthlib
        for name in [n for n in env if n.startswith("MCPAUTH_")]:
            del env[name]
        secret_file = os.path.join(tmp, "secret")
        key_file = os.path.join(tmp, "key.pem")
        for path, data in ((secret_file, stack.client_secret.encode()), (key_file, pem)):
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
        token = stack.as_.issue_token(stack.client_id)
        if isinstance(token, dict):
            token = token["access_token"]
        url = stack.mcp_url

        def call(credentials, cache):
            return [sys.executable, "-c", COMMAND, "call", url, "add", "--arg", "a=2",
                    "--arg", "b=3", "--protocol-version", VERSION, "--client-id",
                    stack.client_id, "--cache", os.path.join(tmp, cache)] + credentials

        secret = ["--client-secret-file", secret_file]
        private = ["--private-key-file", key_file]
        cases = [("floor: import requests, one POST with a known token",
                  [sys.executable, "-c", FLOOR, url, token], None),
                 ("mcpauth call, client secret, warm cache", call(secret, "warm-s.json"), None),
                 ("mcpauth call, private key (RS256), warm cache", call(private, "warm-k.json"),
                  None),
                 ("mcpauth call, client secret, cold cache", call(secret, "cold-s.json"),
                  "cold-s.json"),
                 ("mcpauth call, private key (RS256), cold cache", call(private, "cold-k.json"),
                  "cold-k.json")]
        endpoint = stack.as_.token_endpoint
        if peer("authlib") is not None:
            cases.append(("Authlib OAuth2Session.fetch_token + POST (no cache)",
                          [sys.executable, "-c", AUTHLIB, url, stack.client_id,
                           stack.client_secret, endpoint], None))
        if peer("requests_oauthlib") is not None:
            cases.append(("requests-oauthlib fetch_token + POST (no cache)",
                          [sys.executable, "-c", OAUTHLIB, url, stack.client_id,
                           stack.client_secret, endpoint], None))
        for _, argv, _ in cases:  # compile byte code, fill the warm caches
            run(argv, env)
        before = len(stack.mcp.requests) + len(stack.as_.requests)
        run(cases[1][1], env)
        warm_requests = len(stack.mcp.requests) + len(stack.as_.requests) - before
        times = {name: [] for name, _, _ in cases}
        rss = {name: [] for name, _, _ in cases}
        def empty(cold):
            if cold and os.path.exists(os.path.join(tmp, cold)):
                os.unlink(os.path.join(tmp, cold))

        for _ in range(rounds):
            for name, argv, cold in cases:
                empty(cold)
                times[name].append(run(argv, env))
        for _ in range(1 if SMOKE else 3):
            for name, argv, cold in cases:
                empty(cold)
                rss[name].append(peak_rss(argv, env))
    med = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    MINIMA.update((name, min(v)) for name, v in times.items())
    results = [(name, med[name]) for name, _, _ in cases]
    floor = cases[0][0]
    table("Process wall time (medians of %d; warm mcpauth run: %d HTTP request(s))"
          % (rounds, warm_requests), results, floor, unit="ms", scale=1e3)
    MINIMA.clear()
    peaks = [(name, float(max(rss[name]))) for name, _, _ in cases]
    table("Peak RSS of the process (max over rounds)", peaks, floor, unit="MiB",
          scale=1 / 1024.0)
    print(json.dumps({"warm_requests": warm_requests}))


if __name__ == "__main__":
    main()
