"""Prometheus metrics, scraped as Prometheus would: the web process's /metrics (the database's
figures), and the ports of a real runworker and a real bot process (what happens inside them),
before and after requests flow through them, and through a database outage."""

import ipaddress
import json
import re
import socket
from datetime import UTC, datetime

import pytest
import requests
from django.db import connection, transaction
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from generation.delivery import CliDelivery
from generation.veo import OfflineBackend
from generation.worker import standalone_worker
from tests.bot_process import BotProcess, bot_environment
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.interactions import slash_command
from tests.fakes.veo_server import DEFAULT_API_KEY
from tests.helpers import UNREACHABLE_PASSWORD, admit, free_port, get_without_database, next_interaction
from tests.tcp_proxy import TcpProxy
from tests.workers import (
    ROOT,
    database_url,
    runworker_process,
    start_worker_process,
    truncate_requests,
    wait_for,
    worker_thread,
)
from tracking import metrics, services
from tracking.models import Source, VideoRequest
from tracking.services import VideoParameters

pytestmark = [pytest.mark.django_db(transaction=True)]


class Samples:
    """One scrape, parsed with prometheus_client's own parser."""

    def __init__(self, text: str):
        self.text = text
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the series of that name whose labels include ``labels``; 0 when there are none."""
        return sum(
            sample.value
            for sample in self.samples
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
        )

    def has(self, name: str) -> bool:
        return any(sample.name == name for sample in self.samples)


def scrape_web(client, **headers) -> Samples:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    return Samples(response.content.decode())


def scrape_port(port: int) -> Samples | None:
    """The process's figures on its metrics port; None while nothing answers there."""
    try:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except requests.RequestException:
        return None
    assert response.status_code == 200
    return Samples(response.text)


@pytest.fixture
def empty_tables():
    truncate_requests()  # reports and the outbox go with their requests
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE journal_quarantine")


# -- the web process -----------------------------------------------------------------------------


@pytest.mark.usefixtures("empty_tables")
def test_the_web_figures_follow_requests_through_admission_generation_and_reports(client, settings, tmp_path):
    settings.VEO_QUOTA_LIMIT = 2
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    before = scrape_web(client)
    assert before.value("veobot_database_up") == 1
    assert before.value("veobot_queue_depth") == 0 and not before.has("veobot_requests_last_hour")

    first, second, refused = (admit(user_id=71, interaction_id=next_interaction()) for _ in range(3))
    assert (first.status, second.status, refused.reason_code) == ("pending", "pending", "quota_exceeded")
    services.record_quarantined(
        key="host:line-1.json",
        entry={"kind": "line", "error": "torn write", "host": "host", "quarantined_at": datetime.now(UTC).isoformat()},
    )
    queued = scrape_web(client)
    assert queued.value("veobot_queue_depth") == 2 and queued.value("veobot_queue_due") == 2
    assert queued.value("veobot_queue_oldest_wait_seconds") > 0
    assert queued.value("veobot_requests_last_hour", status="pending", reason="") == 2
    assert queued.value("veobot_requests_last_hour", status="rejected", reason="quota_exceeded") == 1
    assert queued.value("veobot_journal_quarantine_open") == 1

    worker = standalone_worker(
        backend=OfflineBackend(seconds=0), deliveries={"discord": CliDelivery(), "cli": CliDelivery()}
    )
    with worker_thread(worker):
        wait_for(lambda: VideoRequest.objects.filter(delivered_at__isnull=False).count() == 2, what="two deliveries")
    interaction = VideoRequest.objects.get(id=first.request_id).interaction_id
    services.report_request(interaction_id=interaction, reporter_id=72, guild_id=None, reason="not for this server")
    done = scrape_web(client)
    assert done.value("veobot_queue_depth") == 0 and done.value("veobot_queue_oldest_wait_seconds") == 0
    assert done.value("veobot_requests_generating") == 0 and done.value("veobot_requests_undelivered") == 0
    assert done.value("veobot_requests_last_hour", status="pending") == 0
    assert done.value("veobot_requests_last_hour", status="completed", reason="") == 2
    assert done.value("veobot_reports_open") == 1 and done.value("veobot_reports_oldest_open_seconds") >= 0
    # the report is also an item in the review queue
    assert done.value("veobot_review_queue_open") - queued.value("veobot_review_queue_open") == 1
    assert done.value("veobot_review_queue_oldest_open_seconds") >= 0
    # This test's process ran the worker, and the web's /metrics carries the process's own figures too.
    delivered = done.value("veobot_deliveries_total", method="cli") - before.value(
        "veobot_deliveries_total", method="cli"
    )
    assert delivered == 2


