"""`evaluate_run`: predict a run's split with the eval preprocessing and write the report.

RUN/eval/<split>/ receives metrics.json, predictions.csv, report.md (with confusion.png,
roc.png and reliability.png beside it) and report.html (the same, plots embedded).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..categories import normalize_label, sort_labels
from ..data.manifest import MANIFEST_NAME, image_path, read_manifest, row_bbox
from ..errors import EutiradsError, InputError
from ..imageio import load_rgb
from ..inference.abstention import apply_temperature
from ..preprocess import PreprocessSpec, prepare
from . import metrics as M
from .plots import confusion_png, reliability_png, roc_png
from .report import Figure, build_report, to_html, to_markdown

__all__ = ["evaluate_run", "predict_rows", "parse_positive", "json_safe"]

log = logging.getLogger(__name__)


def parse_positive(text: str | Iterable[str] | None) -> list[str] | None:
    """'4b,4c,5' -> ['4b', '4c', '5'] (labels normalised); None stays None."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    labels = [normalize_label(item) for item in items if str(item).strip()]
    if not labels:
        raise InputError("--positive needs at least one label, e.g. 4,5 or 4b,4c,5")
    return labels


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, so metrics.json is strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def _dataset_of(payload: dict[str, Any], dataset: str | os.PathLike[str] | None) -> Path:
    if dataset is not None:
        return Path(dataset)
    recorded = (payload.get("data_summary") or {}).get("dataset") \
        or (payload.get("config") or {}).get("dataset")
    if not recorded:
        raise InputError("the checkpoint records no dataset; pass --dataset DATASET")
    return Path(recorded)


def predict_rows(model, spec: PreprocessSpec, root: Path, rows: Sequence[dict[str, str]], *,
                 tta: bool = False, batch_size: int = 16, progress: bool = True,
                 heads: bool = False) -> tuple[Any, list[int], list[str]]:
    """Class probabilities (N_kept x K) for manifest rows, through `preprocess.prepare` and
    the training engine's one prediction loop; with `heads`, every head's probabilities
    by name (the category under "category", descriptor heads beside it).

    Returns (probabilities, indices of the rows kept, one-line messages for rows skipped):
    an image that cannot be read is reported and the rest go on.
    """
    from ..training.engine import CATEGORY, LoopOptions, model_heads, predict_outputs, tensor_views

    kept: list[int] = []
    skipped: list[str] = []

    def batches():
        batch: list[np.ndarray] = []
        for index, row in enumerate(tqdm(rows, desc="evaluate", unit="img",
                                         disable=not progress, leave=False)):
            try:
                path = image_path(root, row)
                box = row_bbox(row) if spec.crop == "roi" else None
                batch.append(prepare(load_rgb(path, name=row["path"]), spec, box))
            except EutiradsError as exc:
                skipped.append(str(exc))
                log.warning("skipped %s", exc)
                continue
            kept.append(index)
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)

    model.eval()
    loop = LoopOptions(batch_size=batch_size, tta=tta, amp=False)
    out = predict_outputs(lambda x: model_heads(model, model.forward_features(x)),
                          tensor_views(batches(), loop), loop)
    if not out:
        out = {CATEGORY: np.zeros((0, len(spec.class_names)))}
    return (out if heads else out[CATEGORY]), kept, skipped


