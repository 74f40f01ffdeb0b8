"""`eutirads demo`'s seconds per step: the demo's own run (same steps, seed and recipe as
`eutirads demo --no-serve`), printed as JSON with what it served on the test split.

    python benchmarks/demo_steps.py WORKDIR

WORKDIR is cleared and rebuilt as by `eutirads demo --workdir`. The seconds are the demo's
own count (`DemoResult.seconds`: phantom, import, split, train, localiser, measured,
evaluate, evaluate localiser, export, served, total), without the interpreter's start-up.
docs/benchmarks.md, "`eutirads demo` on the slower VM".
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    args = parser.parse_args(argv)

    from eutirads.demo import run_demo

    result = run_demo(args.workdir, progress=False)
    print(json.dumps({"seconds": result.seconds, "served": result.served,
                      "test_macro_f1_head": result.macro_f1,
                      "localiser_test_dice": (result.localiser_metrics.get("summary")
                                              or {}).get("dice")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
