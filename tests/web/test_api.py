"""The JSON API: token authentication, predict, models, and every answer valid against the
served OpenAPI schema."""

from __future__ import annotations

import base64
import io

import jsonschema
import pytest
from PIL import Image

import diagnosis_samples as samples
from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures
from tests.web.conftest import make_user

pytestmark = pytest.mark.django_db


def _schema():
    from eutirads.web.diagnosis.api import schema_dict

    return schema_dict()


def _validate(response, path: str, method: str = "post") -> dict:
    """Validate a response body against the schema for (path, method, status)."""
    spec = _schema()
    status = str(response.status_code)
    entry = spec["paths"][path][method]["responses"][status]
    if "$ref" in entry:
        entry = spec["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    schema = dict(entry["content"]["application/json"]["schema"])
    schema["components"] = spec["components"]
    body = response.json()
    jsonschema.Draft202012Validator(schema).validate(body)
    return body


def _post(client, token, data: bytes, name: str = "scan.png", **fields):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post("/api/v1/predict", {"image": upload, **fields},
                       HTTP_AUTHORIZATION=f"Token {token}")


def test_the_served_schema_is_a_valid_openapi_document(client, token):
    from openapi_spec_validator import validate

    response = client.get("/api/v1/schema", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    validate(response.json())


def test_predict_answers_a_token_request_with_category_advice_and_model(client, token,
                                                                        active_bundle):
    response = _post(client, token, samples.png_bytes(), size_mm="22")
    assert response.status_code == 200, response.content
    body = _validate(response, "/api/v1/predict")
    assert body["category"] in {"1", "2", "3", "4", "5"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["model"] == {"id": active_bundle.pk, "name": "tiny-test-model",
                             "version": active_bundle.version}
    assert body["diameter_mm"] == 22.0 and body["diameter_source"] == "given"
    assert body["advice"]
    assert "heatmap_png" not in body
    assert body["classified"] == "image"  # no box given


def test_the_serving_path_never_imports_torch():
    import subprocess
    import sys

    code = ("import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'eutirads.web.settings'; "
            "import django; django.setup(); "
            "import eutirads.web.diagnosis.api, eutirads.web.diagnosis.views, "
            "eutirads.web.diagnosis.services, eutirads.inference; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_heatmap_has_the_uploaded_images_size(client, token, active_bundle):
    pixels = samples.ultrasound_like(200, 130)
    response = _post(client, token, samples.jpeg_bytes(pixels), "a.jpg", heatmap="1",
                     x0="40", y0="30", x1="150", y1="100")
    body = _validate(response, "/api/v1/predict")
    heatmap = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    assert heatmap.size == (200, 130)
    assert body["box"] == {"x0": 40, "y0": 30, "x1": 150, "y1": 100}
    assert body["classified"] == "box"  # the tiny bundle was made with crop "roi"


def test_a_dicom_box_is_measured_with_its_pixel_spacing(client, token, active_bundle):
    # 0.01 cm per pixel = 0.1 mm; a 120-pixel wide box is 12 mm.
    response = _post(client, token, samples.dicom_bytes(spacing_cm=0.01), "exam.dcm",
                     x0="10", y0="20", x1="130", y1="100")
    body = _validate(response, "/api/v1/predict")
    assert body["diameter_mm"] == 12.0 and body["diameter_source"] == "measured"


def test_predict_stores_a_history_row_and_an_audit_event_without_the_image(client, token,
                                                                           active_bundle):
    from eutirads.web.core.models import AuditEvent
    from eutirads.web.diagnosis.models import Prediction

    body = _validate(_post(client, token, samples.png_bytes()), "/api/v1/predict")
    row = Prediction.objects.get(pk=body["id"])
    assert row.user.username == "alice" and row.channel == "api" and row.image_name == ""
    assert AuditEvent.objects.filter(action="diagnosis.predict",
                                     target=f"prediction #{row.pk}").exists()


def test_store_image_keeps_a_reencoded_png_under_a_generated_name(client, token, active_bundle,
                                                                  dx_home):
    from eutirads.web.diagnosis.models import Prediction

    body = _validate(_post(client, token, samples.png_bytes(), "Doe_Jane.png", store_image="1"),
                     "/api/v1/predict")
    row = Prediction.objects.get(pk=body["id"])
    files = list((dx_home / "diagnosis" / "images").iterdir())
    assert [f.name for f in files] == [row.image_name]
    assert "Doe" not in row.image_name and len(row.image_name) == 36
    # only the image area is kept: the black screen border (and any text on it) is cut away
    assert Image.open(files[0]).size == (140, 100)


BAD = {
    "not an image": (b"hello, world\n" * 20, "a.png", 415),
    "wrong extension": (samples.png_bytes(), "a.jpg", 415),
    "truncated": (samples.jpeg_bytes()[:700], "a.jpg", 400),
    "decompression bomb": (samples.png_bomb(), "a.png", 400),
    "animated": (samples.animated_png(), "a.png", 400),
    "multi-frame dicom": (samples.dicom_bytes(frames=2), "a.dcm", 400),
    "polyglot": (samples.jpeg_bytes() + samples.zip_bytes(), "a.jpg", 400),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_upload_gets_a_4xx_with_a_message_valid_against_the_schema(client, token,
                                                                             active_bundle,
                                                                             case):
    data, name, status = BAD[case]
    response = _post(client, token, data, name)
    assert response.status_code == status
    assert _validate(response, "/api/v1/predict")["error"]


def test_an_upload_over_the_configured_limit_gets_413(client, token, active_bundle, settings):
    settings.MAX_UPLOAD_MB = 1
    response = _post(client, token, samples.png_bytes() + b"\x00" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert "too large" in _validate(response, "/api/v1/predict")["error"]


@pytest.mark.parametrize("fields,message", [
    ({"x0": "1", "y0": "1"}, "all four"),
    ({"x0": "0", "y0": "0", "x1": "999", "y1": "50"}, "outside"),
    ({"size_mm": "-3"}, "size_mm"),
    ({"size_mm": "abc"}, "number"),
])
def test_bad_box_or_size_values_get_400(client, token, active_bundle, fields, message):
    response = _post(client, token, samples.png_bytes(), **fields)
    assert response.status_code == 400
    assert message in _validate(response, "/api/v1/predict")["error"]


def test_a_missing_image_field_gets_400(client, token, active_bundle):
    response = client.post("/api/v1/predict", {}, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 400
    assert "no image" in _validate(response, "/api/v1/predict")["error"]


def test_without_an_active_model_predict_says_so_with_503(client, token, db, dx_home):
    response = _post(client, token, samples.png_bytes())
    assert response.status_code == 503
    assert "no active model" in _validate(response, "/api/v1/predict")["error"]


@pytest.mark.parametrize("header", [None, "Token not-a-real-token", "Basic dXNlcjpwYXNz",
                                    "Token"])
def test_requests_without_a_valid_token_get_401(client, active_bundle, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    upload = io.BytesIO(samples.png_bytes())
    upload.name = "a.png"
    for response in (client.post("/api/v1/predict", {"image": upload}, **extra),
                     client.get("/api/v1/models", **extra)):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Token")
        assert response.json()["error"]


def test_a_user_without_a_role_gets_403_even_with_a_token(client, active_bundle):
    from eutirads.web.diagnosis.tokens import create_token

    token = create_token(make_user("norole", None))
    response = client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 403


def test_a_deactivated_users_token_stops_working(client, token, radiologist, active_bundle):
    radiologist.is_active = False
    radiologist.save()
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401


def test_tokens_are_stored_only_as_their_hash(token):
    from eutirads.web.diagnosis.models import ApiToken

    row = ApiToken.objects.get()
    assert token not in row.key_hash and len(row.key_hash) == 64
    assert row.prefix == token[:8]


def test_models_lists_registered_bundles_with_the_active_one_and_its_test_metrics(
        client, token, active_bundle):
    response = client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}")
    body = _validate(response, "/api/v1/models", "get")
    (model,) = body["models"]
    assert model["active"] and model["class_names"] == ["1", "2", "3", "4", "5"]
    assert model["test_metrics"]["accuracy"] == pytest.approx(0.61)


def test_a_logged_in_browser_may_read_but_not_post_without_a_token(client, radiologist,
                                                                   active_bundle):
    client.force_login(radiologist)
    assert client.get("/api/v1/models").status_code == 200
    upload = io.BytesIO(samples.png_bytes())
    upload.name = "a.png"
    assert client.post("/api/v1/predict", {"image": upload}).status_code == 401


def test_the_model_is_loaded_once_per_process_not_per_request(client, token, active_bundle,
                                                               monkeypatch):
    from eutirads.web.diagnosis import services

    loads = []
    real = services._load_predictor
    monkeypatch.setattr(services, "_load_predictor", lambda folder: loads.append(folder) or
                        real(folder))
    services._PREDICTORS.clear()
    for _ in range(3):
        assert _post(client, token, samples.png_bytes()).status_code == 200
    assert len(loads) == 1


def test_unknown_api_paths_answer_json_404(client, token):
    response = client.get("/api/v1/nothing", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 404 and response.json()["error"]
