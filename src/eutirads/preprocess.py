"""The single eval-time preprocessing: frame crop, optional nodule crop, resize, normalise.

Evaluate, predict, ONNX inference and the web app all call `prepare`; training runs its
augmentation on top of `crop_for_model`'s output and then applies the same resize and
normalisation. The rule travels with a model as `preprocess.json` (`PreprocessSpec.save`),
so a bundle alone is enough to reproduce it. numpy and Pillow only: the serving side must
not need torch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .errors import ConfigError, InputError, ModelError
from .region import Box, crop, find_image_area

__all__ = [
    "PREPROCESS_FORMAT",
    "PreprocessSpec",
    "crop_box",
    "crop_for_model",
    "resize_to_input",
    "normalize",
    "prepare",
]

log = logging.getLogger(__name__)

PREPROCESS_FORMAT = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROPS = ("full", "roi")
FRAMES = ("detect", "none")
RESIZES = ("stretch", "letterbox")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a model input.

    input_size: (height, width) of the model input.
    mean, std: per-channel normalisation applied to pixel/255.
    crop: "full" uses the whole image area; "roi" the nodule box widened by `roi_margin`
        (a fraction of the box's width/height added on each side) when a box is given.
    frame: "detect" crops the scanner's screen to the ultrasound image area first
        (`region.find_image_area`); "none" keeps the image as it is.
    resize: "stretch" resizes to input_size directly; "letterbox" keeps the aspect ratio
        and pads with black (the ultrasound background).
    class_names: the model's output order.
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: str = "full"
    roi_margin: float = 0.25
    frame: str = "detect"
    resize: str = "stretch"
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Normalise lists from JSON/YAML into tuples so specs compare and hash equal.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "class_names", tuple(str(v) for v in self.class_names))
        object.__setattr__(self, "roi_margin", float(self.roi_margin))
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ConfigError(f"preprocess: input_size must be (height, width) >= 8, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("preprocess: mean and std need 3 values each, std > 0")
        if self.crop not in CROPS:
            raise ConfigError(f"preprocess: crop must be one of {CROPS}, got {self.crop!r}")
        if self.frame not in FRAMES:
            raise ConfigError(f"preprocess: frame must be one of {FRAMES}, got {self.frame!r}")
        if self.resize not in RESIZES:
            raise ConfigError(f"preprocess: resize must be one of {RESIZES}, got {self.resize!r}")
        if not 0 <= self.roi_margin <= 5:
            raise ConfigError(f"preprocess: roi_margin must be in [0, 5], got {self.roi_margin}")

    def replace(self, **changes: Any) -> "PreprocessSpec":
        values = self.to_dict()
        values.pop("format_version")
        values.update(changes)
        return PreprocessSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("input_size", "mean", "std", "class_names"):
            values[key] = list(values[key])
        return {"format_version": PREPROCESS_FORMAT, **values}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PreprocessSpec":
        values = dict(values)
        version = values.pop("format_version", PREPROCESS_FORMAT)
        if version != PREPROCESS_FORMAT:
            raise ModelError(f"preprocess: format_version {version} is not supported "
                             f"(this eutirads reads {PREPROCESS_FORMAT})")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"preprocess: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"preprocess: invalid value ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write preprocess.json atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "PreprocessSpec":
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a readable preprocess.json ({exc})") from None
        if not isinstance(values, dict):
            raise ModelError(f"{path}: not a preprocess.json (expected an object)")
        try:
            return cls.from_dict(values)
        except (ConfigError, ModelError) as exc:
            raise ModelError(f"{path}: {exc}") from None


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"expected uint8 pixels, got {image.dtype}")
    return image[..., :3]


def _roi_box(box: Sequence[int], margin: float, area: Box) -> Box:
    """The nodule box widened by `margin` on each side, clamped to the image area."""
    x0, y0, x1, y1 = (int(v) for v in box)
    dx, dy = round((x1 - x0) * margin), round((y1 - y0) * margin)
    roi = Box(max(area.x0, x0 - dx), max(area.y0, y0 - dy),
              min(area.x1, x1 + dx), min(area.y1, y1 + dy))
    return roi


def crop_box(image: np.ndarray, spec: PreprocessSpec,
             box: Sequence[int] | None = None, *, area: Box | None = None) -> Box:
    """The box of `image` that the model sees: the frame crop, then the nodule crop with
    its margin when spec.crop == "roi" and a box is given.

    `box` is (x0, y0, x1, y1) in the full frame's pixels (x1, y1 exclusive). A frame in
    which no image area is found (already cropped, uniform) is used whole. A box that
    misses the image area falls back to the whole image area. Inference maps heatmaps back
    through this same box. `area` is the image area when the caller found it already (the
    diagnosis server finds it once per upload, on a reduced copy).
    """
    height, width = image.shape[:2]
    if spec.frame != "detect":
        area = Box(0, 0, width, height)
    elif area is None:
        try:
            area = find_image_area(image)
        except InputError:
            # Nothing frame-like found: the image is most likely already the image area.
            area = Box(0, 0, width, height)
    if spec.crop == "roi" and box is not None:
        roi = _roi_box(box, spec.roi_margin, area)
        if roi.width >= 2 and roi.height >= 2:
            area = roi
    return Box(max(0, area.x0), max(0, area.y0), min(width, area.x1), min(height, area.y1))


def crop_for_model(image: np.ndarray, spec: PreprocessSpec,
                   box: Sequence[int] | None = None) -> np.ndarray:
    """The part of `image` inside `crop_box`. Returns HxWx3 uint8."""
    pixels = _as_rgb(image)
    return np.ascontiguousarray(crop(pixels, crop_box(pixels, spec, box)))


def resize_to_input(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize an HxWx3 uint8 crop to spec.input_size by spec.resize; uint8 out."""
    pixels = _as_rgb(image)
    out_h, out_w = spec.input_size
    picture = Image.fromarray(pixels)
    if spec.resize == "stretch":
        return np.asarray(picture.resize((out_w, out_h), Image.Resampling.BILINEAR))
    h, w = pixels.shape[:2]
    scale = min(out_w / w, out_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(picture.resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def normalize(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32, (pixel/255 - mean) / std."""
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image to normalise, got {image.dtype}")
    # Looked up, plane by plane, in a table of the 256 values per channel computed by the
    # same float32 arithmetic: the same numbers at a quarter of the cost of computing
    # every pixel (three float passes and a transposing copy).
    mean = np.asarray(spec.mean, np.float32)[:, None]
    std = np.asarray(spec.std, np.float32)[:, None]
    table = (np.arange(256, dtype=np.float32)[None] / 255.0 - mean) / std
    planes = np.ascontiguousarray(image.transpose(2, 0, 1))
    return np.stack([np.take(table[c], planes[c]) for c in range(3)])


def prepare(image: np.ndarray, spec: PreprocessSpec,
            box: Sequence[int] | None = None) -> np.ndarray:
    """The model input for one image: crop_for_model, resize, normalise (3xHxW float32)."""
    return normalize(resize_to_input(crop_for_model(image, spec, box), spec), spec)
