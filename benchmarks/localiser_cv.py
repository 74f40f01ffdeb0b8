"""Patient-grouped K-fold cross-validation of the nodule localiser.

    python benchmarks/localiser_cv.py DATASET [--config configs/localiser.yaml] [--k 5]
        [--folds 0,1] [--out results.json] [--save-probs P.npz] [--save-models DIR]
        [--rescore P.npz] [--train-fraction F] [key=value ...]

DATASET is an imported dataset with masks (`eutirads dataset import DDTI --format ddti`, or
a phantom). Every image with a known mask takes part, labelled or not; folds are grouped by
patient and by identical / near-duplicate images (`data.split.patient_folds`). Each fold
trains the recipe on the other folds for its epochs (no early stopping: the held-out fold
is scored once, at the end, and never chooses anything) and scores its held-out images at
their own size, as `eutirads evaluate` does. With a frozen encoder (`mode: frozen`) every
image is encoded once (its augmented passes and a plain pass) for all folds; a recipe that
fine-tunes the encoder trains each fold from the ImageNet weights. `--folds` runs some
folds only (screening); `--save-probs` keeps each held-out image's probability grid (to
re-score other thresholds without retraining) and `--save-models` each fold's weights,
both written after every fold; `--rescore P.npz` scores such saved maps again (say with
`threshold=0.6`, or `min_score=0.5`: the folds have no val split, so `auto` keeps every
region) without training; `--train-fraction F` trains each fold on a fraction F of its
training patients (drawn whole, nested across fractions: a learning curve). Reports mean
and spread over folds and the pooled out-of-fold values with 95% patient-bootstrap
intervals, the undetected images counted by why (`misses`: `miss_kind`), plus training
seconds (wall and CPU) per fold. Run it niced in the background.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def miss_kind(score: dict, predicted, true) -> str | None:
    """Why an image with a nodule was not detected (box IoU < 0.5), or None: `none` (nothing
    found), `disjoint` (boxes do not meet), `too big` / `too small` (the predicted box's
    area over 1.5x / under 1/1.5 of the true one's), else `shifted`; with the region counts
    (predicted, true), since DDTI outlines one view of a two-view screen on some images and
    both on others."""
    from scipy import ndimage

    from eutirads.evaluation.localiser import box_iou

    if not score["has_nodule"] or score["detected"]:
        return None
    pred_box, true_box = score["pred_box"], score["true_box"]
    if pred_box is None:
        return "none"

    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    if box_iou(pred_box, true_box) == 0:
        return "disjoint"
    ratio = area(pred_box) / area(true_box)
    kind = "too big" if ratio > 1.5 else "too small" if ratio < 1 / 1.5 else "shifted"
    regions = (ndimage.label(predicted)[1], ndimage.label(true)[1])
    return f"{kind} ({regions[0]} predicted / {regions[1]} true regions)"


def patient(row: dict) -> str:
    """The patient a row belongs to (its path when the manifest names none)."""
    return row.get("patient_id") or row["path"]


def patient_subset(indices: list[int], patients: list[str], fraction: float, *,
                   seed: int) -> list[int]:
    """The `indices` of about `fraction` of their patients, drawn whole (never part of a
    patient), in an order fixed by `seed` so that smaller fractions are subsets."""
    import numpy as np

    names = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(names))
    keep = {names[k] for k in order[:max(1, round(fraction * len(names)))]}
    return [i for i, p in zip(indices, patients) if p in keep]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--config", default=str(REPO / "configs" / "localiser.yaml"))
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", default="localiser_cv.json")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--folds", default="",
                        help="comma-separated folds to run (screening); default all")
    parser.add_argument("--save-probs", default="",
                        help="write each held-out image's probability grid here (npz)")
    parser.add_argument("--save-models", default="",
                        help="write each fold's weights here (fold_K.pt)")
    parser.add_argument("--rescore", default="",
                        help="score the maps saved by an earlier --save-probs (same dataset "
                             "and folds) at this config's threshold, without training")
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="train each fold on this fraction of its training patients "
                             "(a learning-curve point; nested: a smaller fraction's patients "
                             "are a subset of a larger one's)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error(f"--train-fraction {args.train_fraction}: must be in (0, 1]")

    import numpy as np
    import torch

    from eutirads.data.manifest import image_path, load_mask, read_manifest
    from eutirads.data.split import patient_folds
    from eutirads.errors import EutiradsError
    from eutirads.evaluation.localiser import image_scores, localiser_metrics, summarise
    from eutirads.imageio import load_rgb
    from eutirads.inference.localiser import _image_min_region, probability_to_image
    from eutirads.models.segmentation import create_segmenter
    from eutirads.preprocess import crop_box
    from eutirads.region import crop
    from eutirads.training.config import resolve_config
    from eutirads.training.run import seed_everything
    from eutirads.training.segment import (_plain, _resize_pair, encode_pairs, fit_segmenter,
                                           joint_transform, make_segment_spec)

    config = resolve_config(args.config, args.overrides)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    root = Path(args.dataset)
    rows = [r for r in read_manifest(root) if r.get("mask", "")]
    # patient_folds stratifies by label and leaves unlabelled rows out: give those one label.
    folds = patient_folds([{**r, "label": r.get("label") or "unlabelled"} for r in rows], args.k)
    spec = make_segment_spec(config)

    # Every image decoded and cut once; its full-size mask and crop kept for scoring.
    started, c_start = time.perf_counter(), time.process_time()
    pairs, truth, skipped, keep_rows = [], [], [], []
    for row in rows:
        try:
            pixels = load_rgb(image_path(root, row), name=row["path"])
            true = load_mask(root, row, image_size=(pixels.shape[1], pixels.shape[0]))
        except EutiradsError as exc:
            skipped.append(str(exc))
            continue
        box = crop_box(pixels, spec)
        pairs.append(_resize_pair(crop(pixels, box), crop(true, box), spec))
        truth.append((true, box))
        keep_rows.append(row)
    folds = [folds[rows.index(r)] for r in keep_rows]
    load_seconds = (time.perf_counter() - started, time.process_time() - c_start)

    # A frozen encoder is the same in every fold: encode every image once (the augmented
    # passes and one plain pass), and each fold trains only its decoder. An encoder that
    # trains (finetune, two-stage) is built per fold from the ImageNet weights.
    seed_everything(config.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    encoder_model = create_segmenter(config.model, weights=config.weights, **config.model_kwargs)
    device = torch.device("cpu")
    frozen = config.mode == "frozen"
    passes, plain_levels = [], []
    if frozen and not args.rescore:
        augment = joint_transform(spec, config) if config.augment else _plain(spec)
        passes = [encode_pairs(encoder_model, pairs, augment, device, config.batch_size,
                               "pass", False) for _ in range(max(1, config.aug_passes))]
        plain_levels, _ = encode_pairs(encoder_model, pairs, _plain(spec), device,
                                       config.batch_size, "plain", False)
    encode_seconds = (time.perf_counter() - t0, time.process_time() - c0)
    run_folds = [int(f) for f in args.folds.split(",") if f] or list(range(args.k))
    saved: dict[str, np.ndarray] = {}

    results, pooled, groups = [], [], []
    size = tuple(spec.input_size)
    rescore = np.load(args.rescore) if args.rescore else None
    # The folds train without a val split, so `min_score: auto` has nothing to be fitted on
    # here and keeps every region (as an unfitted run does); a number from the config or a
    # `min_score=` override is applied as predict applies it.
    min_score = 0.0 if config.min_score == "auto" else float(config.min_score)

    n_trained = {f: sum(folds[i] != f for i in range(len(pairs))) for f in run_folds}

    def _train_fold(fold: int, held: list[int]) -> dict[int, np.ndarray]:
        """Train the recipe on the other folds; the held-out images' probability grids."""
        train = [i for i in range(len(pairs)) if folds[i] != fold]
        if args.train_fraction < 1.0:
            train = patient_subset(train, [patient(keep_rows[i]) for i in train],
                                   args.train_fraction, seed=config.seed + fold)
        tidx, hidx = torch.tensor(train), torch.tensor(held)
        seed_everything(config.seed + fold)
        model = create_segmenter(config.model, weights="none", **config.model_kwargs)
        model.encoder.load_state_dict(encoder_model.encoder.state_dict())
        encoded = ([([lv[tidx] for lv in levels], masks[tidx]) for levels, masks in passes],
                   [lv[hidx] for lv in plain_levels]) if frozen else None
        n_trained[fold] = len(train)
        fit_segmenter(model, spec, config, [pairs[i] for i in train], [pairs[i] for i in held],
                      progress=False, early_stopping=False, encoded=encoded)
        if args.save_models:
            Path(args.save_models).mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), Path(args.save_models) / f"fold_{fold}.pt")
        grids = {}
        with torch.no_grad():
            model.eval()
            for n, i in enumerate(held):
                if frozen:
                    logits = model.decode([lv[hidx[n:n + 1]].float() for lv in plain_levels],
                                          size)
                else:
                    logits = model(torch.from_numpy(_plain(spec)(*pairs[i])[0])[None])
                grids[i] = torch.sigmoid(logits)[0, 0].numpy()
        return grids

    for fold in run_folds:
        held = [i for i in range(len(pairs)) if folds[i] == fold]
        if rescore is not None:  # the saved maps of an earlier run, scored again
            if any(str(i) not in rescore.files for i in held):
                raise SystemExit(f"{args.rescore}: no saved maps for fold {fold} (pass the "
                                 "--folds of the run that saved them)")
            grids, wall, cpu = {i: rescore[str(i)].astype(np.float32) for i in held}, 0.0, 0.0
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            grids = _train_fold(fold, held)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        scores = []
        for i in held:
            saved[str(i)] = grids[i].astype(np.float16)
            true, box = truth[i]
            prob = probability_to_image(grids[i], spec, box, true.shape)
            score = image_scores(prob, true, threshold=config.threshold,
                                 min_region_px=_image_min_region(config.min_region_px, spec, box),
                                 min_score=min_score)
            score["miss"] = miss_kind(score, score.pop("mask"), true)
            scores.append(score)
            groups.append(patient(keep_rows[i]))
        pooled.extend(scores)
        results.append({"fold": fold, "n": len(held), "train": n_trained[fold],
                        "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
                        **summarise(scores)})
        print(json.dumps(results[-1]), flush=True)
        if args.save_probs:  # after every fold: a long run can be looked at while it goes
            np.savez_compressed(args.save_probs, **saved)
    keys = ("dice", "iou", "box_iou", "detection_rate", "false_positive_rate")
    mean = {k: float(np.nanmean([r[k] for r in results])) for k in keys}
    std = {k: float(np.nanstd([r[k] for r in results])) for k in keys}
    out = {"dataset": root.name, "config": Path(args.config).name, "overrides": args.overrides,
           "k": args.k, "folds_run": run_folds, "min_score": min_score,
           "train_fraction": args.train_fraction,
           "images": len(pairs), "skipped": skipped,
           "image_load_seconds": [round(v, 1) for v in load_seconds],
           "encode_seconds": [round(v, 1) for v in encode_seconds],
           "folds": results, "mean": mean,
           "std": std, "pooled": localiser_metrics(pooled, groups, n_boot=args.bootstrap),
           "misses": dict(Counter(s["miss"] for s in pooled if s["miss"]).most_common()),
           "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(json.dumps({"mean": mean, "std": std, "pooled": out["pooled"]["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
