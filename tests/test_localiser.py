"""The nodule localiser end to end on a small phantom: training learns the true masks,
export writes a format-2 bundle whose ONNX matches PyTorch, the predictor's `nodule` fields,
`predict --masks`, `evaluate` for a localiser, `localise`, and the bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="training the localiser needs the training extra")

from eutirads.cli import main  # noqa: E402
from eutirads.data.manifest import read_manifest, write_manifest  # noqa: E402
from eutirads.errors import InputError, ModelError  # noqa: E402
from eutirads.evaluation.localiser import box_iou, image_scores, summarise  # noqa: E402
from eutirads.export import export_bundle  # noqa: E402
from eutirads.inference import Predictor  # noqa: E402
from eutirads.inference.bundle import read_metadata  # noqa: E402
from eutirads.inference.localiser import (nodule_from_mask, region_axes,  # noqa: E402
                                          trace_contour)
from eutirads.phantom.dataset import generate_dataset  # noqa: E402
from eutirads.preprocess import crop_box  # noqa: E402
from eutirads.training.config import resolve_config  # noqa: E402
from eutirads.training.run import train  # noqa: E402
from eutirads.training.segment import fit_min_score  # noqa: E402

# Seconds, not the recipe: a small input, a frozen ImageNet encoder, cached features.
FAST = {"task": "segment", "model": "tf_efficientnet_lite0", "weights": "imagenet",
        "input_size": [96, 128], "mode": "frozen", "epochs": 30, "batch_size": 8,
        "lr": 0.01, "aug_passes": 2, "monitor": "dice", "patience": 0,
        "min_region_px": 8, "num_threads": 2}


def _splits(root, n_val=6, n_test=8):
    rows = read_manifest(root)
    for i, row in enumerate(rows):
        row["split"] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    write_manifest(root, rows)
    return rows


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("loc") / "ph"
    generate_dataset(root, n=40, seed=3, width=320, height=200, progress=False, workers=1)
    _splits(root)
    return root


@pytest.fixture(scope="module")
def run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("locrun") / "run"
    result = train(phantom, resolve_config(None, FAST), out, progress=False)
    return out, result


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    return export_bundle(run[0], tmp_path_factory.mktemp("locb") / "bundle")


def _nodule_row(root, nodule: bool = True):
    """A test-split row with (or without: category 1) a nodule, else one from any split."""
    rows = read_manifest(root)
    wanted = [r for r in rows if (r["label"] != "1") == nodule]
    return next((r for r in wanted if r["split"] == "test"), wanted[0])


def test_training_learns_the_phantom_masks_and_writes_a_self_describing_run(run):
    out, result = run
    assert result.best_metrics["dice"] > 0.6, result.best_metrics
    payload = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert payload["task"] == "segment" and payload["class_names"] == []
    assert payload["preprocess"]["input_size"] == [96, 128]
    assert payload["preprocess"]["crop"] == "full" and payload["preprocess"]["frame"] == "detect"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["train"]["images"] == 26 and summary["data"]["unknown_masks"] == 0
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:5] == ["epoch", "phase", "lr", "train_loss", "val_loss"]
    assert "val_dice" in history[0] and len(history) == 31
    assert (out / "curves" / "dice.png").is_file()


def test_the_stride_2_level_trains_reloads_and_exports_with_parity(phantom, tmp_path):
    from eutirads.training.checkpoint import load_checkpoint

    kwargs = {"decoder_channels": 16, "stride2": True}
    result = train(phantom, resolve_config(None, {**FAST, "model_kwargs": kwargs}),
                   tmp_path / "run", progress=False)
    assert result.best_metrics["dice"] > 0.5, result.best_metrics
    model, payload = load_checkpoint(tmp_path / "run")
    assert payload["model_kwargs"] == kwargs and model.decoder.stride2
    # Its map is drawn at stride 2: the encoder hands the decoder five levels, not four.
    assert len(model.encode(torch.zeros(1, 3, 96, 128))) == 5
    local = read_metadata(export_bundle(tmp_path / "run", tmp_path / "b"))["components"]
    assert local["localiser"]["parity"]["max_abs_logits"] < 1e-3


@pytest.mark.parametrize("option", ["stride2", "mirror"])
def test_a_localiser_option_that_is_not_true_or_false_is_a_model_error(option):
    from eutirads.models.segmentation import create_segmenter

    with pytest.raises(ModelError, match=f"{option} must be true or false"):
        create_segmenter("tf_efficientnet_lite0", weights="none", **{option: "yes"})


def test_a_mirroring_localiser_trains_reloads_answers_mirror_symmetric_maps_and_exports(
        phantom, tmp_path):
    from eutirads.training.checkpoint import load_checkpoint

    kwargs = {"decoder_channels": 16, "mirror": True}
    result = train(phantom, resolve_config(None, {**FAST, "model_kwargs": kwargs}),
                   tmp_path / "run", progress=False)
    assert result.best_metrics["dice"] > 0.6, result.best_metrics
    model, payload = load_checkpoint(tmp_path / "run")
    assert payload["model_kwargs"] == kwargs and model.mirror
    x = torch.rand(2, 3, 96, 128)
    model.eval()
    with torch.no_grad():  # the mean over both views: a mirrored image gets the mirrored map
        assert torch.allclose(model(torch.flip(x, dims=[3])), torch.flip(model(x), dims=[3]),
                              atol=1e-5)
        model.train()  # a training pass is a single view
        model.encoder.eval()
        assert not torch.allclose(model(torch.flip(x, dims=[3])),
                                  torch.flip(model(x), dims=[3]), atol=1e-5)
    local = read_metadata(export_bundle(tmp_path / "run", tmp_path / "b"))["components"]
    assert local["localiser"]["parity"]["max_abs_logits"] < 1e-3


def test_val_scored_on_cached_features_matches_the_mirroring_model_itself():
    """Frozen training scores val on cached encoder features: for a mirroring model, the
    mirrored images' features are cached and averaged the same way as its forward pass."""
    from eutirads.models.segmentation import create_segmenter
    from eutirads.preprocess import PreprocessSpec
    from eutirads.training.segment import _mirrored, _plain, _val_predict, encode_pairs

    torch.manual_seed(0)
    model = create_segmenter("tf_efficientnet_lite0", weights="none", decoder_channels=8,
                             mirror=True).eval()
    spec = PreprocessSpec(input_size=(64, 96))
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8),
              (rng.random((64, 96)) > 0.7)) for _ in range(3)]
    plain = _plain(spec)
    val_x = torch.from_numpy(np.stack([plain(*p)[0] for p in pairs]))
    masks = [p[1] for p in pairs]
    cache = encode_pairs(model, pairs, plain, "cpu", 2, "", False)[0]
    mirrored = encode_pairs(model, _mirrored(pairs), plain, "cpu", 2, "", False)[0]
    direct, _ = _val_predict(model, val_x, masks, "cpu", 2, (64, 96), None)
    cached, _ = _val_predict(model, val_x, masks, "cpu", 2, (64, 96), cache,
                             mirror_cache=mirrored)
    single, _ = _val_predict(model, val_x, masks, "cpu", 2, (64, 96), cache)
    assert np.abs(cached - direct).max() < 5e-3  # float16 cache
    assert np.abs(single - direct).max() > np.abs(cached - direct).max()


