"""Quota under attack: admissions from 8 OS processes at once, for one user and for 100.

Every user starts with a full quota whose oldest entries leave the window during the attack,
so slots free one at a time while 32 connections race for them. Afterwards the rows are judged
by an oracle of the test's own -- the policy each request should have had, worked out from
the policies the test made (user > guild > default), not by the project's resolve_quota_policy:
in no rolling window did any user get more than that limit (or more in flight than its max);
no request was refused for the quota while its window had room (or for the in-flight cap while
it had a free place); every refusal's reset time is when the slot it waits for frees; and every
attempt came back admitted or rejected with a reason.
"""

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.concurrency import Attempt, Defaults, attack_from_processes
from tests.factories import QuotaPolicyFactory, UserBanFactory, VideoRequestFactory
from tests.workers import truncate_requests

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

PROCESSES = 8
LANES = 4  # connections per process: 32 at once, well inside max_connections
DEFAULTS = Defaults(limit=5, window=timedelta(seconds=2))  # short, so the default window rolls too
REPEATS = 0.05  # share of attempts that re-send an earlier interaction (Discord retries)


def _plan(
    rng: random.Random,
    users: list[tuple[int, int | None]],
    weights: list[float],
    attempts: int,
    span: float,
    first_interaction: int,
) -> list[list[list[Attempt]]]:
    """attempts spread over PROCESSES x LANES lanes, paced to last about `span` seconds,
    with a few lanes re-sending an interaction they already sent."""
    lanes: list[list[Attempt]] = [[] for _ in range(PROCESSES * LANES)]
    per_lane = attempts / len(lanes)
    for number in range(attempts):
        lane = lanes[number % len(lanes)]
        pause = rng.uniform(0, 2 * span / per_lane)
        if lane and rng.random() < REPEATS:
            again = rng.choice(lane)
            lane.append(Attempt(again.interaction_id, again.user_id, again.guild_id, pause))
            continue
        user_id, guild_id = rng.choices(users, weights)[0]
        lane.append(Attempt(first_interaction + number, user_id, guild_id, pause))
    return [lanes[p * LANES : (p + 1) * LANES] for p in range(PROCESSES)]


def _full_history(rng: random.Random, users: list[tuple[int, int | None, int, timedelta]], span: float) -> None:
    """For each (user, guild, limit, window): a quota already used up, its entries leaving the
    window one by one during the attack (this runs just before it starts)."""
    for user_id, guild_id, limit, window in users:
        start = timezone.now() - window
        for _ in range(limit):
            VideoRequestFactory(
                user_id=user_id,
                guild_id=guild_id,
                status="completed",
                created_at=start + timedelta(seconds=rng.uniform(0.2, span)),
            )


@dataclass(frozen=True)
class Policy:
    limit: int
    window: timedelta
    max_in_flight: int = 0  # 0: no separate cap


DEFAULT_POLICY = Policy(DEFAULTS.limit, DEFAULTS.window, DEFAULTS.max_in_flight)
PolicyOf = Callable[[int, int | None], Policy]  # (user, guild of the request) -> what must apply


def _judge(rows: list[tuple], answers_by_id: dict, policy_of: PolicyOf) -> dict[str, list]:
    """Every admitted and quota-refused attempt against the oracle. ``rows``: (id, interaction_id,
    user_id, guild_id, status, counts, error_code, created_at) of every row of the attacked users,
    history included. Admission stamps created_at after taking the user's lock, so a user's
    decisions happened in created_at order, each seeing every row before it."""
    counted: dict[int, list] = defaultdict(list)  # user -> (created_at, status) of rows that count
    for _, _, user_id, _, status, counts, _, created_at in rows:
        if counts:
            counted[user_id].append((created_at, status))
    found: dict[str, list] = {"over_limit": [], "over_in_flight": [], "refused_with_room": [], "wrong_reset": []}
    for request_id, interaction_id, user_id, guild_id, status, _, error_code, at in rows:
        if interaction_id not in answers_by_id:
            continue  # history
        policy = policy_of(user_id, guild_id)
        before = [(t, s) for t, s in counted[user_id] if at - policy.window < t < at]
        in_flight = sum(s in ("pending", "generating") for _, s in before)
        if status == "pending":
            if len(before) + 1 > policy.limit:
                found["over_limit"].append((request_id, user_id, policy.limit, len(before) + 1))
            if policy.max_in_flight and in_flight + 1 > policy.max_in_flight:
                found["over_in_flight"].append((request_id, user_id, policy.max_in_flight, in_flight + 1))
        elif error_code == "quota_exceeded":
            if len(before) < policy.limit:
                found["refused_with_room"].append((request_id, user_id, policy.limit, len(before)))
            # The slot it waits for: the limit-th newest entry that counts, leaving the window.
            frees = sorted(t for t, _ in before)[-policy.limit] + policy.window if before else None
            if answers_by_id[interaction_id].reset_at != frees:
                found["wrong_reset"].append((request_id, answers_by_id[interaction_id].reset_at, frees))
        elif error_code == "too_many_in_flight" and in_flight < policy.max_in_flight:
            found["refused_with_room"].append((request_id, user_id, policy.max_in_flight, in_flight))
    return found


