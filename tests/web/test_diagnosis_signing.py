"""Output a radiologist can sign: outline, calipers and size from the localiser, descriptors
with the rule path, abstention shown plainly, the radiologist's own decision stored beside
the model's, and the printable report (HTML and PDF).

`active_full` is a real format-2 bundle (classifier with descriptor heads, and a localiser)
made through the real export path; the sample images' dark oval is the nodule."""

from __future__ import annotations

import io
import re

import diagnosis_samples as samples
import numpy as np
import pytest
from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures
from test_api import _post, _validate

pytestmark = pytest.mark.django_db


def test_the_api_returns_the_localisers_nodule_with_calipers_and_a_measured_size(
        client, token, active_full):
    from eutirads.categories import DESCRIPTORS, rule_path

    # 0.01 cm per pixel = 0.1 mm; the sample DICOM's dark oval is measured on its outline
    response = _post(client, token, samples.dicom_bytes(spacing_cm=0.01), "exam.dcm")
    body = _validate(response, "/api/v1/predict")
    assert body["box_source"] == "localiser" and body["abstain"] is False
    (region,) = body["nodule"]["regions"]
    long_axis, short_axis = region["calipers"]
    length = np.hypot(*np.subtract(long_axis[1], long_axis[0]))
    assert abs(length - region["long_axis_px"]) <= 3
    assert np.hypot(*np.subtract(short_axis[1], short_axis[0])) < length
    assert body["diameter_source"] == "localiser"
    assert body["diameter_mm"] == pytest.approx(region["long_axis_px"] * 0.1, abs=0.1)
    values = {k: v["value"] for k, v in body["descriptors"].items()}
    assert set(values) == set(DESCRIPTORS) and all(values[k] in DESCRIPTORS[k] for k in values)
    assert body["rule_path"] == rule_path(values)
    assert body["advice"].startswith(("FNA is indicated for EU-TIRADS", "FNA is not indicated",
                                      "No nodule"))
    assert body["box"] == dict(zip(("x0", "y0", "x1", "y1"), body["nodule"]["box"]))


def test_a_png_is_measured_on_the_outline_with_the_pixel_size_sent(client, token,
                                                                  active_full):
    body = _validate(_post(client, token, samples.png_bytes(samples.ultrasound_like(320, 240)),
                           mm_per_pixel="0.2"), "/api/v1/predict")
    (region,) = body["nodule"]["regions"]
    assert body["diameter_source"] == "localiser"
    assert body["diameter_mm"] == pytest.approx(region["long_axis_px"] * 0.2, abs=0.1)
    response = _post(client, token, samples.png_bytes(), mm_per_pixel="9")
    assert response.status_code == 400 and "mm_per_pixel" in response.json()["error"]


def test_a_checkerboard_upload_abstains_with_a_reason_and_no_advice(client, token,
                                                                    active_bundle):
    response = _post(client, token, samples.png_bytes(samples.checkerboard()))
    assert response.status_code == 200
    body = _validate(response, "/api/v1/predict")
    # Either picture check may speak first: a checkerboard has no speckled image area,
    # and what it has is not grey-scale ultrasound.
    assert body["abstain"] is True
    assert body["abstain_reason"] in ("no-ultrasound-area", "not-ultrasound")
    assert "advice" not in body and body["what_to_do"]
    assert body["probabilities"]  # kept for whoever looks


def test_the_models_own_abstention_is_honoured(client, token, model_abstains):
    body = _validate(_post(client, token, samples.png_bytes()), "/api/v1/predict")
    assert body["abstain"] and body["abstain_reason"] == "out-of-distribution"
    assert "advice" not in body


def test_the_schema_refuses_an_abstention_that_carries_advice():
    import jsonschema

    from eutirads.web.diagnosis.api import schema_dict

    spec = schema_dict()
    schema = {**spec["components"]["schemas"]["Prediction"], "components": spec["components"]}
    body = {"id": 1, "category": "5", "name": "", "definition": "", "malignancy_risk": "",
            "probabilities": {"5": 1.0}, "abstain": True, "abstain_reason": "not-ultrasound",
            "abstain_message": "x", "what_to_do": "y", "diameter_mm": None,
            "diameter_source": None, "box": None, "box_source": "none", "nodule": None,
            "descriptors": None, "rule_path": None, "classified": "image",
            "image": {"width": 2, "height": 2}, "model": {"id": 1, "name": "", "version": ""},
            "report_pdf": "/x", "disclaimer": ""}
    jsonschema.Draft202012Validator(schema).validate(body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**body, "advice": "FNA"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**body, "abstain": False})


