"""The moderation benchmarks' data: requests loaded as a restore would, into a database of their own.

Used by bench/admin_pages.py and bench/admission_moderation.py. Rows are loaded with
INSERT ... SELECT over generate_series with triggers off (session_replication_role = replica)
and the secondary indexes built afterwards. A database already holding the requested number of
rows is reused (migrated first: a new migration is applied to it as to a production table).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench.bulk_load import load_requests

REPO = Path(__file__).resolve().parent.parent

USERS = 200_000
GUILDS = 3_000
DAYS = 90

# Prompts are assembled from word lists so that full-text search sees a realistic mix of
# common and rare words. One row in ~20,000 mentions "kraken": the rare-term search.
LOAD_SQL = """
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds, aspect_ratio,
    resolution, generate_audio, seed, model, status, operation_name, created_at, available_at, started_at,
    completed_at, output_uris, public_urls, output_size_bytes, safety_filtered_count, safety_filtered_reasons,
    error_code, error_message, delivered_at, delivery_method, discord_message_id, counts_toward_quota,
    review_status, reviewed_by, reviewed_at)
SELECT
    1000000000000000 + n, user_id, guild_id, CASE WHEN guild_id IS NULL THEN NULL ELSE guild_id * 10 + 1 END,
    (ARRAY['A red fox', 'An astronaut', 'A golden retriever', 'An old fisherman', 'A paper boat', 'A hummingbird',
           'A steam train', 'Two kids on bicycles', 'A samurai', 'A glowing jellyfish', 'A lighthouse keeper',
           'A food truck', 'A snow leopard', 'A ballet dancer', 'A robot barista', 'A hot air balloon'])[1 + (h %% 16)]
    || ' ' || (ARRAY['walking through', 'running across', 'drifting above', 'dancing in', 'exploring',
                     'waiting in', 'flying over', 'skating through'])[1 + (h / 16 %% 8)]
    || ' ' || (ARRAY['a misty pine forest at dawn', 'a rainy Tokyo alley at night', 'the surface of Mars',
                     'a sunflower field', 'a busy market', 'an abandoned space station', 'a frozen lake',
                     'a coral reef', 'a cyberpunk city', 'a cozy bookstore'])[1 + (h / 128 %% 10)]
    || ', ' || (ARRAY['slow dolly-in shot', 'aerial drone shot', 'handheld close-up', 'wide shot',
                      'tracking shot', 'time-lapse'])[1 + (h / 1280 %% 6)]
    -- Real prompts have a large vocabulary: a long tail of 30,000 words, a few common, most
    -- rare. Without it (--small-vocabulary) every word is frequent, the planner knows no rare
    -- lexeme, and guesses 0.5 per cent for any word it has no statistics on.
    || CASE WHEN %(tail)s THEN ', with ' || (ARRAY['a', 'e', 'i', 'o', 'u'])[1 + (h / 7680 %% 5)] || 'v' || tail
            ELSE '' END
    || CASE WHEN n %% 20000 = 7 THEN ', a kraken rising from the sea' ELSE '' END,
    CASE WHEN h %% 7 = 0 THEN 'blurry, low quality' END,
    (ARRAY[4, 6, 8, 8])[1 + (h / 7 %% 4)]::smallint,
    CASE WHEN h %% 10 < 7 THEN '16:9' ELSE '9:16' END,
    CASE WHEN h %% 4 < 3 THEN '720p' ELSE '1080p' END,
    h %% 5 <> 0, NULL, 'veo-3.1-generate-001', status,
    CASE WHEN status IN ('generating', 'completed', 'failed', 'timeout') THEN 'operations/' || n END,
    created_at, created_at,
    CASE WHEN status IN ('generating', 'completed', 'failed', 'timeout') THEN created_at + interval '5 seconds' END,
    CASE WHEN status IN ('completed', 'failed', 'timeout')
         THEN created_at + interval '5 seconds' + make_interval(secs => 30 + (h %% 90))
         WHEN status IN ('cancelled', 'rejected') THEN created_at END,
    CASE WHEN status = 'completed' THEN ARRAY['gs://veobot-bench/' || n || '.mp4'] ELSE '{}' END,
    CASE WHEN status = 'completed' THEN ARRAY['https://storage.googleapis.com/veobot-bench/' || n || '.mp4']
         ELSE '{}' END,
    CASE WHEN status = 'completed' THEN 3000000 + h %% 5000000 END,
    CASE WHEN filtered THEN 1 ELSE 0 END,
    CASE WHEN filtered THEN ARRAY['Violence'] ELSE '{}' END,
    CASE status WHEN 'failed' THEN CASE WHEN filtered THEN 'content_filtered' ELSE 'backend_error' END
                WHEN 'timeout' THEN 'timeout' WHEN 'cancelled' THEN 'cancelled' WHEN 'rejected' THEN 'quota_exceeded' END,
    CASE status WHEN 'failed' THEN 'generation failed' WHEN 'timeout' THEN 'took too long'
                WHEN 'cancelled' THEN 'cancelled' WHEN 'rejected' THEN 'quota exceeded' END,
    CASE WHEN status = 'completed' THEN created_at + interval '2 minutes' END,
    CASE WHEN status = 'completed' THEN 'interaction' END,
    CASE WHEN status = 'completed' THEN 100000000000000000 + n END,
    status IN ('pending', 'generating', 'completed') OR filtered,
    review, CASE WHEN review <> 'unreviewed' THEN 'moderator' END,
    CASE WHEN review <> 'unreviewed' THEN created_at + interval '1 hour' END
