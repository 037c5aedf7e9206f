"""Vertex AI labels on each generation, so the billing export can be matched to guilds, users and
requests. Vertex label values are at most 63 characters of lowercase letters, digits, "_" and "-"
(keys must also start with a letter): Discord ids are digits, so they fit as they are."""

from __future__ import annotations

import re

MAX_LENGTH = 63
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]")


def label_value(value: object) -> str:
    """Any value as a valid Vertex label value: lowercased, other characters as "_", cut to 63."""
    return _NOT_ALLOWED.sub("_", str(value).lower())[:MAX_LENGTH]


def request_labels(*, request_id: int, user_id: int | None, guild_id: int | None) -> dict[str, str]:
    labels = {"veobot_request": label_value(request_id), "veobot_guild": label_value(guild_id or "dm")}
    if user_id is not None:
        labels["veobot_user"] = label_value(user_id)
    return labels
