"""A tiny real bundle for tests that need the paths around a model, not a good model: a
seeded seed-cnn (three classes 3/4/5, 48x48 input) through the real export path; and the
quick frozen localiser recipe the tests that need a real outline train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def tiny_bundle(out: Path, **export_options: Any) -> Path:
    """Export the tiny model to `out`; `export_options` go to `export_model`."""
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export import export_model
    from eutirads.models import create_model
    from eutirads.preprocess import PreprocessSpec

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=3, weights="none", filters=(8,), dense=8)
    spec = PreprocessSpec(input_size=(48, 48), mean=(0.3,) * 3, std=(0.2,) * 3,
                          class_names=("3", "4", "5"))
    return export_model(model.eval(), spec, out, name="tiny", model_name="seed-cnn",
                        **export_options)


# A frozen Lite0 localiser at 96x128 that outlines the phantom's nodules in seconds.
QUICK_LOCALISER: dict[str, Any] = {
    "task": "segment", "model": "tf_efficientnet_lite0", "weights": "imagenet",
    "input_size": [96, 128], "mode": "frozen", "epochs": 25, "batch_size": 8, "lr": 0.01,
    "aug_passes": 1, "monitor": "dice", "patience": 0, "min_region_px": 8,
    "num_threads": 2}
