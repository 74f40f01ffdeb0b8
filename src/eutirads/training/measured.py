"""Measured descriptors: read the EU-TIRADS descriptors from the nodule's outline, the way
a radiologist does (`models.nodule_features`: the nodule's intensity against the tissue
around it, dark and bright fractions inside, taller-than-wide, outline irregularity...),
with one logistic regression per descriptor on those measures.

`fit_measured(dataset, run, localiser_run)` writes RUN/measured/ (heads.npz, summary.json)
beside a classifier run; `eutirads export` then bundles the "measured" component, whose
descriptors replace the classifier's heads of the same name (docs/benchmarks.md, "Recipes":
on the phantom they read echogenicity far better than the CNN head).

- Outlines: each image's true mask (the manifest's `mask` column) and the localiser's
  probability map for it; the heads learn from both stacked (what the localiser outlines is
  what they will see at prediction; the true outline teaches the measure itself).
- Fitted on the train split, scored on val (and test when there is one) with the
  localiser's outlines, as in the bundle.
- A measured head is kept only where it reads its descriptor better on val than the
  classifier's own head of that name (or the classifier has none); the others stay with
  the classifier (summary `val_accuracy` holds both sides' figures).
- The default category source is chosen again on val (the run's rule: best val macro-F1
  of head, rule and combined, the head on a tie), now with the measured descriptors.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..categories import DESCRIPTORS
from ..data.manifest import image_path, load_mask, read_manifest
from ..errors import EutiradsError, InputError
from ..imageio import load_rgb
from ..inference.localiser import probability_to_image
from ..inference.measured import measure_inputs
from ..preprocess import crop_box, normalize, resize_to_input
from ..region import crop
from .data import row_descriptors

__all__ = ["fit_measured", "MEASURED_DIR", "measured_features", "head_arrays", "localiser_maps"]

log = logging.getLogger(__name__)

MEASURED_DIR = "measured"
ABSENT = -30.0  # the logit of a value the training images never showed


def measured_features(gray: np.ndarray, prob: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """N x F features (torch, batched) from stacked measure_inputs."""
    import torch

    from ..models.nodule_features import NoduleFeatures

    module = NoduleFeatures().eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(gray), 32):
            out.append(module(torch.from_numpy(gray[i:i + 32]), torch.from_numpy(prob[i:i + 32]),
                              torch.from_numpy(scale[i:i + 32])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def head_arrays(model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight V x F, bias V) over the descriptor's whole vocabulary from a fitted logistic
    regression (standardised inputs): a value it never saw gets logit ABSENT, a binary
    model's one row becomes [0, w]."""
    values = DESCRIPTORS[name]
    n_features = model.coef_.shape[1]
    weight = np.zeros((len(values), n_features), np.float32)
    bias = np.full(len(values), ABSENT, np.float32)
    classes = [int(c) for c in model.classes_]
    if len(classes) == 1:
        bias[classes[0]] = 0.0
    elif len(classes) == 2:
        bias[classes[0]] = 0.0
        weight[classes[1]] = model.coef_[0]
        bias[classes[1]] = model.intercept_[0]
    else:
        for row, c in enumerate(classes):
            weight[c] = model.coef_[row]
            bias[c] = model.intercept_[row]
    return weight, bias


def localiser_maps(localiser_run):
    """(probabilities(list of pixels) -> [(image-size probability, box)], grid, threshold)
    of a localiser run, run in batches as the bundle's ONNX graph would one by one."""
    import torch

    from ..preprocess import PreprocessSpec
    from .checkpoint import load_checkpoint
    from .engine import to_device

    model, payload = load_checkpoint(localiser_run)
    if payload.get("task") != "segment":
        raise InputError(f"{localiser_run}: not a localiser run (task {payload.get('task')!r})")
    to_device(model, torch.device("cpu"))
    spec = PreprocessSpec.from_dict(payload["preprocess"])
    config = payload.get("config") or {}

    @torch.no_grad()
    def probabilities(images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, Any]]:
        boxes = [crop_box(pixels, spec) for pixels in images]
        out = []
        for start in range(0, len(images), 16):
            x = torch.from_numpy(np.stack([
                normalize(resize_to_input(crop(pixels, box), spec), spec)
                for pixels, box in zip(images[start:start + 16], boxes[start:start + 16])]))
            grids = torch.sigmoid(model(x))[:, 0].numpy()
            out += [(probability_to_image(g, spec, box, pixels.shape), box) for g, pixels, box
                    in zip(grids, images[start:start + 16], boxes[start:start + 16])]
        return out

    return probabilities, tuple(spec.input_size), float(config.get("threshold", 0.5))


