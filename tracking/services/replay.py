"""Replay of the bot's degraded-mode journal into the database."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection, transaction


def replay_journaled_request(*, request: dict, steps: Sequence[dict], actor: str) -> tuple[int, bool]:
    """Write one request the bot journaled while the database was unreachable, with its original
    timestamps and every transition (validated by the usual triggers), in one transaction.
    Idempotent on the interaction id: returns (request id, False) if it is already there."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT request_id, inserted FROM replay_video_request(%s::jsonb, %s::jsonb, %s)",
                       [json.dumps(request), json.dumps(list(steps)), actor])
        request_id, inserted = cursor.fetchone()
    return request_id, inserted
