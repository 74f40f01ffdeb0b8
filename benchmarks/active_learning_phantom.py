"""Active learning on the phantom: does reading uncertain-first images teach a model faster
than reading them in random order?

A simulated reader answers from the phantom's true labels. Each round the model is fitted
on the images read so far, predicts the unread pool, and the reader reads the next batch:
at random, or the least certain first (1 - top probability, as `eutirads label rank`
stores). The learning curve is macro-F1 on a held-out test set against images read.

The learner is a stand-in, fast enough to refit every round on a shared 2-core machine:
multinomial logistic regression on 24x24 grey nodule crops (the manifest's box with the
training crop rule's margin), not the project's CNN. It shows whether the queue order
matters on this data, not the CNN's own curve.

    python benchmarks/active_learning_phantom.py [--n 500] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def features(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from eutirads.data.manifest import image_path, read_manifest, row_bbox
    from eutirads.imageio import load_gray

    xs, ys = [], []
    for row in read_manifest(root):
        gray = load_gray(image_path(root, row))
        box = row_bbox(row)
        h, w = gray.shape
        if box is None:  # category 1 has no nodule: the middle of the screen
            box = (w // 3, h // 3, 2 * w // 3, 2 * h // 3)
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) // 2, (y1 - y0) // 2  # half-box margin, like the demo's crop
        crop = gray[max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)]
        xs.append(np.asarray(Image.fromarray(crop).resize((24, 24)), np.float32).ravel() / 255)
        ys.append(row["label"])
    x = np.stack(xs)
    return (x - x.mean(0)) / (x.std(0) + 1e-6), np.array(ys)


def curve(x, y, train, test, *, strategy, start, step, budget, seed) -> list[tuple[int, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    pool = list(rng.permutation(train))
    read = [pool.pop() for _ in range(start)]
    points = []
    while True:
        model = LogisticRegression(max_iter=300, C=0.5).fit(x[read], y[read])
        points.append((len(read), f1_score(y[test], model.predict(x[test]), average="macro")))
        if len(read) >= budget or not pool:
            return points
        if strategy == "uncertain-first":
            uncertainty = 1 - model.predict_proba(x[pool]).max(axis=1)
            order = np.argsort(-uncertainty, kind="stable")
            chosen = [pool[i] for i in order[:step]]
        else:
            chosen = pool[:step]
        pool = [i for i in pool if i not in set(chosen)]
        read += chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    args = parser.parse_args()
    from eutirads.phantom.dataset import generate_dataset

    root = Path(tempfile.mkdtemp(prefix="eutirads-al-")) / "phantom"
    generate_dataset(root, n=args.n, seed=11, width=320, height=220, progress=False)
    x, y = features(root)
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[: len(y) // 4], order[len(y) // 4:]
    curves = {}
    for strategy in ("random", "uncertain-first"):
        runs = [curve(x, y, train, test, strategy=strategy, start=args.start, step=args.step,
                      budget=args.budget, seed=s) for s in range(args.seeds)]
        curves[strategy] = [(runs[0][i][0], float(np.mean([r[i][1] for r in runs])),
                             float(np.std([r[i][1] for r in runs]))) for i in range(len(runs[0]))]
    print(f"phantom n={args.n} (test {len(test)}, pool {len(train)}), {args.seeds} seeds, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| images read | random macro-F1 | uncertain-first macro-F1 |")
    print("|---:|---:|---:|")
    for (n, r, rs), (_, u, us) in zip(curves["random"], curves["uncertain-first"]):
        print(f"| {n} | {r:.3f} ± {rs:.3f} | {u:.3f} ± {us:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
