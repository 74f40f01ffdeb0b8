"""Export a trained model to a bundle that onnxruntime serves without torch.

`export_model` is the core (a torch model + its preprocessing -> bundle folder); it
checks the ONNX graph against PyTorch before anything is kept. `export_bundle` reads a
run's best checkpoint (and its test evaluation, when there is one) and calls it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import __version__
from ..errors import ModelError
from ..inference.bundle import (BUNDLE_FORMAT, CARD_FILE, HEAD_FILE, INPUT_NAME, METADATA_FILE,
                                MODEL_FILE, OUTPUT_NAMES, PREPROCESS_FILE, model_sha256)
from ..preprocess import PreprocessSpec
from .card import model_card

__all__ = ["export_model", "export_bundle", "head_weights", "PARITY_TOLERANCE"]

log = logging.getLogger(__name__)

# The largest |ONNX - PyTorch| accepted on the logits. The feature map is held to the same
# tolerance relative to its own scale (its values reach tens where logits stay small).
PARITY_TOLERANCE = 1e-4


def head_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """(weight KxC, bias K) of the model's head, read through its public interface.

    The agreed head is global average pooling + a linear layer, so probing it with a 1x1
    feature map that is one-hot in channel c gives weight[:, c] + bias. The result is then
    checked on a random feature map: a head that is not pool + linear cannot give
    gradient-free heatmaps and fails here, loudly, instead of drawing wrong ones.
    """
    import torch

    channels = _feature_channels(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probes = torch.cat([torch.zeros(1, channels), torch.eye(channels)])[..., None, None]
            out = model.forward_head(probes).double()
            bias = out[0]
            weight = (out[1:] - bias).T  # KxC
            check = torch.randn(2, channels, 5, 4)
            expected = check.double().mean(dim=(2, 3)) @ weight.T + bias
            got = model.forward_head(check).double()
    finally:
        model.train(was_training)
    error = float((got - expected).abs().max())
    if error > 1e-3 * max(1.0, float(got.abs().max())):
        raise ModelError(f"the model's head is not global-average-pooling + linear (probe error "
                         f"{error:.2g}); heatmaps cannot be exported for it")
    return weight.float().numpy(), bias.float().numpy()


def _feature_channels(model) -> int:
    channels = getattr(model, "num_features", None)
    if isinstance(channels, int) and channels > 0:
        return channels
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "in_features"):
        return int(head.in_features)
    raise ModelError("cannot tell the number of feature channels of the model "
                     "(no num_features or head.in_features)")


def _wrapper(model):
    import torch

    class LogitsAndFeatures(torch.nn.Module):
        """forward(x) -> (logits, last feature map): the two outputs of the bundle."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            features = self.inner.forward_features(x)
            return self.inner.forward_head(features), features

    return LogitsAndFeatures(model).eval()


def _to_onnx(model, spec: PreprocessSpec, path: Path) -> str:
    """Write model.onnx with a dynamic batch axis; returns which exporter succeeded.

    The dynamo-based exporter is torch's supported path; the TorchScript one is kept as a
    fallback for a backbone that dynamo cannot trace."""
    import torch

    wrapped = _wrapper(model)
    height, width = spec.input_size
    example = (torch.randn(2, 3, height, width),)
    with _quiet_loggers("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo"):
        return _export_with_fallback(torch, wrapped, example, path)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter's passes log every rewrite at INFO; keep the CLI's output to our summary."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_with_fallback(torch, wrapped, example, path: Path) -> str:
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, example, str(path), dynamo=True, verbose=False, external_data=False,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        return "dynamo"
    except Exception as exc:  # the exporter raises many kinds; fall back, then fail loudly
        log.warning("dynamo ONNX export failed (%s); trying the TorchScript exporter",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, example, str(path), dynamo=False, opset_version=17,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAMES[0]: {0: "batch"},
                              OUTPUT_NAMES[1]: {0: "batch"}})
        return "torchscript"
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"ONNX export failed ({reason})") from None


def check_parity(model, onnx_path: Path, spec: PreprocessSpec, *,
                 tolerance: float = PARITY_TOLERANCE, seed: int = 0) -> dict[str, float]:
    """Run ONNX and PyTorch on the same inputs (batches of 1 and 3: random, flat, extreme)
    and raise ModelError when they differ by more than `tolerance`."""
    import onnxruntime as ort
    import torch

    height, width = spec.input_size
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(1, 3, height, width, generator=generator),
              torch.cat([torch.randn(1, 3, height, width, generator=generator),
                         torch.zeros(1, 3, height, width),
                         torch.full((1, 3, height, width), 2.5)])]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"logits": 0.0, "features": 0.0, "features_scale": 0.0}
    model.eval()
    for x in inputs:
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model.forward_head(features)
        onnx_logits, onnx_features = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        if onnx_logits.shape != tuple(logits.shape) or onnx_features.shape != tuple(features.shape):
            raise ModelError(f"{onnx_path}: ONNX output shapes {onnx_logits.shape}, "
                             f"{onnx_features.shape} differ from PyTorch's "
                             f"{tuple(logits.shape)}, {tuple(features.shape)}")
        worst["logits"] = max(worst["logits"], float(np.abs(onnx_logits - logits.numpy()).max()))
        worst["features"] = max(worst["features"],
                                float(np.abs(onnx_features - features.numpy()).max()))
        worst["features_scale"] = max(worst["features_scale"], float(features.abs().max()))
    if worst["logits"] >= tolerance:
        raise ModelError(f"{onnx_path}: ONNX logits differ from PyTorch by {worst['logits']:.3g} "
                         f"(limit {tolerance:g}); the export is not trustworthy")
    if worst["features"] >= tolerance * max(1.0, worst["features_scale"]):
        raise ModelError(f"{onnx_path}: ONNX feature map differs from PyTorch by "
                         f"{worst['features']:.3g} (limit {tolerance:g} x scale "
                         f"{worst['features_scale']:.3g})")
    return {"max_abs_logits": worst["logits"], "max_abs_features": worst["features"]}


