"""Measured descriptors at inference: the bundle's "measured" component (an ONNX graph of
`models.nodule_features.MeasuredDescriptors`) read from the localiser's outline.

The graph's inputs are built here, the same way in training (`training.measured`) and at
prediction: the image area (the localiser's crop box) and the localiser's probability map
(at the image's size) are both resized to the component's grid (the localiser's input
size, stretched), the image as its mean intensity in [0, 1]. numpy and Pillow only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..region import Box, crop
from .bundle import MEASURED, MEASURED_INPUTS, component_file, open_session

__all__ = ["measure_inputs", "grid_probability", "Measured"]


def grid_probability(probability: np.ndarray, box: Box, grid: tuple[int, int]) -> np.ndarray:
    """The image-size probability map's crop `box` resized to `grid` (H, W), float32: the
    localiser's outline on its own grid, as the measured and outline graphs read it."""
    height, width = grid
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop(probability, box),
                                                           dtype=np.float32))
                      .resize((width, height), Image.Resampling.BILINEAR), np.float32)


def measure_inputs(pixels: np.ndarray, probability: np.ndarray, box: Box,
                   grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gray 1x1xHxW in [0, 1], prob 1x1xHxW, scale 1x2) for one image: `pixels` HxWx3
    uint8, `probability` HxW float at the image's size, `box` the image area."""
    height, width = grid
    area = crop(pixels, box)
    gray = np.asarray(Image.fromarray(area).resize((width, height), Image.Resampling.BILINEAR),
                      np.float32).mean(axis=2) / 255.0
    prob = grid_probability(probability, box, grid)
    scale = np.array([[(box[3] - box[1]) / height, (box[2] - box[0]) / width]], np.float32)
    return gray[None, None], prob[None, None], scale


class Measured:
    """The bundle's measured-descriptors component, loaded once."""

    def __init__(self, bundle_dir: str | os.PathLike[str], meta: dict[str, Any], *,
                 threads: int | None = None) -> None:
        root = Path(bundle_dir)
        settings = meta["components"][MEASURED]
        model = component_file(root, meta, MEASURED, "model")
        try:
            self.grid = (int(settings["grid"][0]), int(settings["grid"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelError(f"{root}: the measured component names no grid [H, W]") from None
        self.descriptors: dict[str, dict[str, Any]] = dict(settings.get("descriptors") or {})
        self._session = open_session(model, threads)
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if tuple(inputs) != MEASURED_INPUTS:
            raise ModelError(f"{model}: expected inputs {MEASURED_INPUTS}, found {inputs}")
        for name, head in self.descriptors.items():
            if head.get("output") not in outputs:
                raise ModelError(f"{model}: measured descriptor {name!r} has no output "
                                 f"{head.get('output')!r}")
        self._outputs = [h["output"] for h in self.descriptors.values()]

    def logits(self, pixels: np.ndarray, probability: np.ndarray, box: Box
               ) -> dict[str, np.ndarray]:
        """Each descriptor's logits (values in the component's order) for one image."""
        gray, prob, scale = measure_inputs(pixels, probability, box, self.grid)
        values = self._session.run(self._outputs, dict(zip(MEASURED_INPUTS, (gray, prob, scale))))
        return {name: v[0] for name, v in zip(self.descriptors, values)}
