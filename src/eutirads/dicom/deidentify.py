"""Tag de-identification: apply the PS3.15 Annex E profile (see `profile`) to a dataset.

`deidentify_dataset` walks every element, including those inside sequences, and removes,
empties, remaps or shifts it as the profile says; then it writes the pseudonym and the
de-identification attributes. `mark_pixels_cleaned` is called separately, only after the
pixels were actually cleaned, because only then may BurnedInAnnotation say NO.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from ..errors import InputError
from . import profile
from .keys import Keyring, shift_date, shift_datetime
from .reading import MAX_SEQUENCE_DEPTH

__all__ = ["Identity", "identity_of", "deidentify_dataset", "mark_pixels_cleaned",
           "DeidentifyError", "MAX_SEQUENCE_DEPTH", "is_well_known_uid"]



class DeidentifyError(InputError):
    """The dataset cannot be de-identified safely."""


@dataclass(frozen=True)
class Identity:
    """Pseudonymous identity of one file (what the manifest records)."""

    patient_id: str
    study_id: str
    series_id: str
    date_shift_days: int


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # a malformed value is treated as absent
        return ""
    return str(value or "").strip()


def identity_of(ds: Dataset, keyring: Keyring, *, fallback: str) -> Identity:
    """Keyed pseudonyms for the patient, study and series of `ds` (call before de-identifying).

    The patient is the PatientID (with its issuer); a file without one falls back to name
    and birth date, then to its study, then to `fallback` (the source file's hash), so
    nothing is ever merged by accident into one 'unknown' patient.
    """
    patient_id = _text(ds, "PatientID")
    if patient_id:
        patient = f"id:{_text(ds, 'IssuerOfPatientID')}|{patient_id}"
    elif _text(ds, "PatientName"):
        patient = f"name:{_text(ds, 'PatientName')}|{_text(ds, 'PatientBirthDate')}"
    elif _text(ds, "StudyInstanceUID"):
        patient = f"study:{_text(ds, 'StudyInstanceUID')}"
    else:
        patient = f"file:{fallback}"
    study = _text(ds, "StudyInstanceUID") or f"file:{fallback}"
    series = _text(ds, "SeriesInstanceUID") or f"file:{fallback}"
    return Identity(patient_id=keyring.pseudonym(patient),
                    study_id=keyring.short_id("study", study, "S"),
                    series_id=keyring.short_id("series", series, "E"),
                    date_shift_days=keyring.date_shift_days(patient))


def is_well_known_uid(value: str) -> bool:
    """True for UIDs the standard itself defines (SOP classes, transfer syntaxes, ...)."""
    from pydicom._uid_dict import UID_dictionary  # the standard's registry (PS3.6 Annex A)

    return value in UID_dictionary


def _remap_uid(value: str, keyring: Keyring) -> str:
    value = str(value).strip().rstrip("\0")
    if not value or is_well_known_uid(value):
        return value
    return keyring.uid(value)


def _shift(vr: str, value: str, days: int) -> str | None:
    if vr == "DA":
        return shift_date(value, days)
    if vr == "DT":
        return shift_datetime(value, days)
    return value  # TM: whole-day shifts leave times of day as they are


def _map_values(value, function):
    """Apply `function` to each value of a possibly multi-valued element; None drops it."""
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    mapped = [function(str(v)) for v in values if str(v).strip()]
    if any(m is None for m in mapped):
        return None
    return mapped[0] if len(mapped) == 1 else mapped


# Dummy values (action D) by VR: obviously not real, valid for the VR.
_DUMMY = {"PN": "ANONYMIZED", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED",
          "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED",
          "AE": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
          "IS": "0", "DS": "0", "AS": "000D"}


def _walk(ds: Dataset, keyring: Keyring, identity: Identity, depth: int,
          parent: str | None = None) -> None:
    if depth > MAX_SEQUENCE_DEPTH:
        raise DeidentifyError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
    for tag in list(ds.keys()):
        # Decide from the tag alone first: a private or unknown element is removed without
        # ever decoding its value.
        raw_vr = getattr(ds.get_item(tag), "VR", None) or profile.dictionary_vr(tag)
        if profile.rule_for(tag, str(raw_vr), parent) == "X":
            del ds[tag]
            continue
        try:
            elem = ds[tag]
        except Exception:  # a value that does not decode cannot be vetted
            del ds[tag]
            continue
        vr = str(elem.VR)
        action = profile.rule_for(tag, vr, parent)  # the VR may be known only after decoding
        _apply(ds, tag, elem, vr, action, keyring, identity, depth)


def _apply(ds: Dataset, tag, elem, vr: str, action: str, keyring: Keyring,
           identity: Identity, depth: int) -> None:
    """Apply one action code (profile's docstring) to one element of `ds`."""
    if action == "X":
        del ds[tag]
    elif action == "S":
        for item in elem.value:  # a kept sequence: its items get the same treatment
            _walk(item, keyring, identity, depth + 1, elem.keyword)
    elif action == "Z":
        elem.value = Sequence() if vr == "SQ" else None
    elif action == "P":
        elem.value = identity.patient_id
    elif action == "K" or elem.value is None or elem.value == "":
        return
    elif action == "D":
        if vr not in _DUMMY:
            del ds[tag]  # binary or other values: nothing sensible to make up
        else:
            elem.value = _DUMMY[vr]
    elif action == "U":
        if vr != "UI":
            elem.value = None
            return
        elem.value = _map_values(elem.value, lambda v: _remap_uid(v, keyring)) or ""
    elif action in ("C", "CZ"):
        shifted = _map_values(elem.value, lambda v: _shift(vr, v, identity.date_shift_days))
        if shifted is not None:
            elem.value = shifted
        elif action == "CZ":
            elem.value = None  # not a date we can shift: emptied, the attribute stays
        else:
            del ds[tag]  # not a date we can shift: it must not survive unshifted
    else:  # pragma: no cover - rule_for returns only the actions above
        raise AssertionError(action)


def deidentify_dataset(ds: Dataset, keyring: Keyring, identity: Identity) -> Dataset:
    """De-identify `ds` in place (and return it). Pixel data is removed: the caller writes
    the cleaned pixels afterwards."""
    try:
        _walk(ds, keyring, identity, 0)
    except RecursionError:
        raise DeidentifyError("sequences nested too deeply to process") from None
    ds.preamble = b"\0" * 128  # a preamble may hold another format's header (or a name)
    # File meta information is rebuilt, not cleaned: it names the sending station and
    # repeats the instance UID.
    old_meta = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    if old_meta is not None and "TransferSyntaxUID" in old_meta:
        meta.TransferSyntaxUID = old_meta.TransferSyntaxUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    if "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation  # the source's claim; only our own cleaning may say NO
    ds.PatientName = identity.patient_id
    ds.PatientID = identity.patient_id
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = ["eutirads PS3.15 Annex E Basic Profile",
                                 "Retain Longitudinal Modified Dates", "Clean Descriptors"]
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code(value, meaning) for value, meaning in profile.DEID_METHOD_CODES
         if value != "113101"])
    return ds


def mark_pixels_cleaned(ds: Dataset) -> None:
    """Record the Clean Pixel Data option; call only after the pixels were cleaned."""
    ds.BurnedInAnnotation = "NO"
    methods = ds.DeidentificationMethod
    methods = [methods] if isinstance(methods, str) else list(methods)
    if "Clean Pixel Data" not in methods:
        ds.DeidentificationMethod = methods + ["Clean Pixel Data"]
    codes = ds.DeidentificationMethodCodeSequence
    if not any(item.CodeValue == "113101" for item in codes):
        codes.append(_code("113101", "Clean Pixel Data Option"))


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
