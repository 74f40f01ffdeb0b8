"""The reading queue: claim, save, skip; the only code that changes `Image.claims`.

Every function runs in one transaction. A slot is taken with a conditional UPDATE
(`claims < readers_required`), which the database applies atomically, so concurrent readers
can neither lose a label nor push an image past N readings. A claim that is never saved
expires after CLAIM_MINUTES and its slot goes back to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from ...categories import DESCRIPTORS, EU_TIRADS_LABELS, NoduleFeatures, classify
from ...errors import InputError
from ..core.audit import record
from .models import (EXCLUDED, RANDOM_ORDER, UNCERTAIN_FIRST, Image, LabelHistory, Project,
                     Reading, Skip, has_overlay)

CLAIM_MINUTES = 30
MAX_PENDING = 2  # the image on screen and the prefetched next one


class QueueError(InputError):
    """A reading cannot be saved (image full, not yours, bad value)."""


class QueueFull(QueueError):
    """The image already has its N readings from other readers."""

    status = 409  # web.core.errors.status_for: a conflict, not a bad request


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
    with transaction.atomic(savepoint=False):
        stale = list(Reading.objects.filter(image__project=project, done=False,
                                            claimed_at__lt=cutoff).values_list("pk", "image_id"))
        for pk, image_id in stale:
            if Reading.objects.filter(pk=pk, done=False).delete()[0]:
                _give_slot(image_id)
                released += 1
    return released


def _open_images(project: Project, reader):
    """Images this reader may still claim: not full, not read or claimed by them, not skipped."""
    # consensus_by: a reviewer who adjudicated a flagged image has seen its labels.
    return (Image.objects.filter(project=project, claims__lt=project.readers_required)
            .exclude(readings__reader=reader).exclude(skips__reader=reader)
            .exclude(consensus_by=reader))


@dataclass(frozen=True)
class ImageRef:
    """Just what the reading screen needs about a claimed image."""

    id: int
    position: int
    has_overlay: bool = False


def claim_pair(project: Project, reader) -> tuple[ImageRef | None, ImageRef | None]:
    """The image to show now and the one to prefetch, both claimed for the reader: claims
    they already hold first (oldest first), then new ones. None where the queue is empty."""
    with transaction.atomic(savepoint=False):
        refs = [ImageRef(pk, position, has_overlay(row)) for pk, position, row in
                Reading.objects.filter(image__project=project, reader=reader, done=False)
                .order_by("claimed_at", "pk")
                .values_list("image_id", "image__position", "image__row")[:MAX_PENDING]]
        if len(refs) < MAX_PENDING:
            refs += _claim_new(project, reader, MAX_PENDING - len(refs), [r.id for r in refs])
        if len(refs) < MAX_PENDING and release_expired(project):
            # The queue looked empty: stale claims of others were holding the last slots.
            refs += _claim_new(project, reader, MAX_PENDING - len(refs), [r.id for r in refs])
    refs += [None, None]
    return refs[0], refs[1]


def _claim_new(project: Project, reader, count: int, exclude: list[int]) -> list[ImageRef]:
    # Images that already have readings first, so images complete (and reach agreement
    # and adjudication) as early as possible.
    order = ["-claims", "position"]  # manifest order
    if project.queue_order == RANDOM_ORDER:  # the project's fixed shuffle
        order = ["-claims", "shuffle", "position"]
    elif project.queue_order == UNCERTAIN_FIRST:  # what the model learns most from, first
        order = ["-claims", F("uncertainty").desc(nulls_last=True), "position"]
    candidates = _open_images(project, reader).exclude(pk__in=exclude) \
        .order_by(*order).values_list("pk", "position", "row")[:count + 10]
    claimed: list[ImageRef] = []
    for image_id, position, row in candidates:
        if not _take_slot(image_id, project):
            continue  # another reader took the last slot a moment ago
        try:
            with transaction.atomic():
                Reading.objects.create(image_id=image_id, reader=reader)
        except IntegrityError:  # the same reader claimed it in another tab
            _give_slot(image_id)
            continue
        claimed.append(ImageRef(image_id, position, has_overlay(row)))
        if len(claimed) == count:
            break
    return claimed


def validate_verdict(label: str, flagged: bool, reason: str, comment: str) -> tuple[str, str, str]:
    label = (label or "").strip()
    reason = (reason or "").strip()
    comment = (comment or "").strip()
    if flagged:
        if not reason:
            raise QueueError(_("a flag needs a reason"))
        label = ""
    elif label not in EU_TIRADS_LABELS:
        raise QueueError(_("choose an EU-TIRADS category from 1 to 5"))
    if len(reason) > 300 or len(comment) > 2000:
        raise QueueError(_("reason (300) or comment (2000 characters) is too long"))
    return label, reason, comment


def rule_category(descriptors: dict, *, nodule: bool = True) -> str:
    """The guideline rule's category for a reader's descriptors (the server's recomputation:
    whatever the browser showed, this is what is stored)."""
    if not nodule:
        return "1"
    unknown = set(descriptors) - set(DESCRIPTORS)
    if unknown:
        raise QueueError(f"unknown descriptor {sorted(unknown)[0]!r}")
    try:
        return str(classify(NoduleFeatures(**descriptors)))
    except (TypeError, InputError) as exc:
        raise QueueError(str(exc).split(";")[0]) from None


def save_reading(image: Image, reader, *, label: str = "", flagged: bool = False,
                 reason: str = "", comment: str = "", descriptors: dict | None = None,
                 nodule: bool = True, override: str = "", override_reason: str = "",
                 diameter_mm: float | None = None, request=None) -> Reading:
    """Store the reader's verdict on `image` (a first reading or a change of their own).

    Category mode: `label`. Descriptor mode (`descriptors` given, or `nodule=False`): the
    label is the rule's category, or `override` (with its reason). Raises QueueError when
    the image already has its N readings from others."""
    rule_label = ""
    descriptors = dict(descriptors or {})
    if not flagged and (descriptors or not nodule):
        rule_label = rule_category(descriptors, nodule=nodule)
        if not nodule:
            descriptors = {}
        if override and override not in EU_TIRADS_LABELS:
            raise QueueError(_("an override must be a category from 1 to 5"))
        if override and not override_reason.strip():
            raise QueueError(_("an override of the computed category needs a reason"))
        label = override or rule_label
    label, reason, comment = validate_verdict(label, flagged, reason, comment)
    if flagged:
        descriptors, rule_label, override_reason, diameter_mm = {}, "", "", None
    override_reason = override_reason.strip() if label != rule_label else ""
    project = image.project  # callers pass images with select_related("project")
    with transaction.atomic(savepoint=False):
        reading = Reading.objects.select_for_update().filter(image=image, reader=reader).first()
        if reading is None:
            # The claim expired (or never existed): take a slot now if one is left.
            if not _take_slot(image.pk, project):
                raise QueueFull(_("this image already has all its readings from other readers; "
                                  "your label was not saved"))
            # Only an image without a reading of theirs can be in the reader's skips.
            Skip.objects.filter(image=image, reader=reader).delete()
            reading = Reading(image=image, reader=reader)
        before = reading.snapshot() if reading.done else None
        reading.label, reading.flagged, reading.flag_reason, reading.comment = \
            label, flagged, reason, comment
        reading.descriptors, reading.rule_label = descriptors, rule_label
        reading.override_reason, reading.diameter_mm = override_reason[:300], diameter_mm
        reading.done = True
        reading.saved_at = timezone.now()
        reading.save()  # one INSERT or UPDATE
        LabelHistory.objects.create(reading=reading, label=label, flagged=flagged,
                                    flag_reason=reason, comment=comment,
                                    descriptors=descriptors, rule_label=rule_label,
                                    override_reason=reading.override_reason,
                                    diameter_mm=diameter_mm)
        action = "flag" if flagged else ("label_change" if before else "label")
        if before != reading.snapshot():
            record(action, user=reader, request=request,
                   target=f"{project.name} image {image.position}", before=before,
                   after=reading.snapshot())
        _settle_consensus(image.pk, project, changed=before is not None and
                          (before["label"], before["flagged"]) != (label, flagged))
    return reading


def _settle_consensus(image_id: int, project: Project, *, changed: bool) -> None:
    """Unanimous complete images get their consensus automatically; a disagreement clears
    an automatic one, and a changed label clears a reviewer's (back to adjudication)."""
    image = Image.objects.select_for_update().get(pk=image_id)
    verdicts = list(Reading.objects.filter(image_id=image_id, done=True)
                    .values_list("label", "flagged"))
    unanimous = (len(verdicts) >= project.readers_required and
                 not any(flag for _, flag in verdicts) and len({lab for lab, _ in verdicts}) == 1)
    if unanimous and (not image.consensus_label or image.consensus_auto or changed):
        image.consensus_label, image.consensus_auto = verdicts[0][0], True
        image.consensus_by, image.consensus_at = None, timezone.now()
    elif not unanimous and image.consensus_label and (image.consensus_auto or changed):
        image.consensus_label, image.consensus_auto = "", False
        image.consensus_by, image.consensus_at = None, None
    else:
        return
    image.save(update_fields=["consensus_label", "consensus_auto", "consensus_by",
                              "consensus_at"])


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
    """Counts for the progress bar. One hand-written query, because this runs on every save
    and the ORM's query building cost more than the database's work."""
    image, reading, skip_ = (m._meta.db_table for m in (Image, Reading, Skip))
    sql = f"""
        SELECT
          (SELECT COUNT(*) FROM {image} WHERE project_id = %(p)s),
          (SELECT COUNT(*) FROM {image} WHERE project_id = %(p)s AND claims < %(n)s),
          (SELECT COUNT(*) FROM {reading} r JOIN {image} i ON r.image_id = i.id
             WHERE i.project_id = %(p)s AND r.reader_id = %(u)s AND r.done = %(yes)s),
          (SELECT COUNT(*) FROM {reading} r JOIN {image} i ON r.image_id = i.id
             WHERE i.project_id = %(p)s AND r.reader_id = %(u)s AND r.done = %(no)s),
          (SELECT COUNT(*) FROM {reading} r JOIN {image} i ON r.image_id = i.id
             WHERE i.project_id = %(p)s AND r.reader_id = %(u)s AND i.claims < %(n)s),
          (SELECT COUNT(*) FROM {skip_} s JOIN {image} i ON s.image_id = i.id
             WHERE i.project_id = %(p)s AND s.reader_id = %(u)s),
          (SELECT COUNT(*) FROM {skip_} s JOIN {image} i ON s.image_id = i.id
             WHERE i.project_id = %(p)s AND s.reader_id = %(u)s AND i.claims < %(n)s)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"p": project.pk, "n": project.readers_required, "u": reader.pk,
                             "yes": True, "no": False})
        total, open_, done, pending, mine_open, skipped, skipped_open = cursor.fetchone()
    # Open images minus those this reader holds, read or skipped (a reader never has both a
    # reading and a skip of one image), plus the claims they hold: their own queue.
    left = open_ - mine_open - skipped_open + pending
    return Progress(done=done, left=left, skipped=skipped, total=total)


def may_adjudicate(image: Image, reviewer) -> str:
    """Empty when `reviewer` may see and set the consensus of `image`; else why not.

    Blinding: an image still open for reading (fewer than N saved readings, none flagged)
    is closed to adjudication, and so is one the reviewer read themselves, unless the
    project allows it."""
    project = image.project
    readings = list(Reading.objects.filter(image=image).values_list("reader_id", "done",
                                                                    "flagged"))
    if not project.self_adjudication and any(rid == reviewer.pk for rid, _, _ in readings):
        return _("you read this image yourself; another reviewer adjudicates it")
    saved = [flag for _, done, flag in readings if done]
    if len(saved) < project.readers_required and not any(saved):
        return _("this image is still open for reading")
    return ""


def set_consensus(image: Image, label: str, reviewer, *, request=None) -> None:
    """A reviewer's final label for an image (1-5, or 'excluded' for an unusable image)."""
    label = (label or "").strip()
    if label not in EU_TIRADS_LABELS and label != EXCLUDED:
        raise QueueError(_("the consensus must be a category 1-5 or 'excluded'"))
    refusal = may_adjudicate(image, reviewer)
    if refusal:
        raise QueueError(refusal)
    with transaction.atomic():
        image = Image.objects.select_for_update().get(pk=image.pk)
        before = image.consensus_label or None
        image.consensus_label = label
        image.consensus_by = reviewer
        image.consensus_at = timezone.now()
        image.consensus_auto = False
        image.save(update_fields=["consensus_label", "consensus_by", "consensus_at",
                                  "consensus_auto"])
        record("adjudicate", user=reviewer, request=request,
               target=f"{image.project.name} image {image.position}",
               before={"consensus": before}, after={"consensus": label})