FROM (
    SELECT n, h, created_at, user_id, guild_id, filtered, tail,
           CASE WHEN created_at > now() - interval '3 minutes' AND h %% 3 = 0 THEN 'pending'
                WHEN created_at > now() - interval '3 minutes' AND h %% 3 = 1 THEN 'generating'
                WHEN filtered THEN 'failed'
                WHEN h %% 100 < 85 THEN 'completed' WHEN h %% 100 < 89 THEN 'failed'
                WHEN h %% 100 < 90 THEN 'timeout' WHEN h %% 100 < 91 THEN 'cancelled' ELSE 'rejected' END AS status,
           CASE WHEN h %% 1000 < 15 THEN 'approved' WHEN h %% 1000 < 19 THEN 'flagged'
                WHEN h %% 1000 < 20 THEN 'removed' ELSE 'unreviewed' END AS review
    FROM (
        SELECT n, abs(hashint8(n)) AS h,
               now() - make_interval(days => %(days)s) * (1 - n::float8 / %(rows)s) AS created_at,
               -- skewed: a few heavy users and guilds, a long tail
               1 + floor(%(users)s * power(random(), 3))::bigint AS user_id,
               CASE WHEN random() < 0.9 THEN 1 + floor(%(guilds)s * power(random(), 2))::bigint END AS guild_id,
               random() < 0.015 AS filtered,
               floor(30000 * power(random(), 3))::int AS tail
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
    ) AS g
) AS r
"""


def server_conninfo() -> dict:
    """libpq parameters of the server (DATABASE_URL, or the embedded PostgreSQL)."""
    from psycopg.conninfo import conninfo_to_dict

    if os.environ.get("DATABASE_URL"):
        params = conninfo_to_dict(os.environ["DATABASE_URL"])
        params.pop("dbname", None)
        return params
    from veosite.embedded_db import settings_dict

    found = settings_dict(REPO)
    return {"host": found["HOST"], "user": found["USER"]}


def load(params: dict, dbname: str, rows: int, *, reload: bool = False, tail: bool = True, log=print) -> None:
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        exists = not reload and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
    if exists:
        with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
            marker = conn.execute("SELECT to_regclass('bench_admin_dataset')").fetchone()[0]
            found = conn.execute("SELECT rows FROM bench_admin_dataset").fetchone() if marker else None
        if found and found[0] == rows:
            from tracking.sql_migrations import MigrationError

            try:
                _migrate(params, dbname, log)
                log(f"{dbname}: reusing {rows:,} loaded rows")
                return
            except MigrationError as error:  # e.g. a migration edited since the load
                log(f"{dbname}: schema differs from migrations_sql/ ({error}); reloading")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    _migrate(params, dbname, log)
    with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
        started = time.monotonic()
        load_requests(
            conn, LOAD_SQL, rows=rows, params={"days": DAYS, "users": USERS, "guilds": GUILDS, "tail": tail}, log=log
        )
        log("VACUUM ANALYZE")
        conn.execute("VACUUM (ANALYZE) video_requests")
        conn.execute("CREATE TABLE bench_admin_dataset (rows bigint NOT NULL, loaded_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO bench_admin_dataset VALUES (%s, now())", [rows])
        log(f"load finished in {time.monotonic() - started:.0f} s")


def _migrate(params: dict, dbname: str, log) -> None:
    from tracking.sql_migrations import Runner

    Runner(
        {
            "NAME": dbname,
            "USER": params.get("user", ""),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", ""),
            "PORT": params.get("port", ""),
        },
        log=log,
    ).migrate()
