"""The diagnosis pages: Classify, history, models, reading mode and the readers-vs-model
report, with the access rules of each."""

from __future__ import annotations

import io
import re

import pytest

import diagnosis_samples as samples
from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures
from eutirads.categories import fna_advice

pytestmark = pytest.mark.django_db


def _upload(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _classify(client, data=None, name="scan.png", **fields):
    return client.post("/diagnosis/", {"image": _upload(data or samples.png_bytes(), name),
                                       **fields})


def test_the_classify_page_shows_the_form_the_active_model_and_the_disclaimer(rad_client,
                                                                              active_bundle):
    page = rad_client.get("/diagnosis/").content.decode()
    assert 'type="file"' in page and "tiny-test-model" in page
    assert '<th>accuracy</th><td class="num">0.610</td>' in page
    assert '<th>n</th><td class="num">40</td>' in page
    assert "does not replace, the radiologist" in page


def test_an_uploaded_image_gets_category_probabilities_heatmap_and_advice(rad_client,
                                                                          active_bundle):
    response = _classify(rad_client, size_mm="18")
    assert response.status_code == 200
    page = response.content.decode()
    label = re.search(r'id="dx-category">EU-TIRADS (\d) · ', page).group(1)
    assert fna_advice(int(label), 18.0) in page.replace("&#x27;", "'")
    assert page.count('class="dx-bar') >= 5 and 'id="dx-heat"' in page
    assert "data:image/png;base64," in page
    assert "does not replace, the radiologist" in page


def test_a_box_and_dicom_spacing_give_a_measured_size(rad_client, active_bundle):
    response = _classify(rad_client, samples.dicom_bytes(spacing_cm=0.02), "exam.dcm",
                         x0="10", y0="10", x1="60", y1="40")
    page = response.content.decode()
    assert response.status_code == 200
    assert "10 mm (measured from the drawn box)" in page  # 50 px x 0.2 mm


@pytest.mark.parametrize("data,name,status,reason", [
    (b"plain text" * 30, "a.png", 415, "not an image"),
    (samples.png_bytes(), "a.jpg", 415, "wrong extension"),
    (samples.png_bytes()[:300], "a.png", 400, "truncated"),
    (samples.png_bomb(), "a.png", 400, "too large"),
    (samples.gif_animation(), "a.gif", 415, "GIF"),
    (samples.png_with_text(b"<script>x</script>"), "a.png", 400, "polyglot"),
])
def test_a_bad_upload_on_the_page_gets_a_4xx_and_the_reason(rad_client, active_bundle, data,
                                                            name, status, reason):
    response = _classify(rad_client, data, name)
    assert response.status_code == status
    assert reason in response.content.decode()
    assert 'id="dx-error"' in response.content.decode()


def test_an_upload_over_the_limit_on_the_page_gets_413(rad_client, active_bundle, settings):
    settings.MAX_UPLOAD_MB = 1
    response = _classify(rad_client, samples.png_bytes() + b"\0" * (2 * 1024 * 1024))
    assert response.status_code == 413 and "too large" in response.content.decode()


def test_without_an_active_model_the_page_explains_instead_of_failing(rad_client, dx_home):
    assert "No active model" in rad_client.get("/diagnosis/").content.decode()
    response = _classify(rad_client)
    assert response.status_code == 503 and "no active model" in response.content.decode()


def test_history_shows_own_predictions_and_admins_see_everyones(client, radiologist,
                                                                other_radiologist, admin_user,
                                                                active_bundle):
    client.force_login(radiologist)
    _classify(client)
    client.force_login(other_radiologist)
    _classify(client)
    assert client.get("/diagnosis/history/").content.decode().count("/diagnosis/history/") == 1
    client.force_login(admin_user)
    page = client.get("/diagnosis/history/").content.decode()
    assert ">alice<" in page and ">bob<" in page


def test_a_kept_image_is_served_to_its_owner_and_admins_only(client, radiologist,
                                                             other_radiologist, admin_user,
                                                             active_bundle):
    from eutirads.web.diagnosis.models import Prediction

    client.force_login(radiologist)
    _classify(client, keep_image="1")
    row = Prediction.objects.get()
    assert row.image_name
    url = f"/diagnosis/history/{row.pk}/image.png"
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    client.force_login(other_radiologist)
    assert client.get(url).status_code == 404
    assert client.get(f"/diagnosis/history/{row.pk}/").status_code == 404
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_an_image_is_not_kept_without_opt_in(rad_client, active_bundle, dx_home):
    from eutirads.web.diagnosis.models import Prediction

    _classify(rad_client)
    assert Prediction.objects.get().image_name == ""
    assert not (dx_home / "diagnosis" / "images").exists()


def test_the_models_page_shows_the_active_model_card(rad_client, active_bundle):
    page = rad_client.get("/diagnosis/models/").content.decode()
    assert 'id="dx-model-card"' in page and "tiny-test-model" in page
    assert "Register a bundle" not in page  # radiologists do not manage models


def test_only_admins_register_and_activate_models(client, radiologist, admin_user,
                                                  active_bundle, tiny_bundle):
    from eutirads.web.diagnosis.models import ModelBundle

    client.force_login(radiologist)
    assert client.post("/diagnosis/models/add/", {"folder": str(tiny_bundle)}).status_code == 403
    client.force_login(admin_user)
    client.post("/diagnosis/models/add/", {"folder": str(tiny_bundle)})
    second = ModelBundle.objects.exclude(pk=active_bundle.pk).get()
    assert not second.active
    client.post(f"/diagnosis/models/{second.pk}/activate/")
    assert list(ModelBundle.objects.filter(active=True)) == [second]
    client.force_login(radiologist)
    assert client.post(f"/diagnosis/models/{active_bundle.pk}/activate/").status_code == 403


def test_registering_a_folder_that_is_not_a_bundle_shows_the_reason(client, admin_user,
                                                                    tmp_path, dx_home):
    client.force_login(admin_user)
    response = client.post("/diagnosis/models/add/", {"folder": str(tmp_path)}, follow=True)
    assert "not a model bundle" in response.content.decode()


def test_the_forms_refuse_a_relative_folder_and_an_overlong_field_in_one_line(
        client, admin_user, rad_client, active_bundle):
    client.force_login(admin_user)
    response = client.post("/diagnosis/models/add/", {"folder": "bundles/x"}, follow=True,
                           HTTP_ACCEPT_LANGUAGE="es-CO")
    assert "Indique la ruta absoluta de la carpeta del paquete" in response.content.decode()
    upload = _upload(samples.png_bytes(samples.ultrasound_like(320, 240)), "frame.png")
    response = rad_client.post("/diagnosis/", {"x0": "1" * 30, "image": upload})
    assert response.status_code == 400
    assert re.search(r"x0: Ensure this value has at most 20 characters", response.content.decode())


# ---- reading mode and the comparison report ------------------------------------------------

@pytest.fixture
def consensus_project(project):
    """The labeling project's 4 images with consensus labels 2, 3, 4, 5, made grey
    ultrasound-like (the fixture's colour noise is, rightly, no ultrasound for the model)."""
    from pathlib import Path

    for seed, (image, label) in enumerate(zip(project.images.order_by("position"), "2345")):
        image.consensus_label = label
        image.save()
        (Path(project.dataset_root) / image.path).write_bytes(
            samples.png_bytes(samples.ultrasound_like(64, 48, seed=seed)))
    return project


def test_reading_mode_shows_an_image_blind_then_the_models_answer(client_for, active_bundle,
                                                                  consensus_project):
    from eutirads.web.diagnosis.models import Reading

    alice = client_for("alice")
    page = alice.get("/diagnosis/reading/").content.decode()
    item = re.search(r'name="item" value="(\d+)"', page).group(1)
    assert "dx-category" not in page and "consensus" not in page.lower().split("</h1>")[1]
    response = alice.post("/diagnosis/reading/", {"item": item, "label": "4"})
    assert response.status_code == 200
    result = response.content.decode()
    assert "You chose <strong>EU-TIRADS 4" in result and 'id="dx-category"' in result
    reading = Reading.objects.get()
    assert reading.human_label == "4" and reading.prediction.channel == "reading"
    # the next image is another one; reading the same one twice is refused
    assert f'name="item" value="{item}"' not in alice.get("/diagnosis/reading/").content.decode()
    assert alice.post("/diagnosis/reading/", {"item": item, "label": "3"}).status_code == 400


def test_reading_mode_never_shows_a_reader_an_image_they_labelled_or_adjudicated(
        client_for, users, active_bundle, consensus_project):
    from eutirads.web.labeling import queue

    images = list(consensus_project.images.select_related("project").order_by("position"))
    queue.save_reading(images[0], users["alice"], label="2")  # alice labelled image 1
    images[1].consensus_by = users["alice"]  # and adjudicated image 2 (as a reviewer may)
    images[1].save()
    alice = client_for("alice")
    shown = []
    while True:
        match = re.search(r'name="item" value="(\d+)"', alice.get("/diagnosis/reading/").content.decode())
        if match is None:
            break
        shown.append(int(match.group(1)))
        assert alice.post("/diagnosis/reading/", {"item": match.group(1), "label": "3"}).status_code == 200
    assert shown == [images[2].pk, images[3].pk]
    # Nor may she post a reading of one by its number.
    assert alice.post("/diagnosis/reading/", {"item": str(images[0].pk), "label": "2"}).status_code == 400
    # bob, who labelled none of them, is shown all four.
    bob = client_for("bob")
    first = re.search(r'name="item" value="(\d+)"', bob.get("/diagnosis/reading/").content.decode())
    assert int(first.group(1)) == images[0].pk


def test_the_report_scores_each_reader_and_the_model_against_consensus(client_for, active_bundle,
                                                                       consensus_project):
    for name, answers in (("alice", "2345"), ("bob", "2222")):
        reader = client_for(name)
        for label in answers:
            item = re.search(r'name="item" value="(\d+)"',
                             reader.get("/diagnosis/reading/").content.decode()).group(1)
            assert reader.post("/diagnosis/reading/", {"item": item, "label": label}).status_code == 200
    assert client_for("alice").get("/diagnosis/reading/report/").status_code == 403
    page = client_for("rita").get("/diagnosis/reading/report/").content.decode()
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)</td>",
                      page)
    assert ("alice", "4", "1.000") in rows and ("bob", "4", "0.250") in rows


