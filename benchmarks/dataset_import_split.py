"""Time `dataset import`, `split` and `summary` on phantom images (and optionally DDTI-dev).

    python benchmarks/dataset_import_split.py [--n 1000] [--phantom DIR] [--ddti DIR]

Generates N phantom images (unless --phantom points at an existing phantom folder), then
times each dataset step in-process and prints one Markdown table row per step, to paste
into docs/benchmarks.md. No target is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from eutirads.data.importers import import_dataset
from eutirads.data.split import split_dataset
from eutirads.data.summary import summarize


def _timed(label: str, images: int, func) -> None:
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    print(f"| {label} | {images} | {seconds:.1f} s | {images / seconds:.0f} images/s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--phantom", type=Path, help="existing phantom folder to import")
    parser.add_argument("--ddti", type=Path, help="DDTI-dev folder to import as well")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eutirads-bench-"))
    phantom = args.phantom
    if phantom is None:
        from eutirads.phantom import generate_dataset

        phantom = work / "phantom"
        generate_dataset(phantom, n=args.n, seed=1, progress=False)
    n = sum(1 for p in phantom.rglob("*.png"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible; "
          f"python {platform.python_version()}")
    print("| step | images | time | rate |\n|---|---|---|---|")
    dataset = work / "dataset"
    _timed("import (folders: decode, fingerprint, copy)", n,
           lambda: import_dataset(phantom, dataset, fmt="folders", progress=False))
    _timed("split (fingerprints cached)", n,
           lambda: split_dataset(dataset, seed=0, progress=False))
    _timed("summary (decodes every image)", n, lambda: summarize(dataset))
    if args.ddti:
        _timed("import (ddti)", 296,
               lambda: import_dataset(args.ddti, work / "ddti", fmt="ddti", progress=False))


if __name__ == "__main__":
    main()
