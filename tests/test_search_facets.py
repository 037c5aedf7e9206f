"""A common word with filters that leave few or no rows of it (tracking/search_facets.py): the
same rows as plain SQL for every filter of the request list, and an empty intersection answered
by the search index without reading the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from tracking import search
from tracking.admin.filters import CreatedFromFilter, CreatedToFilter
from tracking.models import VideoRequest
from tracking.search_facets import FACET_STATISTICS, facet_shares, facets_query, worth_asking

pytestmark = [pytest.mark.django_db]

NEWEST_FIRST = ("-created_at", "-id")
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)

# 400 requests, one an hour back from NOW (about 17 days). "lighthouse" is in every prompt,
# "kraken" in every 9th; each filter below leaves only a handful of them, or none: 1080p only
# rows 37 and 211, 9:16 every 50th, 8 s every 97th, flagged rows 5 and 300, guild 2002 every
# 40th, no guild every 33rd (the 66th ones from the command line), safety-filtered every 60th.
DATASET = """
INSERT INTO video_requests (interaction_id, user_id, guild_id, source, prompt, duration_seconds, aspect_ratio,
                            resolution, model, status, operation_name, output_uris, error_code, created_at,
                            started_at, completed_at, delivered_at, delivery_method, counts_toward_quota,
                            review_status, safety_filtered_count)
SELECT 7000000 + n, 1 + n %% 5,
       CASE WHEN n %% 33 = 0 THEN NULL WHEN n %% 40 = 0 THEN 2002 ELSE 2001 END,
       CASE WHEN n %% 66 = 0 THEN 'cli' ELSE 'discord' END,
       'a lighthouse keeper' || CASE WHEN n %% 9 = 0 THEN ' and a kraken' ELSE '' END || ' take ' || n,
       CASE WHEN n %% 97 = 0 THEN 8 ELSE 4 END,
       CASE WHEN n %% 50 = 0 THEN '9:16' ELSE '16:9' END,
       CASE WHEN n IN (37, 211) THEN '1080p' ELSE '720p' END,
       'veo-3.1-generate-001', status,
       CASE WHEN status IN ('completed', 'failed') THEN 'operations/' || n END,
       CASE WHEN status = 'completed' THEN ARRAY['gs://bucket/' || n || '.mp4'] ELSE '{}' END,
       CASE WHEN status = 'failed' THEN 'backend_error' WHEN status = 'rejected' THEN 'quota_exceeded' END,
       created_at, created_at, created_at + interval '1 minute',
       CASE WHEN status = 'completed' AND n %% 3 = 0 THEN created_at + interval '2 minutes' END,
       CASE WHEN status = 'completed' AND n %% 3 = 0 THEN 'interaction' END,
       status = 'completed',
       CASE WHEN n IN (5, 300) THEN 'flagged' ELSE 'unreviewed' END,
       CASE WHEN n %% 60 = 0 THEN 1 ELSE 0 END
FROM (SELECT n, %s::timestamptz - make_interval(hours => 400 - n) AS created_at,
             CASE WHEN n %% 10 = 0 THEN 'failed' WHEN n %% 10 = 1 THEN 'rejected' ELSE 'completed' END AS status
      FROM generate_series(1, 400) AS n) AS r
"""


@pytest.fixture
def dataset():
    with connection.cursor() as cursor:
        # History, as a restore would load it: without the per-row triggers (a finished row
        # is refused at birth); the CHECK constraints still hold.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(DATASET, [NOW])
        cursor.execute("SET LOCAL session_replication_role = origin")
        cursor.execute("ANALYZE video_requests")


def day(text: str) -> datetime:
    return CreatedFromFilter(None, {}, VideoRequest, None).clean(text)


def from_to(first: str, last: str) -> dict:
    """The admin's date range filters, exactly as they filter (from midnight, to the next one)."""
    last_day = CreatedToFilter(None, {}, VideoRequest, None).clean(last)
    return {"created_at__gte": day(first), "created_at__lt": last_day + timedelta(days=1)}


