"""`eutirads export`: not written yet (its issue is in progress)."""

from __future__ import annotations

import argparse

from ..errors import EutiradsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="(not available yet)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise EutiradsError("'eutirads export' is not available yet")
