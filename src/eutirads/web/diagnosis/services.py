"""What the diagnosis views and the API call: bundle registry, predictor cache, diagnosis.

`diagnose` is the pure heart (predictor + clean image + options -> `Diagnosis`); the rest
is the thin layer that stores bundles and predictions and writes the audit log.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice
from ...errors import InputError, ModelError
from ...inference.bundle import model_sha256
from .uploads import CleanImage, encode_png

__all__ = [
    "Box", "Diagnosis", "parse_box", "parse_size_mm", "diagnose", "heatmap_overlay_png",
    "heatmap_png", "bundles_root", "register_bundle", "activate_bundle", "active_bundle",
    "get_predictor", "save_prediction", "image_folder", "DISCLAIMER",
]

DISCLAIMER = ("This result supports, and does not replace, the radiologist's judgement. "
              "It is not a diagnosis.")
MAX_DIAMETER_MM = 150.0  # a thyroid nodule is never larger: a bigger value is a typo


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int

    def as_dict(self) -> dict[str, int]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


@dataclass(frozen=True)
class Diagnosis:
    """The answer for one image, everything the page and the API show."""

    label: str
    probabilities: dict[str, float]
    heatmap: np.ndarray | None  # HxW float32 in [0, 1], the image's size (None: not asked)
    box: Box | None
    diameter_mm: float | None
    diameter_source: str  # "", "given" or "measured"
    advice: str
    classified: str = "image"  # "box": the model saw the nodule box; "image": the image area
    name: str = ""
    definition: str = ""
    risk: str = ""
    class_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_eu_tirads(self) -> bool:
        return self.label in EU_TIRADS_LABELS


def _number(value: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number") from None
    if not np.isfinite(number):
        raise InputError(f"{what} must be a finite number")
    return number


def parse_box(values: dict, width: int, height: int) -> Box | None:
    """A box from form/query fields x0, y0, x1, y1 (all four or none), checked against the
    image's size."""
    raw = {key: values.get(key) for key in ("x0", "y0", "x1", "y1")}
    given = {key: value for key, value in raw.items() if value not in (None, "")}
    if not given:
        return None
    if len(given) < 4:
        raise InputError("a box needs all four of x0, y0, x1, y1")
    x0, y0, x1, y1 = (int(round(_number(given[k], k))) for k in ("x0", "y0", "x1", "y1"))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"the box ({x0}, {y0}, {x1}, {y1}) lies outside the "
                         f"{width}x{height} image")
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise InputError("the box is too small (under 4 pixels wide or high)")
    return Box(x0, y0, x1, y1)


def parse_size_mm(value) -> float | None:
    if value in (None, ""):
        return None
    size = _number(value, "size_mm")
    if size <= 0 or size > MAX_DIAMETER_MM:
        raise InputError(f"size_mm must be over 0 and at most {MAX_DIAMETER_MM:g} mm")
    return round(size, 1)


