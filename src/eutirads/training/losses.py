"""Losses: class-weighted cross-entropy, optionally ordinal-aware."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["balanced_class_weights", "classification_loss"]


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
