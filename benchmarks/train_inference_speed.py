"""Inference ms/image: PyTorch eager against the exported ONNX bundle, batch 1 and 16.

    python benchmarks/train_inference_speed.py [--model tf_efficientnet_lite0] [--size 224]

Builds the model with its ImageNet weights and a 5-class head, exports a bundle with
`eutirads.export.export_model` (the same path as `eutirads export`), then times the model
alone (both outputs: logits and the feature map) on random normalised input. Preprocessing
(decode, frame finding, resize) is not included: it is the same numpy code on both sides.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from eutirads.export import export_model
    from eutirads.models import create_model, default_preprocess
    from eutirads.preprocess import PreprocessSpec

    torch.set_num_threads(args.threads)
    model = create_model(args.model, num_classes=5, weights="imagenet").eval()
    pre = default_preprocess(args.model)
    spec = PreprocessSpec(input_size=(args.size, args.size), mean=pre["mean"], std=pre["std"],
                          class_names=("1", "2", "3", "4", "5"))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_model(model, spec, Path(tmp) / "bundle", name="bench",
                              model_name=args.model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(Path(bundle) / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        print(f"{args.model} at {args.size}px, {args.threads} threads")
        print("| batch | PyTorch eager ms/image | ONNX Runtime ms/image |")
        print("|---|---|---|")
        rng = np.random.default_rng(0)
        for batch in (1, 16):
            x = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
            tx = torch.from_numpy(x)

            def eager():
                with torch.inference_mode():
                    features = model.forward_features(tx)
                    model.forward_head(features)

            repeats = args.repeats if batch == 1 else max(2, args.repeats // 4)
            t_torch = _time(eager, repeats) / batch * 1000
            t_onnx = _time(lambda: session.run(None, {input_name: x}), repeats) / batch * 1000
            print(f"| {batch} | {t_torch:.1f} | {t_onnx:.1f} |", flush=True)


if __name__ == "__main__":
    main()
