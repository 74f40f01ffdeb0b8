"""`eutirads export RUN --out BUNDLE`: a trained run -> a bundle for torch-free serving."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained run to an ONNX bundle",
        description="Export RUN's best checkpoint to a bundle folder: model.onnx (outputs "
                    "'logits' and 'features'), preprocess.json, cam_head.npz, bundle.json and "
                    "model_card.md. The ONNX graph is checked against PyTorch (max abs "
                    "difference under 1e-4) before anything is written. Evaluate the run first "
                    "to put its test metrics into the model card.")
    parser.add_argument("run", help="training run folder (or a checkpoint .pt file)")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--name", help="the bundle's name (default: the run folder's name)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..export import export_bundle
    from ..inference.bundle import METADATA_FILE

    out = export_bundle(args.run, args.out, name=args.name)
    meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
    tested = "with test metrics" if meta.get("test_metrics") else "no test metrics (not evaluated)"
    print(f"exported {meta['model_name']} ({len(meta['class_names'])} classes) to {out}: "
          f"version {meta['version']}, ONNX max |diff| {meta['parity']['max_abs_logits']:.1e}, "
          f"{tested}")
    return 0
