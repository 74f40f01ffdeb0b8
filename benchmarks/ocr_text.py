"""Burned-in text inside the ultrasound image area: recall on text we burn in, false
positives on speckle (phantom and DDTI-dev image areas), and time per frame, for

- `gate + tesseract`: eutirads.ocr (the cheap text-structure gate, Tesseract on its
  candidate lines) - what ingest runs;
- `tesseract (whole area)`: Tesseract's own layout analysis over the whole area
  (`pytesseract.image_to_data`, sparse text), words with letters or digits;
- `rapidocr detector`: the ONNX text detector (PP-OCRv4 det) of the
  `rapidocr-onnxruntime` wheel, detection only. It is not a project dependency: install it
  (`pip install rapidocr-onnxruntime==1.4.4`, which pulls opencv) or point --rapidocr-path
  at a folder holding it.

    nice python benchmarks/ocr_text.py [--burned 30] [--clean 40] [--ddti DIR]

A burned name counts as found when the boxes cover at least 90% of its pixels; a clean
frame is a false positive when any box is reported. Prints a Markdown table for
docs/benchmarks.md, with 95% Wilson intervals.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
NAMES = ("DOE^JANE", "MUELLER, ANNA", "ID 0043117", "SMITH J 12/03/1961", "NGUYEN T",
         "Dr PATEL", "KOWALSKI^PIOTR", "ACC 882211")


def wilson(k: int, n: int) -> str:
    if n == 0:
        return "-"
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{k}/{n} = {p:.2f} [{max(0, centre - half):.2f}, {min(1, centre + half):.2f}]"


def phantom_areas(n: int, seed: int) -> list[np.ndarray]:
    from eutirads.phantom.dataset import render_example
    from eutirads.region import crop

    out = []
    for patient in range(n):
        example = render_example(seed, patient, width=640, height=480)
        out.append(np.repeat(crop(example.screen, example.image_box)[..., None], 3, axis=2))
    return out


def ddti_areas(folder: Path, n: int, offset: int = 0) -> list[np.ndarray]:
    from eutirads.imageio import load_rgb
    from eutirads.region import crop, find_image_area

    files = sorted((folder / "raw_jpg").glob("*.jpg"))
    step = max(1, len(files) // max(1, n))
    out = []
    for path in files[offset % step::step][:n]:
        pixels = load_rgb(path)
        out.append(np.ascontiguousarray(crop(pixels, find_image_area(pixels))))
    return out


def burn(area: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A name of random size, shade and place burned into `area`, and its pixel mask."""
    size = int(rng.integers(11, 24))
    font = ImageFont.truetype(FONT, size)
    text = str(rng.choice(NAMES))
    shade = [(235, 235, 235), (200, 200, 200), (240, 230, 120), (255, 255, 255)][
        int(rng.integers(0, 4))]
    width = int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font))
    x = int(rng.integers(2, max(3, area.shape[1] - width - 2)))
    y = int(rng.integers(2, max(3, area.shape[0] - size - 4)))
    image, mask = Image.fromarray(area.copy()), Image.new("L", (area.shape[1], area.shape[0]))
    ImageDraw.Draw(image).text((x, y), text, fill=shade, font=font)
    ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font)
    return np.asarray(image), np.asarray(mask) > 128


def detector_gate_tesseract():
    from eutirads.ocr import find_text_boxes

    return lambda pixels: [tuple(b) for b in find_text_boxes(pixels)]


def detector_tesseract_whole():
    import pytesseract

    def detect(pixels):
        data = pytesseract.image_to_data(Image.fromarray(pixels).convert("L"),
                                         config="--psm 11", output_type=pytesseract.Output.DICT)
        boxes = []
        for text, x, y, w, h in zip(data["text"], data["left"], data["top"], data["width"],
                                    data["height"]):
            if sum(ch.isalnum() for ch in text) >= 2:
                boxes.append((x, y, x + w, y + h))
        return boxes
    return detect


def detector_rapidocr(path: str | None):
    if path:
        sys.path.insert(0, path)
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    engine = RapidOCR()

    def detect(pixels):
        found, _ = engine(pixels, use_det=True, use_cls=False, use_rec=False)
        boxes = []
        for quad in found or []:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            boxes.append((int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1))
        return boxes
    return detect


def covered(mask: np.ndarray, boxes) -> float:
    hit = np.zeros_like(mask)
    for x0, y0, x1, y1 in boxes:
        hit[max(0, y0):y1, max(0, x0):x1] = True
    return float((hit & mask).sum() / max(1, mask.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burned", type=int, default=30, help="frames with a burned name")
    parser.add_argument("--clean", type=int, default=40, help="clean frames of each source")
    parser.add_argument("--ddti", type=Path, default=Path(os.environ.get(
        "EUTIRADS_DDTI_DIR", Path(__file__).resolve().parent.parent.parent /
        "shared/datasets/ddti-dev")))
    parser.add_argument("--rapidocr-path", help="folder holding rapidocr_onnxruntime")
    parser.add_argument("--seed", type=int, default=0,
                        help="names, phantom patients and DDTI images drawn (seed 0 is the "
                             "set the gate was tuned on; others are held out)")
    parser.add_argument("--only", help="run only detectors whose name contains this")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    phantom = phantom_areas(args.clean + args.burned // 2, seed=21 + args.seed)
    ddti = (ddti_areas(args.ddti, args.clean + args.burned // 2, offset=args.seed)
            if args.ddti.is_dir() else [])
    clean = {"phantom": phantom[:args.clean], "DDTI-dev": ddti[:args.clean]}
    bases = phantom[args.clean:] + ddti[args.clean:]
    burned = [burn(area, rng) for area in bases[:args.burned]]
    detectors = {"gate + tesseract (eutirads.ocr)": detector_gate_tesseract(),
                 "tesseract (whole area)": detector_tesseract_whole(),
                 "rapidocr detector (PP-OCRv4 det)": detector_rapidocr(args.rapidocr_path)}
    if args.only:
        detectors = {k: v for k, v in detectors.items() if args.only in k}
    print(f"seed {args.seed}; machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; burned frames: {len(burned)}; clean frames: "
          + ", ".join(f"{k} {len(v)}" for k, v in clean.items()))
    print("| detector | recall on burned names | false positives, phantom | "
          "false positives, DDTI-dev | time per frame |")
    print("|---|---|---|---|---|")
    for name, detect in detectors.items():
        if detect is None:
            print(f"| {name} | not installed | | | |")
            continue
        start, frames = time.perf_counter(), 0
        found = sum(covered(mask, detect(pixels)) >= 0.9 for pixels, mask in burned)
        frames += len(burned)
        fps = {}
        for source, areas in clean.items():
            fps[source] = sum(bool(detect(a)) for a in areas)
            frames += len(areas)
        per_frame = (time.perf_counter() - start) / max(1, frames)
        print(f"| {name} | {wilson(found, len(burned))} | "
              f"{wilson(fps['phantom'], len(clean['phantom']))} | "
              f"{wilson(fps['DDTI-dev'], len(clean['DDTI-dev']))} | {per_frame * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
