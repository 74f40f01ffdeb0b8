"""The single eval-time preprocessing (eutirads.preprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from eutirads.errors import ConfigError, InputError, ModelError
from eutirads.preprocess import PreprocessSpec, crop_for_model, prepare, resize_to_input

AREA = (100, 40, 500, 320)  # x0, y0, x1, y1 of the ultrasound block on the screen


def _screen() -> np.ndarray:
    """A 560x360 scanner screen: black, a speckled image block, a thin burned-in text row."""
    rng = np.random.default_rng(0)
    frame = np.zeros((360, 560, 3), np.uint8)
    x0, y0, x1, y1 = AREA
    frame[y0:y1, x0:x1] = rng.integers(40, 200, size=(y1 - y0, x1 - x0, 1), dtype=np.uint8)
    frame[10:16, 20:300] = 255  # text line above the image, thinner than the opening
    return frame


def test_importing_preprocess_does_not_import_torch():
    code = "import sys, eutirads.preprocess; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_crop_for_model_removes_the_scanner_frame_and_its_text():
    crop = crop_for_model(_screen(), PreprocessSpec())
    x0, y0, x1, y1 = AREA
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    assert crop.dtype == np.uint8
    assert crop.min() >= 40  # no black border or white text left


def test_crop_for_model_keeps_the_whole_image_when_frame_detection_is_off():
    crop = crop_for_model(_screen(), PreprocessSpec(frame="none"))
    assert crop.shape == (360, 560, 3)


def test_roi_crop_widens_the_nodule_box_by_the_margin():
    spec = PreprocessSpec(crop="roi", roi_margin=0.5)
    crop = crop_for_model(_screen(), spec, box=(200, 100, 300, 160))
    # 100x60 box + 50% of its size on each side = 200x120.
    assert crop.shape == (120, 200, 3)


def test_roi_crop_is_clamped_to_the_image_area():
    spec = PreprocessSpec(crop="roi", roi_margin=1.0)
    crop = crop_for_model(_screen(), spec, box=(110, 50, 150, 90))
    assert crop.shape == (130 - 40, 190 - 100, 3)
    assert crop.min() >= 40


def test_roi_crop_without_a_box_uses_the_whole_image_area():
    crop = crop_for_model(_screen(), PreprocessSpec(crop="roi"), box=None)
    assert crop.shape == (280, 400, 3)


def test_full_crop_ignores_the_box():
    crop = crop_for_model(_screen(), PreprocessSpec(crop="full"), box=(200, 100, 300, 160))
    assert crop.shape == (280, 400, 3)


def test_a_frame_without_background_is_used_whole():
    image = np.full((50, 80, 3), 128, np.uint8)
    assert crop_for_model(image, PreprocessSpec()).shape == (50, 80, 3)


def test_prepare_gives_a_normalised_channels_first_float_array():
    spec = PreprocessSpec(input_size=(32, 48), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = np.full((60, 90, 3), 255, np.uint8)
    out = prepare(image, spec)
    assert out.shape == (3, 32, 48) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2.0, atol=1e-6)  # (1 - 0.5) / 0.25


def test_prepare_accepts_grayscale_and_rgba_images():
    spec = PreprocessSpec(input_size=(16, 16), frame="none")
    gray = np.full((20, 20), 100, np.uint8)
    rgba = np.full((20, 20, 4), 100, np.uint8)
    np.testing.assert_array_equal(prepare(gray, spec), prepare(rgba, spec))


def test_prepare_refuses_float_pixels_with_a_clear_error():
    with pytest.raises(InputError, match="uint8"):
        prepare(np.zeros((20, 20, 3), np.float32), PreprocessSpec())


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_black():
    spec = PreprocessSpec(input_size=(40, 40), resize="letterbox")
    image = np.full((10, 40, 3), 200, np.uint8)
    out = resize_to_input(image, spec)
    assert out.shape == (40, 40, 3)
    assert out[0].max() == 0 and out[-1].max() == 0  # padding rows
    assert out[20].min() == 200


def test_spec_round_trips_through_preprocess_json(tmp_path):
    spec = PreprocessSpec(input_size=(192, 256), crop="roi", roi_margin=0.3,
                          class_names=("1", "2", "3", "4", "5"))
    path = spec.save(tmp_path / "preprocess.json")
    assert json.loads(path.read_text())["format_version"] == 1
    assert PreprocessSpec.load(path) == spec
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_loading_a_missing_preprocess_json_is_a_one_line_model_error(tmp_path):
    with pytest.raises(ModelError, match="file not found"):
        PreprocessSpec.load(tmp_path / "nope.json")


def test_loading_a_newer_preprocess_format_is_refused(tmp_path):
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps({**PreprocessSpec().to_dict(), "format_version": 99}))
    with pytest.raises(ModelError, match="format_version 99"):
        PreprocessSpec.load(path)


@pytest.mark.parametrize("change", [{"crop": "nodule"}, {"frame": "auto"}, {"resize": "zoom"},
                                    {"input_size": (4, 4)}, {"std": (0, 1, 1)}])
def test_invalid_spec_values_are_config_errors(change):
    with pytest.raises(ConfigError):
        PreprocessSpec(**change)


def test_unknown_keys_in_a_spec_are_refused():
    with pytest.raises(ConfigError, match="unknown key"):
        PreprocessSpec.from_dict({**PreprocessSpec().to_dict(), "flip": True})
