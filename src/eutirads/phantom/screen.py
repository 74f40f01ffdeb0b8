"""The scanner's screen around the image area: burned-in text, scales and markers.

Layout, like most thyroid presets: a banner on top (patient name and id, clinic, date and
time, acoustic output), a settings column on the left (probe, frequency, gain, dynamic
range, frame rate) with a grey-scale bar and a body marker, a depth scale with tick marks
and a focus marker on the right of the image. Every element is thin (text, 1-pixel lines,
narrow bars) and kept a few pixels away from the image, so `eutirads.region.find_image_area`
separates the image area from it; the tests check exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..region import Box

__all__ = ["Annotations", "MIN_WIDTH", "MIN_HEIGHT", "image_area_box", "compose_screen",
           "colorize"]

MIN_WIDTH, MIN_HEIGHT = 320, 200
TEXT_GRAY = 225


@dataclass(frozen=True)
class Annotations:
    """Everything the scanner prints around the image (all values invented)."""

    name: str           # as the banner shows it, e.g. "PHANTOM, ALICE"
    patient_id: str
    clinic: str
    date: str           # YYYY-MM-DD
    time: str           # HH:MM:SS
    probe: str          # e.g. "L12-5"
    frequency_mhz: int
    gain: int
    dynamic_range: int
    frame_rate: int
    mechanical_index: float
    side: str           # "RT" or "LT"
    depth_cm: float
    focus_cm: float


def _text_size(height: int) -> int:
    return max(8, round(height / 30))


def image_area_box(width: int, height: int) -> Box:
    """Where the B-mode image sits on a width x height screen: under the two banner lines
    with a gap wider than the region finder's smoothing, so text never touches it."""
    size = _text_size(height)
    banner = max(3, width // 120) + 2 * (size + 3) + 8
    return Box(round(0.17 * width), max(round(0.13 * height), banner), round(0.87 * width),
               height - max(4, round(0.035 * height)))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _body_marker(draw: ImageDraw.ImageDraw, x: int, y: int, size: int, side: str) -> None:
    """A neck outline seen from below with the probe as a short bar over one lobe."""
    draw.ellipse((x, y, x + size, y + int(size * 0.8)), outline=TEXT_GRAY, width=1)
    draw.ellipse((x + size // 2 - 3, y + size // 4, x + size // 2 + 3, y + size // 4 + 6),
                 outline=TEXT_GRAY, width=1)  # trachea
    probe_x = x + (size // 5 if side == "RT" else size - size // 5 - size // 3)
    draw.line((probe_x, y - 2, probe_x + size // 3, y - 2), fill=255, width=2)


def compose_screen(area: np.ndarray, *, width: int, height: int, px_per_cm: float,
                   notes: Annotations) -> tuple[np.ndarray, np.ndarray]:
    """The full screen (HxW uint8) with `area` pasted at `image_area_box`, and the mask
    (HxW uint8, >0 where something is burned in) of every annotation drawn."""
    box = image_area_box(width, height)
    if area.shape != (box.height, box.width):
        raise ValueError(f"image area is {area.shape}, the layout expects "
                         f"{(box.height, box.width)}")
    overlay = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(overlay)
    size = _text_size(height)
    font, small = _font(size), _font(max(7, size - 2))
    line = size + 3
    margin = max(3, width // 120)

    # Banner: name and id, clinic; date/time and acoustic output on the right.
    draw.text((margin, margin), f"{notes.name}   ID: {notes.patient_id}", fill=TEXT_GRAY, font=font)
    draw.text((margin, margin + line), notes.clinic, fill=TEXT_GRAY, font=small)
    right = f"{notes.date}  {notes.time}"
    draw.text((width - margin - draw.textlength(right, font=font), margin), right,
              fill=TEXT_GRAY, font=font)
    output = f"MI {notes.mechanical_index:.1f}  TIs 0.{int(notes.mechanical_index * 3) % 10}"
    draw.text((width - margin - draw.textlength(output, font=small), margin + line), output,
              fill=TEXT_GRAY, font=small)

    # Settings column, grey bar and body marker on the left.
    settings = [notes.probe, f"{notes.frequency_mhz} MHz", "Thyroid", f"Gn {notes.gain}",
                f"DR {notes.dynamic_range}", f"FR {notes.frame_rate}", "2D"]
    y = box.y0 + 2
    for text in settings:
        if y + line > box.y1 - height // 3:
            break
        if margin + draw.textlength(text, font=small) >= box.x0 - 8:
            continue
        draw.text((margin, y), text, fill=TEXT_GRAY, font=small)
        y += line
    bar_w, bar_h = max(4, width // 80), max(20, height // 4)
    bar_x = box.x0 - bar_w - max(8, width // 50)
    bar_y = box.y1 - bar_h - max(30, height // 6)
    ramp = np.linspace(255, 40, bar_h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    overlay.paste(Image.fromarray(ramp.astype(np.uint8)), (bar_x, bar_y))
    marker = max(16, width // 22)
    _body_marker(draw, margin + 2, box.y1 - marker - line - 2, marker, notes.side)
    # The side label must end well left of the image (small screens get the short form).
    for side_text in (f"{notes.side} THY TRANS", f"{notes.side} TRANS", notes.side):
        if margin + draw.textlength(side_text, font=small) < box.x0 - 8:
            draw.text((margin, box.y1 - line + 1), side_text, fill=TEXT_GRAY, font=small)
            break

    # Depth scale with ticks every 0.5 cm and labels every cm, and the focus marker.
    tick_x = box.x1 + max(6, width // 90)
    half_cm = 0
    while True:
        y = box.y0 + round(half_cm * px_per_cm / 2)
        if y >= box.y1:
            break
        long_tick = half_cm % 2 == 0
        draw.line((tick_x, y, tick_x + (6 if long_tick else 3), y), fill=TEXT_GRAY, width=1)
        if long_tick and half_cm > 0 and y < box.y1 - 2 * line:
            draw.text((tick_x + 9, y - size // 2), str(half_cm // 2), fill=TEXT_GRAY, font=small)
        half_cm += 1
    focus_y = box.y0 + round(notes.focus_cm * px_per_cm)
    draw.polygon([(tick_x, focus_y), (tick_x + 5, focus_y - 3), (tick_x + 5, focus_y + 3)],
                 fill=TEXT_GRAY)
    draw.text((tick_x, box.y1 - line + 1), f"{notes.depth_cm:.1f}cm", fill=TEXT_GRAY, font=small)
    # Probe orientation mark at the image's top-left corner.
    draw.ellipse((box.x0 + 2, box.y0 - 10, box.x0 + 7, box.y0 - 5), fill=TEXT_GRAY)

    mask = np.asarray(overlay)
    screen = mask.copy()
    screen[box.y0:box.y1, box.x0:box.x1] = area
    return screen, mask


def colorize(screen: np.ndarray, mask: np.ndarray,
             color: tuple[int, int, int] = (235, 225, 150)) -> np.ndarray:
    """An RGB copy of `screen` whose annotations are tinted (many scanners print in colour)."""
    rgb = np.repeat(screen[..., None], 3, axis=2)
    where = mask > 0
    tint = np.asarray(color, np.float32) / 255.0
    rgb[where] = (mask[where, None].astype(np.float32) * tint).astype(np.uint8)
    return rgb
