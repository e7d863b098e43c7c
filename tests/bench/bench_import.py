"""Cold import in a new process, after ``import requests``: mcpauth and the peers.

Run: ``python tests/bench/bench_import.py [--smoke]``. The floor is a process that
imports requests alone. Each row is a fresh ``python -c`` (round-robin, medians); byte
code is compiled once beforehand (into a temporary PYTHONPYCACHEPREFIX where the
interpreter has one), so rows time importing, not compiling. Peers: what a user of each
imports to authenticate requests (google-auth: service-account credentials and its
requests transport; the official ``mcp`` SDK: its client auth module).
"""

import os
import subprocess
import sys
import tempfile
import time

from _harness import MINIMA, ROOT, SMOKE, peer, table, versions

CASES = [
    ("floor: import requests", "import requests", None),
    ("mcpauth: import requests; import mcpauth", "import requests; import mcpauth", "mcpauth"),
    ("mcpauth: ... ; from mcpauth import ClientCredentialsProvider",
     "import requests; from mcpauth import ClientCredentialsProvider", "mcpauth"),
    ("Authlib: requests_client.OAuth2Session",
     "import requests; from authlib.integrations.requests_client import OAuth2Session",
     "authlib"),
    ("requests-oauthlib: OAuth2Session",
     "import requests; from requests_oauthlib import OAuth2Session", "requests_oauthlib"),
    ("google-auth: service_account + transport.requests",
     "import requests; import google.oauth2.service_account, google.auth.transport.requests",
     "google.auth"),
    ("msal: ConfidentialClientApplication",
     "import requests; from msal import ConfidentialClientApplication", "msal"),
    ("PyJWT: import jwt", "import requests; import jwt", "jwt"),
    ("mcp SDK: mcp.client.auth", "import requests; import mcp.client.auth", "mcp"),
]


def environment(cache_dir):
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def timed(code, env):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def main():
    print("cold import (new process each); " + versions())
    cases = [(name, code) for name, code, module in CASES
             if module is None or module == "mcpauth" or peer(module) is not None]
    rounds = 1 if SMOKE else 31
    with tempfile.TemporaryDirectory() as cache_dir:
        env = environment(cache_dir)
        for _, code in cases:  # compile byte code; warm the file system cache
            timed(code, env)
        samples = {name: [] for name, _ in cases}
        for _ in range(rounds):
            for name, code in cases:
                samples[name].append(timed(code, env))
    samples = {k: sorted(v) for k, v in samples.items()}
    MINIMA.update((k, v[0]) for k, v in samples.items())
    results = [(name, samples[name][len(samples[name]) // 2]) for name, _ in cases]
    table("Process: python -c '<imports>' (wall time, medians of %d)" % rounds, results,
          "floor: import requests", unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