def _inputs(root: Path, rows: Sequence[dict], probabilities, grid, *,
            with_true: bool = True) -> dict[str, Any]:
    """Per row: true-outline and localiser-outline features (rows whose image fails are
    left out, with their one-line reason logged). Without `with_true` (val and test, which
    are scored on the localiser's outline only), "true" is None; `has_outline` is always
    there."""
    images, masks, kept = [], [], []
    for i, row in enumerate(rows):
        try:
            pixels = load_rgb(image_path(root, row), name=row["path"])
            mask = load_mask(root, row, image_size=(pixels.shape[1], pixels.shape[0]))
        except EutiradsError as exc:
            log.warning("measured descriptors: skipped %s", exc)
            continue
        images.append(pixels)
        masks.append(mask.astype(np.float32) if mask is not None
                     else np.zeros(pixels.shape[:2], np.float32))
        kept.append(i)
    true_in, loc_in = [], []
    for start in range(0, len(images), 64):  # a chunk at a time: full-size maps are large
        chunk = images[start:start + 64]
        for pixels, true, (prob, box) in zip(chunk, masks[start:start + 64],
                                             probabilities(chunk)):
            true_in.append(measure_inputs(pixels, true, box, grid))
            loc_in.append(measure_inputs(pixels, prob, box, grid))

    def stack(items):
        return [np.concatenate([it[k] for it in items]) for k in range(3)]

    return {"true": measured_features(*stack(true_in)) if true_in and with_true else None,
            "localiser": measured_features(*stack(loc_in)) if loc_in else None,
            "has_outline": np.array([bool(t[1].max() >= 0.5) for t in true_in]),
            "kept": kept}


def _accuracy(models: dict, X: np.ndarray, rows: Sequence[dict]) -> dict[str, float]:
    """Each measured head's accuracy on features X of `rows`."""
    return _descriptor_accuracy({name: model.predict(X) for name, model in models.items()},
                                rows)


def _descriptor_accuracy(predicted: dict[str, np.ndarray], rows: Sequence[dict]
                         ) -> dict[str, float]:
    """`<name>_accuracy` of each descriptor's predicted value indices, over the rows where
    the manifest knows the descriptor."""
    out = {}
    for name, pred in predicted.items():
        truth = [row_descriptors(r).get(name) for r in rows]
        known = [i for i, v in enumerate(truth) if v]
        if known:
            out[f"{name}_accuracy"] = round(float(np.mean(
                [DESCRIPTORS[name][int(pred[i])] == truth[i] for i in known])), 4)
    return out


def fit_measured(dataset: str | os.PathLike[str], run: str | os.PathLike[str],
                 localiser_run: str | os.PathLike[str], *, progress: bool = False
                 ) -> dict[str, Any]:
    """Fit the measured-descriptor heads for the classifier `run` (written into
    RUN/measured/) from the dataset's outlines and `localiser_run`'s; returns the summary."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = Path(dataset)
    rows = [r for r in read_manifest(root) if r.get("label") and r.get("mask_source", "") != "model"]
    by_split = {s: [r for r in rows if r.get("split") == s] for s in ("train", "val", "test")}
    probabilities, grid, _ = localiser_maps(localiser_run)
    data = {s: _inputs(root, rs, probabilities, grid, with_true=s == "train")
            for s, rs in by_split.items() if rs}
    train = data.get("train")
    if train is None or train["true"] is None:
        raise InputError(f"{root}: no training image for the measured descriptors")
    train_rows = [by_split["train"][i] for i in train["kept"]]
    heads = [n for n in DESCRIPTORS if any(row_descriptors(r).get(n) for r in train_rows)]
    X = np.vstack([train["true"], train["localiser"]])
    scaler = StandardScaler().fit(X)
    std = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    models, arrays = {}, {}
    for name in heads:
        values = [row_descriptors(r).get(name) for r in train_rows]
        # Only images with a true outline: a described nodule the mask misses teaches noise.
        keep = [i for i, v in enumerate(values) if v and train["has_outline"][i]]
        if not keep:
            continue
        y = np.array([DESCRIPTORS[name].index(values[i]) for i in keep] * 2)
        Xk = np.vstack([train["true"][keep], train["localiser"][keep]])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        if len(set(y)) == 1:
            from sklearn.dummy import DummyClassifier

            model = DummyClassifier(strategy="most_frequent")
        model.fit(Xk, y)
        models[name] = model
        arrays[name] = _fold_scaler(model, scaler.mean_, std, name)
    # Each descriptor from whichever reads it better on val: the measured head, or the
    # classifier's own head of that name (on the phantom the measures win echogenicity
    # and the CNN composition and margins; docs/benchmarks.md, "Recipes").
    val = data.get("val")
    val_rows = [by_split["val"][i] for i in val["kept"]] if val is not None else []
    classifier = _classifier_on_val(root, run, val_rows) if val_rows else None
    measured_val = (_accuracy(models, val["localiser"], val_rows)
                    if val is not None and val["localiser"] is not None else {})
    classifier_val = _head_accuracy(classifier, val_rows) if classifier else {}
    kept = _winning_heads(list(models), measured_val, classifier_val)
    models = {n: models[n] for n in kept}
    arrays = {n: arrays[n] for n in kept}
    summary: dict[str, Any] = {
        "heads": list(models), "grid": list(grid), "train_images": len(train_rows),
        "fitted": heads, "val_accuracy": {"measured": measured_val,
                                          "classifier": classifier_val}}
    for split in ("val", "test"):
        part = data.get(split)
        if part is not None and part["localiser"] is not None:
            summary[f"{split}_metrics"] = _accuracy(
                models, part["localiser"], [by_split[split][i] for i in part["kept"]])
    out = Path(run) / MEASURED_DIR
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "heads.npz", mean=scaler.mean_.astype(np.float32), std=std.astype(np.float32),
             names=np.array(list(arrays)),
             **{f"weight_{n}": w for n, (w, _) in arrays.items()},
             **{f"bias_{n}": b for n, (_, b) in arrays.items()})
    if classifier is not None and arrays:
        summary.update(_choose_source(classifier, val["localiser"], arrays, scaler.mean_, std))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _winning_heads(names: Sequence[str], measured: dict[str, float],
                   classifier: dict[str, float]) -> list[str]:
    """The measured heads that read their descriptor better on val than the classifier's
    head of the same name (or that the classifier lacks); the classifier's on a tie."""
    keep = []
    for name in names:
        theirs = classifier.get(f"{name}_accuracy")
        if theirs is None or measured.get(f"{name}_accuracy", 0.0) > theirs:
            keep.append(name)
    return keep


