"""The benchmark database: the real schema, a realistic request history, and a reset between runs.

The history is 90 days of requests from 100k users, loaded with INSERT ... SELECT over
generate_series. Loading 10M rows takes minutes, so a database whose row count matches and
whose history is recent is reused; only the rows a previous benchmark added are removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from bench.bulk_load import load_requests
from bench.server import Server
from tracking.sql_migrations import MigrationError, Runner

USERS = 100_000
# Loaded user k (1..USERS) has id k * USER_ID_STEP. The ids in between belong to users with no
# history; they sort among the loaded ones, so their index entries land on the same pages.
USER_ID_STEP = 1_000_000
HISTORY = timedelta(days=90)
LOADED_INTERACTION_BASE = 10**15
BENCH_INTERACTION_START = 2 * 10**15  # the benchmark's own interaction ids never meet the loaded ones
# The history ends at load time; reused much later, its last 24 hours would be empty.
REUSE_WITHIN = timedelta(hours=6)


@dataclass(frozen=True)
class Dataset:
    dbname: str
    rows: int
    last_loaded_id: int
    loaded_at: datetime
    reused: bool


def prepare(server: Server, *, dbname: str, rows: int, reload: bool, log=print) -> Dataset:
    """Return a database holding exactly `rows` loaded requests and no benchmark rows."""
    dataset = None if reload else _reusable(server, dbname, rows, log)
    if dataset is None:
        recreate_database(server, dbname)
        Runner(server.django_settings(dbname), log=log).migrate()
        with server.connect(dbname) as conn:
            dataset = _load(conn, dbname, rows, log)
    with server.connect(dbname) as conn:
        _remove_benchmark_rows(conn, dataset.last_loaded_id, log)
        log("VACUUM ANALYZE ...")
        conn.execute("VACUUM (ANALYZE) video_requests, video_request_events")
    return dataset


def _reusable(server: Server, dbname: str, rows: int, log) -> Dataset | None:
    with server.connect("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            return None
    with server.connect(dbname) as conn:
        if not conn.execute("SELECT to_regclass('bench_dataset')").fetchone()[0]:
            return None
        found = conn.execute(
            "SELECT rows, last_loaded_id, loaded_at, loaded_at > now() - %s FROM bench_dataset", [REUSE_WITHIN]
        ).fetchone()
    if found is None or found[0] != rows or not found[3]:
        log(f"{dbname}: not reusable (want {rows:,} rows loaded within {REUSE_WITHIN}); reloading")
        return None
    try:
        Runner(server.django_settings(dbname), log=log).migrate()
    except MigrationError as error:
        log(f"{dbname}: schema differs from migrations_sql/ ({error}); reloading")
        return None
    log(f"{dbname}: reusing {rows:,} rows loaded at {found[2]:%Y-%m-%d %H:%M:%S %Z}")
    return Dataset(dbname, rows, found[1], found[2], reused=True)


def recreate_database(server: Server, dbname: str) -> None:
    with server.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def remove_benchmark_rows(conn: psycopg.Connection, last_loaded_id: int) -> None:
    """Back to the loaded history: every row a benchmark added since is deleted (quietly)."""
    _remove_benchmark_rows(conn, last_loaded_id, log=lambda *_: None)


def _remove_benchmark_rows(conn: psycopg.Connection, last_loaded_id: int, log) -> None:
    # The loaded history has no events (its triggers were off), so every event belongs to an
    # earlier benchmark run: truncating them lets the delete skip the per-row cascade.
    conn.execute("SET session_replication_role = replica")
    conn.execute("TRUNCATE video_request_events")
    deleted = conn.execute("DELETE FROM video_requests WHERE id > %s", [last_loaded_id]).rowcount
    conn.execute("RESET session_replication_role")
    if deleted:
        log(f"removed {deleted:,} rows left by an earlier benchmark run")


def _load(conn: psycopg.Connection, dbname: str, rows: int, log) -> Dataset:
    anchor = conn.execute("SELECT now()").fetchone()[0]
    load_requests(
        conn,
        LOAD_SQL,
        rows=rows,
        params={
            "anchor": anchor,
            "history": HISTORY,
            "users": USERS,
            "user_step": USER_ID_STEP,
            "interaction_base": LOADED_INTERACTION_BASE,
        },
        log=log,
        maintenance_work_mem="1GB",
    )
    last_loaded_id = conn.execute("SELECT max(id) FROM video_requests").fetchone()[0]
    conn.execute(
        "CREATE TABLE bench_dataset (rows bigint NOT NULL, users integer NOT NULL,"
        " last_loaded_id bigint NOT NULL, loaded_at timestamptz NOT NULL)"
    )
    conn.execute("INSERT INTO bench_dataset VALUES (%s, %s, %s, %s)", [rows, USERS, last_loaded_id, anchor])
    conn.execute(sql.SQL("CREATE SEQUENCE bench_interaction_ids START {}").format(sql.Literal(BENCH_INTERACTION_START)))
    return Dataset(dbname, rows, last_loaded_id, anchor, reused=False)


# One request per n, in time order over the 90 days before the anchor. Users are skewed (a
# few heavy users hit the quota daily, a long tail rarely does); statuses follow a plausible
# mix, each satisfying the table's CHECK constraints: completed rows have outputs, failed and
# timed-out rows have an error code, generating rows an operation name and a lease, and
# rejected rows never count. Backend failures, timeouts and cancellations are refunded.
LOAD_SQL = """
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
    aspect_ratio, resolution, generate_audio, seed, model, status, operation_name,
    created_at, available_at, started_at, completed_at, output_uris, public_urls, output_size_bytes,
    safety_filtered_count, safety_filtered_reasons, error_code, error_message,
    delivered_at, delivery_method, discord_message_id, counts_toward_quota,
    claimed_by, lease_expires_at, attempts, review_status, reviewed_by, reviewed_at)
