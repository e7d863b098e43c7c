#!/usr/bin/env bash
# Install the pinned MCP conformance suite (tests/conformance/node_modules); [--force].
exec bash "$(dirname "${BASH_SOURCE[0]}")/../npm-install.sh" "$(dirname "${BASH_SOURCE[0]}")" \
  "conformance suite" --pin=conformance=0.2.0-alpha.12 "$@"
