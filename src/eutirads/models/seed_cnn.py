"""The thesis's from-scratch CNN, kept as the baseline.

Rescaling happens in preprocessing (mean 0, std 1 on pixel/255). Then two 16-filter
convolutions and max-pooling, blocks of two convolutions + batch-norm + max-pooling with
growing filters, a dense layer and dropout, and the classifier. The dense layer is applied
at every position (a 1x1 convolution) and the classifier after global average pooling, so
a class-activation map is the classifier's weights applied to the last feature map, as for
every other model here.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .backbone import all_heads, descriptor_heads

__all__ = ["SeedCNN"]


def _conv(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class SeedCNN(nn.Module):
    def __init__(self, num_classes: int, *, filters: Sequence[int] = (32, 64, 128),
                 dense: int = 128, dropout: float = 0.3,
                 descriptors: Mapping[str, int] | None = None) -> None:
        super().__init__()
        stages: list[nn.Module] = [nn.Sequential(_conv(3, 16), _conv(16, 16), nn.MaxPool2d(2))]
        cin = 16
        for cout in filters:
            stages.append(nn.Sequential(_conv(cin, cout), _conv(cout, cout),
                                        nn.BatchNorm2d(cout), nn.MaxPool2d(2)))
            cin = cout
        stages.append(nn.Sequential(nn.Conv2d(cin, dense, 1), nn.ReLU(inplace=True)))
        self.stages = nn.ModuleList(stages)
        self.num_features = dense
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dense, num_classes)
        self.descriptor_heads = descriptor_heads(dense, descriptors)

    def feature_stages(self) -> list[nn.Module]:
        """Feature-extracting modules in input-to-output order (for partial unfreezing)."""
        return list(self.stages)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features.mean(dim=(2, 3))))

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return all_heads(self, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
