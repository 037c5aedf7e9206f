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


from bench.admin_dataset import load, server_conninfo  # noqa: E402
from bench.queue_dataset import load_queue  # noqa: E402
from bench.search_set import measure_searches, percentile  # noqa: E402


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

    from tracking.models import ModerationLogEntry, ReviewItem, VideoRequest

    # Django picks admin/<app>/<model>/*.html by name, which would give the baseline our
    # templates; pointing it at the stock ones is the only setting it gets.
    stock = {"change_list_template": "admin/change_list.html", "change_form_template": "admin/change_form.html"}
    baseline = admin.AdminSite(name="baseline")
    baseline.register(VideoRequest, type("Default", (admin.ModelAdmin,), stock))
    for model in (ReviewItem, ModerationLogEntry):  # the queue and the audit log, as a default admin lists them
        baseline.register(model, type(f"Default{model.__name__}", (admin.ModelAdmin,), stock))
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


def _samples(client, url: str, repeat: int, *, post: bool = False) -> dict:
    """``repeat`` timings of one page after a warm-up, in ms, with its HTTP status."""
    send = client.post if post else client.get
    from django.db import OperationalError

    try:
        send(url)  # warm-up: plans, caches, the connection
    except OperationalError as error:  # the default admin's searches can outlast statement_timeout
        return {"url": url, "error": str(error).strip()}
    times, status = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            response = send(url)
        except OperationalError as error:
            return {"url": url, "error": str(error).strip()}
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return {"url": url, "status": status, "samples": times}


def _time(client, url: str, repeat: int, *, expect: int = 200, post: bool = False) -> dict:
    measured = _samples(client, url, repeat, post=post)
    if "error" in measured:
        return measured
    if measured["status"] != expect:
        return {"url": url, "error": f"HTTP {measured['status']}"}
    times = sorted(measured["samples"])
    return {
        "url": url,
        "n": repeat,
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "min_ms": round(times[0], 1),
        "max_ms": round(times[-1], 1),
    }


def measure(
    params: dict,
    dbname: str,
    *,
    rows: int,
    repeat: int,
    baseline_repeat: int,
    only: str | None = None,
    classes: list[str] | None = None,
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
        # No baseline: since requests have a parent (0015), the default admin's change form
        # offers every request as a choice for it (a <select> of 10M options, gigabytes).
        ("request detail", f"/admin/tracking/videorequest/{detail.id}/change/", None),
        # The page serves the snapshot a worker keeps (the warm-up request stores the first one).
        ("dashboard (default: 24 hours)", "/admin/tracking/videorequest/dashboard/", None),
        ("dashboard (7 days)", "/admin/tracking/videorequest/dashboard/?days=7", None),
        # What "Recompute now" (a POST: both periods) or a worker's refresh costs: the
        # aggregation itself, a week reading seven times a day's index entries; measured fewer times.
        ("dashboard recompute (both periods, POST)", "/admin/tracking/videorequest/dashboard/?days=1", None, "few"),
        (
            "export CSV (filtered: flagged, ~40k rows)",
            "/admin/tracking/videorequest/export/?review_status__exact=flagged",
            None,
        ),
        ("user page", "/admin/tracking/videorequest/user/1/", None),
        *_moderation_pages(),
    ]
    results = []
    for label, ours, base, *few in pages:
        if only and only not in label:
            continue
        load_average = os.getloadavg()[0]
        post = "POST" in label  # it redirects (back to the page, or to the item taken)
        entry = {
            "page": label,
            "ours": _time(client, ours, baseline_repeat if few else repeat, expect=302 if post else 200, post=post),
        }
        if base:
            entry["baseline"] = _time(client, base, baseline_repeat)
        entry["load_average_1m"] = round(load_average, 2)
        print(json.dumps(entry), flush=True)
        results.append(entry)
    searches = None
    if only is None or "search" in only:  # the search set (bench/search_set.py)
        searches = measure_searches(
            client, repeat=repeat, baseline_repeat=baseline_repeat, timed=_samples, classes=classes
        )
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


def _moderation_pages() -> list[tuple]:
    """The review queue (100,000 open items) and the audit log (1,000,000 entries) of
    bench/queue_dataset.py. No baseline for the item and entry pages: a default change form
    offers every request as a choice for the item's request (a <select> of 10M options)."""
    from tracking.models import ModerationLogEntry, ReviewItem

    item = ReviewItem.objects.filter(state="open", kind="report").order_by("-id").only("id").first()
    entry = ModerationLogEntry.objects.order_by("-id").only("id", "target_id", "at").first()
    day = f"{entry.at:%Y-%m-%d}"
    queue, audit = "/admin/tracking/reviewitem/", "/admin/tracking/moderationlogentry/"
    return [
        ("queue: open items, oldest first", queue, "/baseline/tracking/reviewitem/"),
        (
            "queue: one kind (reports)",
            f"{queue}?kind__exact=report",
            "/baseline/tracking/reviewitem/?kind__exact=report",
        ),
        ("queue: unclaimed appeals", f"{queue}?kind__exact=appeal&claim=unclaimed", None),
        ("queue: others' claims", f"{queue}?claim=others", None),
        ("queue: resolved", f"{queue}?state=resolved", None),
        ("queue: item page (a report)", f"{queue}{item.id}/change/", None),
        ("queue: take the next item (POST)", f"{queue}take-next/", None),
        ("audit log: newest first", audit, "/baseline/tracking/moderationlogentry/"),
        ("audit log: one moderator", f"{audit}?actor=mod07", None),
        ("audit log: one action", f"{audit}?action=resolve%3A+ban", None),
        ("audit log: one table", f"{audit}?target_table=user_bans", None),
        ("audit log: one day", f"{audit}?from={day}&to={day}", None),
        ("audit log: a target's history (search)", f"{audit}?q={entry.target_id}", None),
        ("audit log: entry page", f"{audit}{entry.id}/change/", None),
        ("audit log: export CSV (one moderator, one day)", f"{audit}export/?actor=mod07&from={day}&to={day}", None),
    ]


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
    parser.add_argument(
        "--search-class", action="append", help="with --only search: only the searches of this class (repeatable)"
    )
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    params = server_conninfo()
    dbname = f"veobot_bench_admin_{args.rows}" + ("_small" if args.small_vocabulary else "")
    load(params, dbname, args.rows, reload=args.reload, tail=not args.small_vocabulary)
    load_queue(params, dbname)
    if args.load_only:
        return
    results = measure(
        params,
        dbname,
        rows=args.rows,
        repeat=args.repeat,
        baseline_repeat=args.baseline_repeat,
        only=args.only,
        classes=args.search_class,
    )
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
