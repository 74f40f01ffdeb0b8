"""The small-data recipe harness: repeated, patient-grouped, duplicate-aware K-fold CV on
DDTI-dev, every recipe scored in the same folds as the frozen-features baseline.

    nice -n 10 python benchmarks/recipe_cv.py [--ddti DIR] [--work DIR] [--folds 5]
        [--repeats 5] [--only NAME ...] [--threads 2]

- The dataset is imported once with the project's importer (`--format ddti`) into
  WORK/dataset; folds are `data.split.patient_folds` with seeds 0..repeats-1 (stratified
  by label, grouped by case and by identical / near-duplicate images).
- "features" recipes run a frozen ImageNet backbone once per view (full image area,
  nodule crop with a margin of context, ...; cached in WORK/features/) and fit a
  scikit-learn head inside each training fold. The baseline is one of them: frozen
  lite0 features of the full image area + logistic regression, the issue's "20 lines".
- "train" recipes fine-tune with `eutirads.training.engine.fit` in each fold (a fixed
  schedule, no early stopping on the scored fold), the descriptor heads included when
  the dataset has descriptors.
- Every recipe: AUC high (4b/4c/5 vs rest), quadratic kappa, macro-F1, accuracy and
  per-descriptor accuracy per fold; mean with a 95% interval and the paired difference
  against the baseline with its 95% interval, both by the Nadeau-Bengio corrected
  repeated-CV t statistic (folds share training images, so the naive interval is too
  narrow). One JSON line per recipe in WORK/results.jsonl; `--table` prints the Markdown
  table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# --- recipes --------------------------------------------------------------------------
# A view: which pixels a frozen backbone sees. (model, crop, roi_margin, mirror-averaged)
VIEWS: dict[str, dict[str, Any]] = {
    "lite0-full": {"model": "tf_efficientnet_lite0", "crop": "full"},
    "lite0-roi25": {"model": "tf_efficientnet_lite0", "crop": "roi", "roi_margin": 0.25},
    "lite0-roi50": {"model": "tf_efficientnet_lite0", "crop": "roi", "roi_margin": 0.5},
    "lite0-roi100": {"model": "tf_efficientnet_lite0", "crop": "roi", "roi_margin": 1.0},
    "lite2-full": {"model": "tf_efficientnet_lite2", "crop": "full"},
    "lite2-roi50": {"model": "tf_efficientnet_lite2", "crop": "roi", "roi_margin": 0.5},
}
# Measured nodule features (`models.nodule_features`) on the localiser's grid, from the
# manifest's true outline (the oracle) or from out-of-fold localiser probability maps
# (each image's map from a configs/localiser_frozen.yaml localiser that never saw its patient).
NODULE_VIEWS = ("nodule-true", "nodule-oof")

# name -> (views concatenated, head, head options)
FEATURE_RECIPES: dict[str, tuple[list[str], str, dict[str, Any]]] = {
    "baseline: lite0 full + logreg": (["lite0-full"], "logreg", {"C": 1.0}),
    "lite0 roi25 + logreg": (["lite0-roi25"], "logreg", {"C": 1.0}),
    "lite0 roi50 + logreg": (["lite0-roi50"], "logreg", {"C": 1.0}),
    "lite0 roi100 + logreg": (["lite0-roi100"], "logreg", {"C": 1.0}),
    "lite0 full+roi50 + logreg": (["lite0-full", "lite0-roi50"], "logreg", {"C": 1.0}),
    "lite0 roi25+roi100 + logreg": (["lite0-roi25", "lite0-roi100"], "logreg", {"C": 1.0}),
    "lite0 roi50 + logreg C=0.1": (["lite0-roi50"], "logreg", {"C": 0.1}),
    "lite0 full + logreg C=0.1": (["lite0-full"], "logreg", {"C": 0.1}),
    "lite0 full + ordinal logreg": (["lite0-full"], "ordinal", {"C": 1.0}),
    "lite0 full + descriptor stack": (["lite0-full"], "stack", {"C": 1.0}),
    "lite0 roi50 + ordinal logreg": (["lite0-roi50"], "ordinal", {"C": 1.0}),
    "lite0 roi50 + descriptor stack": (["lite0-roi50"], "stack", {"C": 1.0}),
    "lite0 full+roi50 + descriptor stack": (["lite0-full", "lite0-roi50"], "stack", {"C": 1.0}),
    "lite2 full + logreg": (["lite2-full"], "logreg", {"C": 1.0}),
    "lite2 roi50 + logreg": (["lite2-roi50"], "logreg", {"C": 1.0}),
    "nodule true + logreg": (["nodule-true"], "logreg", {"C": 1.0}),
    "nodule true + logreg C=0.1": (["nodule-true"], "logreg", {"C": 0.1}),
    "nodule true + descriptor stack": (["nodule-true"], "stack", {"C": 1.0}),
    "nodule true + lite0 full + logreg": (["nodule-true", "lite0-full"], "logreg", {"C": 1.0}),
    "nodule oof + logreg": (["nodule-oof"], "logreg", {"C": 1.0}),
    "nodule oof + logreg C=0.1": (["nodule-oof"], "logreg", {"C": 0.1}),
    "nodule oof + descriptor stack": (["nodule-oof"], "stack", {"C": 1.0}),
    "nodule oof + lite0 full + logreg": (["nodule-oof", "lite0-full"], "logreg", {"C": 1.0}),
    "nodule oof + ordinal logreg": (["nodule-oof"], "ordinal", {"C": 1.0}),
}

# name -> config overrides for engine.fit (fixed schedules, chosen before scoring).
# The schedule of benchmarks/ddti_cv.py's "lite0-two-stage-full" (same folds for repeat 0),
# spelt out: the built-in defaults became the frozen recipe without augmentation after
# these entries were written, which silently turned them into 10 frozen epochs.
TWO_STAGE = ["mode=two-stage", "augment=true", "head_epochs=40", "epochs=10", "unfreeze=3",
             "lr=0.003", "finetune_lr=0.0003", "aug_passes=3"]
FINETUNE_ALL = ["mode=finetune", "augment=true", "unfreeze=-1", "epochs=12", "lr=0.003",
                "finetune_lr=0.0003"]
TRAIN_RECIPES: dict[str, list[str]] = {
    # The descriptor heads as auxiliary targets (each head's loss masked where unknown).
    "lite0 two-stage full + descriptor heads": TWO_STAGE + ["crop=full"],
    "lite0 two-stage full, no descriptor heads": TWO_STAGE + ["crop=full",
                                                              "descriptor_weight=0"],
    "lite0 two-stage roi50 + descriptor heads": TWO_STAGE + ["crop=roi", "roi_margin=0.5"],
    # Every encoder stage trains (on augmented images, no feature cache): the masked
    # descriptor losses can shape the whole backbone, not only its top three stages.
    "lite0 finetune-all full + descriptor heads": FINETUNE_ALL + ["crop=full"],
    "lite0 finetune-all full, no descriptor heads": FINETUNE_ALL + ["crop=full",
                                                                    "descriptor_weight=0"],
}
BASELINE = "baseline: lite0 full + logreg"


# --- data -----------------------------------------------------------------------------

def load_dataset(ddti: str, work: Path):
    from eutirads.categories import sort_labels
    from eutirads.data.importers import import_dataset
    from eutirads.data.manifest import read_manifest

    dataset = work / "dataset"
    if not (dataset / "manifest.csv").is_file():
        import_dataset(ddti, dataset, fmt="ddti", progress=False)
    rows = [r for r in read_manifest(dataset) if r.get("label")]
    return dataset, rows, sort_labels({r["label"] for r in rows})


def descriptor_targets(rows) -> tuple[list[str], np.ndarray]:
    """Heads and an N x D index matrix (-1 unknown) through the training reader's rule."""
    from eutirads.training.data import descriptor_matrix

    return descriptor_matrix(rows)


