"""Descriptor heads, the rule's category, calibration and abstention, end to end on a
small phantom: train -> export -> predict, and the pieces on their own."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the training extra (torch)")

from eutirads.categories import DESCRIPTORS  # noqa: E402
from eutirads.cli import main  # noqa: E402
from eutirads.data.importers import import_dataset  # noqa: E402
from eutirads.data.split import split_dataset  # noqa: E402
from eutirads.errors import InputError  # noqa: E402
from eutirads.export import export_bundle  # noqa: E402
from eutirads.inference import Predictor  # noqa: E402
from eutirads.inference.abstention import apply_temperature, fit_temperature, not_ultrasound  # noqa: E402
from eutirads.inference.descriptors import rule_category  # noqa: E402
from eutirads.phantom.dataset import generate_dataset  # noqa: E402
from eutirads.training.checkpoint import read_checkpoint  # noqa: E402
from eutirads.training.config import resolve_config  # noqa: E402
from eutirads.training.cv import check_class_sizes  # noqa: E402
from eutirads.training.losses import multitask_loss  # noqa: E402
from eutirads.training.run import train  # noqa: E402

torch.set_num_threads(2)

# Frozen lite0 features on the nodule crop: seconds on cached features.
RECIPE = ["mode=frozen", "augment=false", "crop=roi", "roi_margin=0.5", "input_size=96",
          "epochs=40", "lr=0.003", "patience=0", "batch_size=16"]
TINY_CNN = ["model=seed-cnn", "weights=none", "input_size=32", "mode=finetune", "epochs=2",
            "lr=0.01", "finetune_lr=0.01", "batch_size=8", "model_kwargs={filters: [8], dense: 16}"]


def _dataset(root, n=60, *, descriptors=True):
    generate_dataset(root / "phantom", n=n, seed=3, width=320, height=200, progress=False)
    dataset = root / "dataset"
    import_dataset(root / "phantom", dataset, fmt="folders", progress=False)
    if not descriptors:
        manifest = dataset / "manifest.csv"
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        columns = [c for c in rows[0] if c not in DESCRIPTORS]
        with manifest.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    split_dataset(dataset, seed=3, progress=False)
    return dataset


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("desc")
    dataset = _dataset(root)
    run = root / "run"
    train(dataset, resolve_config(None, RECIPE), run, progress=False)
    return export_bundle(run, root / "bundle"), dataset, run


def _test_image(dataset) -> str:
    with (dataset / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"] not in ("", "1")]
    return str(dataset / rows[0]["path"])


def checkerboard(size=(700, 700), square=50) -> np.ndarray:
    ys, xs = np.indices(size)
    board = (((ys // square) + (xs // square)) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def photo_like(size=(360, 480), seed=0) -> np.ndarray:
    """Sky, grass and a red house: strongly coloured, as photos are."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 2] = (90, 150, 235)
    image[h // 2:] = (60, 160, 50)
    image[h // 3: 2 * h // 3, w // 3: w // 2] = (200, 40, 30)
    noise = rng.integers(-15, 15, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def test_training_gives_one_head_per_descriptor_with_masked_unknowns(bundle):
    _, _, run = bundle
    payload = read_checkpoint(run)
    # Phantom normals (class 1) have no descriptors: every head still trained on the rest.
    assert payload["descriptors"] == {name: list(values) for name, values in DESCRIPTORS.items()}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["descriptor_heads"] == list(DESCRIPTORS)
    for name in DESCRIPTORS:
        assert f"{name}_accuracy" in payload["val_metrics"]


def test_the_bundle_describes_the_descriptor_outputs_calibration_and_ood(bundle):
    path, _, _ = bundle
    meta = json.loads((path / "bundle.json").read_text())
    classifier = meta["components"]["classifier"]
    assert classifier["outputs"] == ["logits", "features",
                                     *[f"descriptor_{n}" for n in DESCRIPTORS]]
    assert set(classifier["descriptors"]) == set(DESCRIPTORS)
    assert classifier["calibration"]["temperature"] > 0
    assert classifier["ood"]["reference"] == "ood_reference.npy"
    assert (path / "ood_reference.npy").is_file()
    assert classifier["category_source"] in ("head", "rule", "combined")
    card = (path / "model_card.md").read_text()
    assert "## Descriptor heads" in card and "| echogenicity |" in card
    assert "## Calibration and abstention" in card


def test_a_prediction_reads_descriptors_and_shows_the_rule_beside_the_head(bundle):
    path, dataset, _ = bundle
    result = Predictor(path).predict(_test_image(dataset)).to_dict()
    assert set(result["descriptors"]) == set(DESCRIPTORS)
    for name, head in result["descriptors"].items():
        assert head["value"] in DESCRIPTORS[name]
        assert sum(head["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    sources = result["category_sources"]
    assert set(sources) == {"head", "rule", "combined"}
    assert result["label"] == sources[result["category_source"]]["label"]
    assert result["confidence"] == pytest.approx(result["probabilities"][result["label"]])
    assert "-> EU-TIRADS" in result["rule_path"]
    assert result["rule_path"].endswith(sources["rule"]["label"])
    assert result["abstain"] in (False, True) and "abstain_reason" in result


@pytest.mark.parametrize("picture, reasons", [
    # No speckled block for the region finder, and half pure white.
    (checkerboard(), {"no-ultrasound-area", "not-ultrasound"}),
    (photo_like(), {"not-ultrasound"}),
    (np.zeros((300, 400, 3), np.uint8), {"no-ultrasound-area"}),
])
def test_pictures_that_are_not_thyroid_ultrasound_abstain(bundle, picture, reasons):
    result = Predictor(bundle[0]).predict(picture)
    assert result.abstain and result.abstain_reason in reasons
    # Kept for whoever looks.
    assert result.label is not None and result.descriptors is not None


def test_a_chest_x_ray_like_grey_picture_abstains(bundle):
    ys, xs = np.indices((360, 480))
    # Smooth bright bands and no speckle: grey, so not caught as a photo; the region
    # finder finds no speckled image area, or else its features are far from training.
    grey = (120 + 80 * np.sin(xs / 25.0) * np.cos(ys / 40.0)).astype(np.uint8)
    picture = np.repeat(grey[..., None], 3, axis=2)
    assert not not_ultrasound(picture)
    result = Predictor(bundle[0]).predict(picture)
    assert result.abstain and result.abstain_reason in ("no-ultrasound-area",
                                                        "out-of-distribution")


def test_features_far_from_every_training_image_are_out_of_distribution():
    from eutirads.inference.abstention import AbstainRule, knn_distance, pooled

    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    train_f = pooled(centre + 0.1 * rng.normal(size=(40, 64)))
    val_f = pooled(centre + 0.1 * rng.normal(size=(10, 64)))
    threshold = float(np.quantile(knn_distance(val_f, train_f, 5), 0.99))
    rule = AbstainRule(ood_threshold=threshold, ood_k=5, reference=train_f)
    speckle = np.random.default_rng(1).integers(30, 200, (120, 160, 3)).astype(np.uint8)
    speckle[..., 1] = speckle[..., 2] = speckle[..., 0]  # grey
    near = (centre + 0.1 * rng.normal(size=64))[None, :, None, None]
    far = rng.normal(size=64)[None, :, None, None]
    assert rule.reason(pixels=speckle, features=near, confidence=0.9) is None
    assert rule.reason(pixels=speckle, features=far, confidence=0.9) == "out-of-distribution"
    low = AbstainRule(low_confidence=0.5)
    assert low.reason(pixels=speckle, features=None, confidence=0.4) == "low-confidence"


def test_predict_exits_0_for_an_abstention_and_says_so(bundle, tmp_path, capsys):
    from eutirads.imageio import save_png

    image = tmp_path / "holiday.png"
    save_png(photo_like(), image)
    code = main(["predict", str(bundle[0]), str(image), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    entry = out["predictions"][0]
    assert entry["abstain"] is True and entry["abstain_reason"] == "not-ultrasound"
    assert entry["label"] and entry["probabilities"]


def test_a_dataset_without_descriptors_trains_no_descriptor_heads(tmp_path):
    dataset = _dataset(tmp_path, n=30, descriptors=False)
    run = tmp_path / "run"
    train(dataset, resolve_config(None, TINY_CNN), run, progress=False)
    assert read_checkpoint(run)["descriptors"] == {}
    result = Predictor(export_bundle(run, tmp_path / "bundle")).predict(_test_image(dataset))
    out = result.to_dict()
    assert "descriptors" not in out and "rule_path" not in out and "category_sources" not in out


def test_the_descriptor_loss_is_masked_where_the_label_is_unknown():
    torch.manual_seed(0)
    outputs = {"category": torch.randn(4, 3, requires_grad=True),
               "margins": torch.randn(4, 2, requires_grad=True)}
    unknown = torch.tensor([[0, -1], [1, -1], [2, -1], [1, -1]])
    loss = multitask_loss(outputs, unknown, ["margins"])
    loss.backward()
    assert outputs["margins"].grad is None or float(outputs["margins"].grad.abs().sum()) == 0
    known = torch.tensor([[0, 1], [1, -1], [2, 0], [1, -1]])
    outputs["margins"].grad = None
    multitask_loss(outputs, known, ["margins"]).backward()
    grad = outputs["margins"].grad
    assert float(grad[[1, 3]].abs().sum()) == 0 and float(grad[[0, 2]].abs().sum()) > 0


def test_temperature_scaling_cools_an_overconfident_model():
    from eutirads.evaluation.metrics import calibration

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    # Right 60% of the time, but always 97% sure.
    pred = np.where(rng.random(400) < 0.6, y, (y + 1) % 3)
    proba = np.full((400, 3), 0.015)
    proba[np.arange(400), pred] = 0.97
    t = fit_temperature(proba, y)
    assert t > 1.5
    before = calibration(y, proba, [0, 1, 2])["ece"]
    after = calibration(y, apply_temperature(proba, t), [0, 1, 2])["ece"]
    assert after < before / 2


def test_the_rule_category_of_certain_descriptors_is_the_guideline_category():
    certain = {name: np.eye(len(values))[values.index(value)] for name, values, value in [
        ("composition", DESCRIPTORS["composition"], "solid"),
        ("echogenicity", DESCRIPTORS["echogenicity"], "markedly_hypoechoic"),
        ("shape", DESCRIPTORS["shape"], "oval"),
        ("margins", DESCRIPTORS["margins"], "smooth"),
        ("echogenic_foci", DESCRIPTORS["echogenic_foci"], "none")]}
    label, probs, path = rule_category(certain, ["1", "2", "3", "4", "5"])
    assert label == "5" and probs[4] == pytest.approx(1.0)
    assert path == "solid, markedly hypoechoic -> EU-TIRADS 5"
    # The head's "no nodule" decides class 1.
    label, probs, path = rule_category(certain, ["1", "2", "3", "4", "5"],
                                       head=np.array([0.7, 0.1, 0.1, 0.05, 0.05]))
    assert label == "1" and probs[0] == pytest.approx(0.7) and path.startswith("no nodule")


def test_the_rule_distribution_sums_every_combination_into_the_guideline_category():
    # The reference: the sum written out, combination by combination, through the one
    # rule (categories.classify); the predictor reads a tabulated form of it.
    import itertools

    from eutirads.categories import NoduleFeatures, classify

    rng = np.random.default_rng(3)
    probs = {name: rng.dirichlet(np.ones(len(values))) for name, values in DESCRIPTORS.items()}
    names = list(DESCRIPTORS)
    expected = np.zeros(5)
    for combo in itertools.product(*[range(len(DESCRIPTORS[n])) for n in names]):
        weight = np.prod([probs[n][i] for n, i in zip(names, combo)])
        features = NoduleFeatures(**{n: DESCRIPTORS[n][i] for n, i in zip(names, combo)})
        expected[int(classify(features)) - 1] += weight
    _, got, _ = rule_category(probs, ["1", "2", "3", "4", "5"])
    np.testing.assert_allclose(got, expected / expected.sum(), rtol=1e-12, atol=1e-15)
    # Classes the rule cannot give (DDTI's 4a/4b/4c) get none of its mass.
    _, ddti, _ = rule_category(probs, ["2", "3", "4a", "4b", "4c", "5"])
    assert ddti[2:5].sum() == 0
    np.testing.assert_allclose(ddti[[0, 1, 5]], expected[[1, 2, 4]] / expected[[1, 2, 4]].sum())


def test_a_class_too_small_for_repeated_cv_is_a_clear_error():
    labels = ["2"] * 10 + ["3"] * 3 + ["4"] * 10
    with pytest.raises(InputError, match=r"class '3' has 3 image\(s\); 5-fold x 5 repeated "
                                         r"cross-validation needs at least 5 per class"):
        check_class_sizes(labels, 5, where="manifest.csv", repeats=5)
    check_class_sizes(labels, 3, where="manifest.csv")


def test_the_evaluation_report_gives_ece_before_and_after_and_descriptor_accuracy(bundle):
    from eutirads.evaluation import evaluate_run

    _, _, run = bundle
    metrics = evaluate_run(run, split="test", n_boot=0, progress=False)
    assert metrics["temperature"] > 0
    assert metrics["calibration_uncalibrated"]["ece"] is not None
    assert set(metrics["descriptors"]) == set(DESCRIPTORS)
    report = (run / "eval" / "test" / "report.md").read_text()
    assert "before scaling" in report and "## Descriptor heads" in report


def test_train_says_which_recipe_it_runs_and_why():
    from eutirads.training.config import LARGE_DATASET, recipe_note

    line = recipe_note(None, 136)
    assert line.startswith("recipe: the default (") and "DDTI-dev" in line
    assert "note:" in recipe_note(None, LARGE_DATASET + 1)
    assert recipe_note("configs/lite0-frozen.yaml", 136, ["epochs=3"]) == (
        "recipe: configs/lite0-frozen.yaml with epochs=3 (chosen with --config)")
