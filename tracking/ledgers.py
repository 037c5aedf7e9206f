"""The spend ledgers' upkeep: the rows no budget's window can reach any more are deleted.

Admission reads a guild's ledger (per hour and per day) over its guild budget's window, and the
operator's (per hour and shard) over the last day (0022). A window is at most 366 days (the
policies' CHECK constraints) and the hours read start at most an hour before it, so a row for a
period that began more than KEEP ago is never read again. Kept, a guild's ledger would grow by up
to 25 rows for every day it spends (2,000 busy guilds: 18 million rows a year), the operator's by
up to 192."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from tracking.models import GuildSpendLedger, OperatorSpendHour

KEEP = timedelta(days=367)


def prune_spend_ledgers(*, now: datetime | None = None) -> int:
    """Delete the ledgers' rows for periods that began more than KEEP before ``now``; how many."""
    cutoff = (now or timezone.now()) - KEEP
    guilds, _ = GuildSpendLedger.objects.filter(starts__lt=cutoff).delete()
    operator, _ = OperatorSpendHour.objects.filter(hour__lt=cutoff).delete()
    return guilds + operator
