"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_mappings_argument(parser: argparse.ArgumentParser) -> None:
    """`--mappings DIR`: site mapping directories layered over the shipped ones (repeatable)."""
    parser.add_argument(
        "--mappings",
        metavar="DIR",
        action="append",
        default=[],
        help="site mapping directory layered over the shipped ones (repeatable)",
    )
