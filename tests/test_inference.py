"""The torch-free predictor: preprocessing identical to `preprocess.prepare`, heatmaps at
the input image's size mapped back through the crop, and overlays."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from eutirads.errors import ImageDecodeError, InputError
from eutirads.inference import (Predictor, category_name, class_activation_map, colorize,
                                heatmap_to_image, model_crop_box, overlay_heatmap)
from eutirads.preprocess import PreprocessSpec, crop_for_model, prepare
from eutirads.region import Box, crop

CLASSES = ("1", "2", "3", "4", "5")


def _frame(seed: int, height: int = 150, width: int = 200) -> np.ndarray:
    """A scanner-like frame: black screen, a textured image area, thin 'text' and a scale."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[20:135, 30:185] = rng.integers(40, 220, size=(115, 155, 1), dtype=np.uint8)
    frame[4:7, 5:70] = 255
    frame[30:120, 192:194] = 200
    return frame


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export import export_model
    from eutirads.models import create_model

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16)
    spec = PreprocessSpec(input_size=(64, 64), mean=(0.3,) * 3, std=(0.2,) * 3, crop="roi",
                          roi_margin=0.2, class_names=CLASSES)
    return export_model(model.eval(), spec, tmp_path_factory.mktemp("inf") / "bundle",
                        name="tiny", model_name="seed-cnn")


@pytest.mark.parametrize("crop_rule,box", [("full", None), ("roi", (60, 40, 120, 90)),
                                           ("roi", (0, 0, 300, 300)), ("roi", None)])
def test_the_crop_box_is_exactly_what_crop_for_model_keeps(crop_rule, box):
    spec = PreprocessSpec(crop=crop_rule, roi_margin=0.25)
    image = _frame(1)
    expected = crop_for_model(image, spec, box)
    assert np.array_equal(crop(image, model_crop_box(image, spec, box)), expected)


def test_the_crop_box_of_a_frame_without_border_is_the_whole_image():
    image = np.full((50, 60, 3), 128, np.uint8)
    assert model_crop_box(image, PreprocessSpec()) == Box(0, 0, 60, 50)


def test_predictor_input_equals_preprocess_prepare(bundle):
    predictor = Predictor(bundle)
    image = _frame(2)
    _, tensor, _ = predictor.prepare(image, box=(60, 40, 120, 90))
    np.testing.assert_array_equal(tensor, prepare(image, predictor.spec, (60, 40, 120, 90)))


