"""Small template helpers for the moderation panel."""

from django import template

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
def seconds(ms) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"
