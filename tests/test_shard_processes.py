"""``manage.py runbot`` processes, sharded, against the fake Discord's gateway: each interaction is
answered by the process that runs its guild's shard, a process killed mid-burst loses nothing,
and a dropped connection is resumed with every missed interaction answered once. Veo is the Veo
fake; the bots reach it through the real google-genai client."""

import json
import socket
import urllib.error
import urllib.request

import pytest

from generation.journal import SUFFIX
from tests import test_bot_processes
from tests.bot_process import BotProcess
from tests.fakes.discord_gateway import shard_of
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.interactions import slash_command, user
from tests.helpers import free_port
from tests.workers import wait_for, watch_for_second_deliveries
from tracking.models import VideoRequest
from veosite.config import parse_duration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.processes]

COUNT = 4
# One guild on each of the 4 shards (a guild's shard is (id >> 22) % count).
GUILDS = [(((1_180_000_000_000_000_100 >> 22) // COUNT * COUNT + n) << 22) + 100 for n in range(COUNT)]


# The fake Discord (with its gateway) and the bot processes of tests/test_bot_processes.py.
server, bots = test_bot_processes.server, test_bot_processes.bots
LEASE, IDLE_POLL = test_bot_processes.LEASE, test_bot_processes.IDLE_POLL


@pytest.fixture
def runbots(bots):
    """Start ``manage.py runbot`` processes (tests/test_bot_processes.py's ``bots``), sharing one
    database and one journal folder as processes on one machine do."""

    def start(name: str, *, seconds: float = 0.2, **env) -> BotProcess:
        return bots(name, seconds=seconds, command=("manage.py", "runbot"), **env)

    return start


def veo(guild_id: int | None, n: int) -> dict:
    # A user per request: the quota is not what these tests are about.
    return slash_command(
        "veo", {"prompt": f"a red fox in the snow, take {n}"}, guild_id=guild_id, author=user(10**17 + n)
    )


def row(payload) -> VideoRequest | None:
    return VideoRequest.objects.filter(interaction_id=payload["id"]).first()


def delivered(payloads) -> bool:
    return all((r := row(p)) and r.delivered_at for p in payloads)


def connected(server, shards) -> bool:
    return set(shards) <= set(server.gateway.connected_shards())


def answered_in(bot: BotProcess, payload) -> bool:
    request = row(payload)
    return request is not None and f"request {request.id} answered " in bot.log()


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_two_processes_of_two_shards_each_answer_exactly_their_guilds(runbots, server, tmp_path):
    low_port, high_port = free_port(), free_port()
    low = runbots("low", DISCORD_SHARD_COUNT=str(COUNT), DISCORD_SHARD_IDS="0-1", METRICS_PORT=str(low_port))
    high = runbots("high", DISCORD_SHARD_COUNT=str(COUNT), DISCORD_SHARD_IDS="2,3", METRICS_PORT=str(high_port))
    wait_for(lambda: connected(server, range(COUNT)), what="four shards connected")
    assert sorted(server.gateway.identifies) == [(shard, COUNT) for shard in range(COUNT)]

    payloads = [veo(guild, n) for n, guild in enumerate([*GUILDS, None])]  # the last one a DM
    for payload in payloads:
        server.gateway.dispatch_interaction(payload)
    wait_for(lambda: delivered(payloads), timeout=60, what="every video delivered")

    owners = {0: low, 1: low, 2: high, 3: high}
    for payload, shard in zip(payloads, [0, 1, 2, 3, 0], strict=True):
        guild = int(payload["guild_id"]) if payload.get("guild_id") else None
        assert shard_of(guild, COUNT) == shard == server.gateway.dispatched[int(payload["id"])][0]
        owner, other = owners[shard], low if owners[shard] is high else high
        assert answered_in(owner, payload) and not answered_in(other, payload), payload["guild_id"]
        assert f"shard={shard}" in next(
            line for line in owner.log().splitlines() if f"request {row(payload).id} answered" in line
        )
        assert server.interaction(int(payload["id"])).acknowledged_after is not None

    # Each process names its own shards and their state, in its log and on its /healthz.
    for bot, port, mine in ((low, low_port, ["0", "1"]), (high, high_port, ["2", "3"])):
        status, body = healthz(port)
        assert status == 200 and body["status"] == "ok", body
        assert sorted(body["gateway"]["shards"]) == mine and body["gateway"]["count"] == COUNT
        assert all(shard["state"] == "connected" for shard in body["gateway"]["shards"].values())
        assert f"shard {mine[0]}/{COUNT} connected" in bot.log() and f"shard {mine[1]}/{COUNT} connected" in bot.log()
        assert "Traceback" not in bot.log()
    # Two processes, one journal folder: each writes its own file (host, pid, a random part).
    assert low.stop() == 0 and high.stop() == 0
    assert not [p for p in (tmp_path / "journal").glob(f"*{SUFFIX}") if p.stat().st_size]


def test_a_process_killed_mid_burst_leaves_its_requests_to_the_other_workers(runbots, server, db_settings, tmp_path):
    # The survivor's worker takes two at a time, so the doomed one surely has some when it dies.
    low = runbots("low", seconds=2, DISCORD_SHARD_COUNT=str(COUNT), DISCORD_SHARD_IDS="0,1", VEO_WORKER_SLOTS="2")
    doomed = runbots("doomed", seconds=2, DISCORD_SHARD_COUNT=str(COUNT), DISCORD_SHARD_IDS="2-3")
    wait_for(lambda: connected(server, range(COUNT)), what="four shards connected")

    burst = [veo(GUILDS[2 + n % 2], n) for n in range(6)]  # all on the doomed process's shards
    for payload in burst:
        server.gateway.dispatch_interaction(payload)
    wait_for(lambda: all(server.original_response(int(p["id"])) for p in burst), what="every /veo answered")
    doomed_worker = f"{socket.gethostname()}:{doomed.proc.pid}:"  # generation.worker.worker_name

    def doomed_generating() -> bool:
        return any((r := row(p)) and r.status == "generating" and r.claimed_by.startswith(doomed_worker) for p in burst)

    wait_for(doomed_generating, what="the doomed process generating")
    doomed.kill()  # SIGKILL mid-burst: leases not handed back, nothing flushed
    assert not delivered(burst)  # some were in flight

    wait_for(lambda: delivered(burst), timeout=90, what="every video delivered after the kill")
    watch_for_second_deliveries(db_settings, server, lease=parse_duration(LEASE), claim_poll=parse_duration(IDLE_POLL))
    for payload in burst:
        request = row(payload)
        assert (request.status, request.delivery_method) == ("completed", "interaction"), request.error_code
        [reply] = [m for m in server.messages_in(request.channel_id) if int(m["id"]) == request.discord_message_id]
        assert reply["attachments"] and reply["embeds"][0]["title"] == "Your video is ready"
    assert low.stop() == 0
    # What the killed process wrote ahead (its Veo starts) was taken by the survivor, which shares
    # its journal folder, and nothing is left to replay.
    assert [p.name for p in (tmp_path / "journal").glob("*.jsonl") if p.stat().st_size] == []


def test_an_unsharded_runbot_resumes_a_dropped_connection_and_answers_what_it_missed_once(runbots, server):
    bot = runbots("solo", LOG_LEVEL="DEBUG")  # neither DISCORD_SHARD_COUNT nor DISCORD_SHARD_IDS
    wait_for(lambda: connected(server, [0]), what="the gateway connected")
    assert server.gateway.identifies == [(0, 1)]

    server.gateway.drop(0)
    missed = [veo(GUILDS[n], n) for n in range(3)]
    for payload in missed:
        server.gateway.dispatch_interaction(payload)  # while the socket is closed
    wait_for(lambda: delivered(missed), timeout=60, what="the missed interactions answered")

    assert server.gateway.identifies == [(0, 1)]  # resumed, not a new session
    [session] = server.gateway.sessions.values()
    assert session.resumes == 1
    for payload in missed:
        assert server.interaction(int(payload["id"])).acknowledged_after < 3.0
        assert VideoRequest.objects.filter(interaction_id=payload["id"]).count() == 1
    assert "shard 0/1 resumed its session" in bot.log()
    assert bot.stop() == 0 and "Traceback" not in bot.log()
    assert BOT_TOKEN not in bot.log()  # IDENTIFY and RESUME carry it; even at DEBUG it is not logged
