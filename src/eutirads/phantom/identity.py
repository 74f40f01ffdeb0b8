"""Invented identities for the scanner's burned-in banner and the DICOM tags.

Every value here is made up and obviously so (names like "PHANTOM^ALICE"); they exist so
that de-identification can be tested against something that looks like a real identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["FakeIdentity", "FAKE_NAMES", "FAKE_CLINICS", "fake_identity"]

FAKE_NAMES: tuple[str, ...] = (
    "PHANTOM^ALICE", "DOE^JANE", "SPECKLE^SAMANTHA", "ECHO^OSCAR", "SONO^SOPHIE",
    "THYRO^THEODORE", "NODULA^NORA", "PROBE^PETER", "GEL^GRETA", "BMODE^BERTRAND",
    "DOPPLER^DORA", "TESTPATIENT^TOBIAS", "FICTIVA^FRIEDA", "MADEUP^MARCEL",
    "IMAGINARY^INES", "PLACEHOLDER^PAULA",
)
FAKE_CLINICS: tuple[str, ...] = (
    "Phantom Thyroid Clinic", "Imaginary General Hospital", "Nowhere Ultrasound Centre",
    "Fictional Endocrine Institute",
)
FAKE_PHYSICIANS: tuple[str, ...] = (
    "INVENTED^FRANK^^DR", "FICTIONAL^HELGA^^DR", "NOTREAL^IGOR^^DR",
)
FAKE_OPERATORS: tuple[str, ...] = ("SONOGRAPHER^SAMPLE", "TECH^TEST", "OPERATOR^OTTO")


@dataclass(frozen=True)
class FakeIdentity:
    patient_name: str
    patient_id: str
    birth_date: str            # YYYYMMDD
    sex: str                   # M / F
    institution: str
    referring_physician: str
    operator: str
    station_name: str
    device_serial: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def display_name(self) -> str:
        """The name as a scanner's banner prints it: "PHANTOM, ALICE"."""
        family, _, given = self.patient_name.partition("^")
        return f"{family}, {given}" if given else family


def fake_identity(rng: np.random.Generator, number: int) -> FakeIdentity:
    """An invented identity for patient `number` (the id embeds it, so ids never clash)."""
    year = int(rng.integers(1940, 2000))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return FakeIdentity(
        patient_name=str(rng.choice(FAKE_NAMES)),
        patient_id=f"FAKE{number:05d}{int(rng.integers(10, 100))}",
        birth_date=f"{year:04d}{month:02d}{day:02d}",
        sex=str(rng.choice(["F", "F", "F", "M"])),  # thyroid nodules are commoner in women
        institution=str(rng.choice(FAKE_CLINICS)),
        referring_physician=str(rng.choice(FAKE_PHYSICIANS)),
        operator=str(rng.choice(FAKE_OPERATORS)),
        station_name=f"PHANTOM-US{int(rng.integers(1, 4)):02d}",
        device_serial=f"SN-FAKE-{int(rng.integers(100000, 999999))}",
    )
