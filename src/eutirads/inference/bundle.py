"""The bundle format: what `eutirads export` writes and the predictor reads.

A bundle is a folder holding one or two models (components) and `bundle.json`, which
lists them (format 2):

```
{"format_version": 2, "name", "version", "created", "eutirads_version", "model_sha256",
 "components": {
   "classifier": {"model": "model.onnx", "preprocess": "preprocess.json",
                  "cam_head": "cam_head.npz", "class_names": [...], "tta": false,
                  "model_name", "parity", "data_summary", "val_metrics", "test_metrics", ...},
   "localiser": {"model": "localiser.onnx", "preprocess": "localiser_preprocess.json",
                 "threshold": 0.5, "min_region_px": 16, "model_name", "parity", ...},
   "measured": {"model": "measured.onnx", "grid": [H, W], "descriptors": {...}, ...},
   "outline": {"model": "outline.onnx", "class_names": [...], "temperature",
               "low_confidence", "default": true, ...}}}
```

The classifier or the localiser may be absent (not both); "measured" needs the localiser;
"outline" needs both. The classifier's files:
- `model.onnx`: input "input" (Nx3xHxW float32, the output of `preprocess.prepare`), outputs
  "logits" (NxK) and "features" (NxCxhxw, the last feature map);
- `preprocess.json`: the `PreprocessSpec` (input size, crop and resize rule, mean/std,
  class names), the one description of the classifier's input rule;
- `cam_head.npz`: the classifier's weight (KxC) and bias (K), so that a class-activation
  map is `weight[k] @ features` without gradients;
- with descriptor heads, further outputs "descriptor_<name>" (N x values), listed in the
  classifier's `descriptors`; `calibration` (temperature), `abstain` (low-confidence
  threshold) and `ood` (k-NN threshold, reference features in `ood_reference.npy`)
  describe when the predictor abstains.
The localiser's files:
- `localiser.onnx`: input "input" (Nx3xHxW float32, `preprocess.prepare` under its own spec),
  output "logits" (Nx1xHxW: the nodule logit of every input pixel);
- `localiser_preprocess.json`: its `PreprocessSpec` (crop "full": the image area, no classes).
The measured descriptors' file (`models.nodule_features`, optional, with a localiser):
- `measured.onnx`: inputs "gray" (Nx1xHxW, the image area's intensity in [0, 1] on the
  localiser's grid), "prob" (Nx1xHxW, the localiser's nodule probability on that grid) and
  "scale" (Nx2, a grid pixel's height and width in image pixels); outputs
  "descriptor_<name>" (N x values: logits), listed in its `descriptors` like the
  classifier's. When present, these descriptors replace the classifier's heads of the same
  name (see `inference.measured`).
The outline's category (`models.outline_pooling`, optional, with both models):
- `outline.onnx`: inputs "image" (Nx3xHxW, the image area stretched to the localiser's grid
  and normalised as the localiser's input) and "prob" (Nx1xHxW, the localiser's nodule
  probability on that grid); output "logits" (NxK, the component's `class_names`, the
  classifier's). `temperature` calibrates them, `low_confidence` is the abstention
  threshold when they answer, and with `default` true they are the prediction's category
  whenever the localiser finds a nodule (see `inference.outline`).
And `model_card.md` for people.

Format-1 bundles (a classifier with its settings at the top level of bundle.json) are read
as classifier-only format-2 bundles. This module uses the standard library and numpy only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["model_sha256", "BUNDLE_FORMAT", "READABLE_FORMATS", "CLASSIFIER", "LOCALISER",
           "MODEL_FILE", "PREPROCESS_FILE", "HEAD_FILE", "LOCALISER_FILE",
           "LOCALISER_PREPROCESS_FILE", "METADATA_FILE", "CARD_FILE", "INPUT_NAME",
           "OUTPUT_NAMES", "LOCALISER_OUTPUTS", "MEASURED", "MEASURED_FILE", "MEASURED_INPUTS", "OUTLINE", "OUTLINE_FILE", "OUTLINE_INPUTS", "DESCRIPTOR_OUTPUT", "OOD_FILE", "read_metadata", "read_head", "component_file", "open_session",
           "flat_metadata", "file_sha256"]

BUNDLE_FORMAT = 2
READABLE_FORMATS = (1, 2)
CLASSIFIER = "classifier"
LOCALISER = "localiser"
MEASURED = "measured"
MEASURED_FILE = "measured.onnx"
MEASURED_INPUTS = ("gray", "prob", "scale")
OUTLINE = "outline"
OUTLINE_FILE = "outline.onnx"
OUTLINE_INPUTS = ("image", "prob")
MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"
HEAD_FILE = "cam_head.npz"
LOCALISER_FILE = "localiser.onnx"
LOCALISER_PREPROCESS_FILE = "localiser_preprocess.json"
METADATA_FILE = "bundle.json"
CARD_FILE = "model_card.md"
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
# The classifier's further outputs, one per descriptor head, after OUTPUT_NAMES; its
# entry in bundle.json lists them: "descriptors": {name: {"output", "values", ...}}.
DESCRIPTOR_OUTPUT = "descriptor_{name}"
# Pooled, normalised training features (N x C float16) for the out-of-distribution check;
# the classifier's "ood": {"reference": OOD_FILE, "k", "threshold", ...} names it.
OOD_FILE = "ood_reference.npy"
LOCALISER_OUTPUTS = ("logits",)

# The files each component must name, and what format 1 called them.
_FILES = {CLASSIFIER: ("model", "preprocess", "cam_head"), LOCALISER: ("model", "preprocess"),
          MEASURED: ("model",), OUTLINE: ("model",)}
_FORMAT1_FILES = {"model": MODEL_FILE, "preprocess": PREPROCESS_FILE, "cam_head": HEAD_FILE}
# Format 1's top-level keys that describe the bundle, not its classifier.
_BUNDLE_KEYS = ("format_version", "name", "version", "created", "eutirads_version",
                "model_sha256")


def _from_format1(meta: dict[str, Any]) -> dict[str, Any]:
    """A format-1 bundle.json as format 2: its model settings become the classifier's."""
    classifier = {k: v for k, v in meta.items() if k not in _BUNDLE_KEYS}
    classifier.update(_FORMAT1_FILES)
    classifier.setdefault("tta", False)
    if "model_sha256" in meta:
        classifier["model_sha256"] = meta["model_sha256"]
    top = {k: meta[k] for k in _BUNDLE_KEYS if k in meta}
    return {**top, "components": {CLASSIFIER: classifier}}


