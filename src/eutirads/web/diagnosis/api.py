"""The JSON API (`/api/v1/`): token authentication, predict, models, the OpenAPI schema.

Authentication is per user with `Authorization: Token <t>` (or `Bearer <t>`). Browsers
logged in to the site may also GET (the schema, the model list); a POST needs a token, so
no cross-site form can use a session cookie to run predictions.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ...errors import EutiradsError
from ...inference.uploads import UploadError
from ..core.access import ROLES, has_role
from ..core.errors import status_for
from . import services
from .requests import request_too_large, upload_from_request
from .tokens import token_from_header, user_for_token

SCHEMA_PATH = Path(__file__).with_name("openapi.yaml")


def _error(message: str, status: int) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Token realm="eutirads"'
    return response


def api_view(view):
    """Authenticate (token, or session for GET), require a role, map errors to 4xx JSON."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        header = request.headers.get("Authorization")
        token = token_from_header(header)
        if header and token is None:
            return _error("bad Authorization header; use 'Token <token>' or 'Bearer <token>'",
                          401)
        if token is not None:
            user = user_for_token(token, request=request)
            if user is None:
                return _error("invalid or revoked token", 401)
            request.user = user
        elif not (request.method == "GET" and request.user.is_authenticated):
            return _error("authentication required: send 'Authorization: Token <token>' "
                          "(get one with 'eutirads users token NAME')", 401)
        if not has_role(request.user, *ROLES):
            return _error("your account has no role that allows the API", 403)
        try:
            return view(request, *args, **kwargs)
        except EutiradsError as exc:  # the one mapping: its own status, 503, or 400
            return _error(str(exc), status_for(exc))

    return csrf_exempt(wrapped)


def bundle_json(bundle) -> dict:
    return {"id": bundle.pk, "name": bundle.name, "version": bundle.version,
            "active": bundle.active, "class_names": list(bundle.class_names),
            "test_metrics": _numbers(bundle.test_metrics),
            "added_at": bundle.added_at.isoformat()}


def _numbers(metrics: dict) -> dict:
    """Only the scalar metrics (the schema promises numbers)."""
    return {str(k): float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def diagnosis_json(diagnosis, prediction, bundle, *, heatmap: bool) -> dict:
    """The predict answer. An abstention (`abstain: true`) has a reason and what to do, and
    no `advice`: label and probabilities stay for whoever looks."""
    body = {
        "id": prediction.pk,
        "category": diagnosis.label,
        "name": diagnosis.name,
        "definition": diagnosis.definition,
        "malignancy_risk": diagnosis.risk,
        "probabilities": diagnosis.probabilities,
        "abstain": diagnosis.abstain,
        "diameter_mm": diagnosis.diameter_mm,
        "diameter_source": diagnosis.diameter_source or None,
        "box": services.box_dict(diagnosis.box),
        "box_source": diagnosis.box_source,
        "nodule": diagnosis.nodule,
        "descriptors": diagnosis.descriptors,
        "rule_path": diagnosis.rule_path or None,
        "classified": diagnosis.classified,
        "image": {"width": prediction.width, "height": prediction.height},
        "model": {"id": bundle.pk, "name": bundle.name, "version": bundle.version},
        "report_pdf": f"/api/v1/predictions/{prediction.pk}/report.pdf",
        "disclaimer": services.DISCLAIMER,
    }
    if diagnosis.abstain:
        meaning, todo = diagnosis.abstain_text
        body.update({"abstain_reason": diagnosis.abstain_reason, "abstain_message": meaning,
                     "what_to_do": todo})
    else:
        body["advice"] = diagnosis.advice
    if diagnosis.nodule is None and diagnosis.nodule_reason:
        body["nodule_reason"] = diagnosis.nodule_reason
    if heatmap and diagnosis.heatmap is not None:
        body["heatmap_png"] = base64.b64encode(services.heatmap_png(diagnosis.heatmap)).decode()
    return body


def _flag(value) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


@api_view
@require_POST
def predict(request):
    if request_too_large(request):
        raise UploadError("upload too large (over the configured limit)", 413)
    image = upload_from_request(request)
    box = services.parse_box(request.POST, image.width, image.height)
    size_mm = services.parse_size_mm(request.POST.get("size_mm"))
    bundle = services.active_bundle()
    want_heatmap = _flag(request.POST.get("heatmap"))
    mm_per_pixel = image.mm_per_pixel or services.parse_pixel_mm(
        request.POST.get("mm_per_pixel"))
    diagnosis = services.diagnose(services.get_predictor(bundle), image, box=box,
                                  size_mm=size_mm, mm_per_pixel=mm_per_pixel,
                                  heatmap=want_heatmap)
    prediction = services.save_prediction(diagnosis, image, user=request.user, bundle=bundle,
                                          channel="api",
                                          keep_image=_flag(request.POST.get("store_image")),
                                          request=request)
    return JsonResponse(diagnosis_json(diagnosis, prediction, bundle, heatmap=want_heatmap))


@api_view
@require_GET
def models(request):
    from .models import ModelBundle

    return JsonResponse({"models": [bundle_json(b) for b in ModelBundle.objects.all()]})


@api_view
@require_GET
def report_pdf(request, pk: int):
    """The printable report of one of the user's own predictions, as PDF."""
    from ..core.access import ADMIN
    from .models import Prediction
    from .report import pdf_response

    prediction = Prediction.objects.select_related("bundle", "user").filter(pk=pk).first()
    if prediction is None or (prediction.user_id != request.user.pk and
                              not has_role(request.user, ADMIN)):
        return _error("no such prediction", 404)  # never reveal someone else's
    return pdf_response(request, prediction)


@functools.lru_cache(maxsize=1)
def schema_dict() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


@api_view
@require_GET
def schema(request):
    return JsonResponse(schema_dict(), json_dumps_params={"indent": 1})


def not_found(request, rest: str = ""):
    """Unknown API paths answer JSON, not the HTML 404 page."""
    return _error("no such API endpoint", 404)


__all__ = ["predict", "models", "report_pdf", "schema", "schema_dict", "not_found"]
