"""One door to every model: the thesis's `seed-cnn` and any timm CNN by name.

Every model exposes `forward_features(x) -> NxCxhxw`, `forward_head(features) -> logits`
(global average pool + linear, so a class-activation map is the head's weights applied to
the feature map), `forward(x)`, `feature_stages()` (for partial unfreezing) and `head`.

Weights: "imagenet" (offline from the installed packages for tf_efficientnet_lite0/lite2,
timm's hub otherwise, online only), "none" (random init) or a path to a local file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelError

__all__ = ["SEED_CNN", "DEFAULT_MODEL", "create_model", "default_preprocess", "is_known_model"]

SEED_CNN = "seed-cnn"
DEFAULT_MODEL = "tf_efficientnet_lite0"


def is_known_model(name: str) -> bool:
    import timm

    return name == SEED_CNN or timm.is_model(name)


def _unknown(name: str) -> ModelError:
    return ModelError(f"unknown model {name!r} (use {SEED_CNN!r} or a timm model name such as "
                      f"{DEFAULT_MODEL!r}, resnet50, vgg16, xception41, convnext_tiny)")


def default_preprocess(name: str) -> dict[str, Any]:
    """Input size (height, width), mean and std the model was trained with."""
    if name == SEED_CNN:
        # mean 0 / std 1 on pixel/255 is the thesis's Rescaling(1/255) layer.
        return {"input_size": (180, 180), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    import timm

    if not timm.is_model(name):
        raise _unknown(name)
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return {"input_size": (224, 224), "mean": (0.485, 0.456, 0.406),
                "std": (0.229, 0.224, 0.225)}
    _, height, width = cfg.input_size
    return {"input_size": (int(height), int(width)), "mean": tuple(cfg.mean),
            "std": tuple(cfg.std)}


def _load_local(model, path: Path, name: str) -> None:
    """Load a local state dict (a raw one, or a dict with 'state_dict'/'model')."""
    import torch

    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a state dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    # A classifier of another size is expected to differ; the feature extractor must match.
    missing = [k for k in own if k not in usable and not k.startswith(("classifier.", "fc.", "head.", "descriptor_heads."))]
    if missing:
        raise ModelError(f"{path}: {len(missing)} of {len(own)} tensors of {name} missing or "
                         f"of another shape (first: {missing[0]})")
    model.load_state_dict(usable, strict=False)


def create_model(name: str, *, num_classes: int, weights: str | os.PathLike[str] = "imagenet",
                 descriptors: Mapping[str, int] | None = None, **kwargs: Any):
    """A classifier `name` with `num_classes` outputs, and one head per entry of
    `descriptors` (descriptor name -> number of values; none when empty).

    kwargs go to the model: for seed-cnn `filters`, `dense`, `dropout`; for timm models
    `drop_rate` (dropout before our head) and anything timm's `create_model` accepts.
    """
    import torch  # noqa: F401  (fail early with torch's own message when missing)

    from .backbone import TimmClassifier
    from .seed_cnn import SeedCNN

    if num_classes < 2:
        raise ModelError(f"{name}: need at least 2 classes, got {num_classes}")
    weights = str(weights)
    if name == SEED_CNN:
        try:
            model = SeedCNN(num_classes, descriptors=descriptors, **kwargs)
        except TypeError as exc:
            raise ModelError(f"{name}: invalid option ({exc})") from None
        if weights == "imagenet":
            raise ModelError(f"{name} is trained from scratch: use weights 'none' or a file")
        if weights != "none":
            _load_local(model, Path(weights), name)
        return model

    import timm

    if not timm.is_model(name):
        raise _unknown(name)
    kwargs = dict(kwargs)
    drop_rate = float(kwargs.pop("drop_rate", 0.2))
    try:
        backbone = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise ModelError(f"{name}: invalid option ({exc})") from None
    if weights == "imagenet":
        from .lite_weights import LITE_PACKAGES, load_lite_imagenet

        if name in LITE_PACKAGES:
            load_lite_imagenet(backbone, name)
        else:
            try:
                backbone = timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
            except Exception as exc:  # offline: connection errors of several libraries
                raise ModelError(
                    f"{name}: ImageNet weights come from timm's hub and could not be fetched "
                    f"({type(exc).__name__}; offline?). Use weights: none or weights: PATH") from None
    elif weights != "none":
        _load_local(backbone, Path(weights), name)
    return TimmClassifier(backbone, num_classes, drop_rate=drop_rate, descriptors=descriptors)
