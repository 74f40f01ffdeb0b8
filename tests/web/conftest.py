"""Web-app test set-up: Django settings, a throw-away data folder, the named accounts.

alice and bob are radiologists, rita a reviewer, adam an admin, and mallory has an account
with no role: she must get nothing anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Before Django reads its settings: a data folder of our own, never the user's ~/.eutirads.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eutirads.web.settings")
os.environ["EUTIRADS_HOME"] = tempfile.mkdtemp(prefix="eutirads-web-tests-")
for _name in ("DATABASE_URL", "EUTIRADS_PRODUCTION", "EUTIRADS_DEBUG", "EUTIRADS_SECRET_KEY"):
    os.environ.pop(_name, None)
# The PostgreSQL pass of scripts/test.sh (tests/postgres_server.py) runs this suite against
# a throw-away server; otherwise the tests use a SQLite file.
if os.environ.get("EUTIRADS_TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["EUTIRADS_TEST_DATABASE_URL"]

import django  # noqa: E402  (after the environment above)

django.setup()

from django.conf import settings as _settings  # noqa: E402

# Fast hashing for test accounts only (the real default, PBKDF2, takes ~0.5 s per login).
_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

PASSWORD = "correct-horse-battery-staple"
ACCOUNTS = {"alice": "radiologist", "bob": "radiologist", "rita": "reviewer", "adam": "admin",
            "mallory": None}


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """A file database instead of SQLite's in-memory one, so threads (concurrency tests)
    and the live server each get a real connection of their own."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db.setdefault("TEST", {})["NAME"] = str(Path(os.environ["EUTIRADS_HOME"]) / "test.sqlite3")


def make_user(name: str, role: str | None):
    from django.contrib.auth import get_user_model

    from eutirads.web.core.accounts import add_user

    if role is None:
        return get_user_model().objects.create_user(name, password=PASSWORD)
    add_user(name, role=role, password=PASSWORD)
    return get_user_model().objects.get(username=name)


@pytest.fixture
def users(db):
    return {name: make_user(name, role) for name, role in ACCOUNTS.items()}


@pytest.fixture
def client_for(users):
    """client_for("alice") -> a test client logged in as alice."""
    from django.test import Client

    def make(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return make


def write_dataset(root: Path, n: int, *, labels: list[str] | None = None,
                  splits: list[str] | None = None) -> Path:
    """A tiny dataset (n small PNGs + manifest) made on the fly; no patient data."""
    from eutirads.data.manifest import write_manifest
    from eutirads.imageio import save_png

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = f"images/img{i:04d}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        save_png((rng.random((48, 64, 3)) * 255).astype(np.uint8), root / path)
        rows.append({"path": path, "label": labels[i] if labels else "",
                     "patient_id": f"anon{i:04d}",
                     "split": splits[i] if splits else ("train", "val", "test")[i % 3],
                     "source": "test"})
    write_manifest(root, rows)
    return root


@pytest.fixture
def project(db, tmp_path):
    """Project 'study' with 4 images, 2 readers each, read by category, queued in the
    manifest's order (tests name the image a reader gets by its position)."""
    from eutirads.web.labeling.models import Project
    from eutirads.web.labeling.project_io import import_project

    import_project(write_dataset(tmp_path / "ds", 4), "study", readers=2, progress=False,
                   mode="category", queue_order="manifest")
    return Project.objects.get(name="study")


@pytest.fixture
def descriptor_project(db, tmp_path):
    """Project 'desc' with 4 images, 2 readers each, read by descriptors, queued in the
    manifest's order; image 1 has a box in the manifest."""
    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.web.labeling.models import Project
    from eutirads.web.labeling.project_io import import_project

    root = write_dataset(tmp_path / "dsd", 4)
    rows = read_manifest(root)
    rows[0].update({"x0": "10", "y0": "8", "x1": "40", "y1": "30"})
    write_manifest(root, rows)
    import_project(root, "desc", readers=2, progress=False, queue_order="manifest")
    return Project.objects.get(name="desc")
