"""Prompt search that always answers: the panel, not the planner, chooses how to find matches.

A text search is fast one of two ways: through the text index (GIN on ``prompt_tsv``) when the
matches are few, or by walking the newest rows and checking each one's stored vector when they
are many. PostgreSQL chooses from its statistics, and for a word it has none on (absent, rare,
or rare beside common words) it guesses 0.5 %, expects a page of matches within a few
thousand rows, and walks: over every row when there is no match. Here each way is tried only
within a budget, and the planner is told which one (SET LOCAL, this transaction only):

- the walk: the newest rows the filters keep, in date order, for at most WALK_MS (less,
  FACETED_WALK_SHARE of it, when the filters give the index facets to intersect);
- the probe: at most CANDIDATE_CAP matches from the index in no order (so that it stops
  there), for at most PROBE_MS. Fewer than the cap is every match: the page is sorted from them.

The planner's estimate of the matches only decides which goes first (the walk when it expects
CANDIDATE_CAP or more): its statistics are right about common words, and when it is wrong the
budget bounds the loss. When neither finishes in its budget:

- many matches (the probe filled its cap, or the statistics know the words as common, COMMON
  of all rows): the walk ran out of time on a busy server, so it walks on without a budget
  (the index would sort every match);
- otherwise the candidates are many but the matches few or old (a common word the filters
  leave nearly nothing of), or the pages were cold and the estimate low: a walk that read
  little (cold pages) has a second go of SECOND_WALK_MS; one that read SPARSE_AFTER rows without
  a page has shown the matches sparse. Then the index answers in date order, with the memory to
  keep its bitmap exact.

These last steps have no budget but the panel's 5 s guard; docs/BENCHMARKS.md has what they
cost at 10M rows. A word common in older history yet absent from the newest rows is the case
that walks longest.

A step that runs out of budget is cancelled and undone (a savepoint), and the next one answers:
every path gives the same rows, only the time differs. A query the empty prompt matches (only
-words) skips the index, which would read all of itself for it, and walks without a budget.
Orders other than newest first take the probe, then leave the order to the planner (with many
matches it orders them well: its statistics know common words); a word the statistics know as
common goes to the planner at once. A phrase also asks for its word pairs (prompt_matches),
which the pairs index answers; the pairs' statistics also correct the phrase's estimate.

Filters: the look-up and the index in date order also ask the search index for the facets the
list's filters require (tracking/search_facets.py: "status failed", "resolution 1080p", the
days of a date range, ...), which its second column holds (migration 0023): the look-up only
the rarest (GIN reads every entry of each), the index in date order all. GIN intersects them
with the words inside the index, so a common word the filters leave few or none of is answered
by the look-up within its budget, reading only the rows that match: before, every candidate was
read from the table to check the filters (0.9 s for "lighthouse", failed, 1080p at 10M rows;
with 1080p alone, the guard).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from django.db import OperationalError, connection, transaction
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import Col, RawSQL
from psycopg.errors import QueryCanceled

from tracking import selectors
from tracking.search_facets import facet_terms, for_look_up, narrowed
from tracking.tsquery_text import lexemes, pairs_of, unquoted

WALK_MS = 100
PROBE_MS = 150
SECOND_WALK_MS = 1000
# With filters whose facets the index can intersect with the words, the look-up answers a search
# the filters leave few rows of without reading the table, where the walk reads it in date order:
# the walk, when it goes first, then has this share of WALK_MS.
FACETED_WALK_SHARE = 0.4
SPARSE_AFTER = 10_000  # rows a walk may read in its budget without a page before matches count as sparse
CANDIDATE_CAP = 5_000
COMMON = 0.05  # a share of all rows the planner's estimate must reach to call a search common

NEWEST_FIRST = ("-created_at", "-id")

LookUp = Callable[[], tuple[QuerySet, int]]  # the search as the look-up asks the index for it, and its budget

# Written exactly as the column is generated, so that GIN on prompt_tsv serves it.
MATCHES = "prompt_tsv @@ websearch_to_tsquery('english'::regconfig, %s)"

# Planner settings per path. Turning a scan type off makes the planner take another where one
# exists; the text index serves only bitmap scans, and the date-ordered ones are index scans.
# JIT off: compiling costs more than these short queries gain from it. No parallel workers for
# the walk: it reads a page's worth of rows, and starting workers cost more than that (a walk of
# 20 ms took 130 ms with two, once the planner expected few matches). The index path gets
# the memory to keep a bitmap of a common word's rows exact (lossy, it rechecks whole pages).
WALKING = {"enable_bitmapscan": "off", "enable_seqscan": "off", "jit": "off", "max_parallel_workers_per_gather": "0"}
THROUGH_THE_INDEX = {
    "enable_indexscan": "off",
    "enable_indexonlyscan": "off",
    "enable_seqscan": "off",
    "jit": "off",
    "work_mem": "64MB",
}


class EmptySearch(ValueError):
    """The words hold nothing the search can look for (only words like "the" or punctuation)."""


@dataclass(frozen=True)
class SearchPage:
    rows: list  # at most `limit` rows, in the requested order
    more: bool  # another page follows
    path: str  # how they were found: "walk", "index", "long walk", "walk again", "index by date" or "planner"


def prompt_matches(text: str) -> RawSQL:
    """A filter condition: the prompt matches a web-search style query ("quoted phrase", or,
    -word). For lists and exports; a page of results comes from search_page.

    A phrase also asks for its pairs of neighbouring words (migration 0019), which the pairs
    index answers: a prompt without them cannot match, and is never read."""
    pairs = word_pairs_query(text)
    if pairs is None:
        return RawSQL(MATCHES, [text], output_field=BooleanField())
    return RawSQL(f"{MATCHES} AND {PAIRS_MATCH}", [text, pairs], output_field=BooleanField())


# Written exactly as the pairs index's expression.
PAIRS_MATCH = "prompt_word_pairs(prompt_tsv) @@ %s::tsquery"


def word_pairs_query(text: str) -> str | None:
    """The pairs of neighbouring words every match must hold, as a tsquery ("'a b' & 'b c'"),
    or None when the query has none to offer. Only for what is surely required: a query with
    an OR or a group gives none; a negated term gives none of its own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT websearch_to_tsquery('english'::regconfig, %s)::text", [text])
        (query,) = cursor.fetchone()
    return pairs_of(query)


