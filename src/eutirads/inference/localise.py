"""`localise_dataset`: the bundle's localiser fills a dataset's missing nodule boxes and masks
(`eutirads localise`), so a clinic's unboxed images can be cropped and shown to readers.

Only empty cells are filled: a row with a box keeps it (drawn by a reader, imported, or
filled by an earlier run), a row with a mask keeps it. What the model fills says so:
`box_source` = `model` beside its box, `mask_source` = `model` beside its mask, so that
training never learns from the localiser's own outlines (`training.segment` skips them).
Masks go to `masks/model/<the image's path>.png`. An image that cannot be read, or where
nothing is found, keeps its empty cells and is counted; the manifest is rewritten once,
atomically, at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..data.manifest import image_path, read_manifest, row_bbox, write_manifest
from ..data.masks import MASKS_DIR, save_mask
from ..errors import EutiradsError, ModelError
from .images import load_image_and_spacing
from .predictor import Predictor

__all__ = ["LocaliseReport", "localise_dataset", "MODEL_SOURCE"]

MODEL_SOURCE = "model"


@dataclass
class LocaliseReport:
    rows: int = 0
    boxes_filled: int = 0
    masks_filled: int = 0
    already_complete: int = 0
    nothing_found: int = 0
    failed: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        return (f"localised {self.rows} row(s): {self.boxes_filled} box(es) and "
                f"{self.masks_filled} mask(s) filled (box_source/mask_source 'model'), "
                f"{self.already_complete} already complete, {self.nothing_found} with no nodule "
                f"found, {len(self.failed)} failed")


def _mask_name(row: dict[str, str]) -> str:
    """masks/model/<image path without its suffix>.png: the dataset's own relative path (made
    by our importers), never an outside name."""
    relative = PurePosixPath(row["path"]).with_suffix(".png")
    return str(PurePosixPath(MASKS_DIR) / MODEL_SOURCE / relative)


def localise_dataset(dataset: str | os.PathLike[str], bundle: str | os.PathLike[str], *,
                     progress: bool = True) -> LocaliseReport:
    root = Path(dataset)
    if root.suffix.lower() == ".csv":
        root = root.parent
    rows = read_manifest(root)
    predictor = Predictor(bundle)
    if not predictor.has_localiser:
        raise ModelError(f"{bundle}: holds no localiser (export one with 'eutirads export "
                         "RUN --localiser LOCALISER_RUN' or from a localiser run alone)")
    report = LocaliseReport(rows=len(rows))
    for row in tqdm(rows, desc="localise", unit="img", disable=not progress, leave=False):
        need_box = row_bbox(row) is None and not row.get("box_source")
        need_mask = not row.get("mask")
        if not (need_box or need_mask):
            report.already_complete += 1
            continue
        try:
            pixels, spacing = load_image_and_spacing(image_path(root, row))
            found = predictor.localiser.find(pixels, spacing=spacing)
        except EutiradsError as exc:
            report.failed.append(str(exc))
            continue
        if found.nodule is None:
            report.nothing_found += 1
            continue
        if need_box:
            row.update(zip(("x0", "y0", "x1", "y1"), map(str, found.nodule["box"])))
            row["box_source"] = MODEL_SOURCE
            report.boxes_filled += 1
        if need_mask:
            name = _mask_name(row)
            save_mask(found.mask, root / name)
            row["mask"], row["mask_source"] = name, MODEL_SOURCE
            report.masks_filled += 1
    write_manifest(root, rows)
    return report
