"""Durations as users and moderators read and write them ("2h 15m", "24h", "7d"), one way
everywhere."""

from __future__ import annotations

import math
import re
from datetime import timedelta

UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_WRITTEN = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$")
_PART = re.compile(r"(\d+)\s*([dhms])")


def _parts(seconds: int) -> list[tuple[int, str]]:
    """Every unit, largest first; days only from 48 h on, so that a quota window reads '24h'
    beside a reset in '23h 59m'."""
    units = "dhms" if seconds >= 2 * UNIT_SECONDS["d"] else "hms"
    parts = []
    for unit in units:
        amount, seconds = divmod(seconds, UNIT_SECONDS[unit])
        parts.append((amount, unit))
    return parts


def humanize_duration(delta: timedelta) -> str:
    """timedelta -> '2h 15m', '24h', '3d 4h', '15m 30s', '40s': the two largest units, rounded up.
    Every duration a user or moderator reads is written by this one function."""
    units = _parts(max(0, math.ceil(delta.total_seconds())))
    while len(units) > 1 and units[0][0] == 0:
        units.pop(0)
    shown = [units[0]] + [u for u in units[1:2] if u[0]]
    return " ".join(f"{amount}{unit}" for amount, unit in shown)


def exact_duration(delta: timedelta) -> str:
    """timedelta -> '24h', '7d', '1h 30m': every unit, nothing rounded (a form shows it back)."""
    shown = [f"{amount}{unit}" for amount, unit in _parts(int(delta.total_seconds())) if amount]
    return " ".join(shown) or "0s"


def parse_written(text: str) -> timedelta | None:
    """'24h', '90m', '7d', '1h 30m' -> timedelta; None when it is not written that way."""
    if not _WRITTEN.match(text):
        return None
    return timedelta(seconds=sum(int(amount) * UNIT_SECONDS[unit] for amount, unit in _PART.findall(text)))
