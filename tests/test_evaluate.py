"""`evaluate_run` and `eutirads evaluate`: real checkpoint, real images, every output file,
and one-line errors for a missing dataset or split."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="evaluation needs the training extra (torch)")

from eutirads.cli import main  # noqa: E402
from eutirads.data.manifest import write_manifest  # noqa: E402
from eutirads.errors import InputError  # noqa: E402
from eutirads.evaluation import evaluate_run, metrics as M  # noqa: E402
from eutirads.imageio import save_png  # noqa: E402
from eutirads.models import create_model  # noqa: E402
from eutirads.preprocess import PreprocessSpec, prepare  # noqa: E402
from eutirads.training.checkpoint import save_checkpoint  # noqa: E402

CLASSES = ["2", "3", "4", "5"]
SPEC = PreprocessSpec(input_size=(48, 48), mean=(0.3,) * 3, std=(0.2,) * 3, crop="roi",
                      class_names=tuple(CLASSES))


def _eutirads(capsys, *args: str) -> SimpleNamespace:
    """Run the CLI in this process (same code path as the console script, without paying
    for a fresh interpreter and torch import per call)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

def _frame(rng, brightness: int) -> np.ndarray:
    frame = np.zeros((90, 120, 3), np.uint8)
    frame[10:85, 15:110] = np.clip(rng.normal(brightness, 25, size=(75, 95, 1)), 1, 255)
    frame[2:4, 2:40] = 255  # burned-in 'text'
    return frame


