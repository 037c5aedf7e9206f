"""Admission without the database: the same limits, per process, in memory.

Seeded from the answers PostgreSQL gave before the outage (generation.admission), so a user
who had used their quota before the database went away is still held to it.

Money: user and guild budgets live in policies this process cannot read while the database is
away, so they are not checked here. The operator's daily cap (VEO_BUDGET_USD_PER_DAY) is: this
process spends at most that much in any 24 hours of degraded admissions, priced at what the
database last said a request of the same model, resolution and audio cost per second; a request
whose price this process has never seen is refused (budget_unpriced) while the cap is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

BAN_MEMORY = timedelta(hours=1)  # a ban seen before the outage is still honoured this long
SPEND_WINDOW = timedelta(days=1)  # VEO_BUDGET_USD_PER_DAY is a rolling day


@dataclass(frozen=True)
class LocalDecision:
    admitted: bool
    reason_code: str | None
    reason: str | None
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None
    cost_usd: Decimal | None = None


def _price_key(params) -> tuple[str, str, bool]:
    return (params.model, params.resolution, params.generate_audio)


class LocalLimiter:
    """Per-user rolling windows in memory: what this process knows of each user's quota."""

    def __init__(self) -> None:
        self._slots: dict[int, list[datetime]] = {}
        self._limits: dict[int, int] = {}
        self._bans: dict[int, tuple[str, datetime]] = {}
        self._per_second: dict[tuple[str, str, bool], Decimal] = {}  # prices the database gave
        self._spent: list[tuple[datetime, Decimal]] = []  # this process's degraded admissions

    def remember_price(self, *, params, cost_usd: Decimal | None) -> None:
        """What the database said a request like ``params`` costs, for pricing while it is away."""
        if cost_usd is not None and params.duration_seconds:
            self._per_second[_price_key(params)] = cost_usd / params.duration_seconds

    def _money_refusal(self, *, params, at: datetime) -> tuple[Decimal | None, str | None, str | None]:
        """(cost, refusal code, refusal text) for the operator's cap; no code: it fits."""
        per_second = self._per_second.get(_price_key(params))
        cost = per_second * params.duration_seconds if per_second is not None else None
        cap = settings.VEO_BUDGET_USD_PER_DAY
        if cap is None:
            return cost, None, None
        if cost is None:
            return (
                None,
                "budget_unpriced",
                (
                    f"no price is known here for {params.model} at {params.resolution} while the database is"
                    " unreachable, and a spending budget applies"
                ),
            )
        self._spent = [(t, usd) for t, usd in self._spent if t > at - SPEND_WINDOW]
        spent = sum((usd for _, usd in self._spent), Decimal(0))
        if spent + cost > cap:
            return (
                cost,
                "budget_operator",
                (
                    f"the bot's daily spending budget is reached: ${max(cap - spent, Decimal(0)):.2f} of ${cap:.2f}"
                    f" per 1 day left, and this video costs ${cost:.2f} (counted by this process while the"
                    " database is unreachable)"
                ),
            )
        return cost, None, None

    def remember(
        self,
        *,
        user_id: int,
        used: int,
        limit: int,
        reset_at: datetime | None,
        reason_code: str | None,
        reason: str | None,
    ) -> None:
        """Seed from the database's answer. The oldest counted slot is at reset_at - window; the
        others are taken as just now (conservative: they leave the window last)."""
        now = timezone.now()
        if reason_code == "banned":
            self._bans[user_id] = (reason or "banned", now + BAN_MEMORY)
            return
        self._bans.pop(user_id, None)
        self._limits[user_id] = limit
        oldest = reset_at - settings.VEO_QUOTA_WINDOW if reset_at else now
        self._slots[user_id] = ([oldest] + [now] * (used - 1)) if used else []

    def _window(self, user_id: int) -> list[datetime]:
        floor = timezone.now() - settings.VEO_QUOTA_WINDOW
        slots = self._slots[user_id] = [t for t in self._slots.get(user_id, []) if t > floor]
        return slots

    def admit(self, *, user_id: int, at: datetime, params=None) -> LocalDecision:
        """Admit (taking a slot stamped ``at``, the request's created_at) or refuse. ``params``
        (the request's VideoParameters) prices it for the operator's cap."""
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        ban = self._bans.get(user_id)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        if ban and ban[1] > timezone.now():
            return LocalDecision(False, "banned", ban[0], len(slots), limit, max(limit - len(slots), 0), reset_at)
        if len(slots) >= limit:
            reason = f"quota exceeded: {len(slots)} of {limit} videos used in the last {settings.VEO_QUOTA_WINDOW}"
            return LocalDecision(False, "quota_exceeded", reason, len(slots), limit, 0, reset_at)
        cost, code, refusal = self._money_refusal(params=params, at=at) if params is not None else (None, None, None)
        if code is not None:
            return LocalDecision(False, code, refusal, len(slots), limit, max(limit - len(slots), 0), reset_at)
        slots.append(at)
        if cost is not None:
            self._spent.append((at, cost))
        return LocalDecision(
            True, None, None, len(slots), limit, limit - len(slots), min(slots) + settings.VEO_QUOTA_WINDOW, cost
        )

    def refund(self, *, user_id: int, created_at: datetime) -> None:
        slots = self._slots.get(user_id, [])
        if created_at in slots:
            slots.remove(created_at)
        self._spent = [(t, usd) for t, usd in self._spent if t != created_at]  # its money back too

    def status(self, *, user_id: int) -> LocalDecision:
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        return LocalDecision(len(slots) < limit, None, None, len(slots), limit, max(limit - len(slots), 0), reset_at)
