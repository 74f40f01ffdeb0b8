"""Decoding, regions, keys and the profile: the pure parts of DICOM ingest."""

from __future__ import annotations

import os
import stat

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_helpers import pydicom_file
from eutirads.dicom import profile
from eutirads.dicom.keys import Keyring, load_or_create_key, shift_date, shift_datetime
from eutirads.dicom.pixels import spacing_of, ultrasound_regions
from eutirads.frame import clean_pixels
from eutirads.dicom.reading import (decode_frames, frame_info, read_dataset,
                                    select_frames)
from eutirads.errors import ConfigError, ImageDecodeError


def _decode(name: str, frames: str = "all") -> list[np.ndarray]:
    ds = read_dataset(pydicom_file(name).read_bytes())
    info = frame_info(ds)
    return [array for _, array in decode_frames(ds, info, select_frames(info.frames, frames))]


# --- decoding against references -----------------------------------------------------

def test_lossless_jpeg2000_decodes_exactly_like_its_uncompressed_twin():
    assert np.array_equal(_decode("US1_J2KR.dcm")[0], _decode("US1_UNCR.dcm")[0])


def test_lossy_jpeg2000_stays_close_to_its_uncompressed_twin():
    lossy, plain = _decode("US1_J2KI.dcm")[0], _decode("US1_UNCI.dcm")[0]
    assert np.abs(lossy.astype(int) - plain.astype(int)).mean() < 3


# YBR <-> RGB rounding costs a few levels; the dcmtk "n1"/"np" files are also JPEG-coded
# at reduced quality, so their colour-bar edges ring (mean error still under 3 levels).
@pytest.mark.parametrize("name, mean, worst", [
    ("SC_ybr_full_uncompressed.dcm", 1, 8), ("SC_ybr_full_422_uncompressed.dcm", 1, 8),
    ("SC_rgb_jpeg_dcmtk.dcm", 1, 8), ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 1, 8),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 3, 80), ("SC_rgb_dcmtk_+eb+cy+np.dcm", 3, 80)])
def test_ybr_images_decode_to_rgb_within_jpeg_tolerance(name, mean, worst):
    ybr, rgb = _decode(name)[0], _decode("SC_rgb.dcm")[0]
    assert ybr.shape == rgb.shape == (100, 100, 3)
    difference = np.abs(ybr.astype(int) - rgb.astype(int))
    assert difference.mean() < mean and difference.max() <= worst
    assert np.median(difference) == 0


