"""Fixtures shared by the diagnosis and API tests: a tiny real bundle (built once per session
through the real export path), conftest's named users under their roles, and a registered
active model."""

from __future__ import annotations

from pathlib import Path

import pytest

CLASSES = ("1", "2", "3", "4", "5")


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


def _darkness_localiser(torch):
    """A real localiser network, hand-set instead of trained (the localiser's training is
    another issue): nodule logits high where the smoothed image is dark. The sample images'
    nodule is a dark oval in mid-grey speckle."""

    class Darkness(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.smooth = torch.nn.AvgPool2d(7, stride=1, padding=3, count_include_pad=False)

        def forward(self, x):
            grey = self.smooth(x.mean(dim=1, keepdim=True))
            return 40.0 * (0.3 - grey)

    return Darkness().eval()


def build_full_bundle(out: Path) -> Path:
    """A real format-2 bundle with every part the diagnosis page shows: a classifier with
    the five descriptor heads (seed-cnn, random weights) and a localiser, through the real
    export path (ONNX, parity checks, bundle.json, model card)."""
    torch = pytest.importorskip("torch", reason="building a bundle needs torch (train extra)")
    from eutirads.categories import DESCRIPTORS
    from eutirads.export.exporter import Component, export_models
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=len(CLASSES), weights="none",
                         filters=(8, 16), dense=16,
                         descriptors={k: len(v) for k, v in DESCRIPTORS.items()}).eval()
    spec = PreprocessSpec(input_size=(48, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                          crop="roi", class_names=CLASSES)
    classifier = Component(model, spec, "seed-cnn", test_metrics={
        "split": "test", "n": 40, "summary": {"accuracy": 0.61, "macro_f1": 0.58}},
        settings={"descriptors": {k: list(v) for k, v in DESCRIPTORS.items()}})
    localiser = Component(_darkness_localiser(torch),
                          PreprocessSpec(input_size=(96, 128), mean=(0.0, 0.0, 0.0),
                                         std=(1.0, 1.0, 1.0), crop="full"),
                          "darkness", settings={"threshold": 0.5, "min_region_px": 40})
    return export_models(out, name="full-test-model", classifier=classifier,
                         localiser=localiser)


@pytest.fixture(scope="session")
def full_bundle(tmp_path_factory) -> Path:
    return build_full_bundle(tmp_path_factory.mktemp("bundle") / "full")


@pytest.fixture
def active_full(db, dx_home, full_bundle):
    """The full bundle (localiser + descriptor heads) registered and active."""
    from eutirads.web.diagnosis import services

    services._PREDICTORS.clear()
    return services.register_bundle(full_bundle, activate=True)


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


# The accounts are conftest.py's named users (one set for every web test), under the role
# names the diagnosis tests read best: alice and bob radiologists, rita a reviewer, adam an
# admin, mallory an account without a role.
@pytest.fixture
def radiologist(users):
    return users["alice"]


@pytest.fixture
def other_radiologist(users):
    return users["bob"]


@pytest.fixture
def admin_user(users):
    return users["adam"]


@pytest.fixture
def reviewer(users):
    return users["rita"]


@pytest.fixture
def no_role_user(users):
    return users["mallory"]


@pytest.fixture
def rad_client(client, radiologist):
    client.force_login(radiologist)
    return client


@pytest.fixture
def token(radiologist):
    from eutirads.web.diagnosis.tokens import create_token

    return create_token(radiologist)


# ---- a model that abstains on its own (its out-of-distribution check), at the service
# boundary: the real predictor runs, and its result says it abstains.

class Abstaining:
    """A real Predictor whose every result abstains with `reason`."""

    def __init__(self, predictor, reason: str) -> None:
        self._predictor, self._reason = predictor, reason

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict(self, image, **kwargs):
        from dataclasses import replace

        return replace(self._predictor.predict(image, **kwargs), abstain=True,
                       abstain_reason=self._reason)


@pytest.fixture
def model_abstains(monkeypatch, active_bundle):
    from eutirads.web.diagnosis import services

    real = services._load_predictor
    monkeypatch.setattr(services, "_load_predictor",
                        lambda folder: Abstaining(real(folder), "out-of-distribution"))
    services._PREDICTORS.clear()
    yield active_bundle
    services._PREDICTORS.clear()
