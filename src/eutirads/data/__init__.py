"""Dataset layer: the manifest format, importers, splits and summaries."""

from .manifest import (CORE_COLUMNS, DESCRIPTOR_COLUMNS, MANIFEST_NAME, MASK_COLUMN, Row,
                       clean_descriptors, image_path, load_mask, mask_path, read_manifest,
                       row_bbox, row_descriptors, rows_in_split, write_manifest)

__all__ = ["CORE_COLUMNS", "DESCRIPTOR_COLUMNS", "MANIFEST_NAME", "MASK_COLUMN", "Row",
           "clean_descriptors", "image_path", "load_mask", "mask_path", "read_manifest",
           "row_bbox", "row_descriptors", "rows_in_split", "write_manifest"]
