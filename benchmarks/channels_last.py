"""CPU time per image of an EfficientNet-Lite forward pass, in PyTorch's default (NCHW)
memory layout and channels-last (NHWC), at several batch sizes: the measurement behind
`training.engine.to_device` and `CPU_INFERENCE_BATCH` (docs/benchmarks.md, "`eutirads demo`
on the slower VM").

    python benchmarks/channels_last.py [--model tf_efficientnet_lite0] [--sizes 224x224 144x192]
                                       [--batches 8 16 32] [--rounds 5]

Untrained weights (the layout, not the values, sets the speed); no-gradient eval passes,
as when caching features or predicting. Prints one JSON line per (size, batch) with the
median ms/img of each layout over `rounds` timed passes after one warm-up pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time


def _ms_per_image(model, x, rounds: int) -> float:
    import torch

    with torch.no_grad():
        model.forward_features(x)  # warm-up: oneDNN picks and builds its kernels here
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            model.forward_features(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times) / len(x) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--sizes", nargs="+", default=["224x224", "144x192"],
                        help="HEIGHTxWIDTH inputs")
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import timm
    import torch

    plain = timm.create_model(args.model, pretrained=False, num_classes=5).eval()
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        for batch in args.batches:
            x = torch.randn(batch, 3, height, width)
            print(json.dumps({
                "model": args.model, "size": [height, width], "batch": batch,
                "threads": torch.get_num_threads(),
                "nchw_ms_per_image": round(_ms_per_image(plain, x, args.rounds), 1),
                "channels_last_ms_per_image": round(_ms_per_image(nhwc, x, args.rounds), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