@pytest.mark.parametrize("name", ["SC_rgb_expb.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "SC_rgb_gdcm2k_uncompressed.dcm"])
def test_lossless_transfer_syntaxes_decode_exactly(name):
    assert np.array_equal(_decode(name)[0], _decode("SC_rgb.dcm")[0])


@pytest.mark.parametrize("name", [
    "image_dfl.dcm",                     # deflated explicit VR little endian
    "ExplVR_BigEnd.dcm",                 # explicit VR big endian
    "JPEG-LL.dcm",                       # JPEG lossless
    "JPGLosslessP14SV1_1s_1f_8b.dcm",    # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",     # JPEG-LS
    "US1_J2KR.dcm",                      # JPEG 2000 lossless
    "SC_rgb_rle_16bit.dcm",              # RLE, 16-bit colour
    "color3d_jpeg_baseline.dcm",         # JPEG baseline YBR_FULL_422 cine
])
def test_every_common_transfer_syntax_decodes_to_eight_bit_display_pixels(name):
    frame = _decode(name, "first")[0]
    assert frame.dtype == np.uint8 and frame.ndim in (2, 3) and frame.max() > frame.min()


def test_twelve_bit_jpeg_extended_is_refused_with_the_decoders_reason():
    # Neither pylibjpeg nor the PyPI build of GDCM decodes 12-bit JPEG Extended (pydicom's
    # JPEG-lossy.dcm); ultrasound is 8-bit, and such a file is quarantined, not guessed at.
    with pytest.raises(ImageDecodeError, match="cannot be decoded.*12-bit") as caught:
        _decode("JPEG-lossy.dcm", "first")
    assert "\n" not in str(caught.value)


def test_palette_colour_decodes_the_same_in_every_transfer_syntax():
    reference = _decode("OBXXXX1A.dcm")[0]
    assert reference.shape == (600, 800, 3) and reference.dtype == np.uint8
    for name in ("OBXXXX1A_expb.dcm", "OBXXXX1A_rle.dcm"):
        assert np.array_equal(_decode(name)[0], reference)


def test_sixteen_bit_palette_becomes_eight_bit_colour():
    frame = _decode("gdcm-US-ALOKA-16.dcm")[0]
    assert frame.dtype == np.uint8 and frame.shape == (480, 640, 3) and frame.max() > 100


def test_jpeg_ls_lossless_matches_the_uncompressed_image():
    assert np.array_equal(_decode("MR_small_jpeg_ls_lossless.dcm")[0], _decode("MR_small.dcm")[0])


def test_multiframe_cine_gives_all_first_or_every_nth_frame():
    frames = _decode("examples_ybr_color.dcm")
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3)
    assert len(_decode("examples_ybr_color.dcm", "first")) == 1
    assert select_frames(30, 4) == [0, 4, 8, 12, 16, 20, 24, 28]
    every_tenth = _decode("examples_ybr_color.dcm", 10)
    assert [f.tobytes() for f in every_tenth] == [frames[i].tobytes() for i in (0, 10, 20)]


def test_monochrome1_is_inverted_to_display_grey():
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    array = np.array([[0, 1000], [2000, 4095]], np.uint16).repeat(8, 0).repeat(8, 1)
    ds.set_pixel_data(array, "MONOCHROME1", 12)
    ds.PhotometricInterpretation = "MONOCHROME1"
    frame = next(decode_frames(ds, frame_info(ds), [0]))[1]
    assert frame.dtype == np.uint8 and frame[0, 0] == 255 and frame[-1, -1] == 0


def test_declared_size_over_the_limit_is_refused_before_decoding():
    ds = read_dataset(pydicom_file("OBXXXX1A.dcm").read_bytes())
    ds.NumberOfFrames = 10_000_000
    with pytest.raises(ImageDecodeError, match="declared image too large"):
        frame_info(ds)
    with pytest.raises(ImageDecodeError, match="declared image too large"):
        frame_info(read_dataset(pydicom_file("OBXXXX1A.dcm").read_bytes()),
                   max_bytes=1000)


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it():
    import zlib

    data = pydicom_file("image_dfl.dcm").read_bytes()
    assert read_dataset(data, max_bytes=10_000_000) is not None
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = data[:meta_end] + packer.compress(b"\0" * 50_000_000) + packer.flush()
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError, match="inflates beyond the limit"):
        read_dataset(bomb, max_bytes=10_000_000)


def test_non_dicom_bytes_are_refused_with_a_reason():
    with pytest.raises(ImageDecodeError, match="not a DICOM file"):
        read_dataset(b"just some text that is long enough" * 10)


# --- ultrasound regions --------------------------------------------------------------

def _with_regions(*boxes, fmt=1, units=3, delta=0.02):
    ds = Dataset()
    items = []
    for x0, y0, x1, y1 in boxes:
        item = Dataset()
        item.RegionSpatialFormat = fmt
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = units
        item.PhysicalDeltaX = item.PhysicalDeltaY = delta
        items.append(item)
    ds.SequenceOfUltrasoundRegions = Sequence(items)
    return ds


def test_region_max_corner_is_inclusive_and_spacing_turns_cm_into_mm():
    regions, problems = ultrasound_regions(_with_regions((10, 20, 59, 79)), 100, 100)
    assert not problems and regions[0].box == (10, 20, 60, 80)
    assert spacing_of(regions) == (0.2, 0.2)


def test_regions_that_exceed_the_image_are_clamped():
    regions, _ = ultrasound_regions(_with_regions((10, 20, 500, 900)), 100, 120)
    assert regions[0].box == (10, 20, 120, 100)


@pytest.mark.parametrize("box, reason", [((10, 10, 10, 50), "zero size"),
                                         ((50, 10, 20, 60), "inverted"),
                                         ((500, 10, 600, 60), "outside")])
