"""The printable report of one prediction: one HTML template, shown in the browser (print
CSS) and turned into a PDF by WeasyPrint (Debian's Pango renders the text)."""

from __future__ import annotations

from pathlib import Path

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone

from ...errors import ModelError
from . import present, services

__all__ = ["report_context", "report_pdf", "pdf_response"]

REPORT_CSS = Path(__file__).parent / "static" / "diagnosis" / "report.css"


def report_context(prediction, *, pdf: bool = False) -> dict:
    context = present.prediction_context(prediction)
    image_uri = ""
    if context["image_kept"]:
        image_uri = services.data_uri((services.image_folder() /
                                       prediction.image_name).read_bytes())
    context.update({"image_uri": image_uri, "pdf": pdf, "printed_at": timezone.now()})
    return context


def load_weasyprint():
    """(CSS, HTML, URLFetcher) from WeasyPrint, imported on first use. (Its import turns on
    Pillow's process-wide LOAD_TRUNCATED_IMAGES; `imageio.open_image` decodes strictly
    whatever that flag says, so upload checks stay strict after the first PDF.)"""
    try:
        from weasyprint import CSS, HTML
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: Pango is missing
        raise ModelError(f"PDF reports need WeasyPrint and Debian's Pango ({exc})") from None
    return CSS, HTML, URLFetcher


def report_pdf(prediction) -> bytes:
    """The report as PDF bytes (A4), from the same template as the HTML view."""
    CSS, HTML, URLFetcher = load_weasyprint()
    html = render_to_string("diagnosis/report.html", report_context(prediction, pdf=True))
    # The report holds its image as a data URI: WeasyPrint may fetch nothing else.
    fetcher = URLFetcher(allowed_protocols={"data"})
    return HTML(string=html, url_fetcher=fetcher).write_pdf(
        stylesheets=[CSS(filename=str(REPORT_CSS))])


def pdf_response(request, prediction) -> HttpResponse:
    from ..core.audit import record

    response = HttpResponse(report_pdf(prediction), content_type="application/pdf")
    # A generated name only: nothing of the upload chooses it.
    response["Content-Disposition"] = f'attachment; filename="eutirads-report-{prediction.pk}.pdf"'
    response["Cache-Control"] = "private, no-store"
    record("diagnosis.report", request=request, target=f"prediction #{prediction.pk}")
    return response
