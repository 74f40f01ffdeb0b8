"""The outline's category: the default recipe's second half on a dataset with nodule masks.

On DDTI-dev, ImageNet features pooled inside the localiser's outline (and against a ring of
tissue around it) were the best category input measured over 5 x 5 repeated CV (AUC high
0.629 against the whole-image baseline's 0.551, 19 of 25 folds above it; docs/benchmarks.md,
"Features pooled inside the localiser's outline, repeated 5 x 5"). `eutirads train` with
the default recipe therefore, when the dataset has masks:

1. trains the classifier as before (whole image area: the answer when no nodule is found,
   the heatmap, the descriptor heads and the out-of-distribution check);
2. trains the localiser (`LOCALISER_RECIPE`, the same as configs/localiser.yaml) into
   RUN/localiser on every row with a mask;
3. `fit_outline`: the localiser's map of every labelled train image pools the ImageNet
   encoder's features (`models.outline_pooling`), a logistic regression (standardised,
   balanced class weights, C = 1: the benchmark's recipe, fixed before it was scored)
   learns the category from them, and the val split gives its temperature and
   low-confidence threshold. Written to RUN/outline/ (head.npz, summary.json); `eutirads
   export RUN` bundles the localiser and this "outline" component.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.manifest import image_path, read_manifest
from ..errors import EutiradsError, InputError
from ..imageio import load_rgb

__all__ = ["LOCALISER_RECIPE", "OUTLINE_DIR", "LOCALISER_DIR", "MIN_MASKED", "outline_skip_reason",
           "fit_outline", "outline_features", "train_outline"]

log = logging.getLogger(__name__)

OUTLINE_DIR = "outline"
LOCALISER_DIR = "localiser"
# The fewest training rows with a mask worth a localiser (DDTI-dev has 213).
MIN_MASKED = 20
# configs/localiser.yaml (a test keeps them equal): the localiser the outline is read from.
LOCALISER_RECIPE: dict[str, Any] = {
    "task": "segment", "model": "tf_efficientnet_lite0", "weights": "imagenet",
    "model_kwargs": {"decoder_channels": 48}, "input_size": [192, 256], "frame": "detect",
    "mode": "finetune", "unfreeze": -1, "epochs": 12, "batch_size": 16, "lr": 0.003,
    "finetune_lr": 0.001, "weight_decay": 0.0001, "warmup_epochs": 1.0, "augment": True,
    "rotation": 10.0, "shift": 0.08, "shear": 5.0, "zoom": 0.15, "brightness": 0.2,
    "hflip": True, "monitor": "dice", "dice_loss": "image", "patience": 10,
    "threshold": 0.5, "min_region_px": 64}


def outline_skip_reason(config, dataset: str | os.PathLike[str]) -> str | None:
    """Why the default run does not add the outline's category (None: it does): the
    config says `outline: off`, the model is not a classifier from ImageNet EfficientNet-Lite
    weights (the pooled encoder is ImageNet's), or too few training rows have a mask."""
    from ..models.lite_weights import LITE_PACKAGES

    if config.outline == "off":
        return "outline: off"
    if config.task != "classify" or config.weights != "imagenet" or config.model not in LITE_PACKAGES:
        return "the outline's encoder is ImageNet EfficientNet-Lite (weights: imagenet)"
    rows = read_manifest(dataset)
    masked = sum(1 for r in rows if r.get("mask") and r.get("split") == config.train_split)
    if masked < MIN_MASKED:
        return f"{masked} training image(s) with a nodule mask (at least {MIN_MASKED} needed)"
    return None


def train_outline(dataset: str | os.PathLike[str], run: str | os.PathLike[str], config, *,
                  progress: bool = False) -> dict[str, Any]:
    """Steps 2 and 3 for the classifier `run`: RUN/localiser, then RUN/outline. Returns
    {"localiser": the localiser's TrainResult, "outline": fit_outline's summary}."""
    from .config import resolve_config
    from .run import train

    recipe = {**LOCALISER_RECIPE, "seed": config.seed, "device": config.device,
              "num_threads": config.num_threads, "train_split": config.train_split,
              "val_split": config.val_split}
    localiser = train(dataset, resolve_config(None, recipe), Path(run) / LOCALISER_DIR,
                      progress=progress)
    return {"localiser": localiser,
            "outline": fit_outline(dataset, run, localiser.run,
                                   quantile=config.abstain_quantile, calibrate=config.calibrate)}


def outline_features(images: Sequence[np.ndarray], maps: Sequence[tuple[np.ndarray, Any]],
                     encoder_name: str, spec) -> np.ndarray:
    """N x F pooled features of `images` (HxWx3 uint8) in their localiser maps ((image-size
    probability, image-area box) pairs), on the localiser's grid (`spec`)."""
    import torch

    from ..inference.outline import outline_inputs
    from ..models.outline_pooling import OutlineEncoder
    from ..models.segmentation import create_encoder

    module = OutlineEncoder(create_encoder(encoder_name, "imagenet")).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 16):
            pairs = [outline_inputs(pixels, prob, box, spec) for pixels, (prob, box)
                     in zip(images[start:start + 16], maps[start:start + 16])]
            image = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
            prob = torch.from_numpy(np.concatenate([p[1] for p in pairs]))
            out.append(module(image, prob).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _split_features(root: Path, rows: Sequence[dict], probabilities, encoder_name: str, spec,
                    class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features, class indices) of the rows whose image loads (the others logged and left
    out), a chunk at a time: full-size probability maps are large."""
    features, labels = [], []
    for start in range(0, len(rows), 64):
        images, kept = [], []
        for row in rows[start:start + 64]:
            try:
                images.append(load_rgb(image_path(root, row), name=row["path"]))
                kept.append(row)
            except EutiradsError as exc:
                log.warning("outline: skipped %s", exc)
        if images:
            features.append(outline_features(images, probabilities(images), encoder_name, spec))
            labels += [list(class_names).index(r["label"]) for r in kept]
    if not features:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.asarray(labels, np.int64)


def _head(model, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight K x F, bias K) over every class from a fitted logistic regression: a class
    the training images never showed gets a logit of -30; a binary model's row is [0, w]."""
    from .measured import ABSENT

    weight = np.zeros((n_classes, model.coef_.shape[1]), np.float32)
    bias = np.full(n_classes, ABSENT, np.float32)
    classes = [int(c) for c in model.classes_]
    if len(classes) == 2:
        bias[classes[0]] = 0.0
        weight[classes[1]], bias[classes[1]] = model.coef_[0], model.intercept_[0]
    else:
        for row, c in enumerate(classes):
            weight[c], bias[c] = model.coef_[row], model.intercept_[row]
    return weight, bias


def _metrics(y: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """macro-F1, accuracy and AUC high of calibrated probabilities against class indices."""
    from ..evaluation.metrics import training_metrics

    metrics = training_metrics(y, proba.argmax(1), len(class_names))
    return {"macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
            "auc_high": _auc_high(y, proba, class_names)}


def _auc_high(y: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> float | None:
    """The val AUC of the high-risk classes against the rest (metrics.high_risk's), or None
    when val holds one side only or the scheme has no high-risk side."""
    from ..evaluation.metrics import high_risk

    names = [class_names[i] for i in y]
    try:
        auc = high_risk(names, [class_names[i] for i in proba.argmax(1)], proba,
                        list(class_names), curve=False)["auc"]
    except InputError:
        return None
    return None if not np.isfinite(auc) else round(float(auc), 4)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_outline(dataset: str | os.PathLike[str], run: str | os.PathLike[str],
                localiser_run: str | os.PathLike[str], *, quantile: float = 0.1,
                calibrate: bool = True, C: float = 1.0) -> dict[str, Any]:
    """Fit the outline's category head for the classifier `run` on `localiser_run`'s maps
    (RUN/outline/head.npz and summary.json); returns the summary."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ..inference.abstention import (apply_temperature, fit_temperature,
                                        low_confidence_threshold)
    from ..preprocess import PreprocessSpec
    from .checkpoint import load_checkpoint
    from .measured import localiser_maps

    root = Path(dataset)
    _, payload = load_checkpoint(run)
    if payload.get("task") == "segment":
        raise InputError(f"{run}: is a localiser run; the outline's category needs a classifier run")
    class_names = [str(c) for c in payload["class_names"]]
    _, local = load_checkpoint(localiser_run)
    spec = PreprocessSpec.from_dict(local["preprocess"])
    encoder_name = str(local["model_name"])
    probabilities, _, _ = localiser_maps(localiser_run)
    rows = [r for r in read_manifest(root) if r.get("label") in class_names]
    data = {split: _split_features(root, [r for r in rows if r.get("split") == split],
                                   probabilities, encoder_name, spec, class_names)
            for split in ("train", "val", "test")}
    X, y = data["train"]
    if len(y) < 2 or len(set(y.tolist())) < 2:
        raise InputError(f"{root}: the outline's category needs training images of two "
                         "classes at least")
    scaler = StandardScaler().fit(X)
    std = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
    model.fit((X - scaler.mean_) / std, y)
    weight, bias = _head(model, len(class_names))
    summary: dict[str, Any] = {"class_names": class_names, "encoder": encoder_name,
                               "grid": list(spec.input_size), "train_images": int(len(y)),
                               "C": C, "temperature": 1.0, "low_confidence": 0.0,
                               "default": True}
    Xv, yv = data["val"]
    if len(yv):
        proba = _softmax((Xv - scaler.mean_) / std @ weight.T + bias)
        temperature = fit_temperature(proba, yv) if calibrate else 1.0
        calibrated = apply_temperature(proba, temperature)
        summary.update(temperature=round(float(temperature), 4),
                       low_confidence=round(low_confidence_threshold(calibrated, quantile), 4),
                       val_images=int(len(yv)),
                       val_metrics=_metrics(yv, calibrated, class_names))
    Xt, yt = data["test"]
    if len(yt):
        # Every test image read in its localiser map (the bundle falls back to the
        # whole-image head on an image where it finds no nodule).
        proba = apply_temperature(_softmax((Xt - scaler.mean_) / std @ weight.T + bias),
                                  summary["temperature"])
        summary.update(test_images=int(len(yt)), test_metrics=_metrics(yt, proba, class_names))
    out = Path(run) / OUTLINE_DIR
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "head.npz", mean=scaler.mean_.astype(np.float32), std=std.astype(np.float32),
             weight=weight, bias=bias)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
