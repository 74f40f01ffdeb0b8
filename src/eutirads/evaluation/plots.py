"""Evaluation plots as PNG bytes (matplotlib, Agg backend): confusion matrix, ROC curves,
reliability diagram."""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["confusion_png", "roc_png", "reliability_png"]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=110)


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Counts, with each row's share as the colour (so small classes stay readable)."""
    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 1.2 + 0.55 * len(labels)
    plt, fig, ax = _figure(size + 1.2, size)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title("Confusion matrix")
    return _png(plt, fig)


def roc_png(roc: Mapping[str, Any], high_risk: Mapping[str, Any] | None) -> bytes:
    """One-vs-rest ROC per class, and the high-risk ROC as a thick line."""
    plt, fig, ax = _figure(5.2, 4.4)
    for label, curve in roc["curves"].items():
        auc = roc["per_class"][label]
        if math.isnan(auc):
            continue  # a class absent from the split has no curve
        ax.plot(curve["fpr"], curve["tpr"], linewidth=1.2, label=f"{label} (AUC {auc:.2f})")
    if high_risk and not math.isnan(high_risk["auc"]):
        ax.plot(high_risk["curve"]["fpr"], high_risk["curve"]["tpr"], color="black", linewidth=2.4,
                label=f"high risk {','.join(high_risk['positive'])} (AUC {high_risk['auc']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, one class against the rest")
    ax.legend(fontsize=7, loc="lower right")
    return _png(plt, fig)


def reliability_png(calibration: Mapping[str, Any]) -> bytes:
    """Accuracy against confidence per bin; bar widths are the bins, the diagonal is perfect."""
    plt, fig, ax = _figure(4.6, 4.2)
    bins = [b for b in calibration["bins"] if b["count"]]
    if bins:
        centers = [(b["lower"] + b["upper"]) / 2 for b in bins]
        widths = [b["upper"] - b["lower"] for b in bins]
        ax.bar(centers, [b["accuracy"] for b in bins], width=widths, edgecolor="black",
               color="#6a9fd4", label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o",
                color="#b03030", markersize=4, label="(mean confidence, accuracy)")
        for center, b in zip(centers, bins):  # how many images each bar stands on
            ax.text(center, min(b["accuracy"], 1.0) + 0.015, str(b["count"]), ha="center",
                    va="bottom", fontsize=7)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ece = calibration.get("ece", float("nan"))
    ax.set_title(f"Reliability (ECE {ece:.3f})" if not math.isnan(ece) else "Reliability")
    ax.legend(fontsize=7, loc="best")
    return _png(plt, fig)
