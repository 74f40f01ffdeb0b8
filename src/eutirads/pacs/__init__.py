"""The clinic's DICOM network: receive from scanners, pull from a PACS, send results back.

- `listener`: `eutirads listen`, a DICOM Storage SCP (C-STORE, C-ECHO) that spools what it
  receives (owner-only) and feeds it through the ordinary ingest (`eutirads.dicom.ingest`);
- `dicomweb`: `eutirads ingest --dicomweb URL`, QIDO-RS search and WADO-RS retrieval into
  the same ingest, resumable per study;
- `results`: DICOM Structured Report (TID 1500) and Segmentation of a prediction, built in
  memory from the source image, written to a folder or sent by STOW-RS.

Identified data stays in memory or in the owner-only spool; nothing here logs a DICOM value.
"""

from __future__ import annotations

__all__ = ["listener", "dicomweb", "results"]