def repeated_folds(rows, k: int, repeats: int) -> np.ndarray:
    from eutirads.data.split import patient_folds
    from eutirads.training.cv import check_class_sizes

    check_class_sizes([r["label"] for r in rows], k, where="DDTI-dev")
    return np.asarray([patient_folds(rows, k, seed=r) for r in range(repeats)])


# --- frozen features ------------------------------------------------------------------

def _features(dataset, rows, view, work, threads) -> np.ndarray:
    file = work / "features" / f"{view}.npy"
    if file.is_file():
        return np.load(file)
    import torch

    if view in NODULE_VIEWS:
        from eutirads.models.nodule_features import measure

        torch.set_num_threads(threads)
        gray, true, scale = nodule_inputs(dataset, rows, work)
        prob = true if view == "nodule-true" else oof_probabilities(dataset, rows, work, threads)
        feats = np.concatenate([measure(gray[i:i + 32] / 255.0, prob[i:i + 32], scale[i:i + 32])
                                for i in range(0, len(gray), 32)]).astype(np.float32)
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, feats)
        return feats

    from eutirads.models import create_model
    from eutirads.training.config import resolve_config
    from eutirads.training.data import _sample, eval_transform, load_images
    from eutirads.training.run import make_spec

    torch.set_num_threads(threads)
    opts = VIEWS[view]
    config = resolve_config(None, [f"{k}={v}" for k, v in opts.items()])
    spec = make_spec(config, ["a", "b"])
    model = create_model(config.model, num_classes=2, weights="imagenet").eval()
    samples = [_sample(dataset, r) for r in rows]
    images, _, skipped = load_images(samples, spec, progress=False)
    if skipped:
        raise SystemExit(f"{view}: {len(skipped)} image(s) unreadable: {skipped[0]}")
    transform = eval_transform(spec)
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), 16):
            x = torch.from_numpy(np.stack([transform(im) for im in images[i:i + 16]]))
            f = model.forward_features(x).mean(dim=(2, 3))
            f = (f + model.forward_features(torch.flip(x, dims=[3])).mean(dim=(2, 3))) / 2
            feats.append(f.numpy())
    feats = np.concatenate(feats).astype(np.float32)
    file.parent.mkdir(parents=True, exist_ok=True)
    np.save(file, feats)
    return feats