def diagnose(predictor, image: CleanImage, *, box: Box | None = None,
             size_mm: float | None = None, mm_per_pixel: float | None = None,
             heatmap: bool = True) -> Diagnosis:
    """Classify a checked image and attach the guideline's reading of the result.

    The diameter is the given `size_mm`, else measured as the box's longer side times the
    pixel spacing when both are known; the FNA advice uses it.
    """
    box_tuple = (box.x0, box.y0, box.x1, box.y1) if box else None
    result = predictor.predict(image.pixels, box=box_tuple, heatmap=heatmap)
    probabilities = {str(k): float(v) for k, v in result.probabilities.items()}
    label = str(result.label)
    diameter, source = size_mm, "given" if size_mm is not None else ""
    if diameter is None and box is not None and mm_per_pixel:
        diameter = round(max(box.x1 - box.x0, box.y1 - box.y0) * mm_per_pixel, 1)
        source = "measured"
    heat = None
    if heatmap:
        heat = np.asarray(result.heatmap, dtype=np.float32)
        if heat.shape != (image.height, image.width):
            raise ModelError(f"the model's heatmap has shape {heat.shape}, "
                             f"not the image's {(image.height, image.width)}")
    # A bundle trained on nodule boxes (crop "roi") classifies the box; any other uses the
    # box only to measure the nodule.
    spec = getattr(predictor, "spec", None)
    classified = "box" if box is not None and getattr(spec, "crop", "full") == "roi" else "image"
    if label in EU_TIRADS_LABELS:
        cat = CATEGORIES[int(label)]
        return Diagnosis(label=label, probabilities=probabilities, heatmap=heat, box=box,
                         diameter_mm=diameter, diameter_source=source, classified=classified,
                         advice=fna_advice(cat.number, diameter), name=cat.name,
                         definition=cat.definition, risk=cat.risk_text,
                         class_names=tuple(probabilities))
    # A bundle trained on another scheme (e.g. DDTI's 4a/4b): no EU-TIRADS advice to give.
    return Diagnosis(label=label, probabilities=probabilities, heatmap=heat, box=box,
                     diameter_mm=diameter, diameter_source=source, classified=classified,
                     advice="This model's classes are not EU-TIRADS categories: no guideline "
                            "advice.", name=f"class {label}", class_names=tuple(probabilities))


def _colormap(values: np.ndarray) -> np.ndarray:
    """A blue-to-red 'jet'-like map, HxW [0, 1] -> HxWx3 uint8 (no matplotlib at serving)."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def heatmap_overlay_png(heatmap: np.ndarray) -> bytes:
    """An RGBA PNG layer for the page: colour by heat, cool parts more transparent."""
    rgba = np.empty(heatmap.shape + (4,), np.uint8)
    rgba[..., :3] = _colormap(heatmap)
    rgba[..., 3] = (np.clip(heatmap, 0, 1) ** 0.5 * 255).astype(np.uint8)
    return encode_png(rgba)


def heatmap_png(heatmap: np.ndarray) -> bytes:
    """The heatmap as an 8-bit grey PNG at the image's size (the API's form)."""
    return encode_png((np.clip(heatmap, 0, 1) * 255).round().astype(np.uint8))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---- bundle registry -----------------------------------------------------------------------

def bundles_root() -> Path:
    from django.conf import settings

    return Path(settings.EUTIRADS_HOME) / "bundles"


def image_folder() -> Path:
    from django.conf import settings

    return Path(settings.EUTIRADS_HOME) / "diagnosis" / "images"


def _load_predictor(folder: Path):
    import os

    from ...inference import Predictor

    # EUTIRADS_INFERENCE_THREADS: onnxruntime threads per server process, default 1. The
    # server runs several gunicorn workers; with onnxruntime's default (one thread per core)
    # in each, they spin against each other: on 2 cores a request cost 2x the CPU time
    # (docs/benchmarks.md).
    threads = os.environ.get("EUTIRADS_INFERENCE_THREADS", "1").strip() or "1"
    if not threads.isdigit() or int(threads) < 1:
        raise ModelError(f"EUTIRADS_INFERENCE_THREADS={threads!r} is not a whole number >= 1")
    return Predictor(folder, threads=int(threads))


def register_bundle(source: Path | str, *, activate: bool = False, user=None):
    """Check that `source` loads as a bundle, copy it under EUTIRADS_HOME/bundles/ under a
    generated name and record it. The first bundle registered becomes active."""
    from django.db import transaction

    from ..core.audit import record
    from .models import ModelBundle

    source = Path(source)
    if not (source / "model.onnx").is_file():
        raise ModelError(f"{source}: not a model bundle (no model.onnx); make one with "
                         "'eutirads export'")
    predictor = _load_predictor(source)  # refuses a broken bundle before anything is copied
    metadata = dict(predictor.metadata or {})
    folder = uuid.uuid4().hex
    target = bundles_root() / folder
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{folder}.tmp")
    shutil.copytree(source, tmp)
    tmp.rename(target)
    try:
        with transaction.atomic():
            bundle = ModelBundle.objects.create(
                name=str(metadata.get("name") or "model")[:200],
                version=str(metadata.get("version") or "")[:100], folder=folder,
                sha256=model_sha256(target),
                class_names=[str(c) for c in predictor.class_names],
                metadata=json.loads(json.dumps(metadata, default=str)),
                model_card=predictor.model_card or "")
            if activate or not ModelBundle.objects.filter(active=True).exists():
                _activate(bundle)
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise
    record("diagnosis.bundle_add", user=user, target=f"bundle #{bundle.pk}",
           after={"name": bundle.name, "version": bundle.version, "active": bundle.active})
    return bundle


def _activate(bundle) -> None:
    from .models import ModelBundle

    ModelBundle.objects.filter(active=True).exclude(pk=bundle.pk).update(active=False)
    if not bundle.active:
        bundle.active = True
        bundle.save(update_fields=["active"])


def activate_bundle(bundle_id: int, *, user=None):
    from django.db import transaction

    from ..core.audit import record
    from .models import ModelBundle

    with transaction.atomic():
        bundle = ModelBundle.objects.filter(pk=bundle_id).first()
        if bundle is None:
            raise InputError(f"no registered model with id {bundle_id} (see 'eutirads models list')")
        _activate(bundle)
    record("diagnosis.bundle_activate", user=user, target=f"bundle #{bundle.pk}",
           after={"name": bundle.name, "version": bundle.version})
    return bundle


def active_bundle():
    from .models import ModelBundle

    bundle = ModelBundle.objects.filter(active=True).first()
    if bundle is None:
        raise ModelError("no active model: an administrator registers one with "
                         "'eutirads models add BUNDLE --activate'")
    return bundle


_PREDICTORS: dict[tuple[int, str], object] = {}
_PREDICTORS_LOCK = threading.Lock()


def get_predictor(bundle):
    """The bundle's predictor, loaded once per process, never per request. Keyed by the
    bundle's id and its generated folder name, so a re-created database cannot reuse it."""
    key = (bundle.pk, bundle.folder)
    predictor = _PREDICTORS.get(key)
    if predictor is not None:
        return predictor
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is None:
            folder = bundles_root() / bundle.folder
            if not folder.is_dir():
                raise ModelError(f"model #{bundle.pk}: its bundle folder is missing "
                                 f"({folder}); register it again")
            predictor = _load_predictor(folder)
            _PREDICTORS[key] = predictor
    return predictor


