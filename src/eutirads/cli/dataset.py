"""`eutirads dataset import|split|summary`: build, split and inspect a dataset."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset", help="import images into a dataset, split it, summarise it",
        description="Build a dataset (manifest.csv + images) and split it by patient.")
    commands = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    imp = commands.add_parser(
        "import", help="copy images from folders, a CSV or DDTI into a new dataset",
        description="Copy and check images from SRC into a new dataset folder. Bad items are "
                    "reported one line each and skipped; the exit code is non-zero only when "
                    "nothing usable remains, or with --strict when anything was skipped.")
    imp.add_argument("src", help="source: a folder (folders, ddti) or a CSV file (csv)")
    imp.add_argument("--out", required=True, help="new dataset folder (must not exist or be empty)")
    imp.add_argument("--format", dest="fmt", required=True, choices=("folders", "csv", "ddti"),
                     help="folders: class subfolders ('TIRADS 3', '3', '4a'), optionally under "
                          "train/val/test; csv: columns path,label (+ any); ddti: xml/ + raw_jpg/")
    imp.add_argument("--strict", action="store_true",
                     help="fail (and write nothing) if any item would be skipped")
    imp.add_argument("--keep-outside", action="store_true",
                     help="copy the files unchanged; by default everything outside the "
                          "ultrasound image area is blanked and burned-in text inside it "
                          "redacted (same size: boxes and masks keep their coordinates)")
    imp.add_argument("--workers", type=int, default=None,
                     help="processes that check and write the images (default: one per "
                          "core; the dataset is the same for any number)")
    imp.set_defaults(func=_import)

    split = commands.add_parser(
        "split", help="assign train/val/test by patient, stratified by label",
        description="Stratified by label, grouped by patient and by identical or "
                    "near-duplicate images. Every row gets a split: labelled rows are dealt "
                    "out first, unlabelled ones follow their patient (the classifier reads "
                    "labelled rows only; the localiser learns from every outline).")
    split.add_argument("dataset", help="dataset folder (holding manifest.csv)")
    split.add_argument("--val", type=float, default=0.18, help="validation share (default 0.18)")
    split.add_argument("--test", type=float, default=0.10, help="test share (default 0.10)")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    split.add_argument("--force", action="store_true",
                       help="redo every assignment, even splits that came with the import")
    split.set_defaults(func=_split)

    summary = commands.add_parser(
        "summary", help="counts per class and split, masks, descriptors, duplicates, "
                        "undecodable files",
        description="Summarise a dataset; every image is decoded to find broken files.")
    summary.add_argument("dataset", help="dataset folder (holding manifest.csv)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(func=_summary)


def _problem(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def _import(args: argparse.Namespace) -> int:
    from ..data.importers import import_dataset

    report = import_dataset(args.src, args.out, fmt=args.fmt, strict=args.strict,
                            on_problem=_problem, blank_outside=not args.keep_outside,
                            workers=args.workers)
    print(report.summary_line())
    return 0


def _split(args: argparse.Namespace) -> int:
    from ..data.split import split_dataset

    report = split_dataset(args.dataset, val=args.val, test=args.test, seed=args.seed,
                           force=args.force, on_problem=_problem)
    print(report.summary_line())
    return 0


def _summary(args: argparse.Namespace) -> int:
    from ..data.summary import format_summary, summarize

    summary = summarize(args.dataset, progress=True)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0