def search_page(searched: QuerySet, text: str, *, offset: int, limit: int) -> SearchPage:
    """Rows ``offset`` to ``offset + limit`` of ``searched``: a list of requests with its
    filters, its order, and prompt_matches(text)."""
    has_lexemes, matches_everything, query = _shape(text)
    if not has_lexemes:
        raise EmptySearch(
            f"Nothing to search for in {text!r}: the search leaves out very common words "
            "(the, a, of, …) and punctuation. Add a more specific word."
        )
    need = offset + limit + 1  # one more than the page: is there a next one?
    ordering = tuple(dict.fromkeys(searched.query.order_by))  # the admin's list repeats its default
    probe = not matches_everything
    with transaction.atomic():  # SET LOCAL lasts until this block ends
        estimate = _estimated_matches(searched, text, pairs_of(query)) if probe else 0.0
        look_up = (
            partial(_look_up, searched, text, pairs_of(query)) if probe else None
        )  # made only where the look-up runs
        if ordering == NEWEST_FIRST:
            ids, path = _newest(searched, need, look_up=look_up, estimate=estimate)
            rows = _in_order(searched, ids[offset:need])
        else:
            rows, path = _ordered(searched, ordering, offset, need, look_up=look_up, estimate=estimate)
    return SearchPage(rows=rows[:limit], more=len(rows) > limit, path=path)


def _newest(searched: QuerySet, need: int, *, look_up: LookUp | None, estimate: float) -> tuple[list[int], str]:
    newest = searched.order_by(*NEWEST_FIRST).values_list("id", flat=True)
    if look_up is None:
        with planner(WALKING):
            return list(newest[:need]), "walk"
    listed = None  # what the probe found: every match, a full cap of them, or None (out of time)
    walked = 0  # rows the walk read before its budget ran out
    # (at least 1 ms: a statement_timeout of 0 is none)
    walk_ms = max(1, round(WALK_MS * FACETED_WALK_SHARE)) if facet_terms(searched) else WALK_MS
    for step in ("walk", "index") if _walk_first(searched, need, estimate, walk_ms) else ("index", "walk"):
        if step == "walk":
            before = _rows_read()
            found = _within(walk_ms, WALKING, lambda: list(newest[:need]))
            walked = _rows_read() - before
        else:
            listed = _candidates(look_up())
            complete = listed is not None and len(listed) < CANDIDATE_CAP
            found = [id_ for _, id_ in sorted(listed, reverse=True)[:need]] if complete else None
        if found is not None:
            return found, step
    if listed is not None or _common(estimate):
        # Many matches (the cap filled, or a word the statistics know as common): the walk
        # only ran out of time (a busy server), and the index would sort them all.
        with planner(WALKING):
            return list(newest[:need]), "long walk"
    # The look-up ran out of time without saying how many match, and the estimate may be far
    # off: on a cold page cache, many matches can miss both budgets. A walk held up by cold
    # pages (it read little) has a longer second go before the index sorts every match by date;
    # one that read many rows without a page found the matches sparse, and would again.
    if walked < SPARSE_AFTER:
        found = _within(SECOND_WALK_MS, WALKING, lambda: list(newest[:need]))
        if found is not None:
            return found, "walk again"
    with planner(THROUGH_THE_INDEX):
        by_date = narrowed(searched).order_by(*NEWEST_FIRST).values_list("id", flat=True)
        return list(by_date[:need]), "index by date"


