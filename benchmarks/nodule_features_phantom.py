"""Measured nodule features (`models.nodule_features`) on a split dataset with masks and
descriptors (the phantom): per-descriptor accuracy on the test split, and the category
from the guideline rule on the predicted descriptors and from a logistic regression.

    nice -n 19 python benchmarks/nodule_features_phantom.py DATASET [--bundle BUNDLE]
        [--work DIR]

- The heads (one scikit-learn logistic regression per descriptor and one for the
  category, standardised, C = 1) are fitted on the train + val images with a nodule, on
  the features of their TRUE outlines.
- Test images are scored twice: with their true outlines (the oracle), and, with
  `--bundle`, with the bundle's localiser probability map (what a deployed model sees).
- The EU-TIRADS rule (`categories.classify`) turns the predicted descriptors into the
  category; images without a nodule (category 1) are left out of the descriptor columns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def localiser_maps(dataset: Path, rows, bundle: Path, shape) -> np.ndarray:
    """The bundle localiser's probability on the features' grid (the image area from
    `configs/localiser.yaml`'s rule, stretched), for each row."""
    from PIL import Image

    from eutirads.data.manifest import image_path
    from eutirads.imageio import load_rgb
    from eutirads.inference.bundle import read_metadata
    from eutirads.inference.localiser import Localiser
    from eutirads.preprocess import crop_box
    from eutirads.region import crop
    from eutirads.training.segment import make_segment_spec
    from recipe_cv import _localiser_config

    meta = read_metadata(bundle)
    localiser = Localiser(bundle, meta, threads=1)
    spec = make_segment_spec(_localiser_config())
    out = np.zeros((len(rows), *shape), np.float32)
    for i, row in enumerate(rows):
        pixels = load_rgb(image_path(dataset, row), name=row["path"])
        prob, _ = localiser.probability(pixels)
        box = crop_box(pixels, spec)
        grid = Image.fromarray(crop(prob, box).astype(np.float32))
        out[i] = np.asarray(grid.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--bundle", help="a bundle with a localiser (honest outlines)")
    parser.add_argument("--work", default="/tmp/eutirads-nodule-phantom")
    parser.add_argument("--fit-on", choices=("true", "localiser", "both"), default="true",
                        help="outlines the heads learn from (localiser/both need --bundle)")
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from eutirads.categories import DESCRIPTORS, NoduleFeatures, classify
    from eutirads.data.manifest import read_manifest
    from eutirads.evaluation.metrics import classification_report
    from eutirads.models.nodule_features import measure
    from eutirads.training.data import descriptor_matrix
    from recipe_cv import nodule_inputs

    dataset, work = Path(args.dataset), Path(args.work)
    rows = [r for r in read_manifest(dataset) if r.get("label") and r.get("split")]
    heads, D = descriptor_matrix(rows)
    gray, true, scale = nodule_inputs(dataset, rows, work, name=f"inputs-{dataset.name}")
    X_true = measure(gray / 255.0, true, scale)
    split = np.array([r["split"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    fit_rows = (split != "test") & (true.reshape(len(rows), -1).max(1) > 0)
    test = split == "test"
    prob = X_loc = None
    if args.bundle:
        prob = localiser_maps(dataset, rows, Path(args.bundle), gray.shape[1:])
        X_loc = measure(gray / 255.0, prob, scale)
    # The heads' training features: the true outlines, the localiser's (on its own training
    # images: what it outlines there is what it outlines at prediction, a little better),
    # or both stacked.
    X_fit, D_fit, y_fit, fit_mask = {
        "true": (X_true, D, labels, fit_rows),
        "localiser": (X_loc, D, labels, fit_rows),
        "both": (np.vstack([X_true, X_loc]) if X_loc is not None else None, np.vstack([D, D]),
                 np.concatenate([labels, labels]), np.concatenate([fit_rows, fit_rows])),
    }[args.fit_on]
    keep = np.concatenate([split, split]) if args.fit_on == "both" else split

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))

    desc_models = {}
    for j, name in enumerate(heads):
        known = fit_mask & (D_fit[:, j] >= 0)
        desc_models[name] = model().fit(X_fit[known], D_fit[known, j])
    cat_model = model().fit(X_fit[keep != "test"], y_fit[keep != "test"])

    def score(X, prob) -> dict:
        out: dict = {}
        # A nodule is there when the outline has at least 40 grid pixels (the rule's "1").
        present = (prob >= 0.5).reshape(len(rows), -1).sum(1) >= 40
        pred = {name: desc_models[name].predict(X) for name in heads}
        for j, name in enumerate(heads):
            known = test & (D[:, j] >= 0)
            out[f"{name}_accuracy"] = round(float((pred[name][known] == D[known, j]).mean()), 3)
            out[f"{name}_n"] = int(known.sum())
        values = {name: DESCRIPTORS[name] for name in heads}
        ruled = []
        for i in np.flatnonzero(test):
            described = {name: values[name][pred[name][i]] for name in heads}
            try:
                ruled.append(str(classify(NoduleFeatures(nodule=bool(present[i]),
                                                         **described))))
            except Exception:  # a descriptor the phantom lacks: the rule cannot apply
                ruled.append("")
        names = sorted(set(labels))

        def f1(pred) -> float:
            return round(float(classification_report(list(labels[test]), list(pred),
                                                     names)["macro"]["f1"]), 3)

        out["rule_macro_f1"] = f1(ruled)
        out["logreg_macro_f1"] = f1(cat_model.predict(X[test]))
        return out

    results = {"dataset": dataset.name, "fit_on": args.fit_on, "train_rows": int(fit_rows.sum()),
               "test_rows": int(test.sum()), "true_outline": score(X_true, true)}
    if X_loc is not None:
        results["localiser_outline"] = score(X_loc, prob)
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
