"""Idle workers start admitted work at once, not at their next poll: in their own process, from
other processes through LISTEN/NOTIFY, and still (by polling) when the listener is gone.

The idle poll is set to a minute, so a start well inside it cannot be the polling's doing.
"""

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from psycopg import sql

from generation import wakeup
from generation.admission_batch import AdmissionBatches
from generation.delivery import CliDelivery
from generation.health import connection_parameters
from generation.listener import for_us, notifications
from generation.veo import OfflineBackend
from generation.worker import standalone_worker
from tests.bot_harness import eventually, fake_discord, quick_bot_settings, run_bot
from tests.fakes.interactions import deliver_and_wait, slash_command
from tests.helpers import admit, next_interaction
from tests.tcp_proxy import TcpProxy
from tests.workers import (
    ROOT,
    database_url,
    listeners,
    start_worker_process,
    started,
    truncate_requests,
    wait_for,
    waited,
    worker_thread,
)
from tracking import services
from tracking.models import VideoRequest
from tracking.services import VideoParameters
from tracking.services.burst import AdmissionCall

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_POLL = timedelta(seconds=60)
PROMPTLY = IDLE_POLL / 20  # well inside one poll interval: only a wake-up explains it


@pytest.fixture(autouse=True)
def idle_worker_settings(settings, tmp_path):
    truncate_requests()
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_WORKER_IDLE_POLL = IDLE_POLL
    settings.VEO_WORKER_LISTEN = True
    settings.VEO_LEASE = timedelta(seconds=3)
    settings.VEO_MAX_CONCURRENT = 50
    settings.VEO_MAX_STARTS_PER_MINUTE = 1000
    settings.VEO_QUOTA_LIMIT = 1000


def worker_env(tmp_path, **env) -> dict:
    return {
        "VEO_BACKEND": "offline",
        "VEO_OFFLINE_SECONDS": "0",
        "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        "VEO_WORKER_IDLE_POLL": f"{IDLE_POLL.total_seconds():g}s",
        "VEO_QUOTA_LIMIT": "1000",
        **env,
    }


