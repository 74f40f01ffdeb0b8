"""Training: config layers, the loop and its caches, run folders, bad input, CV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from eutirads.cli import main
from eutirads.data.manifest import read_manifest, write_manifest
from eutirads.errors import ConfigError, InputError, ModelError
from eutirads.imageio import save_png
from eutirads.preprocess import PreprocessSpec, prepare
from eutirads.training.checkpoint import load_checkpoint
from eutirads.training.config import resolve_config
from eutirads.training.cv import cross_validate, default_positive
from eutirads.training.data import eval_transform, train_transform
from eutirads.training.losses import balanced_class_weights, classification_loss
from eutirads.training.run import train

torch.set_num_threads(2)

CLASSES = ("2", "3", "4a")
TINY_CNN = ["model=seed-cnn", "weights=none", "input_size=32", "mode=finetune",
            "lr=0.01", "finetune_lr=0.01", "batch_size=8", "model_kwargs={filters: [8], dense: 16}"]


def _screen(rng: np.random.Generator, level: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A small scanner screen: black frame, speckled image area, a square 'nodule' whose
    brightness gives the class."""
    image = np.zeros((90, 120, 3), np.uint8)
    image[8:82, 12:108] = rng.integers(30, 80, size=(74, 96, 1), dtype=np.uint8)
    x0, y0 = int(rng.integers(20, 70)), int(rng.integers(14, 44))
    image[y0:y0 + 24, x0:x0 + 24] = level
    return image, (x0, y0, x0 + 24, y0 + 24)


