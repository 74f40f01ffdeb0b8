"""Active learning: rank a project's unread images by the model's uncertainty, so a project
with `queue_order = uncertain-first` shows readers the images the model learns most from
first (MONAI Label's idea). Uncertainty = 1 - the top class probability; an image the model
cannot read at all (no ultrasound area) gets none and comes last."""

from __future__ import annotations

from ...data.manifest import image_path, row_bbox
from ...errors import EutiradsError
from ..core.audit import record
from .models import UNCERTAIN_FIRST, Project


def uncertainty(prediction) -> float | None:
    """1 - the top probability; None without one (e.g. no ultrasound area)."""
    if prediction.label is None or not prediction.probabilities:
        return None
    return 1.0 - max(prediction.probabilities.values())


def rank_project(project: Project, predictor, *, user=None) -> tuple[int, list[str]]:
    """Predict every image still short of its readers and store its uncertainty; switch
    the project to uncertain-first. Returns (images ranked, problems)."""
    ranked, problems = 0, []
    images = project.images.filter(claims__lt=project.readers_required).order_by("position")
    for image in images:
        try:
            path = image_path(project.dataset_root, {"path": image.path})
            prediction = predictor.predict(path, box=row_bbox(image.row), heatmap=False,
                                           name=f"image #{image.position}")
        except EutiradsError as exc:
            problems.append(f"image #{image.position}: {exc}")
            continue
        image.uncertainty = uncertainty(prediction)
        image.save(update_fields=["uncertainty"])
        ranked += 1
    project.queue_order = UNCERTAIN_FIRST
    project.save(update_fields=["queue_order"])
    record("project_rank", user=user, username=None if user else "(command line)",
           target=f"project {project.name}", after={"ranked": ranked})
    return ranked, problems
