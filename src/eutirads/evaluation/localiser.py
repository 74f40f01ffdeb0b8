"""Evaluating the nodule localiser: per-image scores, their summary with 95% patient-bootstrap
intervals (`metrics.bootstrap_ci`), and `evaluate_localiser_run` writing RUN/eval/SPLIT/
(metrics.json, predictions.csv, report.md/.html, contact.png of predicted vs true outlines).

Scores are taken at the image's own size: the model's probability map is placed back on the
image exactly as the predictor does (`inference.localiser.probability_to_image`) and cut by
the same threshold and minimum region size (`nodule_from_mask`).

- Dice and IoU: over images with a nodule (the mask of every region kept vs the true mask).
- Box IoU: the box enclosing every predicted region vs the true mask's box (0 when none).
- Detection rate: share of images with a nodule whose box IoU is at least 0.5.
- False-positive rate: share of nodule-free images (all-zero mask) where anything is found.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .. import __version__
from ..data.manifest import MANIFEST_NAME, image_path, load_mask, read_manifest
from ..errors import EutiradsError, InputError
from ..imageio import load_rgb
from ..inference.localiser import _image_min_region, nodule_from_mask, probability_to_image
from ..preprocess import PreprocessSpec, crop_box, normalize, resize_to_input
from ..region import Box, crop
from .metrics import bootstrap_ci
from .report import Figure, Heading, Paragraph, Table, fmt, to_html, to_markdown

__all__ = ["DETECTION_IOU", "box_iou", "image_scores", "summarise", "localiser_metrics",
           "predict_probability", "evaluate_localiser_run", "outline_sheet", "SUMMARY_KEYS"]

log = logging.getLogger(__name__)

DETECTION_IOU = 0.5
SUMMARY_KEYS = ("dice", "iou", "box_iou", "detection_rate", "false_positive_rate")
_NAMES = {"dice": "Mean Dice (images with a nodule)", "iou": "Mean IoU (images with a nodule)",
          "box_iou": "Mean box IoU (images with a nodule)",
          "detection_rate": f"Detection rate (box IoU >= {DETECTION_IOU})",
          "false_positive_rate": "False-positive rate (images without a nodule)"}


def box_iou(a: Sequence[int] | None, b: Sequence[int] | None) -> float:
    """IoU of two (x0, y0, x1, y1) boxes (x1/y1 exclusive); 0 when either is None."""
    if a is None or b is None:
        return 0.0
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mask_box(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def image_scores(prob: np.ndarray, true: np.ndarray, *, threshold: float,
                 min_region_px: int, min_score: float = 0.0) -> dict[str, Any]:
    """The scores of one image: `prob` HxW at the image's size, `true` HxW bool;
    `min_region_px` in the image's pixels."""
    predicted, nodule = nodule_from_mask(prob >= threshold, prob, min_region_px=min_region_px,
                                         min_score=min_score)
    pred = predicted > 0
    has = bool(true.any())
    out: dict[str, Any] = {"has_nodule": has, "found": nodule is not None,
                           "pred_box": nodule["box"] if nodule else None,
                           "true_box": _mask_box(true), "mask": pred}
    if has:
        inter = float(np.logical_and(pred, true).sum())
        total = float(pred.sum() + true.sum())
        out["dice"] = 2 * inter / total
        out["iou"] = inter / (total - inter)
        out["box_iou"] = box_iou(out["pred_box"], out["true_box"])
        out["detected"] = out["box_iou"] >= DETECTION_IOU
    return out


