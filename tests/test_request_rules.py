"""video_requests' rules (0028): one CHECK calling video_request_broken_rule, in place of the 37
CHECK constraints it replaced. The replaced constraints are read from 0028's down migration,
which restores them, and evaluated on the same rows as the function: for every row, the function
names a rule exactly when one of them is false, and the first such by name. Each column takes
valid values, each rule's edges, invalid ones and NULL: every value of every column, alone and
beside every value of every other column, then whole rows drawn by Hypothesis, so every rule is
broken, kept and unknown (NULL) in turn, alone and together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql

from tests.factories import VideoRequestFactory
from tests.hypothesis_profiles import examples
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

DOWN = Path(__file__).resolve().parent.parent / "migrations_sql" / "0028_request_rules.down.sql"
REPLACED = dict(re.findall(r"ADD CONSTRAINT (\w+) CHECK (.*?)(?: NOT VALID)?[,;]\n", DOWN.read_text()))

# Text lengths (as_row makes the text), around every bound a rule sets.
LENGTHS = [None, 0, 1, 2, 199, 200, 201, 1999, 2000, 2001, 3999, 4000, 4001]
# Each column's values: valid ones, each rule's edges, invalid ones, and NULL.
VALUES = {
    "aspect_ratio": ["16:9", "9:16", "4:3", "", None],
    "attempts": [None, -1, 0, 3],
    "channel_id": [None, -5, 0, 1, 2**62],
    "status": ["pending", "generating", "completed", "failed", "timeout", "cancelled", "rejected", "done", None],
    "output_uris": [None, [], ["gs://b/v.mp4"]],
    "cost_estimated_usd": [None, "-0.01", "0", "3.2"],
    "cost_final_usd": [None, "-1", "0", "3.2"],
    "delivery_method": ["interaction", "channel", "cli", "undeliverable", "email", None],
    "delivered_at": [None, "2026-12-07T10:00:00Z"],
    "derived_as": ["reroll", "edit", "extend", "remix", None],
    "duration_seconds": [None, 0, 4, 5, 6, 8, 10],
    "counts_toward_quota": [None, True, False],
    "error_code": ["content_filtered", "veo_error", "a", "A_bad", "9x", "x" * 63, "x" * 64, "", None],
    "error_message": LENGTHS,
    "operation_name": ["operations/1", None],
    "guild_id": [None, -1, 0, 7],
    "image_uri": LENGTHS,
    "last_frame_uri": LENGTHS,
    "claimed_by": ["worker-1", None],
    "lease_expires_at": [None, "2026-12-07T10:00:00Z"],
    "model": LENGTHS,
    "negative_prompt": LENGTHS,
    "output_size_bytes": [None, -1, 0, 10],
    "parent_id": [None, 1],
    "person_generation": ["dont_allow", "allow_adult", "allow_all", "everyone", None],
    "priority": [None, -101, -100, 0, 100, 101],
    "prompt": LENGTHS,
    "resolution": ["720p", "1080p", "4k", None],
    "review_status": ["unreviewed", "approved", "flagged", "removed", "hidden", None],
    "safety_filtered_count": [None, -1, 0, 2],
    "seed": [None, -1, 0, 4294967295, 4294967296],
    "source": ["discord", "cli", "web", None],
    "user_id": [None, -1, 0, 9],
    "video_input_uri": LENGTHS,
}
COLUMNS = {column: st.sampled_from(values) for column, values in VALUES.items()}
LENGTH_COLUMNS = {
    "error_message",
    "image_uri",
    "last_frame_uri",
    "model",
    "negative_prompt",
    "prompt",
    "video_input_uri",
}

# Both verdicts on each row, in one statement: the replaced constraints that are false (a CHECK
# fails only on false), and the function's answer.
VERDICTS_SQL = sql.SQL(
    "SELECT ARRAY(SELECT name FROM (VALUES {}) AS c (name, ok) WHERE ok IS FALSE ORDER BY name),"
    " video_request_broken_rule(r)"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS given (row, n),"
    " jsonb_populate_record(NULL::video_requests, given.row) AS r ORDER BY given.n"
).format(
    sql.SQL(", ").join(
        sql.SQL("({}, {})").format(sql.Literal(name), sql.SQL(check)) for name, check in REPLACED.items()
    )
)


# A row that keeps every rule; each test changes some of its columns.
VALID = dict.fromkeys(COLUMNS) | {
    "aspect_ratio": "16:9",
    "attempts": 0,
    "channel_id": 1,
    "status": "pending",
    "output_uris": [],
    "duration_seconds": 8,
    "counts_toward_quota": True,
    "model": 3,
    "person_generation": "allow_adult",
    "priority": 0,
    "prompt": 3,
    "resolution": "720p",
    "review_status": "unreviewed",
    "safety_filtered_count": 0,
    "source": "discord",
    "user_id": 9,
}


def as_row(drawn: dict) -> dict:
    return {
        column: "x" * value if column in LENGTH_COLUMNS and value is not None else value
        for column, value in drawn.items()
    }


def verdicts_of(rows: list[dict]) -> list[tuple[list[str], str | None]]:
    with connection.cursor() as cursor:
        cursor.execute(VERDICTS_SQL, [json.dumps([as_row(row) for row in rows])])
        return cursor.fetchall()


def verdicts(drawn: dict) -> tuple[list[str], str | None]:
    return verdicts_of([drawn])[0]


def assert_agree(rows: list[dict]) -> None:
    disagree = [
        (changed, broken, named)
        for changed, (broken, named) in zip(rows, verdicts_of(rows), strict=True)
        if named != (broken[0] if broken else None)
    ]
    assert not disagree, disagree[:5]


def test_the_down_migration_restores_every_rule_the_function_knows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'video_request_broken_rule'")
        named = set(re.findall(r"'(video_requests_\w+)'", cursor.fetchone()[0]))
    assert len(REPLACED) == 37
    assert named == set(REPLACED)


def test_every_value_of_every_pair_of_columns_agrees():
    """Every value of each column, alone and beside every value of every other column, on the
    valid row: each rule is broken, kept and unknown, and each pair of rules meets."""
    columns = sorted(COLUMNS)
    rows = [VALID | {column: value} for column in columns for value in VALUES[column]]
    rows += [
        VALID | {first: one, second: other}
        for i, first in enumerate(columns)
        for second in columns[i + 1 :]
        for one in VALUES[first]
        for other in VALUES[second]
    ]
    assert_agree(rows)


@hypothesis_settings(max_examples=examples(quick=200), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries(COLUMNS))
def test_every_column_drawn_at_once_agrees(drawn):
    assert_agree([drawn])


# What breaks each rule alone, on the valid row.
BREAKS = {
    "video_requests_aspect_ratio_check": {"aspect_ratio": "4:3"},
    "video_requests_attempts_check": {"attempts": -1},
    "video_requests_channel_id_check": {"channel_id": 0},
    "video_requests_completed_has_output": {"status": "completed", "counts_toward_quota": True},
    "video_requests_cost_estimated_usd_check": {"cost_estimated_usd": "-0.01"},
    "video_requests_cost_final_usd_check": {"cost_final_usd": "-1"},
    "video_requests_delivery_method_check": {"delivery_method": "email", "delivered_at": "2026-12-07T10:00:00Z"},
    "video_requests_delivery_pair": {"delivery_method": "cli"},
    "video_requests_derived_as_check": {"derived_as": "remix"},
    "video_requests_duration_check": {"duration_seconds": 5},
    "video_requests_ended_by_us_never_counts": {"status": "cancelled"},
    "video_requests_error_code_check": {"error_code": "A_bad"},
    "video_requests_error_message_check": {"error_message": 4001},
    "video_requests_failed_has_reason": {"status": "failed", "counts_toward_quota": False},
    "video_requests_generating_has_operation": {"status": "generating"},
    "video_requests_guild_id_check": {"guild_id": 0},
    "video_requests_image_uri_check": {"image_uri": 0},
    "video_requests_last_frame_needs_image": {"last_frame_uri": 10},
    "video_requests_last_frame_uri_check": {"image_uri": 10, "last_frame_uri": 2001},
    "video_requests_lease_pair": {"claimed_by": "worker-1"},
    "video_requests_model_check": {"model": 201},
    "video_requests_negative_prompt_check": {"negative_prompt": 4001},
    "video_requests_output_size_check": {"output_size_bytes": -1},
    "video_requests_parent_has_kind": {"parent_id": 1},
    "video_requests_person_generation_check": {"person_generation": "everyone"},
    "video_requests_priority_check": {"priority": 101},
    "video_requests_prompt_check": {"prompt": 0},
    "video_requests_rejected_has_reason": {"status": "rejected", "counts_toward_quota": False},
    "video_requests_rejected_never_counts": {"status": "rejected", "error_code": "banned"},
    "video_requests_resolution_check": {"resolution": "4k"},
    "video_requests_review_status_check": {"review_status": "hidden"},
    "video_requests_safety_filtered_count_check": {"safety_filtered_count": -1},
    "video_requests_seed_check": {"seed": 4294967296},
    "video_requests_source_check": {"source": "web"},
    "video_requests_status_check": {"status": "done"},
    "video_requests_user_id_check": {"user_id": 0},
    "video_requests_video_input_uri_check": {"video_input_uri": 2001},
}


@pytest.mark.parametrize("rule", sorted(REPLACED))
def test_each_rule_alone_is_reported_under_its_own_name(rule):
    """A valid row with what breaks that rule alone changed."""
    assert verdicts(VALID) == ([], None)
    breaking = BREAKS[rule]
    broken, named = verdicts(VALID | breaking)
    assert broken == [rule] and named == rule, (breaking, broken, named)


def test_a_write_that_breaks_a_rule_is_refused_as_its_constraint_was():
    request = VideoRequestFactory()
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        VideoRequest.objects.filter(pk=request.pk).update(priority=500)
    cause = refused.value.__cause__
    assert isinstance(cause, psycopg.errors.CheckViolation)
    assert cause.diag.constraint_name == "video_requests_priority_check"
    assert cause.diag.table_name == "video_requests"
    assert cause.diag.message_primary == (
        'new row for relation "video_requests" violates check constraint "video_requests_priority_check"'
    )
    request.refresh_from_db()
    assert request.priority != 500
