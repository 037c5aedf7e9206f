"""The panel's prompt search (tracking/search.py): the same rows as plain SQL for every class
of search, by whichever path, and no scan where the planner used to walk the whole table."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracking import search, search_facets
from tracking.models import VideoRequest
from tracking.search_facets import narrowed

pytestmark = [pytest.mark.django_db]

NEWEST_FIRST = ("-created_at", "-id")

# 300 requests, two a minute. "fox" is in every 3rd prompt, "forest" in every 5th (beside
# "fox" as a phrase only in every 30th), "kraken" in 4, "ancient" only in the oldest 100 rows
# (common in old history, absent from the newest).
DATASET = """
INSERT INTO video_requests (interaction_id, user_id, guild_id, prompt, duration_seconds, aspect_ratio,
                            resolution, model, status, created_at, error_code, counts_toward_quota)
SELECT 9000000 + n, 1 + n % 7, 2001, concat_ws(' ',
           CASE WHEN n % 30 = 0 THEN 'a forest fox' WHEN n % 3 = 0 THEN 'a fox in the snow' ELSE 'a lighthouse' END,
           CASE WHEN n % 5 = 0 AND n % 30 <> 0 THEN 'near a dark forest' END,
           CASE WHEN n IN (17, 130, 251, 298) THEN 'with a kraken' END,
           CASE WHEN n <= 100 THEN 'in an ancient city' END,
           'take ' || n),
       4, '16:9', '720p', 'veo-3.1-generate-001',
       CASE WHEN n % 4 = 3 THEN 'rejected' ELSE 'pending' END,
       now() - make_interval(mins => (300 - n) / 2),  -- two rows a minute: ties, broken by id
       CASE WHEN n % 4 = 3 THEN 'quota_exceeded' END,
       n % 4 <> 3
