"""Process crashes: kill -9 the bot or a worker at random moments while /veo requests run.

Whatever is killed is started again at once. Afterwards every request must be finished,
its user must have exactly one final answer in Discord, and Veo must have seen exactly one
create per request (a resumed request polls its stored operation, never starts another).
VEOBOT_CHAOS_SEED replays a run: the seed fixes the generation times, the kill moments and
the kill targets.
"""

import os
import random
import time
from collections import Counter

import pytest

from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.interactions import slash_command, user
from tests.fakes.veo_server import FakeVeoServer
from tests.reliability.fleet import Fleet, final_answers, process_env
from tests.workers import database_url, truncate_requests, wait_for
from tracking.models import TERMINAL_STATUSES, VideoRequest

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

    # One user per request, so each answer in Discord belongs to exactly one request.
    payloads = {}
    for number in range(requests):
        seconds = rng.uniform(1, slowest)
        prompt = f"a red fox, take {number} [scenario:slow seconds={seconds:.1f}]"
        author = user(FIRST_USER + number, username=f"user{number}")
        payloads[prompt] = slash_command("veo", {"prompt": prompt}, author=author)
    # Kills land anywhere from the first request until the slowest generation has ended.
    schedule = [(number * send_window / requests, "send", prompt) for number, prompt in enumerate(payloads)]
    kill_targets = ["bot", "worker-1", "worker-2"]
    schedule += [(rng.uniform(0.5, send_window + slowest), "kill", rng.choice(kill_targets)) for _ in range(kills)]
    schedule.sort(key=lambda event: event[0])
    chaos_report.inject(seed=seed, requests=requests, generation_seconds=f"1-{slowest}",
                        processes="1 bot + 2 runworker", kills=kills)

    with FakeDiscordServer() as server, FakeVeoServer() as veo:
        env = process_env(database=database_url(db_settings), veo_url=veo.url, tmp_path=tmp_path, quota_limit=5)
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
            time.sleep(2)  # room for a duplicate delivery, if one were on its way
            fleet.stop()
        finally:
            fleet.cleanup()
        answers = final_answers(server, payloads)
        creates = Counter(create.prompt for create in veo.creates())
        assert server.internal_errors == []

    rows = list(VideoRequest.objects.all())
    statuses = Counter(row.status for row in rows)
    chaos_report.find(
        rows=len(rows), statuses=dict(statuses),
        delivery=dict(Counter(row.delivery_method for row in rows)),
        resumed_after_a_kill=sum(row.attempts > 1 for row in rows),
        final_answers=dict(Counter(answers.values())),
        veo_creates=sum(creates.values()),
        prompts_created_twice=sum(count > 1 for count in creates.values()),
        prompts_never_created=sum(prompt not in creates for prompt in payloads))
    assert len(rows) == requests and statuses == {"completed": requests}
    assert all(row.delivered_at for row in rows)
    assert [p for p, count in answers.items() if count != 1] == []  # one final answer per user
    assert [p for p in payloads if creates[p] != 1] == []  # one Veo create per request
    assert "Traceback" not in fleet.logs()
