"""The outline's category (`models.outline_pooling`, `training.outline`,
`inference.outline`): features pooled inside the localiser's outline, fitted into a
classifier run, exported as the bundle's "outline" component and served by the Predictor
as the category whenever a nodule is found; and `eutirads train`'s default adding it on a
dataset with masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="the outline's category is a torch module")

from eutirads.models.outline_pooling import pool_in_outline  # noqa: E402
from model_helpers import QUICK_LOCALISER  # noqa: E402

CLASSES = tuple("12345")


def test_pooling_averages_inside_the_outline_and_against_the_ring_around_it():
    h, w = 32, 48
    inside = np.zeros((1, 1, h * 4, w * 4), np.float32)
    inside[..., 40:88, 60:140] = 1.0
    prob = torch.from_numpy(inside)
    small = torch.nn.functional.adaptive_avg_pool2d(prob, (h, w))
    # stage 0 is skipped; stage 1: 2 channels, one bright inside the nodule only, one flat
    flat = torch.full((1, 1, h, w), 3.0)
    stages = [torch.zeros(1, 5, h * 2, w * 2), torch.cat([small * 2.0, flat], 1)]
    out = pool_in_outline(stages, prob)[0].numpy()
    assert out.shape == (4,)
    inside_mean = (small * small * 2).sum() / (small.sum() + 1e-3)
    assert out[0] == pytest.approx(float(inside_mean), rel=1e-5)   # the bright channel inside
    assert out[1] == pytest.approx(3.0, rel=1e-3)                  # the flat one inside
    assert out[2] > 1.5                                            # brighter than its ring
    assert abs(out[3]) < 1e-2                                      # flat: no contrast


def test_the_localiser_recipe_is_configs_localiser_yaml():
    from eutirads.training.outline import LOCALISER_RECIPE

    assert LOCALISER_RECIPE == yaml.safe_load(open("configs/localiser.yaml"))


def test_the_default_recipe_reads_the_outline_only_where_it_can(tmp_path):
    from eutirads.data.manifest import write_manifest
    from eutirads.training.config import resolve_config
    from eutirads.training.outline import MIN_MASKED, outline_skip_reason

    rows = [{"path": f"images/{i}.png", "label": "3", "split": "train",
             "mask": f"masks/{i}.png" if i < MIN_MASKED else ""} for i in range(MIN_MASKED + 5)]
    write_manifest(tmp_path, rows)
    assert outline_skip_reason(resolve_config(None), tmp_path) is None
    assert outline_skip_reason(resolve_config(None, ["outline=off"]), tmp_path) == "outline: off"
    assert "ImageNet" in outline_skip_reason(
        resolve_config(None, ["model=seed-cnn", "weights=none"]), tmp_path)
    write_manifest(tmp_path, rows[MIN_MASKED - 1:])
    assert "1 training image(s) with a nodule mask" in outline_skip_reason(
        resolve_config(None), tmp_path)
    with pytest.raises(Exception, match="outline must be auto or off"):
        resolve_config(None, ["outline=yes"])


def _phantom(root, *, n: int, seed: int, n_val: int):
    """A small phantom dataset with masks: the first `n_val` rows val, the rest train."""
    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.phantom.dataset import generate_dataset

    generate_dataset(root, n=n, seed=seed, width=320, height=200, progress=False, workers=1)
    rows = read_manifest(root)
    for i, row in enumerate(rows):
        row["split"] = "val" if i < n_val else "train"
    write_manifest(root, rows)
    return root


@pytest.fixture(scope="module")
def outline_run(tmp_path_factory):
    """A phantom with masks, a quick frozen localiser, a tiny classifier checkpoint and
    the outline's category fitted for it, exported together."""
    from eutirads.export.exporter import export_bundle
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec
    from eutirads.training.checkpoint import save_checkpoint
    from eutirads.training.config import resolve_config
    from eutirads.training.outline import fit_outline
    from eutirads.training.run import train

    base = tmp_path_factory.mktemp("outline")
    root = _phantom(base / "ph", n=40, seed=6, n_val=10)
    local = base / "cls" / "localiser"
    train(root, resolve_config(None, QUICK_LOCALISER), local, progress=False)
    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16)
    spec = PreprocessSpec(input_size=(48, 48), crop="full", class_names=CLASSES)
    cls = base / "cls"
    save_checkpoint(cls / "checkpoints" / "best.pt", model, model_name="seed-cnn",
                    model_kwargs={"filters": [8, 16], "dense": 16}, class_names=list(CLASSES),
                    preprocess=spec.to_dict(), config={}, data_summary={}, epoch=1,
                    val_metrics={})
    summary = fit_outline(root, cls, local)
    # no --localiser: export finds the run's own RUN/localiser
    bundle = export_bundle(cls, base / "bundle")
    return root, cls, summary, bundle


def _pixels(root, row):
    from PIL import Image

    return np.asarray(Image.open(root / row["path"]).convert("RGB"))


def test_fit_outline_writes_the_head_and_its_val_calibration(outline_run):
    _, run, summary, _ = outline_run
    assert summary["class_names"] == list(CLASSES) and summary["train_images"] == 30
    assert summary["encoder"] == "tf_efficientnet_lite0" and summary["grid"] == [96, 128]
    assert summary["temperature"] > 0 and 0 <= summary["low_confidence"] <= 1
    assert summary["val_images"] == 10 and 0 <= summary["val_metrics"]["macro_f1"] <= 1
    head = np.load(run / "outline" / "head.npz")
    assert head["weight"].shape == (5, head["mean"].shape[0]) and head["bias"].shape == (5,)
    assert json.loads((run / "outline" / "summary.json").read_text()) == summary