def test_rows_with_unknown_or_unusable_masks_are_skipped_and_counted(phantom, tmp_path):
    root = tmp_path / "ph"
    shutil.copytree(phantom, root)
    rows = read_manifest(root)
    train_rows = [r for r in rows if r["split"] == "train"]
    train_rows[0]["mask"] = ""
    train_rows[1]["mask_source"] = "model"  # the localiser's own output is no reference
    small = root / "masks" / "small.png"
    Image.new("L", (10, 10)).save(small)
    train_rows[2]["mask"] = "masks/small.png"
    write_manifest(root, rows)
    result = train(root, resolve_config(None, {**FAST, "epochs": 1}), tmp_path / "r",
                   progress=False)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data"]["unknown_masks"] == 2 and summary["data"]["train"]["images"] == 23
    assert len(result.skipped) == 1 and "\n" not in result.skipped[0]
    assert "masks/small.png" in result.skipped[0] and "10x10" in result.skipped[0]


def test_a_segment_config_must_early_stop_on_dice_or_loss():
    from eutirads.errors import ConfigError

    with pytest.raises(ConfigError, match="dice or loss"):
        resolve_config(None, {"task": "segment"})
    assert resolve_config("configs/localiser.yaml").task == "segment"


def test_the_localiser_bundle_matches_pytorch_and_finds_the_nodule(run, bundle, phantom):
    meta = read_metadata(bundle)
    assert list(meta["components"]) == ["localiser"] and meta["format_version"] == 2
    local = meta["components"]["localiser"]
    assert local["model"] == "localiser.onnx" and local["parity"]["max_abs_logits"] < 1e-3
    assert local["min_region_px"] == 8 and local["threshold"] == 0.5
    fitted = torch.load(run[0] / "checkpoints" / "best.pt", weights_only=True)["localiser"]
    assert local["min_score"] == fitted["min_score"] and 0 <= local["min_score"] < 1
    assert fitted["min_score_fit"]["fitted"]  # val holds images with and without a nodule
    assert json.loads((run[0] / "summary.json").read_text())["min_score"] == fitted["min_score_fit"]
    assert sorted(p.name for p in bundle.iterdir()) == [
        "bundle.json", "localiser.onnx", "localiser_preprocess.json", "model_card.md"]
    assert "## Localiser" in (bundle / "model_card.md").read_text()

    predictor = Predictor(bundle)
    assert predictor.has_localiser and not predictor.has_classifier
    ious = []
    for row in read_manifest(phantom):
        if row["split"] != "test" or row["label"] == "1":
            continue
        pixels = np.asarray(Image.open(phantom / row["path"]).convert("RGB"))
        result = predictor.predict(pixels, pixel_mm=0.2)
        assert result.label is None and result.probabilities == {}
        assert result.mask.shape == pixels.shape[:2] and set(np.unique(result.mask)) <= {0, 255}
        nodule = result.nodule
        true_box = [int(row[k]) for k in ("x0", "y0", "x1", "y1")]
        ious.append(box_iou(nodule["box"] if nodule else None, true_box))
        if nodule is None:
            assert result.nodule_reason and not result.mask.any()
            continue
        assert int((result.mask > 0).sum()) == sum(r["area_px"] for r in nodule["regions"])
        region = nodule["regions"][0]
        assert region["long_axis_px"] >= region["short_axis_px"] > 0
        assert region["long_axis_mm"] == pytest.approx(region["long_axis_px"] * 0.2, rel=0.02)
        xs, ys = zip(*region["contour"])
        assert min(xs) == region["box"][0] and max(xs) == region["box"][2] - 1
        assert min(ys) == region["box"][1] and max(ys) == region["box"][3] - 1
    assert len(ious) >= 4 and np.mean(ious) > 0.5, ious


