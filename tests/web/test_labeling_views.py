"""Every labeling view with the named accounts: who may do what, blind reading, N readers,
history and audit."""

from __future__ import annotations

import json

import pytest

from eutirads.web.core.models import AuditEvent
from eutirads.web.labeling.models import Image, LabelHistory, Reading, Skip


def post_json(client, url, data=None):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json")


def next_image(client, project="study"):
    response = post_json(client, f"/labeling/{project}/api/next/")
    assert response.status_code == 200, response.content
    return response.json()


def save(client, image_id, label="3", project="study", **extra):
    return post_json(client, f"/labeling/{project}/api/{image_id}/save/",
                     {"label": label, **extra})


# ---- pages -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "rita", "adam"])
def test_home_and_project_pages_open_for_every_role(client_for, project, name):
    client = client_for(name)
    assert client.get("/").status_code == 200
    page = client.get("/labeling/")
    assert page.status_code == 200 and b"study" in page.content
    assert client.get("/labeling/study/").status_code == 200


def test_an_unknown_project_is_a_404(client_for, project):
    assert client_for("alice").get("/labeling/nope/").status_code == 404


def test_the_reading_screen_opens_for_readers_only(client_for, project):
    page = client_for("alice").get("/labeling/study/read/")
    assert page.status_code == 200
    assert b"reading.js" in page.content and b"EU-TIRADS reference card" in page.content
    assert client_for("rita").get("/labeling/study/read/").status_code == 200
    assert client_for("adam").get("/labeling/study/read/").status_code == 403
    assert client_for("mallory").get("/labeling/study/read/").status_code == 403


# ---- reading -----------------------------------------------------------------------------
def test_next_claims_an_image_and_a_prefetch_and_shows_progress(client_for, project):
    data = next_image(client_for("alice"))
    next_image(client_for("bob"))  # bob claims the same two: they hold N claims, no reading
    assert Image.objects.filter(claims=2).count() == 2
    assert client_for("alice").get("/labeling/study/").context["complete"] == 0
    assert data["current"]["url"].startswith("/labeling/study/image/")
    assert data["prefetch"]["id"] != data["current"]["id"]
    assert data["progress"] == {"done": 0, "left": 4, "skipped": 0, "total": 4}
    # Asking again returns the same image (the claim is held), not a third one.
    assert next_image(client_for("alice"))["current"]["id"] == data["current"]["id"]
    assert Reading.objects.filter(reader__username="alice", done=False).count() == 2


def test_save_stores_the_label_and_returns_the_prefetched_image_next(client_for, project):
    alice = client_for("alice")
    first = next_image(alice)
    response = save(alice, first["current"]["id"], "4", comment="hypoechoic rim")
    assert response.status_code == 200
    data = response.json()
    assert data["current"]["id"] == first["prefetch"]["id"]
    assert data["progress"]["done"] == 1
    reading = Reading.objects.get(image_id=first["current"]["id"], reader__username="alice")
    assert (reading.done, reading.label, reading.comment) == (True, "4", "hypoechoic rim")
    event = AuditEvent.objects.get(action="label")
    assert event.username == "alice" and event.after["label"] == "4" and event.before is None


