"""Diagnosis pages. Views stay thin: check access, read the form, call `services`, render."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from ...categories import CATEGORIES
from ...errors import EutiradsError, InputError
from ...inference.diagnosis import outline_geometry
from ...inference.uploads import UploadError, encode_png
from ..core.access import ADMIN, READERS, REVIEWER, ROLES, has_role, role_required
from ..core.errors import status_for
from ..core.vocabulary import DESCRIPTOR_LABELS
from . import comparison, present, report, services
from .forms import ClassifyForm, DecisionForm, ModelAddForm, ReadingForm, cleaned
from . import reading as reading_service
from .models import ModelBundle, Prediction
from .requests import request_too_large, upload_from_request

STAFF = ROLES  # radiologists, reviewers and admins may classify


def _optional_bundle():
    return ModelBundle.objects.filter(active=True).first()


def result_context(diagnosis, image, prediction, bundle) -> dict:
    """What the result part of a page shows (shared by Classify and the reading mode)."""
    box = services.box_dict(diagnosis.box)
    return {
        "diagnosis": diagnosis, "prediction": prediction,
        "bars": present.bars(diagnosis.label, diagnosis.probabilities),
        "image_uri": services.data_uri(image.png),
        "heatmap_uri": services.data_uri(services.heatmap_overlay_png(diagnosis.heatmap))
        if diagnosis.heatmap is not None else "",
        "image_width": image.width, "image_height": image.height, "box": box,
        "overlay": outline_geometry(diagnosis.nodule, box, diagnosis.box_source,
                                    size=(image.width, image.height)),
        "descriptor_rows": present.descriptor_rows(diagnosis.descriptors),
        "size_text": present.size_text(diagnosis.diameter_mm, diagnosis.diameter_source),
        "abstain_text": present.abstain_text(diagnosis.abstain_reason),
        "advice_text": present.translate_advice(diagnosis.advice),
        "rule_differs": present.rule_differs(diagnosis.rule_path, diagnosis.label),
        **present.category_texts(diagnosis.label),
        "category_choices": [(str(n), c.name) for n, c in CATEGORIES.items()],
        "disclaimer": services.DISCLAIMER,
        "confidence": round(100 * diagnosis.probabilities.get(diagnosis.label, 0.0), 1),
        **present.bundle_context(bundle),
    }


@role_required(*STAFF)
@require_http_methods(["GET", "POST"])
def classify(request):
    from django.conf import settings

    context = {"categories": CATEGORIES.values(), "max_upload_mb": _max_mb(), "form": {},
               "pacs_configured": bool(getattr(settings, "PACS_STOW_URL", ""))}
    if request.method == "GET":
        context.update(present.bundle_context(_optional_bundle()))
        return render(request, "diagnosis/classify.html", context)
    form = ClassifyForm(request.POST)
    context["form"] = form.echo()
    try:
        if request_too_large(request):
            raise UploadError(f"upload too large (limit {_max_mb()} MB)", 413)
        values = cleaned(form)
        image = upload_from_request(request)
        box = services.parse_box(values, image.width, image.height)
        size_mm = services.parse_size_mm(values["size_mm"])
        mm_per_pixel = image.mm_per_pixel or services.parse_pixel_mm(values["mm_per_pixel"])
        bundle = services.active_bundle()
        diagnosis = services.diagnose(services.get_predictor(bundle), image, box=box,
                                      size_mm=size_mm, mm_per_pixel=mm_per_pixel)
        prediction = services.save_prediction(
            diagnosis, image, user=request.user, bundle=bundle, channel="web",
            keep_image=values["keep_image"], request=request)
    except EutiradsError as exc:
        status = status_for(exc)
        context.update(present.bundle_context(_optional_bundle()))
        context["error"] = str(exc)
        return render(request, "diagnosis/classify.html", context, status=status)
    context.update(result_context(diagnosis, image, prediction, bundle))
    context["mm_per_pixel"] = mm_per_pixel
    if values["send_to_pacs"]:
        context.update(_send_to_pacs(request, diagnosis, bundle))
    return render(request, "diagnosis/classify.html", context)


def _send_to_pacs(request, diagnosis, bundle) -> dict:
    """SR (and SEG) of the uploaded DICOM to the clinic's PACS (eutirads.pacs.results);
    built in memory from the upload, sent, not kept."""
    from django.conf import settings

    from ...pacs.results import send_to_pacs

    if not settings.PACS_STOW_URL:
        return {"pacs_error": "no PACS is configured (EUTIRADS_PACS_URL)"}
    upload = request.FILES["image"]
    upload.seek(0)
    try:
        sent = send_to_pacs(upload.read(), diagnosis, model_name=bundle.name,
                            model_version=bundle.version, url=settings.PACS_STOW_URL)
    except EutiradsError as exc:
        return {"pacs_error": str(exc)}
    return {"pacs_sent": " and ".join(sent)}


def _max_mb() -> int:
    from django.conf import settings

    return int(getattr(settings, "MAX_UPLOAD_MB", 20))


def _visible_predictions(user):
    rows = Prediction.objects.select_related("bundle", "user", "decision")
    return rows if has_role(user, ADMIN) else rows.filter(user=user)


@role_required(*STAFF)
def history(request):
    rows = _visible_predictions(request.user)[:200]
    return render(request, "diagnosis/history.html",
                  {"predictions": rows, "all_users": has_role(request.user, ADMIN)})


def _own_prediction(request, pk: int) -> Prediction:
    prediction = get_object_or_404(Prediction.objects.select_related("bundle", "user"), pk=pk)
    if prediction.user_id != request.user.pk and not has_role(request.user, ADMIN):
        raise Http404("no such prediction")  # do not reveal that someone else's exists
    return prediction


@role_required(*STAFF)
def prediction_detail(request, pk: int):
    prediction = _own_prediction(request, pk)
    return render(request, "diagnosis/prediction.html", present.prediction_context(prediction))


@role_required(*STAFF)
@require_POST
def prediction_decision(request, pk: int):
    """Accept or change: the radiologist's category and descriptors, stored beside the
    model's answer (only the prediction's owner decides on it)."""
    from django.contrib import messages

    prediction = _own_prediction(request, pk)
    if prediction.user_id != request.user.pk:
        raise Http404("no such prediction")
    form = DecisionForm(request.POST)
    try:
        values = cleaned(form)
        services.save_decision(prediction, user=request.user, label=values["label"],
                               descriptors=form.descriptors(), note=values["note"],
                               request=request)
    except InputError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your decision is saved beside the model's answer."))
    return redirect("diagnosis:prediction", pk=prediction.pk)


@role_required(*STAFF)
def prediction_report(request, pk: int):
    """The printable report (print CSS); `?format=pdf` or report.pdf gives the PDF."""
    prediction = _own_prediction(request, pk)
    return render(request, "diagnosis/report.html", report.report_context(prediction))


@role_required(*STAFF)
def prediction_report_pdf(request, pk: int):
    prediction = _own_prediction(request, pk)
    return report.pdf_response(request, prediction)


@role_required(*STAFF)
def prediction_image(request, pk: int):
    prediction = _own_prediction(request, pk)
    if not prediction.image_name:
        raise Http404("no image kept")
    path = services.image_folder() / prediction.image_name
    if not path.is_file():
        raise Http404("image file missing")
    response = FileResponse(path.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    return response


@role_required(*STAFF)
def model_list(request):
    bundles = ModelBundle.objects.all()
    active = next((b for b in bundles if b.active), None)
    return render(request, "diagnosis/models.html",
                  {"bundles": bundles, "active": active, "is_admin": has_role(request.user, ADMIN),
                   "card_html": present.render_card(active.model_card) if active else "",
                   **present.bundle_context(active)})


@role_required(ADMIN)
@require_POST
def model_activate(request, pk: int):
    bundle = services.activate_bundle(pk, user=request.user)
    from django.contrib import messages

    messages.success(request, _("Model #%(id)s (%(name)s) is now active.")
                     % {"id": bundle.pk, "name": bundle.name})
    return redirect("diagnosis:models")


@role_required(ADMIN)
@require_POST
def model_add(request):
    """Register a bundle folder that is on the server (as `eutirads models add` does)."""
    from django.contrib import messages

    form = ModelAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, next(iter(form.errors.values()))[0])
        return redirect("diagnosis:models")
    try:
        bundle = services.register_bundle(form.cleaned_data["folder"],
                                          activate=form.cleaned_data["activate"],
                                          user=request.user)
    except EutiradsError as exc:
        messages.error(request, str(exc))
        return redirect("diagnosis:models")
    messages.success(request, _("Registered model #%(id)s (%(name)s).")
                     % {"id": bundle.pk, "name": bundle.name})
    return redirect("diagnosis:models")


# ---- reading mode: the reader chooses blind, then sees the model's answer -------------------

@role_required(*READERS)
@require_http_methods(["GET", "POST"])
def reading(request):
    if request.method == "GET":
        item = reading_service.next_item(request.user)
        if item is None:
            return render(request, "diagnosis/reading.html", {"item": None})
        pixels = reading_service.item_pixels(item)
        return render(request, "diagnosis/reading.html", {
            "item": item, "image_uri": services.data_uri(encode_png(pixels)),
            "choices": [(str(n), c.name) for n, c in CATEGORIES.items()]})
    try:
        values = cleaned(ReadingForm(request.POST))
        outcome = reading_service.submit(request.user, values["item"], values["label"],
                                         request=request)
    except EutiradsError as exc:
        return render(request, "core/error.html", {"title": _("Reading not saved"),
                                                   "message": str(exc)}, status=status_for(exc))
    context = result_context(outcome.diagnosis, outcome.image, outcome.prediction, outcome.bundle)
    context.update({"reading": outcome.reading, "agrees": outcome.reading.human_label ==
                    outcome.diagnosis.label,
                    "human_name": CATEGORIES[int(outcome.reading.human_label)].name})
    return render(request, "diagnosis/reading_result.html", context)


@role_required(REVIEWER, ADMIN)
def reading_report(request):
    return render(request, "diagnosis/reading_report.html",
                  {"report": comparison.compare_readers(),
                   "decisions": comparison.decision_report(),
                   "descriptor_labels": DESCRIPTOR_LABELS})
