"""`eutirads compare RUN...`: one table across runs (Markdown to stdout, CSV/Markdown file)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="one table across evaluated runs",
        description="Compare runs by their evaluation on a split (model, mode, epochs, "
                    "accuracy, loss, macro-F1, kappa, AUC): Markdown to stdout, and to "
                    "--out FILE.csv or FILE.md. Evaluate each run first ('eutirads evaluate').")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="training run folders")
    parser.add_argument("--split", default="test", help="evaluated split to compare (default: test)")
    parser.add_argument("--out", metavar="FILE", help="also write the table to FILE (.csv or .md)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare_runs, to_markdown, write_table

    table = compare_runs(args.runs, split=args.split)
    print(to_markdown(table), end="")
    if args.out:
        write_table(table, args.out)
    return 0
