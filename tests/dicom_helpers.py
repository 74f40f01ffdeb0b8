"""Helpers shared by the DICOM and ingest tests (not a test module itself)."""

from __future__ import annotations

import functools
from pathlib import Path

import pydicom
from pydicom.datadict import keyword_for_tag

from eutirads.dicom.deidentify import is_well_known_uid

# Attributes whose text the profile keeps on purpose; their values are not identifying.
KEPT_TEXT = {"Manufacturer", "ManufacturerModelName", "CodeValue", "CodingSchemeDesignator",
             "CodeMeaning", "SpecificCharacterSet"}
TEXT_VRS = {"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "UC", "UI", "UR", "UT"}
# Times of day survive the whole-day date shift by design (Modified Dates option); coded
# strings are enumerated terms (CS), not free text.
NOT_IDENTIFYING_VRS = {"TM", "CS", "IS", "DS"}


@functools.lru_cache(maxsize=1)
def _local_test_files() -> dict[str, Path]:
    """pydicom's own test files and those of the pydicom-data package, by file name.
    Only installed files are listed: `get_testdata_files` would also try to download the
    ones that are not, which fails slowly without a network."""
    from pydicom.data import data_manager

    roots = [Path(data_manager.DATA_ROOT) / "test_files"]
    roots += [Path(source.data_path) for source in data_manager.external_data_sources().values()]
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".json", ".txt", ".gz", ".bz2"):
                files.setdefault(path.name, path)
    return files


def pydicom_file(name: str) -> Path:
    return _local_test_files()[name]


def ultrasound_test_files() -> list[Path]:
    """Every ultrasound file in pydicom's test data and the pydicom-data package."""
    found = []
    for name in sorted(str(p) for p in _local_test_files().values()):
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception:
            continue
        if ds.get("Modality") == "US" and "PixelData" in pydicom.dcmread(name):
            found.append(Path(name))
    return found


def _values(elem) -> list[str]:
    value = elem.value
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
        else [value]
    out = []
    for v in values:
        text = str(v).strip().strip("\0")
        out.append(text)
        if elem.VR == "PN":
            out.extend(part for part in text.replace("=", "^").split("^"))
    return [v for v in out if len(v) >= 4]


def identifying_values(ds) -> set[str]:
    """Every text value of `ds` (sequences included) that the profile must not let through:
    names, ids, dates, instance UIDs, addresses, descriptions, private values. Values also
    held by an attribute that is kept on purpose are left out."""
    found: set[str] = set()
    kept: set[str] = set()
    for elem in ds.iterall():
        keyword = keyword_for_tag(elem.tag)
        if elem.VR == "SQ" or elem.value is None:
            continue
        if elem.tag.is_private:
            if isinstance(elem.value, (str, bytes)):
                text = elem.value.decode("latin-1") if isinstance(elem.value, bytes) \
                    else elem.value
                found.update(t.strip("\0 ") for t in text.split("\\")
                             if len(t.strip("\0 ")) >= 4)
            continue
        if elem.VR in NOT_IDENTIFYING_VRS:
            kept.update(_values(elem))
            continue
        if elem.VR not in TEXT_VRS:
            continue
        values = _values(elem)
        if (keyword in KEPT_TEXT or elem.VR in NOT_IDENTIFYING_VRS or
                (elem.VR == "UI" and all(is_well_known_uid(v) for v in values))):
            kept.update(values)
        else:
            found.update(values)
    return found - kept


def text_of(ds) -> list[str]:
    """Every value in `ds`, sequences included, as text."""
    texts = []
    for elem in ds.iterall():
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        texts.append(str(elem.value))
    return texts


def raw_without_pixels(path: Path) -> bytes:
    """The file's bytes with the pixel data value cut out (pixel bytes may spell anything)."""
    raw = path.read_bytes()
    ds = pydicom.dcmread(path)
    if "PixelData" in ds:
        raw = raw.replace(ds.PixelData, b"")
    return raw


def deid_data_ultrasound_files() -> list[Path]:
    """The ultrasound files with burned-in text of the `deid-data` package (a test
    dependency); empty when it is not installed."""
    try:
        import deid_data
    except ImportError:
        return []
    return sorted((Path(deid_data.__file__).parent / "data" / "ultrasounds").glob("*.dcm"))


def external_ultrasound_files() -> list[Path]:
    """pydicom's, pydicom-data's and deid-data's ultrasound files."""
    return ultrasound_test_files() + deid_data_ultrasound_files()
