"""Class-activation heatmaps from a feature map and the classifier's weights (no gradients),
mapped back onto the input image, and a colour overlay. numpy and Pillow only."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError
from ..preprocess import PreprocessSpec
from ..region import Box

__all__ = ["class_activation_map", "heatmap_to_image", "colorize", "overlay_heatmap",
           "COLOR_ANCHORS"]

# A perceptually ordered dark-blue -> cyan -> yellow -> red ramp (anchor colours of "turbo"),
# interpolated linearly: enough for a heatmap, and no matplotlib on the serving side.
_ANCHORS = np.array([
    [48, 18, 59], [70, 107, 227], [40, 187, 236], [49, 242, 153], [162, 252, 60],
    [237, 208, 58], [251, 128, 34], [208, 47, 5], [122, 4, 3]], dtype=np.float32)
# The ramp's anchors, public for consumers that colour heatmaps themselves (the static page).
COLOR_ANCHORS = _ANCHORS


def class_activation_map(features: np.ndarray, weight: np.ndarray, class_index: int) -> np.ndarray:
    """CAM of one class: the classifier's weights for the class applied at every position
    of the CxHxW feature map, negative evidence cut at zero, scaled to [0, 1]."""
    if features.ndim != 3 or weight.ndim != 2 or weight.shape[1] != features.shape[0]:
        raise InputError(f"feature map {features.shape} does not fit head weights {weight.shape}")
    cam = np.tensordot(weight[class_index], features, axes=1).astype(np.float32)
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


def _resize_float(values: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def heatmap_to_image(cam: np.ndarray, spec: PreprocessSpec, crop_box: Box,
                     image_shape: tuple[int, ...]) -> np.ndarray:
    """Map a model-grid heatmap back to the input image: up to the model's input size, the
    letterbox padding removed, to the size of the crop the model saw, and placed at that
    crop in an image-sized map that is zero elsewhere. HxW float32 in [0, 1]."""
    in_h, in_w = spec.input_size
    grid = _resize_float(cam, in_w, in_h)
    crop_w, crop_h = crop_box.width, crop_box.height
    if spec.resize == "letterbox":
        # The same placement as preprocess.resize_to_input.
        scale = min(in_w / crop_w, in_h / crop_h)
        new_w, new_h = max(1, round(crop_w * scale)), max(1, round(crop_h * scale))
        top, left = (in_h - new_h) // 2, (in_w - new_w) // 2
        grid = grid[top:top + new_h, left:left + new_w]
    out = np.zeros(image_shape[:2], np.float32)
    # Clipped inside the crop only: the rest is zero already.
    out[crop_box.y0:crop_box.y1, crop_box.x0:crop_box.x1] = np.clip(
        _resize_float(grid, crop_w, crop_h), 0.0, 1.0)
    return out


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """HxW values in [0, 1] -> HxWx3 uint8 colours."""
    x = np.clip(heatmap, 0.0, 1.0) * (len(_ANCHORS) - 1)
    stops = np.arange(len(_ANCHORS))
    rgb = np.stack([np.interp(x, stops, _ANCHORS[:, c]) for c in range(3)], axis=-1)
    return rgb.round().astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The image with the coloured heatmap blended in, HxWx3 uint8. Each pixel's blend
    weight is `opacity` times its heat, so where the heat is zero the image is unchanged."""
    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"opacity must be in [0, 1], got {opacity}")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    pixels = pixels[..., :3]
    if pixels.shape[:2] != heatmap.shape:
        raise InputError(f"heatmap {heatmap.shape} does not match the image {pixels.shape[:2]}")
    alpha = (opacity * np.clip(heatmap, 0.0, 1.0))[..., None]
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colorize(heatmap)
    return blended.round().clip(0, 255).astype(np.uint8)