def test_the_bundle_answers_with_the_outline_category_where_a_nodule_is_found(outline_run):
    from eutirads.data.manifest import read_manifest
    from eutirads.inference import Predictor
    from eutirads.inference.bundle import read_metadata

    root, _, summary, bundle = outline_run
    meta = read_metadata(bundle)
    assert sorted(meta["components"]) == ["classifier", "localiser", "outline"]
    assert meta["components"]["outline"]["parity"]["max_abs_logits"] < 1e-3
    predictor = Predictor(bundle)
    labels, found = set(), 0
    for row in read_manifest(root)[:10]:
        result = predictor.predict(_pixels(root, row)).to_dict()
        if result["nodule"] is None:
            assert "outline" not in (result.get("category_sources") or {})
            continue
        found += 1
        assert result["category_source"] == "outline"
        assert set(result["category_sources"]) == {"head", "outline"}
        outline = result["category_sources"]["outline"]
        assert outline["probabilities"] == pytest.approx(result["probabilities"])
        assert result["label"] == outline["label"] in CLASSES
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
        labels.add(result["label"])
    assert found >= 5


def test_served_probabilities_equal_the_fitted_head_on_the_training_features(outline_run):
    """Train and serve read the same inputs: the fitted head on `outline_features` (torch,
    training's path) equals the bundle's ONNX answer (the Predictor's path)."""
    from eutirads.data.manifest import read_manifest
    from eutirads.inference import Predictor
    from eutirads.inference.abstention import apply_temperature
    from eutirads.preprocess import crop_box
    from eutirads.training.measured import localiser_maps
    from eutirads.training.outline import outline_features

    root, run, summary, bundle = outline_run
    predictor = Predictor(bundle)
    maps, _, _ = localiser_maps(run / "localiser")
    head = np.load(run / "outline" / "head.npz")
    rows = read_manifest(root)[10:14]
    images = [_pixels(root, r) for r in rows]
    features = outline_features(images, maps(images), summary["encoder"], predictor.localiser.spec)
    logits = ((features - head["mean"]) / head["std"]) @ head["weight"].T + head["bias"]
    for pixels, z in zip(images, logits):
        want = apply_temperature(np.exp(z - z.max()) / np.exp(z - z.max()).sum(),
                                 summary["temperature"])
        found = predictor.localiser.find(pixels)
        got = predictor.outline.probabilities(pixels, found.probability,
                                              crop_box(pixels, predictor.localiser.spec),
                                              predictor.localiser.spec)
        assert got == pytest.approx(want, abs=2e-3)


def test_without_a_found_nodule_the_head_answers(outline_run, monkeypatch):
    import dataclasses

    from eutirads.data.manifest import read_manifest
    from eutirads.inference import Predictor

    root, _, _, bundle = outline_run
    predictor = Predictor(bundle)
    find = predictor.localiser.find
    monkeypatch.setattr(predictor.localiser, "find", lambda *a, **k: dataclasses.replace(
        find(*a, **k), nodule=None, reason="no-nodule-found"))
    result = predictor.predict(_pixels(root, read_manifest(root)[0])).to_dict()
    assert result["nodule"] is None and "category_sources" not in result
    assert result["label"] in CLASSES


def test_an_outline_component_without_the_classifier_is_a_one_line_error(outline_run, tmp_path):
    import shutil

    from eutirads.errors import ModelError
    from eutirads.inference import Predictor

    _, _, _, bundle = outline_run
    broken = tmp_path / "b"
    shutil.copytree(bundle, broken)
    meta = json.loads((broken / "bundle.json").read_text())
    del meta["components"]["classifier"]
    (broken / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="outline's category needs the localiser and the "
                                         "classifier") as caught:
        Predictor(broken)
    assert "\n" not in str(caught.value)


def test_export_web_describes_the_outline_component(outline_run, tmp_path):
    from eutirads.export.web import export_web

    _, _, summary, bundle = outline_run
    site = export_web(bundle, tmp_path / "site")
    assert (site / "model/outline.onnx").read_bytes() == (bundle / "outline.onnx").read_bytes()
    description = json.loads((site / "site.json").read_text())
    assert description["outline"]["class_names"] == list(CLASSES)
    assert description["outline"]["default"] is True
    assert description["outline"]["temperature"] == pytest.approx(summary["temperature"])
    assert "outline" not in description["components"]


def test_train_with_the_default_recipe_adds_the_localiser_and_the_outline(tmp_path, capsys):
    """`eutirads train` on a phantom with masks, ImageNet Lite0 (a few epochs): RUN/localiser
    and RUN/outline, which `eutirads export RUN` bundles; outline=off skips them."""
    from eutirads.cli import main
    from eutirads.inference.bundle import read_metadata

    root = _phantom(tmp_path / "ph", n=30, seed=8, n_val=6)
    quick = ["epochs=3", "num_threads=2", "input_size=[96, 96]"]
    code = main(["train", str(root), "--out", str(tmp_path / "run"), "--quiet", *quick])
    out = capsys.readouterr().out
    assert code == 0 and "outline category: 24 training images" in out
    assert (tmp_path / "run" / "localiser" / "checkpoints" / "best.pt").is_file()
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b")]) == 0
    assert sorted(read_metadata(tmp_path / "b")["components"]) == [
        "classifier", "localiser", "outline"]
    code = main(["train", str(root), "--out", str(tmp_path / "off"), "--quiet", "outline=off",
                 *quick])
    assert code == 0 and not (tmp_path / "off" / "localiser").exists()
