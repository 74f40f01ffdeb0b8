"""Training data: manifest rows -> decoded, frame-cropped, resized images held in memory,
and the train/eval transform presets.

Region finding costs ~0.2 s per image, so every image is decoded and cropped once
(`preprocess.crop_for_model`, then `resize_to_input`) and kept as uint8 at the model's
input size; an optional shared `cache` dict lets cross-validation and benchmarks reuse it
across runs. Augmentation then runs on these input-size images (same geometry as running it
on the crop, at a fraction of the cost), and the eval preset is exactly `preprocess.prepare`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, MutableMapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..categories import DESCRIPTORS, sort_labels
from ..data.manifest import MANIFEST_NAME, Row, image_path, read_manifest, row_bbox
from ..data.manifest import row_descriptors as manifest_descriptors
from ..errors import EutiradsError, InputError
from ..imageio import load_rgb
from ..preprocess import PreprocessSpec, crop_for_model, normalize, resize_to_input

__all__ = ["Sample", "DatasetRows", "read_training_rows", "load_images", "train_transform",
           "eval_transform", "class_counts", "row_descriptors", "descriptor_heads",
           "descriptor_matrix", "targets"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    path: Path           # absolute image path
    relpath: str         # as in the manifest (for messages)
    label: str
    patient_id: str
    box: tuple[int, int, int, int] | None
    descriptors: dict[str, str] = field(default_factory=dict)  # known values only


@dataclass
class DatasetRows:
    root: Path
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]
    all_labelled: list[Sample]
    descriptor_names: list[str] = field(default_factory=list)  # the heads to train


def row_descriptors(row: Row) -> dict[str, str]:
    """The row's known descriptor values (`data.manifest.row_descriptors`, unknowns left
    out); a value outside the vocabulary is logged with its row and column and kept as
    unknown: a head is never taught a guess."""
    return {k: v for k, v in manifest_descriptors(row, on_problem=log.warning).items() if v}


def descriptor_heads(samples: Sequence[Sample]) -> list[str]:
    """The descriptors present in `samples` (a known value on at least one): one head each.
    A head whose training images all show one value learns that value, which is what the
    data says (a phantom or a small clinic may never show a taller-than-wide nodule)."""
    return [name for name in DESCRIPTORS if any(name in s.descriptors for s in samples)]


def targets(samples: Sequence[Sample], class_names: Sequence[str],
            heads: Sequence[str]) -> np.ndarray:
    """N x (1 + D) int64: the category index, then each head's value index (-1 unknown)."""
    index = {name: i for i, name in enumerate(class_names)}
    out = np.full((len(samples), 1 + len(heads)), -1, np.int64)
    for i, s in enumerate(samples):
        out[i, 0] = index[s.label]
        for j, name in enumerate(heads, start=1):
            if name in s.descriptors:
                out[i, j] = DESCRIPTORS[name].index(s.descriptors[name])
    return out


def descriptor_matrix(rows: Sequence[Row]) -> tuple[list[str], np.ndarray]:
    """For benchmarks: the heads of these rows and their N x D value indices (-1 unknown)."""
    values = [row_descriptors(r) for r in rows]
    heads = [n for n in DESCRIPTORS if len({v[n] for v in values if n in v}) >= 2]
    D = np.full((len(rows), len(heads)), -1, np.int64)
    for i, v in enumerate(values):
        for j, name in enumerate(heads):
            if name in v:
                D[i, j] = DESCRIPTORS[name].index(v[name])
    return heads, D


def _sample(root: Path, row: Row) -> Sample:
    return Sample(image_path(root, row), row["path"], row["label"],
                  row.get("patient_id", "") or row["path"], row_bbox(row), row_descriptors(row))


