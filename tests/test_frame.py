"""The one clean-frame rule (`eutirads.frame`) and the region finder that cannot pick a
text band, tested on derived files: the real ultrasound files of pydicom's data,
`pydicom-data` and `deid-data` with their SequenceOfUltrasoundRegions deleted, as DICOM
and rendered to PNG and JPEG (issue 11, items 1, 2, 6 and 8)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont

from eutirads.dicom.pixels import ultrasound_regions, union_box
from eutirads.dicom.reading import decode_frames, frame_info, read_dataset
from eutirads.errors import InputError, NoImageAreaError
from eutirads.frame import clean_frame, clean_pixels
from eutirads.ocr import find_text_boxes, tesseract_available

from dicom_helpers import external_ultrasound_files
from model_helpers import tiny_bundle as build_tiny_bundle

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _with_regions(path: Path):
    """(first frame, union box of the declared regions) of a file that declares them."""
    ds = read_dataset(path.read_bytes())
    info = frame_info(ds)
    _, frame = next(decode_frames(ds, info, [0]))
    regions, _ = ultrasound_regions(ds, info.rows, info.columns)
    return ds, frame, (union_box(regions) if regions else None)


def _derived_cases():
    cases = []
    for path in external_ultrasound_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SequenceOfUltrasoundRegions" in ds:
            for kind in ("dicom", "png", "jpeg"):
                cases.append(pytest.param(path, kind, id=f"{path.name}-{kind}"))
    return cases


def _without_regions(path: Path, kind: str) -> bytes:
    ds = pydicom.dcmread(path)
    if kind == "dicom":
        del ds.SequenceOfUltrasoundRegions
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    _, frame, _ = _with_regions(path)
    buffer = io.BytesIO()
    Image.fromarray(frame).convert("RGB").save(buffer, format=kind.upper())
    return buffer.getvalue()


@pytest.mark.parametrize("path,kind", _derived_cases())
def test_a_file_without_regions_never_yields_the_text_band_as_its_image(path, kind):
    _, _, truth = _with_regions(path)
    try:
        clean = clean_frame(_without_regions(path, kind), name="derived")
    except NoImageAreaError:
        return  # refused (ingest quarantines it as no-region): nothing leaks
    box = clean.area_box
    # The area lies inside the scanner's declared image region (the banners and side
    # columns of text are outside it), and it is no band.
    ix0, iy0 = max(box.x0, truth.x0), max(box.y0, truth.y0)
    ix1, iy1 = min(box.x1, truth.x1), min(box.y1, truth.y1)
    inside = max(0, ix1 - ix0) * max(0, iy1 - iy0)
    assert inside >= 0.9 * box.width * box.height, (tuple(box), tuple(truth))
    assert box.height >= 0.15 * clean.blanked.shape[0]
    assert box.width / box.height <= 4
    assert not clean.blanked[:box.y0].any() and not clean.blanked[box.y1:].any()


def test_a_frame_of_text_lines_and_a_flat_banner_has_no_image_area():
    frame = np.zeros((600, 800, 3), np.uint8)
    frame[:60] = (40, 60, 110)  # a solid patient banner, as wide as the screen
    draw = ImageDraw.Draw(image := Image.fromarray(frame))
    font = ImageFont.truetype(FONT, 22)
    draw.text((10, 15), "DOE^JANE  ID 12345678  01/02/2023", fill=(255, 255, 255), font=font)
    for row in range(100, 560, 30):
        draw.text((10, row), "Gen 60 C5-1 28Hz 11cm", fill=(230, 230, 230), font=font)
    with pytest.raises(NoImageAreaError):
        clean_frame(np.asarray(image))
    assert issubclass(NoImageAreaError, InputError)


def _speckle_with_name(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A phantom image area with a name burned in, and the mask of the name's pixels."""
    from eutirads.phantom.dataset import render_example
    from eutirads.region import crop

    example = render_example(7, seed, width=640, height=480)
    area = crop(example.screen, example.image_box).copy()
    image = Image.fromarray(area)
    rng = np.random.default_rng(seed)
    x, y = int(rng.integers(5, area.shape[1] - 230)), int(rng.integers(5, area.shape[0] - 30))
    mask = Image.new("L", image.size, 0)
    for target in (image, mask):
        ImageDraw.Draw(target).text((x, y), "DOE^JANE 1234567", fill=235,
                                    font=ImageFont.truetype(FONT, 16))
    return np.asarray(image), np.asarray(mask) > 0


@pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract-ocr is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_a_name_burned_inside_the_image_area_is_redacted(seed):
    pixels, name = _speckle_with_name(seed)
    clean = clean_pixels(pixels, redact_text=True)
    assert clean.checked_for_text and clean.text_boxes_redacted >= 1
    assert clean.area_box == (0, 0, pixels.shape[1], pixels.shape[0])
    assert not clean.pixels[name].any()  # every pixel of the name is blanked
    assert find_text_boxes(clean.pixels) == []
    plain = clean_pixels(pixels)
    assert not plain.checked_for_text and plain.text_boxes_redacted == 0
    assert (plain.pixels[name] > 200).mean() > 0.3  # without the check it stays


def test_speckle_alone_is_not_taken_for_text():
    from eutirads.phantom.dataset import render_example
    from eutirads.region import crop

    for patient in range(6):
        example = render_example(11, patient, width=640, height=480)
        assert find_text_boxes(crop(example.screen, example.image_box)) == []


def _phantom_dicom_without_regions(tmp_path) -> tuple[Path, int]:
    from eutirads.phantom import generate_dicom

    generate_dicom(tmp_path / "dcm", n=1, seed=3, progress=False, workers=1)
    path = next((tmp_path / "dcm").rglob("*.dcm"))
    ds = pydicom.dcmread(path)
    top = int(ds.SequenceOfUltrasoundRegions[0].RegionLocationMinY0)
    del ds.SequenceOfUltrasoundRegions
    ds.save_as(path)
    return path, top


def test_predict_loads_a_dicom_without_regions_without_its_banner(tmp_path):
    from eutirads.inference import load_image

    path, top = _phantom_dicom_without_regions(tmp_path)
    pixels = load_image(path)
    ds = pydicom.dcmread(path)
    assert pixels.shape[:2] == (ds.Rows, ds.Columns)  # coordinates unchanged
    assert not pixels[:top].any()  # the banner with the patient's name is blank


def test_dataset_import_blanks_outside_the_image_area_and_says_so(tmp_path):
    from eutirads.data.importers import import_dataset
    from eutirads.phantom.dataset import render_example

    src = tmp_path / "src" / "3"
    src.mkdir(parents=True)
    example = render_example(5, 0, width=640, height=480)
    Image.fromarray(example.screen).save(src / "a.png")
    report = import_dataset(tmp_path / "src", tmp_path / "ds", fmt="folders", progress=False)
    assert report.blanked == 1 and "blanked outside the ultrasound area" in report.summary_line()
    out = np.asarray(Image.open(tmp_path / "ds" / "images" / "3" / "a.png"))
    assert out.shape == example.screen.shape  # same size: boxes and masks still fit
    box = example.image_box
    assert not out[:box.y0].any() and not out[:, :box.x0].any()  # banner, settings column
    assert (out[box.y0 + 5:box.y1 - 5, box.x0 + 5:box.x1 - 5] ==
            example.screen[box.y0 + 5:box.y1 - 5, box.x0 + 5:box.x1 - 5]).mean() > 0.99


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle")


def test_predict_abstains_on_a_source_without_an_ultrasound_area(tiny_bundle, tmp_path,
                                                                 capsys):
    import json

    from eutirads.cli import main

    text_only = np.zeros((300, 400, 3), np.uint8)
    image = Image.fromarray(text_only)
    ImageDraw.Draw(image).text((10, 10), "DOE^JANE 12345", fill=(255, 255, 255),
                               font=ImageFont.truetype(FONT, 20))
    image.save(tmp_path / "screen.png")
    code = main(["predict", str(tiny_bundle), str(tmp_path / "screen.png"), "--json"])
    out = capsys.readouterr()
    entry = json.loads(out.out)["predictions"][0]
    assert code == 0 and entry["abstain"] is True
    assert entry["abstain_reason"] == "no-ultrasound-area" and entry["label"] is None
    assert "DOE" not in out.out + out.err


def test_a_screenshot_upload_is_blanked_outside_its_image_area():
    from eutirads.inference.uploads import clean_upload
    from eutirads.phantom.dataset import render_example

    example = render_example(6, 1, width=640, height=480)
    buffer = io.BytesIO()
    Image.fromarray(example.screen).save(buffer, format="PNG")
    clean = clean_upload(buffer.getvalue(), "screen.png")
    box = example.image_box
    assert clean.pixels.shape[:2] == example.screen.shape  # a drawn box still fits
    assert example.screen[:box.y0].any() and not clean.pixels[:box.y0].any()  # banner
    assert clean.pixels[box.y0 + 5:box.y1 - 5, box.x0 + 5:box.x1 - 5].any()
