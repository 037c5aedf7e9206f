"""Prompt search that always answers: the panel, not the planner, chooses how to find matches.

A text search is fast one of two ways: through the text index (GIN on ``prompt_tsv``) when the
matches are few, or by walking the newest rows and checking each one's stored vector when they
are many. PostgreSQL chooses from its statistics, and for a word it has none on (absent, rare,
or rare beside common words) it guesses 0.5 %, expects a page of matches within a few
thousand rows, and walks: over every row when there is no match. Here each path runs only
where it is bounded, and the planner is told which one (SET LOCAL, this transaction only):

1. Walk the newest WALK_ROWS rows the filters keep. Enough when matches are common.
2. Ask the index for at most CANDIDATE_CAP matches in no order, so that it stops there. Fewer
   means that is every match: the page is sorted from them. Absent, rare, and rare-beside-
   common words end here, whatever the statistics say.
3. Many matches, yet too few among the newest rows (a word common only in older history):
   walk LONG_WALK_ROWS, then take what remains from the index in date order.

Orders other than newest first use step 2 too; with many matches the planner orders them (its
statistics know common words, and a common word fills a page within a short walk).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

WALK_ROWS = 20_000
CANDIDATE_CAP = 5_000
LONG_WALK_ROWS = 200_000

NEWEST_FIRST = ("-created_at", "-id")

# Written exactly as the column is generated, so that GIN on prompt_tsv serves it.
MATCHES = "prompt_tsv @@ websearch_to_tsquery('english'::regconfig, %s)"

# Planner settings per path. Turning a scan type off makes the planner take another where one
# exists; the text index serves only bitmap scans, and the date-ordered ones are index scans.
WALKING = {"enable_bitmapscan": "off", "enable_seqscan": "off"}
THROUGH_THE_INDEX = {"enable_indexscan": "off", "enable_indexonlyscan": "off", "enable_seqscan": "off"}


class EmptySearch(ValueError):
    """The words hold nothing the search can look for (only words like "the" or punctuation)."""


@dataclass(frozen=True)
class SearchPage:
    rows: list  # at most `limit` rows, in the requested order
    more: bool  # another page follows
    path: str  # how the matches were found: "walk", "index", "long walk", "index by date", "planner"


def prompt_matches(text: str) -> RawSQL:
    """A filter condition: the prompt matches a web-search style query ("quoted phrase", or,
    -word). For lists and exports; a page of results comes from search_page."""
    return RawSQL(MATCHES, [text], output_field=BooleanField())


def search_page(unsearched: QuerySet, text: str, *, ordering: Sequence[str], offset: int, limit: int) -> SearchPage:
    """Rows ``offset`` to ``offset + limit`` of ``unsearched`` (the list with its filters)
    whose prompt matches ``text``, in ``ordering``."""
    if not _has_lexemes(text):
        raise EmptySearch(
            f"Nothing to search for in {text!r}: the search leaves out very common words "
            "(the, a, of, …) and punctuation. Add a more specific word."
        )
    need = offset + limit + 1  # one more than the page: is there a next one?
    searched = unsearched.filter(prompt_matches(text))
    with transaction.atomic():  # SET LOCAL lasts until this block ends
        if tuple(ordering) == NEWEST_FIRST:
            ids, path = _newest(unsearched, searched, need)
            rows = _in_order(unsearched, ids[offset:need])
        else:
            rows, path = _ordered(unsearched, searched, ordering, offset, need)
    return SearchPage(rows=rows[:limit], more=len(rows) > limit, path=path)


def _newest(unsearched: QuerySet, searched: QuerySet, need: int) -> tuple[list[int], str]:
    boundary = _boundary(unsearched, WALK_ROWS)
    walked = _walk(searched, since=boundary, need=need)
    if len(walked) >= need or boundary is None:
        return walked, "walk"
    candidates = _candidates(searched)
    if len(candidates) < CANDIDATE_CAP:  # every match
        candidates.sort(reverse=True)
        return [id_ for _, id_ in candidates[:need]], "index"
    far = _boundary(unsearched, LONG_WALK_ROWS)
    walked = _walk(searched, since=far, need=need)
    if len(walked) >= need or far is None:
        return walked, "long walk"
    with planner(THROUGH_THE_INDEX):
        older = searched.filter(created_at__lt=far).order_by(*NEWEST_FIRST).values_list("id", flat=True)
        return walked + list(older[: need - len(walked)]), "index by date"


def _ordered(
    unsearched: QuerySet, searched: QuerySet, ordering: Sequence[str], offset: int, need: int
) -> tuple[list, str]:
    candidates = _candidates(searched)
    if len(candidates) < CANDIDATE_CAP:
        ids = [id_ for _, id_ in candidates]
        return list(unsearched.filter(id__in=ids).order_by(*ordering)[offset:need]), "index"
    return list(searched.order_by(*ordering)[offset:need]), "planner"


def _boundary(unsearched: QuerySet, rows: int):
    """The creation time of the ``rows``-th newest row the filters keep, or None when they keep
    fewer: a walk from the newest row down to it reads at most about ``rows`` rows."""
    found = unsearched.order_by("-created_at").values_list("created_at", flat=True)[rows - 1 : rows]
    return next(iter(found), None)


def _walk(searched: QuerySet, *, since, need: int) -> list[int]:
    """Matching ids, newest first, among the rows created at or after ``since`` (all rows when
    None), read in date order and stopping at ``need``."""
    window = searched if since is None else searched.filter(created_at__gte=since)
    with planner(WALKING):
        return list(window.order_by(*NEWEST_FIRST).values_list("id", flat=True)[:need])


def _candidates(searched: QuerySet) -> list[tuple]:
    """At most CANDIDATE_CAP matches as (created_at, id), through the text index, in no order."""
    with planner(THROUGH_THE_INDEX):
        return list(searched.order_by().values_list("created_at", "id")[:CANDIDATE_CAP])


def _in_order(unsearched: QuerySet, ids: list[int]) -> list:
    by_id = {row.id: row for row in unsearched.order_by().filter(id__in=ids)}
    return [by_id[id_] for id_ in ids if id_ in by_id]


def _has_lexemes(text: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT numnode(websearch_to_tsquery('english'::regconfig, %s)) > 0", [text])
        return cursor.fetchone()[0]


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
