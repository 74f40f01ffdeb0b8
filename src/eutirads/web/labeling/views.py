"""Labeling views: thin; check access, validate, call `queue` / `report`, render or JSON.

Blind reading: the reading screen and its JSON API only ever return the caller's own
reading. Reviewers see everyone's labels on the agreement and adjudication pages.
"""

from __future__ import annotations

import json
from io import BytesIO

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from ...categories import rule_table
from ...data.manifest import image_path, row_bbox
from ...errors import EutiradsError
from ..core.access import ADMIN, READERS, REVIEWER, has_role, role_required
from ..core.errors import error_response
from ..core import vocabulary
from . import queue, report
from .forms import ConsensusForm, VerdictForm
from .models import DESCRIPTOR_MODE, EXCLUDED, Image, Project, Reading



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
        "overlay": (reverse("labeling:overlay", args=[project.name, image.id])
                    if getattr(image, "has_overlay", False) else None),
        "reading": None if own is None else {
            "label": own.label, "flagged": own.flagged, "reason": own.flag_reason,
            "comment": own.comment, "descriptors": own.descriptors,
            "nodule": not (own.rule_label == "1" and not own.descriptors),
            "rule_label": own.rule_label, "override_reason": own.override_reason,
            "diameter_mm": own.diameter_mm},
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
        raise queue.QueueError(_("the request body is not JSON")) from None
    if not isinstance(data, dict):
        raise queue.QueueError(_("the request body must be a JSON object"))
    return data


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
    return render(request, "labeling/read.html", {
        "project": obj, "categories": vocabulary.categories(),
        "descriptor_mode": obj.reading_mode == DESCRIPTOR_MODE,
        "groups": vocabulary.descriptor_groups(), "rule": rule_table(),
        "api": {"next": reverse("labeling:api_next", args=[obj.name]),
                "save": reverse("labeling:api_save", args=[obj.name, 0]),
                "skip": reverse("labeling:api_skip", args=[obj.name, 0]),
                "mine": reverse("labeling:api_mine", args=[obj.name, 0]),
                "project": reverse("labeling:project", args=[obj.name]),
                "mode": obj.reading_mode,
                "categories": {str(c["number"]): c["name"] for c in vocabulary.categories()},
                "values": vocabulary.VALUE_LABELS, "high_risk": vocabulary.HIGH_RISK_TEXT}})


@role_required(*READERS)
def mine(request, project):
    """The reader's own saved readings, newest first, to reopen and change one."""
    obj = _project(project)
    readings = (Reading.objects.filter(image__project=obj, reader=request.user, done=True)
                .select_related("image").order_by("-saved_at")[:500])
    return render(request, "labeling/mine.html", {"project": obj, "readings": readings})


@require_POST
@role_required(*READERS)
def unskip(request, project):
    obj = _project(project)
    count = queue.unskip_all(obj, request.user)
    messages.info(request, ngettext("%(n)d skipped image is back in your queue.",
                                    "%(n)d skipped images are back in your queue.",
                                    count) % {"n": count})
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
        form = VerdictForm(_json_body(request), mode=image.project.reading_mode)
        if not form.is_valid():
            raise queue.QueueError(form.first_error())
        verdict = form.cleaned_data
        descriptors = {name: verdict[name] for name in vocabulary.DESCRIPTORS
                       if verdict.get(name)}
        with transaction.atomic():
            queue.save_reading(
                image, request.user, label=verdict["label"], flagged=verdict["flagged"],
                reason=verdict["reason"], comment=verdict["comment"],
                descriptors=descriptors if image.project.reading_mode == DESCRIPTOR_MODE
                else None, nodule=verdict["nodule"], override=verdict["override"],
                override_reason=verdict["override_reason"],
                diameter_mm=verdict["diameter_mm"], request=request)
            state = _queue_state(request, image.project)
    except queue.QueueError as exc:
        return error_response(request, exc, json=True)
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
        return JsonResponse({"error": _("no saved reading of yours for this image")},
                            status=404)
    return JsonResponse({"current": _image_payload(obj, reading.image, reading)})


@require_GET
@role_required(*READERS, ADMIN)
def image(request, project, image_id):
    """The image file, to readers who hold or saved a reading of it and to reviewers."""
    obj, img = _readable_image(request, project, image_id)
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
    _no_store(response)
    return response


