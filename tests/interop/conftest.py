"""What every interop test shares: ``peers`` on sys.path and the Node marks.

Each test here is marked ``node`` and ``e2e`` and skipped when the Node peers are not
installed (tests/interop/install.sh); with ``MCPAUTH_REQUIRE_NODE=1`` (the tox ``interop``
env) nothing is skipped, so a missing install fails (start_peers raises PeerStartError).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

REQUIRE_NODE = os.environ.get("MCPAUTH_REQUIRE_NODE") == "1"
NODE_MARKS = [
    pytest.mark.node,
    pytest.mark.e2e,
    pytest.mark.skipif(not REQUIRE_NODE and not peers.node_available(),
                       reason="Node peers not installed (run tests/interop/install.sh)"),
]


def pytest_itemcollected(item: pytest.Item) -> None:
    # Called only for the items below this folder (and before -m selects by mark).
    for mark in NODE_MARKS:
        item.add_marker(mark)