def _walk_first(searched: QuerySet, need: int, estimate: float, walk_ms: int) -> bool:
    """Whether the walk goes first: the planner expects many matches (CANDIDATE_CAP or more),
    and dense enough among the rows the walk reads for it to meet a page of them within its
    budget (it reads about SPARSE_AFTER rows in WALK_MS). A common word with filters the planner
    takes as independent can be expected many yet sparse ("lighthouse", 1080p, 6 s: 39,000 of
    10M rows, one in 256): the walk would only spend its budget before the look-up answers."""
    if estimate < CANDIDATE_CAP:
        return False
    readable = SPARSE_AFTER * walk_ms / WALK_MS
    return need * _plan_rows(_walked(searched)) / estimate <= readable


# The columns of the indexes in date order (created_at last) a walk can take: the rows it reads
# are those of the list's conditions on these; the others (the words, 1080p, 6 s) it checks.
WALK_INDEXED = frozenset({"created_at", "status", "guild_id", "review_status", "safety_filtered_count", "user_id"})


def _walked(searched: QuerySet) -> QuerySet:
    """The rows a walk through ``searched`` reads: the list with only its conditions on WALK_INDEXED."""
    walked = searched.order_by()  # a clone: its query and that query's conditions are its own
    walked.query.where.children = [
        condition
        for condition in walked.query.where.children
        if isinstance(getattr(condition, "lhs", None), Col) and condition.lhs.target.attname in WALK_INDEXED
    ]
    return walked


def _ordered(
    searched: QuerySet, ordering: Sequence[str], offset: int, need: int, *, look_up: LookUp | None, estimate: float
) -> tuple[list, str]:
    # A word the statistics know as common (they know those well) needs no look-up: listing
    # its matches would only run out of time before the planner orders them anyway.
    candidates = _candidates(look_up()) if look_up is not None and not _common(estimate) else None
    if candidates is not None and len(candidates) < CANDIDATE_CAP:
        ids = [id_ for _, id_ in candidates]
        return list(searched.filter(id__in=ids).order_by(*ordering)[offset:need]), "index"
    return list(searched.order_by(*ordering)[offset:need]), "planner"


def _look_up(searched: QuerySet, text: str, pairs: str | None) -> tuple[QuerySet, int]:
    """``searched`` as the look-up asks the search index for it, and the look-up's budget: also
    for the filters' facets worth their entries beside the words' matches (the planner's estimate
    of the words alone: its statistics know common words well), with the time GIN takes to read
    those entries added to PROBE_MS. The index intersects them with the words, and reads from the
    table only the rows that hold both."""
    rows = selectors.estimated_request_count()
    if rows <= 0:  # never analysed: no sizes to weigh, every facet
        return narrowed(searched), PROBE_MS
    terms = facet_terms(searched)
    if not terms:
        return searched, PROBE_MS
    words = _estimated_matches(searched.model.objects.filter(prompt_matches(text)), text, pairs)
    asking, entries_ms = for_look_up(searched, terms, matching=min(1.0, words / rows), rows=rows)
    return asking, PROBE_MS + math.ceil(entries_ms)


def _candidates(look_up: tuple[QuerySet, int]) -> list[tuple] | None:
    """The look-up's matches as (created_at, id), in no order: every one when fewer than
    CANDIDATE_CAP, else the first CANDIDATE_CAP; None when listing them takes more than its
    budget."""
    searched, budget_ms = look_up
    unordered = searched.order_by().values_list("created_at", "id")
    return _within(budget_ms, THROUGH_THE_INDEX, lambda: list(unordered[:CANDIDATE_CAP]))