def _check(answers, plan, report, policy_of: PolicyOf) -> None:
    sent = [attempt for lanes in plan for lane in lanes for attempt in lane]
    errors = [a for a in answers if a.error]
    first_answer = {}
    for answer in answers:
        if not answer.error and not answer.duplicate:
            first_answer.setdefault(answer.interaction_id, answer)
    unique = {attempt.interaction_id for attempt in sent}
    admitted_ids = [a.request_id for a in first_answer.values() if a.admitted]

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, interaction_id, user_id, guild_id, status, counts_toward_quota, error_code, created_at"
            " FROM video_requests WHERE user_id = ANY(%s) ORDER BY created_at",
            [sorted({attempt.user_id for attempt in sent})],
        )
        all_rows = cursor.fetchall()
        cursor.execute(
            "SELECT interaction_id, id, status, counts_toward_quota, error_code, error_message"
            " FROM video_requests WHERE interaction_id = ANY(%s)",
            [list(unique)],
        )
        rows = {row[0]: row for row in cursor.fetchall()}
    judged = _judge(all_rows, first_answer, policy_of)
    over_limit, over_in_flight = judged["over_limit"], judged["over_in_flight"]

    unexplained = [r for r in rows.values() if r[2] == "rejected" and not (r[4] and r[5])]
    disagreeing = [
        i
        for i, a in first_answer.items()
        if i in rows and (rows[i][1] != a.request_id or (rows[i][2] == "pending") != a.admitted)
    ]
    repeats_differ = [
        a
        for a in answers
        if a.duplicate
        and a.interaction_id in first_answer
        and (a.request_id, a.admitted)
        != (first_answer[a.interaction_id].request_id, first_answer[a.interaction_id].admitted)
    ]
    full_windows = sum(1 for r in all_rows if r[6] == "quota_exceeded")  # refusals the oracle found right
    report.find(
        answers=len(answers),
        errors=len(errors),
        rows=len(rows),
        admitted=len(admitted_ids),
        rejected=dict(Counter(r[4] for r in rows.values() if r[2] == "rejected")),
        repeats_answered_alike=sum(1 for a in answers if a.duplicate) - len(repeats_differ),
        admissions_judged=len(admitted_ids),
        quota_refusals_judged=full_windows,
        windows_over_the_limit=len(over_limit),
        windows_over_max_in_flight=len(over_in_flight),
        refused_while_the_window_had_room=len(judged["refused_with_room"]),
        refusals_with_a_wrong_reset_time=len(judged["wrong_reset"]),
        rejections_without_reason=len(unexplained),
        answers_disagreeing_with_rows=len(disagreeing),
    )

    assert not errors, f"{len(errors)} attempts failed, e.g. {errors[0].error}"
    assert len(answers) == len(sent), f"{len(sent) - len(answers)} attempts got no answer"
    assert set(rows) == unique and len(first_answer) == len(unique), "an attempt left no row"
    assert not over_limit, f"{len(over_limit)} windows over the limit, e.g. (user, limit, _, count) {over_limit[0]}"
    assert not over_in_flight, f"{len(over_in_flight)} windows over max in flight, e.g. {over_in_flight[0]}"
    assert not judged["refused_with_room"], (
        f"refused with room: (id, user, limit, used) {judged['refused_with_room'][:3]}"
    )
    assert not judged["wrong_reset"], f"wrong reset times: (id, said, frees) {judged['wrong_reset'][:3]}"
    assert not unexplained and not disagreeing and not repeats_differ
    assert admitted_ids and full_windows, "the attack never filled a window: it tested nothing"


