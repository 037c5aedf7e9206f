"""Burst admission: many /veo in one statement (admit_video_requests, generation.admission_batch).

Through the real bot and the fake Discord: a burst is admitted in fewer statements than it has
interactions, each answered once with its own outcome. In SQL: a batch keeps its input order
against the quota, and two batches (or a batch and single admissions) never deadlock.
"""

import asyncio
import json
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from generation.admission import Admitter
from generation.health import DatabaseHealth
from tests.bot_harness import eventually, run_bot
from tests.bot_harness import veo_command as veo
from tests.concurrency import conninfo
from tests.degraded_harness import Degraded
from tests.factories import VideoRequestFactory
from tests.fakes import discord_server as fake
from tests.fakes.interactions import deliver, user
from tests.helpers import next_interaction
from tracking import aio, selectors, services
from tracking.models import VideoRequest
from tracking.services.burst import AdmissionCall

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

ALICE, OTHERS = 4_100_000_001, range(4_100_000_100, 4_100_000_112)


def batch_size_metric() -> tuple[float, float]:
    """(statements, admissions) the batches sent so far in this process."""
    return (
        REGISTRY.get_sample_value("veobot_admission_batch_size_count") or 0,
        REGISTRY.get_sample_value("veobot_admission_batch_size_sum") or 0,
    )


def test_a_burst_is_admitted_in_fewer_statements_than_interactions_each_answered_once(server, settings):
    settings.VEO_QUOTA_LIMIT = 2
    alice = [veo(f"alice's fox number {n}", author=user(ALICE, "alice")) for n in range(3)]
    others = [veo(f"a heron number {n}", author=user(user_id, f"u{user_id}")) for n, user_id in enumerate(OTHERS)]
    seen = veo("a fox seen before", author=user(OTHERS[0], "again"))
    VideoRequestFactory(interaction_id=int(seen["id"]), user_id=OTHERS[0], status="pending", created_at=timezone.now())
    burst = [*alice, *others, seen]
    statements, admissions = batch_size_metric()
    retried = REGISTRY.get_sample_value("veobot_admission_batches_retried_total") or 0

    async def scenario(bot):
        tasks = [task for payload in burst for task in deliver(bot, payload, server=server)]
        await asyncio.wait_for(asyncio.gather(*tasks), 20)

    run_bot(scenario, run_worker=False)

    sent_statements, sent_admissions = (
        a - b for a, b in zip(batch_size_metric(), (statements, admissions), strict=True)
    )
    assert sent_admissions == len(burst)
    assert sent_statements < len(burst)
    assert (REGISTRY.get_sample_value("veobot_admission_batches_retried_total") or 0) == retried  # none one by one
    callbacks = server.requests("POST /interactions/*/callback")
    assert sorted(int(r.path.split("/")[2]) for r in callbacks) == sorted(int(p["id"]) for p in burst)
    replies = {p["id"]: server.original_response(p["id"]) for p in burst}
    # Alice's three in one burst: her quota of two admits the first two she sent.
    outcomes = [VideoRequest.objects.get(interaction_id=p["id"]) for p in alice]
    assert [(r.status, r.error_code) for r in outcomes] == [("pending", None), ("pending", None)] + [
        ("rejected", "quota_exceeded")
    ]
    assert [bool(replies[p["id"]]["flags"] & fake.EPHEMERAL) for p in alice] == [False, False, True]
    assert replies[alice[2]["id"]]["content"].startswith("You have used all 2 of your videos for now.")
    for payload in others:
        assert replies[payload["id"]]["embeds"][0]["title"] == "Queued"
    # The duplicate: answered as the request it already is, not admitted again.
    assert VideoRequest.objects.filter(interaction_id=seen["id"]).count() == 1
    assert replies[seen["id"]]["embeds"][0]["title"] == "Queued"
    assert VideoRequest.objects.filter(interaction_id__in=[int(p["id"]) for p in burst]).count() == len(burst)


