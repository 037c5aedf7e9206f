"""The bot as a real process (tests/bot_process.py): killed mid-generation and restarted, and
PostgreSQL cut away mid-run (a TCP proxy the test controls) and brought back. Veo is the Veo
fake, in the test's process, reached by the bots through the real google-genai client."""

import signal
import time

import pytest
from django.conf import settings
from django.db import connection

from generation.journal import degraded_journals
from tests.bot_process import BotProcess, bot_environment
from tests.fakes import discord_server as fake
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.interactions import CHANNEL_ID, USER_ID, slash_command, user
from tests.fakes.veo_server import FakeVeoServer, scenario
from tests.helpers import next_interaction
from tests.tcp_proxy import TcpProxy
from tests.workers import database_url, start_worker_process, truncate_requests, wait_for, watch_for_second_deliveries
from tracking import services
from tracking.models import VideoRequest, VideoRequestEvent
from veosite.config import parse_duration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.processes]


@pytest.fixture
def server():
    with FakeDiscordServer() as server:
        yield server
        assert server.internal_errors == []


LEASE, IDLE_POLL = "2s", "1s"  # the bots' VEO_LEASE and VEO_WORKER_IDLE_POLL


@pytest.fixture
def bots(db_settings, tmp_path, server, veo_fake):
    """Start bot processes on the test database (or given DATABASE_URL), their Veo the
    ``veo_fake``; all killed afterwards. ``seconds``: how long each video Veo starts from then on
    takes."""
    truncate_requests()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE user_bans, quota_policies CASCADE")
    started: list[BotProcess] = []

    def start(
        name: str,
        *,
        seconds: float | None = None,
        database: str | None = None,
        command: tuple[str, ...] = ("-m", "tests.bot_process"),  # or ("manage.py", "runbot")
        **env,
    ) -> BotProcess:
        if seconds is not None:
            veo_fake.default_scenario = scenario("slow", seconds=seconds)
        environment = bot_environment(
            database_url=database or database_url(db_settings),
            server=server,
            veo_fake=veo_fake,
            tmp_path=tmp_path,
            VEO_LEASE=LEASE,
            VEO_WORKER_IDLE_POLL=IDLE_POLL,
            VEO_QUOTA_LIMIT="3",
            **env,
        )
        bot = BotProcess(environment, tmp_path / f"{name}.log", command=command)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.cleanup()


def through(proxy: TcpProxy, db: dict) -> str:
    """The test database's URL, by way of ``proxy``."""
    return database_url({**db, "HOST": "127.0.0.1", "PORT": proxy.port})


def veo(prompt="a red fox running through fresh snow"):
    return slash_command("veo", {"prompt": prompt})


def row(payload) -> VideoRequest | None:
    return VideoRequest.objects.filter(interaction_id=payload["id"]).first()


def lifecycle(request_id: int) -> list[tuple]:
    return [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")]


def attached(server, payload) -> bool:
    reply = server.original_response(payload["id"])
    return bool(reply and reply["attachments"])


def test_killed_mid_generation_and_restarted_delivers_exactly_once_in_the_original_reply(bots, server, db_settings):
    first = bots("first", seconds=6)
    payload = veo()
    first.send(server, payload)
    wait_for(lambda: (r := row(payload)) and r.status == "generating", what="generating")
    first.kill()  # SIGKILL: no lease handed back, nothing flushed

    second = bots("second", seconds=6)
    wait_for(lambda: (r := row(payload)) and r.delivered_at, timeout=60, what="delivery after restart")
    # A duplicate would come from a claim: watched until none could still be on its way.
    watch_for_second_deliveries(db_settings, server, lease=parse_duration(LEASE), claim_poll=parse_duration(IDLE_POLL))
    assert second.stop() == 0

    request = row(payload)
    assert (request.status, request.delivery_method, request.attempts) == ("completed", "interaction", 2)
    assert lifecycle(request.id) == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]
    # The original reply, edited by the second process through the token the first one kept.
    [reply] = server.messages_in(CHANNEL_ID)
    assert int(reply["id"]) == request.discord_message_id and reply["attachments"]
    assert reply["embeds"][0]["title"] == "Your video is ready"
    assert "lease lost" not in second.log()


