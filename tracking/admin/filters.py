"""List filters that stay cheap on a table of millions of rows.

Choice filters built from the data (guilds) would run a DISTINCT over the whole table, so
guild and date range are typed in; bad input is reported, never a traceback.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.contrib import admin, messages
from django.utils import timezone

from tracking.admin.query import digits
from tracking.models import Source


class InputFilter(admin.SimpleListFilter):
    """A filter with a small form instead of links; the value is validated by clean()."""

    template = "admin/tracking/input_filter.html"
    placeholder = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # has_output() needs one choice; the template shows a form instead

    def choices(self, changelist):
        # The form re-submits every other current parameter as a hidden field.
        others = [(k, v) for k, v in changelist.params.items() if k != self.parameter_name and k != "p"]
        yield {
            "others": others,
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "name": self.parameter_name,
            "clear": changelist.get_query_string(remove=[self.parameter_name, "p"]),
        }

    def clean(self, value: str):
        raise NotImplementedError

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            return self.filter(queryset, self.clean(self.value().strip()))
        except ValueError as error:
            messages.error(request, f"{self.title}: {error}")
            return queryset.none()


class GuildFilter(InputFilter):
    title = "guild"
    parameter_name = "guild"
    placeholder = "guild id, or dm"

    def clean(self, value: str):
        if value.lower() == "dm":
            return None
        guild_id = digits(value)
        if guild_id is None or not 0 < guild_id < 2**63:
            raise ValueError("enter a guild id (digits) or dm for direct messages")
        return guild_id

    def filter(self, queryset, guild_id):
        if guild_id is None:  # direct messages: the command line has no guild either, and is no DM
            return queryset.filter(guild_id__isnull=True, source=Source.DISCORD)
        return queryset.filter(guild_id=guild_id)


class _DateFilter(InputFilter):
    placeholder = "YYYY-MM-DD"

    def clean(self, value: str) -> datetime:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError("enter a date as YYYY-MM-DD") from None
        return timezone.make_aware(datetime.combine(day, time.min))


class CreatedFromFilter(_DateFilter):
    title = "created from (UTC day, inclusive)"
    parameter_name = "created_from"
    field = "created_at"

    def filter(self, queryset, start):
        return queryset.filter(**{f"{self.field}__gte": start})


class CreatedToFilter(_DateFilter):
    title = "created to (UTC day, inclusive)"
    parameter_name = "created_to"
    field = "created_at"

    def filter(self, queryset, end):
        return queryset.filter(**{f"{self.field}__lt": end + timedelta(days=1)})


class SafetyFilteredFilter(admin.SimpleListFilter):
    title = "safety filter"
    parameter_name = "safety"

    def lookups(self, request, model_admin):
        return [("yes", "Filtered by Veo"), ("no", "Not filtered")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(safety_filtered_count__gt=0)
        if self.value() == "no":
            return queryset.filter(safety_filtered_count=0)
        return queryset


class DeliveredFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivered"

    def lookups(self, request, model_admin):
        return [("yes", "Delivered"), ("no", "Not delivered")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(delivered_at__isnull=self.value() == "no")
        return queryset
