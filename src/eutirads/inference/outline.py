"""The category read inside the localiser's outline, at inference: the bundle's "outline"
component (an ONNX graph of `models.outline_pooling.OutlineCategory`).

Its inputs are built here, the same way in training (`training.outline`) and at prediction:
the image area (the localiser's crop box) stretched to the localiser's grid and normalised
by the localiser's mean and std, and the localiser's probability map (at the image's size)
cropped and resized to that grid. numpy and Pillow only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..preprocess import PreprocessSpec, normalize, resize_to_input
from ..region import Box, crop
from .abstention import apply_temperature
from .bundle import OUTLINE, OUTLINE_INPUTS, component_file, open_session
from .measured import grid_probability

__all__ = ["outline_inputs", "Outline"]


def outline_inputs(pixels: np.ndarray, probability: np.ndarray, box: Box,
                   spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(image 1x3xHxW, prob 1x1xHxW) on the localiser's grid (`spec`: the localiser's
    preprocess spec) for one image: `pixels` HxWx3 uint8, `probability` HxW at the image's
    size, `box` the image area. The image is stretched whatever the localiser's resize
    rule, so that it and the probability map cover the same pixels."""
    grid = (int(spec.input_size[0]), int(spec.input_size[1]))
    image = normalize(resize_to_input(crop(pixels, box), spec.replace(resize="stretch")), spec)
    return image[None], grid_probability(probability, box, grid)[None, None]


class Outline:
    """The bundle's outline component, loaded once: calibrated category probabilities of a
    nodule the localiser found."""

    def __init__(self, bundle_dir: str | os.PathLike[str], meta: dict[str, Any], *,
                 threads: int | None = None) -> None:
        root = Path(bundle_dir)
        settings = meta["components"][OUTLINE]
        model = component_file(root, meta, OUTLINE, "model")
        self.class_names = [str(c) for c in settings.get("class_names") or []]
        if not self.class_names:
            raise ModelError(f"{root}: the outline component names no classes")
        self.temperature = float(settings.get("temperature", 1.0))
        self.low_confidence = float(settings.get("low_confidence", 0.0))
        self.default = bool(settings.get("default", False))
        self._session = open_session(model, threads)
        inputs = tuple(i.name for i in self._session.get_inputs())
        if inputs != OUTLINE_INPUTS:
            raise ModelError(f"{model}: expected inputs {OUTLINE_INPUTS}, found {list(inputs)}")

    def probabilities(self, pixels: np.ndarray, probability: np.ndarray, box: Box,
                      spec: PreprocessSpec) -> np.ndarray:
        """The calibrated class probabilities (the component's class order) of one image."""
        image, prob = outline_inputs(pixels, probability, box, spec)
        (logits,) = self._session.run(["logits"], dict(zip(OUTLINE_INPUTS, (image, prob))))
        z = logits[0].astype(np.float64)
        e = np.exp(z - z.max())
        return apply_temperature(e / e.sum(), self.temperature)