def test_database_outage_degraded_answers_then_replay_with_nothing_missing(bots, server, db_settings, tmp_path):
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        via_proxy = through(proxy, db_settings)
        bot = bots("bot", seconds=1, database=via_proxy)
        before = veo("a calm lake before the outage")
        bot.send(server, before)
        wait_for(lambda: (r := row(before)) and r.delivered_at, what="delivery before the outage")

        proxy.cut()
        cut_at = time.time()
        during = [veo(f"a red fox, take {n}") for n in range(2)]
        bot.send(server, during[0])
        wait_for(lambda: attached(server, during[0]), timeout=30, what="a video during the outage")
        bot.send(server, during[1])
        wait_for(lambda: attached(server, during[1]), timeout=30, what="a second video during the outage")
        over = veo("one too many")
        bot.send(server, over)
        wait_for(lambda: server.original_response(over["id"]), what="the refusal")
        quota = slash_command("quota")
        bot.send(server, quota)
        wait_for(lambda: server.original_response(quota["id"]), what="/quota")
        assert all(row(p) is None for p in [*during, over])  # nothing reached the database
        restored_at = time.time()
        proxy.restore()

        wait_for(lambda: all(row(p) for p in [*during, over]), timeout=30, what="the replay")
        wait_for(lambda: not degraded_journals(tmp_path / "journal"), what="the journal emptied")
        assert bot.stop() == 0

    # Answers during the outage: fast, specific, private refusal, video attached.
    for payload in during:
        assert server.interaction(payload["id"]).acknowledged_after < fake.INTERACTION_DEADLINE
        reply = server.original_response(payload["id"])
        assert reply["attachments"] and reply["embeds"][0]["title"] == "Your video is ready"
    refusal = server.original_response(over["id"])
    assert refusal["flags"] & fake.EPHEMERAL and "You have used all 3" in refusal["content"]
    assert "database is unreachable" in server.original_response(quota["id"])["content"]

    # Every request in the database with its full lifecycle and the original times.
    for payload in during:
        request = row(payload)
        assert (request.status, request.delivery_method, request.counts_toward_quota) == (
            "completed",
            "interaction",
            True,
        )
        assert (
            cut_at
            <= request.created_at.timestamp()
            <= request.started_at.timestamp()
            <= request.completed_at.timestamp()
            <= request.delivered_at.timestamp()
            <= restored_at
        )
        assert request.output_size_bytes and request.duration_ms >= 900
        assert lifecycle(request.id) == [
            ("created", "pending"),
            ("status_changed", "generating"),
            ("status_changed", "completed"),
            ("delivered", None),
        ]
        times = [e.at for e in VideoRequestEvent.objects.filter(request_id=request.id).order_by("id")]
        assert times == sorted(times) and times[-1].timestamp() <= restored_at
    refused = row(over)
    assert (refused.status, refused.error_code, refused.counts_toward_quota) == ("rejected", "quota_exceeded", False)

    log = bot.log()
    assert log.count("DEGRADED: PostgreSQL is unreachable") == 1  # one warning per outage
    assert log.count("database reachable again") == 1 and "Traceback" not in log


def test_network_partition_answers_every_veo_in_time_and_runs_each_request_once(
    bots, server, db_settings, tmp_path, veo_fake
):
    # A partition resets nothing and refuses nothing: packets stop. The first /veo's admission
    # goes out just as they stop and is never answered; nor is the heartbeat. The bot must
    # give up on the database in time to answer, and the request it could not hear about must
    # still run once -- the database admits it when the partition heals.
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        bot = bots("bot", seconds=1, database=through(proxy, db_settings))
        before = veo("a calm lake before the partition")
        bot.send(server, before)
        wait_for(lambda: (r := row(before)) and r.delivered_at, what="delivery before the partition")

        proxy.partition()
        unheard = veo("a red fox, sent as the network stops")
        bot.send(server, unheard)
        wait_for(lambda: "DEGRADED: PostgreSQL is unreachable" in bot.log(), what="the partition noticed")
        during = veo("a red fox, sent during the partition")
        bot.send(server, during)
        wait_for(lambda: attached(server, during), timeout=30, what="a video during the partition")
        wait_for(
            lambda: (r := server.original_response(unheard["id"])) and r["embeds"], what="the unheard one's answer"
        )
        held = server.original_response(unheard["id"])
        assert held["embeds"][0]["title"] == "Queued"
        assert "did not answer in time" in held["embeds"][0]["footer"]["text"]
        assert not attached(server, unheard)  # held: not run while the database may have it
        proxy.restore()

        wait_for(lambda: all((r := row(p)) and r.delivered_at for p in (unheard, during)), timeout=60, what="both")
        wait_for(lambda: not degraded_journals(tmp_path / "journal"), what="the journal emptied")
        watch_for_second_deliveries(
            db_settings, server, lease=parse_duration(LEASE), claim_poll=parse_duration(IDLE_POLL)
        )
        assert bot.stop() == 0

    for payload in (unheard, during):
        assert server.interaction(payload["id"]).acknowledged_after < fake.INTERACTION_DEADLINE
        request = row(payload)
        assert (request.status, request.counts_toward_quota) == ("completed", True)
        assert lifecycle(request.id) == [
            ("created", "pending"),
            ("status_changed", "generating"),
            ("status_changed", "completed"),
            ("delivered", None),
        ]
    assert sorted(create.prompt for create in veo_fake.creates()) == sorted(
        payload["data"]["options"][0]["value"] for payload in (before, unheard, during)
    )  # one Veo start each
    assert attached(server, unheard) or server.messages_in(CHANNEL_ID)[-1]["attachments"]
    log = bot.log()
    assert log.count("DEGRADED: PostgreSQL is unreachable") == 1 and "Traceback" not in log