def admit_from_cli(db: dict, user_id: int) -> int:
    """`manage.py veo` in its own process: admits, then notifies, and exits."""
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(SECRET_KEY="tests-only", DATABASE_URL=database_url(db), VEO_QUOTA_LIMIT="1000")
    out = subprocess.run(
        [sys.executable, "manage.py", "veo", "a heron over a misty river", "--user", str(user_id)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return int(re.search(r"request (\d+) queued", out).group(1))


def stop_process(process: subprocess.Popen) -> float:
    """SIGTERM; seconds until it exited."""
    begin = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(IDLE_POLL.total_seconds())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - begin


def test_admission_in_another_process_wakes_an_idle_worker_process(db_settings, tmp_path):
    worker = start_worker_process(db_settings, tmp_path / "worker.log", **worker_env(tmp_path))
    try:
        wait_for(listeners, timeout=60, what="the worker listening")
        ids = [admit_from_cli(db_settings, user_id=601 + n) for n in range(3)]  # each finds the worker idle
        wait_for(started(*ids), timeout=IDLE_POLL.total_seconds() / 2, what="the starts")
    finally:
        assert stop_process(worker) < IDLE_POLL.total_seconds() / 4
    assert max(waited(request_id) for request_id in ids) < PROMPTLY


server = pytest.fixture(fake_discord, name="server")


def test_the_bots_own_admission_wakes_its_worker(server, settings, tmp_path, veo_fake):
    quick_bot_settings(settings, tmp_path)
    settings.VEO_WORKER_IDLE_POLL = IDLE_POLL
    settings.VEO_WORKER_LISTEN = False  # no NOTIFY heard: only the in-process wake-up can start it
    payload = slash_command("veo", {"prompt": "a lighthouse in a storm at night"})

    async def scenario(bot):
        await asyncio.sleep(0.5)  # the worker's first claim found nothing: it is asleep
        await deliver_and_wait(bot, payload, server=server)
        return await eventually(
            lambda: VideoRequest.objects.filter(interaction_id=int(payload["id"]), started_at__isnull=False).first(),
            timeout=IDLE_POLL.total_seconds() / 2,
            what="the start",
        )

    request = run_bot(scenario)
    assert waited(request.id) < PROMPTLY


def test_a_killed_listener_listens_again_and_loses_no_work(caplog):
    caplog.set_level(logging.INFO, logger="generation.listener")
    worker = standalone_worker(
        backend=OfflineBackend(seconds=0), deliveries={"discord": CliDelivery(), "cli": CliDelivery()}
    )
    with worker_thread(worker):
        [first] = wait_for(listeners, what="the worker listening")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        missed = admit(user_id=610).request_id  # its NOTIFY finds nobody listening
        wakeup.notify_workers()
        [again] = wait_for(lambda: listeners() - {first}, what="listening again")
        wait_for(started(missed), timeout=IDLE_POLL.total_seconds() / 2, what="the missed request")
        time.sleep(0.2)  # asleep again
        heard = admit(user_id=611).request_id
        wakeup.notify_workers()
        wait_for(started(heard), timeout=IDLE_POLL.total_seconds() / 2, what="the next request")
    # Notifications sent while nobody listened are lost; the look after listening again finds them.
    assert waited(missed) < PROMPTLY and waited(heard) < PROMPTLY
    messages = [record.getMessage() for record in caplog.records if record.name == "generation.listener"]
    assert sum("not listening for new work" in message for message in messages) == 1
    assert sum("listening for new work again" in message for message in messages) == 1
    assert not any(record.exc_info for record in caplog.records)


def test_through_a_database_outage_the_worker_polls_and_listens_again_after(db_settings, tmp_path):
    # Short polls: here polling is what is tested.
    env = worker_env(tmp_path, VEO_WORKER_IDLE_POLL="1s")
    # Behind PgBouncer the worker's LISTEN goes to the server itself (DATABASE_DIRECT_URL): both
    # ways are cut, as an outage of the database cuts both.
    direct = connections["direct"].settings_dict
    with (
        TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy,
        TcpProxy(host=direct["HOST"] or "127.0.0.1", port=int(direct["PORT"] or 5432)) as direct_proxy,
    ):
        urls = {"DATABASE_URL": database_url({**db_settings, "HOST": "127.0.0.1", "PORT": proxy.port})}
        if settings.DATABASE_POOLED:
            urls["DATABASE_DIRECT_URL"] = database_url({**direct, "HOST": "127.0.0.1", "PORT": direct_proxy.port})
        log_path = tmp_path / "worker.log"
        worker = start_worker_process(db_settings, log_path, **env, **urls)
        try:
            wait_for(listeners, timeout=60, what="the worker listening")
            proxy.cut()
            direct_proxy.cut()
            wait_for(lambda: not listeners(), what="the listener gone")
            during = admit(user_id=620).request_id  # straight into the database, past the cut
            time.sleep(3)  # several attempts to listen again, all refused
            proxy.restore()
            direct_proxy.restore()
            wait_for(started(during), timeout=60, what="the request admitted during the outage")
            wait_for(listeners, timeout=60, what="listening again")
        finally:
            stop_process(worker)
    text = log_path.read_text()
    assert text.count("not listening for new work") == 1, text
    assert text.count("listening for new work again") == 1, text
    assert "Traceback" not in text, text


def test_shutdown_is_prompt_while_the_listener_waits(db_settings, tmp_path):
    worker = start_worker_process(db_settings, tmp_path / "worker.log", **worker_env(tmp_path))
    wait_for(listeners, timeout=60, what="the worker listening")
    # Stopping must not wait for a notification or for the idle poll.
    assert stop_process(worker) < IDLE_POLL.total_seconds() / 4
    assert worker.returncode == 0
    wait_for(lambda: not listeners(), what="the listener's connection closed")


def test_a_listener_leaves_the_notifications_its_own_process_woke_its_workers_for():
    # The bot's admission wakes its own worker directly and names its process in the NOTIFY it
    # sends other processes; without a name (manage.py veo) or with another one, it is news.
    with psycopg.connect(
        **connection_parameters(application_name="test-listener", alias="direct"), autocommit=True
    ) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(services.WORK_CHANNEL)))
        wakeup.notify_workers(woken_here=True)
        services.notify_work(sender="another-host:4242")
        wakeup.notify_workers()
        heard = list(conn.notifies(timeout=30, stop_after=3))
    assert [notification.payload for notification in heard] == [wakeup.THIS_PROCESS, "another-host:4242", ""]
    assert [for_us(notification) for notification in heard] == [False, True, True]


def test_the_bots_admission_notifies_other_processes_in_its_own_name(server, settings, tmp_path, veo_fake):
    quick_bot_settings(settings, tmp_path)
    payload = slash_command("veo", {"prompt": "a kite over a windy beach"})

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)

    with psycopg.connect(
        **connection_parameters(application_name="test-listener", alias="direct"), autocommit=True
    ) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(services.WORK_CHANNEL)))
        run_bot(scenario, run_worker=False)  # no worker here: only the NOTIFY tells anyone
        heard = list(conn.notifies(timeout=30, stop_after=1))
    assert VideoRequest.objects.get(interaction_id=int(payload["id"])).status == "pending"
    assert [notification.payload for notification in heard] == [wakeup.THIS_PROCESS]


