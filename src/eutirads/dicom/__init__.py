"""DICOM ingest with de-identification (PS3.15 Annex E) into a dataset.

- `reading`: safe parsing, declared-size checks, frame decoding to 8-bit display pixels;
- `profile` (+ the generated `profile_table`, from `standards/`): the Annex E table and
  the strict catch-all with its keep-list;
- `keys`: the key file and keyed pseudonyms, UIDs, date shifts and source hashes;
- `deidentify`: applies the profile to a dataset;
- `pixels`: the ultrasound regions (the clean-frame rule itself is `eutirads.frame`);
- the batch, one module per job: `sources` (files, folders, zips), `pipeline` (one
  source), `writing` (all-or-nothing outputs, the DICOM writer), `journal` (journal,
  state, lock), `assembly` (manifest and quarantine list), `pool` (worker processes) and
  `batch` (`ingest` and `which`, which ties them together).
"""

from __future__ import annotations

from .batch import IngestReport, SourceLookup, collect_sources, ingest, parse_frames, which
from .keys import Keyring, default_key_path, load_or_create_key

__all__ = ["ingest", "which", "IngestReport", "SourceLookup", "collect_sources",
           "parse_frames", "Keyring", "load_or_create_key", "default_key_path"]
