"""The dashboard's spend per day as tables: one row per UTC day, one column per guild or model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from tracking.analytics_spend import DaySpend

LAST = ("other",)  # the guilds outside the top ones, summed: always the last column


@dataclass(frozen=True)
class SpendTable:
    columns: list[str]  # largest total first ("other" last)
    rows: list[tuple[date, list[Decimal | None], Decimal]]  # day, a cell per column (None: nothing), day total
    totals: list[Decimal]  # per column, over the period


def per_day(spend: list[DaySpend]) -> SpendTable:
    totals: dict[str, Decimal] = {}
    cells: dict[date, dict[str, Decimal]] = {}
    for entry in spend:
        totals[entry.key] = totals.get(entry.key, Decimal(0)) + entry.usd
        cells.setdefault(entry.day, {})[entry.key] = entry.usd
    columns = sorted(totals, key=lambda key: (key in LAST, -totals[key], key))
    rows = [
        (day, [by_key.get(key) for key in columns], sum(by_key.values(), Decimal(0)))
        for day, by_key in sorted(cells.items())
    ]
    return SpendTable(columns=columns, rows=rows, totals=[totals[key] for key in columns])
