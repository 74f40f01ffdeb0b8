"""The Django-free diagnosis helpers: the screen check behind abstention, calipers on an
outline, the upload limits, and diagnose() on a classifier-only predictor."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from eutirads.inference.diagnosis import calipers, outline_geometry, screen_check
from eutirads.inference.uploads import UploadError, UploadLimits, clean_upload


def _speckle(width=400, height=300, seed=0):
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[20:-20, 30:-30] = rng.integers(40, 220, (height - 40, width - 60, 1), dtype=np.uint8)
    return frame


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_ultrasound_like_screen_passes_and_its_area_is_found_on_a_reduced_copy():
    reason, area = screen_check(_speckle(1200, 900))
    assert reason == ""
    # never larger than the true area (30..1170, 20..880): the border stays out
    assert 30 <= area.x0 <= 35 and 1165 <= area.x1 <= 1170 and 20 <= area.y0 <= 25 \
        and 875 <= area.y1 <= 880


ABSTAINS = {"not-ultrasound", "no-ultrasound-area"}


@pytest.mark.parametrize("picture,reasons", [
    ("checkerboard", ABSTAINS), ("colour", ABSTAINS),
    ("black", {"no-ultrasound-area"}), ("text", {"no-ultrasound-area"})])
def test_pictures_that_are_no_ultrasound_screen_get_a_reason(picture, reasons):
    yy, xx = np.mgrid[0:300, 0:400]
    if picture == "checkerboard":
        pixels = np.repeat((((yy // 25) + (xx // 25)) % 2 * 255).astype(np.uint8)[..., None], 3, 2)
    elif picture == "colour":
        pixels = np.zeros((300, 400, 3), np.uint8)
        pixels[..., 0] = (xx * 255 // 400).astype(np.uint8)
        pixels[..., 2] = (yy * 255 // 300).astype(np.uint8)
        pixels[..., 1] = 60
    elif picture == "black":
        pixels = np.zeros((300, 400, 3), np.uint8)
    else:  # thin white lines on black, like a screen of text only
        pixels = np.zeros((300, 400, 3), np.uint8)
        pixels[::12, :] = 255
    # (the area finder itself refuses a flat, unspeckled block: either reason abstains)
    assert screen_check(pixels)[0] in reasons


def test_the_phantom_screens_pass_the_screen_check(tmp_path):
    from eutirads.phantom import generate_dataset

    generate_dataset(tmp_path, n=6, seed=3)
    screens = [p for p in sorted(tmp_path.rglob("*.png")) if "mask" not in str(p)]
    assert len(screens) >= 6
    for path in screens:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert screen_check(pixels)[0] == "", path.name


def test_calipers_of_an_ellipse_are_its_two_axes():
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    contour = np.stack([100 + 40 * np.cos(t), 80 + 15 * np.sin(t)], axis=1)
    (a, b), (c, d) = calipers(contour.tolist())
    assert np.hypot(b[0] - a[0], b[1] - a[1]) == pytest.approx(80, abs=1)
    assert np.hypot(d[0] - c[0], d[1] - c[1]) == pytest.approx(30, abs=1.5)
    assert calipers([[0, 0], [1, 1]]) is None


def test_the_outline_geometry_is_shifted_to_a_kept_image_area():
    nodule = {"regions": [{"contour": [[10, 20], [30, 20], [20, 40]],
                           "calipers": [[[10, 20], [30, 20]], [[20, 20], [20, 40]]],
                           "long_axis_mm": 2.0}]}
    geometry = outline_geometry(nodule, {"x0": 10, "y0": 20, "x1": 30, "y1": 40}, "localiser",
                                offset=(10, 10))
    assert geometry["regions"][0]["points"] == "0.0,10.0 20.0,10.0 10.0,30.0"
    assert geometry["regions"][0]["calipers"][0]["mm"] == 2.0
    assert geometry["box"] == {"x": 0, "y": 10, "w": 20, "h": 20, "source": "localiser"}


@pytest.mark.parametrize("size,message", [
    ((4000, 2500), "image too large (4000x2500 pixels; limit 8,000,000 pixels)"),
    ((16, 6000), "unusual aspect ratio"), ((3000, 200), "unusual aspect ratio")])
def test_uploads_over_the_ultrasound_limits_are_refused_before_decoding(size, message):
    data = _png(np.zeros(size[::-1], np.uint8))
    with pytest.raises(UploadError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        clean_upload(data, "a.png")
    assert err.value.status == 400


def test_the_decode_memory_bound_counts_the_declared_mode():
    pixels = (np.arange(1000 * 800, dtype=np.uint32).reshape(800, 1000) % 65535).astype(np.uint16)
    data = _png(pixels)  # 16-bit grey: 2 bytes per pixel plus the RGB copy
    with pytest.raises(UploadError, match="too large to decode"):
        clean_upload(data, "a.png", limits=UploadLimits(max_decode_bytes=3_000_000))
    assert clean_upload(data, "a.png").width == 1000


def test_the_pixel_limit_is_configurable():
    data = _png(_speckle(400, 300))
    assert clean_upload(data, "a.png").width == 400
    with pytest.raises(UploadError, match="limit 100,000 pixels"):
        clean_upload(data, "a.png", limits=UploadLimits(max_pixels=100_000))

