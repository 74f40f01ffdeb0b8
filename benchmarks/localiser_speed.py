"""CPU cost of the nodule localiser and of the whole predict path, on one thread.

    python benchmarks/localiser_speed.py BUNDLE IMAGE... [--repeat 20]

BUNDLE holds a localiser (and, for the whole path, a classifier). Reports the median CPU
milliseconds per image (`time.process_time`, onnxruntime with one intra-op thread) of:
- `localiser_onnx`: the localiser's ONNX session alone on a prepared input;
- `localiser`: `Localiser.find` (image area, resize, ONNX, probability back to the image,
  regions, axes, contours);
- `predict`: `Predictor.predict` with localiser, classifier (in the localiser's box) and
  heatmap, when the bundle has both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _cpu_ms(func, repeat: int) -> float:
    func()  # warm-up: first-run allocations are not the steady cost
    times = []
    for _ in range(repeat):
        start = time.process_time()
        func()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    import numpy as np

    from eutirads.imageio import load_rgb
    from eutirads.inference import Predictor
    from eutirads.inference.bundle import INPUT_NAME, LOCALISER_OUTPUTS
    from eutirads.preprocess import prepare

    predictor = Predictor(args.bundle, threads=1)
    local = predictor.localiser
    if local is None:
        raise SystemExit(f"{args.bundle}: no localiser")
    results: dict[str, list[float]] = {"localiser_onnx": [], "localiser": [], "predict": []}
    sizes = set()
    for image in args.images:
        pixels = load_rgb(image)
        sizes.add(f"{pixels.shape[1]}x{pixels.shape[0]}")
        x = prepare(pixels, local.spec)[None]
        results["localiser_onnx"].append(_cpu_ms(
            lambda: local._session.run(list(LOCALISER_OUTPUTS), {INPUT_NAME: x}), args.repeat))
        results["localiser"].append(_cpu_ms(lambda: local.find(pixels), args.repeat))
        if predictor.has_classifier:
            results["predict"].append(_cpu_ms(lambda: predictor.predict(pixels), args.repeat))
    out = {"bundle": Path(args.bundle).name, "images": len(args.images), "sizes": sorted(sizes),
           "localiser_input": list(local.spec.input_size),
           "classifier_input": list(predictor.spec.input_size) if predictor.spec else None,
           "threads": 1, "load_average": os.getloadavg(),
           **{f"{k}_cpu_ms_median": round(float(np.median(v)), 1) for k, v in results.items() if v}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
