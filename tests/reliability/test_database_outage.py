"""Database outage: PostgreSQL really stopped in the middle of a stream of /veo requests.

The run's own server (tests/reliability/own_postgres.py) is stopped with pg_ctl for a while,
then started again. Requests end every way a request can (tests/outcomes.py: each one once
among those sent during the outage, then at random, seeded): a video, the safety filter, an
operation error, a 400, endless 429s, a hang, a lost operation, a Veo that stops answering.
The bot must answer every interaction (degraded answers while the database is away), hold
each user to the quota within each process, and after recovery the database must hold every
request, ended as its scenario says, with its complete history, replayed from the journal,
and nothing quarantined. The second variant also kills the bot (-9) in the middle of the
outage and starts a new one while the database is still down. The third is a network partition
instead: the bots reach PostgreSQL through a TCP proxy that stops forwarding, both ways, without
closing or refusing anything (tests/tcp_proxy.py), until it lets everything held back through.
Every variant also holds each interaction to Discord's 3 s for its first answer.

Cancellation is the one ending not provoked here: during an outage only the requester can
cancel, and tests/reliability/test_degraded_property.py covers it with the engine's own call.
"""

import random
import time
from collections import Counter, defaultdict
from datetime import datetime

import psycopg
import pytest

from generation.journal import degraded_journals
from tests.fakes.discord_server import INTERACTION_DEADLINE, FakeDiscordServer
from tests.fakes.interactions import slash_command, user
from tests.fakes.veo_server import FakeVeoServer
from tests.outcomes import OUTCOMES, QUICK_DEADLINES_ENV
from tests.reliability.fleet import Fleet, final_answers, process_env
from tests.reliability.own_postgres import OwnPostgres
from tests.tcp_proxy import TcpProxy
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.own_server]

FIRST_USER = 1_180_000_000_000_200_000
QUOTA = 3
ASKS_PER_USER = QUOTA + 1  # everyone asks once more than the quota allows
REFUSAL = [("created", "rejected")]
PROVOKED = [outcome for outcome in OUTCOMES if not outcome.cancelled_while]


@pytest.fixture
def postgres():
    server = OwnPostgres()
    yield server
    server.stop()  # not left running between runs


