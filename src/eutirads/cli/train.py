"""`eutirads train DATASET --config CONFIG.yaml --out RUN [key=value ...] [--cv K]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class _IntermixedParser(argparse.ArgumentParser):
    """Lets key=value overrides follow the options (`train DS --out RUN epochs=5`): plain
    argparse binds all positionals at the first one it meets."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        late = [a for a in extras if "=" in a and not a.startswith("-")]
        namespace.overrides = list(namespace.overrides or []) + late
        return namespace, [a for a in extras if a not in late]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a classifier or a nodule localiser on a dataset (or "
                         "cross-validate it with --cv)",
        description="Train a classifier, or with task: segment (configs/localiser.yaml) a "
                    "nodule localiser on the dataset's masks: config defaults <- --config YAML <- key=value "
                    "overrides (e.g. epochs=5 crop=roi model=seed-cnn weights=none). "
                    "Writes RUN/config.yaml, history.csv, curves/ and checkpoints/.")
    parser.add_argument("dataset", help="dataset folder (holding manifest.csv with splits)")
    parser.add_argument("--config", help="YAML config (see configs/); default: built-in recipe")
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument("--cv", type=int, metavar="K", default=0,
                        help="patient-grouped K-fold cross-validation over the train and val "
                             "splits instead of one training run")
    parser.add_argument("--measured", metavar="LOCALISER_RUN",
                        help="after training the classifier, fit the measured descriptors "
                             "on this localiser run's outlines (RUN/measured/; export with "
                             "--localiser LOCALISER_RUN bundles them)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, values read as YAML")
    parser.__class__ = _IntermixedParser
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..training.config import resolve_config

    config = resolve_config(args.config, args.overrides)
    if args.measured and (args.cv or config.task == "segment"):
        from ..errors import InputError

        raise InputError("--measured: only for training a classifier (not with --cv or "
                         "task: segment)")
    if args.cv:
        from ..training.cv import cross_validate

        result = cross_validate(args.dataset, config, args.out, k=args.cv,
                                progress=not args.quiet)
        for message in result.skipped:
            print(f"warning: skipped {message}", file=sys.stderr)
        print(f"{result.summary_line()} -> {result.run / 'cv_results.json'}")
        return 0

    from ..training import distributed
    from ..training.config import recipe_note
    from ..training.data import read_training_rows
    from ..training.run import train

    # Under torchrun (--nproc_per_node N): DistributedDataParallel, rank 0 writes and prints.
    with distributed.session():
        if distributed.is_main():
            rows = read_training_rows(args.dataset, train_split=config.train_split,
                                      val_split=config.val_split)
            print(recipe_note(args.config, len(rows.train), args.overrides), flush=True)
        result = train(args.dataset, config, args.out, progress=not args.quiet)
        if not distributed.is_main():
            return 0
    for message in result.skipped:
        print(f"warning: skipped {message}", file=sys.stderr)
    m = result.best_metrics
    if config.task == "segment":
        print(f"trained localiser {config.model} ({config.mode}) on {args.dataset}: best epoch "
              f"{result.best_epoch}/{result.epochs_run}, val Dice {m.get('dice', 0):.3f}, "
              f"IoU {m.get('iou', 0):.3f}, {len(result.skipped)} image(s) skipped, "
              f"{result.seconds:.0f} s -> {result.run}")
        return 0
    print(f"trained {config.model} ({config.mode}) on {args.dataset}: best epoch "
          f"{result.best_epoch}/{result.epochs_run}, val macro-F1 {m.get('macro_f1', 0):.3f}, "
          f"accuracy {m.get('accuracy', 0):.3f}, {len(result.skipped)} image(s) skipped, "
          f"{result.seconds:.0f} s -> {result.run}")
    if result.descriptor_heads:
        accuracy = ", ".join(f"{h} {m.get(f'{h}_accuracy', float('nan')):.2f}"
                             for h in result.descriptor_heads)
        print(f"descriptor heads (val accuracy): {accuracy}")
    calibration = result.abstention.get("calibration") or {}
    if calibration:
        print(f"calibration: temperature {calibration['temperature']:.2f}, val ECE "
              f"{calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}; default "
              f"category: {(result.abstention.get('category_source') or {}).get('default')}")
    _outline(args.dataset, result.run, config, quiet=args.quiet)
    if args.measured:
        _fit_measured(args.dataset, result.run, args.measured)
    return 0


def _outline(dataset: str, run, config, *, quiet: bool) -> None:
    """The default recipe's outline step (training.outline), or a line saying why not."""
    from ..training.outline import outline_skip_reason, train_outline

    reason = outline_skip_reason(config, dataset)
    if reason is not None:
        if config.outline != "off":
            print(f"outline: not trained ({reason}); the category reads the whole image area")
        return
    print("outline: training the localiser into RUN/localiser, then the category inside "
          "its outline (outline=off skips this)", flush=True)
    done = train_outline(dataset, run, config, progress=not quiet)
    local, summary = done["localiser"], done["outline"]
    val = summary.get("val_metrics") or {}
    print(f"localiser: best epoch {local.best_epoch}/{local.epochs_run}, val Dice "
          f"{local.best_metrics.get('dice', 0):.3f} -> {local.run}")
    print(f"outline category: {summary['train_images']} training images, val macro-F1 "
          f"{val.get('macro_f1', float('nan')):.3f}, AUC high "
          f"{val.get('auc_high') if val.get('auc_high') is not None else 'n/a'}, temperature "
          f"{summary['temperature']:.2f}; the default category when a nodule is found "
          f"-> {Path(run) / 'outline'}")


def _fit_measured(dataset: str, run, localiser_run: str) -> None:
    from ..training.measured import fit_measured

    summary = fit_measured(dataset, run, localiser_run)
    kept, fitted = summary.get("heads", []), summary.get("fitted", [])
    val = summary.get("val_metrics") or {}
    print("measured descriptors (val accuracy): "
          + (", ".join(f"{n} {val.get(f'{n}_accuracy', float('nan')):.2f}" for n in kept)
             or "none kept")
          + "".join(f"; {n} stays with the classifier's head" for n in fitted if n not in kept)
          + (f"; default category: {summary['category_source']}"
             if summary.get("category_source") else ""))
