"""`eutirads demo`: the whole pipeline at small scale, and its work-folder safety."""

from __future__ import annotations

import json

import pytest
import torch

from eutirads.cli import main
from eutirads.demo import default_workdir, run_demo, served_metrics
from eutirads.errors import InputError

torch.set_num_threads(2)

# The default recipe's shape (lite0 ImageNet features on the nodule crop) at a size a test
# affords: 100 phantom screens, 128 px, the head alone on cached features.
SMALL = ["mode=frozen", "augment=false", "crop=roi", "input_size=128", "epochs=80",
         "lr=0.003", "patience=20"]
# The localiser's recipe shape at test size.
SMALL_LOCALISER = ["input_size=[64,96]", "epochs=12", "aug_passes=1", "min_region_px=8"]


@pytest.mark.slow
def test_the_demo_pipeline_learns_well_above_chance_at_small_scale(tmp_path):
    result = run_demo(tmp_path / "demo", n=100, overrides=SMALL,
                      localiser_overrides=SMALL_LOCALISER, progress=False,
                      echo=lambda message: None)
    # Five balanced classes: chance is 0.2.
    assert result.metrics["n"] >= 8
    assert result.metrics["summary"]["accuracy"] >= 0.5
    assert result.report.is_file() and (result.report.parent / "report.md").is_file()
    assert (result.bundle / "model.onnx").is_file()
    assert (result.bundle / "preprocess.json").is_file()
    spec = json.loads((result.bundle / "preprocess.json").read_text())
    assert spec["crop"] == "roi" and spec["class_names"] == ["1", "2", "3", "4", "5"]
    assert set(result.seconds) >= {"phantom", "import", "split", "train", "localiser",
                                   "measured", "evaluate", "export", "served"}
    # One bundle, the three models; the localiser learned something on the phantom's true
    # masks, and the descriptors are measured on its outline.
    meta = json.loads((result.bundle / "bundle.json").read_text())
    assert sorted(meta["components"]) == ["classifier", "localiser", "measured"]
    assert (result.bundle / "measured.onnx").is_file()
    # The bundle as served: its label and the measured descriptors on the test split.
    assert result.served["n"] == result.metrics["n"]
    assert result.served["macro_f1"] > 0.2
    assert 0.0 <= result.served["echogenicity_accuracy"] <= 1.0
    assert (result.bundle / "localiser.onnx").is_file()
    assert result.localiser_metrics["summary"]["dice"] > 0.3
    # The same figures again with patient-bootstrap intervals around them
    # (benchmarks/demo_heldout.py reports them so).
    again = served_metrics(result.bundle, result.dataset, n_boot=50)
    for key in ("macro_f1", "echogenicity_accuracy"):
        assert again[key] == result.served[key]
        low, high = again[f"{key}_ci"]
        assert 0.0 <= low <= again[key] and low <= high <= 1.0
    low, high = again["echogenicity_accuracy_ci"]  # a mean: its interval holds it
    assert again["echogenicity_accuracy"] <= high


def test_the_demo_work_folder_defaults_under_eutirads_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EUTIRADS_HOME", str(tmp_path / "home"))
    assert default_workdir() == tmp_path / "home" / "demo"


def test_the_demo_refuses_a_non_empty_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not made by 'eutirads demo'"):
        run_demo(tmp_path, n=10, progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_bad_recipe_override_fails_before_any_work(tmp_path, capsys):
    with pytest.raises(Exception, match="unknown config key"):
        run_demo(tmp_path / "demo", overrides=["epoch=3"], progress=False)
    assert not (tmp_path / "demo").exists()


def test_the_demo_cli_reports_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    code = main(["demo", "--workdir", str(tmp_path), "--no-serve", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not made by 'eutirads demo'" in err
