"""Server time of "save and go to next" on a 1,000-image labeling project on SQLite.

Runs the real view stack in-process (Django's test client: middleware, session, CSRF-exempt
client, ORM, SQLite file database in WAL mode), so the time is the server's work without
network. Two readers save in turn; each request saves one reading (five descriptors, the
server computing the category; or a category with --mode category) and returns the next
image and the prefetch. Target: p95 under 50 ms.

Two clocks: wall time (what a reader waits for on an idle server) and this thread's CPU
time (the server's own work; on the shared 2-core VM other jobs inflate wall time, not CPU
time). The verdict uses wall time unless --judge cpu.

    python benchmarks/labeling_save_next.py [--images 1000] [--saves 300] [--mode category]
        [--queue-order random|manifest|uncertain-first]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--saves", type=int, default=300, help="timed saves per reader")
    parser.add_argument("--mode", choices=("descriptors", "category"), default="descriptors")
    parser.add_argument("--queue-order", choices=("random", "manifest", "uncertain-first"),
                        default="random", help="the project's queue order (default random)")
    parser.add_argument("--judge", choices=("wall", "cpu"), default="wall",
                        help="which clock the pass/fail verdict uses")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="eutirads-bench-"))
    os.environ["EUTIRADS_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    os.environ["EUTIRADS_ALLOWED_HOSTS"] = "testserver"  # the test client's host name
    import numpy as np

    from eutirads.data.manifest import write_manifest
    from eutirads.imageio import save_png
    from eutirads.web import setup

    setup(migrate=True)
    from django.test import Client

    from eutirads.web.core.accounts import add_user
    from eutirads.web.labeling.project_io import import_project

    dataset = home / "dataset"
    (dataset / "images").mkdir(parents=True)
    tile = (np.random.default_rng(0).random((36, 56, 3)) * 255).astype(np.uint8)
    rows = []
    for i in range(args.images):
        save_png(tile, dataset / "images" / f"{i:05d}.png")
        rows.append({"path": f"images/{i:05d}.png", "patient_id": f"p{i}", "split": "train"})
    write_manifest(dataset, rows)
    import_project(dataset, "bench", readers=2, progress=False, mode=args.mode,
                   queue_order=args.queue_order)
    from eutirads.categories import DESCRIPTORS

    def verdict(i: int) -> str:
        if args.mode == "category":
            return json.dumps({"label": str(1 + i % 5), "comment": ""})
        return json.dumps({name: values[i % len(values)] for name, values in DESCRIPTORS.items()})

    from django.contrib.auth import get_user_model

    timings: dict[str, list[float]] = {}
    cpu_timings: dict[str, list[float]] = {}
    queries: list[int] = []
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    for name in ("reader_a", "reader_b"):
        add_user(name, role="radiologist", password=None, validate=False)
        client = Client()
        client.force_login(get_user_model().objects.get(username=name))
        data = client.post("/labeling/bench/api/next/", "{}", content_type="application/json").json()
        for _ in range(10):  # warm-up: imports, template and query caches
            data = client.post(f"/labeling/bench/api/{data['current']['id']}/save/",
                               verdict(0), content_type="application/json").json()
        times, cpu = [], []
        for i in range(args.saves):
            body = verdict(i)
            url = f"/labeling/bench/api/{data['current']['id']}/save/"
            start, start_cpu = time.perf_counter(), time.thread_time()
            response = client.post(url, body, content_type="application/json")
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
            assert response.status_code == 200, response.content
            data = response.json()
        with CaptureQueriesContext(connection) as captured:
            data = client.post(f"/labeling/bench/api/{data['current']['id']}/save/",
                               verdict(1), content_type="application/json").json()
        queries.append(len(captured.captured_queries))
        timings[name], cpu_timings[name] = times, cpu

    every = [t for ts in timings.values() for t in ts]
    every_cpu = [t for ts in cpu_timings.values() for t in ts]

    def line(label, ts):
        q = statistics.quantiles(ts, n=100)
        return (f"{label}: n={len(ts)} p50={q[49]:.1f} ms p95={q[94]:.1f} ms "
                f"max={max(ts):.1f} ms")

    for name, ts in timings.items():
        print(line(f"{name} wall", ts))
        print(line(f"{name} cpu ", cpu_timings[name]))
    print(line("all wall", every))
    print(line("all cpu ", every_cpu))
    print(f"SQL queries per save-and-next: {queries}")
    load = os.getloadavg()[0]
    p95 = statistics.quantiles(every if args.judge == "wall" else every_cpu, n=100)[94]
    print(f"save-and-next p95 ({args.judge}, {args.mode}) {p95:.1f} ms on {args.images} images, "
          f"load average {load:.1f} on {os.cpu_count()} cores: "
          f"{'PASS' if p95 < 50 else 'FAIL'} (target < 50 ms)")
    return 0 if p95 < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
