"""Export trained models to a bundle that onnxruntime serves without torch.

`export_models` is the core (a classifier and/or a localiser, each a torch model + its
preprocessing -> one bundle folder, format 2); it checks every ONNX graph against PyTorch
before anything is kept. `export_model` is its classifier-only form. `export_bundle` reads
runs' best checkpoints (and their test evaluations, when there are) and calls it.
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
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from ..errors import ModelError
from ..inference.bundle import (BUNDLE_FORMAT, CARD_FILE, CLASSIFIER, HEAD_FILE, INPUT_NAME,
                                LOCALISER, LOCALISER_FILE, LOCALISER_OUTPUTS,
                                LOCALISER_PREPROCESS_FILE, MEASURED, MEASURED_FILE,
                                MEASURED_INPUTS, METADATA_FILE, MODEL_FILE, OUTLINE,
                                OUTLINE_FILE, OUTLINE_INPUTS,
                                OUTPUT_NAMES, PREPROCESS_FILE, DESCRIPTOR_OUTPUT, OOD_FILE,
                                file_sha256, flat_metadata,
                                model_sha256)
from ..preprocess import PreprocessSpec
from ..training.outline import LOCALISER_DIR, OUTLINE_DIR
from .card import model_card

__all__ = ["Component", "export_models", "export_model", "export_bundle", "head_weights",
           "check_parity", "check_localiser_parity", "PARITY_TOLERANCE",
           "LOCALISER_DEFAULTS"]

log = logging.getLogger(__name__)

# The largest |ONNX - PyTorch| accepted on the logits. The feature map is held to the same
# tolerance relative to its own scale (its values reach tens where logits stay small).
PARITY_TOLERANCE = 1e-4
# The localiser's settings when its run names none: a pixel is nodule when its probability
# reaches `threshold`; regions under `min_region_px` pixels of the model's input grid are
# noise (about 0.1% of a 256x256 input).
LOCALISER_DEFAULTS = {"threshold": 0.5, "min_region_px": 64}


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


def descriptor_names(model) -> list[str]:
    """The model's descriptor heads, in output order (none for a category-only model)."""
    heads = getattr(model, "descriptor_heads", None)
    return list(heads.keys()) if heads is not None else []


def output_names(model) -> tuple[str, ...]:
    """The classifier's ONNX outputs: logits, features, then one per descriptor head."""
    return OUTPUT_NAMES + tuple(DESCRIPTOR_OUTPUT.format(name=n) for n in descriptor_names(model))


def _wrapper(model):
    import torch

    names = descriptor_names(model)

    class LogitsAndFeatures(torch.nn.Module):
        """forward(x) -> (logits, last feature map, descriptor logits...): the outputs of
        the bundle's classifier."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            features = self.inner.forward_features(x)
            if not names:
                return self.inner.forward_head(features), features
            heads = self.inner.forward_heads(features)
            return (heads["category"], features, *[heads[n] for n in names])

    return LogitsAndFeatures(model).eval()


def _to_onnx(model, spec: PreprocessSpec, path: Path) -> str:
    """Write the classifier's model.onnx with a dynamic batch axis; returns which exporter
    succeeded."""
    return _onnx_file(_wrapper(model), spec, path, output_names(model))


def _onnx_file(wrapped, spec: PreprocessSpec, path: Path, output_names: tuple[str, ...]) -> str:
    """TorchScript export first, the dynamo-based one as the fallback (for a network the
    tracer cannot follow, or a torch that no longer ships TorchScript export). Why that
    order: on our CNNs the two give the same graph speed in onnxruntime and the same parity,
    but TorchScript takes under a second where dynamo takes 13 s (Lite0 at 224 on 2 cores),
    which is a tenth of the demo's budget for two models. Height and width stay fixed."""
    import torch

    height, width = spec.input_size
    example = (torch.randn(2, 3, height, width),)
    with _quiet_loggers("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo"):
        return _export_with_fallback(torch, wrapped.eval(), example, path, output_names)


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


