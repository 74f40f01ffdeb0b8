"""`train(dataset, config, out)`: a run folder from a dataset and a config.

RUN/config.yaml (resolved), RUN/history.csv, RUN/curves/*.png (loss, accuracy, precision,
recall, macro-F1 per epoch), RUN/checkpoints/best.pt and last.pt, RUN/summary.json.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..preprocess import PreprocessSpec
from .config import TrainConfig, save_config
from .data import DatasetRows, Sample, class_counts, load_images, read_training_rows, targets

__all__ = ["TrainResult", "train", "make_spec", "seed_everything", "write_history", "plot_curves",
           "fit_abstention", "source_predictions"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run: Path
    class_names: list[str]
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    train_images_per_s: float = 0.0
    descriptor_heads: list[str] = field(default_factory=list)
    abstention: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_spec(config: TrainConfig, class_names: Sequence[str]) -> PreprocessSpec:
    """The model's own preprocessing, with the config's input size and crop rules."""
    from ..models import default_preprocess

    defaults = default_preprocess(config.model)
    size = tuple(config.input_size) if config.input_size else defaults["input_size"]
    return PreprocessSpec(input_size=size, mean=defaults["mean"], std=defaults["std"],
                          crop=config.crop, roi_margin=config.roi_margin, frame=config.frame,
                          resize=config.resize, class_names=tuple(class_names))


def write_history(history: Sequence[dict[str, Any]], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    columns = list(history[0]) if history else ["epoch"]
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def plot_curves(history: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """One PNG per quantity: loss, accuracy, precision, recall, macro-F1 by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    epochs = [row["epoch"] for row in history]
    plots = {
        "loss": [("train_loss", "train"), ("val_loss", "val")],
        "accuracy": [("train_accuracy", "train"), ("val_accuracy", "val")],
        "precision": [("val_precision", "val (macro)")],
        "recall": [("val_recall", "val (macro)")],
        "macro_f1": [("val_macro_f1", "val")],
    }
    written = []
    for name, series in plots.items():
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for key, label in series:
            ax.plot(epochs, [row[key] for row in history], marker=".", label=label)
        changes = [row["epoch"] for prev, row in zip(history, history[1:])
                   if row["phase"] != prev["phase"]]
        for epoch in changes:
            ax.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def source_predictions(head: np.ndarray, descriptor_probs: dict[str, np.ndarray],
                       class_names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per image, each category source's (probabilities, predicted class index) as the
    predictor computes them: the head; the rule and the combined distribution when the
    guideline's rule applies (the rule's label is the rule on the most likely
    descriptors, the others' the most probable class)."""
    from ..inference.descriptors import combine, rule_applies, rule_category

    out = {"head": (head, head.argmax(1))}
    if len(head) and rule_applies(class_names, list(descriptor_probs)):
        rule = np.zeros_like(head)
        rule_pred = np.zeros(len(head), np.int64)
        for i in range(len(head)):
            label, rule[i], _ = rule_category({n: p[i] for n, p in descriptor_probs.items()},
                                              class_names, head[i])
            rule_pred[i] = list(class_names).index(label)
        combined = combine(head, rule)
        out["rule"] = (rule, rule_pred)
        out["combined"] = (combined, combined.argmax(1))
    return out


def fit_abstention(model, spec: PreprocessSpec, config: TrainConfig,
                   train_images: Sequence[np.ndarray], val_images: Sequence[np.ndarray],
                   val_y: Sequence[int], heads: Sequence[str] = ()) -> dict[str, Any]:
    """What the bundle needs to know when not to answer, fitted after training on the val
    split: the calibration temperature (val NLL) with the val ECE before and after; which
    category source is the default (`category_source`; auto = the best val macro-F1 of
    head, rule and combined, the head on a tie); the low-confidence threshold (a quantile
    of that source's val confidences); and the out-of-distribution reference (pooled
    training features) with its threshold (a quantile of the val images' k-NN distance
    to them)."""
    import torch

    from ..evaluation.metrics import calibration, training_metrics
    from ..inference.abstention import (apply_temperature, fit_temperature, knn_distance,
                                        low_confidence_threshold, pooled)
    from .engine import CATEGORY, LoopOptions, pooled_features, predict_proba

    loop = LoopOptions.from_config(config)
    y = np.asarray(val_y, np.int64)
    out = predict_proba(model, spec, val_images, loop, heads=True)
    proba = out[CATEGORY]
    temperature = fit_temperature(proba, y) if config.calibrate else 1.0
    calibrated = apply_temperature(proba, temperature)
    labels = list(range(proba.shape[1]))
    sources = source_predictions(calibrated, {h: out[h] for h in heads if h in out},
                                 spec.class_names)
    scores = {k: training_metrics(y, pred, len(labels))["macro_f1"]
              for k, (_, pred) in sources.items()}
    if config.category_source == "auto":
        source = max(sources, key=lambda k: (scores[k], k == "head"))
    else:
        source = config.category_source if config.category_source in sources else "head"
    chosen = sources[source][0]
    threshold = low_confidence_threshold(chosen, config.abstain_quantile)
    reference = pooled(pooled_features(model, spec, train_images, loop))
    if len(reference) > 2000:  # a large clinic: a fixed random subset is enough
        keep = np.random.default_rng(config.seed).choice(len(reference), 2000, replace=False)
        reference = reference[np.sort(keep)]
    k = 5 if len(reference) >= 50 else 1
    val_distance = knn_distance(pooled(pooled_features(model, spec, val_images, loop)),
                                reference, k)
    return {
        "calibration": {"method": "temperature", "temperature": round(temperature, 4),
                        "ece_before": calibration(y, proba, labels)["ece"],
                        "ece_after": calibration(y, calibrated, labels)["ece"]},
        "category_source": {"default": source, "chosen_by": config.category_source,
                            "val_macro_f1": scores},
        "abstain": {"low_confidence": round(threshold, 4), "quantile": config.abstain_quantile,
                    "val_fraction": float((chosen.max(1) < threshold).mean())
                    if len(y) else 0.0},
        "ood": {"metric": "cosine k-NN distance to the training images (pooled features)",
                "k": k, "quantile": config.ood_quantile,
                "threshold": float(np.quantile(val_distance, config.ood_quantile)),
                "reference": torch.from_numpy(reference.astype(np.float16))},
    }


def _data_summary(rows: DatasetRows, train: Sequence[Sample], val: Sequence[Sample],
                  skipped: Sequence[str]) -> dict[str, Any]:
    def counts(samples: Sequence[Sample]) -> dict[str, int]:
        return {name: sum(s.label == name for s in samples) for name in rows.class_names}

    return {"dataset": str(rows.root), "classes": list(rows.class_names),
            "train": counts(train), "val": counts(val),
            "patients": {"train": len({s.patient_id for s in train}),
                         "val": len({s.patient_id for s in val})},
            "skipped_images": len(skipped)}


def train(dataset: str | os.PathLike[str], config: TrainConfig, out: str | os.PathLike[str], *,
          progress: bool = True,
          image_cache: MutableMapping[tuple, np.ndarray] | None = None) -> TrainResult:
    """Train `config` on the dataset's train split, early-stopping on its val split."""
    if config.task == "segment":
        from .segment import train_segmenter

        return train_segmenter(dataset, config, out, progress=progress, image_cache=image_cache)
    import torch

    from ..models import create_model
    from .engine import fit

    from . import distributed

    config.validate()
    out = Path(out)
    main = distributed.is_main()  # under torchrun only rank 0 writes the run folder
    progress = progress and main
    rows = read_training_rows(dataset, train_split=config.train_split, val_split=config.val_split)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    spec = make_spec(config, rows.class_names)
    from ..categories import DESCRIPTORS

    heads = list(rows.descriptor_names) if config.descriptor_weight > 0 else []
    # The model first: an unknown backbone fails before minutes of image decoding.
    model = create_model(config.model, num_classes=len(rows.class_names), weights=config.weights,
                         descriptors={h: len(DESCRIPTORS[h]) for h in heads},
                         **config.model_kwargs)

    index = {name: i for i, name in enumerate(rows.class_names)}
    train_imgs, kept_t, skipped_t = load_images(rows.train, spec, cache=image_cache,
                                                progress=progress, desc="train images")
    val_imgs, kept_v, skipped_v = load_images(rows.val, spec, cache=image_cache,
                                              progress=progress, desc="val images")
    skipped = skipped_t + skipped_v
    train_samples = [rows.train[i] for i in kept_t]
    val_samples = [rows.val[i] for i in kept_v]
    if not val_samples:
        raise InputError(f"{rows.root}: no val image could be decoded")
    train_y = targets(train_samples, rows.class_names, heads)
    val_y = targets(val_samples, rows.class_names, heads)
    missing = [rows.class_names[i]
               for i, c in enumerate(class_counts(train_y[:, 0], len(index))) if c == 0]
    if missing:
        raise InputError(f"{rows.root}: class {missing[0]!r} has no decodable training image")

    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
    summary = _data_summary(rows, train_samples, val_samples, skipped)
    summary["descriptors"] = {h: int((val_y[:, j + 1] >= 0).sum() + (train_y[:, j + 1] >= 0).sum())
                              for j, h in enumerate(heads)}
    ckpt_args = dict(model_name=config.model, model_kwargs=config.model_kwargs,
                     class_names=rows.class_names, preprocess=spec.to_dict(),
                     config=config.to_dict(), data_summary=summary,
                     descriptors={h: list(DESCRIPTORS[h]) for h in heads})
    history: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any], improved: bool, model_) -> None:
        history.append(row)
        if main:
            write_history(history, out / "history.csv")

    # Checkpoints are written once at the end: writing a 15 MB file every epoch would cost
    # more than an epoch of the head on cached features.
    result = fit(model, spec, config, train_imgs, train_y, val_imgs, val_y,
                 progress=progress, on_epoch=on_epoch, head_names=heads)
    # fit leaves the best weights loaded: calibration and the OOD reference belong to them.
    abstention = fit_abstention(model, spec, config, train_imgs, val_imgs, val_y[:, 0], heads)
    public = {k: {kk: vv for kk, vv in v.items() if kk != "reference"}
              for k, v in abstention.items()}
    if main:
        _write_run(out, config, result, history, abstention, public, summary, heads, skipped,
                   ckpt_args)
    distributed.barrier()  # the other ranks return once the run folder is complete
    return TrainResult(out, list(rows.class_names), result.best_epoch, result.best_metrics,
                       len(history), skipped, result.seconds, result.train_images_per_s,
                       heads, public)


def _write_run(out: Path, config: TrainConfig, result, history, abstention, public, summary,
               heads, skipped, ckpt_args) -> None:
    from . import distributed
    from .checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoints" / "best.pt", result.best_state, epoch=result.best_epoch,
                    val_metrics=result.best_metrics, abstention=abstention, **ckpt_args)
    last = history[-1]
    save_checkpoint(out / "checkpoints" / "last.pt", result.last_state, epoch=last["epoch"],
                    val_metrics={k[4:]: v for k, v in last.items() if k.startswith("val_")},
                    **ckpt_args)
    plot_curves(history, out / "curves")
    (out / "summary.json").write_text(json.dumps({
        "eutirads_version": __version__, "model": config.model, "mode": config.mode,
        "best_epoch": result.best_epoch, "best_val_metrics": result.best_metrics,
        "epochs_run": len(history), "seconds": round(result.seconds, 1),
        "train_images_per_s": round(result.train_images_per_s, 1),
        "descriptor_heads": heads, "abstention": public,
        "processes": distributed.world_size(),  # > 1: trained under torchrun (DDP)
        "data": summary, "skipped": skipped}, indent=2) + "\n", encoding="utf-8")
