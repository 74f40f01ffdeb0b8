"""`Predictor`: a model bundle run by onnxruntime, with heatmaps. Never imports torch."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..categories import CATEGORIES, EU_TIRADS_LABELS
from ..errors import InputError, ModelError
from ..imageio import load_rgb
# crop_box is preprocess's own crop rule: reused, not rewritten, so the heatmap maps back
# through exactly the crop the model saw (a test checks they agree).
from ..preprocess import PreprocessSpec, crop_box, normalize, resize_to_input
from ..region import Box, crop
from .bundle import (CARD_FILE, INPUT_NAME, MODEL_FILE, OUTPUT_NAMES, PREPROCESS_FILE,
                     read_head, read_metadata)
from .heatmap import class_activation_map, heatmap_to_image

__all__ = ["Prediction", "Predictor", "model_crop_box", "category_name"]

log = logging.getLogger(__name__)

ImageInput = np.ndarray | str | os.PathLike[str] | bytes


# The inference name for preprocess's crop rule (written once, in preprocess).
model_crop_box = crop_box


def category_name(label: str, class_names: Sequence[str]) -> str:
    """The EU-TIRADS name when the model speaks EU-TIRADS (all its classes are 1-5);
    otherwise the label in its own scheme (e.g. DDTI's Kwak TI-RADS "4a")."""
    if set(class_names) <= set(EU_TIRADS_LABELS):
        return f"EU-TIRADS {label}: {CATEGORIES[int(label)].name}"
    return f"TI-RADS {label}"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Prediction:
    """One image's result. `probabilities` follows the model's class order; `heatmap` is
    HxW float32 in [0, 1] at the input image's size (zero outside the crop the model saw);
    `crop_box` is that crop (x0, y0, x1, y1)."""

    label: str
    name: str
    probabilities: dict[str, float]
    crop_box: tuple[int, int, int, int]
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the heatmap."""
        return {"label": self.label, "name": self.name, "confidence": self.confidence,
                "probabilities": dict(self.probabilities), "crop_box": list(self.crop_box)}


def _as_rgb(image: ImageInput, name: str | None) -> np.ndarray:
    if isinstance(image, np.ndarray):
        pixels = image
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype != np.uint8:
            raise InputError(f"{name or 'image'}: expected an HxW or HxWx3 uint8 array, "
                             f"got {pixels.dtype} {pixels.shape}")
        return np.ascontiguousarray(pixels[..., :3])
    return load_rgb(image, name=name)


class Predictor:
    """A bundle loaded once (one onnxruntime session), ready to predict many images.

    >>> predictor = Predictor("bundle")                       # doctest: +SKIP
    >>> result = predictor.predict("nodule.png", box=(120, 80, 260, 190))  # doctest: +SKIP
    """

    def __init__(self, bundle_dir: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.bundle_dir = Path(bundle_dir)
        self._metadata = read_metadata(self.bundle_dir)
        self.spec = PreprocessSpec.load(self.bundle_dir / PREPROCESS_FILE)
        self._weight, self._bias = read_head(self.bundle_dir)
        if not self.spec.class_names:
            raise ModelError(f"{self.bundle_dir}: preprocess.json names no classes")
        if self._weight.shape[0] != len(self.spec.class_names):
            raise ModelError(f"{self.bundle_dir}: {len(self.spec.class_names)} classes but a "
                             f"head for {self._weight.shape[0]}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(str(self.bundle_dir / MODEL_FILE), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ModelError(f"{self.bundle_dir / MODEL_FILE}: cannot load ({reason})") from None
        outputs = [o.name for o in self._session.get_outputs()]
        if tuple(outputs[:2]) != OUTPUT_NAMES or self._session.get_inputs()[0].name != INPUT_NAME:
            raise ModelError(f"{self.bundle_dir / MODEL_FILE}: expected input {INPUT_NAME!r} and "
                             f"outputs {OUTPUT_NAMES}, found {outputs}")

    @property
    def tta(self) -> bool:
        """Whether predictions average the image and its mirror (the run's `tta` setting)."""
        return bool(self._metadata.get("tta", False))

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def model_card(self) -> str:
        path = self.bundle_dir / CARD_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    @property
    def metadata(self) -> dict[str, Any]:
        """name, version, model_name, created, class_names, data_summary, test_metrics, ..."""
        return dict(self._metadata)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits NxK, features NxCxhxw) for a prepared Nx3xHxW float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        logits, features = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return logits, features

    def prepare(self, image: ImageInput, *, box: Sequence[int] | None = None,
                name: str | None = None, area: Box | None = None
                ) -> tuple[np.ndarray, np.ndarray, Box]:
        """(RGB pixels, model input 3xHxW, crop box): `preprocess.prepare`, with the crop box
        kept so the heatmap can be mapped back. `area`: the image area, when the caller
        found it already (see `preprocess.crop_box`)."""
        pixels = _as_rgb(image, name)
        crop_box = model_crop_box(pixels, self.spec, box, area=area)
        tensor = normalize(resize_to_input(crop(pixels, crop_box), self.spec), self.spec)
        return pixels, tensor, crop_box

    def predict(self, image: ImageInput, *, box: Sequence[int] | None = None,
                heatmap: bool = True, name: str | None = None,
                area: Box | None = None) -> Prediction:
        """Category, name, probabilities and (unless heatmap=False) the class-activation
        heatmap of the predicted class at the input image's size (from the unmirrored image
        when the bundle uses mirror test-time augmentation). `image` is an HxWx3 (or
        HxW) uint8 array, a path or encoded bytes; `box` the nodule (x0, y0, x1, y1) in the
        image's pixels; `name` what errors call the image; `area` the image area when
        already found."""
        pixels, tensor, crop_box = self.prepare(image, box=box, name=name, area=area)
        if self.tta:
            # Mirror test-time augmentation, as the run was evaluated: one batch of two.
            logits, features = self.run(np.stack([tensor, tensor[:, :, ::-1]]))
            proba = softmax(logits.astype(np.float64)).mean(axis=0)
        else:
            logits, features = self.run(tensor[None])
            proba = softmax(logits[0].astype(np.float64))
        index = int(proba.argmax())
        label = self.class_names[index]
        heat = None
        if heatmap:
            cam = class_activation_map(features[0], self._weight, index)
            heat = heatmap_to_image(cam, self.spec, crop_box, pixels.shape)
        return Prediction(label=label, name=category_name(label, self.class_names),
                          probabilities={c: float(p) for c, p in zip(self.class_names, proba)},
                          crop_box=tuple(crop_box), heatmap=heat)
