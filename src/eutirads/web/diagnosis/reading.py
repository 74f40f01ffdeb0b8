"""Reading mode: a reader classifies a labeled image blind, then sees the model's answer.

Images come from the labeling app's projects, only those with a consensus label (so the
comparison report can score both). The model runs only once the reader has submitted a
choice, and the answer is shown after both are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import IntegrityError, transaction

from ...categories import EU_TIRADS_LABELS
from ...errors import InputError
from ...imageio import load_rgb
from ...inference.uploads import CleanImage
from . import services

__all__ = ["next_item", "item_pixels", "submit", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    reading: object
    prediction: object
    diagnosis: services.Diagnosis
    image: CleanImage
    bundle: object


def _key(item) -> str:
    return f"labeling:{item.pk}"


def _candidates(user):
    """Labeling images with a consensus label that `user` reads blind: never one they
    labelled (or claimed) in the labeling app, nor one whose consensus they set."""
    from ..labeling.models import Image

    return (Image.objects.select_related("project")
            .filter(consensus_label__in=EU_TIRADS_LABELS)
            .exclude(readings__reader=user).exclude(consensus_by=user)
            .order_by("project_id", "position"))


def next_item(user):
    """The first image with a consensus label this reader has not read in reading mode."""
    from .models import Reading

    done = Reading.objects.filter(reader=user).exclude(item_key="").values_list("item_key",
                                                                                flat=True)
    done_ids = [int(k.split(":", 1)[1]) for k in done if k.startswith("labeling:")]
    return _candidates(user).exclude(pk__in=done_ids).first()


def item_pixels(item) -> np.ndarray:
    root = Path(item.project.dataset_root).resolve()
    path = (root / item.path).resolve()
    if root not in path.parents:
        raise InputError(f"image #{item.pk}: its path leaves the dataset folder")
    return load_rgb(path, name=f"image #{item.pk}")


def _item_box(item, width: int, height: int) -> services.Box | None:
    row = item.row or {}
    try:
        return services.parse_box(row, width, height)
    except InputError:
        return None  # a bad box in the manifest: classify the whole image


def submit(user, item_id: str, label: str, *, request=None) -> Outcome:
    from ..core.audit import record
    from .models import Reading

    if label not in EU_TIRADS_LABELS:
        raise InputError("choose an EU-TIRADS category (1-5)")
    try:
        item = _candidates(user).get(pk=int(item_id))
    except (ValueError, TypeError):
        raise InputError("no such image") from None
    except Exception:  # DoesNotExist
        raise InputError("no such image, or it has no consensus label, or you labelled it "
                         "yourself") from None
    if Reading.objects.filter(reader=user, item_key=_key(item)).exists():
        raise InputError("you have already read this image")
    pixels = item_pixels(item)
    image = CleanImage(pixels=pixels, kind="png")
    bundle = services.active_bundle()
    # A dataset image went through ingest's checks already: no screen check here (the
    # bundle's own out-of-distribution check, when it has one, still applies).
    diagnosis = services.diagnose(services.get_predictor(bundle), image,
                                  box=_item_box(item, image.width, image.height), check=False)
    try:
        with transaction.atomic():
            prediction = services.save_prediction(diagnosis, image, user=user, bundle=bundle,
                                                  channel="reading", request=request)
            reading = Reading.objects.create(reader=user, prediction=prediction,
                                             item_key=_key(item), human_label=label)
    except IntegrityError:
        raise InputError("you have already read this image") from None
    record("diagnosis.reading", user=user, request=request, target=_key(item),
           after={"reader": label, "model": diagnosis.label})
    return Outcome(reading=reading, prediction=prediction, diagnosis=diagnosis, image=image,
                   bundle=bundle)