def _image_area_png(image: CleanImage) -> bytes:
    """The kept image: only the ultrasound image area, as in ingest, so names and dates
    burned in around it on a scanner's screen are not stored (the whole frame when no
    area is found)."""
    from ...frame import clean_frame

    try:
        # The one clean-frame rule, with the burned-in text check: a kept image is shown.
        return encode_png(clean_frame(image.pixels, redact_text=True).pixels)
    except InputError:
        return image.png


def save_prediction(diagnosis: Diagnosis, image: CleanImage, *, user, bundle, channel: str,
                    keep_image: bool = False, request=None):
    """Store the prediction (the image only when `keep_image`) and record it in the audit log."""
    from ..core.audit import record
    from .models import Prediction

    image_name = ""
    if keep_image:
        # A generated name only: nothing of the upload's name or content chooses the path.
        image_name = f"{uuid.uuid4().hex}.png"
        folder = image_folder()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{image_name}.tmp"
        tmp.write_bytes(_image_area_png(image))
        tmp.rename(folder / image_name)
    prediction = Prediction.objects.create(
        user=user, bundle=bundle, channel=channel, label=diagnosis.label,
        probabilities=diagnosis.probabilities,
        box=diagnosis.box.as_dict() if diagnosis.box else None,
        diameter_mm=diagnosis.diameter_mm, diameter_source=diagnosis.diameter_source,
        advice=diagnosis.advice, width=image.width, height=image.height, image_name=image_name)
    record("diagnosis.predict", user=user, request=request, target=f"prediction #{prediction.pk}",
           after={"label": diagnosis.label, "model": bundle.pk, "channel": channel,
                  "image_kept": bool(image_name)})
    return prediction