FILTERS = [
    {"resolution": "1080p"},
    {"resolution": "1080p", "status": "failed"},  # none: neither 37 nor 211 failed
    {"resolution": "1080p", "status": "completed"},
    {"status": "failed", "aspect_ratio": "9:16"},
    {"duration_seconds": 8},
    {"review_status": "flagged"},
    {"review_status": "flagged", "resolution": "1080p"},  # none
    {"guild_id": 2002, "status": "failed"},
    {"guild_id": 2002, "aspect_ratio": "9:16"},
    {"guild_id__isnull": True, "source": "discord"},  # the DM filter
    {"source": "cli"},
    {"safety_filtered_count__gt": 0},
    {"safety_filtered_count__gt": 0, "resolution": "1080p"},  # none
    {"safety_filtered_count": 0, "resolution": "1080p"},
    {"delivered_at__isnull": False, "aspect_ratio": "9:16"},
    {"delivered_at__isnull": True, "resolution": "1080p"},
    {"status__in": ["failed", "rejected"], "resolution": "1080p"},
    from_to("2026-11-10", "2026-11-11") | {"status": "failed"},
    from_to("2026-11-19", "2026-11-19") | {"resolution": "1080p"},  # none
    {"created_at__gt": NOW - timedelta(hours=30, minutes=10), "created_at__lte": NOW - timedelta(hours=5)},
    {"created_at__gte": NOW - timedelta(days=3)},  # open-ended: no day facet
]

WORDS = ["lighthouse", "keeper kraken", '"lighthouse keeper"', "lighthouse -kraken"]


def reference(words: str, filters: dict, ordering: tuple) -> list[int]:
    """The filters through the ORM, the words as plain SQL over the prompt itself."""
    text = RawSQL(
        "to_tsvector('english', prompt) @@ websearch_to_tsquery('english', %s)", [words], output_field=BooleanField()
    )
    return list(VideoRequest.objects.filter(text, **filters).order_by(*ordering).values_list("id", flat=True)[:11])