def _localiser_config():
    from eutirads.training.config import resolve_config

    return resolve_config(str(REPO / "configs" / "localiser_frozen.yaml"), [])


def nodule_inputs(dataset, rows, work, name: str = "inputs"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows on the localiser's grid: gray (N x H x W uint8), true mask (0/1; all 0
    where the manifest has none) and the grid pixel's size in image pixels (N x 2)."""
    file = work / "nodule" / f"{name}.npz"
    if file.is_file():
        z = np.load(file)
        return z["gray"], z["mask"], z["scale"]
    from eutirads.data.manifest import image_path, load_mask
    from eutirads.imageio import load_rgb
    from eutirads.preprocess import crop_box
    from eutirads.region import crop
    from eutirads.training.segment import _resize_pair, make_segment_spec

    spec = make_segment_spec(_localiser_config())
    height, width = spec.input_size
    grays, masks, scales = [], [], []
    for row in rows:
        pixels = load_rgb(image_path(dataset, row), name=row["path"])
        try:
            true = load_mask(dataset, row, image_size=(pixels.shape[1], pixels.shape[0]))
        except Exception:  # a bad mask is an unknown mask here
            true = None
        if true is None:
            true = np.zeros(pixels.shape[:2], bool)
        box = crop_box(pixels, spec)
        image, mask = _resize_pair(crop(pixels, box), crop(true, box), spec)
        grays.append(image.mean(axis=2).round().astype(np.uint8))
        masks.append(mask)
        scales.append(((box[3] - box[1]) / height, (box[2] - box[0]) / width))
    out = np.stack(grays), np.stack(masks).astype(np.float32), np.asarray(scales, np.float32)
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(file, gray=out[0], mask=out[1], scale=out[2])
    return out


