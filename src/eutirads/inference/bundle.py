"""The bundle format: what `eutirads export` writes and the predictor reads.

A bundle is a folder:
- `model.onnx`: input "input" (Nx3xHxW float32, the output of `preprocess.prepare`), outputs
  "logits" (NxK) and "features" (NxCxhxw, the last feature map);
- `preprocess.json`: the `PreprocessSpec` (input size, crop and resize rule, mean/std,
  class names);
- `cam_head.npz`: the classifier's weight (KxC) and bias (K), so that a class-activation
  map is `weight[k] @ features` without gradients;
- `bundle.json`: format version, names, versions, data summary, test metrics;
- `model_card.md`: for people.

This module reads and checks it with the standard library and numpy only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["model_sha256", "BUNDLE_FORMAT", "MODEL_FILE", "PREPROCESS_FILE", "HEAD_FILE", "METADATA_FILE",
           "CARD_FILE", "INPUT_NAME", "OUTPUT_NAMES", "read_metadata", "read_head"]

BUNDLE_FORMAT = 1
MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"
HEAD_FILE = "cam_head.npz"
METADATA_FILE = "bundle.json"
CARD_FILE = "model_card.md"
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")


def read_metadata(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """bundle.json, after checking the folder is a bundle of a format this code reads."""
    root = Path(bundle)
    if not root.is_dir():
        raise ModelError(f"{root}: bundle folder not found")
    file = root / METADATA_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{root}: not a model bundle (no {METADATA_FILE}; "
                         "make one with 'eutirads export')") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file}: not readable ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{file}: not a bundle description (expected an object)")
    version = meta.get("format_version")
    if version != BUNDLE_FORMAT:
        raise ModelError(f"{root}: bundle format {version!r} is not supported "
                         f"(this eutirads reads format {BUNDLE_FORMAT}; export it again)")
    for name in (MODEL_FILE, PREPROCESS_FILE, HEAD_FILE):
        if not (root / name).is_file():
            raise ModelError(f"{root}: incomplete bundle ({name} missing)")
    return meta


def read_head(bundle: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(weight KxC float32, bias K float32) of the classifier."""
    file = Path(bundle) / HEAD_FILE
    try:
        with np.load(file, allow_pickle=False) as data:
            weight = np.asarray(data["weight"], np.float32)
            bias = np.asarray(data["bias"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{file}: not a readable head file ({type(exc).__name__})") from None
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelError(f"{file}: head weight/bias shapes {weight.shape}/{bias.shape} do not fit")
    return weight, bias


def model_sha256(bundle_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of a bundle's model.onnx: the model card, the bundle metadata and the
    diagnosis app's registry all name a model by it."""
    digest = hashlib.sha256()
    with (Path(bundle_dir) / MODEL_FILE).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
