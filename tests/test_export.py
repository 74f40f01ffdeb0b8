"""`export_bundle` writes a bundle whose ONNX model matches PyTorch, and refuses what it
cannot export faithfully."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export needs the training extra (torch)")

from eutirads.errors import ModelError  # noqa: E402
from eutirads.export import check_parity, export_bundle, head_weights  # noqa: E402
from eutirads.export.exporter import _to_onnx  # noqa: E402
from eutirads.inference import Predictor  # noqa: E402
from eutirads.inference.bundle import read_metadata  # noqa: E402
from eutirads.models import create_model  # noqa: E402
from eutirads.preprocess import PreprocessSpec, prepare  # noqa: E402
from eutirads.training.checkpoint import save_checkpoint  # noqa: E402

CLASSES = ["1", "2", "3", "4", "5"]
SPEC = PreprocessSpec(input_size=(64, 80), mean=(0.2, 0.2, 0.2), std=(0.25, 0.25, 0.25),
                      class_names=tuple(CLASSES))


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("seed-cnn", num_classes=len(CLASSES), weights="none",
                         filters=(8, 16), dense=16)
    # Random batch-norm statistics, so the export is checked on more than identity layers.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _frame(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """A scanner-like frame: black screen, a textured image area, a line of 'text'."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[15:110, 25:150] = rng.integers(40, 220, size=(95, 125, 1), dtype=np.uint8)
    frame[3:6, 5:60] = 255
    return frame


def _make_run(root, *, test_metrics: dict | None = None, tta: bool = False):
    run = root / "run"
    model = _tiny_model()
    save_checkpoint(run / "checkpoints" / "best.pt", model, model_name="seed-cnn",
                    model_kwargs={"filters": [8, 16], "dense": 16},
                    class_names=CLASSES, preprocess=SPEC.to_dict(),
                    config={"model": "seed-cnn", "mode": "finetune", "epochs": 3,
                            "weights": "/somewhere/private/w.pt", "tta": tta},
                    data_summary={"source": "phantom", "dataset": "/somewhere/private/ds",
                                  "train": {"images": 40}},
                    epoch=2, val_metrics={"macro_f1": 0.5})
    if test_metrics is not None:
        (run / "eval" / "test").mkdir(parents=True)
        (run / "eval" / "test" / "metrics.json").write_text(json.dumps(test_metrics))
    return run, model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run, model = _make_run(root, test_metrics={
        "split": "test", "n": 12, "n_patients": 10,
        "summary": {"accuracy": 0.75, "macro_f1": 0.7},
        "bootstrap": {"ci": {"accuracy": {"low": 0.5, "high": 0.9, "n": 100}}}})
    bundle = export_bundle(run, root / "bundle")
    return bundle, model


def test_export_writes_every_file_of_the_bundle(exported):
    bundle, _ = exported
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["bundle.json", "cam_head.npz", "model.onnx", "model_card.md",
                     "preprocess.json"]
    meta = read_metadata(bundle)
    assert meta["format_version"] == 2 and meta["name"] == "run"
    assert list(meta["components"]) == ["classifier"]
    classifier = meta["components"]["classifier"]
    assert classifier["class_names"] == CLASSES and classifier["model"] == "model.onnx"
    assert classifier["preprocess"] == "preprocess.json" and classifier["tta"] is False
    assert classifier["outputs"] == ["logits", "features"]
    assert classifier["parity"]["max_abs_logits"] < 1e-4
    assert classifier["exporter"] == "torchscript"  # the fast path; dynamo is the fallback
    assert PreprocessSpec.load(bundle / "preprocess.json") == SPEC


def test_model_card_states_intended_use_limits_and_test_metrics(exported):
    card = (exported[0] / "model_card.md").read_text()
    assert "never replaces, the radiologist's judgement" in card
    assert "Trained on synthetic phantom images" in card
    assert "| Accuracy | 0.750 | 0.500-0.900 |" in card
    assert "/somewhere/private" not in card  # paths stay out of the card
    assert "- dataset: ds" in card