def test_classifier_and_localiser_in_one_bundle_the_classifier_reads_the_localisers_box(
        run, phantom, tmp_path):
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec
    from eutirads.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16)
    spec = PreprocessSpec(input_size=(48, 48), crop="roi", roi_margin=0.25,
                          class_names=("1", "2", "3", "4", "5"))
    save_checkpoint(tmp_path / "cls" / "checkpoints" / "best.pt", model, model_name="seed-cnn",
                    model_kwargs={"filters": [8, 16], "dense": 16}, class_names=list("12345"),
                    preprocess=spec.to_dict(), config={}, data_summary={}, epoch=1,
                    val_metrics={})
    assert main(["export", str(tmp_path / "cls"), "--localiser", str(run[0]),
                 "--out", str(tmp_path / "both")]) == 0
    meta = read_metadata(tmp_path / "both")
    assert sorted(meta["components"]) == ["classifier", "localiser"]
    predictor = Predictor(tmp_path / "both")
    row = _nodule_row(phantom)
    pixels = np.asarray(Image.open(phantom / row["path"]).convert("RGB"))
    result = predictor.predict(pixels)
    assert result.box_source == "localiser" and result.nodule is not None
    assert result.crop_box == tuple(crop_box(pixels, spec, result.nodule["box"]))
    given = predictor.predict(pixels, box=(10, 10, 60, 60))
    assert given.box_source == "given" and given.crop_box != result.crop_box
    assert given.to_dict()["nodule"] == result.to_dict()["nodule"]


