"""Database outage: PostgreSQL really stopped in the middle of a stream of /veo requests.

The run's own server (tests/reliability/own_postgres.py) is stopped with pg_ctl for a while,
then started again. The bot must answer every interaction (degraded answers while the
database is away), hold each user to the quota within each process, and after recovery the
database must hold every request with its complete history, replayed from the journal. The
second variant also kills the bot (-9) in the middle of the outage and starts a new one
while the database is still down.
"""

import time
from collections import Counter, defaultdict

import psycopg
import pytest

from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.interactions import slash_command, user
from tests.fakes.veo_server import FakeVeoServer, scenario
from tests.reliability.fleet import Fleet, final_answers, process_env
from tests.reliability.own_postgres import OwnPostgres
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

FIRST_USER = 1_180_000_000_000_200_000
QUOTA = 3
ASKS_PER_USER = QUOTA + 1  # everyone asks once more than the quota allows
VIDEO = [("created", "pending"), ("status_changed", "generating"), ("status_changed", "completed"),
         ("delivered", None)]
REFUSAL = [("created", "rejected")]


@pytest.fixture
def postgres():
    server = OwnPostgres()
    yield server
    server.stop()  # not left running between runs


@pytest.mark.parametrize("kill_bot", [False, True], ids=["bot_stays_up", "bot_killed_during_outage"])
def test_database_stopped_mid_run_loses_nothing(chaos_report, scale, tmp_path, postgres, kill_bot):
    requests = scale(quick=20, full=200)
    outage = scale(quick=5, full=60)  # seconds PostgreSQL is stopped
    send_window = scale(quick=15, full=120)  # the outage sits in its middle
    users = requests // ASKS_PER_USER
    db = postgres.fresh_database("chaos_outage")

    # Request n comes from user n % users, so each user's asks are spread over the whole run.
    payloads = {}
    for number in range(requests):
        author = user(FIRST_USER + number % users, username=f"user{number % users}")
        payloads[f"a calm lake at dawn, take {number}"] = slash_command(
            "veo", {"prompt": f"a calm lake at dawn, take {number}"}, author=author)
    outage_from = (send_window - outage) / 2
    schedule = [(number * send_window / requests, "send", prompt) for number, prompt in enumerate(payloads)]
    schedule += [(outage_from, "stop", None), (outage_from + outage, "start", None)]
    if kill_bot:
        # Between two requests: killed just as a request's Veo create is answered, the bot has
        # no record of the operation, and the next bot starts it again. Veo takes no idempotency
        # key, so that window cannot be closed here (docs/RELIABILITY.md); this run is about the
        # journal, the quota and the answers.
        between = send_window / requests / 2
        schedule.append((outage_from + outage / 2 + between, "kill", "bot"))
    schedule.sort(key=lambda event: event[0])
    chaos_report.inject(requests=requests, users=users, quota=QUOTA, asks_per_user=ASKS_PER_USER,
                        postgres=f"{postgres.version}, stopped with pg_ctl -m fast", outage_seconds=outage,
                        bot_killed_during_outage=kill_bot)

    sent_by = {}  # prompt -> (which bot process got it, whether the database was down)
    with FakeDiscordServer() as server, FakeVeoServer(default_scenario=scenario("slow", seconds=1)) as veo:
        env = process_env(database=database_url(db), veo_url=veo.url, tmp_path=tmp_path, quota_limit=QUOTA)
        fleet = Fleet(env=env, server=server, tmp_path=tmp_path)
        try:
            began, down = time.monotonic(), False
            for at, kind, what in schedule:
                time.sleep(max(0.0, began + at - time.monotonic()))
                if kind == "send":
                    fleet.send(payloads[what])
                    sent_by[what] = (fleet.starts["bot"], down)
                elif kind == "stop":
                    postgres.stop()
                    down, stopped_at = True, time.monotonic()
                elif kind == "start":
                    postgres.start()
                    down = False
                    chaos_report.inject(outage_measured_seconds=round(time.monotonic() - stopped_at, 1))
                else:
                    fleet.kill("bot")
                    fleet.start("bot")  # the database is still down: the new bot starts degraded
            journal = tmp_path / "journal"
            wait_for(lambda: len(_rows(db)) == requests and not list(journal.glob("*.jsonl")),
                     timeout=scale(quick=60, full=180), interval=0.5, what="every request replayed")
            wait_for(lambda: all(history in (VIDEO, REFUSAL) for history in _histories(db).values()),
                     timeout=60, interval=0.5, what="every admitted request delivered")
            time.sleep(2)  # room for a duplicate delivery, if one were on its way
            fleet.stop()
        finally:
            fleet.cleanup()
        answers = final_answers(server, payloads)
        creates = Counter(create.prompt for create in veo.creates())
        assert server.internal_errors == []

    rows = _rows(db)
    histories = _histories(db)
    admitted = {prompt for prompt, row in rows.items() if row["status"] != "rejected"}
    per_process = Counter((rows[prompt]["user_id"], sent_by[prompt][0]) for prompt in admitted)
    per_user = Counter(rows[prompt]["user_id"] for prompt in admitted)
    logs = fleet.logs()
    chaos_report.find(
        rows=len(rows), statuses=dict(Counter(row["status"] for row in rows.values())),
        answered_during_outage=sum(down for _, down in sent_by.values()),
        final_answers=dict(Counter(answers.values())),
        histories={"video": sum(h == VIDEO for h in histories.values()),
                   "refusal": sum(h == REFUSAL for h in histories.values()),
                   "other": sum(h not in (VIDEO, REFUSAL) for h in histories.values())},
        most_admitted_per_user_and_process=max(per_process.values()),
        users_over_quota_overall=sum(count > QUOTA for count in per_user.values()),
        veo_creates=sum(creates.values()),
        started_twice=sum(creates[p] > 1 for p in admitted),
        degraded_warnings=logs.count("DEGRADED: PostgreSQL is unreachable"),
        bot_processes=fleet.starts["bot"])

    assert set(rows) == set(payloads)  # every interaction is in the database after recovery
    assert [p for p, count in answers.items() if count != 1] == []  # one final answer each
    assert {p: h for p, h in histories.items() if h not in (VIDEO, REFUSAL)} == {}
    assert all(rows[p]["status"] == "completed" and rows[p]["delivered"] for p in admitted)
    assert max(per_process.values()) <= QUOTA  # no process let a user past the quota
    if not kill_bot:
        assert max(per_user.values()) <= QUOTA
    assert [p for p in payloads if (creates[p] > 0) != (p in admitted)] == []  # no refusal reached Veo
    if not kill_bot:
        assert [p for p in admitted if creates[p] > 1] == []
    # With the bot killed, a start it could not record before the outage dies with it and is made
    # again: the known gap in docs/RELIABILITY.md, counted above as started_twice.
    assert "Traceback" not in logs


def _rows(db: dict) -> dict[str, dict]:
    with _connect(db) as conn:
        cursor = conn.execute("SELECT prompt, user_id, status, delivered_at IS NOT NULL AS delivered"
                              " FROM video_requests")
        return {row[0]: {"user_id": row[1], "status": row[2], "delivered": row[3]} for row in cursor}


def _histories(db: dict) -> dict[str, list[tuple]]:
    histories = defaultdict(list)
    with _connect(db) as conn:
        for prompt, kind, to_status in conn.execute(
                "SELECT r.prompt, e.kind, e.to_status FROM video_request_events e"
                " JOIN video_requests r ON r.id = e.request_id ORDER BY e.id"):
            histories[prompt].append((kind, to_status))
    return dict(histories)


def _connect(db: dict) -> psycopg.Connection:
    return psycopg.connect(host=db["HOST"], user=db["USER"], dbname=db["NAME"], connect_timeout=5)