@pytest.fixture(params=["generous", "tight"])
def budgets(request, monkeypatch):
    """Generous: the walk answers. Tight: the walk gets 1 ms and each row it reads costs 0.2 ms,
    so the look-up in the search index answers wherever the matches are few."""
    monkeypatch.setattr(search, "CANDIDATE_CAP", 30)
    monkeypatch.setattr(search, "PROBE_MS", 60_000)
    if request.param == "tight":
        monkeypatch.setattr(search, "WALK_MS", 1)
        monkeypatch.setattr(search, "MATCHES", search.MATCHES + " AND pg_sleep(0.0002) IS NOT NULL")
    else:
        monkeypatch.setattr(search, "WALK_MS", 60_000)
    return request.param


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_a_common_word_with_filters_that_leave_few_finds_what_plain_sql_finds(budgets):
    empty = 0
    for filters in FILTERS:
        for words in WORDS:
            for ordering in (NEWEST_FIRST, ("status", "-id")):
                listed = VideoRequest.objects.filter(search.prompt_matches(words), **filters).order_by(*ordering)
                page = search.search_page(listed, words, offset=0, limit=10)
                expected = reference(words, filters, ordering)
                assert [row.id for row in page.rows] == expected[:10], (words, filters, ordering)
                assert page.more == (len(expected) > 10)
                if budgets == "tight" and ordering == NEWEST_FIRST and len(expected) <= 10:
                    assert page.path == "index", (words, filters)
                empty += not expected
    assert empty >= 4 * 4 * 2  # the premise: filters that leave none of a word every row holds


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_the_index_by_date_asks_for_the_facets_too(monkeypatch):
    # The walk out of time, the look-up too (each row it reads costs 2 ms): the last step,
    # the index in date order.
    monkeypatch.setattr(search, "WALK_MS", 1)
    monkeypatch.setattr(search, "PROBE_MS", 1)
    monkeypatch.setattr(search, "SECOND_WALK_MS", 1)
    monkeypatch.setattr(search, "MATCHES", search.MATCHES + " AND pg_sleep(0.002) IS NOT NULL")
    # Where the filters leave none, the look-up may answer within its 1 ms (the index reads no
    # row; the sleep in each row's check is what runs the others out of time); where the
    # statistics know the word as common in the filtered rows, the walk goes on instead.
    paths = []
    for filters in FILTERS:
        listed = VideoRequest.objects.filter(search.prompt_matches("lighthouse"), **filters).order_by(*NEWEST_FIRST)
        page = search.search_page(listed, "lighthouse", offset=0, limit=10)
        expected = reference("lighthouse", filters, NEWEST_FIRST)
        assert [row.id for row in page.rows] == expected[:10], filters
        paths.append(page.path)
    assert paths.count("index by date") >= 5, paths


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_the_walk_goes_first_only_where_it_can_meet_a_page_within_its_budget(monkeypatch):
    # Many matches expected (any estimate passes the cap), and a walk that reads at most 100
    # rows in its budget (40 beside facets): "lighthouse" is in all 400 prompts.
    monkeypatch.setattr(search, "CANDIDATE_CAP", 1)
    monkeypatch.setattr(search, "SPARSE_AFTER", 100)
    cases = [
        ({}, True),  # every row a match: 11 rows read for a page of 10
        ({"aspect_ratio": "9:16"}, False),  # 8 rows of 400: a page would mean reading ~550
        ({"status": "failed"}, True),  # the walk reads only the 40 failed rows, each a match
        # the walk reads only the range (48 rows, each a match) or the guild's rows (10, each one)
        (from_to("2026-11-10", "2026-11-11") | {"resolution": "720p"}, True),
        ({"guild_id": 2002}, True),
    ]
    for filters, first in cases:
        listed = VideoRequest.objects.filter(search.prompt_matches("lighthouse"), **filters).order_by(*NEWEST_FIRST)
        estimate = search._estimated_matches(listed, "lighthouse", None)
        walk_ms = round(search.WALK_MS * search.FACETED_WALK_SHARE) if filters else search.WALK_MS
        assert search._walk_first(listed, 11, estimate, walk_ms) is first, filters


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, None),
        ({"status": "failed"}, "'status failed'"),
        ({"status": "failed", "resolution": "1080p"}, "'resolution 1080p' & 'status failed'"),
        ({"status__in": ["failed", "timeout"]}, "('status failed' | 'status timeout')"),
        ({"duration_seconds": 6, "aspect_ratio": "9:16"}, "'aspect 9:16' & 'duration 6'"),
        ({"review_status": "flagged"}, "'review flagged'"),
        ({"guild_id": 42}, "'guild 42'"),
        ({"guild_id__isnull": True, "source": "discord"}, "'guild none' & 'source discord'"),
        ({"guild_id__isnull": False}, None),
        ({"safety_filtered_count__gt": 0}, "'safety yes'"),
        ({"safety_filtered_count": 0}, "'safety no'"),
        ({"delivered_at__isnull": True}, "'delivered no'"),
        ({"delivered_at__isnull": False}, "'delivered yes'"),
        ({"status": "it's \\ odd"}, "'status it''s \\\\ odd'"),  # quoted as tsquery reads it
        ({"status": "x" * 65}, None),  # longer than any stored value: no facet (and no error)
        ({"user_id": 7, "prompt__icontains": "fox"}, None),  # not facets
        # 2000-01-01 is day 0: the admin's range of two days, and a range within one day
        (from_to("2000-01-02", "2000-01-03"), "('day 1' | 'day 2')"),
        (from_to("2000-01-01", "2000-01-01"), "'day 0'"),
        ({"created_at__gt": day("2000-01-02") + timedelta(hours=23)}, None),  # open-ended
        (from_to("2000-01-01", "2000-12-31"), None),  # too many days
        (from_to("2000-01-03", "2000-01-01"), None),  # empty: the walk answers at once
    ],
)
def test_the_facets_a_filtered_list_asks_for(filters, expected):
    assert facets_query(VideoRequest.objects.filter(**filters)) == expected


def test_filters_under_an_or_or_a_negation_ask_for_no_facet():
    from django.db.models import Q

    assert facets_query(VideoRequest.objects.filter(Q(status="failed") | Q(resolution="1080p"))) is None
    assert facets_query(VideoRequest.objects.exclude(status="failed")) is None
    only_status = VideoRequest.objects.exclude(resolution="1080p").filter(status="failed")
    assert facets_query(only_status) == "'status failed'"