def test_head_weights_are_the_linear_layer_of_the_model():
    model = _tiny_model()
    weight, bias = head_weights(model)
    np.testing.assert_allclose(weight, model.head.weight.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(bias, model.head.bias.detach().numpy(), atol=1e-6)


def test_onnx_predictions_match_pytorch_on_a_real_preprocessed_image(exported):
    bundle, model = exported
    predictor = Predictor(bundle)
    image = _frame(3)
    result = predictor.predict(image)
    with torch.no_grad():
        logits = model(torch.from_numpy(prepare(image, SPEC))[None])[0]
    expected = torch.softmax(logits.double(), 0).numpy()
    got = np.array([result.probabilities[c] for c in CLASSES])
    assert np.abs(got - expected).max() < 1e-5
    assert result.label == CLASSES[int(expected.argmax())]


def test_the_bundle_takes_any_batch_size(exported):
    predictor = Predictor(exported[0])
    batch = np.stack([prepare(_frame(s), SPEC) for s in range(5)])
    logits, features = predictor.run(batch)
    assert logits.shape == (5, 5) and features.shape[0] == 5 and features.shape[1] == 16


def test_parity_check_fails_loudly_when_onnx_and_pytorch_disagree(tmp_path):
    onnx_path = tmp_path / "model.onnx"
    _to_onnx(_tiny_model(seed=0), SPEC, onnx_path)
    check_parity(_tiny_model(seed=0), onnx_path, SPEC)  # the same weights pass
    with pytest.raises(ModelError, match="ONNX logits differ from PyTorch"):
        check_parity(_tiny_model(seed=1), onnx_path, SPEC)


def test_a_network_the_torchscript_exporter_refuses_is_exported_by_dynamo(tmp_path,
                                                                         monkeypatch):
    real_export = torch.onnx.export

    def torchscript_fails(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise RuntimeError("cannot script this")
        return real_export(*args, dynamo=True, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", torchscript_fails)
    onnx_path = tmp_path / "model.onnx"
    assert _to_onnx(_tiny_model(), SPEC, onnx_path) == "dynamo"
    check_parity(_tiny_model(), onnx_path, SPEC)


def test_a_head_that_is_not_pool_plus_linear_is_refused():
    model = _tiny_model()

    class Squashed(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_features = inner, inner.num_features

        def forward_features(self, x):
            return self.inner.forward_features(x)

        def forward_head(self, features):
            return torch.tanh(self.inner.forward_head(features) * 5)

    with pytest.raises(ModelError, match="not global-average-pooling"):
        head_weights(Squashed(model))


def test_a_bundle_of_another_format_version_is_a_one_line_error(exported, tmp_path):
    bundle = tmp_path / "old"
    bundle.mkdir()
    for file in exported[0].iterdir():
        (bundle / file.name).write_bytes(file.read_bytes())
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["format_version"] = 99
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"bundle format 99 is not supported") as info:
        Predictor(bundle)
    assert "\n" not in str(info.value)


def test_a_folder_without_a_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model bundle"):
        Predictor(tmp_path)


def test_export_cli_reports_a_run_without_checkpoints_in_one_line(tmp_path, capsys):
    from eutirads.cli import main

    (tmp_path / "empty-run").mkdir()
    assert main(["export", str(tmp_path / "empty-run"), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "no checkpoints/best.pt" in err
    assert not (tmp_path / "bundle").exists()


def test_export_cli_exports_a_run_with_mirror_tta_quietly(tmp_path):
    """The console script end to end (a fresh interpreter, so the exporter's own loggers are
    live): one summary line, and a bundle whose predictor averages the mirror image."""
    run, model = _make_run(tmp_path, tta=True)
    proc = subprocess.run([sys.executable, "-m", "eutirads", "export", str(run), "--out",
                           str(tmp_path / "bundle"), "--name", "demo-model"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exported seed-cnn (5 classes, ONNX max |diff| ")
    assert proc.stdout.count("\n") == 1
    assert "INFO" not in proc.stderr
    predictor = Predictor(tmp_path / "bundle")
    assert predictor.metadata["name"] == "demo-model"
    assert predictor.tta and "mirror image" in predictor.model_card
    image = _frame(5)
    x = torch.from_numpy(prepare(image, SPEC))[None]
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(torch.flip(x, dims=[3])).softmax(1))[0] / 2
    got = predictor.predict(image)
    np.testing.assert_allclose([got.probabilities[c] for c in CLASSES], expected.numpy(),
                               atol=1e-5)
    assert got.heatmap.shape == image.shape[:2]


def _copy_bundle(source, target):
    target.mkdir()
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def test_a_format_1_bundle_still_loads_as_a_classifier(exported, tmp_path):
    """Bundles exported (and registered in the web app) before format 2 keep working: their
    settings at the top level of bundle.json become the classifier's."""
    bundle = _copy_bundle(exported[0], tmp_path / "v1")
    meta = json.loads((bundle / "bundle.json").read_text())
    classifier = meta.pop("components")["classifier"]
    for key in ("model", "preprocess", "cam_head"):
        classifier.pop(key)
    (bundle / "bundle.json").write_text(json.dumps({**meta, **classifier, "format_version": 1}))
    old, new = Predictor(bundle), Predictor(exported[0])
    assert old.class_names == CLASSES and old.metadata["test_metrics"]["n"] == 12
    assert read_metadata(bundle)["components"]["classifier"]["model"] == "model.onnx"
    assert not old.has_localiser and old.localiser is None
    image = _frame(7)
    assert old.predict(image).probabilities == new.predict(image).probabilities
    assert "nodule" not in old.predict(image).to_dict()
    assert old.predict(image).to_dict()["box_source"] == "none"


def test_a_bundle_naming_a_file_outside_itself_is_refused(exported, tmp_path):
    bundle = _copy_bundle(exported[0], tmp_path / "evil")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["components"]["classifier"]["model"] = "../model.onnx"
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a plain file name"):
        Predictor(bundle)


def test_a_bundle_without_components_is_a_one_line_error(exported, tmp_path):
    bundle = _copy_bundle(exported[0], tmp_path / "empty")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["components"] = {}
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="lists no components"):
        Predictor(bundle)