def test_metrics_answer_only_the_allowed_addresses(client, settings):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    outside = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert outside.status_code == 403 and b"veobot" not in outside.content
    settings.METRICS_ALLOWED = (ipaddress.ip_network("203.0.113.0/24"),)
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    # Behind a proxy on the same machine every request comes from loopback: the client is the
    # address the proxy names, and it is not allowed.
    settings.METRICS_ALLOWED = (ipaddress.ip_network("127.0.0.1/32"),)
    settings.ADMIN_LOGIN_IP_HEADER = "HTTP_X_REAL_IP"
    assert client.get("/metrics", HTTP_X_REAL_IP="198.51.100.7").status_code == 403
    assert client.get("/metrics", HTTP_X_REAL_IP="127.0.0.1").status_code == 200


def test_every_database_figure_reads_an_index():
    """However many requests the table holds, a scrape reads only what an index bounds: with
    sequential scans priced out, the planner still finds an index for every subquery, and the
    last hour's window is an index condition (a filter would read every row)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(sql.SQL("EXPLAIN {}").format(sql.SQL(metrics.IN_FLIGHT_SQL)))
        in_flight = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(sql.SQL("EXPLAIN {}").format(sql.SQL(metrics.RECENT_SQL)), [metrics.RECENT])
        recent = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in in_flight and in_flight.count("Index") >= len(metrics.IN_FLIGHT)
    assert "Seq Scan" not in recent and "Index Cond: (created_at >" in recent


def test_without_its_database_the_web_scrape_answers_promptly_with_database_up_0():
    status, seconds, body, output = get_without_database("/metrics")
    assert status == 200 and seconds < 5, output  # the pool's 2 s, not its 10 s connect timeout
    scraped = Samples(body)
    assert scraped.value("veobot_database_up") == 0 and scraped.has("veobot_database_up")
    assert not scraped.has("veobot_queue_depth")  # nothing made up while the database is away
    assert UNREACHABLE_PASSWORD not in output


# -- runworker's port ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("empty_tables")
def test_a_worker_serves_its_figures_and_they_move_as_it_works(db_settings, tmp_path, veo_fake):
    port = free_port()
    worker = start_worker_process(
        db_settings,
        tmp_path / "worker.log",
        METRICS_PORT=str(port),
        VEO_BACKEND="express",
        VEO_API_KEY=DEFAULT_API_KEY,
        VEO_API_BASE_URL=veo_fake.url,
        VEO_MEDIA_ROOT=str(tmp_path / "media"),
        VEO_POLL_INITIAL="100ms",
        VEO_RETRY_BACKOFF="0s",
        VEO_WORKER_IDLE_POLL="100ms",
        VEO_QUOTA_LIMIT="100",
    )
    try:
        before = wait_for(lambda: scrape_port(port), what="the worker's metrics port")
        assert before.value("veobot_degraded") == 0 and before.value("veobot_journal_backlog_entries") == 0
        assert before.value("veobot_deliveries_total") == 0 and before.value("veobot_generation_seconds_count") == 0
        prompts = [
            "a red fox in fresh snow",
            "a red fox [scenario:safety_filtered]",
            "a red fox at dusk [scenario:server_error times=1]",
            "a red fox at dawn [scenario:rate_limited times=1]",
        ]
        ids = [
            services.admit_request(
                interaction_id=next_interaction(),
                user_id=81,
                guild_id=None,
                channel_id=None,
                params=VideoParameters(prompt=prompt),
                source=Source.CLI,
            ).request_id
            for prompt in prompts
        ]
        delivered = VideoRequest.objects.filter(id__in=ids, delivered_at__isnull=False)
        wait_for(lambda: delivered.count() == 4, timeout=60, what="four deliveries")
        after = wait_for(
            lambda: (s := scrape_port(port)) and s.value("veobot_deliveries_total", method="cli") == 4 and s,
            what="four deliveries counted",
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert after.value("veobot_generation_seconds_count", outcome="video") == 3
    assert after.value("veobot_generation_seconds_count", outcome="content_filtered") == 1
    assert after.value("veobot_generation_seconds_sum") > 0
    assert after.value("veobot_safety_filtered_total") == 1
    assert after.value("veobot_veo_errors_total", call="start", code="500") == 1
    assert after.value("veobot_veo_errors_total", call="start", code="429") == 1
    assert after.value("veobot_veo_errors_total") == 2
    assert after.value("veobot_deliveries_total", method="undeliverable") == 0
    assert not after.has("veobot_queue_depth")  # the database's figures are the web process's


def test_a_metrics_port_already_taken_stops_the_worker_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = runworker_process(
            {"SECRET_KEY": "k", "DATABASE_URL": "postgresql://veobot@127.0.0.1:9/veobot", "METRICS_PORT": str(port)},
            tmp_path / "worker.log",
        )
        assert worker.wait(60) == 2
    assert (tmp_path / "worker.log").read_text().strip().splitlines() == [
        f"veobot: configuration error: METRICS_PORT {port} cannot be served on 127.0.0.1 (Address already in use); "
        "each bot and worker on a machine needs a port of its own"
    ]


# -- the bot's port, through an outage -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.processes
@pytest.mark.usefixtures("empty_tables")
def test_a_bot_serves_its_figures_and_they_show_degraded_mode_and_the_journal(db_settings, tmp_path, server, veo_fake):
    port = free_port()
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        via_proxy = database_url({**db_settings, "HOST": "127.0.0.1", "PORT": proxy.port})
        environment = bot_environment(
            database_url=via_proxy, server=server, veo_fake=veo_fake, tmp_path=tmp_path, METRICS_PORT=str(port)
        )
        bot = BotProcess(environment, tmp_path / "bot.log")
        try:
            before = wait_for(lambda: scrape_port(port), what="the bot's metrics port")
            assert before.value("veobot_degraded") == 0 and before.value("veobot_admission_seconds_count") == 0

            calm = slash_command("veo", {"prompt": "a calm lake before the outage"})
            bot.send(server, calm)
            up = wait_for(lambda: _counted(port, "interaction", 1), what="a delivery counted")
            assert up.value("veobot_admission_seconds_count", mode="database") == 1
            assert up.value("veobot_generation_seconds_count", outcome="video") == 1

            proxy.cut()
            during = slash_command("veo", {"prompt": "a red fox during the outage"})
            bot.send(server, during)
            down = wait_for(lambda: _counted(port, "interaction", 2), timeout=30, what="a delivery in degraded mode")
            assert down.value("veobot_degraded") == 1 and down.value("veobot_degraded_outages_total") == 1
            assert down.value("veobot_admission_seconds_count", mode="degraded") == 1
            assert down.value("veobot_journal_backlog_entries") >= 4  # request, generating, completed, delivered
            assert down.value("veobot_journal_files") == 1

            proxy.restore()
            back = wait_for(
                lambda: (s := scrape_port(port)) and s.value("veobot_degraded") == 0 and s, timeout=30, what="recovery"
            )
            # Both figures are read when scraped, and the file leaves the folder a moment before
            # the replay empties the process's own count: replayed is when both say so.
            replayed = wait_for(
                lambda: (
                    (s := scrape_port(port))
                    and s.value("veobot_journal_files") == 0
                    and s.value("veobot_journal_backlog_entries") == 0
                    and s
                ),
                timeout=30,
                what="the journal replayed",
            )
            assert back.value("veobot_degraded_outages_total") == 1
            assert VideoRequest.objects.filter(interaction_id=during["id"], delivered_at__isnull=False).exists()
            assert bot.stop() == 0
        finally:
            bot.cleanup()
    assert BOT_TOKEN not in replayed.text and "tests-only" not in replayed.text


def _counted(port: int, method: str, deliveries: int) -> Samples | None:
    scraped = scrape_port(port)
    return scraped if scraped and scraped.value("veobot_deliveries_total", method=method) == deliveries else None


def test_the_grafana_dashboard_charts_only_series_that_exist(client):
    import generation.metrics  # noqa: F401  (the bots' and workers' series, defined on import)

    dashboard = json.loads((ROOT / "docs" / "grafana-veobot.json").read_text())
    charted = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"veobot_\w+", target["expr"])
    }
    served = {family.name for family in text_string_to_metric_families(scrape_web(client).text)}
    assert len(charted) >= 20 and charted <= served, charted - served