def _fold_scaler(model, mean: np.ndarray, std: np.ndarray, name: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The head's weights on features standardised by (mean, std), the one scaler of the
    exported module: its own pipeline scaler folded in."""
    if not hasattr(model, "steps"):  # one value only: a constant
        values = DESCRIPTORS[name]
        bias = np.full(len(values), ABSENT, np.float32)
        bias[int(model.classes_[0])] = 0.0
        return np.zeros((len(values), len(mean)), np.float32), bias
    inner_scaler, logreg = model.steps[0][1], model.steps[1][1]
    weight, bias = head_arrays(logreg, name)
    inner_std = np.where(inner_scaler.scale_ > 0, inner_scaler.scale_, 1.0)
    # w . (x - m1)/s1 = w . ((x - m0)/s0 * s0 + m0 - m1)/s1
    w = weight * (std / inner_std)[None, :]
    b = bias + weight @ ((mean - inner_scaler.mean_) / inner_std)
    return w.astype(np.float32), b.astype(np.float32)


def _classifier_on_val(root: Path, run, rows: Sequence[dict]) -> dict[str, Any] | None:
    """The classifier run on the val rows, as the bundle serves it: calibrated category
    probabilities, its descriptor heads' probabilities, the labels; None when the run has
    no classifier checkpoint to compare or a val image fails."""
    from ..inference.abstention import apply_temperature
    from ..preprocess import PreprocessSpec
    from .checkpoint import load_checkpoint
    from .data import _sample, load_images
    from .engine import CATEGORY, LoopOptions, predict_proba

    model, payload = load_checkpoint(run)
    if payload.get("task") == "segment":
        return None
    class_names = [str(c) for c in payload["class_names"]]
    spec = PreprocessSpec.from_dict(payload["preprocess"]).replace(class_names=class_names)
    images, kept, _ = load_images([_sample(root, r) for r in rows], spec, progress=False)
    if len(kept) != len(rows):
        return None
    abstention = payload.get("abstention") or {}
    temperature = float((abstention.get("calibration") or {}).get("temperature", 1.0))
    out = predict_proba(model, spec, images, LoopOptions(), heads=True)
    index = {c: i for i, c in enumerate(class_names)}
    return {"head": apply_temperature(out[CATEGORY], temperature), "class_names": class_names,
            "descriptors": {h: out[h] for h in (payload.get("descriptors") or {}) if h in out},
            "y": np.array([index.get(r["label"], -1) for r in rows]), "rows": rows}


def _head_accuracy(classifier: dict[str, Any], rows: Sequence[dict]) -> dict[str, float]:
    """Val accuracy of the classifier's own descriptor heads, on the same rows as the
    measured heads'."""
    return _descriptor_accuracy({name: probs.argmax(1) for name, probs
                                 in classifier["descriptors"].items()}, rows)


def _choose_source(classifier: dict[str, Any], features: np.ndarray, arrays, mean, std
                   ) -> dict[str, Any]:
    """The default category source on val with the measured descriptors (as
    training.run.fit_abstention chooses it: best val macro-F1 of head, rule and combined,
    the head on a tie)."""
    from ..evaluation.metrics import training_metrics
    from .run import source_predictions

    z = (features - mean) / std
    probs = dict(classifier["descriptors"])
    for name, (w, b) in arrays.items():
        logits = z @ w.T + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs[name] = e / e.sum(1, keepdims=True)
    class_names, y = classifier["class_names"], classifier["y"]
    sources = source_predictions(classifier["head"], probs, class_names)
    scores = {k: training_metrics(y, pred, len(class_names))["macro_f1"]
              for k, (_, pred) in sources.items()}
    source = max(sources, key=lambda k: (scores[k], k == "head"))
    return {"category_source": source, "val_macro_f1": scores}
