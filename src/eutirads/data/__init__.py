"""Dataset layer: the manifest format, importers, splits and summaries."""

from .manifest import (CORE_COLUMNS, MANIFEST_NAME, Row, image_path, read_manifest,
                       row_bbox, rows_in_split, write_manifest)

__all__ = ["CORE_COLUMNS", "MANIFEST_NAME", "Row", "image_path", "read_manifest",
           "row_bbox", "rows_in_split", "write_manifest"]