def test_a_changed_label_keeps_its_history_and_audits_before_and_after(client_for, project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    save(alice, image_id, "3")
    mine = alice.get(f"/labeling/study/api/{image_id}/mine/").json()
    assert mine["current"]["reading"]["label"] == "3"
    assert save(alice, image_id, "5").status_code == 200
    history = LabelHistory.objects.filter(reading__image_id=image_id).values_list("label", flat=True)
    assert list(history) == ["3", "5"]
    change = AuditEvent.objects.get(action="label_change")
    assert change.before["label"] == "3" and change.after["label"] == "5"


def test_a_bad_label_or_a_flag_without_reason_is_refused(client_for, project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    assert save(alice, image_id, "7").status_code == 400
    assert save(alice, image_id, "", flagged=True).status_code == 400
    bad = alice.post(f"/labeling/study/api/{image_id}/save/", data="{not json",
                     content_type="application/json")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    assert not Reading.objects.filter(done=True).exists()


def test_a_flag_with_a_reason_is_saved_and_audited(client_for, project):
    alice = client_for("alice")
    image_id = next_image(alice)["current"]["id"]
    assert save(alice, image_id, "", flagged=True, reason="no nodule visible, cropped").status_code == 200
    reading = Reading.objects.get(image_id=image_id, reader__username="alice")
    assert reading.flagged and reading.label == "" and "cropped" in reading.flag_reason
    assert AuditEvent.objects.filter(action="flag", username="alice").exists()


def test_a_reader_never_sees_another_readers_label(client_for, project):
    alice, bob = client_for("alice"), client_for("bob")
    image_id = next_image(alice)["current"]["id"]
    save(alice, image_id, "5", comment="secret")
    data = next_image(bob)
    assert data["current"]["id"] == image_id  # images with readings are completed first
    assert data["current"]["reading"] is None
    assert b"secret" not in bob.get(f"/labeling/study/api/{image_id}/mine/").content


def test_an_image_leaves_the_queue_after_its_n_readers(client_for, users, project):
    from tests.web.conftest import make_user

    make_user("carol", "radiologist")
    from django.test import Client

    carol = Client()
    carol.force_login(users["alice"].__class__.objects.get(username="carol"))
    for name in ("alice", "bob"):
        client = client_for(name)
        data = next_image(client)
        while data["current"]:
            data = save(client, data["current"]["id"], "3").json()
    assert next_image(carol)["current"] is None
    assert client_for("alice").get("/labeling/study/").context["complete"] == 4
    assert all(image.claims == 2 for image in Image.objects.all())
    assert Reading.objects.filter(done=True).count() == 8


def test_saving_an_image_that_others_already_completed_is_refused(client_for, users, project):
    from eutirads.web.labeling import queue

    image = Image.objects.first()
    queue.save_reading(image, users["bob"], label="2")
    queue.save_reading(image, users["rita"], label="2")
    response = save(client_for("alice"), image.pk, "4")
    assert response.status_code == 409
    assert image.readings.count() == 2


def test_skip_puts_an_image_aside_until_the_reader_brings_it_back(client_for, project):
    alice = client_for("alice")
    first = next_image(alice)["current"]["id"]
    data = post_json(alice, f"/labeling/study/api/{first}/skip/").json()
    assert data["current"]["id"] != first and data["progress"]["skipped"] == 1
    assert Skip.objects.filter(image_id=first).exists()
    assert Image.objects.get(pk=first).claims == 0  # its slot went back to the queue
    response = alice.post("/labeling/study/unskip/")
    assert response.status_code == 302 and not Skip.objects.exists()


def test_the_image_file_goes_only_to_its_claimant_and_reviewers(client_for, project):
    alice = client_for("alice")
    data = next_image(alice)
    response = alice.get(data["current"]["url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert response["Cache-Control"] == "no-store"  # never in a shared browser's cache
    unclaimed = Image.objects.exclude(pk__in=[data["current"]["id"], data["prefetch"]["id"]]).first()
    assert alice.get(f"/labeling/study/image/{unclaimed.pk}/").status_code == 404
    assert client_for("rita").get(data["current"]["url"]).status_code == 200
    assert client_for("mallory").get(data["current"]["url"]).status_code == 403


def test_the_reading_api_needs_post_and_csrf(users, project):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(users["alice"])
    assert strict.get("/labeling/study/api/next/").status_code == 405
    assert strict.post("/labeling/study/api/next/", data="{}",
                       content_type="application/json").status_code == 403


def test_an_anonymous_api_call_gets_a_json_401(client, project):
    response = client.post("/labeling/study/api/next/", data="{}", content_type="application/json")
    assert response.status_code == 401 and response.json()["error"] == "login required"


# ---- reviewers -----------------------------------------------------------------------------
def _two_readers_disagree(users, project):
    from eutirads.web.labeling import queue

    images = list(Image.objects.order_by("position"))
    for image, (a, b) in zip(images, [("3", "3"), ("4", "5"), ("2", "2"), ("5", "4")]):
        queue.save_reading(image, users["alice"], label=a)
        queue.save_reading(image, users["bob"], label=b)
    return images


def test_the_agreement_page_shows_kappas_confusion_and_distributions(client_for, users, project):
    _two_readers_disagree(users, project)
    page = client_for("rita").get("/labeling/study/agreement/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Fleiss" in text and "Quadratic-weighted" in text and "alice (rows)" in text
    a = page.context["a"]
    assert a["pairs"][0]["n"] == 4 and a["pairs"][0]["agreement"] == 0.5
    assert a["fleiss_n"] == 4
    assert a["distributions"][0]["counts"]["3"] == 1
    assert client_for("alice").get("/labeling/study/agreement/").status_code == 403


def test_a_reviewer_adjudicates_disagreements_and_it_is_audited(client_for, users, project):
    images = _two_readers_disagree(users, project)
    rita = client_for("rita")
    queue_page = rita.get("/labeling/study/adjudication/")
    assert [item["image"].pk for item in queue_page.context["open"]] == [images[1].pk, images[3].pk]
    detail = rita.get(f"/labeling/study/adjudication/{images[1].pk}/")
    assert detail.status_code == 200 and b"alice" in detail.content and b"bob" in detail.content
    response = rita.post(f"/labeling/study/adjudication/{images[1].pk}/", {"label": "5"})
    assert response.status_code == 302 and str(images[3].pk) in response.url
    images[1].refresh_from_db()
    assert images[1].consensus_label == "5" and images[1].consensus_by.username == "rita"
    event = AuditEvent.objects.get(action="adjudicate")
    assert event.before == {"consensus": None} and event.after == {"consensus": "5"}
    assert rita.post(f"/labeling/study/adjudication/{images[3].pk}/", {"label": "9"}).status_code == 302
    images[3].refresh_from_db()
    assert images[3].consensus_label == ""
    assert client_for("alice").get("/labeling/study/adjudication/").status_code == 403
    assert client_for("bob").post(f"/labeling/study/adjudication/{images[3].pk}/",
                                  {"label": "4"}).status_code == 403


# ---- accounts, audit ---------------------------------------------------------------------------
def test_login_is_audited_and_repeated_failures_lock_the_account(client, users):
    response = client.post("/login/", {"username": "alice", "password": "correct-horse-battery-staple"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="login", username="alice").exists()
    client.post("/logout/")
    for _ in range(5):
        client.post("/login/", {"username": "bob", "password": "wrong"})
    locked = client.post("/login/", {"username": "bob", "password": "correct-horse-battery-staple"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    assert AuditEvent.objects.filter(action="login_failed", username="bob").count() >= 5


def test_the_audit_log_is_for_admins_only(client_for, users, project):
    _two_readers_disagree(users, project)
    page = client_for("adam").get("/audit/?action=label")
    assert page.status_code == 200 and b"alice" in page.content
    assert all(e.action == "label" for e in page.context["page"])
    assert client_for("rita").get("/audit/").status_code == 403
    assert client_for("alice").get("/audit/").status_code == 403


def test_admins_reach_the_django_admin_and_others_do_not(client_for, users):
    assert client_for("adam").get("/admin/").status_code == 200
    # Django admin sends non-staff to its login page, which refuses a logged-in non-admin.
    assert client_for("rita").get("/admin/", follow=True).status_code == 403
    assert client_for("mallory").get("/admin/", follow=True).status_code == 403


def test_a_claim_left_unsaved_expires_and_its_slot_returns_to_the_queue(client_for, users, project):
    from datetime import timedelta

    from django.utils import timezone

    from eutirads.web.labeling import queue

    held = next_image(client_for("alice"))["current"]["id"]
    Reading.objects.filter(reader=users["alice"]).update(
        claimed_at=timezone.now() - timedelta(minutes=queue.CLAIM_MINUTES + 1))
    assert queue.release_expired(project) == 2
    assert Image.objects.get(pk=held).claims == 0
    assert not Reading.objects.filter(reader=users["alice"]).exists()
    # Alice's late save still lands, in a slot taken afresh.
    assert save(client_for("alice"), held, "2").status_code == 200
    assert Image.objects.get(pk=held).claims == 1


def test_progress_counts_match_the_readers_queue(client_for, users, project):
    from eutirads.web.labeling import queue

    bob = client_for("bob")
    first = next_image(bob)["current"]["id"]
    post_json(bob, f"/labeling/study/api/{first}/skip/")
    images = list(Image.objects.exclude(pk=first).order_by("position"))
    for reader in ("alice", "rita"):  # one image is now full without bob
        queue.save_reading(images[-1], users[reader], label="3")
    p = queue.progress(project, users["bob"])
    assert (p.done, p.skipped, p.total) == (0, 1, 4)
    assert p.left == 2  # 4 images - 1 skipped - 1 full