def evaluate_run(run: str | os.PathLike[str], *, dataset: str | os.PathLike[str] | None = None,
                 split: str = "test", positive: Iterable[str] | str | None = None,
                 n_boot: int = 1000, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate RUN's best checkpoint on `split` of its dataset (or `dataset`) and write
    RUN/eval/<split>/. Returns the metrics (as written to metrics.json, NaN as None)."""
    from ..training.checkpoint import checkpoint_file, load_checkpoint

    file = checkpoint_file(run)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    model, payload = load_checkpoint(file)
    class_names = [str(c) for c in payload["class_names"]]
    spec = PreprocessSpec.from_dict(payload["preprocess"]).replace(class_names=class_names)
    config = payload.get("config") or {}
    root = _dataset_of(payload, dataset)
    if root.suffix.lower() == ".csv":
        root = root.parent
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found (pass --dataset DATASET)")
    rows = [r for r in read_manifest(root) if r.get("split", "") == split and r.get("label")]
    if not rows:
        raise InputError(f"{root / MANIFEST_NAME}: no labelled image in split {split!r}")
    unknown = sorted({r["label"] for r in rows} - set(class_names))
    if unknown:
        raise InputError(f"{root / MANIFEST_NAME}: split {split!r} has label(s) "
                         f"{', '.join(unknown)} that the model does not know "
                         f"(its classes: {', '.join(class_names)})")
    positive_labels = parse_positive(positive)
    if positive_labels is not None:
        # Checked before minutes of prediction, not after.
        unknown_pos = [p for p in positive_labels if p not in class_names]
        if unknown_pos or len(set(positive_labels)) >= len(class_names):
            raise InputError(f"--positive {','.join(positive_labels)}: must name some but not "
                             f"all of the model's classes ({', '.join(class_names)})")

    tta = bool(config.get("tta", False))
    outputs, kept, skipped = predict_rows(model, spec, root, rows, tta=tta, progress=progress,
                                          heads=True)
    if not kept:
        raise InputError(f"{root / MANIFEST_NAME}: no image of split {split!r} could be read")
    rows = [rows[i] for i in kept]
    # Kappa and the report want the classes in ordinal order.
    ordered = sort_labels(class_names)
    raw = outputs["category"][:, [class_names.index(c) for c in ordered]]
    # Scored as the bundle serves them: temperature-scaled on val (argmax unchanged).
    temperature = float(((payload.get("abstention") or {}).get("calibration") or {})
                        .get("temperature", 1.0))
    proba = apply_temperature(raw, temperature)
    y_true = [r["label"] for r in rows]
    groups = [r.get("patient_id") or r["path"] for r in rows]
    result = M.compute_metrics(y_true, proba, ordered, groups=groups, positive=positive_labels,
                               n_boot=n_boot, seed=seed)
    result["calibration_uncalibrated"] = M.calibration(y_true, raw, ordered)
    result["temperature"] = temperature
    result["descriptors"] = _descriptor_accuracy(rows, outputs, payload.get("descriptors") or {})

    epochs = None
    summary_file = run_dir / "summary.json"
    if summary_file.is_file():
        try:
            epochs = json.loads(summary_file.read_text(encoding="utf-8")).get("epochs_run")
        except (OSError, json.JSONDecodeError):
            epochs = None
    metrics: dict[str, Any] = {
        "split": split,
        "dataset_name": root.name,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "eutirads_version": __version__,
        "run": {"name": run_dir.name, "checkpoint": file.name,
                "model_name": payload["model_name"], "mode": config.get("mode"),
                "epoch": payload.get("epoch"), "epochs_run": epochs,
                "config_epochs": config.get("epochs")},
        "tta": tta,
        "positive": (result["high_risk"] or {}).get("positive"),
        "skipped": skipped,
        **{k: v for k, v in result.items() if k not in ("y_true", "y_pred")},
    }
    out = run_dir / "eval" / split
    _write_outputs(out, metrics, rows, result, proba, ordered)
    return json_safe(metrics)


def _descriptor_accuracy(rows: Sequence[dict[str, str]], outputs: dict[str, np.ndarray],
                         heads: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Each descriptor head's accuracy on the rows where the descriptor is recorded."""
    from ..training.data import row_descriptors

    known = [row_descriptors(r) for r in rows]
    out = {}
    for name, values in heads.items():
        idx = [i for i, k in enumerate(known) if name in k]
        if name not in outputs or not idx:
            out[name] = {"accuracy": float("nan"), "n": 0}
            continue
        truth = np.array([values.index(known[i][name]) for i in idx])
        out[name] = {"accuracy": float((outputs[name][idx].argmax(1) == truth).mean()),
                     "n": len(idx)}
    return out


def _write_outputs(out: Path, metrics: dict[str, Any], rows: Sequence[dict[str, str]],
                   result: dict[str, Any], proba: np.ndarray, labels: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        Figure("confusion.png", "Confusion matrix",
               confusion_png(metrics["confusion_matrix"], labels)),
        Figure("roc.png", "ROC curves", roc_png(metrics["roc"], metrics.get("high_risk"))),
        Figure("reliability.png", "Reliability diagram", reliability_png(metrics["calibration"])),
    ]
    for figure in figures:
        _atomic_write(out / figure.file, figure.png)
    blocks = build_report(metrics, figures)
    _atomic_write(out / "report.md", to_markdown(blocks).encode("utf-8"))
    _atomic_write(out / "report.html", to_html(blocks).encode("utf-8"))
    _atomic_write(out / "metrics.json",
                  (json.dumps(json_safe(metrics), indent=2) + "\n").encode("utf-8"))
    tmp = out / ".predictions.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "label", "predicted", *[f"p_{c}" for c in labels]])
        for row, truth, pred, p in zip(rows, result["y_true"], result["y_pred"], proba):
            writer.writerow([row["path"], row.get("patient_id", ""), truth, pred,
                             *[f"{v:.6f}" for v in p]])
    os.replace(tmp, out / "predictions.csv")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
