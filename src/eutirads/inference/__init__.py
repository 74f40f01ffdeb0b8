"""Serving-side inference on a model bundle: onnxruntime, numpy and Pillow only (never
torch, so the diagnosis web app and `eutirads predict` run without the training extra)."""

from __future__ import annotations

from .bundle import BUNDLE_FORMAT, read_metadata
from .images import load_image
from .heatmap import class_activation_map, colorize, heatmap_to_image, overlay_heatmap
from .predictor import Prediction, Predictor, category_name, model_crop_box, softmax

__all__ = ["BUNDLE_FORMAT", "Prediction", "Predictor", "overlay_heatmap", "colorize",
           "class_activation_map", "heatmap_to_image", "model_crop_box", "category_name",
           "read_metadata", "softmax", "load_image"]
