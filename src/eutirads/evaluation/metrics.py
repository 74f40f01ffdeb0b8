"""Classification metrics as pure numpy functions (tested against scikit-learn).

Every function takes labels as given (strings such as "3" or "4a", or integers) and an
explicit `labels` sequence that fixes the class order; probability matrices have one
column per entry of `labels`, in that order (scikit-learn's `classes_` convention).

A class absent from `y_true` never crashes anything: a value that is undefined (a recall
with no true example, an AUC with one class only, a kappa with a single class) is NaN,
and the averages skip NaN the way scikit-learn's `zero_division=np.nan` does.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..categories import label_sort_key
from ..errors import InputError

__all__ = [
    "encode",
    "confusion_matrix",
    "accuracy",
    "classification_report",
    "sensitivity_specificity",
    "roc_curve",
    "roc_auc",
    "one_vs_rest_auc",
    "quadratic_weighted_kappa",
    "default_positive",
    "high_risk",
    "calibration",
    "log_loss",
    "resample_patients",
    "bootstrap_ci",
    "summary_metrics",
    "compute_metrics",
    "training_metrics",
    "fold_metrics",
    "FOLD_METRICS",
]


def _nan() -> float:
    return float("nan")


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else _nan()


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else _nan()


def encode(y: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Indices of `y`'s values in `labels`; a value not in `labels` is an InputError."""
    index = {label: i for i, label in enumerate(labels)}
    try:
        return np.fromiter((index[v] for v in y), dtype=np.int64, count=len(y))
    except KeyError as exc:
        raise InputError(f"label {exc.args[0]!r} is not one of the classes "
                         f"{', '.join(map(str, labels))}") from None


def _check_proba(proba: np.ndarray, n: int, labels: Sequence[Any]) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (n, len(labels)):
        raise InputError(f"probabilities must have shape ({n}, {len(labels)}), got {proba.shape}")
    return proba


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any],
                     labels: Sequence[Any]) -> np.ndarray:
    """KxK counts: rows are true classes, columns predicted classes (scikit-learn's layout)."""
    t, p = encode(y_true, labels), encode(y_pred, labels)
    k = len(labels)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    if len(y_true) == 0:
        return _nan()
    return float(np.mean(np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object)))


def classification_report(y_true: Sequence[Any], y_pred: Sequence[Any],
                          labels: Sequence[Any]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, with macro and weighted averages.

    Precision is NaN for a class never predicted, recall for a class with no true example,
    F1 when the class is neither present nor predicted. Macro averages skip NaN; weighted
    averages weigh by support (a class without support weighs nothing).
    """
    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        fp, fn = predicted[i] - tp[i], support[i] - tp[i]
        per_class[str(label)] = {
            "precision": _safe_div(tp[i], predicted[i]),
            "recall": _safe_div(tp[i], support[i]),
            "f1": _safe_div(2 * tp[i], 2 * tp[i] + fp + fn),
            "support": int(support[i]),
        }

    def average(weighted: bool) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in ("precision", "recall", "f1"):
            values = np.array([per_class[str(lab)][key] for lab in labels])
            weights = support.astype(float) if weighted else np.ones(len(labels))
            keep = ~np.isnan(values) & (weights > 0)
            out[key] = (float(np.average(values[keep], weights=weights[keep]))
                        if keep.any() else _nan())
        out["support"] = int(support.sum())
        return out

    return {"per_class": per_class, "macro": average(False), "weighted": average(True),
            "accuracy": _safe_div(tp.sum(), support.sum())}


def sensitivity_specificity(y_true: Sequence[Any], y_pred: Sequence[Any],
                            labels: Sequence[Any]) -> dict[str, dict[str, float]]:
    """One-vs-rest sensitivity (recall) and specificity per class."""
    cm = confusion_matrix(y_true, y_pred, labels)
    total = cm.sum()
    out = {}
    for i, label in enumerate(labels):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        out[str(label)] = {"sensitivity": _safe_div(tp, tp + fn),
                           "specificity": _safe_div(tn, tn + fp)}
    return out


def roc_curve(y_binary: Sequence[bool], scores: Sequence[float]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first, starting at
    (0, 0) with threshold +inf; as scikit-learn's roc_curve(drop_intermediate=False).
    Rates are NaN when a side (positives or negatives) is empty."""
    y = np.asarray(y_binary, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: all tied items cross the threshold together.
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], int)
    tps = np.cumsum(y)[last].astype(float)
    fps = (last + 1 - tps).astype(float)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s[last]]
    n_pos, n_neg = tps[-1], fps[-1]
    tpr = tps / n_pos if n_pos else np.full_like(tps, np.nan)
    fpr = fps / n_neg if n_neg else np.full_like(fps, np.nan)
    return fpr, tpr, thresholds


