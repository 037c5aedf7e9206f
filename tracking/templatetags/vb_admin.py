"""Small template helpers for the moderation panel."""

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import timezone

from tracking import selectors
from tracking.durations import humanize_duration

register = template.Library()


@register.simple_tag
def page_url(cl, page: int) -> str:
    """The current list (filters, search, ordering) at another page."""
    return cl.get_query_string({"p": page})


@register.filter
def thousands(value) -> str:
    return f"{value:,}" if isinstance(value, int) else value


@register.filter
def percent(value) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


@register.filter
def usd(value) -> str:
    """Money as the panel writes it: $1,234.56 (to the cent, half up)."""
    if value is None:
        return "–"
    return f"${Decimal(value).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


@register.filter
def seconds(ms) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"


@register.filter
def ago(moment) -> str:
    """How long ago, written as every duration in veobot is ('23h 59m'), not Django's timesince."""
    return "–" if moment is None else humanize_duration(timezone.now() - moment)


@register.filter
def plain(value) -> str:
    """A value of an event's detail as a moderator reads it: a list joined, not Python's repr."""
    if isinstance(value, list):
        return ", ".join(plain(item) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {plain(item)}" for key, item in value.items())
    return str(value)


@register.filter
def duration(delta) -> str:
    """A timedelta written as every duration in veobot is ("24h", "2h 15m")."""
    return "–" if delta is None else humanize_duration(delta)


@register.simple_tag
def open_quarantine_count() -> int:
    """Journal entries no bot could replay, for the operators' notice on the index page."""
    return selectors.open_quarantine_count()


@register.simple_tag
def open_review_items() -> dict:
    """The review queue's open items for the index page: counted up to a cap, then "N+"."""
    count = selectors.open_review_count()
    cap = selectors.OPEN_REVIEW_COUNT_CAP
    return {"count": min(count, cap), "more": count > cap}
