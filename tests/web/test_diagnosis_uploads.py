"""Upload checking (pure library code): each bad upload is refused with a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from eutirads.inference.uploads import UploadError, clean_upload

import diagnosis_samples as samples


def _reencoded_is_fresh_png(clean) -> bool:
    image = Image.open(io.BytesIO(clean.png))
    return image.format == "PNG" and image.size == (clean.width, clean.height) and not image.text


def test_a_png_upload_is_decoded_and_reencoded_as_a_fresh_png():
    pixels = samples.ultrasound_like()
    clean = clean_upload(samples.png_bytes(pixels), "scan.png")
    assert clean.kind == "png"
    assert np.array_equal(clean.pixels, pixels)
    assert _reencoded_is_fresh_png(clean)


def test_a_jpeg_upload_is_accepted_with_either_jpeg_extension():
    for name in ("scan.jpg", "SCAN.JPEG"):
        clean = clean_upload(samples.jpeg_bytes(), name)
        assert clean.kind == "jpeg" and (clean.width, clean.height) == (160, 120)


def test_a_jpeg_with_exif_and_a_thumbnail_is_not_mistaken_for_a_polyglot():
    exif = Image.Exif()
    exif[0x010E] = "fictitious description"
    clean = clean_upload(samples.jpeg_bytes(exif=exif.tobytes(), progressive=True), "a.jpg")
    assert clean.kind == "jpeg"


def test_a_sixteen_bit_png_is_scaled_not_clipped():
    values = (np.arange(120 * 160, dtype=np.uint16).reshape(120, 160) * 3)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    clean = clean_upload(buffer.getvalue(), "a.png")
    assert clean.pixels.max() == 255 and clean.pixels.min() == 0


def test_a_dicom_upload_keeps_only_pixels_and_its_spacing_in_mm():
    clean = clean_upload(samples.dicom_bytes(spacing_cm=0.01), "IMG0001")
    assert clean.kind == "dicom"
    assert clean.mm_per_pixel == pytest.approx(0.1)
    assert b"Fictitious" not in clean.png and b"TEST-0000" not in clean.png
    # the image area is cropped: the black screen border around the speckle block is gone
    assert (clean.width, clean.height) == (180, 130)


def test_an_rgb_dicom_without_spacing_has_no_scale():
    clean = clean_upload(samples.dicom_bytes(rgb=True, spacing_cm=None), "x.dcm")
    assert clean.mm_per_pixel is None and clean.pixels.shape[2] == 3


BAD_UPLOADS = {
    "not an image": (b"just some text, nothing else\n" * 10, "notes.png", "not an image"),
    "an html page": (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "a.png",
                     "HTML or script"),
    "an empty file": (b"", "a.png", "empty upload"),
    "a png named .jpg": (samples.png_bytes(), "scan.jpg", "wrong extension: .jpg"),
    "a jpeg named .exe": (samples.jpeg_bytes(), "scan.exe", "wrong extension: .exe"),
    "a truncated jpeg": (samples.jpeg_bytes()[:900], "a.jpg", "truncated"),
    "a truncated png": (samples.png_bytes()[:500], "a.png", "truncated"),
    "a truncated dicom": (samples.dicom_bytes(truncate=2000), "a.dcm", "DICOM"),
    "a decompression bomb": (samples.png_bomb(), "a.png", "too large"),
    "a dicom declaring a huge image": (samples.dicom_bytes(declared=(60000, 60000)), "a.dcm",
                                       "too large"),
    "an animated png": (samples.animated_png(), "a.png", "animated"),
    "an animated gif": (samples.gif_animation(), "a.gif", "unsupported file type GIF"),
    "a multi-frame dicom": (samples.dicom_bytes(frames=3), "a.dcm", "multi-frame"),
    "a jpeg with a zip appended": (samples.jpeg_bytes() + samples.zip_bytes(), "a.jpg",
                                   "extra data after the image"),
    "a png with html appended": (samples.png_bytes() + b"<html><script>x</script>", "a.png",
                                 "extra data after the image"),
    "a png with a script in a text chunk": (samples.png_with_text(b"<script>alert(1)</script>"),
                                            "a.png", "HTML or script"),
    "a jpeg with a script in its comment": (samples.jpeg_bytes(comment=b"<svg onload=alert(1)>"),
                                            "a.jpg", "HTML or script"),
    "a zip archive": (samples.zip_bytes(), "a.png", "unsupported file type ZIP"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_each_bad_upload_is_refused_with_a_clear_one_line_reason(case):
    data, name, reason = BAD_UPLOADS[case]
    with pytest.raises(UploadError) as caught:
        clean_upload(data, name)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert 400 <= caught.value.status < 500


def test_an_upload_over_the_size_limit_is_refused_with_413():
    with pytest.raises(UploadError, match="upload too large") as caught:
        clean_upload(samples.png_bytes(), "a.png", max_bytes=1000)
    assert caught.value.status == 413


def test_a_refusal_never_repeats_the_uploads_file_name():
    with pytest.raises(UploadError) as caught:
        clean_upload(samples.png_bytes(), "Doe_Jane_1970-01-01.jpg")
    assert "Doe" not in str(caught.value) and "1970" not in str(caught.value)
