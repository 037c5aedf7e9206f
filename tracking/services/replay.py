"""Replay of the bot's degraded-mode journal into the database, and what could not be replayed."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import IntegrityError, connection, transaction

from tracking.models import QuarantineResolution

INTERACTION_KEY = "video_requests_interaction_id_key"


def replay_journaled_request(*, request: dict, steps: Sequence[dict], actor: str) -> tuple[int, bool]:
    """Write one request the bot journaled while the database was unreachable, with its original
    timestamps and every transition (validated by the usual triggers), in one transaction.
    Idempotent on the interaction id: returns (request id, False) if it is already there."""
    try:
        return _replay(request=request, steps=steps, actor=actor)
    except IntegrityError as error:
        if getattr(getattr(error.__cause__, "diag", None), "constraint_name", None) != INTERACTION_KEY:
            raise
        # Its admission got there meanwhile: one the database answered too late to be heard
        # (generation.admission, a held request). The row is there now; this finds it.
        return _replay(request=request, steps=steps, actor=actor)


def _replay(*, request: dict, steps: Sequence[dict], actor: str) -> tuple[int, bool]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id, inserted FROM replay_video_request(%s::jsonb, %s::jsonb, %s)",
            [json.dumps(request), json.dumps(list(steps)), actor],
        )
        request_id, inserted = cursor.fetchone()
    return request_id, inserted


# The start a worker wrote ahead to its journal, recorded as the worker would have recorded it
# (generating, with the operation name, stamped with when it happened), but only while the
# request is still pending: if it has moved on, someone recorded this start or another, and
# this one changes nothing.
_RECORD_START_SQL = """
WITH who AS (SELECT set_config('veobot.actor', %(actor)s, true),
                    set_config('veobot.reason', 'the start its worker wrote ahead to its journal', true),
                    set_config('veobot.replay_at', %(at)s, true))
UPDATE video_requests SET status = 'generating', operation_name = %(operation_name)s
FROM who
WHERE id = %(id)s AND interaction_id = %(interaction_id)s AND status = 'pending'
RETURNING id
"""


def record_journaled_start(*, request_id: int, interaction_id: int, operation_name: str, at: str, actor: str) -> bool:
    """Record a Veo start found in a journal; True if the request was still pending and now generates.
    The interaction id (unique everywhere) makes sure a journal names a request of this database."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _RECORD_START_SQL,
            {
                "id": request_id,
                "interaction_id": interaction_id,
                "operation_name": _text(operation_name)[:4000],
                "at": at,
                "actor": actor,
            },
        )
        return cursor.fetchone() is not None


# A delivery its worker wrote ahead to its journal (Discord had taken it; its record had not
# been made), recorded as the worker would have: once, whoever holds the lease now.
_RECORD_DELIVERY_SQL = """
WITH who AS (SELECT set_config('veobot.actor', %(actor)s, true))
SELECT record_video_request_delivery(r.id, NULL, %(method)s, %(message_id)s::bigint, %(error)s::text,
                                     %(removal_known)s)
FROM who, video_requests r
WHERE r.id = %(id)s AND r.interaction_id = %(interaction_id)s AND r.delivered_at IS NULL
"""


def record_journaled_delivery(
    *,
    request_id: int,
    interaction_id: int,
    method: str,
    message_id: int | None,
    error: str | None,
    removal_known: bool,
    at: str,
    actor: str,
) -> bool:
    """Record a delivery found in a journal; True if the request was not recorded delivered yet.
    (It is stamped now: the delivery happened at ``at``, a moment before.)"""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _RECORD_DELIVERY_SQL,
            {
                "id": request_id,
                "interaction_id": interaction_id,
                "method": method,
                "message_id": message_id,
                "error": _text(error) if error else None,
                "removal_known": bool(removal_known),
                "actor": actor,
            },
        )
        row = cursor.fetchone()
        return row is not None and row[0] is not None


_RECORD_QUARANTINED_SQL = """
INSERT INTO journal_quarantine (entry_key, host, interaction_id, user_id, kind, error, entry, quarantined_at)
VALUES (%(key)s, %(host)s, %(interaction_id)s, %(user_id)s, %(kind)s, %(error)s, %(entry)s, %(at)s)
ON CONFLICT (entry_key) DO NOTHING
"""


def record_quarantined(*, key: str, entry: dict) -> None:
    """Report a quarantined journal entry (once: a repeat is a no-op). ``entry`` is the entry as
    generation.journal keeps it; stored as escaped JSON text, whatever it holds."""
    request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    values = {
        "key": _text(key)[:300],
        "host": _text(entry.get("host", "?")),
        "interaction_id": _bigint(entry.get("interaction_id")),
        "user_id": _bigint(request.get("user_id")),
        "kind": "request" if entry.get("kind") == "request" else "line",
        "error": _text(entry.get("error", "")),
        "entry": json.dumps(entry, default=str),
        "at": entry.get("quarantined_at"),
    }
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_QUARANTINED_SQL, values)


def resolve_quarantined(*, key: str, resolution: str, actor: str) -> bool:
    """Mark a quarantined entry replayed or discarded; False if it was not open."""
    if resolution not in QuarantineResolution.values:
        raise ValueError(f"unknown resolution {resolution!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE journal_quarantine SET resolved_at = clock_timestamp(), resolution = %s,"
            " resolved_by = %s WHERE entry_key = %s AND resolved_at IS NULL RETURNING id",
            [resolution, actor, key],
        )
        return cursor.fetchone() is not None


def _text(value) -> str:
    """Any text as PostgreSQL can store it: NUL and lone surrogates written out as escapes."""
    return str(value).replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _bigint(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**63) <= number < 2**63 else None
