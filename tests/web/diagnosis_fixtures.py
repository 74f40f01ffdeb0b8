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


# ---- stand-ins for the bundle parts other issues add (localiser, descriptor heads) --------
# Used at the service boundary only: the real classifier runs, and its result gains the
# Prediction contract's optional fields (COMMON.md #2) computed here from the pixels.

FAKE_DESCRIPTORS = {
    "composition": {"value": "solid", "probabilities": {"solid": 0.8, "mixed": 0.2}},
    "echogenicity": {"value": "markedly_hypoechoic",
                     "probabilities": {"markedly_hypoechoic": 0.7, "mildly_hypoechoic": 0.3}},
    "shape": {"value": "oval", "probabilities": {"oval": 0.9, "non_oval": 0.1}},
    "margins": {"value": "smooth", "probabilities": {"smooth": 0.85, "irregular": 0.15}},
    "echogenic_foci": {"value": "none", "probabilities": {"none": 0.95,
                                                          "microcalcifications": 0.05}},
}


# Masks the stand-in localiser returns for images of a known shape (a phantom's true mask),
# instead of finding the sample images' dark oval.
KNOWN_MASKS: dict[tuple[int, int], object] = {}


def dark_blob_nodule(pixels, mm_per_pixel=None) -> dict | None:
    """The dark oval of the sample images (or a known mask) as a localiser reports it."""
    import numpy as np
    from scipy import ndimage

    known = KNOWN_MASKS.get(pixels.shape[:2])
    if known is not None:
        mask = np.asarray(known) > 0
    else:
        gray = pixels[..., :3].mean(axis=2)
        mask = ndimage.uniform_filter(gray, 5)
        mask = (mask > 8) & (mask < 75)
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = ndimage.sum_labels(mask, labels, range(1, count + 1))
    region = labels == (int(np.argmax(sizes)) + 1)
    ys, xs = np.nonzero(region)
    cy, cx = ys.mean(), xs.mean()
    edge = region & ~ndimage.binary_erosion(region)
    ey, ex = np.nonzero(edge)
    order = np.argsort(np.arctan2(ey - cy, ex - cx))
    contour = [[int(x), int(y)] for x, y in zip(ex[order], ey[order])]
    long_px = float(max(xs.max() - xs.min(), ys.max() - ys.min()) + 1)
    short_px = float(min(xs.max() - xs.min(), ys.max() - ys.min()) + 1)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return {"box": box, "score": 0.93, "regions": [{
        "box": box, "area_px": int(region.sum()), "long_axis_px": long_px,
        "short_axis_px": short_px,
        "long_axis_mm": round(long_px * mm_per_pixel, 1) if mm_per_pixel else None,
        "contour": contour}]}


class WithParts:
    """A real Predictor whose results carry a localiser's nodule and descriptor heads."""

    def __init__(self, predictor, *, abstain_reason: str | None = None) -> None:
        self._predictor = predictor
        self._abstain = abstain_reason

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict(self, image, *, box=None, heatmap=True, name=None, area=None):
        from dataclasses import asdict
        from types import SimpleNamespace

        nodule = dark_blob_nodule(image)
        used = box or (tuple(nodule["box"]) if nodule else None)
        result = self._predictor.predict(image, box=used, heatmap=heatmap, name=name, area=area)
        fields = asdict(result)
        fields["heatmap"] = result.heatmap
        return SimpleNamespace(
            **fields, nodule=nodule, nodule_reason=None if nodule else "nothing found",
            box_source="given" if box else ("localiser" if nodule else "none"),
            descriptors=FAKE_DESCRIPTORS, rule_path="solid, markedly hypoechoic -> EU-TIRADS 5",
            abstain=bool(self._abstain), abstain_reason=self._abstain)


@pytest.fixture
def with_parts(monkeypatch, active_bundle):
    """The active bundle's predictor, with a localiser and descriptor heads stood in."""
    from eutirads.web.diagnosis import services

    real = services._load_predictor
    monkeypatch.setattr(services, "_load_predictor", lambda folder: WithParts(real(folder)))
    services._PREDICTORS.clear()
    yield active_bundle
    services._PREDICTORS.clear()


@pytest.fixture
def model_abstains(monkeypatch, active_bundle):
    from eutirads.web.diagnosis import services

    real = services._load_predictor
    monkeypatch.setattr(services, "_load_predictor",
                        lambda folder: WithParts(real(folder),
                                                 abstain_reason="out-of-distribution"))
    services._PREDICTORS.clear()
    yield active_bundle
    services._PREDICTORS.clear()
