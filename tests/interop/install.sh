#!/usr/bin/env bash
# Install the Node peers for mcpauth's interop tests (tests/interop/node_modules); [--force].
exec bash "$(dirname "${BASH_SOURCE[0]}")/../npm-install.sh" "$(dirname "${BASH_SOURCE[0]}")" \
  "interop peers" "$@"