@pytest.fixture
def dataset(tmp_path):
    """3 classes x 16 images: 10 train, 3 val, 3 test each; one patient per image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    rows = []
    for c, label in enumerate(CLASSES):
        for i in range(16):
            image, (x0, y0, x1, y1) = _screen(rng, 100 + 70 * c)
            path = f"images/{label}/{label}_{i:02d}.png"
            save_png(image, root / path)
            split = "train" if i < 10 else "val" if i < 13 else "test"
            rows.append({"path": path, "label": label, "patient_id": f"p{c}-{i}", "split": split,
                         "x0": x0, "y0": y0, "x1": x1, "y1": y1, "source": "test"})
    write_manifest(root, rows)
    return root


def test_config_layers_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\ncrop: roi\nlr: 0.01\n")
    config = resolve_config(path, ["epochs=3", "input_size=64", "hflip=false"])
    assert (config.epochs, config.crop, config.lr) == (3, "roi", 0.01)
    assert config.input_size == [64, 64] and config.hflip is False
    assert config.batch_size == 32  # untouched default


@pytest.mark.parametrize("override, message", [
    (["epoch=3"], "unknown config key 'epoch'"),
    (["epochs=many"], "epochs='many' is not a valid int"),
    (["mode=partial"], "mode must be one of"),
    (["crop"], "expected key=value"),
])
def test_bad_config_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(None, override)


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(tmp_path / "none.yaml")


def test_the_default_recipe_file_spells_out_the_built_in_defaults():
    from pathlib import Path

    from eutirads.training.config import TrainConfig

    path = Path(__file__).parents[1] / "configs" / "default.yaml"
    assert resolve_config(path) == TrainConfig()


def test_every_shipped_config_resolves():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 8
    for path in configs:
        resolve_config(path)


def test_training_learns_and_writes_a_self_describing_run_folder(dataset, tmp_path):
    run = tmp_path / "run"
    config = resolve_config(None, TINY_CNN + ["epochs=20", "patience=0", "augment=false"])
    result = train(dataset, config, run, progress=False)
    assert result.best_metrics["accuracy"] >= 0.8  # chance is 1/3

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == "seed-cnn" and saved["epochs"] == 20
    with (run / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 20
    assert {"train_loss", "val_loss", "val_accuracy", "val_precision", "val_recall",
            "val_macro_f1"} <= set(history[0])
    for name in ("loss", "accuracy", "precision", "recall"):
        assert (run / "curves" / f"{name}.png").stat().st_size > 1000

    model, ckpt = load_checkpoint(run)
    assert ckpt["class_names"] == list(CLASSES)
    assert ckpt["epoch"] == result.best_epoch
    assert ckpt["data_summary"]["train"] == {"2": 10, "3": 10, "4a": 10}
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    assert spec.input_size == (32, 32) and spec.class_names == CLASSES
    # The checkpoint alone classifies a new screen through the shared preprocessing.
    image, _ = _screen(np.random.default_rng(9), 240)
    with torch.no_grad():
        logits = model(torch.from_numpy(prepare(image, spec))[None])
    assert CLASSES[int(logits.argmax())] == "4a"
    assert (run / "checkpoints" / "last.pt").is_file()


def test_a_frozen_base_with_cached_features_trains_only_the_head(dataset, tmp_path):
    config = resolve_config(None, ["model=tf_efficientnet_lite0", "weights=none", "input_size=32",
                                   "mode=frozen", "epochs=2", "augment=true", "aug_passes=2"])
    train(dataset, config, tmp_path / "run", progress=False)
    from eutirads.models import create_model

    torch.manual_seed(config.seed)
    fresh = create_model("tf_efficientnet_lite0", num_classes=3, weights="none")
    model, _ = load_checkpoint(tmp_path / "run")
    # Same seed, same random init: the frozen base must be untouched, the head must not.
    torch.testing.assert_close(model.backbone.conv_stem.weight, fresh.backbone.conv_stem.weight)
    torch.testing.assert_close(model.backbone.bn2.running_mean, fresh.backbone.bn2.running_mean)
    assert not torch.allclose(model.head.weight, fresh.head.weight)


def test_two_stage_fine_tunes_only_the_top_stages(dataset, tmp_path):
    config = resolve_config(None, TINY_CNN + ["mode=two-stage", "head_epochs=2", "epochs=2",
                                              "unfreeze=1", "aug_passes=1", "patience=0"])
    torch.manual_seed(config.seed)
    from eutirads.models import create_model

    fresh = create_model("seed-cnn", num_classes=3, weights="none", filters=[8], dense=16)
    train(dataset, config, tmp_path / "run", progress=False)
    model, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    first, last = model.stages[0][0][0].weight, model.stages[-1][0].weight
    torch.testing.assert_close(first, fresh.stages[0][0][0].weight)
    assert not torch.allclose(last, fresh.stages[-1][0].weight)
    with (tmp_path / "run" / "history.csv").open() as handle:
        phases = [row["phase"] for row in csv.DictReader(handle)]
    assert phases == ["head", "head", "finetune", "finetune"]


def test_an_undecodable_image_is_skipped_and_reported_and_training_goes_on(dataset, tmp_path):
    rows = read_manifest(dataset)
    broken = next(r for r in rows if r["split"] == "train")
    (dataset / broken["path"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    config = resolve_config(None, TINY_CNN + ["epochs=1"])
    result = train(dataset, config, tmp_path / "run", progress=False)
    assert len(result.skipped) == 1 and broken["path"] in result.skipped[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["skipped_images"] == 1
    assert sum(summary["data"]["train"].values()) == 29


def test_a_missing_dataset_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        train(tmp_path / "nowhere", resolve_config(None, TINY_CNN), tmp_path / "run")


def test_a_dataset_without_splits_is_an_input_error(dataset, tmp_path):
    rows = read_manifest(dataset)
    for row in rows:
        row["split"] = ""
    write_manifest(dataset, rows)
    with pytest.raises(InputError, match="no labelled image in split 'train'.*dataset split"):
        train(dataset, resolve_config(None, TINY_CNN), tmp_path / "run")


def test_a_class_without_training_images_is_an_input_error(dataset, tmp_path):
    rows = read_manifest(dataset)
    for row in rows:
        if row["label"] == "3" and row["split"] == "train":
            row["split"] = "test"
    write_manifest(dataset, rows)
    with pytest.raises(InputError, match="class '3' has no training image"):
        train(dataset, resolve_config(None, TINY_CNN), tmp_path / "run")


def test_an_unknown_backbone_fails_before_any_image_is_read(dataset, tmp_path):
    with pytest.raises(ModelError, match="unknown model 'resnet9000'"):
        train(dataset, resolve_config(None, ["model=resnet9000"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cli_takes_overrides_after_options_and_reports_errors_in_one_line(dataset, tmp_path,
                                                                              capsys):
    code = main(["train", str(dataset), "--out", str(tmp_path / "run"), "--quiet",
                 *TINY_CNN, "epochs=1"])
    out = capsys.readouterr().out
    assert code == 0 and "trained seed-cnn" in out and "val macro-F1" in out
    code = main(["train", str(dataset), "--out", str(tmp_path / "bad"), "model=nonet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown model 'nonet'" in err


def test_cross_validation_reports_mean_and_spread_over_patient_folds(dataset, tmp_path):
    config = resolve_config(None, TINY_CNN + ["epochs=20", "augment=false"])
    result = cross_validate(dataset, config, tmp_path / "cv", k=3, progress=False)
    assert len(result.folds) == 3
    assert sum(f["n"] for f in result.folds) == 39  # train + val rows, test kept apart
    assert result.mean["accuracy"] > 0.6
    assert result.std["accuracy"] >= 0
    saved = json.loads((tmp_path / "cv" / "cv_results.json").read_text())
    assert saved["positive"] == ["4b", "4c", "5"] or saved["positive"] is None
    with (tmp_path / "cv" / "cv_predictions.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 39 and {p["fold"] for p in predictions} == {"0", "1", "2"}


def test_high_suspicion_sets_follow_the_label_scheme():
    assert default_positive(["1", "2", "3", "4", "5"]) == ["4", "5"]
    assert default_positive(["2", "3", "4a", "4b", "4c", "5"]) == ["4b", "4c", "5"]
    assert not default_positive(["benign", "malignant"])  # no high-suspicion set


def test_class_weights_balance_the_training_counts():
    weights = balanced_class_weights(np.array([30, 10, 20]))
    np.testing.assert_allclose(weights * [30, 10, 20], 20.0)


def test_the_ordinal_loss_punishes_a_far_mistake_more_than_a_near_one():
    target = torch.tensor([0])
    near = torch.tensor([[0.0, 4.0, 0.0, 0.0, 0.0]])
    far = torch.tensor([[0.0, 0.0, 0.0, 0.0, 4.0]])
    ce_near = classification_loss(near, target)
    ce_far = classification_loss(far, target)
    torch.testing.assert_close(ce_near, ce_far)  # plain cross-entropy cannot tell them apart
    assert classification_loss(far, target, ordinal_weight=1.0) > \
        classification_loss(near, target, ordinal_weight=1.0) + 0.5


def test_the_eval_preset_is_exactly_the_shared_preprocessing():
    spec = PreprocessSpec(input_size=(32, 40), mean=(0.5,) * 3, std=(0.5,) * 3)
    image, _ = _screen(np.random.default_rng(1), 200)
    from eutirads.preprocess import crop_for_model, resize_to_input

    resized = resize_to_input(crop_for_model(image, spec), spec)
    np.testing.assert_array_equal(eval_transform(spec)(resized), prepare(image, spec))


def test_the_train_preset_augments_but_keeps_shape_and_range():
    spec = PreprocessSpec(input_size=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3)
    image = np.tile(np.linspace(50, 255, 32).astype(np.uint8), (32, 1))[..., None].repeat(3, 2)
    augment = train_transform(spec, rotation=20, shift=0.1, shear=5, zoom=0.1, brightness=0.2,
                              hflip=True)
    torch.manual_seed(0)
    outs = [augment(image) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) and o.dtype == np.float32 for o in outs)
    assert all(0.0 <= o.min() and o.max() <= 1.0 for o in outs)
    assert not np.allclose(outs[0], outs[1])
    # Nearest fill: no black appears where the warp leaves the picture (all pixels >= 50).
    assert min(o.min() for o in outs) > 0.1
