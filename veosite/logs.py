"""Structured logging: one line per lifecycle step, plain text or JSON (LOG_JSON=true).

Loaded by settings.LOGGING before Django's apps, so this module imports nothing of ours.
Never pass a token or a whole prompt here: ``preview()`` shortens user text for the logs.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

PREVIEW_CHARS = 60


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus the step's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """User text for a log line: one line, at most ``limit`` characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def step(
    logger: logging.Logger,
    name: str,
    *,
    request_id: int | None,
    user_id: int | None = None,
    guild_id: int | None = None,
    level: int = logging.INFO,
    **fields,
) -> None:
    """Log one lifecycle step of a request: ``request 12 admitted user=… guild=… admit_ms=3.1``.

    Timings are passed as ``*_ms`` floats and rounded; the same fields go into JSON output."""
    if not logger.isEnabledFor(level):
        return  # on every /veo: not even the line's fields are worth building for nobody
    fields = {
        key: round(value, 1) if isinstance(value, float) else value
        for key, value in fields.items()
        if value is not None
    }
    data = {"event": name, "request_id": request_id, "user_id": user_id, "guild_id": guild_id, **fields}
    text = " ".join(
        f"{key}={value}" for key, value in data.items() if key not in ("event", "request_id") and value is not None
    )
    logger.log(
        level, "request %s %s %s", request_id if request_id is not None else "-", name, text, extra={"fields": data}
    )