def element(user_id: int, *, guild_id: int | None = None, prompt: str = "a red fox in snow") -> dict:
    return services.burst.checked_element(
        AdmissionCall(
            interaction_id=next_interaction(),
            user_id=user_id,
            guild_id=guild_id,
            channel_id=None,
            params=services.clean_parameters(services.VideoParameters(prompt=prompt)),
        )
    )


def admit(elements) -> list:
    return services.burst.admit_requests(
        elements=elements, position_cap=selectors.POSITION_CAP, eta_sample=selectors.ETA_SAMPLE
    )


def test_a_batch_admits_in_its_order_against_the_quota(settings):
    settings.VEO_QUOTA_LIMIT = 5
    for _ in range(3):
        VideoRequestFactory(user_id=ALICE, created_at=timezone.now() - timedelta(hours=1))
    answers = admit([element(ALICE, prompt=f"fox {n}") for n in range(3)] + [element(OTHERS[0])])

    assert [(a.admission.admitted, a.admission.reason_code, a.admission.remaining) for a in answers] == [
        (True, None, 1),
        (True, None, 0),
        (False, "quota_exceeded", 0),
        (True, None, 4),
    ]
    # The estimate of each pending one comes from the same statement, the figures the single
    # path asks for (selectors.queue_estimate) once the batch is in; none for a refusal.
    for answer in answers[:2] + answers[3:]:
        estimate = selectors.queue_estimate(
            request_id=answer.admission.request_id, duration_seconds=4, resolution="720p"
        )
        assert (answer.ahead, answer.median_generation_ms) == (estimate.ahead, estimate.median_generation_ms)
    assert sorted(a.ahead for a in answers if a.ahead is not None) == [0, 1, 2]
    assert answers[2].ahead is None and answers[2].median_generation_ms is None
    rows = VideoRequest.objects.filter(user_id=ALICE, created_at__gt=timezone.now() - timedelta(minutes=1))
    assert sorted(r.prompt for r in rows if r.status == "pending") == ["fox 0", "fox 1"]


def test_a_batch_of_nothing_admissible_is_refused_with_a_message():
    with pytest.raises(Exception, match="jsonb array"), psycopg.connect(**conninfo(_db()), autocommit=True) as conn:
        conn.execute("SELECT * FROM admit_video_requests('{}'::jsonb, 'discord', 5, '1 day', 0, NULL, 10, 10)")


def _db() -> dict:
    from django.db import connection

    return dict(connection.settings_dict)