FROM generate_series(1, 300) AS n
"""

WORDS = ["fox", "forest", "kraken", "ancient", "lighthouse", "snow", "city", "zyzzyva", "dark", "the", "take"]


@pytest.fixture
def dataset():
    with connection.cursor() as cursor:
        cursor.execute(DATASET)


@pytest.fixture(params=["generous", "tight"])
def budgets(request, monkeypatch):
    """Which path answers depends on time budgets; these make it depend on the data instead.
    Generous: every step finishes, so the walk answers. Tight: each row the text condition
    passes costs 0.2 ms and the walk gets 1 ms, so it stops before a page of 11 (but where the
    filters leave a handful of rows), and the index answers, listing at most 30 candidates;
    more than that, and the walk goes on without a budget."""
    monkeypatch.setattr(search, "CANDIDATE_CAP", 30)
    monkeypatch.setattr(search, "PROBE_MS", 60_000)
    if request.param == "tight":
        monkeypatch.setattr(search, "WALK_MS", 1)
        monkeypatch.setattr(search, "MATCHES", search.MATCHES + " AND pg_sleep(0.0002) IS NOT NULL")
    else:
        monkeypatch.setattr(search, "WALK_MS", 60_000)
    return request.param


def reference(text: str, *, status: str | None, ordering: str, offset: int, limit: int) -> list[int]:
    """Plain SQL over the prompt itself (not the stored vector), in the same order."""
    with connection.cursor() as cursor:
        cursor.execute(REFERENCE[ordering], [text, status, status, offset, limit])
        return [row[0] for row in cursor.fetchall()]


REFERENCE = {
    order: "SELECT id FROM video_requests WHERE to_tsvector('english', prompt) @@ websearch_to_tsquery('english', %s)"
    " AND (%s::text IS NULL OR status = %s) ORDER BY " + sql_order + " OFFSET %s LIMIT %s"
    for order, sql_order in [("newest", "created_at DESC, id DESC"), ("status", "status, id DESC")]
}


def searched(text: str, *, status: str | None, ordering: str, offset: int, limit: int) -> search.SearchPage:
    listed = VideoRequest.objects.filter(search.prompt_matches(text))
    listed = listed if status is None else listed.filter(status=status)
    listed = listed.order_by(*(NEWEST_FIRST if ordering == "newest" else ("status", "-id")))
    return search.search_page(listed, text, offset=offset, limit=limit)


CASES = [
    # (class, words): every class, each through the path its frequencies lead to
    ("absent", "zyzzyva"),
    ("absent", "fox zyzzyva"),
    ("rare", "kraken"),
    ("rare", "fox kraken"),
    ("rare", "kraken or zyzzyva"),
    ("common", "fox"),
    ("common", "lighthouse"),
    ("common", "fox or lighthouse"),
    ("common in old rows only", "ancient"),
    ("common in old rows only", "ancient fox"),
    ("phrase", '"forest fox"'),
    ("phrase", '"dark forest"'),
    ("phrase", '"fox in the snow"'),
    ("phrase", '"snow fox"'),
    ("negation", "fox -snow"),
    ("negation", "-fox"),
    ("negation", "ancient -lighthouse"),
    ("stemming", "foxes"),
]


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_every_class_of_search_finds_what_plain_sql_finds_by_every_path(budgets):
    paths = set()
    for kind, words in CASES:
        for status in (None, "rejected"):
            for ordering in ("newest", "status"):
                for offset in (0, 7, 45) if budgets == "generous" else (0,):  # tight: slow by design
                    page = searched(words, status=status, ordering=ordering, offset=offset, limit=10)
                    expected = reference(words, status=status, ordering=ordering, offset=offset, limit=11)
                    assert [row.id for row in page.rows] == expected[:10], (kind, words, status, ordering, offset)
                    assert page.more == (len(expected) > 10)
                    paths.add(page.path)
    assert paths == {"walk", "index", "planner"} | ({"long walk"} if budgets == "tight" else set())


@pytest.mark.sql
@pytest.mark.usefixtures("dataset")
def test_steps_that_run_out_of_time_still_give_the_right_page(monkeypatch):
    # Each match the text condition passes costs 2 ms and these searches have 20 matches or
    # more, so neither the walk (1 ms) nor the probe (10 ms) finishes, and the statistics (none
    # on this fresh table) do not call them common: the walk's second go answers, or, when it
    # runs out too, the index by date.
    monkeypatch.setattr(search, "WALK_MS", 1)
    monkeypatch.setattr(search, "PROBE_MS", 10)
    monkeypatch.setattr(search, "MATCHES", search.MATCHES + " AND pg_sleep(0.002) IS NOT NULL")
    # The walk's second go: long enough here (a cold cache, on a real server), then not.
    for second_walk_ms, path in ((60_000, "walk again"), (1, "index by date")):
        monkeypatch.setattr(search, "SECOND_WALK_MS", second_walk_ms)
        for words in ["ancient", "kraken or ancient", '"forest fox"', '"fox in the snow"', "fox -snow"]:
            for offset in (0, 7):
                page = searched(words, status=None, ordering="newest", offset=offset, limit=10)
                expected = reference(words, status=None, ordering="newest", offset=offset, limit=10)
                assert page.path == path and [row.id for row in page.rows] == expected, words
            assert searched(words, status=None, ordering="status", offset=0, limit=10).path == "planner"


@pytest.mark.sql
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(
        st.one_of(
            st.sampled_from(WORDS),
            st.sampled_from(WORDS).map(lambda w: "-" + w),
            st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
            st.just("or"),
            st.text(alphabet="()&|!:*'\"-<> ", max_size=3),
        ),
        min_size=1,
        max_size=4,
    ).map(" ".join),
    status=st.sampled_from([None, "pending", "rejected"]),
    ordering=st.sampled_from(["newest", "status"]),
    offset=st.sampled_from([0, 3, 25]),
)
def test_any_query_finds_what_plain_sql_finds(dataset, budgets, words, status, ordering, offset):
    try:
        page = searched(words, status=status, ordering=ordering, offset=offset, limit=10)
    except search.EmptySearch:
        with connection.cursor() as cursor:
            cursor.execute("SELECT numnode(websearch_to_tsquery('english', %s))", [words])
            assert cursor.fetchone()[0] == 0
        return
    expected = reference(words, status=status, ordering=ordering, offset=offset, limit=11)
    assert [row.id for row in page.rows] == expected[:10]
    assert page.more == (len(expected) > 10)


# -- the plan -----------------------------------------------------------------------------

# 300,000 prompts from 12 words: every word frequent, so the planner knows no rare lexeme and
# guesses 0.5 % for one it has no statistics on: a page of 51 within ~10,000 rows, it thinks.
SMALL_VOCABULARY = """
INSERT INTO video_requests (interaction_id, user_id, prompt, duration_seconds, aspect_ratio, resolution, model,
                            status, created_at, counts_toward_quota)
