"""Export a trained model to a bundle (model.onnx + preprocess.json + head weights +
model card) for torch-free serving; see `eutirads.inference.bundle` for the format."""

from __future__ import annotations

from .exporter import PARITY_TOLERANCE, check_parity, export_bundle, export_model, head_weights

__all__ = ["export_bundle", "export_model", "check_parity", "head_weights", "PARITY_TOLERANCE"]
