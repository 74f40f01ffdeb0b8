"""The one clean-frame rule: a DICOM file or an image in, the pixels of the ultrasound
image area only out, with the pixel spacing when the file declares one.

Every door that turns a file into pixels uses it (ingest, `dataset import`, `predict`, the
diagnosis upload, the labeling image view), so the same rule protects all of them:

- a DICOM file's area is the union of its 2D SequenceOfUltrasoundRegions; a file that
  declares none (and every plain image) has its area found from the pixels by
  `eutirads.region.find_image_area`, which never returns a text band;
- everything outside the area is blanked (`blanked`, same size and coordinates as the
  source, so boxes and masks stay valid) and `pixels` is the area cropped out of it;
- with `redact_text`, burned-in text inside the area is found (`eutirads.ocr`) and
  blanked too; `checked_for_text` says whether that check ran, because only a checked
  frame may be called clean (BurnedInAnnotation NO);
- no area at all raises `NoImageAreaError` (predict: an abstention; ingest: quarantine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EutiradsError, ImageDecodeError, NoImageAreaError
from .region import Box, find_image_area

__all__ = ["CleanFrame", "NoImageAreaError", "clean_frame", "clean_pixels", "read_frame"]


@dataclass(frozen=True)
class CleanFrame:
    """One cleaned frame. `pixels` is `blanked` cropped to `area_box` (a copy); `kept` is
    the HxW mask of the source pixels left as they were (the area less redacted text),
    for writing the same cleaning into other renderings of the frame (ingest's
    native-depth DICOM)."""

    pixels: np.ndarray
    blanked: np.ndarray
    kept: np.ndarray
    area_box: Box
    pixel_spacing_mm: tuple[float, float] | None
    text_boxes_redacted: int
    checked_for_text: bool


def clean_pixels(frame: np.ndarray, *, regions: list | None = None,
                 redact_text: bool = False, area: Box | None = None) -> CleanFrame:
    """Clean one decoded frame (HxW or HxWxC uint8): the pure heart of the rule.

    `regions` are the file's usable ultrasound regions (`dicom.pixels.Region`); without
    any, `area` (found once for a whole cine by the caller) or else the area found in this
    frame is used. Raises NoImageAreaError when there is none.
    """
    from .dicom.pixels import Region, blank_outside, region_mask, spacing_of, union_box

    if not regions:
        regions = [Region(area if area is not None else find_image_area(frame))]
    kept = region_mask(frame.shape[:2], regions)
    blanked = blank_outside(frame, kept)
    box = union_box(regions)
    redacted = 0
    if redact_text:
        from .ocr import find_text_boxes

        text = find_text_boxes(blanked[box.y0:box.y1, box.x0:box.x1])
        for found in text:  # boxes are relative to the area
            kept[box.y0 + found.y0:box.y0 + found.y1, box.x0 + found.x0:box.x0 + found.x1] = 0
        if text:
            blanked = blank_outside(frame, kept)
        redacted = len(text)
    return CleanFrame(pixels=np.ascontiguousarray(blanked[box.y0:box.y1, box.x0:box.x1]),
                      blanked=blanked, kept=kept, area_box=box,
                      pixel_spacing_mm=spacing_of(regions), text_boxes_redacted=redacted,
                      checked_for_text=redact_text)


def read_frame(source: str | os.PathLike[str] | bytes, *, name: str | None = None
               ) -> tuple[np.ndarray, list]:
    """The first frame of a DICOM file (with its usable ultrasound regions) or the pixels
    of an image (no regions), decoded safely. HxWx3 uint8 for images; DICOM grey frames
    stay HxW. `name` is what errors call the source (never an upload's own name)."""
    from .dicom.reading import decode_frames, frame_info, looks_like_dicom, read_dataset
    from .imageio import load_rgb

    label = name if name is not None else (
        str(source) if isinstance(source, (str, os.PathLike)) else "image")
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with Path(source).open("rb") as handle:
                head = handle.read(132)
        except OSError:
            return load_rgb(source, name=label), []  # load_rgb names the reason
        if not looks_like_dicom(head):
            return load_rgb(source, name=label), []
        data = Path(source).read_bytes()
    if not looks_like_dicom(data):
        return load_rgb(data, name=label), []
    from .dicom.pixels import ultrasound_regions

    try:
        ds = read_dataset(data)
        info = frame_info(ds)
        _, frame = next(decode_frames(ds, info, [0]))
    except EutiradsError as exc:
        # The DICOM reader's reasons never carry tag values; name our label and the reason.
        raise ImageDecodeError(f"{label}: {exc}") from None
    regions, _problems = ultrasound_regions(ds, info.rows, info.columns)
    return frame, regions


def clean_frame(source: str | os.PathLike[str] | bytes | np.ndarray, *,
                name: str | None = None, redact_text: bool = False,
                area: Box | None = None) -> CleanFrame:
    """Read `source` (path or bytes of a DICOM file or image, or decoded pixels) and clean
    its first frame; see the module docstring. `area`, the image area found earlier in
    the same pixels, saves finding it again (a DICOM file's own regions still come first).
    Raises ImageDecodeError for an unreadable source and NoImageAreaError when it has no
    ultrasound area."""
    if isinstance(source, np.ndarray):
        frame, regions = source, []
    else:
        frame, regions = read_frame(source, name=name)
    try:
        return clean_pixels(frame, regions=regions, redact_text=redact_text, area=area)
    except NoImageAreaError as exc:
        label = name if name is not None else (
            str(source) if isinstance(source, (str, os.PathLike)) else "image")
        raise NoImageAreaError(f"{label}: {exc}") from None
