"""Admission without the database: the same limits, per process, in memory.

Seeded from the answers PostgreSQL gave before the outage (generation.admission), so a user
who had used their quota before the database went away is still held to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

BAN_MEMORY = timedelta(hours=1)  # a ban seen before the outage is still honoured this long


@dataclass(frozen=True)
class LocalDecision:
    admitted: bool
    reason_code: str | None
    reason: str | None
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None


class LocalLimiter:
    """Per-user rolling windows in memory: what this process knows of each user's quota."""

    def __init__(self) -> None:
        self._slots: dict[int, list[datetime]] = {}
        self._limits: dict[int, int] = {}
        self._bans: dict[int, tuple[str, datetime]] = {}

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

    def admit(self, *, user_id: int, at: datetime) -> LocalDecision:
        """Admit (taking a slot stamped ``at``, the request's created_at) or refuse."""
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        ban = self._bans.get(user_id)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        if ban and ban[1] > timezone.now():
            return LocalDecision(False, "banned", ban[0], len(slots), limit, max(limit - len(slots), 0), reset_at)
        if len(slots) >= limit:
            reason = f"quota exceeded: {len(slots)} of {limit} videos used in the last {settings.VEO_QUOTA_WINDOW}"
            return LocalDecision(False, "quota_exceeded", reason, len(slots), limit, 0, reset_at)
        slots.append(at)
        return LocalDecision(
            True, None, None, len(slots), limit, limit - len(slots), min(slots) + settings.VEO_QUOTA_WINDOW
        )

    def refund(self, *, user_id: int, created_at: datetime) -> None:
        slots = self._slots.get(user_id, [])
        if created_at in slots:
            slots.remove(created_at)

    def status(self, *, user_id: int) -> LocalDecision:
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        return LocalDecision(len(slots) < limit, None, None, len(slots), limit, max(limit - len(slots), 0), reset_at)