def test_while_its_own_generations_fill_the_cap_an_admission_does_not_make_the_worker_claim(settings, monkeypatch):
    # claim_video_request counts generating rows (and pending ones under a live lease) against
    # VEO_MAX_CONCURRENT: a worker whose own runs fill it knows a claim for new work would come
    # back empty, so an admission's wake-up costs it no round trip.
    settings.VEO_MAX_CONCURRENT = 1
    claims = []
    real_claim = services.claim_work
    monkeypatch.setattr(services, "claim_work", lambda **kwargs: claims.append(kwargs) or real_claim(**kwargs))
    worker = standalone_worker(
        backend=OfflineBackend(seconds=30), deliveries={"discord": CliDelivery(), "cli": CliDelivery()}
    )
    with worker_thread(worker):
        wait_for(listeners, what="the worker listening")
        first = admit(user_id=640).request_id
        wakeup.notify_workers()
        wait_for(started(first), timeout=IDLE_POLL.total_seconds() / 2, what="the first start")
        wait_for(worker.holds_the_cap, what="the cap held by this worker's run")
        before = len(claims)
        second = admit(user_id=641).request_id
        wakeup.notify_workers()
        time.sleep(1)  # a wake-up claim would have come and gone
        assert len(claims) == before
        assert VideoRequest.objects.get(id=second).status == "pending"


def test_no_notify_for_an_admission_while_this_processs_worker_holds_the_cap():
    # Then no worker anywhere can start it until one of ours ends: the others would claim in vain.
    def call(user_id: int) -> AdmissionCall:
        return AdmissionCall(
            interaction_id=next_interaction(),
            user_id=user_id,
            guild_id=2001,
            channel_id=3001,
            params=VideoParameters(prompt="a paper boat on a puddle"),
        )

    async def admit_twice() -> None:
        batches = AdmissionBatches()
        with wakeup.woken_by_local_admissions(asyncio.Event(), holds_the_cap=lambda: True):
            assert (await batches.admit(call(650))).admission.admitted
        with wakeup.woken_by_local_admissions(asyncio.Event(), holds_the_cap=lambda: False):
            assert (await batches.admit(call(651))).admission.admitted

    with psycopg.connect(
        **connection_parameters(application_name="test-listener", alias="direct"), autocommit=True
    ) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(services.WORK_CHANNEL)))
        asyncio.run(admit_twice())
        # Then a last notification of our own: PostgreSQL delivers notifications in the order their
        # transactions committed, so whatever the admissions sent has been heard once it comes
        # (instead of waiting out a timeout for a second one that should never come).
        conn.execute("SELECT pg_notify(%s, %s)", [services.WORK_CHANNEL, "the test's last"])
        heard = []
        for notification in conn.notifies(timeout=30):
            if notification.payload == "the test's last":
                break
            heard.append(notification)
    assert [notification.payload for notification in heard] == [wakeup.THIS_PROCESS]  # the second one's only


def test_a_worker_on_the_admitting_loop_is_woken_only_while_it_does_not_hold_the_cap():
    # Woken while holding the cap, its wait would only start again (Worker._idle); from another
    # thread (the CLI's) it is woken whatever it holds: the check belongs to its own loop.
    held = True

    async def wake_here_then_from_a_thread() -> list[bool]:
        wake, seen = asyncio.Event(), []
        with wakeup.woken_by_local_admissions(wake, holds_the_cap=lambda: held):
            wakeup.wake_local_workers()
            seen.append(wake.is_set())
            nonlocal held
            held = False
            wakeup.wake_local_workers()
            seen.append(wake.is_set())
            wake.clear()
            held = True
            await asyncio.to_thread(wakeup.wake_local_workers)
            await asyncio.wait_for(wake.wait(), 5)
            seen.append(wake.is_set())
        return seen

    assert asyncio.run(wake_here_then_from_a_thread()) == [False, True, True]


def test_the_listener_hears_every_notification_of_a_packet_and_a_lost_connection():
    # generation.listener.notifications waits on the socket through the event loop, not psycopg's
    # 0.1 s wake-ups: what it reads must still be every notification, and a lost connection an error.
    async def listen() -> tuple[list[str], BaseException | None]:
        params = connection_parameters(application_name="test-listener", alias="direct")
        heard, lost = [], None
        async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(services.WORK_CHANNEL)))
            with psycopg.connect(**params, autocommit=True) as sender:
                with sender.transaction():  # delivered together, at the commit
                    for payload in ("one", "two", "three"):
                        sender.execute("SELECT pg_notify(%s, %s)", [services.WORK_CHANNEL, payload])
                try:
                    async for notification in notifications(conn):
                        heard.append(notification.payload)
                        if len(heard) == 3:
                            sender.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
                except psycopg.OperationalError as error:
                    lost = error
        return heard, lost

    heard, lost = asyncio.run(asyncio.wait_for(listen(), 10))
    assert heard == ["one", "two", "three"]
    assert lost is not None
