"""`eutirads export RUN [--localiser LOCALISER_RUN] --out BUNDLE`: trained runs -> a bundle
for torch-free serving (a classifier, a localiser, or both)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export trained runs (classifier and/or localiser) to an ONNX bundle",
        description="Export RUN's best checkpoint to a bundle folder (format 2). A classifier "
                    "run gives model.onnx (outputs 'logits' and 'features'), preprocess.json "
                    "and cam_head.npz; a localiser run (task: segment), alone or through "
                    "--localiser beside a classifier, gives localiser.onnx and "
                    "localiser_preprocess.json; bundle.json lists the components and "
                    "model_card.md describes them. Every ONNX graph is checked against "
                    "PyTorch (max abs difference under 1e-4) before anything is written. "
                    "Evaluate the runs first to put their test metrics into the model card.")
    parser.add_argument("run", help="training run folder (or a checkpoint .pt file): a "
                                    "classifier, or a localiser for a localiser-only bundle")
    parser.add_argument("--localiser", metavar="LOCALISER_RUN",
                        help="a localiser run (task: segment) to put beside RUN's classifier")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--name", help="the bundle's name (default: the run folder's name)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..export import export_bundle
    from ..inference.bundle import CLASSIFIER, LOCALISER, read_metadata

    out = export_bundle(args.run, args.out, name=args.name, localiser=args.localiser)
    meta = read_metadata(out)
    parts = []
    classifier = meta["components"].get(CLASSIFIER)
    if classifier:
        parts.append(f"{classifier['model_name']} ({len(classifier['class_names'])} classes, "
                     f"ONNX max |diff| {classifier['parity']['max_abs_logits']:.1e}, "
                     + ("with test metrics" if classifier.get("test_metrics")
                        else "no test metrics (not evaluated)") + ")")
    localiser = meta["components"].get(LOCALISER)
    if localiser:
        parts.append(f"localiser {localiser['model_name']} (ONNX max |diff| "
                     f"{localiser['parity']['max_abs_logits']:.1e}, "
                     + ("with test metrics" if localiser.get("test_metrics")
                        else "no test metrics (not evaluated)") + ")")
    outline = meta["components"].get("outline")
    if outline:
        parts.append(f"the outline's category (ONNX max |diff| "
                     f"{outline['parity']['max_abs_logits']:.1e}; the category where a "
                     "nodule is found)")
    print(f"exported {' + '.join(parts)} to {out}: version {meta['version']}")
    return 0
