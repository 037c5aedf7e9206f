"""The policy look-up as one index probe (0030) chooses what 0020's bitmap OR chose: for every
set of policies Hypothesis draws (users' own, for a guild and for every guild; guilds'; roles';
with ties on every key that orders them) and every caller (users and guilds with and without
policies, ids that are not positive, no guild, roles none, some, others'), resolve_quota_policy
answers exactly what 0020's definition, read from 0030's down migration, answers."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.hypothesis_profiles import examples

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

DOWN = Path(__file__).resolve().parent.parent / "migrations_sql" / "0030_policy_scope_probe.down.sql"
PREVIOUS = re.search(r"CREATE OR REPLACE FUNCTION resolve_quota_policy\(.*?\n\$\$;", DOWN.read_text(), re.S).group(0)

USERS, GUILDS, ROLES = (1, 2, 10), (10, 11), (100, 101, 102)
SCOPES = (
    [("user", user, None, None) for user in USERS]
    + [("user in guild", user, guild, None) for user in USERS for guild in GUILDS]
    + [("guild", None, guild, None) for guild in GUILDS]
    + [("role", None, guild, role) for guild in GUILDS for role in ROLES]
)
# Few values per key, so that ties reach every key of the order and the id breaks the last.
POLICY = st.fixed_dictionaries(
    {
        "quota_limit": st.sampled_from([0, 1, 2]),
        "quota_window": st.sampled_from([timedelta(hours=1), timedelta(days=1)]),
        "budget_usd": st.sampled_from([None, Decimal("1.00"), Decimal("2.00")]),
        "max_in_flight": st.sampled_from([None, 1, 2]),
        "priority": st.sampled_from([-1, 0, 1]),
    }
)
POLICIES = st.lists(st.tuples(st.sampled_from(SCOPES), POLICY), max_size=12, unique_by=lambda drawn: drawn[0])

CALLERS = [
    (user, guild, roles)
    for user in (1, 2, 3, 10, 0, -1, -10)
    for guild in (10, 11, 12, None, 0, -10)
    for roles in (None, [], [100], [100, 101], [101, 102, 103], [999])
]
CALLERS_SQL = (
    "SELECT c.n, now_.*, then_.*"
    " FROM unnest(%(users)s::bigint[], %(guilds)s::bigint[], %(roles)s::text[]) WITH ORDINALITY AS c (u, g, r, n),"
    " LATERAL resolve_quota_policy(c.u, c.g, c.r::bigint[], 5, interval '1 day', 3) AS now_,"
    " LATERAL resolve_quota_policy_0020(c.u, c.g, c.r::bigint[], 5, interval '1 day', 3) AS then_"
    " WHERE (now_.*) IS DISTINCT FROM (then_.*)"
)

# A policy as drawn; a budget comes with its window, as the schema requires.
INSERT_SQL = (
    "INSERT INTO quota_policies (user_id, guild_id, role_id, quota_limit, quota_window, budget_usd, budget_window,"
    " max_in_flight, priority)"
    " VALUES (%(user)s, %(guild)s, %(role)s, %(quota_limit)s, %(quota_window)s, %(budget_usd)s,"
    " CASE WHEN %(budget_usd)s::numeric IS NOT NULL THEN interval '1 day' END, %(max_in_flight)s, %(priority)s)"
)


@pytest.fixture
def previous_lookup():
    """0020's look-up beside today's, for this test's transaction only."""
    with connection.cursor() as cursor:
        cursor.execute(PREVIOUS.replace("FUNCTION resolve_quota_policy(", "FUNCTION resolve_quota_policy_0020(", 1))


def disagreements(policies: list) -> list:
    """Every caller whose policy today's look-up and 0020's answer differently, the policies in
    place (written in the order drawn, so ids follow it), then rolled back."""
    with transaction.atomic(), connection.cursor() as cursor:
        for (_, user, guild, role), values in policies:
            cursor.execute(INSERT_SQL, {"user": user, "guild": guild, "role": role, **values})
        cursor.execute(
            CALLERS_SQL,
            {
                "users": [user for user, _, _ in CALLERS],
                "guilds": [guild for _, guild, _ in CALLERS],
                "roles": [None if roles is None else "{" + ",".join(map(str, roles)) + "}" for _, _, roles in CALLERS],
            },
        )
        found = [(CALLERS[row[0] - 1], row[1:]) for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return found


@hypothesis_settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(POLICIES)
def test_the_probe_chooses_what_the_bitmap_or_chose(previous_lookup, policies):
    assert disagreements(policies) == []


def test_every_scope_at_once_and_every_key_tied_is_chosen_alike(previous_lookup):
    """Beside the drawn sets: a policy for every scope, all alike, so that precedence decides
    between scopes and, among a guild's roles, every key ties and the id decides."""
    alike = {
        "quota_limit": 1,
        "quota_window": timedelta(days=1),
        "budget_usd": None,
        "max_in_flight": None,
        "priority": 0,
    }
    assert disagreements([(scope, alike) for scope in SCOPES]) == []


def test_the_look_up_can_be_served_by_one_index():
    """The probe is one index's (0030's), not a bitmap OR of two: with scans of the whole table
    ruled out (a table this small is read whole, whatever the query), that is the plan."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN (COSTS OFF) SELECT * FROM resolve_quota_policy(5, 10, ARRAY[100]::bigint[], 5, interval '1 day', 3)"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "quota_policies_owner_idx" in plan and "BitmapOr" not in plan, plan