def roc_auc(y_binary: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half).
    NaN when only one side is present."""
    y = np.asarray(y_binary, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return _nan()
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's rankdata, without its
    per-call overhead, which dominated the bootstrap)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    edges = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])
    group_rank = (edges[:-1] + edges[1:] + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, np.diff(edges))
    return ranks


def one_vs_rest_auc(y_true: Sequence[Any], proba: np.ndarray, labels: Sequence[Any], *,
                    curves: bool = True) -> dict[str, Any]:
    """Each class's AUC against the rest, their macro mean (NaN skipped) and the curves."""
    t = encode(y_true, labels)
    proba = _check_proba(proba, len(t), labels)
    per_class, points = {}, {}
    for i, label in enumerate(labels):
        per_class[str(label)] = roc_auc(t == i, proba[:, i])
        if curves:
            fpr, tpr, _ = roc_curve(t == i, proba[:, i])
            points[str(label)] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return {"per_class": per_class, "macro": _nanmean(per_class.values()), "curves": points}


def quadratic_weighted_kappa(y_true: Sequence[Any], y_pred: Sequence[Any],
                             labels: Sequence[Any]) -> float:
    """Cohen's kappa with quadratic weights; `labels` must be in ordinal order (use
    `categories.sort_labels`). NaN when undefined (e.g. everything in one class)."""
    cm = confusion_matrix(y_true, y_pred, labels).astype(float)
    n = cm.sum()
    if n == 0:
        return _nan()
    k = len(labels)
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2
    den = float((weights * expected).sum())
    if den == 0:
        return _nan()
    return float(1 - (weights * cm).sum() / den)


def default_positive(labels: Sequence[str]) -> list[str]:
    """The high-risk side by default: EU-TIRADS 4 and 5; for a scheme with sub-categories
    (Kwak TI-RADS as in DDTI) 4b, 4c and 5, the issue's "high suspicion" set, which the
    cross-validation in training uses too. Other labels: those of category 4 or 5."""
    names = [str(lab) for lab in labels]
    if any(label_sort_key(n)[1] for n in names):
        return [n for n in names if label_sort_key(n)[0] == 5 or n in ("4b", "4c")]
    return [n for n in names if label_sort_key(n)[0] in (4, 5)]


def high_risk(y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray,
              labels: Sequence[Any], positive: Iterable[Any] | None = None, *,
              curve: bool = True) -> dict[str, Any]:
    """Positive (high-risk) labels against the rest: sensitivity, specificity, PPV, NPV from
    the predicted class, and AUC of the summed probability of the positive classes."""
    positive = list(default_positive(labels) if positive is None else positive)
    unknown = [p for p in positive if p not in labels]
    if unknown:
        raise InputError(f"positive label(s) {', '.join(map(str, unknown))} not among the "
                         f"classes {', '.join(map(str, labels))}")
    if not positive or len(positive) == len(labels):
        raise InputError("the positive set must hold some but not all classes")
    t, p = encode(y_true, labels), encode(y_pred, labels)
    proba = _check_proba(proba, len(t), labels)
    pos_idx = np.array([list(labels).index(x) for x in positive])
    truth, called = np.isin(t, pos_idx), np.isin(p, pos_idx)
    tp = int((truth & called).sum())
    tn = int((~truth & ~called).sum())
    fp = int((~truth & called).sum())
    fn = int((truth & ~called).sum())
    score = proba[:, pos_idx].sum(axis=1)
    fpr, tpr, _ = roc_curve(truth, score) if curve else (np.array([]), np.array([]), None)
    return {
        "positive": [str(x) for x in positive],
        "negative": [str(x) for x in labels if x not in positive],
        "n_positive": int(truth.sum()), "n_negative": int((~truth).sum()),
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
        "sensitivity": _safe_div(tp, tp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "ppv": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "auc": roc_auc(truth, score),
        "curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
    }


def calibration(y_true: Sequence[Any], proba: np.ndarray, labels: Sequence[Any],
                n_bins: int = 10) -> dict[str, Any]:
    """Confidence calibration of the top class: expected calibration error and the
    reliability bins (equal width on [0, 1], each bin (lo, hi], as scikit-learn's
    calibration_curve with strategy="uniform")."""
    t = encode(y_true, labels)
    proba = _check_proba(proba, len(t), labels)
    if len(t) == 0:
        return {"ece": _nan(), "n_bins": n_bins, "bins": []}
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(ids, weights=correct, minlength=n_bins)
    bins, ece = [], 0.0
    for b in range(n_bins):
        n = int(counts[b])
        conf = conf_sum[b] / n if n else _nan()
        acc = acc_sum[b] / n if n else _nan()
        if n:
            ece += n / len(t) * abs(acc - conf)
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": n,
                     "confidence": float(conf), "accuracy": float(acc)})
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}