SELECT
    %(interaction_base)s::bigint + r.n,
    r.user_id,
    r.guild_id,
    CASE WHEN r.guild_id IS NULL THEN r.user_id + 7 ELSE r.guild_id * 100 + 1 + mod(r.n, 20) END,
    (ARRAY['A red fox', 'An astronaut', 'A golden retriever puppy', 'An old fisherman', 'A paper boat',
           'A hummingbird', 'A vintage steam train', 'Two kids on bicycles', 'A samurai', 'A glowing jellyfish',
           'A lighthouse keeper', 'A neon-lit food truck', 'A snow leopard', 'A ballet dancer', 'A robot barista',
           'A hot air balloon', 'A sea turtle', 'A street musician', 'A knight in battered armor', 'A tiny dragon']
    )[1 + floor(random() * 20)::int]
    || ' ' || (ARRAY['walking slowly through', 'running across', 'drifting above', 'dancing in', 'exploring',
                     'waiting quietly in', 'flying low over', 'skating through', 'resting beside a stream in',
                     'racing through'])[1 + floor(random() * 10)::int]
    || ' ' || (ARRAY['a misty pine forest at dawn', 'a rain-soaked Tokyo alley at night', 'the surface of Mars',
                     'a sunflower field in late summer', 'a busy Moroccan market', 'an abandoned space station',
                     'a frozen lake under the northern lights', 'a coral reef teeming with fish',
                     'a cyberpunk city skyline', 'a cozy bookstore during a thunderstorm']
              )[1 + floor(random() * 10)::int]
    || ', ' || (ARRAY['slow dolly-in shot', 'aerial drone shot', 'handheld close-up', 'wide establishing shot',
                      'tracking shot at eye level', 'low-angle shot', 'time-lapse', 'orbiting shot']
               )[1 + floor(random() * 8)::int]
    || ', ' || (ARRAY['cinematic lighting, 35mm film grain', 'watercolor animation style', 'hyperrealistic, 4k',
                      'soft pastel colors', 'moody noir lighting', 'vibrant claymation style',
                      'golden hour glow, shallow depth of field', 'documentary style'])[1 + floor(random() * 8)::int]
    || CASE WHEN random() < 0.3 THEN '. Ambient sound: ' || (ARRAY['wind and distant birds', 'rain on a tin roof',
                     'a lo-fi beat', 'crowd chatter', 'ocean waves'])[1 + floor(random() * 5)::int] ELSE '' END,
    CASE WHEN random() < 0.15 THEN (ARRAY['blurry, low quality', 'text, watermark', 'distorted faces, extra limbs',
                                          'cartoon, oversaturated'])[1 + floor(random() * 4)::int] END,
    (ARRAY[4, 6, 8, 8])[1 + floor(random() * 4)::int]::smallint,
    CASE WHEN random() < 0.7 THEN '16:9' ELSE '9:16' END,
    CASE WHEN random() < 0.75 THEN '720p' ELSE '1080p' END,
    random() < 0.8,
    CASE WHEN random() < 0.1 THEN floor(random() * 4294967295)::bigint END,
    CASE WHEN random() < 0.9 THEN 'veo-3.0-generate-001' ELSE 'veo-3.0-fast-generate-001' END,
    r.status,
    CASE WHEN r.started THEN 'projects/veobot/locations/us-central1/publishers/google/models/'
                             || 'veo-3.0-generate-001/operations/' || md5(r.n::text) END,
    r.created_at,
    r.created_at,
    CASE WHEN r.started THEN r.created_at + r.queue_wait END,
    CASE r.status WHEN 'completed' THEN r.created_at + r.queue_wait + r.run_time
                  WHEN 'failed' THEN r.created_at + r.queue_wait + r.run_time / 4
                  WHEN 'timeout' THEN r.created_at + r.queue_wait + interval '10 minutes'
                  WHEN 'cancelled' THEN r.created_at + r.queue_wait / 2
                  WHEN 'rejected' THEN r.created_at END,
    CASE WHEN r.status = 'completed' THEN ARRAY['gs://veobot-videos/' || r.n || '/sample_0.mp4'] ELSE '{}' END,
    CASE WHEN r.status = 'completed'
         THEN ARRAY['https://storage.googleapis.com/veobot-videos/' || r.n || '/sample_0.mp4'] ELSE '{}' END,
    CASE WHEN r.status = 'completed' THEN (2000000 + 6000000 * r.detail)::bigint END,
    CASE WHEN r.error_code = 'content_filtered' THEN 1 ELSE 0 END,
    CASE WHEN r.error_code = 'content_filtered' THEN ARRAY['The video was blocked by the safety filter.'] ELSE '{}' END,
    r.error_code,
    CASE r.error_code WHEN 'content_filtered' THEN 'Veo filtered every generated video'
                      WHEN 'backend_error' THEN '503 UNAVAILABLE: the model is overloaded, try again later'
                      WHEN 'timeout' THEN 'generation did not finish within 10 minutes'
                      WHEN 'quota_exceeded' THEN 'quota exceeded: 5 of 5 videos used in the last 1 day'
                      WHEN 'banned' THEN 'banned: spam (permanent)' END,
    CASE WHEN r.status = 'completed' THEN r.created_at + r.queue_wait + r.run_time + interval '2 seconds' END,
    CASE WHEN r.status = 'completed' THEN CASE WHEN r.detail < 0.9 THEN 'interaction' ELSE 'channel' END END,
    CASE WHEN r.status = 'completed' THEN 100000000000000000 + r.n END,
    r.status IN ('pending', 'generating', 'completed') OR r.error_code IS NOT DISTINCT FROM 'content_filtered',
    CASE WHEN r.status = 'generating' THEN 'worker-' || mod(r.n, 4) END,
    CASE WHEN r.status = 'generating' THEN r.created_at + interval '5 minutes' END,
    CASE WHEN r.started THEN 1 ELSE 0 END,
    CASE WHEN r.review < 0.015 THEN 'approved' WHEN r.review < 0.02 THEN 'flagged' ELSE 'unreviewed' END,
    CASE WHEN r.review < 0.02 THEN 'moderator-' || mod(r.n, 5) END,
    CASE WHEN r.review < 0.02 THEN least(r.created_at + interval '6 hours', %(anchor)s) END
