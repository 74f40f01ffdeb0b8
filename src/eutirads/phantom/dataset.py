"""One phantom example from (seed, patient, view), and the image-dataset writer.

Every random number of an image comes from generators seeded with (seed, patient, ...),
never from a shared stream, so images can be rendered in any order, in parallel over
processes, and still be byte-identical for a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.manifest import CORE_COLUMNS, MASK_COLUMN, write_manifest
from ..data.masks import MASKS_DIR, save_mask
from ..errors import InputError
from ..parallel import map_in_order, worker_count
from ..region import Box
from .identity import FakeIdentity, fake_identity
from .render import render_bmode
from .scene import FEATURE_COLUMNS, Case, View, sample_case, sample_label, sample_view
from .screen import MIN_HEIGHT, MIN_WIDTH, Annotations, compose_screen, image_area_box

__all__ = ["Example", "render_example", "generate_dataset", "BALANCES", "PROBES",
           "check_options", "prepare_output"]

BALANCES = ("equal", "natural")
PROBES = ("L12-5", "L18-4", "L15-7io", "ML6-15", "14L5")
MANIFEST_COLUMNS = CORE_COLUMNS + tuple(c for c in FEATURE_COLUMNS if c not in CORE_COLUMNS) \
    + ("nodule_mm",)


@dataclass(frozen=True)
class Example:
    """One rendered screen and everything known about it."""

    screen: np.ndarray             # HxW uint8, the full scanner screen
    annotation_mask: np.ndarray    # HxW uint8, >0 where text/markers are burned in
    image_box: Box                 # the B-mode image area on the screen
    nodule_box: Box | None         # full-screen pixels, x1/y1 exclusive; None for category 1
    nodule_mask: np.ndarray        # HxW bool over the full screen, True inside the nodule
    px_per_cm: float
    case: Case
    view: View
    identity: FakeIdentity
    notes: Annotations


def _patient(seed: int, patient: int, balance: str) -> tuple[Case, FakeIdentity, np.random.Generator]:
    rng = np.random.default_rng([seed, patient, 0])
    label = sample_label(rng, patient, balance)
    case = sample_case(rng, label)
    identity = fake_identity(np.random.default_rng([seed, patient, 1]), patient)
    return case, identity, np.random.default_rng([seed, patient, 3])


def _notes(rng: np.random.Generator, identity: FakeIdentity, view: View, case: Case,
           study_day: int) -> Annotations:
    date = np.datetime64("2024-01-01") + np.timedelta64(study_day, "D")
    seconds = int(rng.integers(8 * 3600, 18 * 3600))
    return Annotations(
        name=identity.display_name, patient_id=identity.patient_id,
        clinic=identity.institution, date=str(date),
        time=f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        probe=str(rng.choice(PROBES)), frequency_mhz=view.frequency_mhz,
        gain=int(round(30 + 50 * view.gain)), dynamic_range=int(round(view.dynamic_range)),
        frame_rate=int(rng.integers(18, 45)), mechanical_index=float(rng.uniform(0.6, 1.2)),
        side="LT" if case.anatomy.left else "RT", depth_cm=view.depth_cm,
        focus_cm=float(case.nodule.cy if case.nodule else case.anatomy.lobe_cy))


def render_example(seed: int, patient: int, view_index: int = 0, *, width: int = 560,
                   height: int = 360, balance: str = "equal", frame: int = 0,
                   study: int = 0) -> Example:
    """Patient `patient`'s view `view_index` (same anatomy and nodule for every view);
    `frame` > 0 gives later frames of a cine loop (small probe motion, new speckle);
    `study` > 0 dates the screen to a later follow-up examination."""
    case, identity, study_rng = _patient(seed, patient, balance)
    view_rng = np.random.default_rng([seed, patient, 2, view_index])
    view = sample_view(view_rng, case, first=view_index == 0)
    if frame:
        motion = np.random.default_rng([seed, patient, 4, view_index])
        drift = motion.uniform(-0.02, 0.02)
        view = replace(view, shift_x=view.shift_x + drift * frame,
                       shift_y=view.shift_y + 0.004 * np.sin(frame))
    box = image_area_box(width, height)
    speckle_rng = np.random.default_rng([seed, patient, 5, view_index, frame])
    rendered = render_bmode(case, view, box.height, box.width, speckle_rng)
    study_day = int(study_rng.integers(0, 900)) + 190 * study
    notes = _notes(np.random.default_rng([seed, patient, 6, view_index]), identity, view,
                   case, study_day)
    screen, mask = compose_screen(rendered.pixels, width=width, height=height,
                                  px_per_cm=rendered.px_per_cm, notes=notes)
    nodule_box = None
    nodule_mask = np.zeros(screen.shape[:2], bool)
    nodule_mask[box.y0:box.y1, box.x0:box.x1] = rendered.nodule_mask
    if rendered.nodule_mask.any():
        ys, xs = np.nonzero(rendered.nodule_mask)
        nodule_box = Box(int(xs.min()) + box.x0, int(ys.min()) + box.y0,
                         int(xs.max()) + 1 + box.x0, int(ys.max()) + 1 + box.y0)
    return Example(screen=screen, annotation_mask=mask, image_box=box, nodule_box=nodule_box,
                   nodule_mask=nodule_mask, px_per_cm=rendered.px_per_cm, case=case,
                   view=view, identity=identity, notes=notes)


def check_options(*, n: int, width: int, height: int, balance: str = "equal",
                  images_per_patient: int = 1) -> None:
    """Raise InputError (one line) for options no phantom can be made with."""
    if int(n) <= 0:
        raise InputError(f"--n must be a positive number of images, got {n}")
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise InputError(f"image size {width}x{height} is too small "
                         f"(at least {MIN_WIDTH}x{MIN_HEIGHT})")
    if width * height > 4096 * 4096:
        raise InputError(f"image size {width}x{height} is too large (at most 4096x4096 pixels)")
    if balance not in BALANCES:
        raise InputError(f"unknown balance {balance!r}; expected one of {', '.join(BALANCES)}")
    if images_per_patient < 1:
        raise InputError(f"--per-patient must be at least 1, got {images_per_patient}")


def prepare_output(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Create the output folder; refuse a non-empty one (nothing already there is lost)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"{path}: folder is not empty; choose a new output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    return path


def _example_row(example: Example, index: int, patient: int, path: str,
                 mask: str = "") -> dict[str, object]:
    row: dict[str, object] = {
        "path": path, "label": str(example.case.label), "patient_id": f"phantom-{patient:05d}",
        "split": "", "source": "phantom", MASK_COLUMN: mask, **example.case.feature_row(),
        "nodule_mm": (f"{example.case.nodule.diameter_mm * example.view.nodule_scale:.1f}"
                      if example.case.nodule else ""),
    }
    if example.nodule_box is not None:
        row.update(zip(("x0", "y0", "x1", "y1"), example.nodule_box))
    return row


def _save_png_fast(pixels: np.ndarray, path: Path) -> None:
    """Atomic PNG write with light compression: zlib level 1 is several times faster than
    the default and the files only about a fifth larger (speckle barely compresses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _write_one(job: tuple[Path, int, int, int, int, int, str]) -> dict[str, object]:
    out, seed, index, per_patient, width, height, balance = job
    patient, view_index = divmod(index, per_patient)
    example = render_example(seed, patient, view_index, width=width, height=height,
                             balance=balance)
    relative = f"{example.case.label}/phantom_{index:05d}.png"
    _save_png_fast(example.screen, out / relative)
    # The true nodule mask, all zero for category 1 (known: there is no nodule).
    mask = f"{MASKS_DIR}/{relative}"
    save_mask(example.nodule_mask, out / mask)
    return _example_row(example, index, patient, relative, mask)


def generate_dataset(out: str | os.PathLike[str], *, n: int, seed: int, width: int = 560,
                     height: int = 360, balance: str = "equal", images_per_patient: int = 1,
                     progress: bool = True, workers: int | None = None,
                     overwrite: bool = False) -> Path:
    """Write `n` phantom screens as PNGs in class folders `1/`..`5/` of `out`, their true
    nodule masks under `masks/` (same relative names; all zero for category 1), plus
    `manifest.csv` (path, label, patient_id, nodule box in screen pixels, source=phantom,
    mask, the drawn descriptors). Patients get `images_per_patient` consecutive images each (same
    anatomy and nodule, other probe position and gain). Returns the manifest's path."""
    check_options(n=n, width=width, height=height, balance=balance,
                  images_per_patient=images_per_patient)
    root = prepare_output(out, overwrite=overwrite)
    jobs = [(root, int(seed), i, images_per_patient, width, height, balance) for i in range(n)]
    try:
        rows = map_in_order(_write_one, jobs, workers=worker_count(workers, n),
                            progress=progress, desc="phantom")
        return write_manifest(root, rows, columns=MANIFEST_COLUMNS)
    except OSError as exc:  # disk full, folder removed or made read-only meanwhile
        raise InputError(f"{root}: cannot write ({exc.strerror or exc})") from None
