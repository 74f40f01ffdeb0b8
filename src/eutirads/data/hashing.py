"""Image fingerprints for duplicate detection: an exact one and a perceptual one.

- `pixel_sha256`: SHA-256 of the decoded RGB pixels (and the size), so the same picture
  saved twice, or re-saved with other metadata, counts as one.
- `phash`: ImageHash's perceptual hash, 256 bits (hash_size=16), of the *ultrasound image
  area only*, as 64 hex digits. Two measurements chose this:
  * On a scanner screen the frame (black border, burned-in text, depth scale) is the same
    on every image and dominates a whole-frame hash: on DDTI-dev, different nodules from
    one scanner came within 6-8 bits (of 64) of each other. Hashing the image area alone
    separates them (true near-duplicates at 0, different images at 10 or more).
  * The default 64-bit hash keeps only the coarsest layout, which all thyroid scans share:
    on 200 phantom images of *different* patients 24 pairs were within 4 bits. At 256 bits
    the closest different phantom images are 34 bits apart, different DDTI images 74, while
    DDTI's duplicates and re-captures stay at 0; `PHASH_THRESHOLD` = 16 sits between.

Both are cached in the manifest (columns `pixel_sha256`, `phash`) so split and summary do
not decode every image again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import imagehash
import numpy as np
from PIL import Image

from ..errors import InputError
from ..region import find_image_area

__all__ = ["PHASH_THRESHOLD", "ImageHashes", "hash_image", "hamming", "is_valid_phash",
           "near_duplicate_pairs"]

# Hamming distance (bits out of 256) at or under which two image areas are the same picture.
PHASH_THRESHOLD = 16
PHASH_SIZE = 16  # ImageHash's hash_size: a 16x16 = 256-bit hash
PHASH_HEX_DIGITS = PHASH_SIZE * PHASH_SIZE // 4

# The image area is found on a 4x reduced grey copy: 100x faster than at full size and
# exact enough for hashing (a few pixels of the box's edge are trimmed afterwards).
_REDUCE = 4


@dataclass(frozen=True)
class ImageHashes:
    pixel_sha256: str
    phash: str  # PHASH_HEX_DIGITS hex digits


def _image_area(gray: Image.Image) -> Image.Image:
    """The ultrasound image area of a grey frame; the whole frame when none is found
    (a plain photo or an already cropped image)."""
    small = gray.reduce(_REDUCE) if min(gray.size) >= 16 * _REDUCE else gray
    factor = gray.width / small.width
    try:
        box = find_image_area(np.asarray(small))
    except InputError:
        return gray
    margin = _REDUCE  # trim the edge the reduction blurred
    x0, y0 = int(box.x0 * factor) + margin, int(box.y0 * factor) + margin
    x1, y1 = int(box.x1 * factor) - margin, int(box.y1 * factor) - margin
    if x1 - x0 < 16 or y1 - y0 < 16:
        return gray
    return gray.crop((x0, y0, x1, y1))


def hash_image(image: Image.Image) -> ImageHashes:
    """Exact and perceptual fingerprints of a decoded image."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    phash = imagehash.phash(_image_area(rgb.convert("L")), hash_size=PHASH_SIZE)
    return ImageHashes(pixel_sha256=digest.hexdigest(), phash=str(phash))


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def is_valid_phash(text: str) -> bool:
    """A hash of the current kind (older or foreign ones must be recomputed)."""
    return len(text) == PHASH_HEX_DIGITS and all(c in "0123456789abcdefABCDEF" for c in text)


def near_duplicate_pairs(phashes: Sequence[str], threshold: int = PHASH_THRESHOLD
                         ) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ by at most `threshold` bits.

    Empty or invalid entries are ignored. All pairs are compared (vectorised, one row at a
    time): 10,000 images take seconds, which is fine for the dataset sizes of the field.
    """
    index = [i for i, text in enumerate(phashes) if text and is_valid_phash(text)]
    if len(index) < 2:
        return []
    # Each hash as 64-bit words, so numpy can XOR and count bits.
    words = np.array([[int(phashes[i][k:k + 16], 16) for k in range(0, PHASH_HEX_DIGITS, 16)]
                      for i in index], dtype=np.uint64)
    pairs = []
    for k in range(len(words) - 1):
        distance = np.bitwise_count(words[k + 1:] ^ words[k]).sum(axis=1)
        for offset in np.nonzero(distance <= threshold)[0]:
            pairs.append((index[k], index[k + 1 + int(offset)]))
    return pairs