def summarise(scores: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Means over images with a nodule, false-positive rate over those without (NaN when a
    group is empty)."""
    with_nodule = [s for s in scores if s["has_nodule"]]
    without = [s for s in scores if not s["has_nodule"]]

    def mean(key: str) -> float:
        return float(np.mean([float(s[key]) for s in with_nodule])) if with_nodule else float("nan")

    return {"dice": mean("dice"), "iou": mean("iou"), "box_iou": mean("box_iou"),
            "detection_rate": mean("detected"),
            "false_positive_rate": (float(np.mean([s["found"] for s in without]))
                                    if without else float("nan"))}


def localiser_metrics(scores: Sequence[Mapping[str, Any]], groups: Sequence[str], *,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Summary, counts and 95% intervals from resampling patients (metrics.bootstrap_ci,
    with the per-image scores looked up by index)."""
    n = len(scores)
    out: dict[str, Any] = {"n": n, "n_patients": len(set(groups)),
                           "n_with_nodule": sum(bool(s["has_nodule"]) for s in scores),
                           "summary": summarise(scores)}
    out["n_without_nodule"] = n - out["n_with_nodule"]
    if n_boot and n:
        index = np.arange(n)

        def metric_fn(y_true, _y_pred, _proba, _labels, _positive):
            return summarise([scores[int(i)] for i in y_true])

        ci = bootstrap_ci(index, index, np.zeros((n, 1)), [0], list(groups), n_boot=n_boot,
                          seed=seed, metric_fn=metric_fn)
        out["bootstrap"] = {"n_boot": n_boot, "level": 0.95, "unit": "patient", "ci": ci}
    return out


def predict_probability(model, spec: PreprocessSpec, pixels: np.ndarray) -> tuple[np.ndarray, Box]:
    """The torch localiser's nodule probability at the image's size, and its crop."""
    import torch

    box = crop_box(pixels, spec)
    x = torch.from_numpy(normalize(resize_to_input(crop(pixels, box), spec), spec))[None]
    with torch.no_grad():
        prob = torch.sigmoid(model(x))[0, 0].numpy()
    return probability_to_image(prob, spec, box, pixels.shape), box


def _edges(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, iterations=2)


def outline_sheet(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, Box, str]], *,
                  columns: int = 4, width: int = 240) -> bytes:
    """A PNG grid: each image's area with the true outline in green and the predicted one in
    red (yellow where they meet), and its caption. Items: (pixels, true, pred, area, caption)."""
    tiles = []
    for pixels, true, pred, area, caption in items:
        view = crop(pixels, area).copy()
        t, p = _edges(crop(true, area)), _edges(crop(pred, area))
        view[t] = (40, 220, 40)
        view[p] = (230, 40, 40)
        view[t & p] = (240, 220, 40)
        tile = Image.fromarray(view)
        tile = tile.resize((width, max(1, round(tile.height * width / tile.width))))
        canvas = Image.new("RGB", (width, tile.height + 16), (255, 255, 255))
        canvas.paste(tile, (0, 16))
        ImageDraw.Draw(canvas).text((3, 2), caption, fill=(0, 0, 0))
        tiles.append(canvas)
    if not tiles:
        tiles = [Image.new("RGB", (width, 40), (255, 255, 255))]
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    heights = [max(t.height for t in row) for row in rows]
    sheet = Image.new("RGB", (columns * (width + 6), sum(heights) + 6 * len(rows)), (255, 255, 255))
    y = 0
    for row, height in zip(rows, heights):
        for i, tile in enumerate(row):
            sheet.paste(tile, (i * (width + 6), y))
        y += height + 6
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _report(metrics: Mapping[str, Any], sheet: Figure) -> list:
    s, ci = metrics["summary"], (metrics.get("bootstrap") or {}).get("ci") or {}
    rows = []
    for key in SUMMARY_KEYS:
        interval = ci.get(key) or {}
        rows.append([_NAMES[key], fmt(s.get(key)),
                     f"{fmt(interval.get('low'))}-{fmt(interval.get('high'))}" if interval else ""])
    run = metrics["run"]
    return [
        Heading(f"Localiser evaluation: {run['name']} on split {metrics['split']}", 1),
        Paragraph(f"{metrics['n']} images with a known mask ({metrics['n_with_nodule']} with a "
                  f"nodule, {metrics['n_without_nodule']} without) of {metrics['n_patients']} "
                  f"patients; {len(metrics['skipped'])} skipped, {metrics['unknown_masks']} "
                  "without a known mask not scored. Model "
                  f"`{run['model_name']}`, threshold {metrics['threshold']}, minimum region "
                  f"{metrics['min_region_px']} px of the input grid, minimum region score "
                  f"{fmt(metrics.get('min_score', 0.0))}. 95% intervals: bootstrap "
                  "over patients."),
        Table(["Metric", "Value", "95% CI"], rows),
        Heading("Predicted vs true outlines"),
        Paragraph("Green: the reference outline; red: the localiser's; yellow where they "
                  "meet. Worst Dice first."),
        sheet,
    ]


