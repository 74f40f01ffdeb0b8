"""Phantom learnability: fine-tune an ImageNet EfficientNet-Lite0 on phantom screens and
report the held-out macro-F1 per epoch and the final confusion matrix.

A quick check that the features defining each EU-TIRADS category are visible at the
network's input scale (it is not the project's training recipe: see `eutirads train`).

    python benchmarks/phantom_learnability.py --n 500 --crop roi --size 128 --epochs 8

Crops: "roi" (nodule box widened by 25 % on each side; the image area for category 1) or
"full" (the image area). 80 % of the images train, 20 % are held out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _crops(folder: Path, crop: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from eutirads.data.manifest import image_path, read_manifest, row_bbox
    from eutirads.imageio import load_rgb
    from eutirads.phantom.screen import image_area_box

    mean = np.array((0.485, 0.456, 0.406), np.float32)[:, None, None]
    std = np.array((0.229, 0.224, 0.225), np.float32)[:, None, None]
    images, labels = [], []
    for row in read_manifest(folder):
        pixels = load_rgb(image_path(folder, row))
        area = image_area_box(pixels.shape[1], pixels.shape[0])
        box = tuple(area)
        nodule = row_bbox(row)
        if crop == "roi" and nodule is not None:
            dx, dy = (nodule[2] - nodule[0]) * 0.25, (nodule[3] - nodule[1]) * 0.25
            box = (max(area.x0, int(nodule[0] - dx)), max(area.y0, int(nodule[1] - dy)),
                   min(area.x1, int(nodule[2] + dx)), min(area.y1, int(nodule[3] + dy)))
        tile = Image.fromarray(pixels[box[1]:box[3], box[0]:box[2]]).resize(
            (size, size), Image.Resampling.BILINEAR)
        images.append((np.asarray(tile, np.float32).transpose(2, 0, 1) / 255.0 - mean) / std)
        labels.append(int(row["label"]) - 1)
    return np.stack(images), np.array(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--crop", choices=("roi", "full"), default="roi")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from sklearn.metrics import confusion_matrix, f1_score

    from eutirads.models import create_model
    from eutirads.phantom import generate_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "p"
        generate_dataset(folder, n=args.n, seed=args.seed, progress=False)
        images, labels = _crops(folder, args.crop, args.size)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    n_train = int(len(y) * 0.8)
    model = create_model("tf_efficientnet_lite0", num_classes=5, weights="imagenet")
    head = [p for name, p in model.named_parameters() if "classifier" in name]
    base = [p for name, p in model.named_parameters() if "classifier" not in name]
    optimizer = torch.optim.AdamW([{"params": head}, {"params": base}], weight_decay=1e-4)
    steps = args.epochs * ((n_train + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[2e-3, 5e-4],
                                                   total_steps=steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n_train)
        for i in range(0, n_train, 32):
            index = order[i:i + 32]
            batch = x[index]
            flip = torch.rand(len(index), 1, 1, 1) < 0.5  # left/right lobes look mirrored
            batch = torch.where(flip, batch.flip(3), batch)
            loss = F.cross_entropy(model(batch), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(x[i:i + 64]).argmax(1)
                                   for i in range(n_train, len(y), 64)]).numpy()
        score = f1_score(y[n_train:].numpy(), predicted, average="macro")
        print(f"epoch {epoch + 1}: held-out macro-F1 {score:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print("confusion (rows: true 1..5, columns: predicted 1..5)")
    print(confusion_matrix(y[n_train:].numpy(), predicted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
