"""tox -e vendor: mcpauth must work when copied under another package.

Copies mcpauth/ to <tmp>/hostpkg/_vendor/mcpauth, then, in a fresh interpreter that
cannot see the real package, imports the copy, signs and verifies with it, and runs
``python -m hostpkg._vendor.mcpauth --version``.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SMOKE = r'''
import sys
import hostpkg._vendor.mcpauth as m
assert "mcpauth" not in sys.modules, "the vendored copy imported the real package"
assert "cryptography" not in sys.modules, "import mcpauth imported cryptography"
from hostpkg._vendor.mcpauth import jws
for kty, kw, alg in [("EC", {"curve": "P-256"}, "ES256"), ("RSA", {"key_size": 2048}, "RS256"),
                     ("OKP", {}, "EdDSA")]:
    key = jws.generate_private_key(kty, **kw)
    token = jws.sign({"iss": "vendored", "n": 1}, key, alg, headers={"typ": "JWT"})
    payload = jws.verify(token, key.public_jwk(), [alg])
    assert payload == b'{"iss":"vendored","n":1}', payload
    print("vendored", alg, "ok")
print("vendored mcpauth", m.__version__, "imports and signs")
'''


def main() -> int:
    tmp = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "vendor-tmp")
    host = os.path.join(tmp, "hostpkg")
    shutil.rmtree(host, ignore_errors=True)
    os.makedirs(os.path.join(host, "_vendor"))
    for path in (host, os.path.join(host, "_vendor")):
        with open(os.path.join(path, "__init__.py"), "w") as fh:
            fh.write("")
    shutil.copytree(os.path.join(ROOT, "mcpauth"), os.path.join(host, "_vendor", "mcpauth"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ)
    env["PYTHONPATH"] = tmp
    env["PYTHONNOUSERSITE"] = "1"
    # Run from tmp so the repository checkout is not importable as "mcpauth".
    subprocess.check_call([sys.executable, "-c", SMOKE], cwd=tmp, env=env)
    out = subprocess.check_output([sys.executable, "-m", "hostpkg._vendor.mcpauth", "--version"],
                                  cwd=tmp, env=env, universal_newlines=True)
    print(out.strip())
    if not out.startswith("mcpauth "):
        print("unexpected --version output: %r" % out)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