def _classify(client, data: bytes, name: str = "scan.png", **fields):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post("/diagnosis/", {"image": upload, **fields})


def test_the_page_draws_the_outline_and_calipers_and_lists_the_descriptors(rad_client,
                                                                          active_full):
    from eutirads.web.diagnosis.models import Prediction

    page = _classify(rad_client, samples.png_bytes(samples.ultrasound_like(320, 240))).content
    page = page.decode()
    assert 'class="dx-contour"' in page and page.count('class="dx-caliper"') == 2
    assert 'data-source="localiser"' in page
    stored = Prediction.objects.get()
    assert stored.box_source == "localiser" and stored.nodule["regions"][0]["calipers"]
    from eutirads.web.core.vocabulary import VALUE_LABELS

    for value in stored.descriptor_values.values():
        assert str(VALUE_LABELS[value]) in page
    assert stored.rule_path.replace(">", "&gt;") in page
    assert 'id="dx-advice"' in page and 'id="dx-decision"' in page


def test_a_checkerboard_on_the_page_shows_the_abstention_and_no_advice(rad_client,
                                                                       active_bundle):
    response = _classify(rad_client, samples.png_bytes(samples.checkerboard()))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="dx-abstain"' in page
    assert ("does not look like a grey-scale ultrasound image" in page
            or "No ultrasound image area was found in this picture." in page)
    assert 'id="dx-advice"' not in page and "FNA is" not in page


def _decide(client, pk: int, label: str, **descriptors):
    return client.post(f"/diagnosis/history/{pk}/decision/",
                       {"label": label, **{f"d_{k}": v for k, v in descriptors.items()}})


def test_the_radiologists_decision_is_stored_beside_the_models_and_history_shows_both(
        rad_client, radiologist, active_full):
    from eutirads.web.core.models import AuditEvent
    from eutirads.web.diagnosis.models import Decision, Prediction

    _classify(rad_client, samples.png_bytes(samples.ultrasound_like(320, 240)))
    prediction = Prediction.objects.get()
    values = prediction.descriptor_values
    other = "isoechoic" if values["echogenicity"] != "isoechoic" else "mildly_hypoechoic"
    response = _decide(rad_client, prediction.pk, "4", **{**values, "echogenicity": other})
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert decision.user == radiologist and decision.label == "4"
    assert prediction.label == Prediction.objects.get().label  # the model's answer is kept
    expected = (["category"] if prediction.label != "4" else []) + ["echogenicity"]
    assert decision.changed_fields == expected and decision.differs
    history = rad_client.get("/diagnosis/history/").content.decode()
    row = re.search(rf'<a href="/diagnosis/history/{prediction.pk}/">.*?</tr>', history, re.S)
    assert f'label-chip l{prediction.label}' in row.group(0) and "label-chip l4" in row.group(0)
    assert "differs: " in row.group(0) and "echogenicity" in row.group(0)
    event = AuditEvent.objects.get(action="diagnosis.decision")
    assert event.after["model"] == prediction.label and event.after["label"] == "4"
    # accepting everything as it is: same as the model
    _decide(rad_client, prediction.pk, prediction.label, **values)
    assert not Decision.objects.get().differs
    assert AuditEvent.objects.filter(action="diagnosis.decision").count() == 2


def test_a_decision_with_an_unknown_value_is_refused_and_nothing_is_stored(rad_client,
                                                                           active_full):
    from eutirads.web.diagnosis.models import Decision, Prediction

    _classify(rad_client, samples.png_bytes())
    pk = Prediction.objects.get().pk
    _decide(rad_client, pk, "4", shape="triangular")
    _decide(rad_client, pk, "9")
    assert not Decision.objects.exists()


