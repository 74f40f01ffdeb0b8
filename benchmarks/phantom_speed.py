"""Phantom speed: how long `generate_dataset` takes for N screens of WxH on the cores given.

Target (issue 2): 1,000 images of 560x360 in under 60 s on 2 cores.

    python benchmarks/phantom_speed.py                    # 1000 images, 2 workers
    python benchmarks/phantom_speed.py --n 200 --workers 1

Prints one line per run and a final verdict against the target; writes into a temporary
folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from eutirads.phantom import generate_dataset

TARGET_SECONDS_PER_1000 = 60.0


def _cpu_seconds() -> float:
    """User+system CPU time of this process and its finished children (the workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=560)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores visible, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cpu_before = _cpu_seconds()
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "p", n=args.n, seed=args.seed, width=args.width,
                         height=args.height, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_before
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.png"))
    per_1000 = seconds * 1000 / args.n
    print(f"phantom: {args.n} images of {args.width}x{args.height} with {args.workers} "
          f"workers in {seconds:.1f} s ({args.n / seconds:.1f} images/s, "
          f"{per_1000:.1f} s per 1000, {size / args.n / 1024:.0f} KiB per PNG)")
    # On a shared machine the wall time depends on the other users; the CPU time per image
    # says what the generator itself costs and what idle cores would take.
    idle_estimate = cpu / args.n * 1000 / args.workers
    print(f"cpu: {cpu / args.n * 1000:.0f} ms per image; on {args.workers} idle cores "
          f"about {idle_estimate:.0f} s per 1000")
    verdict = "meets" if per_1000 < TARGET_SECONDS_PER_1000 else "MISSES"
    print(f"target: 1000 images in under {TARGET_SECONDS_PER_1000:.0f} s -> {verdict} it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
