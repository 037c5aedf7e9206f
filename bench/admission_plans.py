"""What the admission benchmark measures: each variant, route, client count and user mix."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bench import request_history

QUOTA_LIMIT = 5
QUOTA_WINDOW = timedelta(hours=24)
# The hot-user runs use a short window so that users keep reaching the limit during the run;
# with 24 hours every user would be full after the first few calls and only refusals would race.
HOT_USERS = 16
HOT_WINDOW = timedelta(seconds=2)
HOT_USER_BASE = 10**12  # above every loaded or "new" user id
PROMPT = (
    "A red fox walking slowly through a misty pine forest at dawn, slow dolly-in shot, "
    "cinematic lighting, 35mm film grain"
)
MODEL = "veo-3.0-generate-001"
PROXY_DELAY_MS = 0.5
CALIBRATION_SECONDS = 5

LOCAL = "local"
PROXY = f"proxy {PROXY_DELAY_MS} ms"
PROXY_NO_DELAY = "proxy 0 ms"

FLOOR = "(a) INSERT"
THREE_STATEMENTS = "(b) 3 statements"
ADMISSION = "admission"
SELECT_ONE = "SELECT 1"


@dataclass(frozen=True)
class Users:
    """Which users a script draws from: step * random(1, count) + random(offset_min, offset_max)."""

    label: str
    step: int
    count: int
    offset_min: int
    offset_max: int


KNOWN_USERS = Users("known", request_history.USER_ID_STEP, request_history.USERS, 0, 0)  # the 100k users with history
# Between the known ids: users without history, so every call takes the admitted path.
NEW_USERS = Users("new", request_history.USER_ID_STEP, request_history.USERS, 1, request_history.USER_ID_STEP - 1)
NO_USERS = Users("", 0, 0, 0, 0)  # SELECT 1 writes nothing


@dataclass(frozen=True)
class Plan:
    variant: str
    script: str
    route: str
    clients: int
    users: Users = NO_USERS
    window: timedelta = QUOTA_WINDOW
    seconds: int | None = None  # None: --duration

    @property
    def writes_requests(self) -> bool:
        return self.variant != SELECT_ONE

    @property
    def enforces_quota(self) -> bool:
        return self.variant in (ADMISSION, THREE_STATEMENTS)

    @property
    def label(self) -> str:
        users = f"{self.users.label} users, " if self.users.label else ""
        return f"{self.variant}, {users}{self.route}, {self.clients} client(s)"

    def script_variables(self) -> dict[str, object]:
        if not self.writes_requests:
            return {}
        return {
            "user_step": self.users.step,
            "user_count": self.users.count,
            "user_offset_min": self.users.offset_min,
            "user_offset_max": self.users.offset_max,
            "prompt": PROMPT,
            "model": MODEL,
            "quota_limit": QUOTA_LIMIT,
            "quota_window": f"{int(self.window.total_seconds())} seconds",
        }


def all_plans(clients: list[int]) -> list[Plan]:
    """Calibration, then local runs, proxied runs and the hot-user race, in that order."""
    calibration = [
        Plan(SELECT_ONE, "select_one.sql", route, 1, seconds=CALIBRATION_SECONDS)
        for route in (LOCAL, PROXY_NO_DELAY, PROXY)
    ]
    local = [
        Plan(variant, script, LOCAL, n, users)
        for n in clients
        for variant, script, users in (
            (FLOOR, "floor.sql", NEW_USERS),
            (THREE_STATEMENTS, "three_statements.sql", KNOWN_USERS),
            (ADMISSION, "admission.sql", KNOWN_USERS),
            (ADMISSION, "admission.sql", NEW_USERS),
        )
    ]
    proxied = [
        Plan(variant, script, PROXY, n, users)
        for n in clients
        for variant, script, users in (
            (FLOOR, "floor.sql", NEW_USERS),
            (THREE_STATEMENTS, "three_statements.sql", KNOWN_USERS),
            (ADMISSION, "admission.sql", KNOWN_USERS),
        )
    ]
    hot = [
        Plan(variant, script, LOCAL, max(clients), Users("hot", 1, HOT_USERS, base, base), window=HOT_WINDOW)
        for variant, script, base in (
            (THREE_STATEMENTS, "three_statements.sql", HOT_USER_BASE),
            (ADMISSION, "admission.sql", HOT_USER_BASE + 1000),
        )
    ]
    return calibration + local + proxied + hot