FROM (
    SELECT s.*,
           s.status IN ('generating', 'completed', 'failed', 'timeout') AS started,
           CASE WHEN s.status = 'failed' THEN CASE WHEN s.detail < 0.3 THEN 'content_filtered' ELSE 'backend_error' END
                WHEN s.status = 'timeout' THEN 'timeout'
                WHEN s.status = 'rejected' THEN CASE WHEN s.detail < 0.95 THEN 'quota_exceeded' ELSE 'banned' END
           END AS error_code
    FROM (
        SELECT g.*,
               CASE WHEN g.created_at > %(anchor)s - interval '10 minutes' AND g.fate < 0.5
                        THEN CASE WHEN g.fate < 0.2 THEN 'pending' ELSE 'generating' END
                    WHEN g.fate < 0.84 THEN 'completed'
                    WHEN g.fate < 0.89 THEN 'failed'
                    WHEN g.fate < 0.90 THEN 'timeout'
                    WHEN g.fate < 0.91 THEN 'cancelled'
                    ELSE 'rejected' END AS status
        FROM (
            SELECT n,
                   %(anchor)s - %(history)s * ((%(rows)s::float8 - n + random()) / %(rows)s::float8) AS created_at,
                   greatest(1, ceil(%(users)s::float8 * power(random(), 2)))::bigint * %(user_step)s::bigint AS user_id,
                   CASE WHEN random() < 0.9 THEN 1 + floor(2000 * power(random(), 2))::bigint END AS guild_id,
                   random() AS fate,
                   random() AS detail,
                   random() AS review,
                   make_interval(secs => 1 + 20 * random()) AS queue_wait,
                   make_interval(secs => 40 + 80 * random()) AS run_time
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        ) AS g
    ) AS s
) AS r
"""