def test_killed_during_the_outage_loses_nothing(bots, server, db_settings, tmp_path):
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        via_proxy = through(proxy, db_settings)
        bot = bots("doomed", seconds=5, database=via_proxy)
        proxy.cut()
        payload = veo()
        bot.send(server, payload)
        wait_for(lambda: server.original_response(payload["id"]), timeout=30, what="the degraded answer")
        wait_for(lambda: "generating" in bot.log(), what="generation under way")
        bot.kill()
        proxy.restore()

        bots("successor", seconds=5)  # replays the dead process's journal, then resumes the operation
        wait_for(lambda: (r := row(payload)) and r.delivered_at, timeout=60, what="delivery after the restart")
    request = row(payload)
    assert (request.status, request.delivery_method) == ("completed", "channel")
    assert lifecycle(request.id) == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]
    assert not degraded_journals(tmp_path / "journal")
    post = server.messages_in(CHANNEL_ID)[-1]
    assert post["content"] == f"<@{USER_ID}>" and "resumed after a restart" in post["embeds"][0]["footer"]["text"]


def test_started_during_an_outage_answers_at_once_from_the_journal(bots, server, tmp_path):
    # Nothing listens on port 9: without a probe at start-up, the first /veo waited out the
    # pool's connect timeout (and was deferred) before degraded mode began.
    bot = bots("bot", seconds=1, database="postgresql://postgres@127.0.0.1:9/veobot")
    wait_for(lambda: "DEGRADED: PostgreSQL is unreachable" in bot.log(), what="degraded mode from the start")
    payload = veo()
    bot.send(server, payload)
    wait_for(lambda: server.original_response(payload["id"]), what="the answer")
    interaction = server.interaction(payload["id"])
    assert interaction.response_type == 4  # answered at once, not deferred (5)
    reply = server.original_response(payload["id"])
    assert "database unreachable" in reply["embeds"][0]["footer"]["text"]
    wait_for(lambda: attached(server, payload), what="the video")
    assert bot.log().count("DEGRADED: PostgreSQL is unreachable") == 1


def test_quota_holds_while_the_outages_requests_still_run_after_recovery(bots, server, db_settings):
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        via_proxy = through(proxy, db_settings)
        bot = bots("bot", seconds=8, database=via_proxy)  # VEO_QUOTA_LIMIT=3
        proxy.cut()
        wait_for(lambda: "DEGRADED" in bot.log(), what="degraded mode")
        during = [veo(f"a red fox, take {n}") for n in range(3)]
        for payload in during:
            bot.send(server, payload)
            wait_for(lambda payload=payload: server.original_response(payload["id"]), what="a degraded answer")
        proxy.restore()
        wait_for(lambda: "database reachable again" in bot.log(), what="recovery")
        # The three are still generating, so not yet replayed: the database cannot count them.
        over = veo("one too many, right after the outage")
        bot.send(server, over)
        wait_for(lambda: server.original_response(over["id"]), what="the answer to the fourth")
        refusal = server.original_response(over["id"])
        assert refusal["flags"] & fake.EPHEMERAL and "You have used all 3" in refusal["content"]
        wait_for(lambda: all(attached(server, p) for p in during), timeout=60, what="the three videos")
        wait_for(lambda: all(row(p) for p in [*during, over]), what="the replay")
        assert bot.stop() == 0
    assert row(over).status == "rejected"
    assert VideoRequest.objects.filter(counts_toward_quota=True).count() == 3


