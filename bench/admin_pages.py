"""Moderation panel benchmark: server-side time of the admin pages over a large request table.

    .venv/bin/python bench/admin_pages.py --rows 10000000            # load (or reuse), then measure
    .venv/bin/python bench/admin_pages.py --rows 1000000 --load-only
    .venv/bin/python bench/admin_pages.py --rows 10000000 --repeat 20 --json /tmp/admin-10m.json

Without DATABASE_URL it uses the embedded PostgreSQL 16, in a separate database
(veobot_bench_admin_<rows>), so the development database is untouched. Rows are loaded with
INSERT ... SELECT over generate_series with triggers off (session_replication_role = replica)
and the secondary indexes built afterwards, as a restore would. A database already holding
the requested number of rows is reused.

Each page is requested through Django's test client as a logged-in superuser, --repeat
times after one warm-up, and the p50 is reported, for our VideoRequestAdmin and, in the same
run, for a default ModelAdmin (no options) registered on a separate AdminSite over the same
model: the baseline. Results go to stdout (and --json); docs/BENCHMARKS.md holds the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.search_set import measure_searches  # noqa: E402

BATCH_ROWS = 1_000_000
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
        # Building indexes once after the load is several times faster than row by row.
        secondary = conn.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'video_requests'::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ).fetchall()
        for name, _ in secondary:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.execute("SET session_replication_role = replica")  # no guard or event triggers for history
        started = time.monotonic()
        for first in range(1, rows + 1, BATCH_ROWS):
            last = min(first + BATCH_ROWS - 1, rows)
            conn.execute(
                LOAD_SQL,
                {
                    "first": first,
                    "last": last,
                    "rows": rows,
                    "days": DAYS,
                    "users": USERS,
                    "guilds": GUILDS,
                    "tail": tail,
                },
            )
            log(f"loaded {last:,} / {rows:,} rows ({time.monotonic() - started:.0f} s)")
        conn.execute("RESET session_replication_role")
        conn.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in secondary:
            log(f"building {name}")
            conn.execute(definition)
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


def _setup_django(params: dict, dbname: str) -> None:
    """Point Django at the benchmark database and add the baseline: a default ModelAdmin
    (no options at all) on its own AdminSite, plus one with only search_fields = prompt
    (what a default admin would do to search prompts: icontains)."""
    from psycopg.conninfo import make_conninfo

    dsn = make_conninfo("", **params, dbname=dbname)
    host = params.get("host", "")
    if host.startswith("/"):  # a socket directory travels as ?host= (see veosite.settings)
        dsn = f"postgresql://{params.get('user', 'postgres')}@/{dbname}?host={host}"
    os.environ["DATABASE_URL"] = dsn if dsn.startswith("postgresql://") else _url(params, dbname)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    import django

    django.setup()
    import types

    from django.contrib import admin
    from django.test.utils import override_settings
    from django.urls import path

    from tracking.models import VideoRequest

    # Django picks admin/<app>/<model>/*.html by name, which would give the baseline our
    # templates; pointing it at the stock ones is the only setting it gets.
    stock = {"change_list_template": "admin/change_list.html", "change_form_template": "admin/change_form.html"}
    baseline = admin.AdminSite(name="baseline")
    baseline.register(VideoRequest, type("Default", (admin.ModelAdmin,), stock))
    searching = admin.AdminSite(name="baseline_search")
    searching.register(VideoRequest, type("SearchOnly", (admin.ModelAdmin,), {**stock, "search_fields": ["prompt"]}))
    urls = types.ModuleType("bench_admin_urls")
    urls.urlpatterns = [
        path("admin/", admin.site.urls),
        path("baseline/", baseline.urls),
        path("baseline-search/", searching.urls),
    ]
    sys.modules["bench_admin_urls"] = urls
    override_settings(ROOT_URLCONF="bench_admin_urls").enable()


def _url(params: dict, dbname: str) -> str:
    user, password = params.get("user", "postgres"), params.get("password", "")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgresql://{auth}{params.get('host', 'localhost')}:{params.get('port', '5432')}/{dbname}"


def _samples(client, url: str, repeat: int) -> dict:
    """``repeat`` timings of one page after a warm-up, in ms, with its HTTP status."""
    from django.db import OperationalError

    try:
        client.get(url)  # warm-up: plans, caches, the connection
    except OperationalError as error:  # the default admin's searches can outlast statement_timeout
        return {"url": url, "error": str(error).strip()}
    times, status = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            response = client.get(url)
        except OperationalError as error:
            return {"url": url, "error": str(error).strip()}
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return {"url": url, "status": status, "samples": times}


def _time(client, url: str, repeat: int, *, expect: int = 200) -> dict:
    measured = _samples(client, url, repeat)
    if "error" in measured:
        return measured
    if measured["status"] != expect:
        return {"url": url, "error": f"HTTP {measured['status']}"}
    times = sorted(measured["samples"])
    return {
        "url": url,
        "n": repeat,
        "p50_ms": round(statistics.median(times), 1),
        "min_ms": round(times[0], 1),
        "max_ms": round(times[-1], 1),
    }


def measure(
    params: dict, dbname: str, *, rows: int, repeat: int, baseline_repeat: int, only: str | None = None
) -> dict:
    _setup_django(params, dbname)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from tracking import services
    from tracking.models import VideoRequest

    call_command("migrate", verbosity=0)
    users = get_user_model()
    user = users.objects.filter(username="bench").first() or users.objects.create_superuser("bench", "", "bench-pw-1")
    client = Client()
    client.force_login(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('shared_buffers'), current_setting('work_mem')")
        version, shared_buffers, work_mem = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM video_requests")  # once, to report the real size
        (actual_rows,) = cursor.fetchone()
    # A request in the middle of the history, with a timeline to render.
    detail = VideoRequest.objects.filter(status="completed", id__gte=rows // 2).order_by("id").only("id").first()
    if not VideoRequest.objects.filter(id=detail.id, review_status="flagged").exists():
        services.flag(request_ids=[detail.id], actor="bench", reason="benchmark timeline")
    guild = 7  # one of the busiest guilds (the load skews towards low ids)

    pages = [
        ("unfiltered list", "/admin/tracking/videorequest/", "/baseline/tracking/videorequest/"),
        (
            "filtered list: status=failed & 1080p",
            "/admin/tracking/videorequest/?status__exact=failed&resolution__exact=1080p",
            "/baseline/tracking/videorequest/?status__exact=failed&resolution__exact=1080p",
        ),
        (
            "filtered list: review=flagged",
            "/admin/tracking/videorequest/?review_status__exact=flagged",
            "/baseline/tracking/videorequest/?review_status__exact=flagged",
        ),
        (
            "filtered list: one guild",
            f"/admin/tracking/videorequest/?guild={guild}",
            f"/baseline/tracking/videorequest/?guild_id__exact={guild}",
        ),
        (
            "filtered list: safety-filtered",
            "/admin/tracking/videorequest/?safety=yes",
            "/baseline/tracking/videorequest/?safety_filtered_count__gt=0",
        ),
        ("search: user id", "/admin/tracking/videorequest/?q=12345", None),
        (
            "request detail",
            f"/admin/tracking/videorequest/{detail.id}/change/",
            f"/baseline/tracking/videorequest/{detail.id}/change/",
        ),
        # The page serves the snapshot a worker keeps (the warm-up request stores the first one).
        ("dashboard (default: 24 hours)", "/admin/tracking/videorequest/dashboard/", None),
        ("dashboard (7 days)", "/admin/tracking/videorequest/dashboard/?days=7", None),
        # What a worker's refresh (or "Recompute now") costs: the aggregation itself, and a
        # week reads seven times the index entries; measured fewer times.
        ("dashboard recompute (24 hours)", "/admin/tracking/videorequest/dashboard/?days=1&recompute=1", None, "few"),
        ("dashboard recompute (7 days)", "/admin/tracking/videorequest/dashboard/?days=7&recompute=1", None, "few"),
        (
            "export CSV (filtered: flagged, ~40k rows)",
            "/admin/tracking/videorequest/export/?review_status__exact=flagged",
            None,
        ),
        ("user page", "/admin/tracking/videorequest/user/1/", None),
    ]
    results = []
    for label, ours, base, *few in pages:
        if only and only not in label:
            continue
        load_average = os.getloadavg()[0]
        expect = 302 if "recompute=1" in ours else 200  # it redirects back to the page
        entry = {"page": label, "ours": _time(client, ours, baseline_repeat if few else repeat, expect=expect)}
        if base:
            entry["baseline"] = _time(client, base, baseline_repeat)
        entry["load_average_1m"] = round(load_average, 2)
        print(json.dumps(entry), flush=True)
        results.append(entry)
    searches = None
    if only is None or "search" in only:  # the search set (bench/search_set.py)
        searches = measure_searches(client, repeat=repeat, baseline_repeat=baseline_repeat, timed=_samples)
    return {
        "rows": actual_rows,
        "searches": searches,
        "postgres": version,
        "shared_buffers": shared_buffers,
        "work_mem": work_mem,
        "repeat": repeat,
        "baseline_repeat": baseline_repeat,
        "pages": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--baseline-repeat",
        type=int,
        default=5,
        help="repeats for the default-admin baseline (its pages can take seconds each)",
    )
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--reload", action="store_true", help="load afresh even if a matching database exists")
    parser.add_argument(
        "--small-vocabulary",
        action="store_true",
        help="prompts from the word lists only, without the long tail (a separate database)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", help="measure only the pages whose label contains this text")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    params = server_conninfo()
    dbname = f"veobot_bench_admin_{args.rows}" + ("_small" if args.small_vocabulary else "")
    load(params, dbname, args.rows, reload=args.reload, tail=not args.small_vocabulary)
    if args.load_only:
        return
    results = measure(
        params, dbname, rows=args.rows, repeat=args.repeat, baseline_repeat=args.baseline_repeat, only=args.only
    )
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
