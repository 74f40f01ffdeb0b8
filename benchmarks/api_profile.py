"""Where the server's CPU goes in one POST /api/v1/predict, against the ONNX time of the
bundle's own models on the same image; and what the worst accepted upload costs.

In-process (Django's test client, no network), one thread, so CPU time per request is the
server's own cost:

    python benchmarks/api_profile.py --bundle DEMO_WORKDIR/bundle --requests 60
    python benchmarks/api_profile.py --requests 60        # builds an untrained lite0 at 128
    python benchmarks/api_profile.py --worst-upload       # CPU and peak memory, 8 MP upload

Prints the CPU per request, the ONNX time, their ratio, and the functions that cost most
(cProfile, cumulative), for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from api_latency import build_bundle, sample_png  # noqa: E402


def setup(bundle: Path | None, model: str, size: tuple[int, int]):
    home = Path(tempfile.mkdtemp(prefix="eutirads-profile-"))
    os.environ["EUTIRADS_HOME"] = str(home)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eutirads.web.settings")
    bundle = bundle or build_bundle(home / "bundle-src", model, size)
    from eutirads.web import setup as web_setup

    web_setup(migrate=True)
    from django.contrib.auth import get_user_model

    from eutirads.web.core.accounts import add_user
    from eutirads.web.diagnosis.services import register_bundle
    from eutirads.web.diagnosis.tokens import create_token

    row = register_bundle(bundle, activate=True)
    add_user("bench", role="radiologist", password=None)
    token = create_token(get_user_model().objects.get(username="bench"))
    return row, token


def post(client, token: str, data: bytes) -> int:
    upload = io.BytesIO(data)
    upload.name = "frame.png"
    response = client.post("/api/v1/predict", {"image": upload, "size_mm": "14"},
                           HTTP_AUTHORIZATION=f"Token {token}", SERVER_NAME="localhost")
    return response.status_code


def onnx_ms(bundle_row, data: bytes, repeats: int) -> float:
    """CPU ms of the bundle's ONNX models alone on this image's model input (one thread)."""
    from eutirads.inference.uploads import clean_upload
    from eutirads.web.diagnosis.services import get_predictor

    predictor = get_predictor(bundle_row)
    pixels = clean_upload(data, "frame.png").pixels
    _, tensor, _ = predictor.prepare(pixels)
    batch = np.stack([tensor, tensor[:, :, ::-1]]) if predictor.tta else tensor[None]
    sessions = [predictor.run]
    localiser = getattr(predictor, "localiser", None)  # a bundle-2 localiser, once present
    if localiser is not None and hasattr(localiser, "run"):
        sessions.append(lambda _b: localiser.run(pixels))
    for run in sessions:
        run(batch)  # warm
    start = time.process_time()
    for _ in range(repeats):
        for run in sessions:
            run(batch)
    return 1000 * (time.process_time() - start) / repeats


def profile_requests(requests: int, bundle: Path | None, model: str, size) -> None:
    from django.test import Client

    row, token = setup(bundle, model, size)
    data = sample_png()
    client = Client()
    for _ in range(3):
        assert post(client, token, data) == 200  # warm: the model loads once
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    start = time.process_time()
    profiler.enable()
    for _ in range(requests):
        post(client, token, data)
    profiler.disable()
    cpu = 1000 * (time.process_time() - start) / requests
    model_ms = onnx_ms(row, data, requests)
    print(f"load average {os.getloadavg()[0]:.1f}; {requests} requests of a 560x360 PNG; "
          f"model {row.name}")
    print(f"server CPU per request (profiled, so a little high): {cpu:.1f} ms; "
          f"ONNX alone: {model_ms:.1f} ms; ratio {cpu / model_ms:.2f}")
    start = time.process_time()
    for _ in range(requests):
        post(client, token, data)
    plain = 1000 * (time.process_time() - start) / requests
    print(f"server CPU per request (not profiled): {plain:.1f} ms; ratio {plain / model_ms:.2f}")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(25)


def worst_upload(megapixels: float) -> None:
    """Decode and check the largest accepted upload in a fresh process: CPU and peak RSS."""
    code = f"""
import io, resource, time, numpy as np
from PIL import Image
from eutirads.inference.uploads import clean_upload, DEFAULT_MAX_UPLOAD_PIXELS
from eutirads.inference.diagnosis import screen_check
side = int((DEFAULT_MAX_UPLOAD_PIXELS * {megapixels / 8.0}) ** 0.5)
rng = np.random.default_rng(0)
pixels = rng.integers(0, 255, (side, side), dtype=np.uint8)
buffer = io.BytesIO(); Image.fromarray(pixels).save(buffer, 'PNG', compress_level=1)
data = buffer.getvalue(); del pixels, buffer
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
image = clean_upload(data, 'a.png')
checked = time.process_time()
screen_check(image.pixels)
end = time.process_time()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{{side}}x{{side}} grey PNG ({{len(data) / 1e6:.1f}} MB): upload checks + decode "
      f"{{1000 * (checked - start):.0f}} ms CPU, screen check {{1000 * (end - checked):.0f}} ms; "
      f"peak RSS {{peak / 1024:.0f}} MB ({{(peak - base) / 1024:.0f}} MB over the process before)")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 128))
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--worst-upload", action="store_true",
                        help="only measure the largest accepted upload (8 MP by default)")
    parser.add_argument("--megapixels", type=float, default=8.0)
    args = parser.parse_args()
    if args.worst_upload:
        worst_upload(args.megapixels)
        return 0
    profile_requests(args.requests, args.bundle, args.model, tuple(args.input_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
