"""Fixtures shared by the diagnosis and API tests: a tiny real bundle (built once per session
through the real export path), users with roles, and a registered active model."""

from __future__ import annotations

from pathlib import Path

import pytest

CLASSES = ("1", "2", "3", "4", "5")
PASSWORD = "a-long-test-password-42"


def build_tiny_bundle(out: Path, *, test_metrics: dict | None = None) -> Path:
    """A real bundle: seed-cnn at 48x64 input, random weights, exported to ONNX."""
    torch = pytest.importorskip("torch", reason="building a bundle needs torch (train extra)")
    from eutirads.export.exporter import export_model
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=len(CLASSES), weights="none",
                         filters=(8, 16), dense=16).eval()
    spec = PreprocessSpec(input_size=(48, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                          crop="roi", class_names=CLASSES)
    return export_model(model, spec, out, name="tiny-test-model", model_name="seed-cnn",
                        test_metrics=test_metrics or {"split": "test", "n": 40,
                                                      "summary": {"accuracy": 0.61,
                                                                  "macro_f1": 0.58,
                                                                  "kappa_quadratic": 0.55}})


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def dx_home(settings, tmp_path):
    """EUTIRADS_HOME for the app's files (bundles, kept images) in a temporary folder."""
    settings.EUTIRADS_HOME = tmp_path / "home"
    settings.EUTIRADS_HOME.mkdir()
    return settings.EUTIRADS_HOME


@pytest.fixture
def active_bundle(db, dx_home, tiny_bundle):
    from eutirads.web.diagnosis.services import register_bundle

    return register_bundle(tiny_bundle, activate=True)


def make_user(name: str, role: str | None, *, password: str | None = None):
    """A user with a role; no password unless asked (hashing one costs most of a second,
    and tests log in with force_login or a token)."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(name, password=password)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def radiologist(db):
    return make_user("rad", "radiologist")


@pytest.fixture
def other_radiologist(db):
    return make_user("rad2", "radiologist")


@pytest.fixture
def admin_user(db):
    return make_user("boss", "admin")


@pytest.fixture
def reviewer(db):
    return make_user("rev", "reviewer")


@pytest.fixture
def no_role_user(db):
    return make_user("nobody", None)


@pytest.fixture
def rad_client(client, radiologist):
    client.force_login(radiologist)
    return client


@pytest.fixture
def token(radiologist):
    from eutirads.web.diagnosis.tokens import create_token

    return create_token(radiologist)