def _export_with_fallback(torch, wrapped, example, path: Path,
                          output_names: tuple[str, ...]) -> str:
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                wrapped, example, str(path), dynamo=False, opset_version=17,
                input_names=[INPUT_NAME], output_names=list(output_names),
                dynamic_axes={INPUT_NAME: {0: "batch"},
                              **{name: {0: "batch"} for name in output_names}})
        return "torchscript"
    except Exception as exc:  # the exporter raises many kinds; fall back, then fail loudly
        log.warning("TorchScript ONNX export failed (%s); trying the dynamo exporter",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, example, str(path), dynamo=True, verbose=False, external_data=False,
                input_names=[INPUT_NAME], output_names=list(output_names),
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        return "dynamo"
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"ONNX export failed ({reason})") from None


def check_parity(model, onnx_path: Path, spec: PreprocessSpec, *,
                 tolerance: float = PARITY_TOLERANCE, seed: int = 0) -> dict[str, float]:
    """Run ONNX and PyTorch on the same inputs (batches of 1 and 3: random, flat, extreme)
    and raise ModelError when they differ by more than `tolerance`."""
    import onnxruntime as ort
    import torch

    inputs = _parity_inputs(spec, seed)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"logits": 0.0, "features": 0.0, "features_scale": 0.0}
    names = descriptor_names(model)
    model.eval()
    for x in inputs:
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model.forward_head(features)
            heads = model.forward_heads(features) if names else {}
        onnx_logits, onnx_features, *onnx_heads = session.run(list(output_names(model)),
                                                              {INPUT_NAME: x.numpy()})
        for name, got in zip(names, onnx_heads):
            # Descriptor logits are held to the logits' tolerance (reported with them).
            worst["logits"] = max(worst["logits"], float(np.abs(got - heads[name].numpy()).max()))
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


def _parity_inputs(spec: PreprocessSpec, seed: int):
    """Batches of 1 and 3: random, flat, extreme."""
    import torch

    height, width = spec.input_size
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, height, width, generator=generator),
            torch.cat([torch.randn(1, 3, height, width, generator=generator),
                       torch.zeros(1, 3, height, width),
                       torch.full((1, 3, height, width), 2.5)])]


