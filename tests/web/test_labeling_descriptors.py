"""Structured reading: descriptors in, the rule's category stored, override with a reason,
history, export columns, agreement per descriptor, the nodule overlay; blinding and
adjudication rules; Spanish."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from eutirads.categories import DESCRIPTORS
from eutirads.web.core.models import AuditEvent
from eutirads.web.labeling.models import Image, Reading

HIGH_RISK = {"composition": "solid", "echogenicity": "markedly_hypoechoic", "shape": "oval",
             "margins": "smooth", "echogenic_foci": "none"}
LOW_RISK = {**HIGH_RISK, "echogenicity": "isoechoic"}


def post_json(client, url, data=None):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json")


def next_image(client, project="desc"):
    response = post_json(client, f"/labeling/{project}/api/next/")
    assert response.status_code == 200, response.content
    return response.json()


def save(client, image_id, project="desc", **body):
    return post_json(client, f"/labeling/{project}/api/{image_id}/save/", body)


def test_the_reading_screen_renders_descriptor_controls_with_vocabulary_values(
        client_for, descriptor_project):
    page = client_for("alice").get("/labeling/desc/read/")
    text = page.content.decode()
    for name, values in DESCRIPTORS.items():
        assert f'data-descriptor="{name}"' in text
        for value in values:
            assert f'data-value="{value}"' in text
    assert "rule.js" in text and 'id="labeling-rule"' in text
    assert 'class="choice"' not in text  # no category buttons in descriptor mode


def test_the_server_computes_the_category_from_the_descriptors(client_for, descriptor_project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    # Whatever the browser claims as label is ignored: the rule decides.
    response = save(alice, image_id, label="2", diameter_mm="12.5", **HIGH_RISK)
    assert response.status_code == 200, response.content
    reading = Reading.objects.get(image_id=image_id, reader__username="alice")
    assert (reading.label, reading.rule_label) == ("5", "5")
    assert reading.descriptors == HIGH_RISK and reading.diameter_mm == 12.5
    assert reading.history.get().descriptors == HIGH_RISK


def test_a_missing_descriptor_or_an_unknown_value_is_refused(client_for, descriptor_project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    partial = {k: v for k, v in HIGH_RISK.items() if k != "margins"}
    response = save(alice, image_id, **partial)
    assert response.status_code == 400 and "margins" in response.json()["error"]
    assert save(alice, image_id, **{**HIGH_RISK, "shape": "round"}).status_code == 400
    assert save(alice, image_id, **HIGH_RISK, diameter_mm="-3").status_code == 400
    assert not Reading.objects.filter(done=True).exists()


def test_no_nodule_is_category_1_without_descriptors(client_for, descriptor_project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    assert save(alice, image_id, nodule=False).status_code == 200
    reading = Reading.objects.get(image_id=image_id, reader__username="alice")
    assert reading.label == "1" and reading.descriptors == {}


def test_an_override_needs_a_reason_and_keeps_the_rules_category(client_for, descriptor_project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    assert save(alice, image_id, override="4", **LOW_RISK).status_code == 400
    response = save(alice, image_id, override="4", override_reason="vascular pattern",
                    **LOW_RISK)
    assert response.status_code == 200
    reading = Reading.objects.get(image_id=image_id, reader__username="alice")
    assert (reading.label, reading.rule_label, reading.override_reason) == \
        ("4", "3", "vascular pattern")
    mine = alice.get(f"/labeling/desc/api/{image_id}/mine/").json()["current"]["reading"]
    assert mine["descriptors"] == LOW_RISK and mine["rule_label"] == "3"


def test_a_changed_descriptor_reading_is_versioned_and_audited(client_for, descriptor_project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    save(alice, image_id, **LOW_RISK)
    save(alice, image_id, **HIGH_RISK)
    reading = Reading.objects.get(image_id=image_id, reader__username="alice")
    assert [h.label for h in reading.history.all()] == ["3", "5"]
    change = AuditEvent.objects.get(action="label_change")
    assert change.before["descriptors"]["echogenicity"] == "isoechoic"
    assert change.after["descriptors"]["echogenicity"] == "markedly_hypoechoic"


def _read_all(users, project, readings):
    """readings: per image (in position order), {reader: descriptors}."""
    from eutirads.web.labeling import queue

    images = list(Image.objects.filter(project=project).select_related("project")
                  .order_by("position"))
    for image, by_reader in zip(images, readings):
        for name, descriptors in by_reader.items():
            queue.save_reading(image, users[name], descriptors=descriptors)
    return images


def test_export_writes_descriptor_columns_under_the_policy_and_per_reader(
        users, descriptor_project, tmp_path):
    from eutirads.web.labeling.project_io import export_project

    disagree_on_shape = {**HIGH_RISK, "shape": "taller_than_wide"}
    _read_all(users, descriptor_project, [
        {"alice": HIGH_RISK, "bob": HIGH_RISK},
        {"alice": HIGH_RISK, "bob": disagree_on_shape},
        {"alice": LOW_RISK, "bob": LOW_RISK},
    ])
    export_project("desc", tmp_path / "out", progress=False)
    with open(tmp_path / "out" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == ["5", "5", "3"]  # unanimous categories
    assert rows[0]["echogenicity"] == "markedly_hypoechoic" and rows[0]["shape"] == "oval"
    assert rows[1]["shape"] == "" and rows[1]["margins"] == "smooth"  # readers disagree
    assert rows[1]["reader_bob_shape"] == "taller_than_wide"
    assert rows[1]["reader_alice_shape"] == "oval"
    for name in DESCRIPTORS:
        assert f"reader_alice_{name}" in rows[0]


def test_agreement_per_descriptor_shows_which_descriptor_readers_disagree_on(
        client_for, users, descriptor_project):
    _read_all(users, descriptor_project, [
        {"alice": HIGH_RISK, "bob": {**HIGH_RISK, "shape": "non_oval"}},
        {"alice": LOW_RISK, "bob": {**LOW_RISK, "shape": "taller_than_wide"}},
        {"alice": {**LOW_RISK, "composition": "mixed"}, "bob": {**LOW_RISK, "composition": "mixed"}},
        {"alice": {**LOW_RISK, "shape": "non_oval"}, "bob": LOW_RISK},
    ])
    page = client_for("rita").get("/labeling/desc/agreement/")
    rows = {d["descriptor"]: d for d in page.context["a"]["descriptors"]}
    assert rows["composition"]["pairs"][0]["kappa"] == pytest.approx(1.0)
    assert rows["composition"]["pairs"][0]["n"] == 4
    assert rows["shape"]["pairs"][0]["kappa"] < 0.2
    # Margins never vary: kappa undefined, shown as "—" with its n.
    assert math.isnan(rows["margins"]["fleiss"])
    assert b'data-descriptor="margins"><td>Margins</td><td class="num">\xe2\x80\x94' in page.content


def test_the_nodule_box_from_the_manifest_is_served_as_an_overlay(client_for, descriptor_project):
    alice = client_for("alice")
    data = next_image(alice)
    first = data["current"]
    assert first["position"] == 1 and first["overlay"].endswith("/overlay/")
    response = alice.get(first["overlay"])
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    from io import BytesIO

    import numpy as np
    from PIL import Image as PILImage

    rgba = np.asarray(PILImage.open(BytesIO(response.content)))
    assert rgba.shape == (48, 64, 4)
    assert rgba[8, 20, 3] > 0 and rgba[20, 25, 3] == 0  # box edge drawn, inside clear
    assert data["prefetch"]["overlay"] is None  # image 2 has no box
    assert client_for("bob").get(first["overlay"]).status_code == 404  # not bob's image


def test_the_nodule_mask_from_the_manifest_is_drawn_as_an_outline(client_for, tmp_path):
    import numpy as np
    from io import BytesIO
    from PIL import Image as PILImage

    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.data.masks import save_mask
    from eutirads.web.labeling.project_io import import_project
    from tests.web.conftest import write_dataset

    root = write_dataset(tmp_path / "m", 1)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:44] = True
    save_mask(mask, root / "masks" / "m0.png")
    rows = read_manifest(root)
    rows[0]["mask"] = "masks/m0.png"
    write_manifest(root, rows)
    import_project(root, "masked", readers=1, progress=False)
    alice = client_for("alice")
    current = next_image(alice, "masked")["current"]
    rgba = np.asarray(PILImage.open(BytesIO(alice.get(current["overlay"]).content)))
    assert rgba[10, 30, 3] > 0 and rgba[20, 30, 3] == 0 and rgba[0, 0, 3] == 0


# ---- blinding and adjudication -------------------------------------------------------------
def test_a_reviewer_cannot_open_an_image_still_open_for_reading(client_for, users, project):
    from eutirads.web.labeling import queue

    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["alice"], label="3")
    rita = client_for("rita")
    assert rita.get(f"/labeling/study/adjudication/{image.pk}/").status_code == 403
    assert rita.post(f"/labeling/study/adjudication/{image.pk}/", {"label": "3"}).status_code == 403
    image.refresh_from_db()
    assert image.consensus_label == ""


def test_a_reviewer_cannot_adjudicate_an_image_they_read_unless_the_project_allows(
        client_for, users, project):
    from eutirads.web.labeling import queue

    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["rita"], label="3")
    queue.save_reading(image, users["alice"], label="4")
    rita = client_for("rita")
    assert rita.get(f"/labeling/study/adjudication/{image.pk}/").status_code == 403
    listing = rita.get("/labeling/study/adjudication/")
    assert listing.context["open"] == [] and listing.context["not_yours"] == 1
    project.self_adjudication = True
    project.save()
    assert rita.get(f"/labeling/study/adjudication/{image.pk}/").status_code == 200


def test_a_flagged_image_may_be_adjudicated_before_its_n_readings(client_for, users, project):
    from eutirads.web.labeling import queue

    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["alice"], flagged=True, reason="no thyroid in view")
    rita = client_for("rita")
    assert rita.post(f"/labeling/study/adjudication/{image.pk}/",
                     {"label": "excluded"}).status_code == 302
    image.refresh_from_db()
    assert image.consensus_label == "excluded"
    # Rita has now seen alice's verdict: the image never comes to her in reading mode.
    served = next_image_ids(client_for("rita"), "study")
    assert image.pk not in served


def next_image_ids(client, project):
    data = post_json(client, f"/labeling/{project}/api/next/").json()
    return {item["id"] for item in (data["current"], data["prefetch"]) if item}


def test_unanimous_images_get_their_consensus_automatically(users, project):
    from eutirads.web.labeling import queue

    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["alice"], label="3")
    image.refresh_from_db()
    assert image.consensus_label == ""  # one reading of two
    queue.save_reading(image, users["bob"], label="3")
    image.refresh_from_db()
    assert (image.consensus_label, image.consensus_auto) == ("3", True)
    queue.save_reading(image, users["bob"], label="4")  # now they disagree
    image.refresh_from_db()
    assert image.consensus_label == ""


def test_a_label_changed_after_adjudication_sends_the_image_back_to_the_queue(
        client_for, users, project):
    from eutirads.web.labeling import queue, report

    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["alice"], label="3")
    queue.save_reading(image, users["bob"], label="4")
    queue.set_consensus(image, "4", users["rita"])
    assert report.disagreements(project) == []
    queue.save_reading(image, users["alice"], label="5")
    image.refresh_from_db()
    assert image.consensus_label == ""
    assert [item["image"].pk for item in report.disagreements(project)] == [image.pk]


def test_reading_mode_never_shows_a_reader_an_image_they_labelled(client_for, users, project):
    from eutirads.web.labeling import queue

    images = list(Image.objects.select_related("project").order_by("position"))
    for image in images[:3]:
        queue.save_reading(image, users["alice"], label="2")
    assert next_image_ids(client_for("alice"), "study") == {images[3].pk}


# ---- security details ------------------------------------------------------------------------
def test_a_403_is_logged_as_one_line_without_a_traceback(client_for, project, caplog):
    with caplog.at_level("WARNING", logger="django.request"):
        assert client_for("alice").get("/labeling/study/agreement/").status_code == 403
    from eutirads.web.core.errors import NoTracebackFor4xx

    records = [r for r in caplog.records if r.name == "django.request"]
    assert records and all(NoTracebackFor4xx().filter(r) for r in records)
    assert all(r.exc_info is None for r in records)


def test_the_lockout_page_says_for_how_long(client, users, settings):
    for _ in range(5):
        client.post("/login/", {"username": "bob", "password": "wrong"})
    locked = client.post("/login/", {"username": "bob", "password": "wrong"})
    assert locked.status_code == 429
    assert b"locked for 15 minutes" in locked.content


def test_users_change_their_own_password(client_for, users):
    alice = client_for("alice")
    assert alice.get("/password/").status_code == 200
    response = alice.post("/password/", {"old_password": "correct-horse-battery-staple",
                                         "new_password1": "a-new-long-passphrase-42",
                                         "new_password2": "a-new-long-passphrase-42"})
    assert response.status_code == 302
    users["alice"].refresh_from_db()
    assert users["alice"].check_password("a-new-long-passphrase-42")
    assert AuditEvent.objects.filter(action="password_change", username="alice").exists()


# ---- Spanish ---------------------------------------------------------------------------------
def test_the_browsers_language_picks_spanish_and_the_urls_do_not_move(client_for, descriptor_project):
    alice = client_for("alice")
    page = alice.get("/labeling/desc/read/", HTTP_ACCEPT_LANGUAGE="es-CO,es;q=0.9")
    text = page.content.decode()
    assert page.status_code == 200 and '<html lang="es-co">' in text
    assert "Guardar y siguiente" in text and "marcadamente hipoecoico" in text
    assert 'data-value="markedly_hypoechoic"' in text  # values stay the vocabulary's names
    english = alice.get("/labeling/desc/read/", HTTP_ACCEPT_LANGUAGE="en")
    assert "Save and next" in english.content.decode()


def test_the_language_switch_is_kept_per_user_across_logins(client, users):
    client.post("/login/", {"username": "alice", "password": "correct-horse-battery-staple"})
    response = client.post("/language/", {"language": "es-co"}, HTTP_REFERER="/labeling/")
    assert response.status_code == 302 and response.url == "/labeling/"
    assert "Proyectos de etiquetado" in client.get("/labeling/").content.decode()
    client.post("/logout/")
    client.cookies.clear()
    client.post("/login/", {"username": "alice", "password": "correct-horse-battery-staple"})
    page = client.get("/labeling/", HTTP_ACCEPT_LANGUAGE="en")
    assert "Proyectos de etiquetado" in page.content.decode()


def test_dates_and_numbers_follow_the_language(client_for, users, project):
    from django.utils import timezone

    from eutirads.web.labeling import queue

    images = list(Image.objects.select_related("project").order_by("position"))
    for image, (a, b) in zip(images, [("3", "3"), ("4", "5"), ("2", "2"), ("5", "4")]):
        queue.save_reading(image, users["alice"], label=a)
        queue.save_reading(image, users["bob"], label=b)
    saved = timezone.localtime(Reading.objects.filter(reader=users["alice"]).first().saved_at)
    alice = client_for("alice")
    spanish = alice.get("/labeling/study/mine/", HTTP_ACCEPT_LANGUAGE="es-CO").content.decode()
    english = alice.get("/labeling/study/mine/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"{saved:%d/%m/%Y}" in spanish and f"{saved:%m/%d/%Y}" in english
    rita = client_for("rita")
    kappa = rita.get("/labeling/study/agreement/", HTTP_ACCEPT_LANGUAGE="es-CO").content.decode()
    assert re.search(r'id="fleiss">0,\d\d \(', kappa)  # the decimal comma, Landis-Koch in Spanish
    kappa = rita.get("/labeling/study/agreement/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert re.search(r'id="fleiss">0\.\d\d \(', kappa)


def test_javascript_strings_and_errors_are_translated(client_for, descriptor_project):
    alice = client_for("alice")
    catalog = alice.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="es")
    assert "Guardada." in catalog.content.decode()
    image_id = next_image(alice)["current"]["id"]
    response = post_json(alice, f"/labeling/desc/api/{image_id}/save/", {"nodule": True})
    assert response.status_code == 400
    response = alice.post(f"/labeling/desc/api/{image_id}/save/", data="{}",
                          content_type="application/json", HTTP_ACCEPT_LANGUAGE="es")
    assert "defina primero todos los descriptores" in response.json()["error"]


def test_the_committed_mo_files_match_their_po_sources(tmp_path):
    """The compiled catalogues are committed (a fresh install needs no gettext); this fails
    when a .po was edited without recompiling."""
    import gettext
    import shutil
    import subprocess
    from pathlib import Path

    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("msgfmt is absent (install Debian's gettext package)")
    import eutirads.web

    sources = sorted(Path(eutirads.web.__file__).parent.glob("*/locale/*/LC_MESSAGES/*.po"))
    assert len(sources) >= 3
    for po in sources:
        fresh = tmp_path / (po.parent.parent.parent.parent.name + po.stem + ".mo")
        subprocess.run([msgfmt, "--check", "-o", str(fresh), str(po)], check=True)
        with open(fresh, "rb") as a, open(po.with_suffix(".mo"), "rb") as b:
            assert gettext.GNUTranslations(a)._catalog == gettext.GNUTranslations(b)._catalog, po


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_every_string_of_the_templates_code_and_scripts_has_a_spanish_translation(
        tmp_path, domain):
    """Django's makemessages, run over a copy of the web app without its catalogues, finds
    every string marked for translation (templates, Python, the pages' scripts); each must
    have a Spanish translation in one of the committed catalogues (Django merges the apps'
    catalogues at run time)."""
    import ast
    import gettext
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("xgettext") is None or shutil.which("msgattrib") is None:
        pytest.skip("xgettext is absent (install Debian's gettext package)")
    import eutirads.web

    web = Path(eutirads.web.__file__).parent
    copy = tmp_path / "web"
    shutil.copytree(web, copy, ignore=shutil.ignore_patterns("locale", "__pycache__"))
    (copy / "locale").mkdir()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "eutirads.web.settings"}
    subprocess.run([sys.executable, "-m", "django", "makemessages", "-l", "es_CO", "-d", domain,
                    "--no-location", "--ignore", "migrations/*"], cwd=copy, env=env, check=True,
                   capture_output=True)
    extracted = subprocess.run(["msgattrib", "--no-wrap", str(copy / "locale/es_CO/LC_MESSAGES"
                                                             / f"{domain}.po")],
                               capture_output=True, text=True, check=True).stdout
    # A string with a context (pgettext) is catalogued as "context\x04string".
    wanted = {(ast.literal_eval(f'"{ctx}"') + "\x04" if ctx else "") + ast.literal_eval(f'"{m}"')
              for ctx, m in re.findall(r'^(?:msgctxt "(.*)"\n)?msgid "(.+)"$', extracted, re.M)}
    assert len(wanted) >= (100 if domain == "django" else 20)
    translated = set()
    for mo in web.glob(f"*/locale/es_CO/LC_MESSAGES/{domain}.mo"):
        with open(mo, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
        translated |= {key[0] if isinstance(key, tuple) else key
                       for key, value in catalog.items() if value}
    assert sorted(wanted - translated) == []


def test_changes_made_in_the_django_admin_are_audited(client_for, project):
    adam = client_for("adam")
    url = f"/admin/labeling/project/{project.pk}/change/"
    assert adam.get(url).status_code == 200
    response = adam.post(url, {"name": "study", "readers_required": "3",
                               "reading_mode": "category", "queue_order": "manifest"})
    assert response.status_code == 302, response.content[:2000]
    project.refresh_from_db()
    assert project.readers_required == 3
    event = AuditEvent.objects.get(action="admin_change")
    assert event.username == "adam" and "study" in event.target
    assert "Readers required" in event.after["change"] or "readers" in event.after["change"].lower()


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_every_fna_advice_sentence_has_a_spanish_translation(number):
    from django.utils import translation

    from eutirads.categories import fna_advice
    from eutirads.web.core.vocabulary import advice

    for diameter in (None, 0.5, 8, 10, 12.5, 15, 20, 25.0, 40):
        english = fna_advice(number, diameter)
        with translation.override("en"):
            assert advice(number, diameter) == english
        with translation.override("es-co"):
            spanish = advice(number, diameter)
        assert spanish != english and "PAAF" in spanish, (number, diameter, spanish)
        if diameter == 12.5 and number >= 3:
            assert "12,5" in spanish  # numbers in the language's own form


def test_kept_manifest_labels_bring_their_descriptors_into_a_descriptor_project(db, tmp_path):
    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.web.labeling.project_io import import_project
    from tests.web.conftest import write_dataset

    root = write_dataset(tmp_path / "k", 3, labels=["5", "4", "1"])
    rows = read_manifest(root)
    rows[0].update(HIGH_RISK)
    rows[1].update(LOW_RISK)  # the rule says 3; the manifest says 4
    write_manifest(root, rows)
    import_project(root, "kept", readers=2, progress=False, keep_labels_as="thesis")
    readings = list(Reading.objects.filter(reader__username="thesis").order_by("image__position"))
    assert [(r.label, r.rule_label) for r in readings] == [("5", "5"), ("4", "3"), ("1", "1")]
    assert readings[0].descriptors == HIGH_RISK and readings[0].override_reason == ""
    assert readings[1].override_reason == "label kept from the manifest"
    assert readings[2].descriptors == {}


def test_my_readings_lists_only_the_readers_own_saved_readings(client_for, users, project):
    from eutirads.web.labeling import queue

    images = list(Image.objects.select_related("project").order_by("position"))
    queue.save_reading(images[0], users["alice"], label="3")
    queue.save_reading(images[1], users["bob"], label="4", comment="bob's secret")
    page = client_for("alice").get("/labeling/study/mine/")
    assert page.status_code == 200
    assert [r.image_id for r in page.context["readings"]] == [images[0].pk]
    assert f"?image={images[0].pk}".encode() in page.content and b"secret" not in page.content
    assert client_for("adam").get("/labeling/study/mine/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_projects_made_before_descriptor_reading_keep_reading_by_category():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    old = [("labeling", "0001_initial")]
    latest = executor.loader.graph.leaf_nodes("labeling")
    try:
        executor.migrate(old)
        apps = executor.loader.project_state(old).apps
        apps.get_model("labeling", "Project").objects.create(name="old", dataset_root="/x")
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        new_apps = executor.loader.project_state(latest).apps
        project = new_apps.get_model("labeling", "Project").objects.get(name="old")
        assert project.reading_mode == "category"
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
