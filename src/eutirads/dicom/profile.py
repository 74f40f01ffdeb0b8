"""The de-identification profile: which attribute gets which action.

Source: DICOM PS3.15 (Security and System Management Profiles), Annex E "Attribute
Confidentiality Profiles", Table E.1-1, applied as the Basic Application Level
Confidentiality Profile with these options:

- Clean Pixel Data Option (the pixels outside the ultrasound regions are blanked by
  `eutirads.dicom.pixels`; icon images, overlays and curves are removed here),
- Retain Longitudinal Temporal Information with Modified Dates Option (dates shifted by a
  per-patient offset, see `keys.Keyring.date_shift_days`),
- Clean Descriptors Option (free-text descriptors: the standard allows cleaning them by
  hand; software cannot tell a clean description from one holding a name, so we remove them).

pydicom ships no such table, so this is our own transcription of the attributes that matter
for ultrasound and general images. The table gives the EFFECTIVE action under the options
above, keyed by pydicom keyword:

    X  remove                    Z  replace by an empty value
    D  replace by a dummy value  U  replace the UID by a keyed one
    K  keep                      C  clean: dates shifted per patient (times of day kept,
                                    as the shift is whole days); other VRs removed

Attributes missing from the table follow `rule_for`'s catch-all rules, which are stricter
than the standard: every person name is emptied, every non-class UID remapped, every date
shifted, and any free text not known to be harmless removed.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import BaseTag, Tag

__all__ = ["ACTIONS", "action_for", "rule_for", "KEEP_UID_KEYWORDS", "DEID_METHOD_CODES"]

_X = "X"
_Z = "Z"
_D = "D"
_U = "U"
_K = "K"
_C = "C"

# PS3.15 Table E.1-1, effective actions (see the module docstring). Grouped by module.
_TABLE: dict[str, str] = {
    # Patient: identity is replaced (D: the keyed pseudonym), characteristics removed.
    "PatientName": _D, "PatientID": _D, "IssuerOfPatientID": _X,
    "IssuerOfPatientIDQualifiersSequence": _X, "TypeOfPatientID": _X,
    "PatientBirthDate": _Z, "PatientBirthTime": _X, "PatientBirthName": _X,
    "PatientSex": _Z, "PatientAge": _X, "PatientSize": _X, "PatientWeight": _X,
    "PatientSizeCodeSequence": _X, "PatientAddress": _X, "PatientMotherBirthName": _X,
    "OtherPatientIDs": _X, "OtherPatientIDsSequence": _X, "OtherPatientNames": _X,
    "PatientTelephoneNumbers": _X, "PatientTelecomInformation": _X, "EthnicGroup": _X,
    "Occupation": _X, "SmokingStatus": _X, "AdditionalPatientHistory": _X,
    "PregnancyStatus": _X, "LastMenstrualDate": _X, "PatientReligiousPreference": _X,
    "PatientComments": _X, "PatientSexNeutered": _X, "PatientSpeciesDescription": _X,
    "PatientBreedDescription": _X, "ResponsiblePerson": _X, "ResponsiblePersonRole": _X,
    "ResponsibleOrganization": _X, "MedicalRecordLocator": _X, "MilitaryRank": _X,
    "BranchOfService": _X, "CountryOfResidence": _X, "RegionOfResidence": _X,
    "PatientInsurancePlanCodeSequence": _X, "PatientPrimaryLanguageCodeSequence": _X,
    "PatientPrimaryLanguageModifierCodeSequence": _X, "MedicalAlerts": _X, "Allergies": _X,
    "SpecialNeeds": _X, "PatientState": _X, "PatientInstitutionResidence": _X,
    "PatientBirthDateInAlternativeCalendar": _X, "PatientDeathDateInAlternativeCalendar": _X,
    "PatientAlternativeCalendar": _X, "PatientTransportArrangements": _X,
    "ReferencedPatientSequence": _X, "ReferencedPatientPhotoSequence": _X,
    "ReferencedPatientAliasSequence": _X, "InsurancePlanIdentification": _X,
    "ConfidentialityConstraintOnPatientDataDescription": _X, "PatientClinicalTrialParticipationSequence": _X,
    "DeidentificationMethod": _X, "DeidentificationMethodCodeSequence": _X,
    # Visit and admission.
    "AdmissionID": _X, "IssuerOfAdmissionIDSequence": _X, "AdmittingDiagnosesDescription": _X,
    "AdmittingDiagnosesCodeSequence": _X, "AdmittingDate": _C, "AdmittingTime": _C,
    "DischargeDiagnosisDescription": _X, "ServiceEpisodeID": _X,
    "IssuerOfServiceEpisodeIDSequence": _X, "ServiceEpisodeDescription": _X,
    "VisitComments": _X, "CurrentPatientLocation": _X, "RouteOfAdmissions": _X,
    "ScheduledPatientInstitutionResidence": _X, "ReasonForVisit": _X,
    "ReasonForVisitCodeSequence": _X,
    # Study.
    "StudyInstanceUID": _U, "StudyDate": _C, "StudyTime": _C, "StudyID": _Z,
    "AccessionNumber": _Z, "IssuerOfAccessionNumberSequence": _X, "StudyDescription": _X,
    "ReferringPhysicianName": _Z, "ReferringPhysicianAddress": _X,
    "ReferringPhysicianTelephoneNumbers": _X, "ReferringPhysicianIdentificationSequence": _X,
    "ConsultingPhysicianName": _X, "ConsultingPhysicianIdentificationSequence": _X,
    "PhysiciansOfRecord": _X, "PhysiciansOfRecordIdentificationSequence": _X,
    "NameOfPhysiciansReadingStudy": _X, "PhysiciansReadingStudyIdentificationSequence": _X,
    "RequestingPhysician": _X, "RequestingPhysicianIdentificationSequence": _X,
    "RequestingService": _X, "RequestingServiceCodeSequence": _X,
    "ReferencedStudySequence": _X, "ProcedureCodeSequence": _X,
    "RequestedProcedureDescription": _X, "RequestedProcedureID": _X,
    "RequestedProcedureComments": _X, "RequestedProcedureLocation": _X,
    "ReasonForTheRequestedProcedure": _X, "ReasonForStudy": _X, "StudyComments": _X,
    "RequestAttributesSequence": _X, "ReferencedPerformedProcedureStepSequence": _X,
    "PerformedProcedureStepID": _X, "PerformedProcedureStepDescription": _X,
    "PerformedProcedureStepStartDate": _C, "PerformedProcedureStepStartTime": _C,
    "PerformedProcedureStepEndDate": _C, "PerformedProcedureStepEndTime": _C,
    "PerformedLocation": _X, "PerformedStationName": _X, "PerformedStationAETitle": _X,
    "PerformedStationNameCodeSequence": _X, "PerformedProcedureTypeDescription": _X,
    "CommentsOnThePerformedProcedureStep": _X, "ScheduledProcedureStepDescription": _X,
    "ScheduledProcedureStepID": _X, "ScheduledProcedureStepStartDate": _C,
    "ScheduledProcedureStepStartTime": _C, "ScheduledProcedureStepEndDate": _C,
    "ScheduledProcedureStepEndTime": _C, "ScheduledPerformingPhysicianName": _X,
    "ScheduledPerformingPhysicianIdentificationSequence": _X, "ScheduledStationName": _X,
    "ScheduledStationAETitle": _X, "ScheduledProcedureStepLocation": _X,
    "PreMedication": _X, "OrderEnteredBy": _X, "OrderEntererLocation": _X,
    "OrderCallbackPhoneNumber": _X, "OrderCallbackTelecomInformation": _X,
    "PlacerOrderNumberImagingServiceRequest": _X,
    "FillerOrderNumberImagingServiceRequest": _X, "ImagingServiceRequestComments": _X,
    "RequestedContrastAgent": _X, "IssueDateOfImagingServiceRequest": _C,
    "IssueTimeOfImagingServiceRequest": _C, "ConfidentialityCode": _X, "StudyIDIssuer": _X,
    "StudyVerifiedDate": _C, "StudyVerifiedTime": _C, "StudyReadDate": _C,
    "StudyReadTime": _C, "StudyArrivalDate": _C, "StudyArrivalTime": _C,
    "StudyCompletionDate": _C, "StudyCompletionTime": _C,
    # Series.
    "SeriesInstanceUID": _U, "SeriesDate": _C, "SeriesTime": _C, "SeriesDescription": _X,
    "SeriesDescriptionCodeSequence": _X, "ProtocolName": _X, "OperatorsName": _X,
    "OperatorIdentificationSequence": _X, "PerformingPhysicianName": _X,
    "PerformingPhysicianIdentificationSequence": _X, "ReferencedSeriesSequence": _X,
    "SeriesNumber": _K,
    # Equipment: institution and device identity removed (no Retain Device Identity option).
    "InstitutionName": _X, "InstitutionAddress": _X, "InstitutionalDepartmentName": _X,
    "InstitutionCodeSequence": _X, "InstitutionalDepartmentTypeCodeSequence": _X,
    "StationName": _X, "DeviceSerialNumber": _X, "DeviceUID": _U, "DeviceID": _X,
    "DeviceDescription": _X, "DeviceLabel": _X, "LongDeviceDescription": _X,
    "UDISequence": _X, "UniqueDeviceIdentifier": _X, "DeviceAlternateIdentifier": _X,
    "DetectorID": _X, "PlateID": _X, "CassetteID": _X, "GantryID": _X,
    "SourceSerialNumber": _X, "SoftwareVersions": _X, "DateOfLastCalibration": _C,
    "TimeOfLastCalibration": _C, "DateOfSecondaryCapture": _C, "TimeOfSecondaryCapture": _C,
    "SecondaryCaptureDeviceID": _X, "TransducerIdentificationSequence": _X,
    "Manufacturer": _K, "ManufacturerModelName": _K,
    # Image / instance.
    "SOPInstanceUID": _U, "MediaStorageSOPInstanceUID": _U, "InstanceCreatorUID": _U,
    "InstanceCreationDate": _C, "InstanceCreationTime": _C, "ContentDate": _C,
    "ContentTime": _C, "AcquisitionDate": _C, "AcquisitionTime": _C,
    "AcquisitionDateTime": _C, "ImageComments": _X, "FrameComments": _X,
    "DerivationDescription": _X, "AcquisitionComments": _X,
    "AcquisitionDeviceProcessingDescription": _X, "AcquisitionContextSequence": _X,
    "AcquisitionContextDescription": _X, "ContrastBolusAgent": _X,
    "FrameOfReferenceUID": _U, "SynchronizationFrameOfReferenceUID": _U,
    "ConcatenationUID": _U, "DimensionOrganizationUID": _U, "IrradiationEventUID": _U,
    "StorageMediaFileSetUID": _U, "StorageMediaFileSetID": _X, "ReferencedSOPInstanceUID": _U,
    "ReferencedFrameOfReferenceUID": _U, "RelatedFrameOfReferenceUID": _U,
    "TargetUID": _U, "TransactionUID": _U, "FiducialUID": _U, "UID": _U,
    "TemplateExtensionOrganizationUID": _U, "TemplateExtensionCreatorUID": _U,
    "ReferencedImageSequence": _K, "SourceImageSequence": _K,  # X/Z/U*: kept, UIDs remapped
    "PresentationIntentType": _K,
    # Embedded pixels and free annotations (Clean Pixel Data / Clean Graphics).
    "IconImageSequence": _X, "GraphicAnnotationSequence": _X,
    "EncapsulatedDocument": _X, "WaveformSequence": _X, "DataSetTrailingPadding": _X,
    # Structured content, signatures and audit trails.
    "ContentSequence": _X, "TextString": _X, "TextComments": _X, "TextValue": _X,
    "AuthorObserverSequence": _X, "ParticipantSequence": _X, "PersonName": _Z,
    "PersonIdentificationCodeSequence": _X, "PersonAddress": _X,
    "PersonTelephoneNumbers": _X, "PersonTelecomInformation": _X,
    "VerifyingObserverName": _Z, "VerifyingObserverSequence": _X,
    "VerifyingOrganization": _X, "VerifyingObserverIdentificationCodeSequence": _X,
    "VerificationDateTime": _C, "ObservationDateTime": _C, "DateTime": _C, "Date": _C,
    "Time": _C, "ContentCreatorName": _Z, "ContentCreatorIdentificationCodeSequence": _X,
    "ContributionDescription": _X, "ReferencedDigitalSignatureSequence": _X,
    "DigitalSignaturesSequence": _X, "MACParametersSequence": _X,
    "EncryptedAttributesSequence": _X, "OriginalAttributesSequence": _X,
    "ModifiedAttributesSequence": _X, "HL7StructuredDocumentReferenceSequence": _X,
    "InterpretationText": _X, "InterpretationDiagnosisDescription": _X,
    "InterpretationRecorder": _X, "InterpretationTranscriber": _X,
    "InterpretationAuthor": _X, "PhysicianApprovingInterpretation": _X,
    "InterpretationApproverSequence": _X, "DistributionName": _X, "DistributionAddress": _X,
    "SpecimenAccessionNumber": _X, "SpecimenDescriptionSequenceTrial": _X,
    "ReviewerName": _X, "ReviewDate": _C, "ReviewTime": _C, "LabelText": _X,
    "CurrentObserverTrial": _X, "Arbitrary": _X, "NamesOfIntendedRecipientsOfResults": _X,
    "IntendedRecipientsOfResultsIdentificationSequence": _X,
    # Clinical trial attributes: they can name the site and the subject.
    "ClinicalTrialSponsorName": _X, "ClinicalTrialProtocolID": _X,
    "ClinicalTrialProtocolName": _X, "ClinicalTrialSiteID": _X,
    "ClinicalTrialSiteName": _X, "ClinicalTrialSubjectID": _X,
    "ClinicalTrialSubjectReadingID": _X, "ClinicalTrialTimePointID": _X,
    "ClinicalTrialTimePointDescription": _X, "ClinicalTrialCoordinatingCenterName": _X,
    "ClinicalTrialSeriesID": _X, "ClinicalTrialSeriesDescription": _X,
    "ClinicalTrialProtocolEthicsCommitteeName": _X,
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber": _X,
}

# UIDs that name a class or a well-known thing, never an instance: always kept.
KEEP_UID_KEYWORDS: frozenset[str] = frozenset({
    "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID",
    "ReferencedSOPClassUIDInFile", "AffectedSOPClassUID", "RequestedSOPClassUID",
    "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile", "CodingSchemeUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
    "PrivateInformationCreatorUID", "ImplementationClassUID",
})

# Free text that is known to hold no identity: kept although the catch-all rule removes
# unknown text. Coded entries (code value, scheme, meaning) are controlled terminology.
_SAFE_TEXT: frozenset[str] = frozenset({
    "Manufacturer", "ManufacturerModelName", "CodeValue", "CodingSchemeDesignator",
    "CodingSchemeVersion", "CodeMeaning", "LongCodeValue", "URNCodeValue",
    "ContextIdentifier", "MappingResource", "ContextGroupExtensionFlag",
    "PatientIdentityRemoved", "LongitudinalTemporalInformationModified",
    "SpecificCharacterSet",
})
# DT values that version a terminology rather than date an event: never shifted.
_NOT_EVENT_DATES: frozenset[str] = frozenset({
    "ContextGroupVersion", "ContextGroupLocalVersion", "CodingSchemeVersion",
})

_FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})

# The CID 7050 codes written into DeidentificationMethodCodeSequence (scheme DCM).
DEID_METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113101", "Clean Pixel Data Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)


def _build() -> dict[BaseTag, str]:
    actions = {}
    for keyword, action in _TABLE.items():
        tag = tag_for_keyword(keyword)
        if tag is not None:  # keywords unknown to this pydicom are checked by a test
            actions[Tag(tag)] = action
    return actions


ACTIONS: dict[BaseTag, str] = _build()
UNKNOWN_TABLE_KEYWORDS: tuple[str, ...] = tuple(k for k in _TABLE if tag_for_keyword(k) is None)


def action_for(tag: BaseTag) -> str | None:
    """The table's action for a tag, or None when the table does not list it."""
    return ACTIONS.get(tag)


