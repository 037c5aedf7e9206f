"""A search's filters as facets of the search index, so that GIN intersects them with the words.

The search index (migration 0023) holds, beside each prompt's words, its request's facets:
"status failed", "resolution 1080p", "guild 42", "day 9770" (UTC days since 2000-01-01), ...
A common word with filters that leave few or no rows of it ("lighthouse", failed, 1080p: none)
was answered by reading each of the word's rows from the table to check the filters; asked for
the facets as well, the index intersects the word's entries with the facets' and reads the
table only for the rows that hold them all.

The facets asked for are read from the filters of the list's queryset: its top-level AND of
plain comparisons on the request's own columns. They are a condition every row of the list
already meets (a day range covers the dates asked for, whole days), so adding it changes no
result; a filter this does not recognise simply adds no facet. GIN reads every entry of each
facet asked for, so where a budget applies (the look-up) a facet is asked for only when the rows
it rules out would cost more to read from the table than its entries (by the index's statistics
and the planner's estimate of the words' matches), within a time for entries the budget grows
by; where none applies (the index in date order), all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import BooleanField, Lookup, QuerySet
from django.db.models.expressions import Col, RawSQL
from django.db.models.sql.where import AND

from tracking.tsquery_text import lexemes, unquoted

# Written exactly as the index's second column.
FACETS_MATCH = (
    "request_facets(status, review_status, resolution, aspect_ratio, duration_seconds, source, guild_id,"
    " safety_filtered_count, delivered_at, created_at) @@ %s::tsquery"
)

# Columns whose value is the facet: the facet's name (as in request_facets).
VALUED = {
    "status": "status",
    "review_status": "review",
    "resolution": "resolution",
    "aspect_ratio": "aspect",
    "duration_seconds": "duration",
    "source": "source",
}
LONGEST_VALUE = 64  # the columns' CHECK constraints allow only short values: a longer one matches no row
MOST_DAYS = 92  # a longer date range asks for no day facet (a query of hundreds of terms gains little)
DAY_ZERO = datetime(2000, 1, 1, tzinfo=UTC)
# What the look-up pays for a facet against a row (10M rows, docs/BENCHMARKS.md). GIN reads a
# facet's entries at about ENTRY_US each beside a common word ("lighthouse" & "resolution 1080p"
# 105 ms, with "duration 6" too 145 ms, with "status completed" instead 178 ms); the table a row
# at about ROW_US ("guild 1" alone left 10,279 rows of "lighthouse" to read: 152 ms). A facet is
# asked for when the rows it rules out cost more to read than its entries, and the facets asked
# for cost at most FACETS_MS, which the look-up's budget then adds to its own.
ENTRY_US = 0.025
ROW_US = 15.0
FACETS_MS = 150


def narrowed(searched: QuerySet) -> QuerySet:
    """``searched``, also asking the search index for every facet its filters require (the
    same rows, found through the index when the filters leave few of a common word's): for
    the index in date order, which has no budget, where ruling rows out matters more than
    reading entries."""
    return with_facets(searched, facet_terms(searched))


def for_look_up(searched: QuerySet, terms: list[str], *, matching: float, rows: float) -> tuple[QuerySet, float]:
    """``searched``, also asking the search index for those of its facet ``terms`` worth it within
    a budget (worth_asking), and the time GIN is expected to spend on their entries."""
    shares = facet_shares()
    asked = worth_asking(terms, shares, matching=matching, rows=rows)
    return with_facets(searched, asked), sum(entries_ms(term_share(term, shares), rows) for term in asked)


def with_facets(searched: QuerySet, terms: list[str]) -> QuerySet:
    """``searched``, also asking the search index for these facets (of facet_terms)."""
    if not terms:
        return searched
    return searched.filter(RawSQL(FACETS_MATCH, [" & ".join(terms)], output_field=BooleanField()))


def worth_asking(terms: list[str], shares: dict[str, float], *, matching: float, rows: float) -> list[str]:
    """The terms a look-up within a budget asks the index for, when the words match ``matching``
    of the ``rows``: the rarest first, each leaving its share of the rows (as if independent),
    while the rows it rules out would cost more to read from the table than its entries, and
    all those asked cost at most FACETS_MS (a commoner one costs more entries for fewer rows, so
    the first not worth it ends the list). A term's share is the sum of its lexemes' (from the
    statistics; one they do not list is rare)."""
    asked, left, spent = [], matching * rows, 0.0
    for share, term in sorted((term_share(term, shares), term) for term in terms):
        entries = entries_ms(share, rows)
        if spent + entries > FACETS_MS or entries * 1000 >= left * (1 - share) * ROW_US:
            break
        asked.append(term)
        spent += entries
        left *= share
    return asked


def entries_ms(share: float, rows: float) -> float:
    """What GIN spends reading the entries of a facet that ``share`` of the ``rows`` hold."""
    return share * rows * ENTRY_US / 1000


def term_share(term: str, shares: dict[str, float]) -> float:
    return sum(shares.get(unquoted(lexeme), 0.0) for lexeme in lexemes(term))


def facet_shares() -> dict[str, float]:
    """The share of rows holding each facet the statistics list (none before ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute(FACET_STATISTICS)
        row = cursor.fetchone()
    return dict(zip(row[0], row[1], strict=False)) if row and row[0] else {}


# pg_stats keeps an expression index's statistics under the index's name.
FACET_STATISTICS = (
    "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
    " WHERE schemaname = current_schema() AND tablename = 'video_requests_search_idx' AND attname = 'request_facets'"
)


def facets_query(searched: QuerySet) -> str | None:
    """The facets every row of ``searched`` holds, as a tsquery ("'status failed' & ('day 1' |
    'day 2')"), or None when its filters require none."""
    return " & ".join(facet_terms(searched)) or None


def facet_terms(searched: QuerySet) -> list[str]:
    """facets_query's terms, sorted."""
    where = searched.query.where
    if where.negated or where.connector != AND:
        return []
    alias = searched.query.base_table
    terms, since, until = [], [], []
    for condition in where.children:
        if not isinstance(condition, Lookup) or not isinstance(condition.lhs, Col):
            continue
        column, lookup, value = condition.lhs, condition.lookup_name, condition.rhs
        if column.alias != alias or column.target.model is not searched.model:
            continue
        name = column.target.attname
        if name == "created_at" and isinstance(value, datetime) and value.tzinfo is not None:
            if lookup in ("gt", "gte", "exact"):
                since.append(value)
            if lookup in ("lt", "lte", "exact"):
                until.append(value - timedelta(microseconds=1) if lookup == "lt" else value)
            continue
        term = _facet(name, lookup, value)
        if term:
            terms.append(term)
    if since and until:
        terms.append(_days(max(since), min(until)))
    return sorted({term for term in terms if term})  # (a date range too long for days gives none)


def _facet(name: str, lookup: str, value) -> str | None:
    """One filter as a tsquery term, or None when it names no facet."""
    if name in VALUED and lookup == "exact":
        return _any(VALUED[name], [value])
    if name in VALUED and lookup == "in" and isinstance(value, Iterable) and not isinstance(value, str):
        return _any(VALUED[name], list(value))
    if name == "guild_id" and lookup == "exact" and isinstance(value, int):
        return _lexeme(f"guild {value}")
    if name == "guild_id" and lookup == "isnull" and value is True:
        return _lexeme("guild none")
    if name == "delivered_at" and lookup == "isnull" and isinstance(value, bool):
        return _lexeme("delivered no" if value else "delivered yes")
    if name == "safety_filtered_count" and isinstance(value, int) and not isinstance(value, bool):
        if (lookup, value) in (("gt", 0), ("gte", 1)):
            return _lexeme("safety yes")
        if (lookup, value) in (("exact", 0), ("lt", 1), ("lte", 0)):
            return _lexeme("safety no")
    return None


def _any(facet: str, values: list) -> str | None:
    """Any of these values of a facet; None when one is not a plain value (then no facet)."""
    if not values or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        return None
    values = [v for v in values if len(str(v)) <= LONGEST_VALUE]  # a longer one matches no row anyway
    if not values:
        return None
    return _either([_lexeme(f"{facet} {v}") for v in dict.fromkeys(values)])


def _days(first: datetime, last: datetime) -> str | None:
    """The UTC days from ``first`` to ``last`` (both included), as in the index."""
    start, end = _day(first), _day(last)
    if not 0 <= end - start < MOST_DAYS:  # an empty range the walk answers at once; a long one gains little
        return None
    return _either([_lexeme(f"day {day}") for day in range(start, end + 1)])


def _day(moment: datetime) -> int:
    return int((moment - DAY_ZERO) // timedelta(days=1))


def _either(quoted: list[str]) -> str:
    """Any one of these lexemes, as a tsquery term."""
    return quoted[0] if len(quoted) == 1 else "(" + " | ".join(quoted) + ")"


def _lexeme(text: str) -> str:
    """A tsquery lexeme, quoted as tsquery reads it (a quote doubled, a backslash escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
