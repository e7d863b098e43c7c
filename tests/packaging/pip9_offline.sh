#!/usr/bin/env bash
# tox -e pip9: the wheel installs offline with RHEL 8's stock pip (9.0.3) on Python 3.6 into a
# venv that holds only requests 2.20.0 and cryptography 3.2.1, then imports and signs.
set -euo pipefail
tmp=${1:?usage: pip9_offline.sh TMPDIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
py36=$(command -v python3.6 || true)
if [ -z "$py36" ]; then
  echo "pip9: python3.6 not found on PATH" >&2
  exit 1
fi
rm -rf "$tmp/dist" "$tmp/venv36"
python -m build --wheel --outdir "$tmp/dist" "$root" >/dev/null
wheel=$(ls "$tmp"/dist/mcpauth_client-*-py3-none-any.whl)
echo "pip9: built $(basename "$wheel")"
"$py36" -m venv "$tmp/venv36"
# The dependencies as RHEL 8 ships them (there they come from RPMs). The venv's own pip 18
# cannot pick dependency versions by Requires-Python from every index; pip 21.3.1 can.
"$tmp/venv36/bin/python" -m pip install -q "pip==21.3.1"
"$tmp/venv36/bin/python" -m pip install -q "requests==2.20.0" "cryptography==3.2.1"
"$tmp/venv36/bin/python" -m pip install -q "pip==9.0.3"
"$tmp/venv36/bin/python" -m pip --version
# From $tmp, so the checkout (and any mcpauth.egg-info in it) is not on sys.path.
cd "$tmp"
"$tmp/venv36/bin/python" -m pip install --no-index --disable-pip-version-check "$wheel"
"$tmp/venv36/bin/python" - <<'PY'
import sys
import mcpauth
assert "cryptography" not in sys.modules
from mcpauth import jws
key = jws.generate_private_key("EC")
token = jws.sign({"iss": "rhel8"}, key, "ES256")
assert jws.verify(token, key.public_jwk(), ["ES256"]) == b'{"iss":"rhel8"}'
import cryptography, requests
print("pip9: mcpauth %s installed with pip 9.0.3; signs on requests %s, cryptography %s"
      % (mcpauth.__version__, requests.__version__, cryptography.__version__))
PY