def test_nobody_decides_on_someone_elses_prediction(client, rad_client, other_radiologist,
                                                    active_full):
    from eutirads.web.diagnosis.models import Decision, Prediction

    _classify(rad_client, samples.png_bytes())
    client.force_login(other_radiologist)
    pk = Prediction.objects.get().pk
    assert _decide(client, pk, "3").status_code == 404
    assert client.get(f"/diagnosis/history/{pk}/report.pdf").status_code == 404
    assert not Decision.objects.exists()


def _first_page(pdf: bytes):
    """(PNG image of page 1, its text) through pdfium."""
    pdfium = pytest.importorskip("pypdfium2", reason="pypdfium2 renders the PDF's page")
    document = pdfium.PdfDocument(pdf)
    page = document[0]
    image = page.render(scale=1.5).to_pil().convert("RGB")
    text = page.get_textpage().get_text_range()
    return image, text


@pytest.mark.parametrize("keep", [True, False])
def test_the_pdf_report_holds_outline_size_descriptors_category_decision_and_model(
        client, rad_client, radiologist, token, active_full, keep):
    pytest.importorskip("weasyprint", reason="the PDF report needs WeasyPrint")
    from eutirads.web.diagnosis.models import Prediction

    body = _validate(_post(client, token, samples.dicom_bytes(spacing_cm=0.01), "exam.dcm",
                           store_image="1" if keep else "0"), "/api/v1/predict")
    prediction = Prediction.objects.get(pk=body["id"])
    model_value = prediction.descriptor_values["echogenicity"]
    other = "isoechoic" if model_value != "isoechoic" else "mildly_hypoechoic"
    _decide(rad_client, prediction.pk, "4", echogenicity=other)
    response = client.get(body["report_pdf"], HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    image, text = _first_page(response.content)
    text = " ".join(text.split())
    assert f"Model: EU-TIRADS {prediction.label}" in text
    assert f"{prediction.diameter_mm:g} mm (measured on the model's outline)" in text
    assert model_value.replace("_", " ") in text and other in text
    assert "EU-TIRADS 4 · Intermediate risk" in text and "alice" in text
    assert "full-test-model" in text and "accuracy 0.61" in text
    assert ("not kept" in text) is (not keep)
    # the page shows the outline: yellow contour pixels, and (when kept) the image's grey
    rgb = np.asarray(image).astype(int)
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 170) & (rgb[..., 2] < 90)
    assert yellow.sum() > 50
    ys, xs = np.nonzero(yellow)
    around = rgb[max(0, ys.min() - 40):ys.max() + 40, max(0, xs.min() - 40):xs.max() + 40]
    grey = (abs(around[..., 0] - around[..., 2]) < 8) & (around[..., 0] > 40) & \
        (around[..., 0] < 220)
    assert bool(grey.mean() > 0.3) is keep  # speckle around the outline, or black
    # the browser session may fetch it too
    assert rad_client.get(body["report_pdf"]).status_code == 200


def test_the_report_of_an_abstention_has_no_advice(client, token, active_bundle):
    pytest.importorskip("weasyprint", reason="the PDF report needs WeasyPrint")
    body = _validate(_post(client, token, samples.png_bytes(samples.checkerboard())),
                     "/api/v1/predict")
    response = client.get(body["report_pdf"], HTTP_AUTHORIZATION=f"Token {token}")
    _image, text = _first_page(response.content)
    assert "No answer from the model" in text and "FNA is" not in text


def test_the_api_report_is_404_for_someone_elses_prediction(client, token, active_bundle,
                                                            other_radiologist):
    from eutirads.web.diagnosis.tokens import create_token

    body = _validate(_post(client, token, samples.png_bytes()), "/api/v1/predict")
    other = create_token(other_radiologist)
    response = client.get(body["report_pdf"], HTTP_AUTHORIZATION=f"Token {other}")
    assert response.status_code == 404 and response.json()["error"]


