"""The `eutirads` command line: thin wrappers that parse arguments, call the library, print.

Each command group lives in its own module here with a `register(subparsers)` function
that adds its parser and sets `func(args) -> int`. Heavy libraries (torch, Django) are
imported inside the functions, so `eutirads --help` and the light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ..errors import EutiradsError

__all__ = ["main", "build_parser"]

# Pipeline order, as a newcomer reads it.
COMMAND_MODULES: tuple[str, ...] = (
    "demo", "phantom", "ingest", "listen", "dataset", "label", "train", "evaluate", "compare",
    "export", "export_web", "predict", "localise", "models", "users", "serve", "backup",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="eutirads",
        description="EU-TIRADS thyroid-nodule ultrasound: build datasets, label, train, "
                    "evaluate, export and serve classifiers.")
    parser.add_argument("--version", action="version", version=f"eutirads {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except EutiradsError as exc:
        print(f"eutirads: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eutirads: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