@pytest.mark.parametrize(
    ("fault", "kill_bot"),
    [("stopped", False), ("stopped", True), ("partitioned", False)],
    ids=["bot_stays_up", "bot_killed_during_outage", "network_partitioned"],
)
def test_database_lost_mid_run_loses_nothing(chaos_report, chaos_seed, scale, tmp_path, postgres, fault, kill_bot):
    requests = scale(quick=24, full=200)
    outage = scale(quick=8, full=60)  # seconds PostgreSQL is stopped
    send_window = scale(quick=16, full=120)  # the outage sits in its middle
    users = requests // ASKS_PER_USER
    deadline = outage + 10  # seconds: the generation and queue deadlines when they must outlast the outage
    roomy = kill_bot or fault == "partitioned"
    db = postgres.fresh_database("chaos_outage")
    outage_from = (send_window - outage) / 2
    sent_at = [number * send_window / requests for number in range(requests)]
    during = [number for number, at in enumerate(sent_at) if outage_from <= at < outage_from + outage]
    assert len(during) >= len(PROVOKED), "the outage must be long enough to see every outcome once"

    # Every outcome once among the requests sent during the outage, the rest at random.
    rng = random.Random(chaos_seed)
    outcomes = [rng.choice(PROVOKED) for _ in range(requests)]
    for number, outcome in zip(during, PROVOKED, strict=False):
        outcomes[number] = outcome
    # Request n comes from user n % users, so each user's asks are spread over the whole run.
    payloads, expected = {}, {}
    for number in range(requests):
        author = user(FIRST_USER + number % users, username=f"user{number % users}")
        prompt = outcomes[number].prompt(f"a calm lake at dawn, take {number}")
        payloads[prompt], expected[prompt] = slash_command("veo", {"prompt": prompt}, author=author), outcomes[number]
    schedule = [(at, "send", prompt) for at, prompt in zip(sent_at, payloads, strict=False)]
    schedule += [(outage_from, "stop", None), (outage_from + outage, "start", None)]
    if kill_bot:
        # Between two requests: killed just as a request's Veo create is answered, the bot has
        # no record of the operation, and the next bot starts it again. Veo takes no idempotency
        # key, so that window cannot be closed here (docs/RELIABILITY.md); this run is about the
        # journal, the quota and the answers.
        between = send_window / requests / 2
        schedule.append((outage_from + outage / 2 + between, "kill", "bot"))
    schedule.sort(key=lambda event: event[0])
    chaos_report.inject(
        requests=requests,
        users=users,
        quota=QUOTA,
        asks_per_user=ASKS_PER_USER,
        postgres=postgres.version,
        fault="stopped with pg_ctl -m fast" if fault == "stopped" else "partitioned: a proxy stops forwarding",
        outage_seconds=outage,
        bot_killed_during_outage=kill_bot,
        outcomes_sent=dict(Counter(outcome.name for outcome in outcomes)),
        outcomes_during_outage=dict(Counter(outcomes[number].name for number in during)),
    )

    sent_by = {}  # prompt -> (which bot process got it, whether the database was down)
    with FakeDiscordServer() as server, FakeVeoServer() as veo, TcpProxy(host=postgres.socket_dir, port=None) as proxy:
        bots_db = {**db, "HOST": "127.0.0.1", "PORT": proxy.port} if fault == "partitioned" else db
        env = {
            **process_env(database=database_url(bots_db), veo_url=veo.url, tmp_path=tmp_path, quota_limit=QUOTA),
            **QUICK_DEADLINES_ENV,
            # A request under way in the killed bot is resumed only once the database is back and
            # its journal replayed, and a request held for the database (partition) is queued only
            # then: their deadlines leave room for the outage, or they end by a deadline (rightly,
            # but not as their scenario says). Slots for every hang at once, so that no request
            # waits for one beyond its queue deadline.
            **({"VEO_GENERATION_TIMEOUT": f"{deadline}s"} if kill_bot else {}),
            **({"VEO_QUEUE_TIMEOUT": f"{deadline}s"} if roomy else {}),
            "VEO_WORKER_SLOTS": "64",
        }
        fleet = Fleet(env=env, server=server, tmp_path=tmp_path)
        try:
            began, down = time.monotonic(), False
            for at, kind, what in schedule:
                time.sleep(max(0.0, began + at - time.monotonic()))
                if kind == "send":
                    fleet.send(payloads[what])
                    sent_by[what] = (fleet.starts["bot"], down)
                elif kind == "stop":
                    stopped_at, stopped_wall = time.monotonic(), time.time()
                    proxy.partition() if fault == "partitioned" else postgres.stop()
                    down = True
                elif kind == "start":
                    proxy.restore() if fault == "partitioned" else postgres.start()
                    down = False
                    chaos_report.inject(outage_measured_seconds=round(time.monotonic() - stopped_at, 1))
                else:
                    fleet.kill("bot")
                    fleet.start("bot")  # the database is still down: the new bot starts degraded
            journal = tmp_path / "journal"
            wait_for(
                lambda: len(_rows(db)) == requests and not degraded_journals(journal),
                timeout=scale(quick=60, full=180) + (deadline if roomy else 0),
                interval=0.5,
                what="every request replayed",
            )
            wait_for(
                lambda: all(
                    history[-1] in (("delivered", None), ("created", "rejected")) for history in _histories(db).values()
                ),
                timeout=60,
                interval=0.5,
                what="every admitted request delivered",
            )
            fleet.watch_for_second_deliveries(db)
            fleet.stop()
        finally:
            fleet.cleanup()
        answers = final_answers(server, payloads)
        first_answer = {prompt: server.interaction(payloads[prompt]["id"]).acknowledged_after for prompt in payloads}
        creates = Counter(create.prompt for create in veo.creates())
        assert server.internal_errors == []
    quarantined = list((tmp_path / "journal" / "quarantine").glob("*.json"))
    journal_left = list((tmp_path / "journal").glob("*.jsonl"))

    rows = _rows(db)
    histories = _histories(db)
    admitted = {prompt for prompt, row in rows.items() if row["status"] != "rejected"}
    counted = {prompt for prompt in admitted if rows[prompt]["counts"]}
    per_process = Counter((rows[prompt]["user_id"], sent_by[prompt][0]) for prompt in counted)
    per_user = Counter(rows[prompt]["user_id"] for prompt in counted)
    wrong = {
        prompt: (rows[prompt], histories[prompt])
        for prompt in admitted
        if (rows[prompt]["status"], rows[prompt]["error_code"], rows[prompt]["counts"])
        != (expected[prompt].status, expected[prompt].code, not expected[prompt].refunded)
        or not expected[prompt].told_by(histories[prompt])
    }
    logs = fleet.logs()
    chaos_report.find(
        rows=len(rows),
        statuses=dict(Counter(row["status"] for row in rows.values())),
        ended_as_expected={
            name: sum(expected[p].name == name for p in admitted if p not in wrong)
            for name in sorted({expected[p].name for p in admitted})
        },
        ended_otherwise=len(wrong),
        answered_during_outage=sum(down for _, down in sent_by.values()),
        slowest_first_answer_during_outage_s=round(max(first_answer[p] or 99 for p in sent_by if sent_by[p][1]), 2),
        slowest_first_answer_otherwise_s=round(max(first_answer[p] or 99 for p in sent_by if not sent_by[p][1]), 2),
        held_for_the_database=logs.count(" held=True"),
        final_answers=dict(Counter(answers.values())),
        refusals=sum(histories[p] == REFUSAL for p in rows),
        most_counted_per_user_and_process=max(per_process.values(), default=0),
        users_over_quota_overall=sum(count > QUOTA for count in per_user.values()),
        veo_creates=sum(creates.values()),
        started_twice=sum(creates[p] > 1 for p in admitted if expected[p].name != "queue_timeout"),
        quarantined=len(quarantined),
        journal_files_left=len(journal_left),
        degraded_warnings=logs.count("DEGRADED: PostgreSQL is unreachable"),
        outage_noticed_after_s=_noticed_after(logs, stopped_wall),
        bot_processes=fleet.starts["bot"],
    )

    assert set(rows) == set(payloads)  # every interaction is in the database after recovery
    assert [p for p, after in first_answer.items() if after is None or after >= INTERACTION_DEADLINE] == []
    assert [p for p, count in answers.items() if count != 1] == []  # one final answer each
    assert wrong == {}  # every request ended as its scenario says, with its whole history
    assert {p: histories[p] for p in rows if p not in admitted and histories[p] != REFUSAL} == {}
    assert quarantined == [] and journal_left == []
    assert max(per_process.values(), default=0) <= QUOTA  # no process let a user past the quota
    if not kill_bot:
        assert max(per_user.values(), default=0) <= QUOTA
    assert [p for p in payloads if (creates[p] > 0) != (p in admitted)] == []  # no refusal reached Veo
    if not kill_bot:
        assert [p for p in admitted if creates[p] > 1 and expected[p].name != "queue_timeout"] == []
    # With the bot killed, a start it could not record before the outage dies with it and is made
    # again: the known gap in docs/RELIABILITY.md, counted above as started_twice.
    assert "Traceback" not in logs
    # One warning per outage and process: a second one is an outage that was not there (calls
    # failing on a pool closed under them as the first one ended).
    assert logs.count("DEGRADED: PostgreSQL is unreachable") == fleet.starts["bot"]