def test_database_lost_between_the_veo_start_and_its_record_starts_nothing_twice(bots, server, db_settings, veo_fake):
    # The Veo fake holds the create's answer for 3 s; the database goes away meanwhile, so the
    # operation name cannot be stored at once. It used to be dropped, and the request started again.
    veo_fake.default_scenario = scenario("stall", seconds=3)
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        bot = bots("bot", database=through(proxy, db_settings), VEO_POLL_INITIAL="1s")
        payload = veo()
        bot.send(server, payload)
        wait_for(lambda: veo_fake.create_count() == 1, what="the Veo create")
        proxy.cut()
        wait_for(lambda: "DEGRADED" in bot.log(), what="degraded mode")
        # Longer than the pool waits for a connection (10 s): the record of the start fails.
        time.sleep(settings.DATABASE_CONNECT_TIMEOUT + 3)
        proxy.restore()
        wait_for(lambda: (r := row(payload)) and r.delivered_at, timeout=60, what="the delivery")
        assert bot.stop() == 0
        assert veo_fake.create_count() == 1
    request = row(payload)
    assert request.status == "completed" and request.operation_name
    assert lifecycle(request.id) == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]


def test_a_worker_killed_between_the_veo_start_and_its_record_leaves_the_start_to_its_successor(db_settings, tmp_path):
    """The window Veo's lack of an idempotency key leaves open: Veo has accepted the create, the worker
    has not recorded the operation name (here because the database went away meanwhile) and is
    killed. The name was written ahead to its journal; the next worker on the machine replays it,
    records the start and resumes that operation: one create, one video."""
    truncate_requests()
    with (
        TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy,
        FakeVeoServer(default_scenario=scenario("stall", seconds=3)) as veo_fake,
    ):
        request_id = services.admit_request(
            interaction_id=next_interaction(),
            user_id=700,
            guild_id=None,
            channel_id=None,
            params=services.VideoParameters(prompt="a red fox in snow"),
            source="cli",
        ).request_id
        env = {
            "VEO_BACKEND": "express",
            "VEO_API_KEY": "test-key",
            "VEO_API_BASE_URL": veo_fake.url,
            "VEO_LEASE": "2s",
            "VEO_POLL_INITIAL": "200ms",
            "VEO_WORKER_IDLE_POLL": "200ms",
            "DATABASE_PROBE_INTERVAL": "1s",
            "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        }
        doomed = start_worker_process(
            {**db_settings, "HOST": "127.0.0.1", "PORT": proxy.port}, tmp_path / "doomed.log", **env
        )
        try:
            wait_for(lambda: veo_fake.create_count() == 1, what="the Veo create")
            proxy.cut()  # the create's answer comes back to a worker that cannot record it
            wait_for(
                lambda: "DEGRADED" in (tmp_path / "doomed.log").read_text(),
                timeout=30,
                what="the worker losing its database",
            )
            journal = tmp_path / "journal"
            wait_for(
                lambda: any('"kind":"started"' in p.read_text() for p in journal.glob("*.jsonl")),
                timeout=30,
                what="the start written ahead",
            )
        finally:
            doomed.kill()
            doomed.wait(30)
        proxy.restore()
        assert VideoRequest.objects.get(id=request_id).status == "pending"  # nothing in the database names it

        successor = start_worker_process(db_settings, tmp_path / "successor.log", **env)
        try:
            wait_for(
                lambda: VideoRequest.objects.get(id=request_id).delivered_at is not None,
                timeout=60,
                what="the video, from the operation Veo started for the killed worker",
            )
        finally:
            successor.send_signal(signal.SIGTERM)
            successor.wait(30)
        assert veo_fake.create_count() == 1
    row = VideoRequest.objects.get(id=request_id)
    assert row.status == "completed" and {p.operation_name for p in veo_fake.polls()} == {row.operation_name}
    generating = VideoRequestEvent.objects.get(request_id=request_id, to_status="generating")
    assert generating.actor == "bot-journal" and "wrote ahead" in generating.detail["reason"]
    assert "started recorded from" in (tmp_path / "successor.log").read_text()
    assert not list((tmp_path / "journal").glob("*.jsonl"))  # replayed and gone


def test_a_bot_killed_between_a_delivery_and_its_record_leaves_it_to_its_successor(bots, server, db_settings, tmp_path):
    """Discord has taken the video (the original reply is edited) when the database goes away, so
    the delivery cannot be recorded, and the bot is killed while it insists. The delivery was
    written ahead to its journal; the next bot records it instead of posting the video again."""
    payload = veo()
    edit = f"PATCH /webhooks/*/{payload['token']}/messages/@original"
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        doomed = bots("doomed", seconds=1, database=through(proxy, db_settings))
        doomed.send(server, payload)
        wait_for(lambda: (r := row(payload)) and r.status == "generating", what="generating")
        server.rate_limit(edit, retry_after=3)  # the delivery's edit waits 3 s: the database goes meanwhile
        wait_for(lambda: server.requests(edit), what="the delivery under way")
        proxy.cut()
        wait_for(lambda: attached(server, payload), timeout=30, what="the video in the reply")
        journal = tmp_path / "journal"
        wait_for(
            lambda: any('"kind":"delivered"' in p.read_text() for p in journal.glob("*.jsonl")),
            timeout=30,
            what="the delivery written ahead",
        )
        doomed.kill()
        proxy.restore()
    assert row(payload).delivered_at is None  # nothing in the database says it was delivered

    successor = bots("successor", seconds=1)
    wait_for(lambda: (r := row(payload)) and r.delivered_at, timeout=60, what="the delivery recorded")
    watch_for_second_deliveries(db_settings, server, lease=parse_duration(LEASE), claim_poll=parse_duration(IDLE_POLL))
    assert successor.stop() == 0
    request = row(payload)
    assert (request.status, request.delivery_method) == ("completed", "interaction")
    assert request.discord_message_id == int(server.original_response(payload["id"])["id"])
    assert server.messages_in(CHANNEL_ID) == [server.original_response(payload["id"])]  # no second post
    assert lifecycle(request.id)[-1] == ("delivered", None)
    assert "delivered recorded from" in successor.log()


def test_database_partitioned_under_a_burst_every_veo_answered_once_and_run_once(
    bots, server, db_settings, tmp_path, veo_fake
):
    # The burst's first batch goes out as the packets stop and is never answered (each of its
    # requests is held, for the database may yet admit it); those waiting for the next batch
    # never reached the database and are admitted here. Every one is answered once, in time,
    # and runs once when the partition heals.
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        bot = bots("bot", seconds=1, database=through(proxy, db_settings))
        before = veo("a calm lake before the partition")
        bot.send(server, before)
        wait_for(lambda: (r := row(before)) and r.delivered_at, what="delivery before the partition")

        proxy.partition()
        burst = [
            slash_command("veo", {"prompt": f"a heron number {n}"}, author=user(USER_ID + 1 + n, f"u{n}"))
            for n in range(8)
        ]
        for payload in burst:
            bot.send(server, payload)
        answered = lambda p: (r := server.original_response(p["id"])) and (r["embeds"] or r["content"])  # noqa: E731
        order = []  # interaction ids, as their answers were seen

        def all_answered() -> bool:
            order.extend(p["id"] for p in burst if p["id"] not in order and answered(p))
            return len(order) == len(burst)

        wait_for(all_answered, timeout=30, what="every answer in the burst")
        footers = [server.original_response(p["id"])["embeds"][0].get("footer", {}).get("text", "") for p in burst]
        proxy.restore()
        wait_for(lambda: all((r := row(p)) and r.delivered_at for p in burst), timeout=60, what="every delivery")
        wait_for(lambda: not degraded_journals(tmp_path / "journal"), what="the journal emptied")
        assert bot.stop() == 0

    held = {p["id"] for p, footer in zip(burst, footers, strict=True) if "did not answer in time" in footer}
    assert held  # the batch in flight: held
    # The rest never reached the database: answered from the journal as soon as the heartbeat
    # declared the outage, before the batch ahead of them gave up waiting for its answer.
    assert set(order[-len(held) :]) == held
    for payload in burst:
        assert server.interaction(payload["id"]).acknowledged_after < fake.INTERACTION_DEADLINE
        assert len([r for r in server.requests("POST /interactions/*/callback") if payload["id"] in r.path]) == 1
        request = row(payload)
        assert (request.status, request.counts_toward_quota) == ("completed", True)
        assert [kind for kind, _ in lifecycle(request.id)].count("delivered") == 1
    assert VideoRequest.objects.filter(interaction_id__in=[int(p["id"]) for p in burst]).count() == len(burst)
    assert sorted(create.prompt for create in veo_fake.creates()) == sorted(
        payload["data"]["options"][0]["value"] for payload in (before, *burst)
    )  # one Veo start each
    assert "Traceback" not in bot.log()