def test_compare_computes_accuracy_kappa_and_confusion_per_reader():
    from eutirads.web.diagnosis.comparison import Record, compare

    records = [Record("r1", f"i{i}", c, h, m) for i, (c, h, m) in
               enumerate([("2", "2", "3"), ("3", "3", "3"), ("5", "4", "5"), ("4", "4", "4")])]
    report = compare(records + [Record("r2", "i0", "2", "x", "2")])
    (r1,) = report["readers"]
    assert r1["human"]["accuracy"] == 0.75 and r1["model"]["accuracy"] == 0.75
    assert r1["human"]["confusion"][4][3] == 1  # consensus 5 read as 4
    assert 0 < r1["human"]["kappa"] < 1
    assert report["skipped"] == 1 and report["model"]["n"] == 4


def test_radiologists_cannot_see_the_comparison_report_and_mallory_sees_nothing(client_for,
                                                                                active_bundle):
    assert client_for("alice").get("/diagnosis/reading/report/").status_code == 403
    for url in ("/diagnosis/", "/diagnosis/history/", "/diagnosis/reading/",
                "/diagnosis/models/", "/api/v1/models"):
        assert client_for("mallory").get(url).status_code == 403


def test_every_diagnosis_and_api_url_refuses_anonymous_visitors(client, active_bundle):
    from django.urls import get_resolver

    diagnosis = get_resolver().namespace_dict["diagnosis"][1]
    urls = ["/" + str(p.pattern).replace("<int:pk>", "1").lstrip("^").rstrip("$")
            .replace("(?P<rest>.*)", "anything") for p in diagnosis.url_patterns]
    assert len(urls) >= 12
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code == 302:
                assert response.url.startswith("/login/"), url
            else:
                assert response.status_code in (401, 404, 405), (method, url,
                                                                 response.status_code)
                if url.startswith("/api/") and response.status_code == 401:
                    assert response.json()["error"]


def test_the_report_shows_a_dash_where_a_kappa_is_undefined_and_speaks_spanish(
        client_for, active_bundle, consensus_project):
    from eutirads.web.labeling.models import Image

    alice = client_for("alice")
    item = re.search(r'name="item" value="(\d+)"',
                     alice.get("/diagnosis/reading/").content.decode()).group(1)
    truth = Image.objects.get(pk=item).consensus_label
    assert alice.post("/diagnosis/reading/", {"item": item, "label": truth}).status_code == 200
    page = client_for("rita").get("/diagnosis/reading/report/").content.decode()
    # One image: accuracy 1, kappa undefined (one image, no variation): "—", never "nan".
    assert re.search(r'<tr><td>alice</td><td class="num">1</td><td class="num">1.000</td>'
                     r'<td class="num">—</td>', page)
    assert ">nan<" not in page
    spanish = client_for("rita").get("/diagnosis/reading/report/",
                                     HTTP_ACCEPT_LANGUAGE="es-CO").content.decode()
    assert "Lectores y modelo frente al consenso" in spanish and "Exactitud del lector" in spanish
    assert '<td class="num">1,000</td>' in spanish  # the locale's decimal mark