def rule_for(tag: BaseTag, vr: str) -> str:
    """The action for any element: the table first, then the catch-all rules.

    Returns one of X, Z, D, U, K, C, or 'S' (a sequence to walk into: its items get the
    same treatment). U remaps a UID unless its value is a well-known (class) UID.
    """
    group = tag.group
    if tag.is_private:
        return _X
    if group in (0x0000, 0x0002) or tag.element == 0x0000:  # commands, file meta, lengths
        return _X
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves and overlays
        return _X
    if group == 0x7FE0 or tag == 0xFFFCFFFC:  # pixel data (ours is written later), padding
        return _X
    action = ACTIONS.get(tag)
    keyword = keyword_for_tag(tag)
    if action is not None:
        if action == _K and vr == "SQ":
            return "S"
        return action
    if not keyword:
        return _X  # not in the data dictionary: nobody can say it is harmless
    if vr == "SQ":
        return "S"
    if vr == "UI":
        return _K if keyword in KEEP_UID_KEYWORDS else _U
    if vr == "PN":
        return _Z
    if vr in ("DA", "DT"):
        return _K if keyword in _NOT_EVENT_DATES else _C
    if vr in ("AE", "UR", "UN"):
        return _X  # network names and addresses; undecodable values
    if vr in _FREE_TEXT_VRS and keyword not in _SAFE_TEXT:
        return _X
    return _K


def dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