def _dataset(root, *, corrupt: bool = False):
    """12 test images of 6 patients (two images each), classes 2-4 only (no 5), plus a train
    row; a corrupt test image when asked."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        label = CLASSES[i % 3]
        path = f"img/{i:02d}.png"
        save_png(_frame(rng, 60 + 40 * (i % 3)), root / path)
        rows.append({"path": path, "label": label, "patient_id": f"P{i // 2}", "split": "test",
                     "x0": "30", "y0": "20", "x1": "90", "y1": "70", "source": "synthetic"})
    save_png(_frame(rng, 100), root / "img/train.png")
    rows.append({"path": "img/train.png", "label": "5", "patient_id": "P99", "split": "train"})
    if corrupt:
        (root / "img/bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
        rows.append({"path": "img/bad.png", "label": "3", "patient_id": "P50", "split": "test"})
    write_manifest(root, rows)
    return root


def _run(root, dataset, *, tta: bool = False):
    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=4, weights="none", filters=(8,), dense=8)
    run = root / "run"
    save_checkpoint(run / "checkpoints" / "best.pt", model, model_name="seed-cnn",
                    model_kwargs={"filters": [8], "dense": 8}, class_names=CLASSES,
                    preprocess=SPEC.to_dict(), config={"mode": "finetune", "epochs": 4,
                                                       "tta": tta},
                    data_summary={"dataset": str(dataset)}, epoch=3, val_metrics={})
    (run / "summary.json").write_text(json.dumps({"epochs_run": 4}))
    return run, model.eval()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    dataset = _dataset(root / "data", corrupt=True)
    run, model = _run(root, dataset)
    metrics = evaluate_run(run, n_boot=200, progress=False)
    return run, model, dataset, metrics


def test_evaluation_writes_report_plots_and_metrics(evaluated):
    run = evaluated[0]
    out = run / "eval" / "test"
    for name in ("report.md", "report.html", "metrics.json", "predictions.csv", "confusion.png",
                 "roc.png", "reliability.png"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    md = (out / "report.md").read_text()
    assert "| class | precision | recall | f1-score | support |" in md
    assert "![Confusion matrix](confusion.png)" in md
    # metrics.json is strict JSON: undefined values are null, not NaN.
    json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_a_bad_image_is_skipped_and_reported_and_the_rest_evaluated(evaluated):
    metrics = evaluated[3]
    assert metrics["n"] == 12 and metrics["n_patients"] == 6
    assert len(metrics["skipped"]) == 1 and "img/bad.png" in metrics["skipped"][0]
    assert np.array(metrics["confusion_matrix"]).sum() == 12


def test_predictions_are_the_model_on_preprocess_prepare(evaluated):
    run, model, dataset, _ = evaluated
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    from eutirads.imageio import load_rgb

    for row in rows[:4]:
        image = load_rgb(dataset / row["path"])
        x = torch.from_numpy(prepare(image, SPEC, (30, 20, 90, 70)))[None]
        with torch.no_grad():
            expected = model(x).softmax(1)[0].numpy()
        got = np.array([float(row[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert row["predicted"] == CLASSES[int(expected.argmax())]


def test_reported_metrics_agree_with_the_predictions_file(evaluated):
    run, _, _, metrics = evaluated
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    y_true = [r["label"] for r in rows]
    y_pred = [r["predicted"] for r in rows]
    assert metrics["summary"]["accuracy"] == pytest.approx(M.accuracy(y_true, y_pred))
    assert metrics["confusion_matrix"] == M.confusion_matrix(y_true, y_pred, CLASSES).tolist()
    assert metrics["high_risk"]["positive"] == ["4", "5"]


def test_a_class_absent_from_the_split_is_reported_as_undefined(evaluated):
    run, _, _, metrics = evaluated
    assert metrics["absent_labels"] == ["5"]
    assert metrics["report"]["per_class"]["5"]["recall"] is None
    assert metrics["roc"]["per_class"]["5"] is None
    assert "have no image in this split" in (run / "eval" / "test" / "report.md").read_text()


def test_bootstrap_intervals_are_by_patient_and_bracket_the_estimate(evaluated):
    metrics = evaluated[3]
    boot = metrics["bootstrap"]
    assert boot["unit"] == "patient" and boot["n_boot"] == 200
    ci, acc = boot["ci"]["accuracy"], metrics["summary"]["accuracy"]
    assert ci["low"] <= acc <= ci["high"]


def test_explicit_positive_labels_and_mirror_tta_are_honoured(tmp_path):
    dataset = _dataset(tmp_path / "data")
    run, model = _run(tmp_path, dataset, tta=True)
    metrics = evaluate_run(run, positive="5,4", n_boot=0, progress=False)
    assert metrics["high_risk"]["positive"] == ["5", "4"] and metrics["tta"] is True
    assert metrics["bootstrap"] is None
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    x = torch.from_numpy(prepare(np.asarray(__import__("PIL.Image").Image.open(
        dataset / row["path"]).convert("RGB")), SPEC, (30, 20, 90, 70)))[None]
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(torch.flip(x, dims=[3])).softmax(1))[0] / 2
    got = np.array([float(row[f"p_{c}"]) for c in CLASSES])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_a_missing_split_is_a_one_line_error(evaluated):
    run = evaluated[0]
    with pytest.raises(InputError, match="no labelled image in split 'val'"):
        evaluate_run(run, split="val", n_boot=0, progress=False)


def test_positive_labels_the_model_does_not_know_are_refused_up_front(evaluated):
    run = evaluated[0]
    with pytest.raises(InputError, match=r"--positive 4b,5: must name some but not all"):
        evaluate_run(run, positive="4b,5", n_boot=0, progress=False)


def test_evaluate_cli_reports_a_missing_dataset_in_one_line(evaluated, tmp_path, capsys):
    run = evaluated[0]
    proc = _eutirads(capsys, "evaluate", str(run), "--dataset", str(tmp_path / "gone"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"eutirads: error: {tmp_path / 'gone'}: dataset folder not "
                                   "found (pass --dataset DATASET)")


def test_evaluate_cli_prints_a_one_line_summary(evaluated, capsys):
    run = evaluated[0]
    proc = _eutirads(capsys, "evaluate", str(run), "--bootstrap", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("evaluated 12 images (6 patients, 1 skipped) of split 'test'")
    assert not math.isnan(json.loads((run / "eval" / "test" / "metrics.json").read_text())
                          ["summary"]["accuracy"])


def test_the_exported_bundle_predicts_what_the_evaluation_measured(evaluated, tmp_path):
    """One preprocessing everywhere: evaluate (PyTorch) and the bundle (ONNX, its own crop
    bookkeeping for heatmaps) give the same probabilities on every test image, and the
    model card carries the evaluation's numbers."""
    from eutirads.export import export_bundle
    from eutirads.inference import Predictor

    run, _, dataset, metrics = evaluated
    predictor = Predictor(export_bundle(run, tmp_path / "bundle"))
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        result = predictor.predict(dataset / row["path"], box=(30, 20, 90, 70), heatmap=False)
        got = [result.probabilities[c] for c in CLASSES]
        np.testing.assert_allclose(got, [float(row[f"p_{c}"]) for c in CLASSES], atol=1e-5)
    accuracy = metrics["summary"]["accuracy"]
    assert f"| Accuracy | {accuracy:.3f} |" in predictor.model_card
    assert predictor.metadata["test_metrics"]["n"] == 12