def oof_probabilities(dataset, rows, work, threads) -> np.ndarray:
    """Out-of-fold localiser probability maps (N x H x W) for the labelled rows: for each
    fold of repeat 0, configs/localiser_frozen.yaml (30 epochs, no early stopping) is trained on
    every image with a mask (labelled or not) whose patient has no image in the fold, and
    predicts the fold. The frozen encoder is the same in every fold: images are encoded
    once (as benchmarks/localiser_cv.py does)."""
    file = work / "nodule" / "oof_prob.npy"
    if file.is_file():
        return np.load(file)
    import torch

    from eutirads.data.manifest import image_path, load_mask, read_manifest
    from eutirads.data.split import patient_folds
    from eutirads.imageio import load_rgb
    from eutirads.models.segmentation import create_segmenter
    from eutirads.preprocess import crop_box
    from eutirads.region import crop
    from eutirads.training.run import seed_everything
    from eutirads.training.segment import (_plain, _resize_pair, encode_pairs, fit_segmenter,
                                           joint_transform, make_segment_spec)

    torch.set_num_threads(threads)
    config = _localiser_config()
    spec = make_segment_spec(config)
    folds = np.asarray(patient_folds(rows, 5, seed=0))
    # Training pool: every manifest row with a usable mask.
    pool, pairs = [], []
    for row in read_manifest(dataset):
        if not row.get("mask"):
            continue
        try:
            pixels = load_rgb(image_path(dataset, row), name=row["path"])
            true = load_mask(dataset, row, image_size=(pixels.shape[1], pixels.shape[0]))
        except Exception:
            continue
        box = crop_box(pixels, spec)
        pairs.append(_resize_pair(crop(pixels, box), crop(true, box), spec))
        pool.append(row.get("patient_id") or row["path"])
    gray, _, _ = nodule_inputs(dataset, rows, work)
    targets = [(np.repeat(g[:, :, None], 3, axis=2), np.zeros(g.shape, np.uint8)) for g in gray]
    seed_everything(config.seed)
    encoder_model = create_segmenter(config.model, weights=config.weights, **config.model_kwargs)
    device = torch.device("cpu")
    augment = joint_transform(spec, config)
    passes = [encode_pairs(encoder_model, pairs, augment, device, config.batch_size, "pass",
                           False) for _ in range(max(1, config.aug_passes))]
    target_levels, _ = encode_pairs(encoder_model, targets, _plain(spec), device,
                                    config.batch_size, "plain", False)
    out = np.zeros(gray.shape, np.float32)
    size = tuple(spec.input_size)
    for fold in range(int(folds.max()) + 1):
        held = np.flatnonzero(folds == fold)
        held_patients = {rows[i].get("patient_id") or rows[i]["path"] for i in held}
        train = [i for i, p in enumerate(pool) if p not in held_patients]
        tidx = torch.tensor(train)
        seed_everything(config.seed + fold)
        model = create_segmenter(config.model, weights="none", **config.model_kwargs)
        model.encoder.load_state_dict(encoder_model.encoder.state_dict())
        vidx = torch.tensor(held)
        encoded = ([([lv[tidx] for lv in levels], masks[tidx]) for levels, masks in passes],
                   [lv[vidx] for lv in target_levels])
        fit_segmenter(model, spec, config, [pairs[i] for i in train],
                      [targets[i] for i in held], progress=False, early_stopping=False,
                      encoded=encoded)
        model.eval()
        with torch.no_grad():
            for i in held:
                logits = model.decode([lv[i:i + 1].float() for lv in target_levels], size)
                out[i] = torch.sigmoid(logits)[0, 0].numpy()
        print(f"localiser fold {fold}: trained on {len(train)} images", flush=True)
    np.save(file, out)
    return out


def _logreg(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced",
                                                              max_iter=3000))


