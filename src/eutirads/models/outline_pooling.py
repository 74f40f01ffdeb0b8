"""The category from encoder features pooled inside the nodule's outline (issue 10's best
input on DDTI-dev: docs/benchmarks.md, "Features pooled inside the localiser's outline,
repeated 5 x 5").

A reader judges the nodule against the tissue around it, not the whole picture. So the
ImageNet EfficientNet-Lite encoder (frozen: its features, not the localiser's fine-tuned
ones, scored better) reads the image area on the localiser's grid, and each of its stages
2-4 is averaged twice: inside the localiser's probability map (the map as weights) and in
a ring of tissue around it; the features are the inside mean and its difference from the
ring's. A logistic regression (fitted in `training.outline`) turns them into category
logits. Plain tensor ops, so the module exports to ONNX and runs in onnxruntime (Python
and the browser) as it does in PyTorch.

Inputs: `image` N x 3 x H x W, the localiser's own input (`preprocess.prepare` under the
localiser's spec); `prob` N x 1 x H x W, the nodule probability on that grid.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["pool_in_outline", "OutlineEncoder", "OutlineCategory"]

EPS = 1e-3


def pool_in_outline(features: Sequence[torch.Tensor], prob: torch.Tensor) -> torch.Tensor:
    """N x F: for each feature map after the first, its mean inside `prob` (resized to the
    map) and that mean minus the mean over a ring around it (about 1/16 of the map's width
    wide); every inside mean first, then every difference."""
    inside, contrast = [], []
    for f in list(features)[1:]:
        # Constant sizes (int): the ONNX export needs them, and the grid is fixed.
        p = F.adaptive_avg_pool2d(prob, (int(f.shape[-2]), int(f.shape[-1])))
        k = max(3, 2 * (int(f.shape[-1]) // 16) + 1)
        ring = (F.max_pool2d(p, k, stride=1, padding=k // 2) - p).clamp(min=0)
        nodule = (f * p).sum(dim=(2, 3)) / (p.sum(dim=(2, 3)) + EPS)
        around = (f * ring).sum(dim=(2, 3)) / (ring.sum(dim=(2, 3)) + EPS)
        inside.append(nodule)
        contrast.append(nodule - around)
    return torch.cat(inside + contrast, 1)


class OutlineEncoder(nn.Module):
    """(image, prob) -> the pooled features, from a timm `features_only` encoder (the
    localiser's encoder layout: stages 1-4, the first unused here)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        return pool_in_outline(list(self.encoder(image)), prob)


class OutlineCategory(nn.Module):
    """(image, prob) -> category logits: the pooled features standardised by (mean, std)
    and a linear head (weight K x F, bias K). The exported graph."""

    def __init__(self, encoder: nn.Module, mean: np.ndarray, std: np.ndarray,
                 weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.features = OutlineEncoder(encoder)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float32)))
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(np.asarray(weight, np.float32)))
            self.head.bias.copy_(torch.as_tensor(np.asarray(bias, np.float32)))

    def forward(self, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        return self.head((self.features(image, prob) - self.mean) / self.std)
