"""What the diagnosis views and the API call: bundle registry, predictor cache, storage.

The diagnosis itself (`diagnose`, boxes, sizes, abstention, overlays) is library code in
`eutirads.inference.diagnosis`, re-exported here for the views; this module is the thin
layer that stores bundles, predictions and decisions and writes the audit log.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path

from ...categories import EU_TIRADS_LABELS as CATEGORY_LABELS
from ...errors import InputError, ModelError
from ...inference.bundle import model_sha256
from ...inference.diagnosis import (
    DISCLAIMER,
    Box,
    Diagnosis,
    box_dict,
    data_uri,
    diagnose,
    heatmap_overlay_png,
    heatmap_png,
    parse_box,
    parse_pixel_mm,
    parse_size_mm,
)
from ...inference.uploads import CleanImage, encode_png

__all__ = [
    "Box", "Diagnosis", "parse_box", "parse_size_mm", "parse_pixel_mm", "diagnose",
    "heatmap_overlay_png",
    "heatmap_png", "data_uri", "box_dict", "bundles_root", "register_bundle",
    "activate_bundle", "active_bundle", "get_predictor", "save_prediction", "save_decision",
    "image_folder",
    "DISCLAIMER",
]


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

    # EUTIRADS_INFERENCE_THREADS: a prediction's threads per server process (onnxruntime's
    # and numpy's BLAS), default 1. The server runs several gunicorn workers; with
    # onnxruntime's default (one thread per core) in each, they spin against each other:
    # on 2 cores a request cost 2x the CPU time (docs/benchmarks.md).
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


def _keep_image(image: CleanImage) -> tuple[str, Box | None]:
    """Write the kept image under a generated name: through the one clean-frame rule with
    its burned-in text check (a kept image is shown again), so only the ultrasound image
    area is kept, not names and dates around or in it. Returns the name and where the area
    lies in the upload (None: no area found, the whole frame is kept)."""
    from ...frame import clean_frame

    try:
        clean = clean_frame(image.pixels, redact_text=True)
        png, area = encode_png(clean.pixels), Box(*clean.area_box)
    except InputError:
        png, area = image.png, None
    # A generated name only: nothing of the upload's name or content chooses the path.
    image_name = f"{uuid.uuid4().hex}.png"
    folder = image_folder()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{image_name}.tmp"
    tmp.write_bytes(png)
    tmp.rename(folder / image_name)
    return image_name, area


def _json(value):
    return None if value is None else json.loads(json.dumps(value, default=float))


def save_prediction(diagnosis: Diagnosis, image: CleanImage, *, user, bundle, channel: str,
                    keep_image: bool = False, request=None):
    """Store the prediction (the image only when `keep_image`) and record it in the audit log."""
    from ..core.audit import record
    from .models import Prediction

    image_name, area = "", None
    if keep_image:
        image_name, area = _keep_image(image)
    prediction = Prediction.objects.create(
        user=user, bundle=bundle, channel=channel, label=diagnosis.label,
        probabilities=diagnosis.probabilities, box=box_dict(diagnosis.box),
        diameter_mm=diagnosis.diameter_mm, diameter_source=diagnosis.diameter_source,
        advice=diagnosis.advice, width=image.width, height=image.height, image_name=image_name,
        image_area=box_dict(area), box_source=diagnosis.box_source,
        nodule=_json(diagnosis.nodule), descriptors=_json(diagnosis.descriptors),
        rule_path=diagnosis.rule_path, abstain=diagnosis.abstain,
        abstain_reason=diagnosis.abstain_reason)
    record("diagnosis.predict", user=user, request=request, target=f"prediction #{prediction.pk}",
           after={"label": diagnosis.label, "model": bundle.pk, "channel": channel,
                  "image_kept": bool(image_name), "abstain": diagnosis.abstain})
    return prediction


def save_decision(prediction, *, user, label: str, descriptors: dict[str, str],
                  note: str = "", request=None):
    """Store (or update) the radiologist's decision beside the model's answer; audited with
    the previous and the new version."""
    from django.db import transaction

    from ...inference.diagnosis import DESCRIPTOR_VALUES as DESCRIPTORS_BY_NAME
    from ..core.audit import record
    from .models import Decision

    if label not in CATEGORY_LABELS:
        raise InputError("choose an EU-TIRADS category (1-5) for your decision")
    clean = {}
    for name, value in (descriptors or {}).items():
        if name not in DESCRIPTORS_BY_NAME:
            raise InputError(f"unknown descriptor {name[:40]!r}")
        if value in (None, ""):
            continue
        if value not in DESCRIPTORS_BY_NAME[name]:
            raise InputError(f"unknown {name} value {str(value)[:40]!r}")
        clean[name] = value
    with transaction.atomic():
        decision = Decision.objects.select_for_update().filter(prediction=prediction).first()
        before = None if decision is None else {"label": decision.label,
                                                "descriptors": decision.descriptors}
        if decision is None:
            decision = Decision(prediction=prediction)
        decision.user, decision.label, decision.descriptors = user, label, clean
        decision.note = (note or "")[:2000]
        decision.save()
        record("diagnosis.decision", user=user, request=request,
               target=f"prediction #{prediction.pk}", before=before,
               after={"label": label, "descriptors": clean, "model": prediction.label,
                      "differs": decision.differs})
    return decision
