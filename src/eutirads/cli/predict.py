"""`eutirads predict`: not written yet (its issue is in progress)."""

from __future__ import annotations

import argparse

from ..errors import EutiradsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="(not available yet)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise EutiradsError("'eutirads predict' is not available yet")