def export_model(model, spec: PreprocessSpec, out: str | os.PathLike[str], *,
                 name: str, model_name: str, data_summary: Mapping[str, Any] | None = None,
                 val_metrics: Mapping[str, float] | None = None,
                 test_metrics: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle for `model` (with forward_features / forward_head) into `out`.

    Everything is built in a temporary folder beside `out` and moved in only after the
    parity check passed, so a failed export never leaves a half bundle or spoils an old one.
    """
    if not spec.class_names:
        raise ModelError("the preprocessing names no classes; cannot export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder")
    weight, bias = head_weights(model)
    if weight.shape[0] != len(spec.class_names):
        raise ModelError(f"the head has {weight.shape[0]} outputs for "
                         f"{len(spec.class_names)} classes")
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        exporter = _to_onnx(model, spec, work / MODEL_FILE)
        parity = check_parity(model, work / MODEL_FILE, spec)
        np.savez(work / HEAD_FILE, weight=weight, bias=bias)
        spec.save(work / PREPROCESS_FILE)
        digest = model_sha256(work)
        metadata = {
            "format_version": BUNDLE_FORMAT,
            "name": name,
            "version": digest[:12],
            "model_name": model_name,
            "eutirads_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "class_names": list(spec.class_names),
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, *spec.input_size]},
            "outputs": list(OUTPUT_NAMES),
            "feature_channels": int(weight.shape[1]),
            "exporter": exporter,
            "parity": parity,
            "model_sha256": digest,
            "data_summary": dict(data_summary or {}),
            "val_metrics": dict(val_metrics or {}),
            "test_metrics": dict(test_metrics) if test_metrics else None,
            **dict(extra or {}),
        }
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n",
                                          encoding="utf-8")
        (work / CARD_FILE).write_text(model_card(metadata, spec), encoding="utf-8")
        out.mkdir(exist_ok=True)
        for file in work.iterdir():
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _test_metrics(run: Path) -> dict[str, Any] | None:
    """The summary of RUN/eval/test/metrics.json, when the run was evaluated on its test split."""
    file = run / "eval" / "test" / "metrics.json"
    if not file.is_file():
        return None
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log.warning("%s: unreadable; the model card will lack test metrics", file)
        return None
    keep = ("split", "n", "n_patients", "summary", "positive")
    out = {k: metrics.get(k) for k in keep if k in metrics}
    if isinstance(metrics.get("bootstrap"), dict):
        out["ci"] = metrics["bootstrap"].get("ci")
    return out


def export_bundle(run: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  name: str | None = None) -> Path:
    """Export a run's best checkpoint (or a .pt file) to the bundle folder `out`."""
    from ..training.checkpoint import checkpoint_file, load_checkpoint

    file = checkpoint_file(run)
    model, payload = load_checkpoint(file)
    spec = PreprocessSpec.from_dict(payload["preprocess"])
    class_names = [str(c) for c in payload["class_names"]]
    if spec.class_names and list(spec.class_names) != class_names:
        raise ModelError(f"{file}: preprocess class names {list(spec.class_names)} differ from "
                         f"the checkpoint's {class_names}")
    spec = spec.replace(class_names=class_names)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    config = payload.get("config") or {}
    data_summary = dict(payload.get("data_summary") or {})
    if data_summary.get("dataset"):
        # The folder's name only: a full path may say more about a site than a card should.
        data_summary["dataset"] = Path(str(data_summary["dataset"])).name
    return export_model(
        model, spec, out, name=name or run_dir.name, model_name=payload["model_name"],
        data_summary=data_summary, val_metrics=payload.get("val_metrics"),
        test_metrics=_test_metrics(run_dir),
        extra={"epoch": payload.get("epoch"), "checkpoint": file.name,
               "tta": bool(config.get("tta", False)), "training": _training_summary(config)})


def _training_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """The few resolved settings a model card reader wants (no paths: they may be private)."""
    keys = ("model", "weights", "mode", "epochs", "head_epochs", "crop", "loss",
            "label_smoothing", "augment", "tta", "seed", "batch_size", "lr", "finetune_lr")
    return {k: config[k] for k in keys if k in config and not isinstance(config[k], (dict, list))
            and not (k == "weights" and config[k] not in ("imagenet", "none"))}
