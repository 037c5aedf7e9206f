"""Data lifecycle: the retention purge and the erasure of one user's data.

Both delete requests (their events, start slots and outbox rows go with them through ON
DELETE CASCADE) and their local video files, and leave one row in data_lifecycle_audit,
since the events that would have told the story are gone with the rows.

Quota: admission counts a user's rows inside the rolling window, so deleting rows could
hand slots back. The purge therefore never reaches inside the longest quota window in
force (the default or any policy). An erasure does delete recent rows; the user's bans in
force are kept (an erasure must not be a way around a ban), so what it gives back is at
most the quota of a user in good standing. docs/OPERATIONS.md explains both choices.

Outputs are deleted once their rows are gone for good (after the commit): local files, and
gs:// objects through Cloud Storage when a bucket is configured (tracking/media.py). An
object that could not be deleted is counted and listed, for ``gcloud storage rm``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from tracking import media
from tracking.errors import InvalidInput
from tracking.models import TERMINAL_STATUSES
from tracking.text import storable_text

FINISHED = [str(status) for status in TERMINAL_STATUSES]  # what a purge may delete


@dataclass
class Deleted:
    requests: int = 0
    events: int = 0
    local_files: int = 0
    gcs_deleted: int = 0
    gcs_left: list[str] = field(default_factory=list)
    gcs_problem: str | None = None

    def add(self, requests: int, events: int, uris: list[str], *, gcs_credentials=None) -> None:
        """Count deleted rows and delete their outputs (call after the rows' commit)."""
        self.requests += requests
        self.events += events
        self.local_files += media.delete_local_files(uris)
        gcs = media.delete_gcs_objects(uris, credentials=gcs_credentials)
        self.gcs_deleted += len(gcs.deleted)
        self.gcs_left += gcs.left
        self.gcs_problem = gcs.problem or self.gcs_problem

    def as_counts(self) -> dict:
        return {
            "requests": self.requests,
            "events": self.events,
            "local_files": self.local_files,
            "gcs_objects_deleted": self.gcs_deleted,
            "gcs_objects_left": len(self.gcs_left),
        }


def gcs_report(deleted: Deleted) -> list[str]:
    """What to tell the operator about outputs in Cloud Storage."""
    lines = [f"deleted {deleted.gcs_deleted} gs:// objects"] if deleted.gcs_deleted else []
    if deleted.gcs_left:
        lines.append(
            f"{len(deleted.gcs_left)} gs:// objects are left in the bucket ({deleted.gcs_problem}); "
            "remove them with `gcloud storage rm`:"
        )
        lines += [f"  {uri}" for uri in deleted.gcs_left]
    return lines


def subject_key(user_id: int) -> str:
    """A keyed hash of a Discord user id: Discord ids are guessable (they encode a
    timestamp), so a plain hash could be reversed; with SECRET_KEY it cannot, yet an operator
    can still answer "was user X erased?" (``manage.py erase_user X --check``)."""
    return salted_hmac("veobot.erasure", str(user_id), algorithm="sha256").hexdigest()


# -- audit ---------------------------------------------------------------------------------


def _check_actor(actor: str) -> str:
    actor = storable_text("actor", actor).strip()
    if not 1 <= len(actor) <= 200:
        raise InvalidInput("actor", "the actor recorded in the audit must be 1 to 200 characters")
    return actor


def _start_audit(*, operation: str, actor: str, parameters: dict, subject: str | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO data_lifecycle_audit (operation, actor, subject_key, parameters)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            [operation, actor, subject, json.dumps(parameters)],
        )
        return cursor.fetchone()[0]


def _finish_audit(audit_id: int, *, counts: dict, outcome: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE data_lifecycle_audit SET counts = %s, outcome = %s, finished_at = clock_timestamp() WHERE id = %s",
            [json.dumps(counts), outcome, audit_id],
        )


# -- retention purge -----------------------------------------------------------------------


def purge_cutoff(*, retention_days: int) -> datetime | None:
    """Finished requests created before this moment may be purged; None: keep everything.
    The retention, but never less than the longest quota window in force."""
    if retention_days == 0:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(quota_window) FROM quota_policies")
        longest_policy = cursor.fetchone()[0] or timedelta(0)
    keep = max(timedelta(days=retention_days), settings.VEO_QUOTA_WINDOW, longest_policy)
    return timezone.now() - keep


# Finished, and not held by a worker (a live lease: it is being delivered right now; a row
# locked by someone else is skipped, not waited for).
_PURGEABLE = """
    SELECT id FROM video_requests
    WHERE created_at < %(cutoff)s AND status = ANY(%(finished)s)
      AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
"""

# A request's own files: its outputs and the frames it was given (video_input_uri is its
# parent's output, and stays the parent's).
_OWN_FILES = "(output_uris || array_remove(ARRAY[image_uri, last_frame_uri], NULL))"

_PURGE_BATCH_SQL = f"""
WITH doomed AS ({_PURGEABLE} ORDER BY created_at, id LIMIT %(batch)s FOR UPDATE SKIP LOCKED),
events AS (SELECT count(*) AS n FROM video_request_events WHERE request_id IN (SELECT id FROM doomed)),
gone AS (DELETE FROM video_requests WHERE id IN (SELECT id FROM doomed) RETURNING {_OWN_FILES} AS files)
SELECT (SELECT count(*) FROM gone), (SELECT n FROM events), ARRAY(SELECT unnest(files) FROM gone)
"""

_PURGE_COUNT_SQL = f"""
WITH doomed AS ({_PURGEABLE})
SELECT (SELECT count(*) FROM doomed),
       (SELECT count(*) FROM video_request_events WHERE request_id IN (SELECT id FROM doomed)),
       ARRAY(SELECT unnest({_OWN_FILES}) FROM video_requests WHERE id IN (SELECT id FROM doomed))
"""


def _output_counts(uris: list[str]) -> dict:
    return {
        "local_files": sum(uri.startswith("file:") for uri in uris),
        "gcs_objects": sum(uri.startswith("gs://") for uri in uris),
    }


def count_purgeable(*, cutoff: datetime) -> dict:
    """What a purge would delete now: requests, events, local_files, gcs_objects."""
    with connection.cursor() as cursor:
        cursor.execute(_PURGE_COUNT_SQL, {"cutoff": cutoff, "finished": FINISHED})
        requests, events, uris = cursor.fetchone()
    return {"requests": requests, "events": events, **_output_counts(uris)}


def purge_requests(
    *,
    cutoff: datetime,
    batch: int,
    actor: str,
    gcs_credentials=None,
    progress: Callable[[Deleted], None] = lambda deleted: None,
) -> Deleted:
    """Delete finished requests created before cutoff, batch rows per short transaction (no
    long locks; workers and admissions carry on), then their local files. Audited."""
    if batch < 1:
        raise InvalidInput("batch", "the batch size must be at least 1")
    audit_id = _start_audit(
        operation="purge_requests", actor=_check_actor(actor), parameters={"cutoff": cutoff.isoformat(), "batch": batch}
    )
    deleted, outcome = Deleted(), "interrupted"
    try:
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_PURGE_BATCH_SQL, {"cutoff": cutoff, "finished": FINISHED, "batch": batch})
                requests, events, uris = cursor.fetchone()
            if not requests:
                break
            deleted.add(requests, events, uris, gcs_credentials=gcs_credentials)
            progress(deleted)
        outcome = "done"
    finally:
        _finish_audit(audit_id, counts=deleted.as_counts(), outcome=outcome)
    return deleted


