"""The review queue's and the audit log's benchmark data, beside the requests of bench/admin_dataset.

    queue: 150,000 items over the last 90 days, the newest 100,000 open (5 % of those claimed
           by one of 20 moderators), of the four kinds made from requests (reports, safety filter,
           blocked terms, repeated refusals) plus 1,000 appeals of 1,000 bans;
    audit: 1,000,000 moderation_log entries over 90 days by 20 moderators, with the mix of
           actions, targets and before/after values the panel writes.

Loaded once into the benchmark database (a marker table says what is there) and analysed.
"""

from __future__ import annotations

import time

import psycopg

OPEN_ITEMS = 100_000
RESOLVED_ITEMS = 50_000
APPEALS = 1_000
LOG_ENTRIES = 1_000_000
MODERATORS = 20

_ITEMS_SQL = """
INSERT INTO review_items (kind, subject_key, user_id, guild_id, request_id, summary, hits, state, created_at,
                          last_hit_at, claimed_by, claimed_until, decision, resolution_reason, resolved_by,
                          resolved_at)
SELECT kind, CASE WHEN kind IN ('report', 'safety_filter') THEN 'request:' || r.id ELSE 'user:' || (5000000 + n) END,
       -- a user's kinds are one open item per user: those users are the load's own, one each
       CASE WHEN kind IN ('report', 'safety_filter') THEN r.user_id ELSE 5000000 + n END, r.guild_id, r.id,
       CASE kind WHEN 'report' THEN 'reported: inappropriate for this server'
                 WHEN 'safety_filter' THEN 'Veo safety filter: violence'
                 WHEN 'blocked_term' THEN 'prompt refused: "kraken" is not allowed'
                 ELSE 'refused 5 times within an hour; latest: quota exceeded' END,
       1 + n %% 4, state, at, at,
       CASE WHEN open AND n %% 20 = 0 THEN 'mod' || lpad((n %% %(moderators)s + 1)::text, 2, '0') END,
       CASE WHEN open AND n %% 20 = 0 THEN now() + interval '10 minutes' END,
       CASE WHEN NOT open THEN (ARRAY['approve', 'remove_output', 'ban', 'dismiss'])[1 + n %% 4] END,
       CASE WHEN NOT open THEN 'benchmark decision' END,
       CASE WHEN NOT open THEN 'mod' || lpad((n %% %(moderators)s + 1)::text, 2, '0') END,
       CASE WHEN NOT open THEN at + interval '1 hour' END
FROM (
    SELECT n, n > %(resolved)s AS open, CASE WHEN n > %(resolved)s THEN 'open' ELSE 'resolved' END AS state,
           (ARRAY['report', 'safety_filter', 'blocked_term', 'repeated_refusals'])[1 + n %% 4] AS kind,
           now() - interval '90 days' * (1 - n::float8 / (%(resolved)s + %(open)s)) AS at,
           -- spread over the request table by a multiplicative hash: distinct requests and users
           1 + (n::bigint * 7919) %% (SELECT max(id) FROM video_requests) AS request_id
    FROM generate_series(1, %(resolved)s + %(open)s) AS n
) AS s
JOIN video_requests r ON r.id = s.request_id
"""

_APPEALS_SQL = """
WITH bans AS (
    INSERT INTO user_bans (user_id, reason, banned_by)
    SELECT 9000000 + n, 'benchmark ban', 'mod01' FROM generate_series(1, %(appeals)s) AS n
    RETURNING id, user_id
)
INSERT INTO appeals (ban_id, user_id, body) SELECT id, user_id, 'I did not mean it; please lift the ban.' FROM bans
"""

_LOG_SQL = """
INSERT INTO moderation_log (at, actor, action, target_table, target_id, subject_user_id, reason, before, after)
SELECT now() - interval '90 days' * (1 - n::float8 / %(entries)s),
       'mod' || lpad((n %% %(moderators)s + 1)::text, 2, '0'),
       (ARRAY['claim', 'resolve: dismiss', 'resolve: remove_output', 'resolve: ban', 'note', 'review: flagged',
              'review: approved', 'remove output', 'ban', 'refund', 'release', 'save blocked term'])[1 + n %% 12],
       (ARRAY['review_items', 'review_items', 'review_items', 'review_items', 'review_notes', 'video_requests',
              'video_requests', 'video_requests', 'user_bans', 'video_requests', 'review_items',
              'blocked_terms'])[1 + n %% 12],
       1 + (n::bigint * 7919) %% 10000000,
       100000 + (n::bigint * 104729) %% 200000,
       CASE WHEN n %% 12 NOT IN (0, 10) THEN 'benchmark reason ' || n %% 1000 END,
       jsonb_build_object('state', 'open', 'claimed_by', NULL),
       jsonb_build_object('state', 'resolved', 'claimed_by', 'mod01')
FROM generate_series(1, %(entries)s) AS n
"""


def load_queue(params: dict, dbname: str, *, log=print) -> None:
    """Load the queue and the audit log into ``dbname`` unless they are there already."""
    with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('bench_queue_dataset')").fetchone()[0]:
            log(f"{dbname}: reusing the loaded queue and audit log")
            return
        values = {
            "open": OPEN_ITEMS,
            "resolved": RESOLVED_ITEMS,
            "moderators": MODERATORS,
            "appeals": APPEALS,
            "entries": LOG_ENTRIES,
        }
        for label, sql in (("queue items", _ITEMS_SQL), ("appeals", _APPEALS_SQL), ("audit entries", _LOG_SQL)):
            started = time.monotonic()
            inserted = conn.execute(sql, values).rowcount
            log(f"loaded {inserted:,} {label} ({time.monotonic() - started:.0f} s)")
        conn.execute("VACUUM ANALYZE review_items")
        conn.execute("VACUUM ANALYZE moderation_log")
        conn.execute("VACUUM ANALYZE appeals")
        conn.execute("CREATE TABLE bench_queue_dataset (loaded_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO bench_queue_dataset DEFAULT VALUES")