def _proba_full(model, X, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (absent training classes get 0)."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = p
    return out


def fit_head(head: str, opts: dict[str, Any], X: np.ndarray, y: np.ndarray,
             D: np.ndarray, Xt: np.ndarray, n_classes: int) -> tuple[np.ndarray, dict]:
    """Category probabilities for Xt (and descriptor predictions) from a head fitted on X."""
    C = float(opts.get("C", 1.0))
    desc_pred: dict[int, np.ndarray] = {}
    if head == "logreg":
        return _proba_full(_logreg(C).fit(X, y), Xt, n_classes), desc_pred
    if head == "ordinal":
        # Cumulative binary models P(y >= c), monotonised, differenced into classes.
        cum = np.ones((len(Xt), n_classes + 1))
        cum[:, n_classes] = 0
        for c in range(1, n_classes):
            target = (y >= c).astype(int)
            cum[:, c] = _logreg(C).fit(X, target).predict_proba(Xt)[:, 1]
        cum[:, 1:n_classes] = np.minimum.accumulate(cum[:, 1:n_classes], axis=1)
        p = np.clip(cum[:, :-1] - cum[:, 1:], 1e-6, None)
        return p / p.sum(1, keepdims=True), desc_pred
    if head == "stack":
        # Descriptor heads as auxiliary targets: their out-of-fold probabilities (inner
        # 5-fold within the training fold) join the category model's inputs.
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        extra_train, extra_test = [], []
        for j in range(D.shape[1]):
            known = D[:, j] >= 0
            values = np.unique(D[known, j])
            if known.sum() < 10 or len(values) < 2:
                continue
            model = _logreg(C)
            inner = StratifiedKFold(3, shuffle=True, random_state=0)
            train_p = np.zeros((len(X), len(values)))
            try:
                train_p[known] = cross_val_predict(model, X[known], D[known, j], cv=inner,
                                                   method="predict_proba")
            except ValueError:
                continue
            model.fit(X[known], D[known, j])
            # Unknown training rows get the fitted model's own guess.
            train_p[~known] = model.predict_proba(X[~known]) if (~known).any() else train_p[~known]
            test_p = model.predict_proba(Xt)
            desc_pred[j] = model.classes_[test_p.argmax(1)]
            extra_train.append(train_p)
            extra_test.append(test_p)
        base = _logreg(C).fit(X, y)
        inner = StratifiedKFold(3, shuffle=True, random_state=0)
        base_train = cross_val_predict(_logreg(C), X, y, cv=inner, method="predict_proba")
        Z = np.hstack([base_train, *extra_train])
        Zt = np.hstack([base.predict_proba(Xt), *extra_test])
        top = _logreg(C).fit(Z, y)
        return _proba_full(top, Zt, n_classes), desc_pred
    raise ValueError(head)


def descriptor_predictions(X, D, train, test, C=1.0) -> dict[int, np.ndarray]:
    """Per-descriptor logistic regressions on the same features (accuracy column)."""
    out = {}
    for j in range(D.shape[1]):
        known = D[train, j] >= 0
        if known.sum() < 10 or len(np.unique(D[train][known, j])) < 2:
            continue
        model = _logreg(C).fit(X[train][known], D[train][known, j])
        out[j] = model.predict(X[test])
    return out


# --- scoring --------------------------------------------------------------------------

def score_fold(y, proba, class_names, positive, D, desc_pred, heads) -> dict[str, float]:
    from eutirads.evaluation.metrics import fold_metrics

    m = fold_metrics(y, proba, class_names, positive)
    for j, name in enumerate(heads):
        known = D[:, j] >= 0
        if j in desc_pred and known.any():
            m[f"{name}_accuracy"] = float((desc_pred[j][known] == D[known, j]).mean())
    return m


def corrected_interval(values: np.ndarray, n_train: float, n_test: float
                       ) -> tuple[float, float, float]:
    """Mean and 95% interval of per-fold values (or paired differences) by the
    Nadeau-Bengio corrected resampled t statistic: variance x (1/J + n_test/n_train)."""
    from scipy import stats

    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    J = len(values)
    if J < 2:
        return (float(values.mean()) if J else math.nan, math.nan, math.nan)
    mean = float(values.mean())
    var = float(values.var(ddof=1))
    se = math.sqrt((1 / J + n_test / n_train) * var)
    t = float(stats.t.ppf(0.975, J - 1))
    return mean, mean - t * se, mean + t * se


def run_recipe(name, kind, fold_sets, y, class_names, positive, D, heads, ctx) -> list[dict]:
    """Per (repeat, fold) metrics of one recipe."""
    per_fold = []
    for r, folds in enumerate(fold_sets):
        k = int(folds.max()) + 1
        for f in range(k):
            train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            if kind == "features":
                views, head, opts = FEATURE_RECIPES[name]
                X = np.hstack([ctx["features"](v) for v in views])
                proba, desc_pred = fit_head(head, opts, X[train], y[train], D[train], X[test],
                                            len(class_names))
                if not desc_pred:
                    desc_pred = descriptor_predictions(X, D, train, test)
            else:
                proba, desc_pred = ctx["train"](name, train, test, r * 100 + f)
            m = score_fold(y[test], proba, class_names, positive, D[test], desc_pred, heads)
            m.update(repeat=r, fold=f, n_train=len(train), n_test=len(test))
            per_fold.append(m)
    return per_fold


def summarise(name, per_fold, baseline_folds, seconds) -> dict:
    n_train = float(np.mean([m["n_train"] for m in per_fold]))
    n_test = float(np.mean([m["n_test"] for m in per_fold]))
    keys = [k for k in per_fold[0] if k not in ("repeat", "fold", "n_train", "n_test")]
    out: dict[str, Any] = {"recipe": name, "folds": len(per_fold), "seconds": round(seconds, 1),
                           "metrics": {}, "vs_baseline": {}}
    base = {(m["repeat"], m["fold"]): m for m in baseline_folds or []}
    for key in keys:
        values = np.array([m.get(key, math.nan) for m in per_fold], float)
        out["metrics"][key] = corrected_interval(values, n_train, n_test)
        if base:
            diffs = np.array([m.get(key, math.nan) - base[(m["repeat"], m["fold"])]
                              .get(key, math.nan) for m in per_fold
                              if (m["repeat"], m["fold"]) in base], float)
            out["vs_baseline"][key] = corrected_interval(diffs, n_train, n_test)
    out["per_fold"] = per_fold
    return out


def table(results: list[dict]) -> str:
    def cell(v):
        mean, lo, hi = v
        if math.isnan(mean):
            return "-"
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else f"{mean:.3f}"

    def diff(v):
        mean, lo, hi = v
        if math.isnan(mean):
            return "-"
        return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    desc = sorted({k for r in results for k in r["metrics"] if k.endswith("_accuracy")
                   and k != "accuracy"})
    head = ["recipe", "folds", "AUC high", "ΔAUC vs baseline", "kappa", "Δkappa", "macro-F1",
            *[d.replace("_accuracy", " acc.") for d in desc], "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m, d = r["metrics"], r["vs_baseline"]
        nan3 = (math.nan,) * 3
        row = [r["recipe"], str(r["folds"]), cell(m.get("auc_high", nan3)),
               diff(d.get("auc_high", nan3)) if r["recipe"] != BASELINE else "(baseline)",
               cell(m.get("kappa", nan3)), diff(d.get("kappa", nan3))
               if r["recipe"] != BASELINE else "", cell(m.get("macro_f1", nan3)),
               *[f"{m[k][0]:.3f}" if k in m and not math.isnan(m[k][0]) else "-" for k in desc],
               f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddti", default=os.environ.get(
        "EUTIRADS_DDTI_DIR", str(REPO.parent / "shared" / "datasets" / "ddti-dev")))
    parser.add_argument("--work", default="/tmp/eutirads-recipe-cv")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="recipe names (default: every feature recipe)")
    parser.add_argument("--train", action="store_true", help="also run the fine-tuning recipes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the results table and stop")
    args = parser.parse_args(argv)
    work = Path(args.work)
    results_file = work / f"results-{args.folds}x{args.repeats}.jsonl"
    if args.table:
        results = [json.loads(line) for line in results_file.read_text().splitlines() if line]
        latest = {r["recipe"]: r for r in results}
        order = [BASELINE] + [n for n in latest if n != BASELINE]
        print(table([latest[n] for n in order if n in latest]))
        return 0

    from eutirads.evaluation.metrics import default_positive

    dataset, rows, class_names = load_dataset(args.ddti, work)
    index = {c: i for i, c in enumerate(class_names)}
    y = np.array([index[r["label"]] for r in rows])
    heads, D = descriptor_targets(rows)
    positive = default_positive(class_names)
    fold_sets = repeated_folds(rows, args.folds, args.repeats)
    ctx = {"features": lambda v: _features(dataset, rows, v, work, args.threads),
           "train": make_trainer(dataset, rows, class_names, heads, D, y, args.threads)}
    names = args.only or (list(FEATURE_RECIPES) + (list(TRAIN_RECIPES) if args.train else []))
    if BASELINE not in names:
        names = [BASELINE] + names
    baseline_folds = None
    for name in names:
        kind = "features" if name in FEATURE_RECIPES else "train"
        started = time.perf_counter()
        per_fold = run_recipe(name, kind, fold_sets, y, class_names, positive, D, heads, ctx)
        if name == BASELINE:
            baseline_folds = per_fold
        summary = summarise(name, per_fold, baseline_folds if name != BASELINE else None,
                            time.perf_counter() - started)
        summary.update(kind=kind, k=args.folds, repeats=args.repeats, classes=class_names,
                       descriptor_heads=heads)
        with results_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
        m = summary["metrics"]
        print(f"{name}: AUC high {m['auc_high'][0]:.3f}, kappa {m['kappa'][0]:.3f}, "
              f"macro-F1 {m['macro_f1'][0]:.3f} ({summary['seconds']:.0f} s)", flush=True)
    return 0