def test_predict_cli_writes_masks_by_position_and_json_nodules(bundle, phantom, tmp_path, capsys):
    rows = [_nodule_row(phantom), _nodule_row(phantom, nodule=False)]
    images = [str(phantom / r["path"]) for r in rows]
    assert main(["predict", str(bundle), *images, "--json", "--masks", str(tmp_path / "m"),
                 "--pixel-mm", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["predictions"]
    assert out["bundle"]["components"] == ["localiser"]
    assert first["nodule"]["box"] and first["box_source"] == "none"
    assert first["nodule"]["regions"][0]["long_axis_mm"] is not None
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["mask_0001.png", "mask_0002.png"]
    mask = np.asarray(Image.open(tmp_path / "m" / "mask_0001.png"))
    assert mask.shape == Image.open(images[0]).size[::-1] and set(np.unique(mask)) <= {0, 255}
    if second["nodule"] is None:
        assert second["nodule_reason"]
        assert not np.asarray(Image.open(tmp_path / "m" / "mask_0002.png")).any()


def test_a_localiser_exported_for_another_input_size_is_a_one_line_error(bundle, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(bundle, broken)
    spec = json.loads((broken / "localiser_preprocess.json").read_text())
    spec["input_size"] = [64, 64]
    (broken / "localiser_preprocess.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="exported for input") as info:
        Predictor(broken)
    assert "\n" not in str(info.value)
    assert main(["predict", str(broken), "x.png"]) == 2


def test_predict_masks_without_a_localiser_is_a_one_line_error(tmp_path, capsys):
    from eutirads.export import export_model
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec

    model = create_model("seed-cnn", num_classes=2, weights="none", filters=(8,), dense=8)
    export_model(model.eval(), PreprocessSpec(input_size=(32, 32), class_names=("1", "2")),
                 tmp_path / "cls", name="c", model_name="seed-cnn")
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "cls"), str(tmp_path / "a.png"), "--masks",
                 str(tmp_path / "m")]) == 2
    assert "needs a localiser" in capsys.readouterr().err


def test_evaluate_a_localiser_run_writes_metrics_with_intervals_and_a_contact_sheet(run, capsys):
    out, _ = run
    assert main(["evaluate", str(out), "--split", "test", "--bootstrap", "50"]) == 0
    assert "evaluated localiser on 8 images" in capsys.readouterr().out
    metrics = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert metrics["task"] == "segment" and metrics["n"] == 8
    assert 0 <= metrics["summary"]["dice"] <= 1
    ci = metrics["bootstrap"]["ci"]["dice"]
    assert ci["low"] <= metrics["summary"]["dice"] <= ci["high"]
    assert (out / "eval" / "test" / "contact.png").is_file()
    assert "Detection rate" in (out / "eval" / "test" / "report.md").read_text()


def test_localise_fills_missing_boxes_and_masks_and_never_overwrites(bundle, phantom, tmp_path,
                                                                     capsys):
    root = tmp_path / "ph"
    shutil.copytree(phantom, root)
    rows = read_manifest(root)
    nodules = [r for r in rows if r["label"] == "5"]
    drawn, empty = nodules[0], nodules[1]
    drawn.update(box_source="manual", x0="1", y0="2", x1="30", y1="40", mask="")
    for key in ("x0", "y0", "x1", "y1", "mask"):
        empty[key] = ""
    write_manifest(root, rows)
    assert main(["localise", str(root), "--bundle", str(bundle), "--quiet"]) == 0
    assert "box(es)" in capsys.readouterr().out
    after = {r["path"]: r for r in read_manifest(root)}
    kept = after[drawn["path"]]
    assert (kept["x0"], kept["y1"], kept["box_source"]) == ("1", "40", "manual")
    assert kept["mask_source"] == "model" and kept["mask"].startswith("masks/model/")
    filled = after[empty["path"]]
    assert filled["box_source"] == "model" and filled["x1"]
    assert (root / filled["mask"]).is_file()
    untouched = next(r for r in after.values() if r["path"] not in (drawn["path"], empty["path"]))
    assert untouched["box_source"] == "" and untouched["mask_source"] == ""


# --- the pure functions -------------------------------------------------------------------

def test_two_views_of_one_nodule_give_one_box_enclosing_both_and_small_specks_are_dropped():
    mask = np.zeros((60, 100), bool)
    mask[10:30, 5:25] = True       # left view
    mask[12:28, 60:90] = True      # right view
    mask[50, 50] = True            # a speck
    prob = mask.astype(np.float32) * 0.9
    kept, nodule = nodule_from_mask(mask, prob, min_region_px=5)
    assert nodule["box"] == [5, 10, 90, 30] and len(nodule["regions"]) == 2
    assert nodule["regions"][0]["area_px"] == 480 and not kept[50, 50]
    assert nodule["score"] == pytest.approx(0.9)
    assert nodule_from_mask(np.zeros((5, 5), bool), np.zeros((5, 5)), min_region_px=1)[1] is None


def test_a_region_fainter_than_the_minimum_score_is_dropped_and_the_box_shrinks():
    mask = np.zeros((60, 100), bool)
    mask[10:30, 5:25] = True       # a confident nodule
    mask[12:28, 60:90] = True      # a faint outline elsewhere
    prob = np.where(mask, 0.9, 0.0).astype(np.float32)
    prob[12:28, 60:90] = 0.6
    kept, nodule = nodule_from_mask(mask, prob, min_region_px=5, min_score=0.7)
    assert nodule["box"] == [5, 10, 25, 30] and len(nodule["regions"]) == 1
    assert not kept[20, 70] and kept[20, 10] == 255 and nodule["score"] == pytest.approx(0.9)
    assert nodule_from_mask(mask, prob, min_region_px=5, min_score=0.95) == (
        pytest.approx(np.zeros_like(kept)), None)


def _map(score: float, nodule: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 20x20 probability map with one square region of mean `score` (none at 0), and its
    true mask (the square when `nodule`)."""
    prob = np.zeros((20, 20), np.float32)
    prob[5:10, 5:10] = score
    return prob, (prob > 0) if nodule else np.zeros((20, 20), bool)


def test_the_minimum_score_separates_false_alarms_from_nodules_on_val():
    nodules = [_map(s, True) for s in (0.95, 0.9, 0.88, 0.7)]
    clean = [_map(s, False) for s in (0.8, 0.6, 0.0)]
    probs, masks = zip(*(nodules + clean))
    fit = fit_min_score(probs, masks, threshold=0.5, min_region_px=1)
    # Between the strongest false alarm (0.8) and the next nodule (0.88): one nodule of four
    # lost (0.7) for both false alarms gone beats every other cut.
    assert fit["fitted"] and fit["min_score"] == pytest.approx(0.84)
    assert fit["val_found_rate_with_nodule"] == 0.75 and fit["val_false_positive_rate"] == 0
    assert fit["without_min_score"]["val_false_positive_rate"] == pytest.approx(2 / 3, abs=1e-4)
    only_nodules = fit_min_score([p for p, _ in nodules], [m for _, m in nodules],
                                 threshold=0.5, min_region_px=1)
    assert only_nodules["min_score"] == 0.0 and not only_nodules["fitted"]
    assert "no nodule-free image" in only_nodules["why"]


def test_a_bundle_from_before_the_minimum_score_keeps_every_region_and_a_bad_one_is_refused(
        bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["components"]["localiser"]["min_score"]
    (old / "bundle.json").write_text(json.dumps(meta))
    assert Predictor(old).localiser.min_score == 0.0
    meta["components"]["localiser"]["min_score"] = 1.5
    (old / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="min_score 1.5 is not in"):
        Predictor(old)


def test_a_min_score_outside_zero_to_one_is_a_config_error():
    from eutirads.errors import ConfigError

    with pytest.raises(ConfigError, match="min_score must be auto or a number"):
        resolve_config(None, {**FAST, "min_score": "high"})
    assert resolve_config(None, {**FAST, "min_score": 0.8}).min_score == "0.8"


def test_the_contour_walks_the_boundary_and_the_axes_are_caliper_lengths():
    region = np.zeros((20, 30), bool)
    region[5:10, 3:13] = True
    contour = trace_contour(region)
    assert contour[0] == [3, 5] and [12, 9] in contour and [3, 9] in contour
    assert all(region[y, x] for x, y in contour)
    assert len(contour) == 2 * (10 + 5) - 4
    ys, xs = np.nonzero(region)
    long_axis, short_axis = region_axes(np.stack([xs, ys], 1))
    assert long_axis == pytest.approx(np.hypot(9, 4) + 1)
    assert 4 < short_axis < 10
    assert trace_contour(np.pad(np.ones((1, 1), bool), 2)) == [[2, 2]]


def test_scores_count_detection_and_false_positives():
    true = np.zeros((40, 40), bool)
    true[10:20, 10:20] = True
    perfect = image_scores(true.astype(np.float32), true, threshold=0.5, min_region_px=1)
    assert perfect["dice"] == 1 and perfect["detected"] and perfect["box_iou"] == 1
    missed = image_scores(np.zeros((40, 40), np.float32), true, threshold=0.5, min_region_px=1)
    assert missed["dice"] == 0 and not missed["detected"]
    clean = image_scores(true.astype(np.float32), np.zeros((40, 40), bool), threshold=0.5,
                         min_region_px=1)
    summary = summarise([perfect, missed, clean])
    assert summary["dice"] == 0.5 and summary["detection_rate"] == 0.5
    assert summary["false_positive_rate"] == 1.0


def test_a_bad_pixel_spacing_is_an_input_error(bundle):
    with pytest.raises(InputError, match="pixel spacing"):
        Predictor(bundle).predict(np.zeros((50, 50, 3), np.uint8), pixel_mm=-1)


def test_the_localisers_thread_limit_bounds_numpys_blas_while_it_finds(bundle, phantom,
                                                                        monkeypatch):
    import eutirads.inference.localiser as localiser_module
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    real = localiser_module.nodule_from_mask

    def spy(*args, **kwargs):
        seen.append({lib["num_threads"] for lib in threadpool_info()
                     if lib["user_api"] == "blas"})
        return real(*args, **kwargs)

    monkeypatch.setattr(localiser_module, "nodule_from_mask", spy)
    row = _nodule_row(phantom)
    pixels = np.asarray(Image.open(phantom / row["path"]).convert("RGB"))
    with threadpool_limits(limits=2, user_api="blas"):
        Predictor(bundle, threads=1).localiser.find(pixels)
        Predictor(bundle).localiser.find(pixels)
    assert seen == [{1}, {2}]


def test_millimetres_come_from_the_dicom_ultrasound_region_spacing(bundle, tmp_path, capsys):
    from eutirads.inference.images import load_image_and_spacing

    assert main(["phantom", str(tmp_path / "dcm"), "--n", "3", "--seed", "4", "--dicom"]) == 0
    files = sorted(p for p in (tmp_path / "dcm").rglob("*") if p.is_file()
                   and p.suffix not in (".json", ".csv"))
    spacings = [load_image_and_spacing(f)[1] for f in files]
    assert all(s is not None and s[0] > 0 for s in spacings)
    capsys.readouterr()
    assert main(["predict", str(bundle), *map(str, files), "--json"]) in (0, 1)
    out = json.loads(capsys.readouterr().out)
    checked = 0
    for prediction, spacing in zip(out["predictions"], spacings):
        for region in (prediction.get("nodule") or {}).get("regions", []):
            assert region["long_axis_mm"] == pytest.approx(
                region["long_axis_px"] * (spacing[0] + spacing[1]) / 2, rel=0.05)
            checked += 1
    assert checked, out["predictions"]


def test_fine_tuning_trains_the_encoder_at_its_own_lower_rate():
    """mode finetune (the recipe): every encoder stage trains, at finetune_lr, while the new
    decoder takes lr; mode frozen leaves the encoder as it was."""
    from eutirads.models.segmentation import create_segmenter
    from eutirads.training.segment import fit_segmenter, make_segment_spec

    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(6):
        image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40, 16:44] = 1
        image[mask > 0] += 120
        pairs.append((image, mask))
    seen = {}

    class Spy(torch.optim.AdamW):
        def __init__(self, groups, **kwargs):
            seen["lrs"] = sorted(g["lr"] for g in groups)
            super().__init__(groups, **kwargs)

    results = {}
    for mode in ("frozen", "finetune"):
        config = resolve_config(None, {**FAST, "input_size": [64, 64], "mode": mode,
                                       "unfreeze": -1, "epochs": 1, "batch_size": 3,
                                       "lr": 0.01, "finetune_lr": 0.001, "aug_passes": 1})
        torch.manual_seed(0)
        model = create_segmenter("tf_efficientnet_lite0", weights="imagenet")
        before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        original = torch.optim.AdamW
        torch.optim.AdamW = Spy
        try:
            fit_segmenter(model, make_segment_spec(config), config, pairs[:4], pairs[4:],
                          progress=False, early_stopping=False)
        finally:
            torch.optim.AdamW = original
        after = model.encoder.state_dict()
        results[mode] = (any(not torch.equal(before[k], after[k]) for k in before
                             if after[k].is_floating_point()), seen.pop("lrs"))
    assert results["frozen"] == (False, [0.01])
    assert results["finetune"] == (True, [0.001, 0.01])


def test_cached_features_are_refused_when_the_encoder_trains():
    """Features cached from the frozen encoder would not be the fine-tuned model's: the
    caller is told to use the frozen recipe, not given a silently wrong model."""
    from eutirads.errors import ConfigError
    from eutirads.models.segmentation import create_segmenter
    from eutirads.training.segment import fit_segmenter, make_segment_spec

    config = resolve_config("configs/localiser.yaml")
    assert config.mode == "finetune"
    assert resolve_config("configs/localiser_frozen.yaml").mode == "frozen"
    model = create_segmenter("tf_efficientnet_lite0", weights="none")
    pair = (np.zeros((192, 256, 3), np.uint8), np.zeros((192, 256), np.uint8))
    with pytest.raises(ConfigError, match="localiser_frozen.yaml"):
        fit_segmenter(model, make_segment_spec(config), config, [pair, pair], [pair],
                      progress=False, encoded=([], []))


def test_the_per_image_dice_loss_weighs_a_missed_small_nodule_like_a_missed_large_one():
    import torch

    from eutirads.training.segment import segment_loss

    target = torch.zeros(3, 32, 32)
    target[0, 2:30, 2:30] = 1   # a large nodule, found
    target[1, 10:14, 10:14] = 1  # a small nodule, missed
    logits = torch.where(target > 0, 8.0, -8.0)
    logits[1] = -8.0
    # image 2 has no nodule: BCE only, and it does not enter the per-image Dice
    batch = float(segment_loss(logits, target))
    image = float(segment_loss(logits, target, per_image=True))
    bce = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
    assert image - bce == pytest.approx(0.5 * (1 - 1 / 17), abs=0.01)  # one of two missed
    assert batch - bce < 0.05   # the batch Dice hardly sees the small one
    assert float(segment_loss(logits[2:], target[2:], per_image=True)) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(logits[2:], target[2:])))