LIST = "/admin/tracking/videorequest/"


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_the_request_lists_filters_become_facets(as_role):
    """The admin's own filters, from its address, as the search reads them, and its answer."""
    client = as_role("moderator")
    address = (
        f"{LIST}?q=lighthouse&status__exact=failed&resolution__exact=1080p&review_status__exact=unreviewed"
        "&aspect_ratio__exact=16:9&duration_seconds__exact=4&guild=2001&safety=no&delivered=no"
        "&created_from=2026-11-10&created_to=2026-11-11"
    )
    response = client.get(address)
    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.result_list == []
    assert set(facets_query(cl.queryset).split(" & ")) == {
        "'status failed'",
        "'resolution 1080p'",
        "'review unreviewed'",
        "'aspect 16:9'",
        "'duration 4'",
        "'guild 2001'",
        "'safety no'",
        "'delivered no'",
        "('day 9810' | 'day 9811')",  # 2026-11-10 and 11 (days since 2000-01-01)
    }
    response = client.get(f"{LIST}?q=lighthouse&guild=dm&resolution__exact=1080p")
    dm = {"'guild none'", "'source discord'", "'resolution 1080p'"}
    assert set(facets_query(response.context["cl"].queryset).split(" & ")) == dm
    assert [row.id for row in response.context["cl"].result_list] == []


def test_within_a_budget_a_facet_is_asked_for_when_the_rows_it_rules_out_cost_more_than_its_entries():
    shares = {"status completed": 0.85, "resolution 1080p": 0.25, "duration 6": 0.26, "guild 1": 0.016}
    terms = ["'duration 6'", "'guild 1'", "'resolution 1080p'", "'status completed'"]
    rows = 10_000_000
    # a word in a sixteenth of the rows ("lighthouse"): two quarters of the rows are worth their
    # entries (156k rows of it left by the first), "status completed" is not (its entries alone
    # take longer than FACETS_MS)
    assert worth_asking(
        ["'duration 6'", "'resolution 1080p'", "'status completed'"], shares, matching=1 / 16, rows=rows
    ) == ["'resolution 1080p'", "'duration 6'"]
    # after "guild 1" and 1080p, 2,500 rows are left: fewer than "duration 6"'s entries cost
    assert worth_asking(terms, shares, matching=1 / 16, rows=rows) == ["'guild 1'", "'resolution 1080p'"]
    # a rare word (500 rows of 10M): reading them costs less than a common facet's entries ...
    assert worth_asking(["'resolution 1080p'", "'status completed'"], shares, matching=0.00005, rows=rows) == []
    # ... not than a rare facet's, which rules out nearly all of them
    assert worth_asking(terms, shares, matching=0.00005, rows=rows) == ["'guild 1'"]
    # at 100k rows a word in every row: the three, within far less than FACETS_MS; but not
    # "status completed", which would rule out 15 of the 104 rows they leave
    assert worth_asking(terms, shares, matching=1.0, rows=100_000) == [
        "'guild 1'",
        "'resolution 1080p'",
        "'duration 6'",
    ]
    # a group's share is its lexemes' together; a lexeme the statistics do not list is rare
    days = "('day 1' | 'day 2')"
    in_days = {"day 1": 0.1, "day 2": 0.1, **shares}
    assert worth_asking([days, "'resolution 1080p'"], in_days, matching=1 / 16, rows=rows) == [
        days,
        "'resolution 1080p'",
    ]
    assert worth_asking([days, "'status completed'"], in_days, matching=1 / 16, rows=rows) == [days]
    assert worth_asking(["'guild 7'", "'status completed'"], shares, matching=1 / 16, rows=rows) == ["'guild 7'"]


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_the_facets_shares_come_from_the_search_indexs_statistics():
    shares = facet_shares()
    assert shares["resolution 720p"] == pytest.approx(398 / 400)
    assert shares["status completed"] == pytest.approx(320 / 400)
    assert "resolution 1080p" not in shares or shares["resolution 1080p"] < 0.01
    with connection.cursor() as cursor:
        cursor.execute(FACET_STATISTICS)
        assert cursor.fetchone() is not None  # the premise: the statistics are where it looks
