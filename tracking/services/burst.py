"""Admitting a burst of requests in one statement and one commit (admit_video_requests in SQL).

Each element is admitted by admit_video_request, as ``admit_request`` does one; the batch only
saves the round trips and commits: under a burst of /veo the bot's pooled connections, each
carrying one committed transaction at a time, were what the interactions queued for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from psycopg.types.json import Jsonb

from tracking.models import Source
from tracking.services.admission import Admission, VideoParameters, checked_admission
from tracking.services.replies import ReplyTokenRow


@dataclass(frozen=True)
class AdmissionCall:
    """One interaction to admit, as ``admit_request`` takes it."""

    interaction_id: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    params: VideoParameters
    role_ids: Sequence[int] | None = None
    # The reply's token, kept with the admission when it admits a new request (one commit for
    # both, where the token used to take a round trip of its own after the answer).
    reply_token: ReplyTokenRow | None = None


@dataclass(frozen=True)
class BurstAnswer:
    admission: Admission
    # Where a pending request stands (selectors.queue_estimate's figures, from the same
    # statement); None for requests that are not pending.
    ahead: int | None
    median_generation_ms: int | None
    token_kept: bool = False  # the call's reply_token was written with this admission


def checked_element(call: AdmissionCall, *, source: str = Source.DISCORD) -> dict:
    """``call`` as an element of admit_video_requests' array; InvalidInput when it is not admissible."""
    roles, clean = checked_admission(
        interaction_id=call.interaction_id,
        user_id=call.user_id,
        guild_id=call.guild_id,
        channel_id=call.channel_id,
        params=call.params,
        source=source,
        role_ids=call.role_ids,
    )
    return {
        "interaction_id": call.interaction_id,
        "user_id": call.user_id,
        "guild_id": call.guild_id,
        "channel_id": call.channel_id,
        "prompt": clean.prompt,
        "negative_prompt": clean.negative_prompt,
        "duration_seconds": clean.duration_seconds,
        "aspect_ratio": clean.aspect_ratio,
        "resolution": clean.resolution,
        "generate_audio": clean.generate_audio,
        "person_generation": clean.person_generation,
        "seed": clean.seed,
        "model": clean.model,
        "parent_id": clean.parent_id,
        "derived_as": clean.derived_as,
        "image_uri": clean.image_uri,
        "last_frame_uri": clean.last_frame_uri,
        "video_input_uri": clean.video_input_uri,
        "role_ids": roles,
    }


_ANSWER_COLUMNS = (
    "request_id, admitted, duplicate, status, reason_code, reason, used, quota_limit, remaining,"
    " reset_at, cost_usd, money_left_usd, money_scope, money_frees_at, ahead, median_ms"
)
_ADMIT_SQL = (
    "SELECT " + _ANSWER_COLUMNS + " FROM admit_video_requests(%s, %s, %s, %s, %s, %s::numeric, %s, %s) ORDER BY ordinal"
)
# The same, and the reply tokens of the elements it admits anew (by ordinal: the element's place
# in the array, 1-based), with replies.keep_reply_tokens' sweep of expired ones.
_ADMIT_KEEPING_TOKENS_SQL = (
    "WITH answers AS MATERIALIZED ("
    " SELECT * FROM admit_video_requests(%s, %s, %s, %s, %s, %s::numeric, %s, %s)),"
    " swept AS (DELETE FROM reply_tokens WHERE interaction_id IN"
    " (SELECT interaction_id FROM reply_tokens WHERE expires_at < clock_timestamp() LIMIT 20)),"
    " kept AS ("
    " INSERT INTO reply_tokens (interaction_id, application_id, token, size_limit, expires_at)"
    " SELECT t.interaction_id, t.application_id, t.token, t.size_limit, t.expires_at"
    " FROM jsonb_to_recordset(%s::jsonb)"
    " AS t (ordinal integer, interaction_id bigint, application_id bigint, token text, size_limit integer,"
    " expires_at timestamptz)"
    " JOIN answers a ON a.ordinal = t.ordinal"
    " WHERE a.admitted AND NOT a.duplicate"
    " ON CONFLICT (interaction_id) DO NOTHING)"
    " SELECT " + _ANSWER_COLUMNS + " FROM answers ORDER BY ordinal"
)


def admit_requests(
    *,
    elements: Sequence[dict],
    position_cap: int,
    eta_sample: int,
    source: str = Source.DISCORD,
    reply_tokens: Sequence[ReplyTokenRow | None] = (),
) -> list[BurstAnswer]:
    """Admit ``elements`` (from ``checked_element``) in one statement, in order: one answer each.
    An element the database refuses outright (an interaction id of another user's) fails the
    whole statement, and nothing of it commits. ``reply_tokens``, one per element or none: the
    token of each element admitted anew is kept in the same statement."""
    statement = admission_statement(
        elements=elements, position_cap=position_cap, eta_sample=eta_sample, source=source, reply_tokens=reply_tokens
    )
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, statement.arguments)
        return statement.answers(cursor.fetchall())


@dataclass(frozen=True)
class AdmissionStatement:
    """``admit_requests``' statement and its arguments (for Django's cursor or a psycopg one of
    our own: generation.admission_conn), and how its rows become the answers."""

    sql: str
    arguments: list
    with_token: frozenset[int]  # ordinals (1-based) of the elements given a reply token

    def answers(self, rows: Sequence[Sequence]) -> list[BurstAnswer]:
        return [
            BurstAnswer(
                Admission(*row[:14]),
                row[14],
                round(row[15]) if row[15] is not None else None,
                token_kept=ordinal in self.with_token and row[1] and not row[2],
            )
            for ordinal, row in enumerate(rows, start=1)
        ]


def admission_statement(
    *,
    elements: Sequence[dict],
    position_cap: int,
    eta_sample: int,
    source: str = Source.DISCORD,
    reply_tokens: Sequence[ReplyTokenRow | None] = (),
) -> AdmissionStatement:
    """The statement ``admit_requests`` runs (same arguments), to run elsewhere."""
    arguments = [
        Jsonb(list(elements)),
        source,
        settings.VEO_QUOTA_LIMIT,
        settings.VEO_QUOTA_WINDOW,
        settings.VEO_QUOTA_MAX_IN_FLIGHT,
        settings.VEO_BUDGET_USD_PER_DAY,
        position_cap,
        eta_sample,
    ]
    tokens = [_token_element(ordinal, row) for ordinal, row in enumerate(reply_tokens, start=1) if row is not None]
    if not tokens:
        return AdmissionStatement(_ADMIT_SQL, arguments, frozenset())
    # One JSON document rather than an array per column: psycopg adapts a list element by
    # element in Python (the statement's arguments took 91 µs to adapt with six arrays, 59 now).
    return AdmissionStatement(
        _ADMIT_KEEPING_TOKENS_SQL, [*arguments, Jsonb(tokens)], frozenset(token["ordinal"] for token in tokens)
    )


def _token_element(ordinal: int, row: ReplyTokenRow) -> dict:
    return {
        "ordinal": ordinal,
        "interaction_id": row.interaction_id,
        "application_id": row.application_id,
        "token": row.token,
        "size_limit": row.size_limit,
        "expires_at": row.expires_at.isoformat(),
    }
