"""Prices: added as history (a new row with a later effective_from), withdrawn only before they apply."""

from __future__ import annotations

from datetime import timedelta

from tracking.models import VeoPrice
from tracking.services.audit import moderating

# A price "from now" submitted a moment after the form was filled is still from now.
CLOCK_SLACK = timedelta(minutes=5)


def add_price(*, price: VeoPrice, actor: str) -> VeoPrice:
    """Record a new price; requests created from its effective_from on are estimated at it."""
    price.created_by = actor
    with moderating(actor=actor, action="add price"):
        price.save(force_insert=True)
    return price


def withdraw_price(*, price: VeoPrice, actor: str) -> None:
    """Delete a price not yet in effect (the database refuses one in effect: it is history)."""
    with moderating(actor=actor, action="withdraw price"):
        price.delete()
