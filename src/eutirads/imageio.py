"""Safe image decoding shared by import, training, inference and the web app.

Every image from outside is opened here: the header is read first and the pixel count is
checked before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "open_image", "load_rgb", "load_gray"]

# 50 megapixels: ten times a large ultrasound frame, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = str | os.PathLike[str] | bytes | BinaryIO


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "image"


def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               allow_multiframe: bool = True, name: str | None = None) -> Image.Image:
    """Decode an image fully, after checking its declared size against `max_pixels`.

    `name` is what error messages call the image (never pass an upload's own file name:
    it may identify a patient). Multi-frame files give their first frame unless
    `allow_multiframe` is False, in which case they are refused.
    """
    label = _describe(source, name)
    handle: BinaryIO | str | os.PathLike[str]
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"{label}: empty image ({width}x{height})")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"{label}: image too large ({width}x{height} pixels; limit {max_pixels:,})")
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and not allow_multiframe:
                raise ImageDecodeError(f"{label}: multi-frame or animated image ({frames} frames)")
            # Strict decoding whatever another library set process-wide (WeasyPrint turns
            # LOAD_TRUNCATED_IMAGES on at import): a truncated file must be refused.
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            image.load()
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{label}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{label}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{label}: image too large (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"{label}: corrupt or truncated image ({reason})") from None
    return image


def load_rgb(source: ImageSource, **kwargs) -> np.ndarray:
    """HxWx3 uint8 array."""
    return np.asarray(open_image(source, **kwargs).convert("RGB"))


def load_gray(source: ImageSource, **kwargs) -> np.ndarray:
    """HxW uint8 array."""
    return np.asarray(open_image(source, **kwargs).convert("L"))


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an array as PNG atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