SELECT 8000000 + n, 1, (ARRAY['a red fox', 'an astronaut', 'a paper boat', 'a samurai'])[1 + n % 4] || ' '
       || (ARRAY['walking', 'flying', 'dancing'])[1 + n / 4 % 3] || ' in '
       || (ARRAY['the forest', 'the city', 'the sea', 'the snow', 'the rain'])[1 + n / 12 % 5],
       4, '16:9', '720p', 'veo-3.1-generate-001', 'pending', now() - make_interval(secs => 300000 - n), true
FROM generate_series(1, 300000) AS n
"""

OLD_SEARCH = (  # what the panel ran before: the planner chose the path
    "SELECT id FROM video_requests WHERE to_tsvector('english'::regconfig, prompt)"
    " @@ websearch_to_tsquery('english'::regconfig, %s) ORDER BY created_at DESC, id DESC LIMIT 51"
)


def rows_read() -> int:
    """Rows of video_requests this transaction has read so far, by any scan."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'video_requests'"
        )
        return cursor.fetchone()[0]


# Once per CI run (300,000 rows take a while): what it shows is the search's own choice, the
# same on any server.
@pytest.mark.big_data
def test_an_absent_word_is_looked_up_in_the_index_where_the_old_plan_scanned(monkeypatch):
    monkeypatch.setattr(search, "WALK_MS", 1)  # as short as a budget gets: the walk reads next to nothing
    with connection.cursor() as cursor:
        # History, loaded as a restore would: without the per-row triggers (events, guards).
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL statement_timeout = 0")  # the app's 30 s guard is not for a bulk load
        cursor.execute(SMALL_VOCABULARY)
        cursor.execute("SET LOCAL session_replication_role = origin")
        # The old index, to show what the planner did with it. Without statistics on the
        # expression (only created_at is analysed) it guesses 0.5 %: as for a word it never saw.
        cursor.execute(
            "CREATE INDEX old_prompt_fts_idx ON video_requests USING gin (to_tsvector('english'::regconfig, prompt))"
        )
        cursor.execute("ANALYZE video_requests (created_at)")
        # One process, so that this transaction's statistics count every row read.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute("EXPLAIN " + OLD_SEARCH, ["zyzzyva"])
        old_plan = "\n".join(row[0] for row in cursor.fetchall())
        before = rows_read()
        cursor.execute(OLD_SEARCH, ["zyzzyva"])
        assert cursor.fetchall() == []
    old_read = rows_read() - before
    # The premise: the planner walks the dates and reads every row for a word it never saw.
    assert "Index Scan using video_requests_created_at_idx" in old_plan, old_plan  # newest first
    assert old_read == 300000

    before = rows_read()
    listed = VideoRequest.objects.filter(search.prompt_matches("zyzzyva")).order_by(*NEWEST_FIRST)
    page = search.search_page(listed, "zyzzyva", offset=0, limit=50)
    assert page.rows == [] and page.path == "index"
    assert rows_read() - before < 30000  # the cut-short walk, then the index: no scan
    with search.planner(search.THROUGH_THE_INDEX):
        plan = VideoRequest.objects.filter(search.prompt_matches("zyzzyva")).values_list("id")[:5].explain()
    assert "video_requests_search_idx" in plan

    # A phrase whose words meet in 15,000 prompts ("a red fox walking in the forest"), never side
    # by side: no prompt holds the pair, and the pairs index (0019) says so without reading one.
    phrase = '"fox forest"'
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM video_requests WHERE prompt LIKE '%fox%forest%'")
        assert cursor.fetchone()[0] == 15000  # the premise: the words meet, each of these was read before
        cursor.execute("ANALYZE video_requests")  # as 0019 does: the pairs' statistics
    before = rows_read()
    listed = VideoRequest.objects.filter(search.prompt_matches(phrase)).order_by(*NEWEST_FIRST)
    page = search.search_page(listed, phrase, offset=0, limit=50)
    assert page.rows == [] and page.path == "index"
    assert rows_read() - before < 1000
    with search.planner(search.THROUGH_THE_INDEX):
        plan = VideoRequest.objects.filter(search.prompt_matches(phrase)).values_list("id")[:5].explain()
    assert "video_requests_prompt_pairs_idx" in plan, plan

    # A phrase whose words always go together (a quarter of the prompts say "a red fox"): the
    # planner multiplies the words' shares and the pairs' as if independent, and took it for
    # rare; the search divides the pairs' share back out and knows it as common.
    phrase = '"red fox"'
    listed = VideoRequest.objects.filter(search.prompt_matches(phrase)).order_by(*NEWEST_FIRST)
    planners = json.loads(listed.order_by().explain(format="json"))[0]["Plan"]["Plan Rows"]
    assert planners < search.CANDIDATE_CAP  # the premise: the look-up would go first, and wait out its budget
    assert search._estimated_matches(listed, phrase, search.word_pairs_query(phrase)) >= 0.5 * 75000  # the truth

    # A common word the filters leave none of (no prompt here is 1080p), and the look-up out of
    # time: the walk read many rows without a page, so the matches are sparse, and the index
    # sorts them at once instead of a second walk through everything. The look-up asks for the
    # word alone (no facet fits its budget), so it has 75,000 rows to read in 1 ms and surely
    # runs out; with the 1080p facet it could answer at once (below), on a warm cache within 1 ms.
    monkeypatch.setattr(search, "WALK_MS", 20)
    monkeypatch.setattr(search, "PROBE_MS", 1)
    monkeypatch.setattr(search_facets, "FACETS_MS", -1)
    monkeypatch.setattr(search, "SPARSE_AFTER", 50)
    monkeypatch.setattr(search, "SECOND_WALK_MS", 60_000)  # a second walk would surely end, and say so
    listed = VideoRequest.objects.filter(search.prompt_matches("fox"), resolution="1080p").order_by(*NEWEST_FIRST)
    page = search.search_page(listed, "fox", offset=0, limit=50)
    assert page.rows == [] and page.path == "index by date"

    # The same, as the look-up asks: the search index also holds each request's facets (0023),
    # and intersects the word's 75,000 prompts with the 1080p ones (none) without reading a row.
    with search.planner(search.THROUGH_THE_INDEX):
        plan = narrowed(listed).order_by().values_list("id").explain()
        before = rows_read()
        assert list(narrowed(listed).order_by().values_list("id")) == []
        facets_read = rows_read() - before
        before = rows_read()
        assert list(listed.order_by().values_list("id")) == []
        words_read = rows_read() - before
    assert "video_requests_search_idx" in plan and "'resolution 1080p'" in plan, plan
    assert facets_read == 0
    assert words_read == 75000  # the premise: the word alone has each of its rows read to check it
