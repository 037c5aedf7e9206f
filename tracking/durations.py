"""Durations as users and moderators read them, written one way everywhere."""

from __future__ import annotations

import math
from datetime import timedelta


def humanize_duration(delta: timedelta) -> str:
    """timedelta -> '2h 15m', '24h', '3d 4h', '15m 30s', '40s': the two largest units, rounded up;
    days only from 48 h on, so that a quota window reads '24h' beside a reset in '23h 59m'. Every
    duration a user or moderator reads is written by this one function."""
    seconds = max(0, math.ceil(delta.total_seconds()))
    units = []
    sizes = (
        ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")) if seconds >= 2 * 86400 else ((3600, "h"), (60, "m"), (1, "s"))
    )
    for size, unit in sizes:
        amount, seconds = divmod(seconds, size)
        units.append((amount, unit))
    while len(units) > 1 and units[0][0] == 0:
        units.pop(0)
    shown = [units[0]] + [u for u in units[1:2] if u[0]]
    return " ".join(f"{amount}{unit}" for amount, unit in shown)