def read_training_rows(dataset: str | os.PathLike[str], *, train_split: str = "train",
                       val_split: str | None = "val") -> DatasetRows:
    """Labelled rows of the train and val splits, with the class list.

    The classes are every label found in the labelled rows of the manifest (all splits),
    in guideline order; each must have a training image.
    """
    root = Path(dataset)
    if root.suffix.lower() == ".csv":
        root = root.parent
    if not root.exists():
        raise InputError(f"{root}: dataset folder not found")
    manifest = root / MANIFEST_NAME
    rows = [row for row in read_manifest(root) if row.get("label", "")]
    if not rows:
        raise InputError(f"{manifest}: no labelled image")
    samples = [_sample(root, row) for row in rows]
    splits = [row.get("split", "") for row in rows]
    train = [s for s, split in zip(samples, splits) if split == train_split]
    if not train:
        raise InputError(f"{manifest}: no labelled image in split {train_split!r} "
                         "(assign splits with 'eutirads dataset split')")
    val: list[Sample] = []
    if val_split is not None:
        val = [s for s, split in zip(samples, splits) if split == val_split]
        if not val:
            raise InputError(f"{manifest}: no labelled image in split {val_split!r} "
                             "(assign splits with 'eutirads dataset split')")
    class_names = sort_labels({s.label for s in samples})
    if len(class_names) < 2:
        raise InputError(f"{manifest}: need at least 2 classes, found {len(class_names)}")
    present = {s.label for s in train}
    for name in class_names:
        if name not in present:
            raise InputError(f"{manifest}: class {name!r} has no training image "
                             f"in split {train_split!r}")
    return DatasetRows(root, class_names, train, val, samples, descriptor_heads(train))


def class_counts(labels: Sequence[int], n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)


def _cache_key(sample: Sample, spec: PreprocessSpec) -> tuple[Any, ...]:
    box = sample.box if spec.crop == "roi" else None
    return (str(sample.path), box, spec.crop, spec.roi_margin, spec.frame, spec.resize,
            spec.input_size)


def load_images(samples: Sequence[Sample], spec: PreprocessSpec, *,
                cache: MutableMapping[tuple, np.ndarray] | None = None,
                progress: bool = True, desc: str = "images"
                ) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Decode, crop and resize each sample (uint8 at input size).

    Returns (images, indices of the samples kept, one-line messages for those skipped):
    an image that fails to decode is skipped and reported, and the rest go on.
    """
    images: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[str] = []
    for index, sample in enumerate(tqdm(samples, desc=desc, unit="img", disable=not progress,
                                        leave=False)):
        key = _cache_key(sample, spec)
        if cache is not None and key in cache:
            images.append(cache[key])
            kept.append(index)
            continue
        try:
            pixels = load_rgb(sample.path, name=sample.relpath)
            image = resize_to_input(crop_for_model(pixels, spec, sample.box), spec)
        except EutiradsError as exc:
            skipped.append(str(exc))
            log.warning("skipped %s", exc)
            continue
        if cache is not None:
            cache[key] = image
        images.append(image)
        kept.append(index)
    return images, kept, skipped


def eval_transform(spec: PreprocessSpec) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic: the input-size image normalised exactly as `preprocess.prepare` does."""
    return lambda image: normalize(image, spec)


def train_transform(spec: PreprocessSpec, *, rotation: float, shift: float, shear: float,
                    zoom: float, brightness: float, hflip: bool
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """The thesis's augmentations (rotation, width/height shift, shear, zoom, brightness,
    horizontal flip, nearest fill) on top of the eval preset.

    Keras's "nearest" fill repeats the border pixels: edge padding before the affine warp and
    a centre crop after it gives the same picture.
    """
    from torchvision.transforms import v2

    height, width = spec.input_size
    pad = max(height, width) // 4
    steps: list[Any] = [
        v2.Pad(pad, padding_mode="edge"),
        v2.RandomAffine(degrees=rotation, translate=(shift, shift),
                        scale=(1 - zoom, 1 + zoom), shear=shear,
                        interpolation=v2.InterpolationMode.BILINEAR),
        v2.CenterCrop((height, width)),
    ]
    if brightness > 0:
        steps.append(v2.ColorJitter(brightness=brightness))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    augment = v2.Compose(steps)

    def apply(image: np.ndarray) -> np.ndarray:
        # torchvision v2 on a PIL image runs Pillow's C code: ~10 ms an image against
        # ~200 ms for the same transforms on a uint8 tensor on a CPU.
        out = np.asarray(augment(Image.fromarray(image)))
        return normalize(out, spec)

    return apply
