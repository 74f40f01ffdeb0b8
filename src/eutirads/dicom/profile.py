"""The de-identification profile: which attribute gets which action.

Source: DICOM PS3.15 (edition 2025c), Annex E, Table E.1-1, pinned as CSV in
`standards/` (provenance and the checks made in `standards/README.md`) and turned into
`profile_table.TABLE` by `scripts/generate_deid_profile.py` (never edited by hand). It is
applied as the Basic Application Level Confidentiality Profile with these options:

- Clean Pixel Data (pixels outside the ultrasound regions blanked, burned-in text inside
  them redacted: `eutirads.frame`; icon images, overlays and curves removed here),
- Retain Longitudinal Temporal Information with Modified Dates (dates shifted by a
  per-patient offset, `keys.Keyring.date_shift_days`; times of day kept),
- Clean Descriptors (software cannot tell a clean description from one holding a name:
  "cleaning" is the Basic Profile's own removal or emptying).

`effective_action` turns a table entry into the action applied, by the element's VR:

    X  remove                 Z  empty (an empty sequence for SQ)
    D  dummy value by VR      U  replace the UID by a keyed one
    C  shift the date; when it is no date: remove    CZ  same, but empty on failure
    K  keep                   S  keep a sequence and walk into its items
    P  the keyed patient pseudonym (PatientName, PatientID: a dummy consistent per patient)

The Basic Profile's alternatives (X/Z, X/D, X/Z/D, Z/D) exist so that Type 2 attributes
stay present and Type 1 keep a value; software does not know each IOD's types, so an
alternative empties an attribute (valid for Type 2 and 3 alike), never removes it: the
object stays valid and nothing identifying is left. X/D becomes Z as well (empty, not a
made-up value). Sequences are the exception: an empty Type 3 sequence is invalid, so an
alternative removes a sequence (no sequence with an alternative is Type 2 in the
ultrasound IODs).

Everything the table does not list is removed (the strict catch-all), unless it is on
`KEEP`: a short list of technical attributes that describe the image, not the person.
Code sequences of procedures and protocols (ProcedureCodeSequence and the like) are not
on it: their CodeMeaning often repeats the free-text study description, so under Clean
Descriptors they go.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.tag import BaseTag

from .profile_table import TABLE

__all__ = ["TABLE", "KEEP", "KEEP_UID_KEYWORDS", "CODE_SEQUENCES", "CODE_ITEM",
           "DEID_METHOD_CODES", "UNKNOWN_TABLE_KEYWORDS", "action_for", "effective_action",
           "rule_for", "dictionary_vr"]

# UIDs that name a class or a well-known thing, never an instance: always kept.
KEEP_UID_KEYWORDS: frozenset[str] = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile",
    "TransferSyntaxUID", "CodingSchemeUID", "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
})

# The keep-list: attributes Table E.1-1 does not list that an ultrasound image needs to
# be a valid, usable object, and that describe the image, the probe or coded anatomy,
# never the patient, the staff, the place or the time. Free text (LO/SH/LT/ST/UT) is on
# it only where it names a device model or a code's meaning inside a kept code sequence:
# TransducerData, ViewName, StageName and ProcessingFunction hold serials and free text
# on real files, so they are not.
KEEP: frozenset[str] = KEEP_UID_KEYWORDS | frozenset({
    # SOP common, series and instance identity that is not an identity of anyone.
    "SpecificCharacterSet", "Modality", "ImageType", "InstanceNumber", "SeriesNumber",
    "AcquisitionNumber", "PatientOrientation", "Laterality", "ImageLaterality",
    "BodyPartExamined", "ViewPosition", "ConversionType", "PresentationIntentType",
    "PositionReferenceIndicator", "Manufacturer", "ManufacturerModelName",
    # Image pixel description (the pixel data itself is written by ingest).
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
    "PixelAspectRatio", "PixelSpacing", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "BurnedInAnnotation",
    "RecognizableVisualFeatures", "RescaleIntercept", "RescaleSlope",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "PresentationLUTShape",
    # Cine timing of multi-frame objects.
    "NumberOfFrames", "FrameIncrementPointer", "FrameTime", "FrameTimeVector", "CineRate",
    "RecommendedDisplayFrameRate", "ActualFrameDuration", "FrameDelay", "StartTrim",
    "StopTrim", "PreferredPlaybackSequencing", "EffectiveDuration",
    # Ultrasound acquisition and the region calibration (PS3.3 C.8.5.5, C.8.5.6).
    "SequenceOfUltrasoundRegions", "RegionSpatialFormat", "RegionDataType", "RegionFlags",
    "RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1",
    "RegionLocationMaxY1", "ReferencePixelX0", "ReferencePixelY0",
    "PhysicalUnitsXDirection", "PhysicalUnitsYDirection", "ReferencePixelPhysicalValueX",
    "ReferencePixelPhysicalValueY", "PhysicalDeltaX", "PhysicalDeltaY",
    "TransducerFrequency", "PulseRepetitionFrequency", "DopplerCorrectionAngle",
    "SteeringAngle", "DopplerSampleVolumeXPosition", "DopplerSampleVolumeYPosition",
    "TMLinePositionX0", "TMLinePositionY0", "TMLinePositionX1", "TMLinePositionY1",
    "PixelComponentOrganization", "PixelComponentMask", "PixelComponentRangeStart",
    "PixelComponentRangeStop", "PixelComponentPhysicalUnits", "PixelComponentDataType",
    "UltrasoundColorDataPresent", "StageNumber", "NumberOfStages",
    "ViewNumber", "NumberOfViewsInStage", "NumberOfEventTimers",
    "TransducerType", "FocusDepth",
    "MechanicalIndex", "BoneThermalIndex", "CranialThermalIndex", "SoftTissueThermalIndex",
    "SoftTissueFocusThermalIndex", "SoftTissueSurfaceThermalIndex", "DepthOfScanField",
    "HeartRate", "TriggerTime",
    # Where the pixels lie and how they were acquired, for the projection and
    # cross-sectional objects (CT, MR, DX) that also come through ingest: Type 1 and 2
    # attributes of their IODs, numbers and enumerated codes, never about a person.
    "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness", "SliceLocation",
    "PatientPosition", "KVP", "RescaleType", "ImagerPixelSpacing", "DetectorType",
    "PositionerType", "PixelIntensityRelationship", "PixelIntensityRelationshipSign",
    # The de-identification record: written by us after the walk.
    "PatientIdentityRemoved", "LongitudinalTemporalInformationModified",
})

# Coded anatomy, views and probe geometry: the only code sequences kept, and the only
# places where the code items (CODE_ITEM) are kept. A code sequence not listed here is
# removed whole; a code item anywhere else (inside a kept reference, say) is removed.
CODE_SEQUENCES: frozenset[str] = frozenset({
    "AnatomicRegionSequence", "AnatomicRegionModifierSequence",
    "PrimaryAnatomicStructureSequence", "PrimaryAnatomicStructureModifierSequence",
    "ViewCodeSequence", "ViewModifierCodeSequence", "TransducerScanPatternCodeSequence",
    "TransducerGeometryCodeSequence", "TransducerBeamSteeringCodeSequence",
    "TransducerApplicationCodeSequence",
})
CODE_ITEM: frozenset[str] = frozenset({
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
    "LongCodeValue", "URNCodeValue", "MappingResource", "ContextIdentifier",
})

# The CID 7050 codes written into DeidentificationMethodCodeSequence (scheme DCM).
DEID_METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113101", "Clean Pixel Data Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)

# Sequences with an X/Z alternative that are Type 2 where they occur (the Acquisition
# Context module of CT, DX, MR and others): emptied, not removed, so the object stays
# valid (nothing of their content survives).
_TYPE2_SEQUENCES = frozenset({0x00400555})  # AcquisitionContextSequence
_PSEUDONYM_TAGS = frozenset({0x00100010, 0x00100020})  # PatientName, PatientID
_DATE_VRS = frozenset({"DA", "DT", "TM"})


def _keyword_known(keyword: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword) is not None


# Keep-list keywords this pydicom does not know (a test demands none).
UNKNOWN_TABLE_KEYWORDS: tuple[str, ...] = tuple(sorted(
    k for k in KEEP | CODE_SEQUENCES | CODE_ITEM if not _keyword_known(k)))


def effective_action(basic: str, dates_option: str, vr: str) -> str:
    """The action for an element of VR `vr` whose Table E.1-1 entry has Basic Profile
    action `basic` and Retain Longitudinal Modified Dates action `dates_option` (see the
    module docstring; Clean Descriptors applies the basic action itself)."""
    keeps_present = basic != "X" and basic != "X/Z/U*"  # Z, D, U or an alternative to X
    if dates_option == "C" and vr in _DATE_VRS:
        return "CZ" if keeps_present else "C"
    if basic == "X/Z/U*":
        return "S" if vr == "SQ" else "U"  # references: kept, their UIDs remapped
    if vr == "SQ":
        # An empty sequence is valid only where the IOD makes it Type 2 (dciodvfy rejects
        # empty Type 3 sequences): the alternatives to X remove it, Z and D (no dummy
        # items can be made up) empty it.
        return "Z" if basic in ("Z", "D") else "X"
    if basic == "U":
        return "U" if vr == "UI" else "Z"
    if basic in ("X", "Z"):
        return basic
    if basic == "D":
        return "U" if vr == "UI" else "D"
    return "Z"  # X/Z, X/D, X/Z/D, Z/D: present and empty


def action_for(tag: BaseTag) -> str | None:
    """The table's Basic Profile action for a tag, or None when the table does not list it."""
    entry = TABLE.get(int(tag))
    return entry[0] if entry else None


def rule_for(tag: BaseTag, vr: str, parent: str | None = None) -> str:
    """The action for any element: fixed rules, then the table, then the keep-list; all
    else is removed. `parent` is the keyword of the sequence whose item holds the element
    (None at the top). Returns one of the codes of the module docstring."""
    group = tag.group
    if tag.is_private:  # Table E.1-1 "Private Attributes": X (no Retain Safe Private)
        return "X"
    if group in (0x0000, 0x0002) or tag.element == 0x0000:  # commands, file meta, lengths
        return "X"
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves and overlays
        return "X"
    if group == 0x7FE0:  # pixel data: ours is written after the walk
        return "X"
    if int(tag) in _PSEUDONYM_TAGS:
        return "P"
    if int(tag) in _TYPE2_SEQUENCES and vr == "SQ":
        return "Z"
    entry = TABLE.get(int(tag))
    if entry is not None:
        return effective_action(entry[0], entry[1], vr)
    keyword = keyword_for_tag(tag)
    if keyword in CODE_SEQUENCES:
        return "S"
    if keyword in CODE_ITEM:
        return "K" if parent in CODE_SEQUENCES else "X"
    if keyword in KEEP:
        return "S" if vr == "SQ" else "K"
    return "X"


def dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