def log_loss(y_true: Sequence[Any], proba: np.ndarray, labels: Sequence[Any],
             eps: float = 1e-15) -> float:
    """Mean cross-entropy of the true class (probabilities clipped away from 0)."""
    t = encode(y_true, labels)
    proba = _check_proba(proba, len(t), labels)
    if len(t) == 0:
        return _nan()
    p = np.clip(proba[np.arange(len(t)), t], eps, 1.0)
    return float(-np.log(p).mean())


# --- bootstrap by patient -------------------------------------------------------------

def _patient_members(groups: Sequence[Any]) -> list[np.ndarray]:
    """For each distinct patient, the indices of its images."""
    _, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="mergesort")
    cuts = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, cuts) if len(order) else []


def resample_patients(groups: Sequence[Any] | list[np.ndarray], rng: np.random.Generator
                      ) -> np.ndarray:
    """Indices of one bootstrap sample: patients drawn with replacement, every image of a
    drawn patient taken along (images of one patient are not independent). `groups` is one
    patient id per image, or the precomputed `_patient_members`."""
    precomputed = isinstance(groups, list) and bool(groups) and isinstance(groups[0], np.ndarray)
    members = groups if precomputed else _patient_members(groups)
    drawn = rng.integers(0, len(members), size=len(members))
    return np.concatenate([members[g] for g in drawn]) if len(drawn) else np.array([], int)


def summary_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray,
                    labels: Sequence[Any], positive: Iterable[Any] | None = None
                    ) -> dict[str, float]:
    """The headline numbers, the ones that get confidence intervals."""
    report = classification_report(y_true, y_pred, labels)
    out = {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro"]["f1"],
        "weighted_f1": report["weighted"]["f1"],
        "kappa": quadratic_weighted_kappa(y_true, y_pred, labels),
        "macro_auc": one_vs_rest_auc(y_true, proba, labels, curves=False)["macro"],
    }
    pos = list(default_positive(labels) if positive is None else positive)
    if pos and len(pos) < len(labels):
        hr = high_risk(y_true, y_pred, proba, labels, pos, curve=False)
        out.update(high_risk_sensitivity=hr["sensitivity"],
                   high_risk_specificity=hr["specificity"], high_risk_auc=hr["auc"])
    return out