def _rows_read() -> int:
    """Rows of the table this transaction has read so far, by any scan (a statement cancelled
    for its budget counts what it read)."""
    with connection.cursor() as cursor:
        cursor.execute(ROWS_READ)
        row = cursor.fetchone()
    return row[0] if row else 0


ROWS_READ = (
    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
    " WHERE relid = 'video_requests'::regclass"
)


def _common(estimate: float) -> bool:
    total = selectors.estimated_request_count()  # 0 until the table is first analysed
    return total > 0 and estimate >= COMMON * total


def _estimated_matches(searched: QuerySet, text: str, pairs: str | None) -> float:
    """The planner's estimate of the rows ``searched`` holds (a plan, not a count).

    A phrase's word pairs hold wherever the phrase does, but the planner takes the two
    conditions as independent and multiplies their shares: a common phrase came out a hundred
    times too rare, went to the look-up first, and waited out its budget. When the statistics
    know every pair (they list the common ones), the pairs' share stands for the phrase's, in
    place of the words' (whose product misses that they go together: "red fox"). Otherwise
    the pairs' share is divided back out; yet no more match than hold the pairs (words that
    meet in many prompts but never side by side)."""
    estimate = _plan_rows(searched)
    total = selectors.estimated_request_count()
    if pairs is None or total <= 0:
        return estimate
    if _pairs_known(pairs):
        words = _plan_rows(searched.model.objects.filter(RawSQL(MATCHES, [text], output_field=BooleanField())))
        return min(float(total), estimate * total / max(words, 1.0))
    with_pairs = _plan_rows(searched.model.objects.filter(RawSQL(PAIRS_MATCH, [pairs], output_field=BooleanField())))
    return min(with_pairs, estimate * total / max(with_pairs, 1.0))


def _pairs_known(pairs: str) -> bool:
    """Whether the pairs index's statistics list every one of these pairs among the common."""
    wanted = [unquoted(lexeme) for lexeme in lexemes(pairs)]
    with connection.cursor() as cursor:
        cursor.execute(PAIRS_KNOWN, [wanted])
        row = cursor.fetchone()
    return bool(row and row[0])


# pg_stats keeps an expression index's statistics under the index's name.
PAIRS_KNOWN = (
    "SELECT most_common_elems::text::text[] @> %s::text[] FROM pg_stats"
    " WHERE schemaname = current_schema() AND tablename = 'video_requests_prompt_pairs_idx'"
)


def _plan_rows(listed: QuerySet) -> float:
    plan = json.loads(listed.order_by().explain(format="json"))
    return plan[0]["Plan"]["Plan Rows"]


def _within(budget_ms: int, settings: dict[str, str], fetch: Callable[[], list]) -> list | None:
    """``fetch()`` under these planner settings, or None when it takes more than ``budget_ms``
    (then cancelled, and the savepoint's rollback undoes the settings)."""
    try:
        with transaction.atomic(), planner(settings | {"statement_timeout": f"{budget_ms}ms"}):
            return fetch()
    except OperationalError as error:
        if not isinstance(error.__cause__, QueryCanceled):
            raise
        return None


def _in_order(searched: QuerySet, ids: list[int]) -> list:
    by_id = {row.id: row for row in searched.order_by().filter(id__in=ids)}
    return [by_id[id_] for id_ in ids if id_ in by_id]


def _shape(text: str) -> tuple[bool, bool, str]:
    """Whether the query holds anything to look for, whether it matches the empty prompt (only
    negations: the text index can serve it only by reading every entry), and its tsquery text."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT numnode(query) > 0, ''::tsvector @@ query, query::text"
            " FROM websearch_to_tsquery('english'::regconfig, %s) query",
            [text],
        )
        return cursor.fetchone()


@contextmanager
def planner(settings: dict[str, str]) -> Iterator[None]:
    """Planner settings for the queries inside, then back to what they were (one statement each
    way). They are SET LOCAL: when a query inside fails, rolling back the caller's transaction
    or savepoint undoes them (search_page runs in one), and nothing more can run here anyway."""
    names, values = list(settings), list(settings.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(current_setting(name) ORDER BY n) FROM unnest(%s::text[]) WITH ORDINALITY AS s(name, n)",
            [names],
        )
        (before,) = cursor.fetchone()
        cursor.execute(SET_ALL, [names, values])
    yield
    with connection.cursor() as cursor:
        cursor.execute(SET_ALL, [names, before])


SET_ALL = "SELECT set_config(name, value, true) FROM unnest(%s::text[], %s::text[]) AS s(name, value)"
