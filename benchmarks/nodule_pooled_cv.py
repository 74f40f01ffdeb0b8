"""Category and descriptors from encoder features pooled inside the localiser's outline
(issue 10), in the localiser's own cross-validation folds.

    python benchmarks/nodule_pooled_cv.py DATASET MODELS_DIR [--work DIR] [--k 5]

DATASET: an imported DDTI-dev (`eutirads dataset import DDTI --format ddti`, then
`dataset split`). MODELS_DIR: `benchmarks/localiser_cv.py DATASET --save-models MODELS_DIR`
(configs/localiser.yaml, every fold): fold K's localiser never saw a patient of fold K.
The folds are localiser_cv.py's (`patient_folds` over every row with a mask, unlabelled
rows as one more label, seed 0); the labelled rows with a mask are scored.

For each fold K every labelled image's image area (the localiser's 192x256 input) goes
through localiser K, which gives its probability map, and through an encoder:
- `locenc gap`: localiser K's own (fine-tuned) encoder, global average of stages 3-4;
- `locenc nodule`: the same encoder, stages 2-4 averaged inside the map (weights = the
  probability) and as the difference from a ring of tissue around it;
- `imagenet nodule`: the ImageNet Lite0 encoder, pooled the same way in localiser K's map
  (and, as the oracle, in the true outline).
Heads: recipe_cv's logistic regression (standardised, balanced, C = 1 or 0.1), fitted on
the other folds. The baseline is recipe_cv's "lite0-full" (ImageNet features of the whole
image area, mirror-averaged) + logistic regression, in the same folds; every recipe gets
its paired difference with the corrected resampled t interval. One pass of K folds: a
screen, not the repeated CV.

    python benchmarks/nodule_pooled_cv.py DATASET --repeats R [--work DIR]

The repeated CV of the screen's finalist ("imagenet nodule + logreg"): recipe_cv.py's folds
(`repeated_folds`: every labelled row, seeds 0..R-1, the baseline's own folds) and, for each
repeat and fold, configs/localiser.yaml trained from the ImageNet weights on every image
with a mask, labelled or not, outside the fold's patient and duplicate groups; its map of
every labelled image pools the ImageNet encoder's features. 5 x R localisers (about 3
minutes each on 2 cores); each repeat and fold is cached in WORK/repeated as it finishes,
so a stopped run resumes (and `--repeats N` with N below R scores the first N repeats).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def pooled(features, prob):
    """(GAP of the last two stages, nodule- and ring-pooled stages 2-4) for a batch; the
    second is the product's own pooling (`models.outline_pooling`, the default recipe's
    outline category)."""
    import torch

    from eutirads.models.outline_pooling import pool_in_outline

    gap = [f.mean(dim=(2, 3)) for f in features[2:]]
    return torch.cat(gap, 1), pool_in_outline(features, prob)


def imagenet_reference(config, x_all, true_all):
    """The ImageNet encoder is the same in every fold: its features are computed once, in
    batches of 16, and pooled per fold. (batches, features per batch, pooled in the true
    outline)."""
    import torch

    from eutirads.models.segmentation import create_segmenter

    batches = range(0, len(x_all), 16)
    imagenet = create_segmenter(config.model, weights="imagenet", **config.model_kwargs).eval()
    with torch.no_grad():
        reference = [imagenet.encode(x_all[b:b + 16]) for b in batches]
        true_pooled = torch.cat([pooled(f, true_all[b:b + 16])[1]
                                 for f, b in zip(reference, batches)]).numpy()
    return batches, reference, true_pooled


def encode_folds(root, rows, models_dir, k, config, spec):
    """Per fold: (locenc gap, locenc nodule, imagenet nodule, imagenet true-outline)."""
    import torch

    from eutirads.models.segmentation import create_segmenter
    from eutirads.training.segment import _plain, _samples, load_pairs

    images, masks, kept, skipped = load_pairs(_samples(root, rows), spec, progress=False)
    if skipped:
        raise SystemExit(f"{len(skipped)} image(s) unusable: {skipped[0]}")
    x_all = torch.from_numpy(np.stack([_plain(spec)(im, m)[0] for im, m in zip(images, masks)]))
    true_all = torch.from_numpy(np.stack(masks)).float()[:, None]
    batches, reference, true_pooled = imagenet_reference(config, x_all, true_all)
    with torch.no_grad():
        views: dict[str, list[np.ndarray]] = {"locenc gap": [], "locenc nodule": [],
                                              "imagenet nodule": []}
        for fold in range(k):
            model = create_segmenter(config.model, weights="none", **config.model_kwargs)
            model.load_state_dict(torch.load(Path(models_dir) / f"fold_{fold}.pt"))
            model.eval()
            parts: dict[str, list] = {name: [] for name in views}
            for ref, b in zip(reference, batches):
                features = model.encode(x_all[b:b + 16])
                prob = torch.sigmoid(model.decode(features, tuple(spec.input_size)))
                gap, nodule = pooled(features, prob)
                parts["locenc gap"].append(gap)
                parts["locenc nodule"].append(nodule)
                parts["imagenet nodule"].append(pooled(ref, prob)[1])
            for name in views:
                views[name].append(torch.cat(parts[name]).numpy())
            print(f"fold {fold} encoded", flush=True)
    out = {name: np.stack(v) for name, v in views.items()}
    out["imagenet true outline"] = np.stack([true_pooled] * k)  # indexed by fold like the rest
    return out


def localiser_inputs(root, rows, spec, *, unknown_as_empty: bool):
    """Each row's image area at the localiser's input and its mask (0/1); rows whose mask is
    unknown or unreadable get an all-zero mask (`unknown_as_empty`) or are left out.
    (kept indices, pairs)."""
    from eutirads.data.manifest import image_path, load_mask
    from eutirads.errors import EutiradsError
    from eutirads.imageio import load_rgb
    from eutirads.preprocess import crop_box
    from eutirads.region import crop
    from eutirads.training.segment import _resize_pair

    kept, pairs = [], []
    for index, row in enumerate(rows):
        pixels = load_rgb(image_path(root, row), name=row["path"])
        try:
            true = load_mask(root, row, image_size=(pixels.shape[1], pixels.shape[0]))
        except EutiradsError:
            true = None
        if true is None and not unknown_as_empty:
            continue
        if true is None:
            true = np.zeros(pixels.shape[:2], bool)
        box = crop_box(pixels, spec)
        pairs.append(_resize_pair(crop(pixels, box), crop(true, box), spec))
        kept.append(index)
    return kept, pairs


def fold_localiser(config, spec, train_pairs, seed: int):
    """configs/localiser.yaml trained from the ImageNet weights for all its epochs (no early
    stopping: nothing is chosen; the small val set is only logged)."""
    from eutirads.models.segmentation import create_segmenter
    from eutirads.training.run import seed_everything
    from eutirads.training.segment import fit_segmenter

    seed_everything(seed)
    model = create_segmenter(config.model, weights=config.weights, **config.model_kwargs)
    fit_segmenter(model, spec, config, train_pairs, train_pairs[:4], progress=False,
                  early_stopping=False)
    return model.eval()


def repeated_views(root, rows, fold_sets, config, spec, work: Path) -> dict[str, np.ndarray]:
    """{view: repeats x folds x N x F} for the repeats whose every fold is cached (training
    the missing ones first): `imagenet nodule` (pooled in the fold's localiser map) and
    `imagenet true outline` (the oracle, the same in every fold)."""
    import torch

    from eutirads.data.manifest import read_manifest
    from eutirads.data.split import group_rows
    from eutirads.training.segment import _plain

    everything = read_manifest(root)
    groups = group_rows(everything)  # patients and near-duplicates, over every row
    group_of = {r["path"]: g for r, g in zip(everything, groups)}
    masked = [r for r in everything if r.get("mask")]
    pool_index, pool_pairs = localiser_inputs(root, masked, spec, unknown_as_empty=False)
    pool_groups = [group_of[masked[i]["path"]] for i in pool_index]
    _, pairs = localiser_inputs(root, rows, spec, unknown_as_empty=True)
    x_all = torch.from_numpy(np.stack([_plain(spec)(*p)[0] for p in pairs]))
    true_all = torch.from_numpy(np.stack([p[1] for p in pairs])).float()[:, None]
    batches, reference, true_pooled = imagenet_reference(config, x_all, true_all)
    cache = work / "repeated"
    cache.mkdir(parents=True, exist_ok=True)
    nodule = []
    for repeat, folds in enumerate(fold_sets):
        per_fold = []
        for fold in range(int(folds.max()) + 1):
            file = cache / f"r{repeat}_k{fold}.npz"
            if not file.is_file():
                held = {group_of[rows[i]["path"]] for i in np.flatnonzero(folds == fold)}
                train = [p for p, g in zip(pool_pairs, pool_groups) if g not in held]
                started = time.perf_counter()
                model = fold_localiser(config, spec, train, config.seed + 100 * repeat + fold)
                with torch.no_grad():
                    maps = torch.cat([torch.sigmoid(model(x_all[b:b + 16])) for b in batches])
                    feats = torch.cat([pooled(f, maps[b:b + 16])[1]
                                       for f, b in zip(reference, batches)]).numpy()
                scored = [i for i in np.flatnonzero(folds == fold) if true_all[i].sum() > 0]
                dice = [float(2 * ((maps[i] > 0.5) * true_all[i]).sum()
                              / ((maps[i] > 0.5).sum() + true_all[i].sum())) for i in scored]
                np.savez_compressed(file, features=feats, held_dice=np.asarray(dice))
                print(f"repeat {repeat} fold {fold}: localiser on {len(train)} images, "
                      f"held-out grid Dice {np.mean(dice):.3f} ({len(dice)} images), "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
            per_fold.append(np.load(file)["features"])
        nodule.append(np.stack(per_fold))
    return {"imagenet nodule": np.stack(nodule),
            "imagenet true outline": np.broadcast_to(true_pooled, np.stack(nodule).shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("models", nargs="?", default="",
                        help="localiser_cv.py --save-models DIR (the one-pass screen)")
    parser.add_argument("--work", default="/tmp/eutirads-nodule-pooled")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=0,
                        help="the repeated CV in recipe_cv.py's folds, with a localiser "
                             "trained per repeat and fold (no MODELS needed)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if bool(args.models) == bool(args.repeats):
        parser.error("give MODELS (the screen) or --repeats R (the repeated CV), not both")

    import torch

    import recipe_cv as rc
    from eutirads.categories import sort_labels
    from eutirads.data.manifest import read_manifest
    from eutirads.data.split import patient_folds
    from eutirads.evaluation.metrics import default_positive
    from eutirads.training.config import resolve_config
    from eutirads.training.segment import make_segment_spec

    torch.set_num_threads(args.threads)
    root, work = Path(args.dataset), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = resolve_config(str(REPO / "configs" / "localiser.yaml"), [])
    spec = make_segment_spec(config)
    if args.repeats:
        rows = [r for r in read_manifest(root) if r.get("label")]
        fold_sets = rc.repeated_folds(rows, args.k, args.repeats)
        views = repeated_views(root, rows, fold_sets, config, spec, work)
    else:
        masked = [r for r in read_manifest(root) if r.get("mask", "")]
        all_folds = np.asarray(patient_folds([{**r, "label": r.get("label") or "unlabelled"}
                                              for r in masked], args.k))
        labelled = [i for i, r in enumerate(masked) if r.get("label")]
        rows, fold_sets = [masked[i] for i in labelled], all_folds[labelled][None]
        cache = work / "pooled.npz"
        if cache.is_file():
            views = dict(np.load(cache))
        else:
            views = encode_folds(root, rows, args.models, args.k, config, spec)
            np.savez_compressed(cache, **views)
        views = {name: v[None] for name, v in views.items()}  # one repeat
    class_names = sort_labels({r["label"] for r in rows})
    y = np.array([class_names.index(r["label"]) for r in rows])
    heads, D = rc.descriptor_targets(rows)
    positive = default_positive(class_names)
    print(f"{len(rows)} labelled images; {len(fold_sets)} repeat(s) of {args.k} folds")

    baseline = rc._features(root, rows, "lite0-full", work, args.threads)
    recipes = {"baseline: lite0 full + logreg": lambda r, f: baseline,
               **{f"{name} + logreg": (lambda r, f, n=name: views[n][r, f]) for name in views}}
    if "locenc gap" in views:
        recipes["locenc gap + nodule + logreg"] = lambda r, f: np.hstack(
            [views["locenc gap"][r, f], views["locenc nodule"][r, f]])
        recipes["lite0 full + locenc nodule + logreg"] = lambda r, f: np.hstack(
            [baseline, views["locenc nodule"][r, f]])
    else:
        recipes["lite0 full + imagenet nodule + logreg"] = lambda r, f: np.hstack(
            [baseline, views["imagenet nodule"][r, f]])
    results, base_folds = [], None
    for name, view in recipes.items():
        for C in (1.0, 0.1):
            per_fold = []
            for repeat, folds in enumerate(fold_sets):
                for fold in range(args.k):
                    train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
                    X = view(repeat, fold)
                    proba, _ = rc.fit_head("logreg", {"C": C}, X[train], y[train], D[train],
                                           X[test], len(class_names))
                    desc = rc.descriptor_predictions(X, D, train, test, C=C)
                    m = rc.score_fold(y[test], proba, class_names, positive, D[test], desc,
                                      heads)
                    m.update(repeat=repeat, fold=fold, n_train=len(train), n_test=len(test))
                    per_fold.append(m)
            label = name if C == 1.0 else f"{name} C=0.1"
            is_base = label == rc.BASELINE
            base_folds = per_fold if is_base else base_folds
            results.append(rc.summarise(label, per_fold, None if is_base else base_folds, 0.0))
    (work / "results.json").write_text(json.dumps(results, default=float) + "\n")
    print(rc.table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