def test_two_batches_with_the_same_users_in_opposite_orders_both_complete(settings):
    """Admitting element by element, each batch would hold the locks of the users it had done
    while waiting for the next: held up at the same user, each would then wait for the other."""
    settings.VEO_QUOTA_LIMIT = 50
    users = list(OTHERS[:10])
    forward = [element(u) for u in users]
    backward = [element(u) for u in reversed(users)]
    info = conninfo(_db())
    results, errors = {}, []

    def run(name, elements):
        try:
            with psycopg.connect(**info, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT admitted FROM admit_video_requests(%s, 'discord', 50, '1 day', 0, NULL, 10, 10)",
                    [psycopg.types.json.Jsonb(elements)],
                ).fetchall()
                results[name] = [admitted for (admitted,) in rows]
        except Exception as error:  # a deadlock lands here
            errors.append(error)

    with psycopg.connect(**info) as blocker:  # holds the middle user's lock until both batches wait
        blocker.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s::bigint))", [users[4]])
        threads = [threading.Thread(target=run, args=args) for args in (("f", forward), ("b", backward))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (waiting,) = blocker.execute(  # on the user's lock, or on the other batch's transaction
                "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid()"
            ).fetchone()
            if waiting >= 2:
                break
            time.sleep(0.02)
        assert waiting >= 2, f"both batches should be waiting for a lock (errors: {errors})"
        blocker.commit()
    for thread in threads:
        thread.join(20)

    assert errors == []
    assert results == {"f": [True] * 10, "b": [True] * 10}


def test_batches_and_single_admissions_at_once_all_complete(settings):
    """Single admissions lock user -> guild; a batch locks all its users, then its guilds."""
    from django.db import connection

    settings.VEO_QUOTA_LIMIT = 1000
    guild = 4_200_000_001
    with connection.cursor() as cursor:  # a guild budget: admissions in it take the guild's lock too
        cursor.execute(
            "INSERT INTO quota_policies (guild_id, quota_limit, quota_window, guild_budget_usd, guild_budget_window)"
            " VALUES (%s, 1000, '1 day', 1000, '1 day')",
            [guild],
        )
    users = list(OTHERS[:6])
    info = conninfo(_db())
    errors: list[Exception] = []
    single = (
        "SELECT admitted FROM admit_video_request(%s, %s, %s, NULL, 'a red fox in snow', NULL, 4::smallint,"
        " '16:9', '720p', true, 'allow_adult', NULL, %s, 'discord', 1000, interval '1 day', 0)"
    )
    model = services.clean_parameters(services.VideoParameters(prompt="x" * 10)).model

    def batches(order):
        try:
            with psycopg.connect(**info, autocommit=True) as conn:
                for _ in range(15):
                    batch = [element(u, guild_id=guild) for u in order]
                    conn.execute(
                        "SELECT * FROM admit_video_requests(%s, 'discord', 1000, '1 day', 0, NULL, 10, 10)",
                        [psycopg.types.json.Jsonb(batch)],
                    )
        except Exception as error:
            errors.append(error)

    def singles(user_id):
        try:
            with psycopg.connect(**info, autocommit=True) as conn:
                for _ in range(15):
                    conn.execute(single, [next_interaction(), user_id, guild, model])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=batches, args=(order,)) for order in (users, users[::-1])]
    threads += [threading.Thread(target=singles, args=(u,)) for u in users[:3]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert VideoRequest.objects.filter(guild_id=guild).count() == 2 * 15 * 6 + 3 * 15


def test_batches_of_different_users_whose_spend_rows_cross_both_complete(settings):
    """Each priced insert takes its user's row of operator_spend_hours (user_id % 8) until the
    commit: two batches of different users meeting those rows in opposite orders would each
    wait for the other, were batches not taken one at a time."""
    settings.VEO_QUOTA_LIMIT = 1000
    info = conninfo(_db())
    errors: list[Exception] = []
    base = 4_300_000_000  # base % 8 == 0: user base + k is on row k

    def batches(users):
        try:
            with psycopg.connect(**info, autocommit=True) as conn:
                for _ in range(20):
                    conn.execute(
                        "SELECT * FROM admit_video_requests(%s, 'discord', 1000, '1 day', 0, NULL, 10, 10)",
                        [psycopg.types.json.Jsonb([element(u) for u in users])],
                    )
        except Exception as error:
            errors.append(error)

    forward = [base + k for k in range(8)]
    backward = [base + 8 + k for k in reversed(range(8))]
    threads = [threading.Thread(target=batches, args=(users,)) for users in (forward, backward)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert VideoRequest.objects.filter(user_id__in=forward + backward, status="pending").count() == 2 * 20 * 8


def test_admissions_waiting_behind_an_unanswered_batch_go_the_degraded_way_as_soon_as_the_outage_is_declared(
    settings, db_settings
):
    """A batch is in the database and unanswered (here: held up on its user's admission lock) when
    the process declares the database down, as its heartbeat does in a partition. An admission
    waiting for the next batch never reached the database: it is admitted here at once (journaled,
    not held), not after the batch ahead of it has waited out its answer timeout."""
    params = services.clean_parameters(services.VideoParameters(prompt="a red fox in snow"))
    here = Degraded(settings.VEO_JOURNAL_DIR, settings.VEO_MEDIA_ROOT)
    health = DatabaseHealth(meanwhile="admissions go to the journal")
    admitter = Admitter(health=health, limiter=here.limiter, runner=here.runner)

    def admit(user_id: int):
        return asyncio.ensure_future(
            admitter.admit(
                interaction_id=next_interaction(), user_id=user_id, guild_id=None, channel_id=8, params=params
            )
        )

    def lock_waits() -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            return cursor.fetchone()[0]

    async def scenario(blocker):
        in_flight = admit(ALICE)
        await eventually(lock_waits, what="the first batch waiting in the database")
        waiting = admit(OTHERS[0])
        await asyncio.sleep(0)  # queued for the next batch
        health.failed(aio.NoAnswer("PostgreSQL did not answer a heartbeat within 1 s"))
        local = await waiting
        still_waiting = not in_flight.done()
        await asyncio.to_thread(blocker.commit)
        return local, still_waiting, await in_flight

    try:
        with psycopg.connect(**conninfo(db_settings)) as blocker:
            blocker.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s::bigint))", [ALICE])
            local, still_waiting, answered = asyncio.run(scenario(blocker))
    finally:
        health.recovered()
        here.journal.close()

    assert still_waiting  # answered while the batch ahead of it still waited for the database
    assert (local.degraded, local.held, local.admitted) == (True, False, True)
    journaled = [json.loads(line) for line in here.journal.path.read_text().splitlines()]
    assert {"kind": "request", "interaction_id": local.request.interaction_id} in [
        {key: entry.get(key) for key in ("kind", "interaction_id")} for entry in journaled
    ]  # in the journal, for the replay to give the database
    assert (answered.degraded, answered.admitted) == (False, True)  # the batch's own answer, from the database
    assert VideoRequest.objects.filter(user_id=OTHERS[0]).count() == 0


