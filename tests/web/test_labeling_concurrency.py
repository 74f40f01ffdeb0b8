"""Readers working at the same moment, each thread with its own client and database
connection (a transactional test on a file database): no label is lost and no image
gets more than N readings."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from eutirads.web.labeling.models import Image, Reading
from tests.web.conftest import make_user, write_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client, url, data=None):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json")


def _in_threads(target, args_list):
    errors = []

    def wrapped(*args):
        try:
            target(*args)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


def test_six_readers_labelling_at_once_fill_every_image_exactly_to_n(tmp_path):
    from eutirads.web.labeling.project_io import import_project

    import_project(write_dataset(tmp_path / "ds", 9), "race", readers=2, progress=False,
                   mode="category")
    readers = [make_user(f"reader{i}", "radiologist") for i in range(6)]
    saved = Counter()
    lock = threading.Lock()

    def work(user):
        client = _client(user)
        data = _post(client, "/labeling/race/api/next/").json()
        while data["current"]:
            response = _post(client, f"/labeling/race/api/{data['current']['id']}/save/",
                             {"label": "3"})
            assert response.status_code == 200, response.content
            with lock:
                saved[user.username] += 1
            data = response.json()

    _in_threads(work, [(u,) for u in readers])
    assert sum(saved.values()) == 18  # 9 images x 2 readers, every save accounted for
    for image in Image.objects.all():
        assert image.readings.filter(done=True).count() == 2 and image.claims == 2
    for user in readers:  # no lost label: each accepted save is stored
        assert Reading.objects.filter(reader=user, done=True).count() == saved[user.username]


def test_readers_saving_the_same_image_at_the_same_instant_never_exceed_n(tmp_path):
    from eutirads.web.labeling.project_io import import_project

    import_project(write_dataset(tmp_path / "ds", 1), "one", readers=2, progress=False,
                   mode="category")
    image = Image.objects.get()
    readers = [make_user(f"racer{i}", "radiologist") for i in range(6)]
    barrier = threading.Barrier(len(readers))
    statuses = []

    def race(user, label):
        client = _client(user)
        barrier.wait()
        response = _post(client, f"/labeling/one/api/{image.pk}/save/", {"label": label})
        statuses.append(response.status_code)

    _in_threads(race, [(u, str(1 + i % 5)) for i, u in enumerate(readers)])
    assert sorted(statuses) == [200, 200, 409, 409, 409, 409]
    image.refresh_from_db()
    assert image.claims == 2 and image.readings.filter(done=True).count() == 2
