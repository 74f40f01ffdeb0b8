"""Latency and throughput of POST /api/v1/predict under 1, 4 and 8 concurrent clients.

The app runs as `eutirads serve` (gunicorn) in a child process with a throw-away data
folder; the load comes from this process over loopback (127.0.0.1 only), bounded in
request count and time. Target (issue 6): p95 under 150 ms at 4 concurrent clients.

    python benchmarks/api_latency.py --bundle DEMO_WORKDIR/bundle
    python benchmarks/api_latency.py            # builds an untrained bundle of --model

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def build_bundle(out: Path, model: str, size: tuple[int, int]) -> Path:
    """An untrained bundle of `model`: same compute as a trained one, no training needed."""
    import torch

    from eutirads.export.exporter import export_model
    from eutirads.models import create_model, default_preprocess
    from eutirads.preprocess import PreprocessSpec

    torch.manual_seed(0)
    net = create_model(model, num_classes=5, weights="none").eval()
    pre = default_preprocess(model)
    spec = PreprocessSpec(input_size=size, mean=pre["mean"], std=pre["std"],
                          class_names=("1", "2", "3", "4", "5"))
    return export_model(net, spec, out, name=f"bench-{model}", model_name=model)


def sample_png(width: int = 560, height: int = 360) -> bytes:
    """A phantom-like frame: speckle block with a dark nodule on a black screen."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frame = np.zeros((height, width, 3), np.uint8)
    block = rng.integers(60, 200, (height - 40, width - 80), dtype=np.uint8)
    yy, xx = np.mgrid[:height - 40, :width - 80]
    block[((xx - 240) / 70) ** 2 + ((yy - 160) / 50) ** 2 < 1] //= 3
    frame[20:-20, 40:-40] = block[..., None]
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
             f"filename=\"frame.png\"\r\nContent-Type: image/png\r\n\r\n".encode(), image,
             f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"size_mm\"\r\n\r\n"
             f"14\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/models", headers={"Authorization": f"Token {token}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer in time")


def client_loop(port: int, token: str, body: bytes, ctype: str, count: int, stop_at: float,
                out: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": ctype}
    for _ in range(count):
        if time.monotonic() > stop_at:
            break
        start = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/predict", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except OSError as exc:
            errors.append(type(exc).__name__)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        elapsed = time.perf_counter() - start
        if response.status != 200:
            errors.append(f"{response.status} {payload[:80]!r}")
        else:
            out.append(elapsed)


def server_cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of the gunicorn master and its workers (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_level(port: int, token: str, body: bytes, ctype: str, clients: int, requests: int,
              max_seconds: float, server_pid: int | None = None) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + max_seconds
    per_client = max(1, requests // clients)
    threads = [threading.Thread(target=client_loop, args=(port, token, body, ctype, per_client,
                                                          stop_at, latencies, errors))
               for _ in range(clients)]
    cpu_before = server_cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu = server_cpu_seconds(server_pid) - cpu_before if server_pid else float("nan")
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))] if ms else float("nan")
    return {"clients": clients, "requests": len(ms), "errors": len(errors),
            "p50_ms": statistics.median(ms) if ms else float("nan"), "p95_ms": pick(0.95),
            "throughput_rps": len(ms) / wall if wall else 0.0,
            "server_cpu_ms_per_request": 1000 * cpu / len(ms) if ms else float("nan"),
            "first_error": errors[:1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: build an untrained one)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--input-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=80, help="requests per level (bounded)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound per level")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="eutirads-bench-"))
    os.environ["EUTIRADS_HOME"] = str(home)
    bundle = args.bundle or build_bundle(home / "bundle-src", args.model, tuple(args.input_size))
    from eutirads.web import setup

    setup(migrate=True)
    from eutirads.web.core.accounts import add_user
    from eutirads.web.diagnosis.services import register_bundle
    from eutirads.web.diagnosis.tokens import create_token
    from django.contrib.auth import get_user_model

    row = register_bundle(bundle, activate=True)
    add_user("bench", role="radiologist", password=None)
    token = create_token(get_user_model().objects.get(username="bench"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "eutirads", "serve", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", str(args.workers)],
                              env=dict(os.environ), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(port, token)
        body, ctype = multipart(sample_png())
        run_level(port, token, body, ctype, 2, 6, 30)  # warm-up: each worker loads the model
        results = [run_level(port, token, body, ctype, c, args.requests, args.max_seconds,
                             server.pid) for c in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"model: {row.name} ({args.model if not args.bundle else 'given bundle'}), "
          f"gunicorn workers: {args.workers}, image 560x360 PNG, {os.cpu_count()} CPUs")
    threads = os.environ.get("EUTIRADS_INFERENCE_THREADS") or "1 (default)"
    print(f"onnxruntime threads per worker: {threads}; load average before: "
          f"{os.getloadavg()[0]:.1f}")
    print("| clients | requests | errors | p50 ms | p95 ms | throughput req/s | server CPU ms/req |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | "
              f"{r['p95_ms']:.0f} | {r['throughput_rps']:.1f} | "
              f"{r['server_cpu_ms_per_request']:.0f} |")
        if r["first_error"]:
            print(f"  first error: {r['first_error'][0]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