def test_zero_inverted_and_out_of_bounds_regions_are_refused_with_a_reason(box, reason):
    regions, problems = ultrasound_regions(_with_regions(box), 100, 120)
    assert regions == [] and reason in problems[0]


def test_only_2d_regions_count_and_their_union_is_kept():
    ds = _with_regions((0, 0, 39, 39), (60, 0, 99, 39))
    ds.SequenceOfUltrasoundRegions.append(_with_regions((0, 50, 99, 59), fmt=3)
                                          .SequenceOfUltrasoundRegions[0])
    regions, _ = ultrasound_regions(ds, 60, 100)
    assert len(regions) == 2
    frame = np.full((60, 100, 3), 200, np.uint8)
    clean = clean_pixels(frame, regions=regions)
    blanked, cropped = clean.blanked, clean.pixels
    assert cropped.shape == (40, 100, 3)
    assert not blanked[:, 40:60].any() and not blanked[40:].any()  # gap and Doppler strip
    assert (blanked[:40, :40] == 200).all() and (blanked[:40, 60:] == 200).all()


def test_a_file_without_regions_says_so():
    assert ultrasound_regions(Dataset(), 10, 10) == ([], ["no SequenceOfUltrasoundRegions"])


# --- keys, pseudonyms, UIDs, dates ----------------------------------------------------

def test_key_file_is_created_readable_by_its_owner_only_and_reused(tmp_path):
    path = tmp_path / "sub" / "key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_or_create_key(path) == key


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_key(path)


def test_same_key_gives_same_uids_and_another_key_unrelated_ones():
    one, same, other = Keyring(b"a" * 32), Keyring(b"a" * 32), Keyring(b"b" * 32)
    uid = "1.2.840.113619.2.1.1.322987881.621.736170080.681"
    assert one.uid(uid) == same.uid(uid) != other.uid(uid)
    assert one.uid(uid).startswith("2.25.") and len(one.uid(uid)) <= 64
    assert one.uid(uid) != one.uid(uid + "1")
    assert one.pseudonym("id:|123") == same.pseudonym("id:|123") != other.pseudonym("id:|123")


def test_dates_shift_by_whole_days_keeping_time_and_precision():
    assert shift_date("20200301", -1) == "20200229"
    assert shift_date("202003", -40) == "202002"
    assert shift_datetime("20200301120000.5+0100", -1) == "20200229120000.5+0100"
    assert shift_date("not a date", -1) is None
    shift = Keyring(b"k" * 32).date_shift_days("id:|42")
    assert -3652 <= shift <= -366 and shift == Keyring(b"k" * 32).date_shift_days("id:|42")


def test_the_profile_names_only_real_attributes_and_covers_the_identity_core():
    assert profile.UNKNOWN_TABLE_KEYWORDS == ()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
                    "ReferringPhysicianName", "AccessionNumber", "StudyDescription",
                    "OperatorsName", "StationName", "DeviceSerialNumber", "OtherPatientIDs"):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert profile.rule_for(pydicom.tag.Tag(tag), pydicom.datadict.dictionary_VR(tag)) \
            in ("X", "Z", "D", "P", "CZ")


def test_catch_all_rules_cover_what_the_table_does_not_list():
    tag = pydicom.tag.Tag
    assert profile.rule_for(tag(0x0009, 0x1001), "LO") == "X"  # private
    assert profile.rule_for(tag(0x6000, 0x3000), "OW") == "X"  # overlay
    assert profile.rule_for(tag(0x5000, 0x3000), "OW") == "X"  # curve
    assert profile.rule_for(tag(0x0088, 0x0200), "SQ") == "X"  # icon image
    assert profile.rule_for(tag(0x0040, 0xA123), "PN") == "D"  # a person's name (table: D)
    assert profile.rule_for(tag(0x0008, 0x1150), "UI") == "K"  # referenced SOP class
    assert profile.rule_for(tag(0x0008, 0x1155), "UI") == "U"  # referenced instance
    assert profile.rule_for(tag(0x0018, 0x6011), "SQ") == "S"  # regions: walked, kept
    assert profile.rule_for(tag(0x0028, 0x0010), "US") == "K"  # rows
