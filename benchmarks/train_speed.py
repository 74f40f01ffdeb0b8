"""Training throughput (images/s) of the three ways to train a pretrained backbone.

    python benchmarks/train_speed.py [--model tf_efficientnet_lite0] [--images 128] [--size 224]

On random 224x224 images (speed does not depend on content):
  frozen + cache       base frozen, no augmentation: features computed once, epochs train the head
  frozen + aug cache   base frozen, augmentation: features cached per augmentation pass (4)
  top-3 fine-tune      two-stage's second stage: the top 3 stages train on a cached bottom
  full fine-tune       every layer trains, augmentation on the fly
For each: seconds spent building caches, images/s of a training epoch after that, and the
images/s over the whole run (caches included) for the given number of epochs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from eutirads.models import create_model
    from eutirads.training.config import resolve_config
    from eutirads.training.engine import fit
    from eutirads.training.run import make_spec

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
              for _ in range(args.images)]
    labels = [i % 5 for i in range(args.images)]
    val = images[:16]
    cases = {
        "frozen + cache": ["mode=frozen", "augment=false"],
        "frozen + aug cache (4 passes)": ["mode=frozen", "augment=true", "aug_passes=4"],
        "top-3 fine-tune (cached bottom, 4 passes)": ["mode=finetune", "unfreeze=3",
                                                       "augment=true", "aug_passes=4"],
        "full fine-tune (augment on the fly)": ["mode=finetune", "unfreeze=-1", "augment=true"],
    }
    print(f"{args.model}, {args.images} images at {args.size}px, {args.epochs} epochs, "
          f"{args.threads} threads")
    print("| mode | cache build s | epoch img/s | overall img/s |")
    print("|---|---|---|---|")
    for name, overrides in cases.items():
        epochs = args.epochs if "full" not in name else 1
        config = resolve_config(None, overrides + [f"model={args.model}",
                                                   f"input_size={args.size}",
                                                   f"epochs={epochs}", "patience=0"])
        spec = make_spec(config, [str(i) for i in range(5)])
        model = create_model(args.model, num_classes=5, weights="imagenet")
        started = time.perf_counter()
        result = fit(model, spec, config, images, labels, val, labels[:16], progress=False)
        total = time.perf_counter() - started
        epoch_seconds = sum(row["seconds"] for row in result.history)
        build = total - epoch_seconds
        overall = args.images * epochs / total
        print(f"| {name} | {build:.1f} | {result.train_images_per_s:.0f} | {overall:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
