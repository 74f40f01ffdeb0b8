"""`torchrun --nproc_per_node 2 -m eutirads train`: two CPU processes (gloo) train with
DistributedDataParallel; rank 0 writes one run folder whose checkpoint has the format of a
single-process run's, loads, and predicts as well."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra")

from eutirads.data.manifest import write_manifest  # noqa: E402
from eutirads.imageio import save_png  # noqa: E402
from eutirads.training.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from eutirads.training.config import resolve_config  # noqa: E402
from eutirads.training.engine import predict_proba  # noqa: E402
from eutirads.training.data import load_images, read_training_rows  # noqa: E402
from eutirads.training.run import train  # noqa: E402
from eutirads.preprocess import PreprocessSpec  # noqa: E402

pytestmark = pytest.mark.slow

CLASSES = ("2", "3", "4")
RECIPE = ["model=seed-cnn", "weights=none", "input_size=32", "mode=finetune", "lr=0.01",
          "finetune_lr=0.01", "batch_size=8", "model_kwargs={filters: [8], dense: 16}",
          "epochs=12", "patience=0", "augment=false", "num_threads=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes x 16 small screens whose nodule brightness gives the class."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("ddp") / "ds"
    rows = []
    for c, label in enumerate(CLASSES):
        for i in range(16):
            image = np.zeros((90, 120, 3), np.uint8)
            image[8:82, 12:108] = rng.integers(30, 80, size=(74, 96, 1), dtype=np.uint8)
            x0, y0 = int(rng.integers(20, 70)), int(rng.integers(14, 44))
            image[y0:y0 + 24, x0:x0 + 24] = 100 + 70 * c
            path = f"images/{label}/{label}_{i:02d}.png"
            save_png(image, root / path)
            rows.append({"path": path, "label": label, "patient_id": f"p{c}-{i}",
                         "split": "train" if i < 10 else "val" if i < 13 else "test",
                         "x0": x0, "y0": y0, "x1": x0 + 24, "y1": y0 + 24, "source": "test"})
    write_manifest(root, rows)
    return root


def test_two_process_torchrun_training_writes_one_run_that_loads_and_predicts(dataset, tmp_path):
    run = tmp_path / "ddp-run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "eutirads", "train", str(dataset), "--out", str(run), "--quiet", *RECIPE],
        capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained seed-cnn") == 1  # rank 0 reports, rank 1 stays quiet
    import json

    assert json.loads((run / "summary.json").read_text())["processes"] == 2

    single = train(dataset, resolve_config(None, RECIPE), tmp_path / "single", progress=False)
    ddp_ckpt, one_ckpt = read_checkpoint(run), read_checkpoint(single.run)
    assert set(ddp_ckpt) == set(one_ckpt)  # the same checkpoint format
    assert set(ddp_ckpt["state_dict"]) == set(one_ckpt["state_dict"])
    assert ddp_ckpt["class_names"] == one_ckpt["class_names"]

    model, payload = load_checkpoint(run)
    spec = PreprocessSpec.from_dict(payload["preprocess"])
    rows = read_training_rows(dataset, train_split="train", val_split="test")
    images, kept, _ = load_images(rows.val, spec, progress=False)
    proba = predict_proba(model, spec, images, resolve_config(None, RECIPE))
    truth = np.array([list(payload["class_names"]).index(rows.val[i].label) for i in kept])
    assert proba.shape == (len(images), 3) and np.allclose(proba.sum(1), 1, atol=1e-4)
    assert (proba.argmax(1) == truth).mean() >= 0.6  # it learned (chance: 0.33)


def test_two_process_two_stage_training_over_the_feature_cache_completes(dataset, tmp_path):
    """Both phases under DDP: the head on cached pooled features, then the top stage over the
    cached (augmented) output of the frozen bottom, which stays as initialised."""
    import csv
    import json

    run = tmp_path / "two-stage"
    recipe = [r for r in RECIPE if not r.startswith(("epochs=", "augment=", "mode="))]
    recipe += ["mode=two-stage", "head_epochs=2", "epochs=2", "unfreeze=1", "augment=true",
               "aug_passes=2"]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "eutirads", "train", str(dataset), "--out", str(run), "--quiet", *recipe],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
    with (run / "history.csv").open() as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["head"] * 2 + ["finetune"] * 2
    from eutirads.models import create_model

    torch.manual_seed(resolve_config(None, recipe).seed)
    fresh = create_model("seed-cnn", num_classes=3, weights="none", filters=[8], dense=16)
    model, _ = load_checkpoint(run / "checkpoints" / "last.pt")
    torch.testing.assert_close(model.stages[0][0][0].weight, fresh.stages[0][0][0].weight)
    assert not torch.allclose(model.stages[-1][0].weight, fresh.stages[-1][0].weight)