def bootstrap_ci(y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray,
                 labels: Sequence[Any], groups: Sequence[Any], *,
                 positive: Iterable[Any] | None = None, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95,
                 metric_fn: Callable[..., Mapping[str, float]] | None = None
                 ) -> dict[str, dict[str, float]]:
    """Percentile confidence intervals of `summary_metrics` (or `metric_fn`), resampling
    patients. A replicate where a metric is undefined (NaN) is left out of that metric's
    interval; `n` says how many replicates counted."""
    metric_fn = metric_fn or summary_metrics
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    proba = _check_proba(proba, len(y_true), labels)
    if len(groups) != len(y_true):
        raise InputError(f"{len(groups)} patient ids for {len(y_true)} predictions")
    pos = None if positive is None else list(positive)
    rng = np.random.default_rng(seed)
    members = _patient_members(groups)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = resample_patients(members, rng)
        values = metric_fn(list(y_true[idx]), list(y_pred[idx]), proba[idx], labels, pos)
        for key, value in values.items():
            samples.setdefault(key, []).append(value)
    alpha = (1 - level) / 2
    out = {}
    for key, values in samples.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[~np.isnan(arr)]
        if len(arr):
            lo, hi = np.quantile(arr, [alpha, 1 - alpha])
        else:
            lo = hi = _nan()
        out[key] = {"low": float(lo), "high": float(hi), "n": int(len(arr))}
    return out


def compute_metrics(y_true: Sequence[Any], proba: np.ndarray, labels: Sequence[Any], *,
                    groups: Sequence[Any] | None = None, positive: Iterable[Any] | None = None,
                    n_boot: int = 1000, seed: int = 0, n_bins: int = 10) -> dict[str, Any]:
    """Everything the evaluation report shows, from true labels and class probabilities.

    The prediction is the most probable class. `groups` (patient ids) enable the bootstrap;
    without them every image counts as its own patient.
    """
    labels = list(labels)
    proba = _check_proba(proba, len(y_true), labels)
    y_true = [v for v in y_true]
    y_pred = [labels[i] for i in proba.argmax(axis=1)] if len(y_true) else []
    pos = list(default_positive(labels) if positive is None else positive)
    pos_usable = bool(pos) and len(pos) < len(labels)
    groups = list(groups) if groups is not None else [str(i) for i in range(len(y_true))]
    absent = [str(lab) for lab in labels if lab not in set(y_true)]
    return {
        "n": len(y_true),
        "n_patients": len(set(map(str, groups))),
        "labels": [str(lab) for lab in labels],
        "absent_labels": absent,
        "summary": summary_metrics(y_true, y_pred, proba, labels, pos if pos_usable else []),
        "log_loss": log_loss(y_true, proba, labels),
        "report": classification_report(y_true, y_pred, labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels).tolist(),
        "sensitivity_specificity": sensitivity_specificity(y_true, y_pred, labels),
        "roc": one_vs_rest_auc(y_true, proba, labels),
        "high_risk": high_risk(y_true, y_pred, proba, labels, pos) if pos_usable else None,
        "calibration": calibration(y_true, proba, labels, n_bins),
        "bootstrap": ({"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "patient",
                       "ci": bootstrap_ci(y_true, y_pred, proba, labels, groups,
                                          positive=pos if pos_usable else [],
                                          n_boot=n_boot, seed=seed)}
                      if n_boot > 0 and len(y_true) else None),
        "y_true": [str(v) for v in y_true],
        "y_pred": [str(v) for v in y_pred],
    }


# --- integer-coded metrics for the training loop and cross-validation ------------------

FOLD_METRICS = ("macro_f1", "accuracy", "kappa", "auc_high")


def training_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 of class indices, from the confusion
    matrix; fast enough for every epoch. Classes absent from `y_true` do not dilute the
    macro averages; a present class never predicted has precision 0 (scikit-learn's
    `labels=present, zero_division=0`)."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }


def fold_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str],
                 positive: Sequence[str] | None) -> dict[str, float]:
    """One cross-validation fold's headline numbers from class indices and probabilities
    (columns in `class_names` order, which must be ordinal for the kappa): macro-F1,
    accuracy, quadratic-weighted kappa, AUC of the `positive` set against the rest."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = proba.argmax(1)
    basic = training_metrics(y_true, y_pred, len(class_names))
    index = list(range(len(class_names)))
    out = {"macro_f1": basic["macro_f1"], "accuracy": basic["accuracy"],
           "kappa": quadratic_weighted_kappa(y_true, y_pred, index), "auc_high": _nan()}
    if positive:
        pos = [list(class_names).index(p) for p in positive]
        target = np.isin(y_true, pos)
        if 0 < target.sum() < len(target):
            out["auc_high"] = roc_auc(target, proba[:, pos].sum(axis=1))
    return out
