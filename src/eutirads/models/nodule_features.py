"""Measured nodule features: what a radiologist reads from the nodule's outline, computed
from the image area's pixels and a nodule mask (or the localiser's probability map).

Plain tensor ops only (pooling for rings and morphology, soft thresholds, moments), so the
same module runs in PyTorch, exports to ONNX and gives the same numbers in onnxruntime
(Python or the browser). Inputs, on the localiser's grid (the image area stretched to
H x W):

- `gray`  N x 1 x H x W, intensity in [0, 1] (mean of R, G, B / 255);
- `prob`  N x 1 x H x W, nodule probability (a true mask: 0/1);
- `scale` N x 2, (height, width) of one grid pixel in image pixels (the stretch), so the
  shape measures are taken in the image's own geometry.

Output: N x F, the features of `FEATURE_NAMES`, in that order. Groups (EU-TIRADS):

- echogenicity: the nodule's mean intensity (all of it, and its solid part) against a near
  ring of surrounding tissue, a far ring and the whole image area (log ratios);
- composition: the fraction of dark (anechoic) pixels inside, absolute and relative to
  the ring; internal heterogeneity; posterior enhancement (fluid) or shadowing below;
- shape: taller-than-wide from the extents and from the second moments;
- margins: outline contrast and sharpness, compactness, the parts a morphological
  opening removes (lobulation, spicules) and a closing adds (concavities);
- echogenic foci: small bright spots inside (grey-level top-hat) and very bright pixels;
- size: the nodule's area in image pixels (log) and as a fraction of the image area.

A mask with no nodule gives finite (meaningless) values: the caller decides what an empty
mask means (the Predictor already reports "no nodule").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NoduleFeatures", "MeasuredDescriptors", "FEATURE_NAMES", "GROUPS", "measure"]

EPS = 1e-4

GROUPS: dict[str, tuple[str, ...]] = {
    "echogenicity": ("log_in_near", "log_in_far", "log_in_image", "log_solid_near",
                     "log_near_image", "frac_below_70_near", "frac_above_130_near"),
    "composition": ("frac_dark_010", "frac_dark_020", "frac_below_30_near",
                    "frac_below_50_near", "cv_inside", "log_posterior_near"),
    "shape": ("log_extent_ratio", "log_moment_ratio", "tall_extent", "tall_moment"),
    "margins": ("edge_contrast", "edge_gradient", "log_compactness", "open_loss_7",
                "open_loss_15", "close_gain_7", "close_gain_15", "cv_near"),
    "echogenic_foci": ("tophat_010", "tophat_020", "tophat_max", "frac_bright_near"),
    "size": ("log_area", "area_fraction"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(n for names in GROUPS.values() for n in names)


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max over a k x k square, as a column pass then a row pass (the same result at
    2k instead of k*k comparisons a pixel)."""
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0))
    return F.max_pool2d(x, (1, k), stride=1, padding=(0, k // 2))


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -_dilate(-x, k)


def _mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the grid: N x 1."""
    return (values * weights).sum(dim=(2, 3)) / (weights.sum(dim=(2, 3)) + EPS)


def _below(values: torch.Tensor, threshold: torch.Tensor | float, softness: float = 0.02
           ) -> torch.Tensor:
    """Soft indicator of values < threshold."""
    return torch.sigmoid((threshold - values) / softness)


class NoduleFeatures(nn.Module):
    """(gray, prob, scale) -> N x len(FEATURE_NAMES) measured features."""

    def __init__(self, near: int = 15, far: int = 41, shadow: int = 24) -> None:
        super().__init__()
        self.near, self.far, self.shadow = near, far, shadow

    def forward(self, gray: torch.Tensor, prob: torch.Tensor, scale: torch.Tensor
                ) -> torch.Tensor:
        # A sharp soft threshold: a 0/1 mask passes unchanged, a probability map becomes
        # nearly binary at 0.5 (the localiser's own threshold).
        m = torch.sigmoid((prob - 0.5) / 0.05)
        n = m.shape[0]
        ones = torch.ones_like(m)
        dil3, ero3 = _dilate(m, 3), _erode(m, 3)
        near = (_dilate(m, self.near) - dil3).clamp(0, 1)
        far = (_dilate(m, self.far) - _dilate(m, self.near)).clamp(0, 1)
        inner = _erode(m, 5)

        mu_in, mu_near = _mean(gray, m), _mean(gray, near)
        mu_far, mu_img = _mean(gray, far), _mean(gray, ones)
        ref = mu_near[:, :, None, None]
        solid = m * (1 - _below(gray, 0.5 * ref))
        mu_solid = _mean(gray, solid)

        def log_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.log((a + 0.01) / (b + 0.01))

        echo = [log_ratio(mu_in, mu_near), log_ratio(mu_in, mu_far), log_ratio(mu_in, mu_img),
                log_ratio(mu_solid, mu_near), log_ratio(mu_near, mu_img),
                _mean(_below(gray, 0.7 * ref), m), _mean(1 - _below(gray, 1.3 * ref), m)]

        sd_in = torch.sqrt(_mean((gray - mu_in[:, :, None, None]) ** 2, m) + EPS)
        # Posterior band: the mask shifted down (towards depth), outside the nodule.
        height = m.shape[2]
        below = F.pad(m, (0, 0, self.shadow, 0))[:, :, :height, :]
        posterior = (below - dil3).clamp(0, 1)
        comp = [_mean(_below(gray, 0.10), m), _mean(_below(gray, 0.20), m),
                _mean(_below(gray, 0.3 * ref), m), _mean(_below(gray, 0.5 * ref), m),
                sd_in / (mu_in + 0.01), log_ratio(_mean(gray, posterior), mu_near)]

        dy, dx = scale[:, 0:1], scale[:, 1:2]
        rows = torch.arange(m.shape[2], dtype=m.dtype, device=m.device).view(1, 1, -1, 1)
        cols = torch.arange(m.shape[3], dtype=m.dtype, device=m.device).view(1, 1, 1, -1)
        cy, cx = _mean(rows * ones, m), _mean(cols * ones, m)
        var_y = _mean((rows - cy[:, :, None, None]) ** 2, m) * dy * dy
        var_x = _mean((cols - cx[:, :, None, None]) ** 2, m) * dx * dx
        ext_h = m.amax(dim=3).sum(dim=2) * dy
        ext_w = m.amax(dim=2).sum(dim=2) * dx
        ext_ratio = torch.log((ext_h + 1) / (ext_w + 1))
        mom_ratio = 0.5 * torch.log((var_y + 1) / (var_x + 1))
        shape = [ext_ratio, mom_ratio, torch.sigmoid(ext_ratio / 0.05),
                 torch.sigmoid(mom_ratio / 0.05)]

        area = m.sum(dim=(2, 3))
        outer_band = (_dilate(m, 7) - m).clamp(0, 1)
        inner_band = (m - _erode(m, 7)).clamp(0, 1)
        smooth = F.avg_pool2d(gray, 3, stride=1, padding=1, count_include_pad=False)
        gy = F.pad(smooth[:, :, 1:, :] - smooth[:, :, :-1, :], (0, 0, 0, 1))
        gx = F.pad(smooth[:, :, :, 1:] - smooth[:, :, :, :-1], (0, 1, 0, 0))
        grad = torch.sqrt(gy * gy + gx * gx + 1e-8)
        boundary = (dil3 - ero3).clamp(0, 1)
        perimeter = boundary.sum(dim=(2, 3)) / 2
        sd_near = torch.sqrt(_mean((gray - ref) ** 2, near) + EPS)

        def opened(k: int) -> torch.Tensor:
            return ((m - _dilate(_erode(m, k), k)).clamp(0, 1)).sum(dim=(2, 3)) / (area + 1)

        def closed(k: int) -> torch.Tensor:
            return ((_erode(_dilate(m, k), k) - m).clamp(0, 1)).sum(dim=(2, 3)) / (area + 1)

        margins = [_mean(gray, outer_band) - _mean(gray, inner_band),
                   _mean(grad, boundary) / (mu_near + 0.01),
                   torch.log((perimeter ** 2 + 1) / (4 * torch.pi * area + 1)),
                   opened(7), opened(15), closed(7), closed(15), sd_near / (mu_near + 0.01)]

        # Grey-level top-hat: what an opening of 7 px removes = bright spots smaller than it.
        tophat = gray - _dilate(_erode(gray, 7), 7)
        foci = [_mean(1 - _below(tophat, 0.10), inner), _mean(1 - _below(tophat, 0.20), inner),
                (tophat * inner).amax(dim=(2, 3)),
                _mean(1 - _below(gray, ref + 0.35), inner)]

        size = [torch.log(area * dy * dx + 1), area / float(m.shape[2] * m.shape[3])]
        out = torch.cat([*echo, *comp, *shape, *margins, *foci, *size], dim=1)
        return out.reshape(n, len(FEATURE_NAMES))


class MeasuredDescriptors(nn.Module):
    """NoduleFeatures, standardised, then one linear head per descriptor (a logistic
    regression's weights): (gray, prob, scale) -> tuple of N x values logits, in the
    order of `names`. `heads[name]` = (weight values x F, bias values)."""

    def __init__(self, mean, std, heads: dict) -> None:
        super().__init__()
        self.features = NoduleFeatures()
        self.names = list(heads)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1))
        self.heads = nn.ModuleList()
        for name in self.names:
            weight, bias = heads[name]
            layer = nn.Linear(len(FEATURE_NAMES), len(bias))
            with torch.no_grad():
                layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
                layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
            self.heads.append(layer)

    def forward(self, gray: torch.Tensor, prob: torch.Tensor, scale: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        z = (self.features(gray, prob, scale) - self.mean) / self.std
        return tuple(head(z) for head in self.heads)


def measure(gray, prob, scale) -> "numpy.ndarray":  # noqa: F821 - numpy in the hint only
    """numpy in, numpy out: N x H x W gray [0, 1], N x H x W prob, N x 2 scale."""
    import numpy as np

    module = NoduleFeatures().eval()
    with torch.no_grad():
        out = module(torch.as_tensor(np.asarray(gray, np.float32))[:, None],
                     torch.as_tensor(np.asarray(prob, np.float32))[:, None],
                     torch.as_tensor(np.asarray(scale, np.float32)))
    return out.numpy()
