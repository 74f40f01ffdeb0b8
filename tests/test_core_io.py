import io

import numpy as np
import pytest
from PIL import Image

from eutirads.data.manifest import image_path, read_manifest, row_bbox, write_manifest
from eutirads.errors import ImageDecodeError, ManifestError
from eutirads.imageio import load_gray, open_image
from eutirads.region import find_image_area


def _png_bytes(width, height):
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_manifest_round_trip_keeps_extra_columns(tmp_path):
    rows = [{"path": "a.png", "label": "3", "patient_id": "p1", "notes": "x"}]
    write_manifest(tmp_path, rows)
    back = read_manifest(tmp_path)
    assert back[0]["notes"] == "x" and back[0]["split"] == "" and back[0]["label"] == "3"


def test_manifest_without_path_column_is_refused_naming_the_file(tmp_path):
    (tmp_path / "manifest.csv").write_text("label\n3\n")
    with pytest.raises(ManifestError, match="manifest.csv: missing column"):
        read_manifest(tmp_path)


def test_manifest_path_cannot_leave_the_dataset(tmp_path):
    with pytest.raises(ManifestError, match="leaves the dataset"):
        image_path(tmp_path, {"path": "../../etc/passwd"})


def test_bbox_is_read_when_complete():
    assert row_bbox({"x0": "1", "y0": "2", "x1": "30", "y1": "40"}) == (1, 2, 30, 40)
    assert row_bbox({"x0": "", "y0": "2", "x1": "30", "y1": "40"}) is None


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="too large"):
        open_image(_png_bytes(4000, 4000), max_pixels=1_000_000, name="upload")


def test_truncated_image_is_refused_with_its_name():
    data = _png_bytes(64, 64)[:60]
    with pytest.raises(ImageDecodeError, match="^upload: "):
        open_image(data, name="upload")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageDecodeError, match="notes.png: not an image"):
        load_gray(path)


def test_image_area_excludes_text_around_it():
    rng = np.random.default_rng(0)
    frame = np.zeros((360, 560), np.uint8)
    frame[40:320, 100:460] = rng.integers(30, 220, (280, 360))
    frame[5:15, 10:200] = 255  # a line of burned-in text above the image
    frame[100:200, 500:506] = 200  # a grey scale bar on the side
    box = find_image_area(frame)
    assert (box.x0, box.y0, box.x1, box.y1) == (100, 40, 460, 320)


def test_image_area_on_real_ddti_frames_leaves_the_side_text_out(ddti_dir):
    frame = load_gray(ddti_dir / "raw_jpg" / "1_1.jpg")
    box = find_image_area(frame)
    # the settings column ("P100", "12L6" ...) sits right of x=490 on this scanner's screen
    assert box.x1 < 490 and box.width > 250 and box.height > 250


def test_truncated_images_stay_refused_after_the_pdf_report_loads_weasyprint():
    # WeasyPrint flips Pillow's global LOAD_TRUNCATED_IMAGES on import; decoding must stay
    # strict anyway, or every upload check after the first PDF accepts truncated files.
    import importlib.util

    if importlib.util.find_spec("weasyprint") is None:  # not importorskip: that imports it
        pytest.skip("WeasyPrint is not installed")
    from eutirads.web.diagnosis.report import load_weasyprint

    load_weasyprint()
    with pytest.raises(ImageDecodeError, match="^upload: "):
        open_image(_png_bytes(64, 64)[:60], name="upload")