def make_trainer(dataset, rows, class_names, heads, D, y, threads) -> Callable:
    """A fold trainer for the fine-tuning recipes (images decoded once per spec)."""
    cache: dict = {}

    def train(name, train_idx, test_idx, seed):
        import torch

        from eutirads.categories import DESCRIPTORS
        from eutirads.models import create_model
        from eutirads.training.config import resolve_config
        from eutirads.training.data import _sample, load_images
        from eutirads.training.engine import fit, predict_proba
        from eutirads.training.run import make_spec, seed_everything

        torch.set_num_threads(threads)
        config = resolve_config(None, TRAIN_RECIPES[name] + [f"seed={seed}"])
        spec = make_spec(config, class_names)
        samples = [_sample(dataset, r) for r in rows]
        images, kept, _ = load_images(samples, spec, cache=cache, progress=False)
        use = heads if config.descriptor_weight > 0 else []
        descriptors = {h: len(DESCRIPTORS[h]) for h in use}
        seed_everything(seed)
        model = create_model(config.model, num_classes=len(class_names), weights=config.weights,
                             descriptors=descriptors, **config.model_kwargs)
        Y = np.column_stack([y, D[:, [heads.index(h) for h in use]]]) if use else y[:, None]
        fit(model, spec, config, [images[i] for i in train_idx], Y[train_idx],
            [images[i] for i in test_idx], Y[test_idx], progress=False, head_names=use,
            early_stopping=False)
        out = predict_proba(model, spec, [images[i] for i in test_idx], config, heads=True)
        desc_pred = {heads.index(h): out[h].argmax(1) for h in use if h in out}
        return out["category"], desc_pred

    return train


if __name__ == "__main__":
    sys.exit(main())
