"""Self-describing checkpoints: the weights plus everything needed to use them.

`RUN/checkpoints/best.pt` and `last.pt` hold a dict: format_version, eutirads_version,
model_name, model_kwargs, state_dict, class_names, preprocess (PreprocessSpec.to_dict()),
config (resolved), data_summary, epoch, val_metrics, descriptors (head -> values),
abstention (calibration temperature, thresholds, OOD statistics) and task ("classify", or
"segment" for a localiser, whose class_names is empty; absent in older checkpoints =
"classify"). Only plain Python values and tensors,
so `torch.load(..., weights_only=True)` reads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .. import __version__
from ..errors import ModelError

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "read_checkpoint", "load_checkpoint",
           "checkpoint_file"]

CHECKPOINT_FORMAT = 1
REQUIRED = ("model_name", "model_kwargs", "state_dict", "class_names", "preprocess")


def save_checkpoint(path: str | os.PathLike[str], model_or_state, *, model_name: str,
                    model_kwargs: Mapping[str, Any], class_names: list[str],
                    preprocess: Mapping[str, Any], config: Mapping[str, Any],
                    data_summary: Mapping[str, Any], epoch: int,
                    val_metrics: Mapping[str, float],
                    descriptors: Mapping[str, list[str]] | None = None,
                    abstention: Mapping[str, Any] | None = None,
                    task: str = "classify",
                    localiser: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint (of a model or of its state dict) atomically."""
    import torch

    state = (model_or_state if isinstance(model_or_state, Mapping)
             else model_or_state.state_dict())

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "eutirads_version": __version__,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "class_names": list(class_names),
        "preprocess": dict(preprocess),
        "config": dict(config),
        "data_summary": dict(data_summary),
        "epoch": int(epoch),
        "val_metrics": {k: float(v) for k, v in val_metrics.items()},
        # descriptor head -> its values in output order; absent heads: {}
        "descriptors": {k: list(v) for k, v in (descriptors or {}).items()},
        # calibration temperature, low-confidence threshold, OOD statistics (plain values)
        "abstention": dict(abstention or {}),
        "task": task,
        # a localiser's settings fitted after training (its minimum region score)
        "localiser": dict(localiser or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def checkpoint_file(run_or_path: str | os.PathLike[str]) -> Path:
    """A .pt file as it is; a run folder -> its checkpoints/best.pt (else last.pt)."""
    path = Path(run_or_path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise ModelError(f"{path}: no checkpoints/best.pt or last.pt (not a training run?)")
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint or run folder not found")
    return path


def read_checkpoint(run_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict, checked for format and completeness."""
    import torch

    file = checkpoint_file(run_or_path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{file}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ModelError(f"{file}: not an eutirads checkpoint")
    if payload["format_version"] != CHECKPOINT_FORMAT:
        raise ModelError(f"{file}: checkpoint format {payload['format_version']} is not supported "
                         f"(this eutirads {__version__} reads format {CHECKPOINT_FORMAT})")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise ModelError(f"{file}: checkpoint lacks {', '.join(missing)}")
    return payload


def load_checkpoint(run_or_path: str | os.PathLike[str]):
    """(model in eval mode on the CPU, checkpoint dict) from a run folder or a .pt file."""
    from ..models import create_model

    payload = read_checkpoint(run_or_path)
    if payload.get("task") == "segment":
        from ..models.segmentation import create_segmenter

        model = create_segmenter(payload["model_name"], weights="none", **payload["model_kwargs"])
    else:
        heads = {k: len(v) for k, v in (payload.get("descriptors") or {}).items()}
        model = create_model(payload["model_name"], num_classes=len(payload["class_names"]),
                             weights="none", descriptors=heads, **payload["model_kwargs"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{checkpoint_file(run_or_path)}: weights do not fit "
                         f"{payload['model_name']} ({first})") from None
    model.eval()
    return model, payload
