"""Ingest speed: frames per second de-identified and converted, against a plain pydicom +
Pillow conversion loop (decode every frame, save it as PNG, no de-identification, no
cropping) over the same files, with the same number of worker processes. The loop runs
twice: with Pillow's default PNG compression and with the level ingest uses, so the
second comparison shows the cost of de-identification and cleaning alone.

    nice python benchmarks/ingest_speed.py [--src DIR] [--n 40] [--workers 2] [--repeat 2]

Without --src, phantom DICOM exams are generated first (`eutirads.phantom.dicom`).
Prints a Markdown table for docs/benchmarks.md. Target: ingest (burned-in text check on,
the default) within 1.5x of the plain loop's time; the `--text-policy off` row shows what
the check costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _plain_one(job: tuple[str, str, int]) -> int:
    """The reference: what a hand-written converter does with pydicom and Pillow."""
    import pydicom
    from PIL import Image
    from pydicom.pixels import apply_color_lut

    source, out, level = job
    ds = pydicom.dcmread(source)
    frames = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        frames = frames[None]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        frames = apply_color_lut(frames, ds)
    stem = Path(out) / Path(source).stem
    for index, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame.astype(np.uint8))).save(
            f"{stem}-{index:04d}.png", compress_level=level)
    return len(frames)


def plain_loop(files: list[Path], out: Path, workers: int, level: int = 6) -> int:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(f), str(out), level) for f in files]
    if workers == 1:
        return sum(map(_plain_one, jobs))
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_plain_one, jobs, chunksize=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="folder of DICOM files (default: phantom)")
    parser.add_argument("--n", type=int, default=40, help="phantom files to generate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()

    from eutirads.dicom import ingest

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        src = args.src
        if src is None:
            from eutirads.phantom.dicom import generate_dicom

            src = work / "src"
            generate_dicom(src, n=args.n, seed=11, progress=False)
        files = sorted(p for p in src.rglob("*.dcm"))
        results = []
        for name, run in [
            ("plain pydicom + Pillow loop (PNG level 6, Pillow's default)",
             lambda out: plain_loop(files, out, args.workers)),
            ("plain pydicom + Pillow loop (PNG level 3, as ingest writes)",
             lambda out: plain_loop(files, out, args.workers, 3)),
            ("eutirads ingest --text-policy off (no burned-in text check)",
             lambda out: ingest([src], out, key_path=work / "key", text_policy="off",
                                workers=args.workers, progress=False).frames),
            ("eutirads ingest (default: text check, redact)",
             lambda out: ingest([src], out, key_path=work / "key",
                                workers=args.workers, progress=False).frames),
            ("eutirads ingest --keep-dicom", lambda out: ingest(
                [src], out, key_path=work / "key", keep_dicom=True, workers=args.workers,
                progress=False).frames),
        ]:
            best, frames = float("inf"), 0
            for attempt in range(args.repeat):
                out = work / f"out-{len(results)}-{attempt}"
                start = time.perf_counter()
                frames = run(out)
                best = min(best, time.perf_counter() - start)
                shutil.rmtree(out)
            results.append((name, frames, best))
        reference = results[0][2]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}; {len(files)} files; workers={args.workers}; "
              f"best of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
        print("| run | frames | time | frames/s | time vs plain loop |")
        print("|---|---|---|---|---|")
        for name, frames, seconds in results:
            print(f"| {name} | {frames} | {seconds:.2f} s | {frames / seconds:.1f} | "
                  f"{seconds / reference:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
