"""A demo bundle scored on phantom screens it has never seen: macro-F1 and each descriptor's
accuracy as `predict` serves them, on a fresh phantom drawn with another seed.

    python benchmarks/demo_heldout.py BUNDLE WORKDIR [--n 400] [--seed 77] [--workers N]
        [--bootstrap 1000]

BUNDLE is the demo's bundle (`WORKDIR/bundle` of `benchmarks/demo_steps.py`, or
`eutirads demo --workdir W`'s `W/bundle`). WORKDIR is where the held-out phantom and its
imported dataset are written (reused when they are already there with the same n and
seed; a non-empty folder holding anything else is refused in one line). Every imported
row is scored (split `test`), so the figures rest on n images, not the demo's 50 test
screens. With 80 images a class, one image is about 0.01 of macro-F1;
the 95% intervals are patient-bootstrap intervals (`evaluation.metrics`).
docs/benchmarks.md, "The demo on held-out phantom screens".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _held_out_dataset(workdir: Path, n: int, seed: int, workers: int | None) -> Path:
    """Generate and import the held-out phantom once; every row becomes a test row."""
    from eutirads.data.importers import import_dataset
    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.phantom import generate_dataset

    stamp = workdir / "heldout.json"
    dataset = workdir / "dataset"
    wanted = {"n": n, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return dataset
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"{workdir}: not empty and not a held-out set of n={n}, seed={seed}; "
                         "pass an empty or new folder")
    workdir.mkdir(parents=True, exist_ok=True)
    generate_dataset(workdir / "phantom", n=n, seed=seed, progress=False)
    import_dataset(workdir / "phantom", dataset, fmt="folders", progress=False,
                   workers=workers)
    write_manifest(dataset, [{**row, "split": "test"} for row in read_manifest(dataset)])
    stamp.write_text(json.dumps(wanted) + "\n")
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("workdir")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient resamples")
    args = parser.parse_args(argv)

    from eutirads.demo import served_metrics

    dataset = _held_out_dataset(Path(args.workdir), args.n, args.seed, args.workers)
    started = time.perf_counter()
    served = served_metrics(Path(args.bundle), dataset, split="test", n_boot=args.bootstrap)
    print(json.dumps({"n": args.n, "seed": args.seed, "served": served,
                      "seconds": round(time.perf_counter() - started, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
