"""Losses: class-weighted cross-entropy, optionally ordinal-aware, and the multi-task sum
with masked descriptor heads."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["balanced_class_weights", "classification_loss", "multitask_loss"]


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
    """n_samples / (n_classes * count_k), scikit-learn's "balanced" weights."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
    return weights.astype(np.float32)


def classification_loss(logits: torch.Tensor, target: torch.Tensor, *,
                        weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                        ordinal_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy, plus `ordinal_weight` x the expected distance between the predicted
    and true category (classes are ordered, so calling a 5 a 4 costs less than calling it
    a 2). Distances are scaled to [0, 1]; both terms use the same class weights."""
    loss = F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=label_smoothing)
    if ordinal_weight > 0:
        n = logits.shape[1]
        probs = logits.float().softmax(dim=1)
        ranks = torch.arange(n, device=logits.device, dtype=probs.dtype)
        distance = (ranks[None, :] - target[:, None].to(probs.dtype)).abs() / max(n - 1, 1)
        expected = (probs * distance).sum(dim=1)
        w = weight[target] if weight is not None else torch.ones_like(expected)
        loss = loss + ordinal_weight * (w * expected).sum() / w.sum()
    return loss


def multitask_loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                   head_names: Sequence[str] = (), *, weight: torch.Tensor | None = None,
                   label_smoothing: float = 0.0, ordinal_weight: float = 0.0,
                   descriptor_weight: float = 1.0) -> torch.Tensor:
    """The category's `classification_loss` plus `descriptor_weight` x each descriptor
    head's cross-entropy, masked where that descriptor is unknown (target -1): a partly
    described image still teaches every head whose label it has.

    `target` is N x (1 + D): column 0 the category, column j the head `head_names[j-1]`.
    """
    loss = classification_loss(outputs["category"], target[:, 0], weight=weight,
                               label_smoothing=label_smoothing, ordinal_weight=ordinal_weight)
    for j, name in enumerate(head_names, start=1):
        known = target[:, j] >= 0
        if descriptor_weight > 0 and bool(known.any()):
            loss = loss + descriptor_weight * F.cross_entropy(
                outputs[name][known].float(), target[known, j], label_smoothing=label_smoothing)
    return loss
