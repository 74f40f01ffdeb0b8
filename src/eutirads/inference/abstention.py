"""Knowing when not to answer: calibration, out-of-distribution distance, the checks that
decide an abstention. numpy only: training fits these numbers, the predictor applies them.

- Temperature scaling (Guo et al., 2017): one temperature T fitted on the val split by
  maximum likelihood, applied as softmax(log p / T). On raw logits this is the textbook
  form; on probabilities already averaged over mirror views it is the same idea.
- Out-of-distribution distance: cosine distance from an image's pooled backbone features
  to its k-th nearest training image; the threshold is a quantile of the val images' own
  distances, so it is set by images the model did not train on but should accept.
- "not-ultrasound": an image whose pixels are mostly strongly coloured (a photo) or mostly
  pure white (a drawing, a checkerboard, a document) is not a B-mode frame; a grey
  picture such as a chest X-ray passes this check and is left to the distance.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["ABSTAIN_REASONS", "apply_temperature", "fit_temperature", "pooled",
           "knn_distance", "not_ultrasound", "low_confidence_threshold", "AbstainRule"]

ABSTAIN_REASONS = ("no-ultrasound-area", "not-ultrasound", "out-of-distribution",
                   "low-confidence")

# A B-mode frame is grey: colour lives in overlays, Doppler boxes and text. Above these
# fractions of the picture, it is not an ultrasound frame.
COLOURED_FRACTION = 0.35     # pixels whose channels differ by more than COLOUR_SPREAD
COLOUR_SPREAD = 40
WHITE_FRACTION = 0.25        # pixels at full white (ultrasound saturates rarely and locally)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) along the last axis; T = 1 leaves `proba` as it is."""
    proba = np.asarray(proba, np.float64)
    if temperature == 1.0:
        return proba
    z = np.log(np.clip(proba, 1e-12, None)) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _nll(proba: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = apply_temperature(proba, temperature)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def fit_temperature(proba: np.ndarray, y: np.ndarray, *, low: float = 0.05,
                    high: float = 20.0) -> float:
    """The temperature minimising the val negative log-likelihood (golden-section search
    on log T; the likelihood is unimodal in T). 1.0 for an empty split."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(proba, y, math.exp(c)), _nll(proba, y, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(proba, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(proba, y, math.exp(d))
    return float(math.exp((a + b) / 2))


def low_confidence_threshold(calibrated: np.ndarray, quantile: float) -> float:
    """The confidence under which a prediction abstains: the `quantile` of the calibrated
    val confidences (0 = never abstain for low confidence)."""
    if quantile <= 0 or len(calibrated) == 0:
        return 0.0
    return float(np.quantile(np.asarray(calibrated).max(axis=1), quantile))


def pooled(features: np.ndarray) -> np.ndarray:
    """N x C x h x w feature maps -> N x C, L2-normalised (cosine geometry)."""
    f = np.asarray(features, np.float32)
    if f.ndim == 4:
        f = f.mean(axis=(2, 3))
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int, *,
                 exclude_self: bool = False) -> np.ndarray:
    """Cosine distance of each query row (pooled, normalised) to its k-th nearest
    reference row. `exclude_self` skips the nearest one (query = reference)."""
    sims = np.asarray(query, np.float32) @ np.asarray(reference, np.float32).T
    k_eff = min(k + int(exclude_self), sims.shape[1])
    kth = -np.partition(-sims, k_eff - 1, axis=1)[:, k_eff - 1]
    return 1.0 - kth


def not_ultrasound(pixels: np.ndarray) -> bool:
    """True for a picture that is not a B-mode frame: mostly coloured, or mostly white."""
    rgb = np.asarray(pixels)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    # A picture is judged on a subsample of about 40,000 pixels: the fractions do not need
    # every pixel (their standard error stays under 0.3%), and the server checks every
    # upload (a full 560x360 frame cost 13 ms of the request, docs/benchmarks.md).
    step = max(1, round(math.sqrt(rgb.shape[0] * rgb.shape[1] / 40_000)))
    # Channel by channel: a reduction over a last axis of 3 cost 3 ms of a 36 ms predict.
    channels = [rgb[::step, ::step, c] for c in range(min(3, rgb.shape[-1]))]
    darkest = functools.reduce(np.minimum, channels)
    spread = functools.reduce(np.maximum, channels) - darkest  # never negative: no wrap
    coloured = float((spread > COLOUR_SPREAD).mean())
    white = float((darkest >= 250).mean())
    return coloured > COLOURED_FRACTION or white > WHITE_FRACTION


@dataclass(frozen=True)
class AbstainRule:
    """The numbers an abstention decision needs, as stored in a bundle."""
    temperature: float = 1.0
    low_confidence: float = 0.0            # calibrated top probability under which to abstain
    ood_threshold: float | None = None     # k-NN cosine distance above which to abstain
    ood_k: int = 5
    reference: np.ndarray | None = None    # N x C pooled, normalised training features

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None,
                      reference: np.ndarray | None = None) -> "AbstainRule":
        s = dict(settings or {})
        ood = s.get("ood") or {}
        return cls(float((s.get("calibration") or {}).get("temperature", 1.0)),
                   float((s.get("abstain") or {}).get("low_confidence", 0.0)),
                   ood.get("threshold"), int(ood.get("k", 5)), reference)

    def distance(self, features: np.ndarray) -> float | None:
        if self.reference is None or self.ood_threshold is None:
            return None
        return float(knn_distance(pooled(features), self.reference, self.ood_k)[0])

    def reason(self, *, pixels: np.ndarray, features: np.ndarray | None,
               confidence: float) -> str | None:
        """The first reason to abstain, in the order of ABSTAIN_REASONS (after the
        image-area check, which happens before the model runs), or None."""
        if not_ultrasound(pixels):
            return "not-ultrasound"
        if features is not None:
            distance = self.distance(features)
            if distance is not None and distance > self.ood_threshold:
                return "out-of-distribution"
        if confidence < self.low_confidence:
            return "low-confidence"
        return None