def _no_store(response) -> None:
    # Patient images never stay in a (shared) browser's cache; the reading screen
    # prefetches the next one into a blob URL instead.
    response["Cache-Control"] = "no-store"
    response["Content-Disposition"] = "inline"


def _readable_image(request, project: str, image_id: int) -> tuple[Project, Image]:
    obj = _project(project)
    img = get_object_or_404(Image, pk=image_id, project=obj)
    if not (has_role(request.user, REVIEWER) or
            Reading.objects.filter(image=img, reader=request.user).exists()):
        raise Http404("not one of your images")
    return obj, img


@require_GET
@role_required(*READERS, ADMIN)
def overlay(request, project, image_id):
    """The manifest's nodule box and mask outline as a transparent PNG over the image."""
    from ...data.manifest import load_mask
    from .overlay import overlay_png

    obj, img = _readable_image(request, project, image_id)
    try:
        from PIL import Image as PILImage

        with PILImage.open(image_path(obj.dataset_root, {"path": img.path})) as pil:
            size = pil.size  # the header only: the overlay needs the size, not the pixels
        box = row_bbox(img.row)
        mask = load_mask(obj.dataset_root, img.row, image_size=size)
    except (EutiradsError, OSError, ValueError):
        raise Http404("no usable box or mask") from None
    if box is None and mask is None:
        raise Http404("no box or mask in the manifest")
    response = HttpResponse(overlay_png(size, box=box, mask=mask), content_type="image/png")
    _no_store(response)
    return response


# ---- reviewers ------------------------------------------------------------------------------
@role_required(REVIEWER)
def agreement(request, project):
    obj = _project(project)
    return render(request, "labeling/agreement.html",
                  {"project": obj, "a": report.project_agreement(obj),
                   "descriptor_labels": vocabulary.DESCRIPTOR_LABELS})


@role_required(REVIEWER)
def adjudication(request, project):
    obj = _project(project)
    open_ = report.disagreements(obj)
    # Blinding: images this reviewer read, or still open for reading, are not theirs to see.
    refused = [item for item in open_ if queue.may_adjudicate(item["image"], request.user)]
    return render(request, "labeling/adjudication.html", {
        "project": obj, "open": [i for i in open_ if i not in refused],
        "not_yours": len(refused),
        "resolved": report.disagreements(obj, resolved=True)})


def _next_to_adjudicate(project: Project, reviewer) -> Image | None:
    for item in report.disagreements(project):
        if not queue.may_adjudicate(item["image"], reviewer):
            return item["image"]
    return None


@role_required(REVIEWER)
def adjudicate(request, project, image_id):
    obj = _project(project)
    img = get_object_or_404(Image.objects.select_related("project"), pk=image_id, project=obj)
    refusal = queue.may_adjudicate(img, request.user)
    if refusal:
        raise PermissionDenied(refusal)
    if request.method == "POST":
        form = ConsensusForm(request.POST)
        try:
            if not form.is_valid():
                raise queue.QueueError(form.errors["label"][0])
            queue.set_consensus(img, form.cleaned_data["label"], request.user, request=request)
        except queue.QueueError as exc:
            messages.error(request, str(exc))
            return redirect("labeling:adjudicate", project=obj.name, image_id=img.pk)
        messages.info(request, _("Consensus for image %(n)d saved.") % {"n": img.position})
        following = _next_to_adjudicate(obj, request.user)
        if following is not None:
            return redirect("labeling:adjudicate", project=obj.name, image_id=following.pk)
        return redirect("labeling:adjudication", project=obj.name)
    readings = (Reading.objects.filter(image=img, done=True).select_related("reader")
                .order_by("reader__username"))
    mine = [item["image"].pk for item in report.disagreements(obj)
            if not queue.may_adjudicate(item["image"], request.user)]
    return render(request, "labeling/adjudicate.html", {
        "queue_index": mine.index(img.pk) + 1 if img.pk in mine else None,
        "queue_total": len(mine),
        "project": obj, "image": img, "readings": readings, "excluded": EXCLUDED,
        "categories": vocabulary.categories(), "value_labels": vocabulary.VALUE_LABELS,
        "image_url": reverse("labeling:image", args=[obj.name, img.pk])})
