"""A contact sheet: a grid of samples per class with their labels, to look at."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..categories import label_sort_key
from ..data.manifest import MANIFEST_NAME, image_path, read_manifest, row_bbox
from ..errors import InputError
from ..imageio import load_rgb, save_png

__all__ = ["contact_sheet"]

_SHORT = {"mildly_hypoechoic": "mild hypo", "markedly_hypoechoic": "marked hypo",
          "hyperechoic": "hyper", "isoechoic": "iso", "anechoic": "anechoic",
          "taller_than_wide": "taller", "non_oval": "non-oval",
          "microcalcifications": "micro-Ca", "macrocalcifications": "macro-Ca"}


def _caption(label: str, row: dict[str, str]) -> str:
    parts = [row.get(k, "") for k in ("composition", "echogenicity", "shape", "margins",
                                      "echogenic_foci")]
    parts = [_SHORT.get(p, p) for p in parts if p and p not in ("none", "oval", "smooth")]
    return f"EU-TIRADS {label}" + (": " + ", ".join(parts) if parts else "")


def _samples(folder: Path, per_class: int) -> list[tuple[str, np.ndarray, tuple | None, str]]:
    """(label, RGB pixels, nodule box or None, caption) for up to `per_class` per label."""
    chosen: dict[str, list] = {}
    if (folder / MANIFEST_NAME).is_file():
        for row in read_manifest(folder):
            label = row["label"]
            if len(chosen.setdefault(label, [])) < per_class:
                pixels = load_rgb(image_path(folder, row))
                chosen[label].append((label, pixels, row_bbox(row), _caption(label, row)))
    else:  # a DICOM phantom: class folders of .dcm files
        import pydicom

        for file in sorted(folder.glob("*/*.dcm")):
            label = file.parent.name
            if len(chosen.setdefault(label, [])) < per_class:
                pixels = pydicom.dcmread(file).pixel_array
                if pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] != 3):
                    pixels = pixels[0]
                if pixels.ndim == 2:
                    pixels = np.repeat(pixels[..., None], 3, axis=2)
                chosen[label].append((label, pixels.astype(np.uint8), None,
                                      f"EU-TIRADS {label} (DICOM)"))
    if not any(chosen.values()):
        raise InputError(f"{folder}: no phantom images to put on a contact sheet")
    return [s for label in sorted(chosen, key=label_sort_key) for s in chosen[label]]


def contact_sheet(folder: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  per_class: int = 4, tile_width: int = 280) -> Path:
    """Write a PNG grid with `per_class` samples of each label found in `folder` (a phantom
    dataset with manifest.csv, or a DICOM phantom), one row per label, nodule boxes drawn."""
    folder = Path(folder)
    samples = _samples(folder, per_class)
    labels = sorted({s[0] for s in samples}, key=label_sort_key)
    first = samples[0][1]
    scale = tile_width / first.shape[1]
    tile_height = round(first.shape[0] * scale)
    caption_h = 16
    sheet = Image.new("RGB", (per_class * (tile_width + 4) + 4,
                              len(labels) * (tile_height + caption_h + 4) + 4), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    column = {label: 0 for label in labels}
    for label, pixels, bbox, caption in samples:
        r, c = labels.index(label), column[label]
        column[label] += 1
        x = 4 + c * (tile_width + 4)
        y = 4 + r * (tile_height + caption_h + 4)
        tile = Image.fromarray(pixels).resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        sheet.paste(tile, (x, y))
        if bbox is not None:
            x0, y0, x1, y1 = (round(v * scale) for v in bbox)
            draw.rectangle((x + x0, y + y0, x + x1, y + y1), outline=(80, 220, 80), width=1)
        draw.text((x + 2, y + tile_height + 2), caption, fill=(255, 255, 255), font=font)
    try:
        return save_png(np.asarray(sheet), out)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the contact sheet ({exc.strerror or exc})") from None
