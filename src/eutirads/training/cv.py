"""Patient-grouped K-fold cross-validation reporting mean and spread.

Folds come from `data.split.patient_folds` (grouped by patient and by identical or
near-duplicate images, stratified by label). Each fold trains on the other folds for the
configured epochs and is scored on its own images once, at the end: with ~170 images there
is no spare validation set, and early-stopping on the scored fold would flatter the result.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import numpy as np
from tqdm import tqdm

from ..categories import sort_labels
from ..data.manifest import MANIFEST_NAME, read_manifest
from ..errors import InputError
from ..evaluation.metrics import FOLD_METRICS as METRICS, default_positive, fold_metrics
from .config import TrainConfig, save_config
from .data import _sample, load_images
from .run import make_spec, seed_everything, write_history

__all__ = ["CVResult", "cross_validate", "fold_metrics", "default_positive",
           "check_class_sizes"]



def check_class_sizes(labels: Sequence[str], k: int, *, where: str, repeats: int = 1) -> None:
    """Every class needs at least k images for (repeated) K-fold CV: one in each scored
    fold, and others left to train on. InputError naming the class and the count."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    for name in sort_labels(counts):
        if counts[name] < k:
            kind = f"{k}-fold" + (f" x {repeats} repeated" if repeats > 1 else "")
            fewer = f", or use --cv {counts[name]}" if counts[name] >= 2 else ""
            raise InputError(f"{where}: class {name!r} has {counts[name]} image(s); {kind} "
                             f"cross-validation needs at least {k} per class (add "
                             f"{k - counts[name]} more{fewer})")


@dataclass
class CVResult:
    run: Path
    k: int
    folds: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    pooled: dict[str, float]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary_line(self) -> str:
        parts = [f"{m} {self.mean[m]:.3f} ± {self.std[m]:.3f}" for m in METRICS
                 if not np.isnan(self.mean[m])]
        return f"{self.k}-fold CV: " + ", ".join(parts)


def cross_validate(dataset: str | os.PathLike[str], config: TrainConfig,
                   out: str | os.PathLike[str], *, k: int = 5,
                   splits: Sequence[str] | None = ("train", "val"),
                   positive: Sequence[str] | None = None, progress: bool = True,
                   image_cache: MutableMapping[tuple, np.ndarray] | None = None) -> CVResult:
    """K-fold CV over the labelled rows of `splits` (None: every labelled row).

    Writes RUN/config.yaml, RUN/cv/fold-<i>/history.csv, RUN/cv_predictions.csv
    (out-of-fold probabilities) and RUN/cv_results.json; returns mean and spread.
    """
    import time

    import torch

    from ..data.split import patient_folds
    from ..models import create_model
    from .engine import fit, predict_proba

    config.validate()
    root = Path(dataset)
    out = Path(out)
    if not root.exists():
        raise InputError(f"{root}: dataset folder not found")
    rows = [r for r in read_manifest(root) if r.get("label")
            and (splits is None or r.get("split", "") in splits)]
    if not rows:
        where = "any split" if splits is None else f"split(s) {', '.join(splits)}"
        raise InputError(f"{root / MANIFEST_NAME}: no labelled image in {where}")
    class_names = sort_labels(r["label"] for r in rows)
    if len(class_names) < 2:
        raise InputError(f"{root / MANIFEST_NAME}: need at least 2 classes for cross-validation")
    check_class_sizes([r["label"] for r in rows], k, where=str(root / MANIFEST_NAME))
    positive = list(positive) if positive else (default_positive(class_names) or None)
    folds = np.asarray(patient_folds(rows, k, seed=config.seed))
    samples = [_sample(root, r) for r in rows]
    spec = make_spec(config, class_names)
    images, kept, skipped = load_images(samples, spec, cache=image_cache, progress=progress,
                                        desc="cv images")
    from ..categories import DESCRIPTORS
    from .data import descriptor_heads, targets

    kept_samples = [samples[i] for i in kept]
    heads = descriptor_heads(kept_samples) if config.descriptor_weight > 0 else []
    Y = targets(kept_samples, class_names, heads)
    labels = Y[:, 0]
    fold_of = folds[kept]
    if config.num_threads:
        torch.set_num_threads(config.num_threads)

    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    started = time.perf_counter()
    oof = np.full((len(kept), len(class_names)), np.nan, np.float32)
    per_fold: list[dict[str, float]] = []
    for fold in tqdm(range(k), desc="cv folds", unit="fold", disable=not progress):
        test = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        missing = [class_names[c] for c in range(len(class_names)) if not (labels[train] == c).any()]
        if missing or len(test) == 0:
            raise InputError(f"{root / MANIFEST_NAME}: fold {fold} leaves class "
                             f"{(missing or ['?'])[0]!r} without training images (use fewer folds)")
        seed_everything(config.seed + fold)
        model = create_model(config.model, num_classes=len(class_names), weights=config.weights,
                             descriptors={h: len(DESCRIPTORS[h]) for h in heads},
                             **config.model_kwargs)
        result = fit(model, spec, config, [images[i] for i in train], Y[train],
                     [images[i] for i in test], Y[test], progress=False,
                     early_stopping=False, head_names=heads)
        (out / "cv" / f"fold-{fold}").mkdir(parents=True, exist_ok=True)
        write_history(result.history, out / "cv" / f"fold-{fold}" / "history.csv")
        probs = predict_proba(model, spec, [images[i] for i in test], config)
        oof[test] = probs
        metrics = fold_metrics(labels[test], probs, class_names, positive)
        metrics.update({f"{h}_accuracy": result.best_metrics[f"{h}_accuracy"] for h in heads
                        if f"{h}_accuracy" in result.best_metrics})
        metrics["n"] = float(len(test))
        per_fold.append(metrics)

    def stat(fn) -> dict[str, float]:
        with warnings.catch_warnings():  # a metric that is NaN in every fold stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return {m: float(fn([f[m] for f in per_fold])) for m in METRICS}

    mean, std = stat(np.nanmean), stat(lambda v: np.nanstd(v, ddof=1) if len(v) > 1 else 0.0)
    pooled = fold_metrics(labels, oof, class_names, positive)
    with (out / "cv_predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "fold", *[f"p_{c}" for c in class_names]])
        for j, i in enumerate(kept):
            writer.writerow([samples[i].relpath, samples[i].label, int(fold_of[j]),
                             *[f"{p:.5f}" for p in oof[j]]])
    result = CVResult(out, k, per_fold, mean, std, pooled, class_names, skipped,
                      time.perf_counter() - started)
    payload: dict[str, Any] = {"k": k, "model": config.model, "mode": config.mode,
                               "classes": class_names, "positive": positive,
                               "folds": per_fold, "mean": mean, "std": std, "pooled": pooled,
                               "skipped": skipped, "seconds": round(result.seconds, 1)}
    (out / "cv_results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return result