def test_a_batch_ended_to_break_a_deadlock_is_admitted_again_not_taken_for_an_outage(settings):
    """A refund holding a guild's day row in the ledger, then wanting the operator's hour row
    the batch's insert holds, while the batch's insert waits for that day row: PostgreSQL ends the
    batch (it waited first). Nothing of it committed; it is admitted again, one by one, once the
    refund is through, and its caller gets an answer, not the degraded path."""
    from generation.admission_batch import admit_batch
    from generation.admission_conn import AdmissionConnection

    settings.VEO_QUOTA_LIMIT = 1000
    guild, member = 7_700_001, 7_700_002
    call = AdmissionCall(
        interaction_id=next_interaction(),
        user_id=member,
        guild_id=guild,
        channel_id=None,
        params=services.clean_parameters(services.VideoParameters(prompt="a red fox in snow")),
    )
    with psycopg.connect(**conninfo(_db()), autocommit=True) as setup:  # the rows both will want, there before
        setup.execute(
            "INSERT INTO guild_spend_ledger VALUES (%s, 24, date_trunc('day', now(), 'UTC'), 1) ON CONFLICT DO NOTHING",
            [guild],
        )
        setup.execute(
            "INSERT INTO operator_spend_hours VALUES (date_trunc('hour', now(), 'UTC'), operator_spend_shard(%s), 1)"
            " ON CONFLICT DO NOTHING",
            [member],
        )
    outcome: list = []

    def batch():
        admission = AdmissionConnection()
        try:
            outcome.append(asyncio.run(admit_batch(calls=[call], connection=admission, notify=False)))
        except Exception as error:
            outcome.append(error)
        finally:
            admission.close()

    with psycopg.connect(**conninfo(_db())) as refund:
        refund.execute(
            "UPDATE guild_spend_ledger SET usd = usd WHERE guild_id = %s AND hours = 24"
            " AND starts = date_trunc('day', now(), 'UTC')",
            [guild],
        )
        admitting = threading.Thread(target=batch)
        admitting.start()
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"
        deadline = time.monotonic() + 20
        while refund.execute(blocked).fetchone()[0] != 1:  # the batch waits for the day row
            assert time.monotonic() < deadline, ("the batch never came to wait for the day row", outcome)
            time.sleep(0.05)
            # Within a transaction pg_stat_activity is read once: the batch may not have been there yet.
            refund.execute("SELECT pg_stat_clear_snapshot()")
        refund.execute(
            "UPDATE operator_spend_hours SET usd = usd WHERE hour = date_trunc('hour', now(), 'UTC')"
            " AND shard = operator_spend_shard(%s)",
            [member],
        )
        refund.commit()
        admitting.join(30)

    assert not isinstance(outcome[0], Exception), outcome[0]
    outcomes, retried = outcome[0]
    assert retried and outcomes[0].admission.admitted
    assert VideoRequest.objects.get(interaction_id=call.interaction_id).status == "pending"
