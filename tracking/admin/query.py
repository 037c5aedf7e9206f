"""Query parameters of the panel's pages, checked before Django's changelist reads them.

PostgreSQL text cannot hold NUL, and Django passes filter values to the database as they
come: ``?status__exact=%00`` would end in a database error (HTTP 500) instead of a message.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect


def digits(value: str | None) -> int | None:
    """``value`` as a number when it is ASCII digits only (``"²".isdigit()`` is true, yet int() refuses it)."""
    return int(value) if value and value.isascii() and value.isdigit() else None


class RefusesNulParameters:
    """Admin mixin: a list address with a NUL in a parameter loses those parameters, with a message."""

    def changelist_view(self, request: HttpRequest, extra_context=None):
        return refuse_nul(request) or super().changelist_view(request, extra_context)


def refuse_nul(request: HttpRequest, *, to: str | None = None) -> HttpResponseRedirect | None:
    """None when no parameter holds a NUL; otherwise a redirect to ``to`` (default: this page)
    without those parameters, and a message naming them."""
    spoiled = sorted({key for key, values in request.GET.lists() for value in [key, *values] if "\x00" in value})
    if not spoiled:
        return None
    messages.error(
        request,
        f"Ignored {', '.join(repr(key) for key in spoiled)}: the address contained a NUL "
        "character (U+0000), which no value can hold.",
    )
    query = request.GET.copy()
    for key in spoiled:
        query.pop(key)
    return HttpResponseRedirect(f"{to or request.path}?{query.urlencode()}")
