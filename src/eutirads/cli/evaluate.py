"""`eutirads evaluate RUN`: metrics, plots and a report for a trained run's split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a trained run on a split (report, plots, metrics.json)",
        description="Predict a split with RUN's best checkpoint and the eval preprocessing, "
                    "then write RUN/eval/SPLIT/: report.md, report.html (plots embedded), "
                    "metrics.json, predictions.csv, confusion.png, roc.png, reliability.png. "
                    "For a localiser run (task: segment): mean Dice, IoU and box IoU over "
                    "images with a nodule, detection rate (box IoU >= 0.5), false-positive "
                    "rate on nodule-free images, and contact.png of predicted vs true "
                    "outlines. Confidence intervals are a bootstrap over patients.")
    parser.add_argument("run", help="training run folder (or a checkpoint .pt file)")
    parser.add_argument("--dataset", help="dataset folder (default: the one the run was trained on)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--positive", metavar="LABELS",
                        help="comma-separated high-risk labels (default: 4,5; 4b,4c,5 when "
                             "the classes have sub-categories, as DDTI's TI-RADS)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% CIs (0 = none; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.set_defaults(func=_run)


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def _run_dir(run: str) -> Path:
    """The run folder (RUN given as the folder or as a checkpoint file in it)."""
    from ..training.checkpoint import checkpoint_file

    file = checkpoint_file(run)
    return file.parent.parent if file.parent.name == "checkpoints" else file.parent


def _report_path(run: str, split: str) -> Path:
    """Where evaluation wrote its report: RUN/eval/SPLIT."""
    return _run_dir(run) / "eval" / split / "report.html"


def _outline_note(run: str) -> None:
    """A run of the default recipe answers, once exported, with the category read inside
    the localiser's outline wherever a nodule is found: say that this evaluation is the
    whole-image classifier's, and give the outline's own figures (training.outline)."""
    import json

    summary = _run_dir(run) / "outline" / "summary.json"
    if not summary.is_file():
        return
    figures = json.loads(summary.read_text(encoding="utf-8"))
    parts = [f"{split} macro-F1 {_fmt(m.get('macro_f1'))}, AUC high {_fmt(m.get('auc_high'))}"
             for split in ("val", "test") if (m := figures.get(f"{split}_metrics"))]
    print("note: this is the whole-image classifier; the exported bundle answers with the "
          "category read inside the localiser's outline where a nodule is found ("
          + ("; ".join(parts) or "no val or test figures") + f": {summary})")


def _run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation.evaluate import evaluate_run
    from ..training.checkpoint import read_checkpoint

    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must not be negative, got {args.bootstrap}")
    if read_checkpoint(args.run).get("task") == "segment":
        return _localiser(args)
    metrics = evaluate_run(args.run, dataset=args.dataset, split=args.split,
                           positive=args.positive, n_boot=args.bootstrap, seed=args.seed)
    s = metrics["summary"]
    skipped = f", {len(metrics['skipped'])} skipped" if metrics["skipped"] else ""
    print(f"evaluated {metrics['n']} images ({metrics['n_patients']} patients{skipped}) of split "
          f"'{args.split}': accuracy {_fmt(s['accuracy'])}, macro-F1 {_fmt(s['macro_f1'])}, "
          f"kappa {_fmt(s['kappa'])}, AUC {_fmt(s['macro_auc'])}; report: "
          f"{_report_path(args.run, args.split)}")
    _outline_note(args.run)
    return 0


def _localiser(args: argparse.Namespace) -> int:
    from ..evaluation.localiser import evaluate_localiser_run

    metrics = evaluate_localiser_run(args.run, dataset=args.dataset, split=args.split,
                                     n_boot=args.bootstrap, seed=args.seed)
    s = metrics["summary"]
    skipped = f", {len(metrics['skipped'])} skipped" if metrics["skipped"] else ""
    print(f"evaluated localiser on {metrics['n']} images ({metrics['n_with_nodule']} with a "
          f"nodule, {metrics['n_patients']} patients{skipped}) of split '{args.split}': Dice "
          f"{_fmt(s['dice'])}, IoU {_fmt(s['iou'])}, box IoU {_fmt(s['box_iou'])}, detection "
          f"{_fmt(s['detection_rate'])}, false positives {_fmt(s['false_positive_rate'])}; "
          f"report: {_report_path(args.run, args.split)}")
    return 0
