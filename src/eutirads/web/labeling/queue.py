"""The reading queue: claim, save, skip; the only code that changes `Image.claims`.

Every function runs in one transaction. A slot is taken with a conditional UPDATE
(`claims < readers_required`), which the database applies atomically, so concurrent readers
can neither lose a label nor push an image past N readings. A claim that is never saved
expires after CLAIM_MINUTES and its slot goes back to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ...categories import EU_TIRADS_LABELS
from ...errors import InputError
from ..core.audit import record
from .models import EXCLUDED, Image, LabelHistory, Project, Reading, Skip

CLAIM_MINUTES = 30
MAX_PENDING = 2  # the image on screen and the prefetched next one


class QueueError(InputError):
    """A reading cannot be saved (image full, not yours, bad value)."""


@dataclass(frozen=True)
class Progress:
    done: int        # images this reader has read
    left: int        # images still open to this reader (not full, not read, not skipped)
    skipped: int
    total: int

    def as_dict(self) -> dict:
        return {"done": self.done, "left": self.left, "skipped": self.skipped,
                "total": self.total}


def _take_slot(image_id: int, project: Project) -> bool:
    return Image.objects.filter(pk=image_id, claims__lt=project.readers_required) \
        .update(claims=F("claims") + 1) == 1


def _give_slot(image_id: int) -> None:
    Image.objects.filter(pk=image_id, claims__gt=0).update(claims=F("claims") - 1)


def release_expired(project: Project, *, now=None) -> int:
    """Free the slots of claims older than CLAIM_MINUTES that were never saved."""
    cutoff = (now or timezone.now()) - timedelta(minutes=CLAIM_MINUTES)
    released = 0
    with transaction.atomic():
        stale = list(Reading.objects.filter(image__project=project, done=False,
                                            claimed_at__lt=cutoff).values_list("pk", "image_id"))
        for pk, image_id in stale:
            if Reading.objects.filter(pk=pk, done=False).delete()[0]:
                _give_slot(image_id)
                released += 1
    return released


def _open_images(project: Project, reader):
    """Images this reader may still claim: not full, not read or claimed by them, not skipped."""
    return (Image.objects.filter(project=project, claims__lt=project.readers_required)
            .exclude(readings__reader=reader).exclude(skips__reader=reader))


def claim_next(project: Project, reader, *, exclude: tuple[int, ...] = ()) -> Image | None:
    """The reader's next image: an unsaved claim they already hold (oldest first, not in
    `exclude`), else a newly claimed one; None when the queue is empty for them."""
    with transaction.atomic():
        held = (Reading.objects.filter(image__project=project, reader=reader, done=False)
                .exclude(image_id__in=exclude).select_related("image").order_by("claimed_at", "pk")
                .first())
        if held is not None:
            return held.image
        pending = Reading.objects.filter(image__project=project, reader=reader, done=False).count()
        if pending >= MAX_PENDING:
            return None
        # Images that already have readings first, so images complete (and reach
        # agreement and adjudication) as early as possible.
        candidates = _open_images(project, reader).exclude(pk__in=exclude) \
            .order_by("-claims", "position").values_list("pk", flat=True)[:20]
        for image_id in candidates:
            if not _take_slot(image_id, project):
                continue  # another reader took the last slot a moment ago
            try:
                with transaction.atomic():
                    Reading.objects.create(image_id=image_id, reader=reader)
            except IntegrityError:  # the same reader claimed it in another tab
                _give_slot(image_id)
                continue
            return Image.objects.get(pk=image_id)
    return None


def validate_verdict(label: str, flagged: bool, reason: str, comment: str) -> tuple[str, str, str]:
    label = (label or "").strip()
    reason = (reason or "").strip()
    comment = (comment or "").strip()
    if flagged:
        if not reason:
            raise QueueError("a flag needs a reason")
        label = ""
    elif label not in EU_TIRADS_LABELS:
        raise QueueError("choose an EU-TIRADS category from 1 to 5")
    if len(reason) > 300 or len(comment) > 2000:
        raise QueueError("reason (300) or comment (2000 characters) is too long")
    return label, reason, comment


def save_reading(image: Image, reader, *, label: str = "", flagged: bool = False,
                 reason: str = "", comment: str = "", request=None) -> Reading:
    """Store the reader's verdict on `image` (a first reading or a change of their own).

    Raises QueueError when the image already has its N readings from others."""
    label, reason, comment = validate_verdict(label, flagged, reason, comment)
    project = image.project
    with transaction.atomic():
        reading = Reading.objects.select_for_update().filter(image=image, reader=reader).first()
        if reading is None:
            # The claim expired (or never existed): take a slot now if one is left.
            if not _take_slot(image.pk, project):
                raise QueueError("this image already has all its readings; it was skipped")
            reading = Reading.objects.create(image=image, reader=reader)
        before = reading.snapshot() if reading.done else None
        reading.label, reading.flagged, reading.flag_reason, reading.comment = \
            label, flagged, reason, comment
        reading.done = True
        reading.saved_at = timezone.now()
        reading.save()
        LabelHistory.objects.create(reading=reading, label=label, flagged=flagged,
                                    flag_reason=reason, comment=comment)
        Skip.objects.filter(image=image, reader=reader).delete()
        action = "flag" if flagged else ("label_change" if before else "label")
        if before != reading.snapshot():
            record(action, user=reader, request=request,
                   target=f"{project.name} image {image.position}", before=before,
                   after=reading.snapshot())
    return reading


def skip(image: Image, reader) -> None:
    """Put the image aside: its slot goes back to the queue; it leaves this reader's queue."""
    with transaction.atomic():
        if Reading.objects.filter(image=image, reader=reader, done=False).delete()[0]:
            _give_slot(image.pk)
        if not Reading.objects.filter(image=image, reader=reader).exists():
            Skip.objects.get_or_create(image=image, reader=reader)


def unskip_all(project: Project, reader) -> int:
    """Bring the reader's skipped images back into their queue."""
    return Skip.objects.filter(image__project=project, reader=reader).delete()[0]


def progress(project: Project, reader) -> Progress:
    done = Reading.objects.filter(image__project=project, reader=reader, done=True).count()
    skipped = Skip.objects.filter(image__project=project, reader=reader).count()
    total = project.images.count()
    left = _open_images(project, reader).count() + Reading.objects.filter(
        image__project=project, reader=reader, done=False).count()
    return Progress(done=done, left=left, skipped=skipped, total=total)


def set_consensus(image: Image, label: str, reviewer, *, request=None) -> None:
    """A reviewer's final label for an image (1-5, or 'excluded' for an unusable image)."""
    label = (label or "").strip()
    if label not in EU_TIRADS_LABELS and label != EXCLUDED:
        raise QueueError("the consensus must be a category 1-5 or 'excluded'")
    with transaction.atomic():
        image = Image.objects.select_for_update().get(pk=image.pk)
        before = image.consensus_label or None
        image.consensus_label = label
        image.consensus_by = reviewer
        image.consensus_at = timezone.now()
        image.save(update_fields=["consensus_label", "consensus_by", "consensus_at"])
        record("adjudicate", user=reviewer, request=request,
               target=f"{image.project.name} image {image.position}",
               before={"consensus": before}, after={"consensus": label})
