"""Patient-grouped 5-fold cross-validation of training recipes on DDTI-dev.

    python benchmarks/ddti_cv.py [--ddti DIR] [--work DIR] [--only NAME ...] [--folds 5]

Imports DDTI-dev (6 TI-RADS classes, 170 labelled images) into WORK/dataset once, then
cross-validates each recipe below over every labelled image (folds grouped by case and by
identical / near-duplicate images, stratified by label), and appends one JSON line per
recipe to WORK/results.jsonl: macro-F1, quadratic kappa, accuracy and the AUC of high
suspicion (4b, 4c, 5 against 2, 3, 4a), mean and spread over folds, plus pooled
out-of-fold values. Decoded and cropped images are cached in memory across recipes.
Run it niced in the background: the fine-tuning recipes take several minutes each on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> config overrides (on top of the built-in defaults). Few epochs: the aim is to
# rank recipes, and 170 images do not reward long schedules. Each recipe names its mode and
# augmentation: the built-in defaults changed (to the frozen recipe, no augmentation) after
# the two-stage rows were measured with augmentation on.
RECIPES: dict[str, list[str]] = {
    "lite0-frozen-full": ["mode=frozen", "augment=false", "crop=full", "epochs=60", "lr=0.003"],
    "lite0-frozen-roi": ["mode=frozen", "augment=false", "crop=roi", "epochs=60", "lr=0.003"],
    "lite0-frozen-roi-tta": ["mode=frozen", "augment=false", "crop=roi", "epochs=60",
                             "lr=0.003", "tta=true"],
    "lite0-two-stage-roi": ["mode=two-stage", "augment=true", "crop=roi", "head_epochs=40", "epochs=10",
                            "unfreeze=3", "lr=0.003", "finetune_lr=0.0003", "aug_passes=3"],
    "lite0-two-stage-full": ["mode=two-stage", "augment=true", "crop=full", "head_epochs=40", "epochs=10",
                             "unfreeze=3", "lr=0.003", "finetune_lr=0.0003", "aug_passes=3"],
    "lite0-two-stage-roi-ordinal": ["mode=two-stage", "augment=true", "crop=roi", "head_epochs=40", "epochs=10",
                                    "unfreeze=3", "lr=0.003", "finetune_lr=0.0003",
                                    "aug_passes=3", "loss=ordinal"],
    "lite0-two-stage-full-ordinal": ["mode=two-stage", "augment=true", "crop=full", "head_epochs=40",
                                     "epochs=10", "unfreeze=3", "lr=0.003",
                                     "finetune_lr=0.0003", "aug_passes=3", "loss=ordinal"],
    "lite0-two-stage-full-tta": ["mode=two-stage", "augment=true", "crop=full", "head_epochs=40", "epochs=10",
                                 "unfreeze=3", "lr=0.003", "finetune_lr=0.0003",
                                 "aug_passes=3", "tta=true"],
    "lite2-frozen-full": ["model=tf_efficientnet_lite2", "mode=frozen", "augment=false",
                          "crop=full", "epochs=60", "lr=0.003"],
    "lite2-frozen-roi": ["model=tf_efficientnet_lite2", "mode=frozen", "augment=false",
                         "crop=roi", "epochs=60", "lr=0.003"],
    "seed-cnn-full": ["model=seed-cnn", "weights=none", "mode=finetune", "augment=true", "crop=full",
                      "input_size=128", "epochs=30", "lr=0.001", "finetune_lr=0.001",
                      "aug_passes=0"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddti", default=os.environ.get(
        "EUTIRADS_DDTI_DIR", str(REPO.parent / "shared" / "datasets" / "ddti-dev")))
    parser.add_argument("--work", default="/tmp/eutirads-ddti-cv")
    parser.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from eutirads.data.importers import import_dataset
    from eutirads.training.config import resolve_config
    from eutirads.training.cv import cross_validate

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    dataset = work / "dataset"
    if not (dataset / "manifest.csv").is_file():
        import_dataset(args.ddti, dataset, fmt="ddti", progress=False)
    cache: dict = {}
    names = args.only or list(RECIPES)
    for name in names:
        started = time.perf_counter()
        config = resolve_config(None, RECIPES[name])
        result = cross_validate(dataset, config, work / "runs" / name, k=args.folds,
                                splits=None, progress=False, image_cache=cache)
        line = {"recipe": name, "overrides": RECIPES[name], "k": args.folds,
                "mean": result.mean, "std": result.std, "pooled": result.pooled,
                "n": sum(int(f["n"]) for f in result.folds),
                "seconds": round(time.perf_counter() - started, 1)}
        with (work / "results.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        print(f"{name}: {result.summary_line()} ({line['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
