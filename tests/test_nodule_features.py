"""Measured nodule features (`models.nodule_features`) and the measured descriptors:
each measure moves the way its descriptor says on drawn nodules, the fitted heads fold
into one module that exports to ONNX with the same numbers, and a bundle with a localiser
and measured descriptors serves them through the Predictor."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the measured features are a torch module")

from eutirads.categories import DESCRIPTORS  # noqa: E402
from model_helpers import QUICK_LOCALISER  # noqa: E402
from eutirads.models.nodule_features import (FEATURE_NAMES, MeasuredDescriptors,  # noqa: E402
                                             measure)

H, W = 96, 128


def _scene(factor=1.0, *, tall=False, dots=False, dark=False, seed=0):
    """A speckled field with an elliptic nodule: its intensity x `factor`."""
    rng = np.random.default_rng(seed)
    gray = rng.uniform(0.35, 0.65, (H, W)).astype(np.float32)
    yy, xx = np.mgrid[:H, :W]
    ry, rx = (30, 16) if tall else (16, 30)
    inside = ((yy - H / 2) / ry) ** 2 + ((xx - W / 2) / rx) ** 2 <= 1
    gray[inside] *= factor
    if dark:
        gray[inside] = rng.uniform(0.0, 0.05, inside.sum())
    if dots:
        for y, x in [(44, 56), (50, 70), (46, 64), (52, 58)]:
            gray[y:y + 2, x:x + 2] = 1.0
    return gray, inside.astype(np.float32)


def _features(*scenes, scale=(1.0, 1.0)):
    gray = np.stack([s[0] for s in scenes])
    prob = np.stack([s[1] for s in scenes])
    return measure(gray, prob, np.tile(np.asarray(scale, np.float32), (len(scenes), 1)))


def _f(values, name):
    return values[:, FEATURE_NAMES.index(name)]


def test_echogenicity_follows_the_nodule_against_the_tissue_around_it():
    f = _features(_scene(1.2), _scene(1.0), _scene(0.7), _scene(0.4))
    ratio = _f(f, "log_in_near")
    assert np.all(np.diff(ratio) < 0)          # hyper > iso > mildly > markedly
    assert abs(ratio[1]) < 0.05                # iso: the same as the ring
    assert _f(f, "frac_below_70_near")[3] > 0.9 > 0.1 > _f(f, "frac_below_70_near")[1]


def test_composition_counts_the_anechoic_inside_and_foci_the_small_bright_spots():
    f = _features(_scene(1.0), _scene(dark=True), _scene(1.0, dots=True))
    assert _f(f, "frac_dark_010")[1] > 0.9 and _f(f, "frac_dark_010")[0] < 0.05
    assert _f(f, "tophat_max")[2] > _f(f, "tophat_max")[0] + 0.2
    assert _f(f, "tophat_020")[2] > _f(f, "tophat_020")[0]


def test_taller_than_wide_is_measured_in_the_images_own_geometry():
    wide, tall = _features(_scene(), _scene(tall=True))
    assert _f(tall[None], "tall_extent")[0] > 0.99 and _f(wide[None], "tall_extent")[0] < 0.01
    # A wide ellipse on the grid is tall in the image when the grid squeezed its height.
    squeezed = _features(_scene(), scale=(3.0, 1.0))
    assert _f(squeezed, "tall_moment")[0] > 0.99


def test_an_irregular_outline_loses_more_to_an_opening_than_a_smooth_one():
    smooth = _scene()
    spiky = (smooth[0], smooth[1].copy())
    for x in range(40, 90, 6):  # spicules along the top edge
        spiky[1][22:34, x:x + 2] = 1.0
    f = _features(smooth, spiky)
    assert _f(f, "open_loss_7")[1] > _f(f, "open_loss_7")[0] + 0.01
    assert _f(f, "log_compactness")[1] > _f(f, "log_compactness")[0]


def test_an_empty_mask_gives_finite_values():
    gray, _ = _scene()
    assert np.isfinite(_features((gray, np.zeros_like(gray)))).all()


def test_folded_heads_match_scikit_learn_and_the_onnx_graph_matches_torch(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from eutirads.export.exporter import _write_measured
    from eutirads.inference.bundle import open_session
    from eutirads.training.measured import _fold_scaler

    scenes = [_scene(f, seed=i) for i, f in enumerate([1.2, 1.0, 0.7, 0.4] * 4)]
    X = _features(*scenes)
    y = np.array([1, 2, 3, 4] * 4)  # echogenicity indices, anechoic never seen
    outer = StandardScaler().fit(np.vstack([X, X + 0.1]))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)
    weight, bias = _fold_scaler(model, outer.mean_, outer.scale_, "echogenicity")
    z = (X - outer.mean_) / outer.scale_
    logits = z @ weight.T + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p[:, 1:], model.predict_proba(X), atol=1e-4)
    assert p[:, 0].max() < 1e-6  # a value it never saw gets no probability

    module = MeasuredDescriptors(outer.mean_, outer.scale_,
                                 {"echogenicity": (weight, bias)}).eval()
    entry = _write_measured(module, {"grid": [H, W], "train_images": 16}, tmp_path)
    assert entry["descriptors"]["echogenicity"]["values"] == list(DESCRIPTORS["echogenicity"])
    assert entry["parity"]["max_abs_logits"] < 1e-3
    session = open_session(tmp_path / entry["model"], 1)
    gray = np.stack([s[0] for s in scenes])[:, None]
    prob = np.stack([s[1] for s in scenes])[:, None]
    scale = np.ones((len(scenes), 2), np.float32)
    (onnx_logits,) = session.run(["descriptor_echogenicity"],
                                 {"gray": gray, "prob": prob, "scale": scale})
    with torch.no_grad():
        (torch_logits,) = module(torch.from_numpy(gray), torch.from_numpy(prob),
                                 torch.from_numpy(scale))
    np.testing.assert_allclose(onnx_logits, torch_logits.numpy(), atol=1e-3)
    assert (onnx_logits.argmax(1) == y).mean() >= 0.75


@pytest.fixture(scope="module")
def measured_bundle(tmp_path_factory):
    """A phantom, a tiny localiser and classifier, the measured heads, one bundle."""
    from eutirads.export import export_bundle
    from eutirads.models import create_model
    from eutirads.phantom.dataset import generate_dataset
    from eutirads.preprocess import PreprocessSpec
    from eutirads.training.checkpoint import save_checkpoint
    from eutirads.training.config import resolve_config
    from eutirads.training.measured import fit_measured
    from eutirads.training.run import train
    from eutirads.data.manifest import read_manifest, write_manifest

    base = tmp_path_factory.mktemp("measured")
    root = base / "ph"
    generate_dataset(root, n=40, seed=5, width=320, height=200, progress=False, workers=1)
    rows = read_manifest(root)
    for i, row in enumerate(rows):
        row["split"] = "val" if i < 6 else "test" if i < 12 else "train"
    write_manifest(root, rows)
    local = base / "loc"
    train(root, resolve_config(None, QUICK_LOCALISER), local, progress=False)
    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16)
    spec = PreprocessSpec(input_size=(48, 48), crop="full", class_names=tuple("12345"))
    cls = base / "cls"
    save_checkpoint(cls / "checkpoints" / "best.pt", model, model_name="seed-cnn",
                    model_kwargs={"filters": [8, 16], "dense": 16}, class_names=list("12345"),
                    preprocess=spec.to_dict(), config={}, data_summary={}, epoch=1,
                    val_metrics={})
    summary = fit_measured(root, cls, local)
    bundle = export_bundle(cls, base / "bundle", localiser=local)
    return root, summary, bundle


def test_a_bundle_serves_the_descriptors_measured_on_the_localisers_outline(measured_bundle):
    from PIL import Image

    from eutirads.data.manifest import read_manifest
    from eutirads.inference import Predictor
    from eutirads.inference.bundle import read_metadata

    root, summary, bundle = measured_bundle
    assert set(summary["heads"]) == set(DESCRIPTORS)
    assert (bundle / "measured.onnx").is_file()
    meta = read_metadata(bundle)
    assert sorted(meta["components"]) == ["classifier", "localiser", "measured"]
    assert meta["components"]["measured"]["category_source"] == summary["category_source"]
    card = (bundle / "model_card.md").read_text()
    assert "Measured descriptors" in card and "| echogenicity |" in card
    predictor = Predictor(bundle)
    assert predictor.rule_applies  # all five descriptors, from the measured component
    assert predictor.category_source == summary["category_source"]
    row = next(r for r in read_manifest(root) if r.get("echogenicity"))
    pixels = np.asarray(Image.open(root / row["path"]).convert("RGB"))
    result = predictor.predict(pixels).to_dict()
    assert set(result["descriptors"]) == set(DESCRIPTORS)
    for name, described in result["descriptors"].items():
        assert described["value"] in DESCRIPTORS[name]
        assert abs(sum(described["probabilities"].values()) - 1) < 1e-6
    assert set(result["category_sources"]) == {"head", "rule", "combined"}
    assert result["rule_path"]


def test_export_web_of_a_bundle_with_measured_descriptors_runs_them(measured_bundle, tmp_path):
    import json

    from eutirads.export.web import export_web
    from eutirads.inference import Predictor

    _, _, bundle = measured_bundle
    site = export_web(bundle, tmp_path / "site")
    # The page runs the measured graph as the Predictor does (the browser parity test in
    # tests/test_export_web_browser.py): copied, described, its category source used.
    assert (site / "model/measured.onnx").read_bytes() == (bundle / "measured.onnx").read_bytes()
    assert list(site.rglob("localiser.onnx")) and list(site.rglob("model.onnx"))
    description = json.loads((site / "site.json").read_text())
    predictor = Predictor(bundle)
    assert description["measured"]["grid"] == list(predictor.measured.grid)
    assert set(description["measured"]["descriptors"]) == set(predictor.measured.descriptors)
    assert description["classifier"]["rule_applies"] is predictor.rule_applies is True
    assert description["classifier"]["category_source"] == predictor.category_source
    assert "measured" not in description["components"]


def test_without_a_found_nodule_the_measured_descriptors_are_not_used(measured_bundle,
                                                                      monkeypatch):
    """An empty outline measures nothing: the classifier's own heads (none here) answer,
    and the category falls back to the head when the rule lacks descriptors."""
    import dataclasses

    from PIL import Image

    from eutirads.data.manifest import read_manifest
    from eutirads.inference import Predictor

    root, summary, bundle = measured_bundle
    predictor = Predictor(bundle)
    find = predictor.localiser.find
    monkeypatch.setattr(predictor.localiser, "find", lambda *a, **k: dataclasses.replace(
        find(*a, **k), nodule=None, reason="no-nodule-found"))
    row = next(r for r in read_manifest(root) if r.get("echogenicity"))
    pixels = np.asarray(Image.open(root / row["path"]).convert("RGB"))
    result = predictor.predict(pixels).to_dict()
    assert result["nodule"] is None
    assert result["descriptors"] == {}
    assert result["category_source"] == "head"
    assert set(result["category_sources"]) == {"head"}
    assert result["label"] in "12345"


def test_a_measured_head_is_kept_only_where_it_reads_its_descriptor_better_on_val():
    from eutirads.training.measured import _winning_heads

    measured = {"composition_accuracy": 0.89, "echogenicity_accuracy": 0.93,
                "shape_accuracy": 0.90, "margins_accuracy": 0.78}
    classifier = {"composition_accuracy": 0.94, "echogenicity_accuracy": 0.69,
                  "shape_accuracy": 0.90}
    # echogenicity: the measure wins; shape: a tie goes to the classifier; margins: the
    # classifier has no head; composition: the classifier wins.
    assert _winning_heads(["composition", "echogenicity", "shape", "margins"], measured,
                          classifier) == ["echogenicity", "margins"]
    assert _winning_heads(["shape"], measured, {}) == ["shape"]


def test_a_run_whose_measured_heads_all_lost_exports_no_measured_component(tmp_path):
    from eutirads.export.exporter import measured_module

    np.savez(tmp_path / "heads.npz", mean=np.zeros(3, np.float32), std=np.ones(3, np.float32),
             names=np.array([], dtype=str))
    assert measured_module(tmp_path) == (None, {})


def test_train_with_measured_fits_the_measured_descriptors_into_the_run(measured_bundle,
                                                                        tmp_path, capsys):
    import json

    from eutirads.cli import main

    root, _, bundle = measured_bundle
    localiser = bundle.parent / "loc"
    tiny = ["model=seed-cnn", "weights=none", "input_size=[48, 48]",
            "model_kwargs={filters: [8, 16], dense: 16}", "epochs=1", "num_threads=2"]
    code = main(["train", str(root), "--out", str(tmp_path / "run"), "--quiet",
                 "--measured", str(localiser), *tiny])
    out = capsys.readouterr().out
    assert code == 0 and "measured descriptors (val accuracy):" in out
    summary = json.loads((tmp_path / "run" / "measured" / "summary.json").read_text())
    assert set(summary["fitted"]) == set(DESCRIPTORS)
    assert set(summary["heads"]) <= set(summary["fitted"])
    assert set(summary["val_accuracy"]["classifier"]) == {f"{n}_accuracy" for n in DESCRIPTORS}
    # Not with a localiser or a cross-validation: one line, exit 2.
    code = main(["train", str(root), "--out", str(tmp_path / "cv"), "--cv", "2",
                 "--measured", str(localiser), *tiny])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--measured" in err
