"""Inference speed: PyTorch eager against the ONNX bundle (onnxruntime), batch 1 and 16.

    python benchmarks/inference_speed.py [--model tf_efficientnet_lite0] [--threads 2]

Times the model alone on prepared inputs (ms per image, median of --repeat runs after a
warm-up), then the whole `Predictor.predict` path on a 560x360 scanner frame (frame finding,
preprocessing, ONNX, heatmap). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, images: int, repeat: int) -> tuple[float, float]:
    """(wall, CPU) milliseconds per image, medians over `repeat` runs. On a shared machine
    the CPU time (all threads of this process) says what the work itself costs."""
    fn()  # warm-up (first-call allocations, ONNX graph optimisation)
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000 / images, statistics.median(cpus) * 1000 / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to time, for both runtimes (default: 1 2)")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    import torch

    from eutirads.export import export_model
    from eutirads.inference import Predictor
    from eutirads.models import create_model, default_preprocess
    from eutirads.phantom import render_example
    from eutirads.preprocess import PreprocessSpec

    classes = ("1", "2", "3", "4", "5")
    model = create_model(args.model, num_classes=len(classes), weights=args.weights).eval()
    spec = PreprocessSpec(**default_preprocess(args.model), class_names=classes)
    height, width = spec.input_size
    frame = np.asarray(render_example(seed=0, patient=0).screen)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    rows, full = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        bundle = export_model(model, spec, Path(tmp) / "bundle", name="bench",
                              model_name=args.model)
        export_s = time.perf_counter() - started
        for threads in args.threads:
            torch.set_num_threads(threads)
            predictor = Predictor(bundle, threads=threads)
            for batch in (1, 16):
                x = np.random.default_rng(0).normal(size=(batch, 3, height, width)).astype(np.float32)
                tensor = torch.from_numpy(x)

                def eager(tensor=tensor):
                    with torch.inference_mode():
                        model(tensor)

                torch_ms = _median_ms(eager, batch, args.repeat)
                onnx_ms = _median_ms(lambda x=x, p=predictor: p.run(x), batch, args.repeat)
                rows.append((threads, batch, torch_ms, onnx_ms))
            full[threads] = _median_ms(lambda p=predictor: p.predict(frame), 1, args.repeat)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
          f"model {args.model} {height}x{width}; export + parity check {export_s:.1f} s")
    print()
    print("| threads | batch | PyTorch eager ms/image (CPU ms) | ONNX Runtime ms/image (CPU ms) "
          "| speed-up (wall) |")
    print("|---|---|---|---|---|")
    for threads, batch, (torch_ms, torch_cpu), (onnx_ms, onnx_cpu) in rows:
        print(f"| {threads} | {batch} | {torch_ms:.1f} ({torch_cpu:.1f}) | {onnx_ms:.1f} "
              f"({onnx_cpu:.1f}) | {torch_ms / onnx_ms:.2f}x |")
    print()
    for threads, (wall, cpu) in full.items():
        print(f"Predictor.predict on a {frame.shape[1]}x{frame.shape[0]} frame (frame finding, "
              f"preprocessing, ONNX, heatmap), {threads} thread(s): {wall:.0f} ms/image "
              f"({cpu:.0f} CPU ms)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
