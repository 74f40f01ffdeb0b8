"""Labeling views: thin; check access, validate, call `queue` / `report`, render or JSON.

Blind reading: the reading screen and its JSON API only ever return the caller's own
reading. Reviewers see everyone's labels on the agreement and adjudication pages.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

from django.contrib import messages
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from ...categories import CATEGORIES
from ...data.manifest import image_path
from ...errors import EutiradsError
from ..core.access import ADMIN, READERS, REVIEWER, has_role, role_required
from . import queue, report
from .models import EXCLUDED, Image, Project, Reading



def _project(name: str) -> Project:
    return get_object_or_404(Project, name=name)


def _image_payload(project: Project, image: Image | queue.ImageRef | None,
                   own: Reading | None = None) -> dict | None:
    """What the reading screen needs about an image; `own` is the caller's saved reading
    (None for a freshly claimed image, which has none)."""
    if image is None:
        return None
    return {
        "id": image.id,
        "position": image.position,
        "url": reverse("labeling:image", args=[project.name, image.id]),
        "reading": None if own is None else {"label": own.label, "flagged": own.flagged,
                                             "reason": own.flag_reason, "comment": own.comment},
    }


def _queue_state(request, project: Project) -> dict:
    """The reader's current image and the one to prefetch, both claimed for them."""
    current, upcoming = queue.claim_pair(project, request.user)
    return {"current": _image_payload(project, current),
            "prefetch": _image_payload(project, upcoming),
            "progress": queue.progress(project, request.user).as_dict()}


def _json_body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise queue.QueueError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise queue.QueueError("the request body must be a JSON object")
    return data