def evaluate_localiser_run(run: str | os.PathLike[str], *,
                           dataset: str | os.PathLike[str] | None = None, split: str = "test",
                           n_boot: int = 1000, seed: int = 0, progress: bool = True,
                           sheet_size: int = 16) -> dict[str, Any]:
    """Evaluate a localiser run's best checkpoint on the rows of `split` with a known mask
    (labelled or not) and write RUN/eval/SPLIT/. Returns the metrics as written."""
    from ..training.checkpoint import checkpoint_file, load_checkpoint
    from .evaluate import _dataset_of, json_safe

    file = checkpoint_file(run)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    model, payload = load_checkpoint(file)
    spec = PreprocessSpec.from_dict(payload["preprocess"])
    config = payload.get("config") or {}
    threshold = float(config.get("threshold", 0.5))
    min_region = int(config.get("min_region_px", 0))
    min_score = float((payload.get("localiser") or {}).get("min_score", 0.0))  # as exported
    root = _dataset_of(payload, dataset)
    if root.suffix.lower() == ".csv":
        root = root.parent
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found (pass --dataset DATASET)")
    in_split = [r for r in read_manifest(root) if r.get("split", "") == split]
    rows = [r for r in in_split if r.get("mask", "") and r.get("mask_source", "") != "model"]
    if not rows:
        raise InputError(f"{root / MANIFEST_NAME}: no image with a mask in split {split!r}")
    scores, kept, skipped, views = [], [], [], []
    for row in tqdm(rows, desc="evaluate", unit="img", disable=not progress, leave=False):
        try:
            pixels = load_rgb(image_path(root, row), name=row["path"])
            true = load_mask(root, row, image_size=(pixels.shape[1], pixels.shape[0]))
            prob, area = predict_probability(model, spec, pixels)
        except EutiradsError as exc:
            skipped.append(str(exc))
            log.warning("skipped %s", exc)
            continue
        score = image_scores(prob, true, threshold=threshold,
                             min_region_px=_image_min_region(min_region, spec, area),
                             min_score=min_score)
        scores.append(score)
        kept.append(row)
        views.append((pixels, true, area))
    if not kept:
        raise InputError(f"{root / MANIFEST_NAME}: no image of split {split!r} could be read")
    groups = [r.get("patient_id") or r["path"] for r in kept]
    result = localiser_metrics(scores, groups, n_boot=n_boot, seed=seed)
    metrics = {
        "task": "segment", "split": split, "dataset_name": root.name,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "eutirads_version": __version__,
        "run": {"name": run_dir.name, "checkpoint": file.name, "model_name": payload["model_name"],
                "epoch": payload.get("epoch")},
        "threshold": threshold, "min_region_px": min_region, "min_score": min_score,
        "unknown_masks": len(in_split) - len(rows), "skipped": skipped, **result}
    # The sheet: worst first (what a reader should look at), nodule-free misses included.
    order = sorted(range(len(scores)), key=lambda i: scores[i].get("dice", 1.0 - scores[i]["found"]))
    items = []
    for i in order[:sheet_size]:
        pixels, true, area = views[i]
        caption = (f"Dice {scores[i]['dice']:.2f}" if scores[i]["has_nodule"]
                   else ("no nodule: FALSE POSITIVE" if scores[i]["found"] else "no nodule: ok"))
        items.append((pixels, true, scores[i]["mask"], area, f"#{i + 1} {caption}"))
    sheet = Figure("contact.png", "Predicted (red) vs true (green) outlines, worst first",
                   outline_sheet(items))
    out = run_dir / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    (out / sheet.file).write_bytes(sheet.png)
    blocks = _report(metrics, sheet)
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n",
                                      encoding="utf-8")
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "has_nodule", "found", "dice", "iou", "box_iou",
                         "detected", "x0", "y0", "x1", "y1"])
        for row, s in zip(kept, scores):
            box = s["pred_box"] or ["", "", "", ""]
            writer.writerow([row["path"], row.get("patient_id", ""), int(s["has_nodule"]),
                             int(s["found"]), *(f"{s[k]:.4f}" if k in s else ""
                                                for k in ("dice", "iou", "box_iou")),
                             int(s["detected"]) if "detected" in s else "", *box])
    return json_safe(metrics)
