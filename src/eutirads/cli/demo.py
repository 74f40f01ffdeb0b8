"""`eutirads demo [--workdir DIR] [--no-serve]`: the whole pipeline on phantom data."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on phantom data (the main job)",
        description="Phantom data -> import -> split -> train the default recipe -> evaluate "
                    "-> export, then print where the report and the bundle are. The localiser is "
                    "trained and evaluated too, and the bundle holds both models.")
    parser.add_argument("--workdir", help="folder for everything the demo makes "
                                          "(default: EUTIRADS_HOME/demo, i.e. ~/.eutirads/demo)")
    parser.add_argument("--no-serve", action="store_true",
                        help="stop after export instead of serving the bundle")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help="phantom screens to generate (default 500)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo import DEMO_IMAGES, run_demo, serve_bundle

    result = run_demo(args.workdir, n=args.images or DEMO_IMAGES, progress=not args.quiet)
    s = result.metrics.get("summary") or {}
    print(f"demo: test macro-F1 {result.macro_f1:.3f}, accuracy {s.get('accuracy', 0):.3f}, "
          f"kappa {s.get('kappa', 0):.3f} on {result.metrics.get('n', 0)} phantom test images; "
          f"{result.seconds['total']:.0f} s in all")
    served = result.served
    if served.get("macro_f1") is not None:
        described = ", ".join(f"{k[:-len('_accuracy')]} {v:.2f}" for k, v in served.items()
                              if k.endswith("_accuracy"))
        print(f"demo: the bundle as served ({served['category_source']} category): test "
              f"macro-F1 {served['macro_f1']:.3f}; descriptor accuracy {described}")
    local = result.localiser_metrics.get("summary") or {}
    if local:
        print(f"demo: localiser test Dice {local.get('dice') or 0:.3f}, detection rate "
              f"{local.get('detection_rate') or 0:.3f} on {result.localiser_metrics.get('n', 0)} "
              f"phantom test images")
    print(f"report: {result.report}")
    if result.localiser_run is not None:
        print(f"localiser report: {result.localiser_run / 'eval' / 'test' / 'report.html'}")
    print(f"bundle: {result.bundle}")
    return serve_bundle(result, serve=not args.no_serve)  # --no-serve: register, don't serve