def test_prediction_has_every_class_probability_and_a_heatmap_at_image_size(bundle):
    predictor = Predictor(bundle)
    image = _frame(3)
    result = predictor.predict(image, box=(60, 40, 120, 90))
    assert list(result.probabilities) == list(CLASSES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.name.startswith(f"EU-TIRADS {result.label}: ")
    heat = result.heatmap
    assert heat.shape == image.shape[:2] and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    x0, y0, x1, y1 = result.crop_box
    assert (x0, y0, x1, y1) == (48, 30, 132, 100)  # the box widened by 20% on each side
    outside = heat.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any(), "heat outside the crop the model saw"
    assert heat[y0:y1, x0:x1].max() > 0.5


def test_predictor_reads_paths_bytes_and_grey_arrays_alike(bundle, tmp_path):
    predictor = Predictor(bundle)
    grey = _frame(4)[..., 0]
    path = tmp_path / "scan.png"
    Image.fromarray(grey).save(path)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    results = [predictor.predict(x, heatmap=False) for x in (grey, path, buffer.getvalue())]
    assert results[0] == results[1] == results[2]
    assert results[0].heatmap is None


def test_a_corrupt_image_is_a_one_line_error_naming_the_file(bundle, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageDecodeError, match="broken.png"):
        Predictor(bundle).predict(bad)
    with pytest.raises(InputError, match="uint8"):
        Predictor(bundle).predict(np.zeros((10, 10, 3), np.float64))


def test_predictor_exposes_class_names_metadata_and_model_card(bundle):
    predictor = Predictor(bundle)
    assert predictor.class_names == list(CLASSES)
    assert predictor.metadata["name"] == "tiny" and len(predictor.metadata["version"]) == 12
    assert "Intended use" in predictor.model_card


def test_importing_and_predicting_never_imports_torch(bundle):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from eutirads.inference import Predictor, overlay_heatmap
        p = Predictor({str(bundle)!r})
        image = np.full((90, 120, 3), 100, np.uint8)
        r = p.predict(image)
        overlay_heatmap(image, r.heatmap, 0.5)
        assert r.heatmap.shape == (90, 120)
        assert 'torch' not in sys.modules, 'torch was imported'
        print('ok')
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _blas_threads_now() -> set[int]:
    from threadpoolctl import threadpool_info

    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_a_thread_limit_bounds_numpys_blas_while_predicting_and_is_lifted_after(
        bundle, monkeypatch):
    # onnxruntime's own threads are its option; numpy's BLAS would otherwise run a
    # prediction's small products on every core and leave those threads spinning.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        predictor = Predictor(bundle, threads=1)
        seen = []
        real = predictor._predict

        def spy(*args, **kwargs):
            seen.append(_blas_threads_now())
            return real(*args, **kwargs)

        monkeypatch.setattr(predictor, "_predict", spy)
        assert predictor.predict(_frame(3)).label in CLASSES
        assert seen == [{1}]
        assert _blas_threads_now() == {2}
        unlimited = Predictor(bundle)
        monkeypatch.setattr(unlimited, "_predict", spy)
        unlimited.predict(_frame(3))
        assert seen[-1] == {2}


def test_class_activation_map_weighs_channels_and_cuts_negative_evidence():
    features = np.zeros((2, 3, 3), np.float32)
    features[0, 0, 0] = 2.0   # channel 0 fires top-left
    features[1, 2, 2] = 1.0   # channel 1 fires bottom-right
    weight = np.array([[1.0, -1.0], [0.0, 3.0]], np.float32)
    cam0 = class_activation_map(features, weight, 0)
    assert cam0[0, 0] == 1.0 and cam0[2, 2] == 0.0
    cam1 = class_activation_map(features, weight, 1)
    assert cam1[2, 2] == 1.0 and cam1[0, 0] == 0.0
    assert not class_activation_map(features, -np.abs(weight), 1).any()


def test_letterbox_padding_is_removed_when_the_heatmap_is_mapped_back():
    spec = PreprocessSpec(input_size=(64, 64), resize="letterbox")
    box = Box(10, 20, 110, 70)  # 100x50 crop: letterboxed to 64x32 with 16 rows of padding
    cam = np.zeros((8, 8), np.float32)
    cam[2:6, :] = 1.0  # the non-padded band of the input
    heat = heatmap_to_image(cam, spec, box, (100, 150, 3))
    assert heat.shape == (100, 150)
    assert heat[20:70, 10:110].mean() > 0.9
    assert not heat[:20].any() and not heat[70:].any() and not heat[:, 110:].any()


def test_overlay_leaves_cold_pixels_untouched_and_paints_hot_ones():
    image = np.full((20, 30, 3), 90, np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[5:10, 5:10] = 1.0
    out = overlay_heatmap(image, heat, opacity=1.0)
    assert np.array_equal(out[15:, 15:], image[15:, 15:])
    assert np.array_equal(out[5:10, 5:10], colorize(heat)[5:10, 5:10])
    with pytest.raises(InputError, match="does not match"):
        overlay_heatmap(image, heat[:10], 0.5)
    with pytest.raises(InputError, match="opacity"):
        overlay_heatmap(image, heat, 1.5)


def test_category_names_follow_the_model_scheme():
    assert category_name("5", CLASSES) == "EU-TIRADS 5: High risk"
    assert category_name("5", ["2", "3", "4a", "4b", "4c", "5"]) == "TI-RADS 5"


@pytest.mark.ddti
def test_real_ddti_frames_get_heatmaps_inside_their_image_area(bundle, ddti_dir):
    from eutirads.imageio import load_rgb
    from eutirads.region import find_image_area

    predictor = Predictor(bundle)
    images = sorted((ddti_dir / "raw_jpg").glob("*.jpg"))[:3]
    assert images, "no DDTI image found"
    for path in images:
        pixels = load_rgb(path)
        area = find_image_area(pixels)
        # The nodule box must lie inside the image area; any box there will do for the test.
        box = (area.x0 + 20, area.y0 + 20, area.x0 + 120, area.y0 + 90)
        result = predictor.predict(pixels, box=box)
        assert result.heatmap.shape == pixels.shape[:2] == (360, 560)
        x0, y0, x1, y1 = result.crop_box
        assert area.x0 <= x0 and area.y0 <= y0 and x1 <= area.x1 and y1 <= area.y1
        # Burned-in text outside the image area never gets heat.
        assert not result.heatmap[:area.y0].any() and not result.heatmap[:, area.x1:].any()


def test_a_broken_dicom_is_a_one_line_error_naming_the_file(tmp_path):
    from eutirads.inference import load_image

    broken = tmp_path / "exam.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00")
    with pytest.raises(ImageDecodeError, match=r"exam\.dcm: ") as info:
        load_image(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(ImageDecodeError, match="file not found"):
        load_image(tmp_path / "missing.png")
