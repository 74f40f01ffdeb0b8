"""Speed of the static page (`eutirads export-web`) in Chromium, wasm backend.

    python benchmarks/web_page_speed.py [--bundle BUNDLE] [--model tf_efficientnet_lite0]
                                        [--images 20] [--rounds 3] [--isolated]
                                        [--service-worker] [--from FOLDER]

Without --bundle, exports --model (random weights: speed does not depend on them) with its
default preprocessing (224x224 for lite0). Serves the site from a loopback port, opens it
in Debian's chromium, waits for the model to load, then chooses each of --images phantom
screens (560x360) --rounds times and reads the page's own timings: "total" from the file
input's change event to the frame after the result is drawn (decode, frame finding,
preprocessing, model, heatmap, drawing), and "model" the onnxruntime-web run alone.
Also the CPU time all browser processes spent per image, and per model run (the machine
is shared: wall time waits for a core, CPU time is the work itself), and onnxruntime's
native CPU build on the same model at the same time, one thread, for scale.
Prints medians and 90th percentiles, and the page's load time, as Markdown, with the load
average (`os.getloadavg`) before and after each serving mode: the speed of a shared
machine depends on what else runs. Serving modes: a plain static server (one wasm thread);
--isolated, the server sends COOP/COEP headers (threads); --service-worker, a plain server
and a site exported with --service-worker (threads through isolate.js, as on GitHub Pages).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}
    isolate = False

    def end_headers(self):
        if self.isolate:  # cross-origin isolation lets onnxruntime-web use threads
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args):
        pass


def _bundle(model_name: str, out: Path) -> Path:
    from eutirads.export import export_model
    from eutirads.models import create_model, default_preprocess
    from eutirads.preprocess import PreprocessSpec

    classes = ("1", "2", "3", "4", "5")
    model = create_model(model_name, num_classes=len(classes), weights="none").eval()
    spec = PreprocessSpec(**default_preprocess(model_name), class_names=classes)
    return export_model(model, spec, out, name="bench", model_name=model_name)


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of the chromium processes descending from this one."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        comm = Path(f"/proc/{entry}/comm").read_text().strip() if fields else ""
        ticks = int(fields[11]) + int(fields[12]) if comm.startswith("chrom") else 0
        children.setdefault(int(fields[1]), []).append((int(entry), ticks))
    total, todo = 0, [os.getpid()]
    while todo:  # the Playwright driver (node) is on the way but counts 0
        for child, ticks in children.get(todo.pop(), []):
            total += ticks
            todo.append(child)
    return total / os.sysconf("SC_CLK_TCK")


def _native_ms(model: Path, runs: int = 20) -> tuple[float, float]:
    """(wall, CPU) ms of onnxruntime's CPU build, one thread, batch 1: medians."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    x = np.zeros(shape, np.float32)
    session.run(None, {"input": x})
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        session.run(None, {"input": x})
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _measure(site: Path, images: list[Path], rounds: int, isolate: bool) -> dict:
    from playwright.sync_api import sync_playwright

    handler = type("Handler", (_Handler,), {"isolate": isolate})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    totals, models, parts = [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(url)
            # a --service-worker site reloads itself once first
            page.wait_for_selector("body[data-state=ready], body[data-state=failed]",
                                   state="attached", timeout=120_000)
            if not page.evaluate("window.eutiradsPage.ready"):
                raise SystemExit(f"the page did not load: {page.inner_text('#message')}")
            load_s = time.perf_counter() - started
            threads = page.evaluate("window.eutiradsPage.threads")
            cpu = _tree_cpu_s()
            model_alone = page.evaluate("window.eutiradsPage.timeModel(20)")
            model_cpu = (_tree_cpu_s() - cpu) * 1000 / 20
            cpu = _tree_cpu_s()
            for _ in range(rounds):
                for image in images:
                    page.evaluate("document.body.dataset.state = 'ready'")
                    page.set_input_files("#file", str(image))
                    page.locator("body[data-state=done], body[data-state=rejected]").wait_for()
                    timing = page.evaluate("window.eutiradsPage.last.timing")
                    totals.append(timing["total_ms"])
                    models.append(timing["model_ms"])
                    parts.append(timing)
            page_cpu = (_tree_cpu_s() - cpu) * 1000 / len(totals)
            browser.close()
    finally:
        server.shutdown()
    return {"load_s": load_s, "threads": threads, "total": totals, "model": models,
            "page_cpu": page_cpu, "model_alone": model_alone, "model_cpu": model_cpu,
            "parts": {key: statistics.median(p[key] for p in parts)
                      for key in ("decode_ms", "compute_ms", "model_ms", "render_ms")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="an exported bundle (default: export --model)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--from", dest="folder", metavar="FOLDER",
                        help="the first --images JPEG/PNG files of FOLDER (sorted) instead of "
                             "phantom screens, e.g. DDTI-dev's raw_jpg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isolated", action="store_true",
                        help="also serve with COOP/COEP headers (multi-threaded wasm)")
    parser.add_argument("--service-worker", action="store_true",
                        help="also a --service-worker site on a plain server (threads)")
    args = parser.parse_args()

    from eutirads.export.web import export_web
    from eutirads.phantom import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else _bundle(args.model, tmp / "bundle")
        site = export_web(bundle, tmp / "site")
        if args.folder:
            images = sorted(p for p in Path(args.folder).iterdir()
                            if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:args.images]
        else:
            generate_dataset(tmp / "phantom", n=args.images, seed=11, progress=False)
            images = sorted((tmp / "phantom").glob("*/*.png"))
        modes = [("plain server", site, False)]
        if args.isolated:
            modes.append(("COOP/COEP headers", site, True))
        if args.service_worker:
            modes.append(("service worker", export_web(bundle, tmp / "sw-site", service_worker=True),
                          False))
        runs = []
        for name, folder, headers in modes:
            before = os.getloadavg()[0]
            run = _measure(folder, images, args.rounds, headers)
            run["load"] = (before, os.getloadavg()[0])
            runs.append((name, run))
        spec = (bundle / "preprocess.json").read_text()
        native = _native_ms(bundle / "model.onnx")
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {chromium.strip()}; "
          f"bundle {args.bundle or args.model}; {len(images)} "
          f"{'images of ' + args.folder if args.folder else 'phantom 560x360 screens'} x "
          f"{args.rounds} rounds; input {json.loads(spec)['input_size']}")
    print()
    print("| serving | wasm threads | load average before / after | page load s "
          "| file chosen -> result shown ms, median / p90 (CPU) "
          "| model in the page ms, median / p90 | model alone ms (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs:
        print(f"| {name} | {run['threads']} | {run['load'][0]:.1f} / {run['load'][1]:.1f} "
              f"| {run['load_s']:.1f} | "
              f"{statistics.median(run['total']):.0f} / {_percentile(run['total'], 0.9):.0f} "
              f"({run['page_cpu']:.0f}) | {statistics.median(run['model']):.0f} / "
              f"{_percentile(run['model'], 0.9):.0f} | {run['model_alone']:.0f} "
              f"({run['model_cpu']:.0f}) |")
    for name, run in runs:
        print(f"\n{name}, medians: " + ", ".join(f"{k[:-3]} {v:.0f} ms" for k, v in run["parts"].items())
              + " (compute = frame finding, preprocessing, model, heatmap)")
    print(f"\nonnxruntime {__import__('onnxruntime').__version__} native CPU, 1 thread, same model: "
          f"{native[0]:.1f} ms ({native[1]:.1f} CPU ms)")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
