"""The ``mcpauth`` command."""

import argparse
import sys
from typing import List, Optional

from ._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcpauth",
        description="Machine-to-machine OAuth for MCP servers.")
    parser.add_argument("--version", action="version",
                        version="mcpauth " + __version__)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    parser.print_help()
    return 0
