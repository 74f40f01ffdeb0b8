"""DICOM ingest with de-identification (PS3.15 Annex E) into a dataset.

- `reading`: safe parsing, declared-size checks, frame decoding to 8-bit display pixels;
- `profile`: the Annex E attribute table and catch-all rules;
- `keys`: the key file and keyed pseudonyms, UIDs and date shifts;
- `deidentify`: applies the profile to a dataset;
- `pixels`: blanks everything outside the ultrasound regions and crops to them;
- `batch`: the resumable, parallel batch (files, folders, zip archives) with quarantine.
"""

from __future__ import annotations

from .batch import IngestReport, collect_sources, ingest, parse_frames
from .keys import Keyring, default_key_path, load_or_create_key

__all__ = ["ingest", "IngestReport", "collect_sources", "parse_frames", "Keyring",
           "load_or_create_key", "default_key_path"]