def _json_error(exc: EutiradsError, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": str(exc)}, status=status)


# ---- pages -------------------------------------------------------------------------------
@role_required(*READERS, ADMIN)
def projects(request):
    rows = [{"project": p, "progress": queue.progress(p, request.user)}
            for p in Project.objects.all()]
    return render(request, "labeling/projects.html", {"rows": rows})


@role_required(*READERS, ADMIN)
def project(request, project):
    obj = _project(project)
    total = obj.images.count()
    # Saved readings only: a claim on someone's screen is not a reading yet.
    complete = (obj.images.annotate(saved=Count("readings", filter=Q(readings__done=True)))
                .filter(saved__gte=obj.readers_required).count())
    context = {"project": obj, "progress": queue.progress(obj, request.user), "total": total,
               "complete": complete,
               "to_adjudicate": len(report.disagreements(obj)) if has_role(request.user, REVIEWER) else None}
    return render(request, "labeling/project.html", context)


@role_required(*READERS)
def read(request, project):
    obj = _project(project)
    categories = [{"number": c.number, "name": c.name, "definition": c.definition,
                   "features": c.features, "risk": c.risk_text} for c in CATEGORIES.values()]
    return render(request, "labeling/read.html", {
        "project": obj, "categories": categories,
        "api": {"next": reverse("labeling:api_next", args=[obj.name]),
                "save": reverse("labeling:api_save", args=[obj.name, 0]),
                "skip": reverse("labeling:api_skip", args=[obj.name, 0]),
                "mine": reverse("labeling:api_mine", args=[obj.name, 0]),
                "project": reverse("labeling:project", args=[obj.name])}})


@require_POST
@role_required(*READERS)
def unskip(request, project):
    obj = _project(project)
    count = queue.unskip_all(obj, request.user)
    messages.info(request, f"{count} skipped image(s) are back in your queue.")
    return redirect("labeling:project", project=obj.name)


# ---- reading API (JSON) --------------------------------------------------------------------
@require_POST
@role_required(*READERS, json=True)
def api_next(request, project):
    obj = _project(project)
    queue.release_expired(obj)  # a new reading session: free stale claims of anyone
    return JsonResponse(_queue_state(request, obj))


@require_POST
@role_required(*READERS, json=True)
def api_save(request, project, image_id):
    """Save the reader's verdict and answer with the next image and the one to prefetch:
    "save and go to next" in one round trip and one transaction."""
    image = get_object_or_404(Image.objects.select_related("project"), pk=image_id,
                              project__name=project)
    try:
        data = _json_body(request)
        with transaction.atomic():
            queue.save_reading(image, request.user, label=str(data.get("label", "")),
                               flagged=bool(data.get("flagged")),
                               reason=str(data.get("reason", "")),
                               comment=str(data.get("comment", "")), request=request)
            state = _queue_state(request, image.project)
    except queue.QueueError as exc:
        return _json_error(exc, 409 if isinstance(exc, queue.QueueFull) else 400)
    return JsonResponse({"saved": image.pk, **state})


@require_POST
@role_required(*READERS, json=True)
def api_skip(request, project, image_id):
    obj = _project(project)
    image = get_object_or_404(Image, pk=image_id, project=obj)
    queue.skip(image, request.user)
    return JsonResponse({"skipped": image.pk, **_queue_state(request, obj)})


@require_GET
@role_required(*READERS, json=True)
def api_mine(request, project, image_id):
    """One of the caller's own saved readings (to go back and change it)."""
    obj = _project(project)
    reading = Reading.objects.filter(image_id=image_id, image__project=obj, reader=request.user,
                                     done=True).select_related("image").first()
    if reading is None:
        return JsonResponse({"error": "no saved reading of yours for this image"}, status=404)
    return JsonResponse({"current": _image_payload(obj, reading.image, reading)})


@require_GET
@role_required(*READERS, ADMIN)
def image(request, project, image_id):
    """The image file, to readers who hold or saved a reading of it and to reviewers."""
    obj = _project(project)
    img = get_object_or_404(Image, pk=image_id, project=obj)
    if not (has_role(request.user, REVIEWER) or
            Reading.objects.filter(image=img, reader=request.user).exists()):
        raise Http404("not one of your images")
    try:
        path = image_path(obj.dataset_root, {"path": img.path})
    except EutiradsError:
        raise Http404("image outside the dataset") from None
    if not path.is_file():
        raise Http404("image file missing")
    # The one clean-frame rule (eutirads.frame): only the ultrasound area is served, with
    # burned-in text blanked; same size as the file, so boxes and masks still fit.
    from PIL import Image as PILImage

    from ...frame import NoImageAreaError, clean_frame

    try:
        pixels = clean_frame(path, name=f"image #{img.pk}", redact_text=True).blanked
    except NoImageAreaError:
        raise Http404("no ultrasound image area in this image") from None
    buffer = BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", compress_level=3)
    buffer.seek(0)
    response = FileResponse(buffer, content_type="image/png")
    # Private cache: the prefetched next image is shown from the browser's cache at once.
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Disposition"] = "inline"
    return response


# ---- reviewers ------------------------------------------------------------------------------
@role_required(REVIEWER)
def agreement(request, project):
    obj = _project(project)
    return render(request, "labeling/agreement.html",
                  {"project": obj, "a": report.project_agreement(obj)})


@role_required(REVIEWER)
def adjudication(request, project):
    obj = _project(project)
    return render(request, "labeling/adjudication.html", {
        "project": obj, "open": report.disagreements(obj),
        "resolved": report.disagreements(obj, resolved=True)})


@role_required(REVIEWER)
def adjudicate(request, project, image_id):
    obj = _project(project)
    img = get_object_or_404(Image, pk=image_id, project=obj)
    if request.method == "POST":
        try:
            queue.set_consensus(img, request.POST.get("label", ""), request.user, request=request)
        except queue.QueueError as exc:
            messages.error(request, str(exc))
            return redirect("labeling:adjudicate", project=obj.name, image_id=img.pk)
        messages.info(request, f"Consensus for image {img.position} saved.")
        following = report.disagreements(obj)
        if following:
            return redirect("labeling:adjudicate", project=obj.name,
                            image_id=following[0]["image"].pk)
        return redirect("labeling:adjudication", project=obj.name)
    readings = (Reading.objects.filter(image=img, done=True).select_related("reader")
                .order_by("reader__username"))
    return render(request, "labeling/adjudicate.html", {
        "project": obj, "image": img, "readings": readings, "excluded": EXCLUDED,
        "categories": list(CATEGORIES.values()),
        "image_url": reverse("labeling:image", args=[obj.name, img.pk])})
