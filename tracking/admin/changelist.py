"""A changelist that never counts the whole table.

The unfiltered list shows the planner's estimate ("about N"); a filtered list counts at
most COUNT_CAP + 1 matching rows, so paging reaches the newest COUNT_CAP matches and
deeper history is reached by narrowing (dates, filters), never by OFFSET into millions of
rows. A search is not counted at all, and its page comes from tracking.search (see
_search_results).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import InvalidPage, Paginator
from django.utils import timezone
from django.utils.functional import cached_property

from tracking import search, selectors

COUNT_CAP = 1_000  # 20 pages of 50; older rows are reached with dates and filters


class BoundedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows; `known_count` skips counting altogether."""

    def __init__(self, *args, known_count: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._known_count = known_count

    @cached_property
    def count(self) -> int:
        if self._known_count is not None:
            return self._known_count
        # No ORDER BY: counting needs no order, and the planner may then use any index.
        return self.object_list.order_by()[: COUNT_CAP + 1].count()


class ModerationChangeList(ChangeList):
    def get_filters(self, request):
        # Django turns a bad date-hierarchy value into IncorrectLookupParameters (the list
        # then reloads with ?e=1), but not a year of 30 digits (OverflowError) or 9999 (the
        # year after it does not exist): the same answer for those.
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error

    @property
    def is_filtered(self) -> bool:
        hierarchy = [f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")]
        return bool(self.has_active_filters or self.query or any(p in self.params for p in hierarchy))

    def get_results(self, request):
        self.estimated_total = None
        self.search_more = None
        if self.query:
            try:
                return self._search_results()
            except search.EmptySearch as error:  # the box keeps the words, to correct them
                messages.error(request, str(error))
                self._set_search_page([], more=False, offset=0)
                return None
        known = None
        if not self.is_filtered:
            estimate = selectors.estimated_row_count(self.model._meta.db_table)
            if estimate >= COUNT_CAP:  # a large table: shown as "about N", never counted
                self.estimated_total, known = estimate, COUNT_CAP + 1
            # else a small one (or one never analysed, whose estimate is 0): counted exactly
        paginator = BoundedPaginator(self.queryset, self.list_per_page, known_count=known)
        self.result_count = paginator.count
        self.count_capped = self.result_count > COUNT_CAP
        self.show_full_result_count = False
        self.full_result_count = None
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = self.result_count > self.list_per_page
        try:
            rows = paginator.page(self.page_num).object_list if self.multi_page else self.queryset._clone()
            self.result_list = list(rows)  # fetched now, inside the caller's time limit, not while rendering
        except InvalidPage:
            raise IncorrectLookupParameters from None
        self.paginator = paginator

    def _search_results(self) -> None:
        """A search is not counted: counting matches means running the text match on every
        candidate row. One row beyond the page tells whether there is a next page."""
        offset = (self.page_num - 1) * self.list_per_page
        words = self.model_admin.text_search(self.query)
        if words:
            page = search.search_page(self.queryset, words, offset=offset, limit=self.list_per_page)
            rows, more = page.rows, page.more
        else:  # ids: their own indexes, in any order
            rows = list(self.queryset[offset : offset + self.list_per_page + 1])
            rows, more = rows[: self.list_per_page], len(rows) > self.list_per_page
        self._set_search_page(rows, more=more, offset=offset)

    def _set_search_page(self, rows: list, *, more: bool, offset: int) -> None:
        self.search_more = more
        self.result_list = rows
        self.paginator = BoundedPaginator(self.queryset, self.list_per_page, known_count=offset + len(rows) + more)
        self.result_count = offset + len(self.result_list)
        self.search_first = offset + 1
        self.count_capped = False
        self.show_full_result_count = False
        self.full_result_count = None
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = self.page_num > 1 or self.search_more


def hierarchy_choices(cl: ModerationChangeList, first: datetime | None, last: datetime | None) -> dict:
    """The date drill-down (years, months, days) without DISTINCT date queries over the
    table: the periods between the newest and oldest request (two index probes)."""
    field = cl.date_hierarchy
    params = cl.params
    year, month, day = (params.get(f"{field}__{part}") for part in ("year", "month", "day"))

    def link(filters):
        return cl.get_query_string(filters, [f"{field}__"])

    try:
        year, month, day = (int(v) if v else None for v in (year, month, day))
    except ValueError:
        return {"show": False}
    if first is None or last is None:
        return {"show": False}
    first, last = timezone.localtime(first).date(), timezone.localtime(last).date()
    if year and month and day:
        current = date(year, month, day)
        return {
            "show": True,
            "back": {
                "link": link({f"{field}__year": year, f"{field}__month": month}),
                "title": current.strftime("%B %Y"),
            },
            "choices": [{"title": current.strftime("%-d %B")}],
        }
    if year and month:
        start = date(year, month, 1)
        end = (start + timedelta(days=32)).replace(day=1)
        days = [start + timedelta(days=n) for n in range((end - start).days)]
        return {
            "show": True,
            "back": {"link": link({f"{field}__year": year}), "title": str(year)},
            "choices": [
                {
                    "link": link({f"{field}__year": year, f"{field}__month": month, f"{field}__day": d.day}),
                    "title": d.strftime("%-d %B"),
                }
                for d in days
                if first <= d <= last
            ],
        }
    if year:
        months = [date(year, m, 1) for m in range(1, 13)]
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {"link": link({f"{field}__year": year, f"{field}__month": m.month}), "title": m.strftime("%B %Y")}
                for m in months
                if (first.year, first.month) <= (m.year, m.month) <= (last.year, last.month)
            ],
        }
    return {
        "show": True,
        "choices": [{"link": link({f"{field}__year": y}), "title": str(y)} for y in range(first.year, last.year + 1)],
    }