# -- erasure of one user -------------------------------------------------------------------


@dataclass
class Erasure:
    deleted: Deleted
    quota_policies: int
    bans_deleted: int
    bans_kept: int
    audit_id: int


_ERASE_SQL = f"""
WITH gone AS (DELETE FROM video_requests WHERE user_id = %(user)s RETURNING id, {_OWN_FILES} AS files),
events AS (SELECT count(*) AS n FROM video_request_events WHERE request_id IN (SELECT id FROM gone)),
policies AS (DELETE FROM quota_policies WHERE user_id = %(user)s RETURNING id),
-- What moderation kept about them: queue items (with their notes), notices, the reports they
-- filed, and the audit log's rows about them (this erasure is recorded in data_lifecycle_audit).
items AS (DELETE FROM review_items WHERE user_id = %(user)s RETURNING id),
notices AS (DELETE FROM user_notices WHERE user_id = %(user)s RETURNING id),
filed AS (DELETE FROM reports WHERE reporter_id = %(user)s RETURNING id),
logged AS (DELETE FROM moderation_log WHERE subject_user_id = %(user)s RETURNING id),
bans AS (
    DELETE FROM user_bans
    WHERE user_id = %(user)s AND (lifted_at IS NOT NULL OR expires_at <= clock_timestamp())
    RETURNING id
)
SELECT (SELECT count(*) FROM gone), (SELECT n FROM events), ARRAY(SELECT unnest(files) FROM gone),
       (SELECT count(*) FROM policies), (SELECT count(*) FROM bans),
       (SELECT count(*) FROM user_bans WHERE user_id = %(user)s
          AND lifted_at IS NULL AND (expires_at IS NULL OR expires_at > clock_timestamp())),
       (SELECT count(*) FROM items), (SELECT count(*) FROM notices), (SELECT count(*) FROM filed),
       (SELECT count(*) FROM logged)
"""


