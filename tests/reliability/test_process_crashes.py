"""Process crashes: kill -9 the bot or a worker at random moments while /veo requests run.

Requests end every way a request can (tests/outcomes.py: each once, then at random; successes
take 1 s up to the run's slowest). Whatever is killed is started again at once. Afterwards
every request must have ended as its scenario says, with its whole history, its user must
have exactly one final answer in Discord, and Veo must have seen exactly one create per
request (a resumed request polls its stored operation, never starts another; a start whose
record a kill prevented is recorded from the killed process's journal) -- more only for a
start Veo refused with 429. VEOBOT_CHAOS_SEED replays a run: the seed fixes the outcomes, the
generation times, the kill moments and the kill targets.
"""

import os
import random
import time
from collections import Counter

import pytest

from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.interactions import slash_command, user
from tests.fakes.veo_server import FakeVeoServer
from tests.outcomes import BY_NAME, OUTCOMES, QUICK_DEADLINES_ENV
from tests.reliability.fleet import Fleet, final_answers, process_env
from tests.workers import database_url, truncate_requests, wait_for
from tracking.models import TERMINAL_STATUSES, VideoRequest, VideoRequestEvent

# Cancellation is the one ending a run of processes cannot provoke (tests/reliability/test_degraded_property.py).
PROVOKED = [outcome for outcome in OUTCOMES if not outcome.cancelled_while]

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIRST_USER = 1_180_000_000_000_100_000


def chaos_seed() -> int:
    return int(os.environ.get("VEOBOT_CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))


def test_kill_9_bots_and_workers_loses_and_duplicates_nothing(chaos_report, scale, db_settings, tmp_path):
    requests = scale(quick=12, full=100)
    kills = scale(quick=3, full=10)
    slowest = scale(quick=3, full=20)  # seconds a generation takes at most (at least 1)
    send_window = scale(quick=8, full=40)  # seconds over which the requests arrive
    seed = chaos_seed()
    rng = random.Random(seed)
    truncate_requests()

    # One user per request, so each answer in Discord belongs to exactly one request. Every outcome
    # once, then at random, successes weighted so that most requests are generating when a kill lands.
    outcomes = PROVOKED + rng.choices(
        PROVOKED, [4 if o.name == "completed" else 1 for o in PROVOKED], k=requests - len(PROVOKED)
    )
    payloads, expected = {}, {}
    for number, outcome in enumerate(outcomes):
        marker = (
            f"[scenario:slow seconds={rng.uniform(1, slowest):.1f}]" if outcome.name == "completed" else outcome.marker
        )
        prompt = f"a red fox, take {number} {marker}"
        author = user(FIRST_USER + number, username=f"user{number}")
        payloads[prompt], expected[prompt] = slash_command("veo", {"prompt": prompt}, author=author), outcome
    # Kills land anywhere from the first request until the slowest generation has ended.
    schedule = [(number * send_window / requests, "send", prompt) for number, prompt in enumerate(payloads)]
    kill_targets = ["bot", "worker-1", "worker-2"]
    schedule += [(rng.uniform(0.5, send_window + slowest), "kill", rng.choice(kill_targets)) for _ in range(kills)]
    schedule.sort(key=lambda event: event[0])
    chaos_report.inject(
        seed=seed,
        requests=requests,
        generation_seconds=f"1-{slowest}",
        processes="1 bot + 2 runworker",
        kills=kills,
        outcomes=dict(Counter(outcome.name for outcome in outcomes)),
    )

    with FakeDiscordServer() as server, FakeVeoServer() as veo:
        env = {
            **process_env(database=database_url(db_settings), veo_url=veo.url, tmp_path=tmp_path, quota_limit=5),
            **QUICK_DEADLINES_ENV,
            # The deadlines leave room for the slowest success and for a killed process's lease,
            # which its requests wait out before anyone resumes them; otherwise a success resumed
            # late ends by its deadline (rightly, but not as its scenario says).
            "VEO_LEASE": "2s",
            "VEO_GENERATION_TIMEOUT": f"{slowest + 8}s",
            "VEO_QUEUE_TIMEOUT": f"{slowest + 8}s",
        }
        fleet = Fleet(env=env, server=server, tmp_path=tmp_path, workers=2)
        try:
            began, killed = time.monotonic(), []
            for at, kind, what in schedule:
                time.sleep(max(0.0, began + at - time.monotonic()))
                if kind == "send":
                    fleet.send(payloads[what])
                else:
                    killed.append(f"{what}@{time.monotonic() - began:.1f}s")
                    fleet.kill(what)
                    fleet.start(what)
            chaos_report.inject(killed=", ".join(killed))

            def all_delivered():
                rows = VideoRequest.objects.filter(status__in=TERMINAL_STATUSES, delivered_at__isnull=False)
                return rows.count() == requests

            wait_for(all_delivered, timeout=scale(quick=90, full=300), interval=0.5, what="every request delivered")
            fleet.watch_for_second_deliveries(db_settings)
            fleet.stop()
        finally:
            fleet.cleanup()
        answers = final_answers(server, payloads)
        creates = Counter(create.prompt for create in veo.creates())
        assert server.internal_errors == []

    rows = {row.prompt: row for row in VideoRequest.objects.all()}
    histories = {
        prompt: [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=row.id).order_by("id")]
        for prompt, row in rows.items()
    }
    wrong = {
        prompt: (row.status, row.error_code, row.counts_toward_quota, histories[prompt])
        for prompt, row in rows.items()
        if (row.status, row.error_code, row.counts_toward_quota)
        != (expected[prompt].status, expected[prompt].code, not expected[prompt].refunded)
        or not expected[prompt].told_by(histories[prompt])
    }
    retried = BY_NAME["queue_timeout"]  # its starts are refused (429) and sent again: not a second video
    created_twice = [p for p in payloads if creates[p] != 1 and not (expected[p] is retried and creates[p] > 1)]
    chaos_report.find(
        rows=len(rows),
        statuses=dict(Counter(f"{row.status}/{row.error_code or '-'}" for row in rows.values())),
        ended_otherwise=len(wrong),
        delivery=dict(Counter(row.delivery_method for row in rows.values())),
        resumed_after_a_kill=sum(row.attempts > 1 for row in rows.values()),
        final_answers=dict(Counter(answers.values())),
        veo_creates=sum(creates.values()),
        prompts_created_twice=len(created_twice),
        prompts_never_created=sum(prompt not in creates for prompt in payloads),
    )
    assert set(rows) == set(payloads) and all(row.delivered_at for row in rows.values())
    assert wrong == {}  # every request ended as its scenario says, with its whole history
    assert [p for p, count in answers.items() if count != 1] == []  # one final answer per user
    assert created_twice == [] and [p for p in payloads if creates[p] == 0] == []  # one Veo create per request
    assert "Traceback" not in fleet.logs()
