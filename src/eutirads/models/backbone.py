"""Any timm CNN as a classifier with our head: global average pooling + a linear layer.

timm's own `forward_features` returns the last feature map; our head owns pooling and the
classifier, so a class-activation map is always the head's weights applied to that map.
Descriptor heads (one linear layer per EU-TIRADS descriptor) sit beside the category head
on the same pooled features; `forward_heads` returns them all by name.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

__all__ = ["TimmClassifier", "descriptor_heads", "all_heads"]


class TimmClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, *, drop_rate: float = 0.2,
                 descriptors: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        self.descriptor_heads = descriptor_heads(self.num_features, descriptors)

    def feature_stages(self) -> list[nn.Module]:
        """Feature-extracting modules in input-to-output order (for partial unfreezing).

        Top-level children of the backbone, with a `blocks`/`stages`/`features`/`layers`
        sequence expanded into its members; pooling and classifier left out.
        """
        stages: list[nn.Module] = []
        for name, child in self.backbone.named_children():
            if name in ("global_pool", "classifier", "fc", "head", "pre_logits", "head_drop"):
                continue
            if name in ("blocks", "stages", "features", "layers") and isinstance(
                    child, (nn.Sequential, nn.ModuleList)):
                stages.extend(child)
            elif any(True for _ in child.parameters()):
                stages.append(child)
        return stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features.mean(dim=(2, 3))))

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return all_heads(self, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def descriptor_heads(channels: int, descriptors: Mapping[str, int] | None) -> nn.ModuleDict:
    """One linear head per descriptor (name -> number of values) on the pooled features;
    empty when the dataset has no descriptors."""
    return nn.ModuleDict({name: nn.Linear(channels, int(n))
                          for name, n in (descriptors or {}).items()})


def all_heads(model: nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"category": logits, descriptor: logits, ...} from a feature map: the category
    head as `forward_head`, the descriptor heads on the same pooled, dropped-out features."""
    pooled = model.dropout(features.mean(dim=(2, 3)))
    out = {"category": model.head(pooled)}
    for name, head in model.descriptor_heads.items():
        out[name] = head(pooled)
    return out