def _check_components(root: Path, meta: dict[str, Any]) -> None:
    components = meta.get("components")
    if not isinstance(components, dict) or not components:
        raise ModelError(f"{root / METADATA_FILE}: lists no components (a classifier, a "
                         "localiser or both)")
    unknown = sorted(set(components) - set(_FILES))
    if unknown:
        raise ModelError(f"{root / METADATA_FILE}: unknown component {unknown[0]!r} "
                         "(this eutirads reads classifier, localiser, measured and outline)")
    if MEASURED in components and LOCALISER not in components:
        raise ModelError(f"{root / METADATA_FILE}: measured descriptors need the localiser's "
                         "outline, and the bundle has no localiser")
    if OUTLINE in components and not {LOCALISER, CLASSIFIER} <= set(components):
        raise ModelError(f"{root / METADATA_FILE}: the outline's category needs the localiser "
                         "and the classifier (for images where no nodule is found)")
    for name, component in components.items():
        if not isinstance(component, dict):
            raise ModelError(f"{root / METADATA_FILE}: component {name!r} is not an object")
        for key in _FILES[name]:
            component_file(root, meta, name, key)


def component_file(bundle: str | os.PathLike[str], meta: dict[str, Any], component: str,
                   key: str) -> Path:
    """The path of a component's file (`key` "model", "preprocess", "cam_head"), checked to
    be a plain file name inside the bundle that exists."""
    root = Path(bundle)
    value = (meta.get("components", {}).get(component) or {}).get(key)
    if not isinstance(value, str) or not value or Path(value).name != value or value in (".", ".."):
        raise ModelError(f"{root / METADATA_FILE}: {component} {key} file name {value!r} is not "
                         "a plain file name")
    path = root / value
    if not path.is_file():
        raise ModelError(f"{root}: incomplete bundle ({value} missing)")
    return path


def read_metadata(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """bundle.json as format 2 (a format-1 one converted), after checking the folder is a
    bundle of a format this code reads and that every file it names is there."""
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
    if version not in READABLE_FORMATS:
        raise ModelError(f"{root}: bundle format {version!r} is not supported "
                         f"(this eutirads reads formats {', '.join(map(str, READABLE_FORMATS))}; "
                         "export it again)")
    if version == 1:
        meta = _from_format1(meta)
    _check_components(root, meta)
    return meta


def flat_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The bundle's top level with its classifier's settings beside it (class_names,
    test_metrics, tta...), the shape format 1 had: what the web app's registry stores."""
    classifier = {k: v for k, v in (meta.get("components", {}).get(CLASSIFIER) or {}).items()
                  if k not in _FILES[CLASSIFIER]}
    return {**classifier, **meta}


def read_head(bundle: str | os.PathLike[str], file_name: str = HEAD_FILE
              ) -> tuple[np.ndarray, np.ndarray]:
    """(weight KxC float32, bias K float32) of the classifier."""
    file = Path(bundle) / file_name
    try:
        with np.load(file, allow_pickle=False) as data:
            weight = np.asarray(data["weight"], np.float32)
            bias = np.asarray(data["bias"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{file}: not a readable head file ({type(exc).__name__})") from None
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelError(f"{file}: head weight/bias shapes {weight.shape}/{bias.shape} do not fit")
    return weight, bias


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(bundle_dir: str | os.PathLike[str]) -> str:
    """The hash that names a bundle's models: the model card, the bundle metadata and the
    diagnosis app's registry all use it. The SHA-256 of model.onnx for a classifier-only
    bundle (as in format 1, so registered bundles keep their hash); with a localiser, the
    SHA-256 of the models' hashes in a fixed order (the measured descriptors' graph too),
    so changing any changes it."""
    root = Path(bundle_dir)
    models = [root / name for name in (MODEL_FILE, LOCALISER_FILE, MEASURED_FILE, OUTLINE_FILE)
              if (root / name).is_file()]
    if not models:
        raise ModelError(f"{root}: no {MODEL_FILE} or {LOCALISER_FILE} to hash")
    if [m.name for m in models] == [MODEL_FILE]:
        return file_sha256(models[0])
    joined = "".join(f"{m.name}:{file_sha256(m)}\n" for m in models)
    return hashlib.sha256(joined.encode("ascii")).hexdigest()


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """A context in which numpy's BLAS runs on at most `threads` threads (no limit for None),
    so that `threads` bounds a prediction's CPU, not only onnxruntime's. Unbounded, OpenBLAS
    runs one image's small products (the out-of-distribution similarity, the heatmap) on a
    thread per core and leaves the extra threads spinning after each: on 2 cores that
    doubled `predict`'s CPU time for 3 ms less wall time (docs/benchmarks.md)."""
    if not threads:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=int(threads), user_api="blas")


def open_session(model: Path, threads: int | None = None):
    """An onnxruntime CPU session for one of the bundle's graphs (classifier or localiser),
    quiet, with `threads` intra-op threads when given; a one-line ModelError if it fails."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"{model}: cannot load ({reason})") from None