def test_the_model_card_is_rendered_from_markdown_and_sanitised(rad_client, active_bundle):
    active_bundle.model_card = ("# Card\n\n| metric | value |\n|---|---|\n| accuracy | 0.61 |\n\n"
                                "<script>alert(1)</script> [x](javascript:alert(1))")
    active_bundle.save()
    page = rad_client.get("/diagnosis/models/").content.decode()
    card = page.split('id="dx-model-card">', 1)[1].split("</div>", 1)[0]
    assert "<h1>Card</h1>" in card and "<table>" in card and "<td>0.61</td>" in card
    assert "<script" not in card and "javascript:" not in card
    assert 'class="table-wrap"><table class="data" id="dx-bundles"' in page


def test_reading_mode_states_a_difference_in_neutral_styling(client_for, active_bundle):
    from pathlib import Path

    template = (Path(__file__).parents[2] / "src/eutirads/web/diagnosis/templates/diagnosis/"
                "reading_result.html").read_text()
    line = next(t for t in template.splitlines() if 'id="dx-agreement"' in t)
    assert "error" not in line and "you differ" not in line


def test_the_readers_report_counts_signed_decisions_against_the_model(client, rad_client,
                                                                      reviewer, active_full):
    from eutirads.web.diagnosis.comparison import decision_report
    from eutirads.web.diagnosis.models import Prediction

    for _ in range(2):
        _classify(rad_client, samples.png_bytes())
    first, second = Prediction.objects.order_by("id")
    model_value = first.descriptor_values["echogenicity"]
    changed = "isoechoic" if model_value != "isoechoic" else "mildly_hypoechoic"
    _decide(rad_client, first.pk, first.label, echogenicity=changed)
    other = "1" if second.label != "1" else "2"
    _decide(rad_client, second.pk, other, echogenicity=model_value)
    (row,) = decision_report()["radiologists"]
    assert row["radiologist"] == "alice" and row["n"] == 2
    assert row["same_category"] == pytest.approx(0.5)
    assert row["descriptors"]["echogenicity"] == {"n": 2, "changed": 1}
    client.force_login(reviewer)
    page = client.get("/diagnosis/reading/report/").content.decode()
    assert 'id="dx-decisions-report"' in page and "<td class=\"num\">1/2</td>" in page


def test_the_diagnosis_pages_speak_spanish_to_a_spanish_browser(rad_client, active_full):
    from eutirads.web.diagnosis.models import Prediction

    page = rad_client.get("/diagnosis/", HTTP_ACCEPT_LANGUAGE="es-CO,es;q=0.9").content.decode()
    assert "Clasificar una imagen de ecografía" in page and "Diámetro mayor, mm" in page
    upload = io.BytesIO(samples.png_bytes(samples.ultrasound_like(320, 240)))
    upload.name = "a.png"
    result = rad_client.post("/diagnosis/", {"image": upload},
                             HTTP_ACCEPT_LANGUAGE="es-CO").content.decode()
    assert "Su decisión" in result and "Tamaño del nódulo" in result
    assert "PAAF" in result or "FNA" not in result.split('id="dx-advice"')[1][:300]
    assert "Ecogenicidad" in result  # the shared vocabulary (web.core)
    pk = Prediction.objects.get().pk
    board = io.BytesIO(samples.png_bytes(samples.checkerboard()))
    board.name = "b.png"
    abstained = rad_client.post("/diagnosis/", {"image": board},
                                HTTP_ACCEPT_LANGUAGE="es-CO").content.decode()
    assert "Sin respuesta para esta imagen" in abstained
    history = rad_client.get("/diagnosis/history/", HTTP_ACCEPT_LANGUAGE="es-CO").content
    assert "Historial de predicciones" in history.decode()
    report = rad_client.get(f"/diagnosis/history/{pk}/report/", HTTP_ACCEPT_LANGUAGE="es-CO")
    assert "Nódulo tiroideo · informe EU-TIRADS" in report.content.decode()


def test_a_rule_path_ending_on_another_category_is_flagged():
    from eutirads.web.diagnosis.present import rule_differs

    assert rule_differs("solid, markedly hypoechoic -> EU-TIRADS 5", "4")
    assert not rule_differs("solid, markedly hypoechoic -> EU-TIRADS 5", "5")
    assert not rule_differs("", "4")
