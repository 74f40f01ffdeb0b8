"""Reading an upload out of a Django request: size limits first, then `clean_upload`."""

from __future__ import annotations

from django.conf import settings

from ...inference.uploads import CleanImage, UploadError, UploadLimits, clean_upload


def max_upload_bytes() -> int:
    return int(getattr(settings, "MAX_UPLOAD_MB", 20)) * 1024 * 1024


def upload_limits() -> UploadLimits:
    """The configured limits (settings EUTIRADS_MAX_UPLOAD_MB, _PIXELS, _ASPECT)."""
    return UploadLimits(max_bytes=max_upload_bytes(),
                        max_pixels=int(getattr(settings, "MAX_UPLOAD_PIXELS", 8_000_000)),
                        max_aspect=float(getattr(settings, "MAX_UPLOAD_ASPECT", 8)))


def request_too_large(request) -> bool:
    """True when the declared body is over the limit (checked before the body is read)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    # The multipart envelope adds a little; allow 64 KiB for it.
    return length > max_upload_bytes() + 65536


def upload_from_request(request, field: str = "image") -> CleanImage:
    """The checked image in `request.FILES[field]`; UploadError (4xx) with the reason."""
    upload = request.FILES.get(field)
    if upload is None:
        raise UploadError(f"no image uploaded (the form field '{field}' is missing)")
    limit = max_upload_bytes()
    if upload.size > limit:
        raise UploadError(f"upload too large ({upload.size / 1e6:.1f} MB; "
                          f"limit {limit / 1e6:.1f} MB)", 413)
    data = upload.read(limit + 1)
    return clean_upload(data, upload.name or None, limits=upload_limits())