def test_one_user_from_eight_processes(db_settings, scale, chaos_seed, chaos_report):
    truncate_requests()
    attempts, span = scale(quick=200, full=1000), scale(quick=3.0, full=6.0)
    rng = random.Random(chaos_seed)
    user_id, home, elsewhere = 770_001, 7_700_001, 7_700_002
    # The user's own policy wins over both guilds' (one of which has its own policy).
    QuotaPolicyFactory(user_id=user_id, guild_id=None, quota_limit=20, quota_window=timedelta(minutes=1))
    QuotaPolicyFactory(user_id=None, guild_id=elsewhere, quota_limit=200, quota_window=timedelta(minutes=1))
    history = [(user_id, home, 20, timedelta(minutes=1))]
    plan = _plan(
        rng,
        [(user_id, home), (user_id, elsewhere), (user_id, None)],
        [3, 1, 1],
        attempts,
        span,
        first_interaction=7_700_000_000,
    )
    chaos_report.inject(
        attempts=attempts,
        processes=PROCESSES,
        connections=PROCESSES * LANES,
        policy="user override 20 per minute, quota full at start and freeing during the attack",
        guilds="home (default), another with a 200/min guild policy, and DMs",
    )

    answers = attack_from_processes(db_settings, plan, DEFAULTS, just_before=lambda: _full_history(rng, history, span))
    _check(answers, plan, chaos_report, policy_of=lambda user, guild: Policy(20, timedelta(minutes=1)))


def test_hundred_users_from_eight_processes(db_settings, scale, chaos_seed, chaos_report):
    truncate_requests()
    attempts, span = scale(quick=2000, full=10000), scale(quick=3.0, full=8.0)
    rng = random.Random(chaos_seed)
    minute = timedelta(minutes=1)
    capped_guild, tight_guild, plain_guild = 7_710_001, 7_710_002, 7_710_003
    QuotaPolicyFactory(user_id=None, guild_id=capped_guild, quota_limit=6, quota_window=minute)
    QuotaPolicyFactory(user_id=None, guild_id=tight_guild, quota_limit=2, quota_window=2 * minute, max_in_flight=1)
    guild_policies = {capped_guild: Policy(6, minute), tight_guild: Policy(2, 2 * minute, max_in_flight=1)}
    user_policies: dict[int, Policy] = {}
    users: list[tuple[int, int | None]] = []
    history = []
    for number in range(100):
        user_id = 771_000 + number
        if number < 10:  # own policy, inside a guild that has one too: the user's wins
            guild = capped_guild
            QuotaPolicyFactory(user_id=user_id, guild_id=None, quota_limit=4, quota_window=minute)
            user_policies[user_id] = Policy(4, minute)
            history.append((user_id, guild, 4, minute))
        elif number < 20:  # own policy with an in-flight cap below its limit
            guild = plain_guild
            QuotaPolicyFactory(user_id=user_id, guild_id=None, quota_limit=10, quota_window=minute, max_in_flight=3)
            user_policies[user_id] = Policy(10, minute, max_in_flight=3)
        elif number < 50:
            guild = capped_guild
            history.append((user_id, guild, 6, minute))
        elif number < 70:
            guild = tight_guild
        else:  # the configured default: 5 per 2 s, rolling many times during the attack
            guild = rng.choice([plain_guild, None])
        users.append((user_id, guild))
    banned = [users[3][0], users[75][0]]
    for user_id in banned:
        UserBanFactory(user_id=user_id)
    weights = [rng.paretovariate(1.2) for _ in users]  # a few users hammer, most knock a little
    plan = _plan(rng, users, weights, attempts, span, first_interaction=7_710_000_000)
    chaos_report.inject(
        attempts=attempts,
        users=len(users),
        processes=PROCESSES,
        connections=PROCESSES * LANES,
        banned=len(banned),
        policies="10 user (4/min, full at start), 10 user (10/min, 3 in flight), "
        "guild 6/min (30 users, full at start), guild 2/2min 1 in flight (20 users), "
        "default 5/2s (30 users)",
    )

    def policy_of(user_id: int, guild_id: int | None) -> Policy:  # user > guild > default, as the test made them
        return user_policies.get(user_id) or guild_policies.get(guild_id) or DEFAULT_POLICY

    answers = attack_from_processes(db_settings, plan, DEFAULTS, just_before=lambda: _full_history(rng, history, span))
    _check(answers, plan, chaos_report, policy_of)
    assert Counter(a.reason_code for a in answers if a.user_id in banned and not a.error).keys() <= {"banned"}, (
        "a banned user was admitted or refused for another reason"
    )
