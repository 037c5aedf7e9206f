"""/metrics: the web process's Prometheus figures, read from PostgreSQL when scraped.

What the database holds -- the queue, requests by status and reason, open reports, the journal
entries waiting in quarantine -- is the same whichever process reads it, so the web process
serves it once for all; each bot and worker serves what happens inside it on its own port
(generation.metrics). Every query reads a partial index or a bounded window, never the whole
table: an hour of requests, and only the rows still in flight, open or pending, which stay few
however many requests the table holds.

A scrape never fails because PostgreSQL is away: it then says ``veobot_database_up 0`` within
tracking.health.TIMEOUT and leaves the database's figures out. Only the addresses in
METRICS_ALLOWED are answered (loopback by default); labels carry statuses and error codes,
never user text or credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from datetime import timedelta

import psycopg
from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from tracking.health import pooled_connection
from tracking.throttle import client_ip

log = logging.getLogger(__name__)

# The classic text format, which every Prometheus reads (two registries' OpenMetrics would end twice).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT = timedelta(hours=1)  # the window requests are counted over, by status and reason

# One round trip; each subquery has an index to itself (migrations_sql/schema.sql):
# video_requests_status_created_idx, video_requests_queue_idx, video_requests_undelivered_idx,
# reports_open_idx, review_items_open_idx, user_notices_owed_idx, journal_quarantine_open_idx,
# discord_actions_pending_idx.
IN_FLIGHT_SQL = (
    "SELECT"
    " (SELECT count(*) FROM video_requests WHERE status = 'pending'),"
    " (SELECT count(*) FROM video_requests WHERE status = 'pending' AND available_at <= now()),"
    " (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM video_requests WHERE status = 'pending'),"
    " (SELECT count(*) FROM video_requests WHERE status = 'generating'),"
    " (SELECT count(*) FROM video_requests"
    "    WHERE delivered_at IS NULL AND status IN ('completed', 'failed', 'timeout', 'cancelled')),"
    " (SELECT count(*) FROM reports WHERE state = 'open'),"
    " (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM reports WHERE state = 'open'),"
    " (SELECT count(*) FROM review_items WHERE state = 'open'),"
    " (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM review_items WHERE state = 'open'),"
    " (SELECT count(*) FROM user_notices WHERE delivered_at IS NULL),"
    " (SELECT count(*) FROM journal_quarantine WHERE resolved_at IS NULL),"
    " (SELECT count(*) FROM discord_actions WHERE done_at IS NULL AND failed_at IS NULL)"
)
# video_requests_created_at_idx: the last hour's rows only (now(), being stable, bounds an index scan;
# clock_timestamp() would be a filter over every row).
RECENT_SQL = (
    "SELECT status, coalesce(error_code, ''), count(*) FROM video_requests WHERE created_at > now() - %s GROUP BY 1, 2"
)
# The figures of IN_FLIGHT_SQL, in its order: name and help.
IN_FLIGHT = (
    ("veobot_queue_depth", "Requests waiting to start (pending)."),
    ("veobot_queue_due", "Pending requests that may start now (not backing off after a 429 or a failed start)."),
    ("veobot_queue_oldest_wait_seconds", "How long the oldest pending request has waited since it was made."),
    ("veobot_requests_generating", "Requests Veo is generating now."),
    ("veobot_requests_undelivered", "Requests that ended but whose outcome has not reached the requester yet."),
    ("veobot_reports_open", "Reports of videos that no moderator has resolved."),
    ("veobot_reports_oldest_open_seconds", "Age of the oldest open report."),
    ("veobot_review_queue_open", "Items in the moderators' review queue that no one has resolved."),
    ("veobot_review_queue_oldest_open_seconds", "How long the oldest open review item has waited."),
    ("veobot_user_notices_undelivered", "Decisions (appeals) not yet delivered to their users."),
    ("veobot_journal_quarantine_open", "Quarantined journal entries no operator has replayed or discarded."),
    ("veobot_outbox_pending", "Moderators' actions (Discord messages, bucket objects to delete) still to perform."),
)


def gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class DatabaseCollector:
    """The database's figures, computed on every scrape (prometheus_client's custom collector)."""

    def collect(self):
        started = time.perf_counter()
        try:
            with pooled_connection() as conn, conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '5s'")  # a later answer is worth less than none
                in_flight = conn.execute(IN_FLIGHT_SQL).fetchone()
                recent = conn.execute(RECENT_SQL, [RECENT]).fetchall()
        except psycopg.Error as error:  # the pool's PoolTimeout included
            log.warning("metrics: the database did not answer (%s)", type(error).__name__)
            yield gauge("veobot_database_up", "1 when PostgreSQL answered this scrape's queries.", 0)
            return
        yield gauge("veobot_database_up", "1 when PostgreSQL answered this scrape's queries.", 1)
        yield gauge(
            "veobot_database_scrape_seconds", "Time the database's figures took to read.", time.perf_counter() - started
        )
        for (name, documentation), value in zip(IN_FLIGHT, in_flight, strict=True):
            yield gauge(name, documentation, value or 0)
        by_status = GaugeMetricFamily(
            "veobot_requests_last_hour",
            "Requests made in the last hour, by status and reason (the error or refusal code; empty when none).",
            labels=["status", "reason"],
        )
        for status, reason, count in recent:
            by_status.add_metric([status, reason], count)
        yield by_status


DATABASE = CollectorRegistry()
DATABASE.register(DatabaseCollector())


def allowed(address: str) -> bool:
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in settings.METRICS_ALLOWED)


def metrics(request):
    """The web process's own figures (prometheus_client's default registry) and the database's."""
    if not allowed(client_ip(request)):
        return HttpResponseForbidden(
            "metrics are served to the addresses in METRICS_ALLOWED\n", content_type="text/plain"
        )
    return HttpResponse(generate_latest(REGISTRY) + generate_latest(DATABASE), content_type=CONTENT_TYPE)
