"""Server-side SVG charts (no JavaScript, no CDN): geometry here, markup in the templates,
where every label is escaped by the template engine."""

from __future__ import annotations

from dataclasses import dataclass

from tracking.analytics import BucketCounts
from tracking.models import Status

STATUS_COLOURS = {
    Status.COMPLETED: "#2e7d32",
    Status.FAILED: "#c62828",
    Status.TIMEOUT: "#ef6c00",
    Status.CANCELLED: "#757575",
    Status.REJECTED: "#6a1b9a",
    Status.PENDING: "#1565c0",
    Status.GENERATING: "#00838f",
}
WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 720, 220, 10, 30, 50


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    rects: list[Rect]
    labels: list[Label]
    max_value: int


def stacked(days: list[BucketCounts], *, hourly: bool) -> Chart:
    """Requests per day (or hour), stacked by status."""
    peak = max((day.total for day in days), default=0) or 1
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(days), 1)
    rects, labels = [], []
    every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        x, bottom = LEFT + i * slot + slot * 0.1, HEIGHT - BOTTOM
        for status, colour in STATUS_COLOURS.items():
            n = day.by_status.get(status, 0)
            if not n:
                continue
            h = plot * n / peak
            bottom -= h
            rects.append(
                Rect(
                    round(x, 1),
                    round(bottom, 1),
                    round(slot * 0.8, 1),
                    round(h, 1),
                    colour,
                    f"{day.start:%Y-%m-%d %H:00 UTC} {status}: {n:,}"
                    if hourly
                    else f"{day.start:%Y-%m-%d} {status}: {n:,}",
                )
            )
        if i % every == 0:
            labels.append(
                Label(round(x, 1), HEIGHT - BOTTOM + 15, f"{day.start:%H}h" if hourly else f"{day.start:%m-%d}")
            )
    return Chart(WIDTH, HEIGHT, rects, labels, peak)


def hours(per_hour: list[int]) -> Chart:
    """Requests per UTC hour of the day."""
    peak = max(per_hour, default=0) or 1
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / 24
    rects, labels = [], []
    for hour, n in enumerate(per_hour):
        x = LEFT + hour * slot + slot * 0.1
        h = plot * n / peak
        rects.append(
            Rect(
                round(x, 1),
                round(HEIGHT - BOTTOM - h, 1),
                round(slot * 0.8, 1),
                round(h, 1),
                "#1565c0",
                f"{hour:02d}:00 UTC: {n:,}",
            )
        )
        if hour % 3 == 0:
            labels.append(Label(round(x, 1), HEIGHT - BOTTOM + 15, f"{hour:02d}h"))
    return Chart(WIDTH, HEIGHT, rects, labels, peak)