def check_localiser_parity(model, onnx_path: Path, spec: PreprocessSpec, *,
                           tolerance: float = PARITY_TOLERANCE, seed: int = 0) -> dict[str, float]:
    """The localiser's ONNX logits against PyTorch's on the same inputs; ModelError when
    they differ by more than `tolerance` times their scale (at least 1)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst, scale = 0.0, 0.0
    model.eval()
    for x in _parity_inputs(spec, seed):
        with torch.no_grad():
            expected = model(x)
        (got,) = session.run(list(LOCALISER_OUTPUTS), {INPUT_NAME: x.numpy()})
        if got.shape != tuple(expected.shape):
            raise ModelError(f"{onnx_path}: ONNX output shape {got.shape} differs from "
                             f"PyTorch's {tuple(expected.shape)}")
        worst = max(worst, float(np.abs(got - expected.numpy()).max()))
        scale = max(scale, float(expected.abs().max()))
    if worst >= tolerance * max(1.0, scale):
        raise ModelError(f"{onnx_path}: ONNX localiser logits differ from PyTorch by {worst:.3g} "
                         f"(limit {tolerance:g} x scale {scale:.3g}); the export is not "
                         "trustworthy")
    return {"max_abs_logits": worst, "logits_scale": scale}


@dataclass
class Component:
    """One model to put in a bundle: the torch model, its input rule and what the model card
    and the predictor need to know about it. `settings` go into the component's entry of
    bundle.json (the classifier's `tta`; the localiser's `threshold`, `min_region_px`...)."""

    model: Any
    spec: PreprocessSpec
    model_name: str
    data_summary: Mapping[str, Any] | None = None
    val_metrics: Mapping[str, float] | None = None
    test_metrics: Mapping[str, Any] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def described(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "data_summary": dict(self.data_summary or {}),
                "val_metrics": dict(self.val_metrics or {}),
                "test_metrics": dict(self.test_metrics) if self.test_metrics else None}


def _write_classifier(part: Component, work: Path) -> dict[str, Any]:
    spec = part.spec
    if not spec.class_names:
        raise ModelError("the preprocessing names no classes; cannot export")
    weight, bias = head_weights(part.model)
    if weight.shape[0] != len(spec.class_names):
        raise ModelError(f"the head has {weight.shape[0]} outputs for "
                         f"{len(spec.class_names)} classes")
    exporter = _to_onnx(part.model, spec, work / MODEL_FILE)
    parity = check_parity(part.model, work / MODEL_FILE, spec)
    np.savez(work / HEAD_FILE, weight=weight, bias=bias)
    spec.save(work / PREPROCESS_FILE)
    settings = dict(part.settings)
    knowing = _abstention_settings(settings.pop("abstention", None), work)
    descriptors = _descriptor_settings(part.model, settings.pop("descriptors", None),
                                       part.val_metrics or {})
    return {"model": MODEL_FILE, "preprocess": PREPROCESS_FILE, "cam_head": HEAD_FILE,
            "class_names": list(spec.class_names), "tta": bool(settings.pop("tta", False)),
            **part.described(), "descriptors": descriptors, **knowing,
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, *spec.input_size]},
            "outputs": list(output_names(part.model)), "feature_channels": int(weight.shape[1]),
            "exporter": exporter, "parity": parity,
            "model_sha256": file_sha256(work / MODEL_FILE), **settings}


def _descriptor_settings(model, values: Mapping[str, Any] | None,
                         val_metrics: Mapping[str, float]) -> dict[str, Any]:
    """bundle.json's `descriptors`: head -> its ONNX output, its values in output order and
    its val accuracy; {} for a category-only model."""
    names = descriptor_names(model)
    values = dict(values or {})
    missing = [n for n in names if n not in values]
    if missing:
        raise ModelError(f"descriptor head {missing[0]!r} has no value list in the checkpoint")
    return {n: {"output": DESCRIPTOR_OUTPUT.format(name=n), "values": list(values[n]),
                "val_accuracy": val_metrics.get(f"{n}_accuracy")} for n in names}


def _abstention_settings(abstention: Mapping[str, Any] | None, work: Path) -> dict[str, Any]:
    """bundle.json's `calibration`, `abstain` and `ood` (its reference features written to
    OOD_FILE); nothing for a checkpoint trained before they existed."""
    if not abstention:
        return {}
    out = {k: dict(abstention[k]) for k in ("calibration", "abstain") if k in abstention}
    choice = abstention.get("category_source") or {}
    if choice:
        out["category_source"] = choice.get("default", "head")
        out["category_source_val_macro_f1"] = dict(choice.get("val_macro_f1") or {})
    ood = dict(abstention.get("ood") or {})
    reference = ood.pop("reference", None)
    if reference is not None:
        np.save(work / OOD_FILE, np.asarray(reference, np.float16), allow_pickle=False)
        out["ood"] = {**ood, "reference": OOD_FILE}
    return out


def _write_localiser(part: Component, work: Path) -> dict[str, Any]:
    spec = part.spec
    if spec.crop != "full":
        raise ModelError("a localiser sees the whole image area (crop 'full'), "
                         f"not crop {spec.crop!r}")
    wrapped = _LocaliserLogits(part.model)
    exporter = _onnx_file(wrapped, spec, work / LOCALISER_FILE, LOCALISER_OUTPUTS)
    parity = check_localiser_parity(wrapped, work / LOCALISER_FILE, spec)
    spec.save(work / LOCALISER_PREPROCESS_FILE)
    settings = {**LOCALISER_DEFAULTS, **dict(part.settings)}
    return {"model": LOCALISER_FILE, "preprocess": LOCALISER_PREPROCESS_FILE,
            "threshold": float(settings.pop("threshold")),
            "min_region_px": int(settings.pop("min_region_px")),
            "min_score": float(settings.pop("min_score", 0.0)),
            **part.described(),
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, *spec.input_size]},
            "outputs": list(LOCALISER_OUTPUTS), "exporter": exporter, "parity": parity,
            "model_sha256": file_sha256(work / LOCALISER_FILE), **settings}


def _LocaliserLogits(model):
    """The segmentation network as exported: forward(x) -> Nx1xHxW logits."""
    import torch

    class LocaliserLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return LocaliserLogits(model).eval()


def measured_module(folder: Path):
    """The torch module of a run's measured descriptors (RUN/measured/heads.npz) and its
    summary, or (None, {}) when the run has none."""
    file = folder / "heads.npz"
    if not file.is_file():
        return None, {}
    from ..models.nodule_features import MeasuredDescriptors

    z = np.load(file, allow_pickle=False)
    names = [str(n) for n in z["names"]]
    if not names:  # the classifier's own heads read every descriptor better on val
        return None, {}
    module = MeasuredDescriptors(z["mean"], z["std"],
                                 {n: (z[f"weight_{n}"], z[f"bias_{n}"]) for n in names}).eval()
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    return module, summary


def _write_measured(module, summary: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """measured.onnx (inputs gray, prob, scale on the grid; one logits output per
    descriptor), checked against PyTorch on a drawn nodule."""
    import torch

    grid = [int(v) for v in summary["grid"]]
    outputs = tuple(DESCRIPTOR_OUTPUT.format(name=n) for n in module.names)
    gray, prob, scale = _measured_example(grid)
    with _quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (gray, prob, scale), str(work / MEASURED_FILE),
                          input_names=list(MEASURED_INPUTS), output_names=list(outputs),
                          dynamic_axes={n: {0: "batch"} for n in (*MEASURED_INPUTS, *outputs)},
                          opset_version=17, dynamo=False)
    from ..inference.bundle import open_session

    session = open_session(work / MEASURED_FILE, 1)
    got = session.run(list(outputs), {"gray": gray.numpy(), "prob": prob.numpy(),
                                      "scale": scale.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in module(gray, prob, scale)]
    worst = max((float(np.abs(g - w).max()) for g, w in zip(got, want)), default=0.0)
    if worst > 1e-3:
        raise ModelError(f"{work / MEASURED_FILE}: ONNX measured descriptors differ from "
                         f"PyTorch by {worst:.3g}; the export is not trustworthy")
    from ..categories import DESCRIPTORS

    val = summary.get("val_metrics") or {}
    return {"model": MEASURED_FILE, "grid": grid,
            "inputs": list(MEASURED_INPUTS), "outputs": list(outputs),
            "descriptors": {n: {"output": DESCRIPTOR_OUTPUT.format(name=n),
                                "values": list(DESCRIPTORS[n]),
                                "val_accuracy": val.get(f"{n}_accuracy")}
                            for n in module.names},
            "val_metrics": dict(val), "test_metrics": dict(summary.get("test_metrics") or {}),
            "train_images": summary.get("train_images"),
            "parity": {"max_abs_logits": worst},
            "model_sha256": file_sha256(work / MEASURED_FILE)}


def _measured_example(grid: Sequence[int]):
    """A darker ellipse on speckle: an input whose features are all meaningful."""
    import torch

    height, width = grid
    rng = np.random.default_rng(0)
    gray = rng.uniform(0.3, 0.6, (1, 1, height, width)).astype(np.float32)
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - height / 2) / (height / 5)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2 <= 1
    gray[0, 0][inside] *= 0.5
    prob = inside[None, None].astype(np.float32)
    return (torch.from_numpy(gray), torch.from_numpy(prob),
            torch.tensor([[2.0, 2.0]], dtype=torch.float32))


def outline_module(folder: Path):
    """The torch module of a run's outline category (RUN/outline/head.npz, the ImageNet
    encoder it names) and its summary, or (None, {}) when the run has none."""
    file = folder / "head.npz"
    if not file.is_file():
        return None, {}
    from ..models.outline_pooling import OutlineCategory
    from ..models.segmentation import create_encoder

    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    z = np.load(file, allow_pickle=False)
    module = OutlineCategory(create_encoder(str(summary["encoder"]), "imagenet"), z["mean"],
                             z["std"], z["weight"], z["bias"]).eval()
    return module, summary


def _write_outline(module, summary: Mapping[str, Any], classifier: Component,
                   work: Path) -> dict[str, Any]:
    """outline.onnx (inputs image, prob on the localiser's grid; output logits), checked
    against PyTorch on a drawn nodule."""
    import torch

    names = [str(c) for c in summary["class_names"]]
    if names != list(classifier.spec.class_names):
        raise ModelError(f"outline: classes {names} differ from the classifier's "
                         f"{list(classifier.spec.class_names)}")
    gray, prob, _ = _measured_example([int(v) for v in summary["grid"]])
    image = ((gray - 0.45) / 0.225).repeat(1, 3, 1, 1)
    with _quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (image, prob), str(work / OUTLINE_FILE),
                          input_names=list(OUTLINE_INPUTS), output_names=["logits"],
                          dynamic_axes={n: {0: "batch"} for n in (*OUTLINE_INPUTS, "logits")},
                          opset_version=17, dynamo=False)
    from ..inference.bundle import open_session

    session = open_session(work / OUTLINE_FILE, 1)
    (got,) = session.run(["logits"], {"image": image.numpy(), "prob": prob.numpy()})
    with torch.no_grad():
        want = module(image, prob).numpy()
    worst = float(np.abs(got - want).max())
    if worst > 1e-3:
        raise ModelError(f"{work / OUTLINE_FILE}: ONNX outline logits differ from PyTorch by "
                         f"{worst:.3g}; the export is not trustworthy")
    return {"model": OUTLINE_FILE, "inputs": list(OUTLINE_INPUTS), "outputs": ["logits"],
            "class_names": names, "encoder": summary["encoder"],
            "grid": [int(v) for v in summary["grid"]],
            "temperature": float(summary.get("temperature", 1.0)),
            "low_confidence": float(summary.get("low_confidence", 0.0)),
            "default": bool(summary.get("default", True)),
            "val_metrics": dict(summary.get("val_metrics") or {}),
            "test_metrics": dict(summary.get("test_metrics") or {}),
            "train_images": summary.get("train_images"),
            "parity": {"max_abs_logits": worst},
            "model_sha256": file_sha256(work / OUTLINE_FILE)}


def export_models(out: str | os.PathLike[str], *, name: str,
                  classifier: Component | None = None, localiser: Component | None = None,
                  extra: Mapping[str, Any] | None = None,
                  measured: tuple[Any, Mapping[str, Any]] | None = None,
                  outline: tuple[Any, Mapping[str, Any]] | None = None) -> Path:
    """Write a format-2 bundle holding `classifier` and/or `localiser` into `out` (with
    `measured` descriptors beside a localiser, the `outline` category beside both).

    Everything is built in a temporary folder beside `out` and moved in only after every
    parity check passed, so a failed export never leaves a half bundle or spoils an old one.
    """
    if classifier is None and localiser is None:
        raise ModelError("nothing to export: give a classifier, a localiser or both")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder")
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        components: dict[str, Any] = {}
        if classifier is not None:
            components[CLASSIFIER] = _write_classifier(classifier, work)
        if localiser is not None:
            components[LOCALISER] = _write_localiser(localiser, work)
        if measured is not None and measured[0] is not None and localiser is not None:
            components[MEASURED] = _write_measured(measured[0], measured[1], work)
            if CLASSIFIER in components and measured[1].get("category_source"):
                # The default category chosen again on val with the measured descriptors;
                # kept in the measured entry, so a reader that does not run it (the static
                # page today) keeps the classifier's own consistent choice.
                components[MEASURED]["category_source"] = measured[1]["category_source"]
                components[MEASURED]["category_source_val_macro_f1"] = dict(
                    measured[1].get("val_macro_f1") or {})
        if outline is not None and outline[0] is not None and localiser is not None \
                and classifier is not None:
            components[OUTLINE] = _write_outline(outline[0], outline[1], classifier, work)
        digest = model_sha256(work)
        metadata = {
            "format_version": BUNDLE_FORMAT,
            "name": name,
            "version": digest[:12],
            "eutirads_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "model_sha256": digest,
            **dict(extra or {}),
            "components": components,
        }
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n",
                                          encoding="utf-8")
        card = model_card(flat_metadata(metadata),
                          classifier.spec if classifier is not None else None,
                          localiser=components.get(LOCALISER),
                          localiser_spec=localiser.spec if localiser is not None else None,
                          measured=components.get(MEASURED),
                          outline=components.get(OUTLINE))
        (work / CARD_FILE).write_text(card, encoding="utf-8")
        out.mkdir(exist_ok=True)
        # A bundle exported again may change what it holds: the old component files go.
        for stale in (MODEL_FILE, PREPROCESS_FILE, HEAD_FILE, LOCALISER_FILE,
                      LOCALISER_PREPROCESS_FILE, OOD_FILE, MEASURED_FILE, OUTLINE_FILE):
            if not (work / stale).exists() and (out / stale).is_file():
                (out / stale).unlink()
        for file in work.iterdir():
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def export_model(model, spec: PreprocessSpec, out: str | os.PathLike[str], *,
                 name: str, model_name: str, data_summary: Mapping[str, Any] | None = None,
                 val_metrics: Mapping[str, float] | None = None,
                 test_metrics: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """A classifier-only bundle for `model` (with forward_features / forward_head); `extra`
    holds the classifier's further settings (tta, epoch, training...)."""
    return export_models(out, name=name, classifier=Component(
        model, spec, model_name, data_summary, val_metrics, test_metrics, dict(extra or {})))


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


def _run_component(run: str | os.PathLike[str]) -> tuple[str, Component, Path]:
    """(task, component, run folder) of a run's best checkpoint (or a .pt file)."""
    from ..training.checkpoint import checkpoint_file, load_checkpoint

    file = checkpoint_file(run)
    model, payload = load_checkpoint(file)
    task = str(payload.get("task") or "classify")
    spec = PreprocessSpec.from_dict(payload["preprocess"])
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    config = payload.get("config") or {}
    data_summary = dict(payload.get("data_summary") or {})
    if data_summary.get("dataset"):
        # The folder's name only: a full path may say more about a site than a card should.
        data_summary["dataset"] = Path(str(data_summary["dataset"])).name
    settings: dict[str, Any] = {"epoch": payload.get("epoch"), "checkpoint": file.name,
                                "training": _training_summary(config)}
    if task == "segment":
        settings.update({k: config[k] for k in LOCALISER_DEFAULTS if k in config})
        # Fitted on val after training; a run trained before it existed keeps every region.
        settings["min_score"] = float((payload.get("localiser") or {}).get("min_score", 0.0))
    else:
        class_names = [str(c) for c in payload["class_names"]]
        if spec.class_names and list(spec.class_names) != class_names:
            raise ModelError(f"{file}: preprocess class names {list(spec.class_names)} differ "
                             f"from the checkpoint's {class_names}")
        spec = spec.replace(class_names=class_names)
        settings["tta"] = bool(config.get("tta", False))
        settings["descriptors"] = payload.get("descriptors") or {}
        settings["abstention"] = payload.get("abstention") or {}
    return task, Component(model, spec, payload["model_name"], data_summary,
                           payload.get("val_metrics"), _test_metrics(run_dir), settings), run_dir


def export_bundle(run: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  name: str | None = None,
                  localiser: str | os.PathLike[str] | None = None) -> Path:
    """Export a run's best checkpoint (or a .pt file) to the bundle folder `out`: a
    classifier run, optionally with a `localiser` run beside it, or a localiser run alone."""
    task, part, run_dir = _run_component(run)
    if task == "segment":
        if localiser is not None:
            raise ModelError(f"{run}: is a localiser run; give the classifier run first and "
                             "the localiser with --localiser")
        return export_models(out, name=name or run_dir.name, localiser=part)
    local = None
    if localiser is None and (run_dir / LOCALISER_DIR).is_dir():
        # The default recipe trained its localiser into the run (training.outline).
        localiser = run_dir / LOCALISER_DIR
    if localiser is not None:
        local_task, local, _ = _run_component(localiser)
        if local_task != "segment":
            raise ModelError(f"{localiser}: is not a localiser run (task {local_task!r}; "
                             "train one with task: segment)")
    measured = measured_module(run_dir / "measured") if local is not None else None
    outline = outline_module(run_dir / OUTLINE_DIR) if local is not None else None
    return export_models(out, name=name or run_dir.name, classifier=part, localiser=local,
                         measured=measured, outline=outline)


def _training_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """The few resolved settings a model card reader wants (no paths: they may be private)."""
    keys = ("task", "model", "weights", "mode", "epochs", "head_epochs", "crop", "loss",
            "label_smoothing", "augment", "tta", "seed", "batch_size", "lr", "finetune_lr")
    return {k: config[k] for k in keys if k in config and not isinstance(config[k], (dict, list))
            and not (k == "weights" and config[k] not in ("imagenet", "none"))}