def in_flight_count(*, user_id: int) -> int:
    """The user's requests a worker has or will have in hand: queued, generating, or held
    under a live lease (being delivered)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM video_requests WHERE user_id = %s"
            " AND (status IN ('pending', 'generating') OR lease_expires_at > clock_timestamp())",
            [user_id],
        )
        return cursor.fetchone()[0]


def erase_user(*, user_id: int, actor: str, gcs_credentials=None) -> Erasure:
    """Delete everything kept about a Discord user — requests, events, outbox rows, quota
    policies, lifted or expired bans (with their appeals), queue items, notices, reports they
    filed, audit-log rows about them, then their videos — with an audit row (written with the
    deletion, completed once the outputs are gone). Bans in force are kept. Refused while the
    user has a request in flight (a worker holds it; cancel it in the admin or let it finish)."""
    if user_id <= 0:
        raise InvalidInput("user_id", "a Discord user id is a positive number")
    actor = _check_actor(actor)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Admission's per-user lock: no new request of this user appears meanwhile.
            cursor.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s))", [user_id])
        busy = in_flight_count(user_id=user_id)
        if busy:
            raise InvalidInput(
                "user_id",
                f"user {user_id} has {busy} request(s) queued, generating or being "
                "delivered; cancel them in the admin (or let them finish), then erase again",
            )
        with connection.cursor() as cursor:
            cursor.execute(_ERASE_SQL, {"user": user_id})
            requests, events, uris, policies, bans_deleted, bans_kept, *moderation = cursor.fetchone()
        audit_id = _start_audit(
            operation="erase_user", actor=actor, subject=subject_key(user_id), parameters=_output_counts(uris)
        )
    deleted, outcome = Deleted(), "interrupted"
    try:  # the rows are gone; the audit row ends saying how far the outputs got, whatever happens
        deleted.add(requests, events, uris, gcs_credentials=gcs_credentials)
        outcome = "done"
    finally:
        _finish_audit(
            audit_id,
            outcome=outcome,
            counts={
                **deleted.as_counts(),
                "quota_policies": policies,
                "bans_deleted": bans_deleted,
                "bans_kept": bans_kept,
                **dict(
                    zip(("review_items", "user_notices", "reports_filed", "moderation_log"), moderation, strict=True)
                ),
            },
        )
    return Erasure(deleted, policies, bans_deleted, bans_kept, audit_id)