def _noticed_after(logs: str, since: float) -> float | None:
    """Seconds from the fault to the first process's DEGRADED warning (the logs' local-time stamps)."""
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for line in logs.splitlines()
        if "DEGRADED: PostgreSQL is unreachable" in line
    ]
    return round(min(stamps) - since, 2) if stamps else None


def _rows(db: dict) -> dict[str, dict]:
    with _connect(db) as conn:
        cursor = conn.execute(
            "SELECT prompt, user_id, status, error_code, counts_toward_quota,"
            " delivered_at IS NOT NULL FROM video_requests"
        )
        return {
            row[0]: {"user_id": row[1], "status": row[2], "error_code": row[3], "counts": row[4], "delivered": row[5]}
            for row in cursor
        }


def _histories(db: dict) -> dict[str, list[tuple]]:
    histories = defaultdict(list)
    with _connect(db) as conn:
        for prompt, kind, to_status in conn.execute(
            "SELECT r.prompt, e.kind, e.to_status FROM video_request_events e"
            " JOIN video_requests r ON r.id = e.request_id ORDER BY e.id"
        ):
            histories[prompt].append((kind, to_status))
    return dict(histories)


def _connect(db: dict) -> psycopg.Connection:
    return psycopg.connect(host=db["HOST"], user=db["USER"], dbname=db["NAME"], connect_timeout=5)
