"""`eutirads localise DATASET --bundle BUNDLE`: fill missing nodule boxes and masks with the
bundle's localiser (box_source/mask_source 'model'; nothing already there is overwritten)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "localise", help="fill a dataset's missing nodule boxes and masks with a localiser",
        description="Run the bundle's nodule localiser on every row of DATASET that lacks a "
                    "box or a mask and fill them: box x0..y1 with box_source 'model', mask "
                    "masks/model/<path>.png with mask_source 'model'. A box or mask already "
                    "there (drawn, imported, or filled before) is never overwritten; rows "
                    "where nothing is found keep their empty cells. Training skips "
                    "model-made masks.")
    parser.add_argument("dataset", help="dataset folder (holding manifest.csv)")
    parser.add_argument("--bundle", required=True, help="bundle with a localiser")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..inference.localise import localise_dataset

    report = localise_dataset(args.dataset, args.bundle, progress=not args.quiet)
    for message in report.failed:
        print(f"eutirads: error: {message}", file=sys.stderr)
    print(report.summary_line())
    return 1 if report.failed else 0
