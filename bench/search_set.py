"""The panel's search benchmark: at least twenty searches in six classes, p50 and p99 per class.

Run by bench/admin_pages.py (``--only search``). Each search is a list address; the class is
what decides how hard it is for PostgreSQL: absent words (no row matches), rare words (a few
hundred to a few thousand rows), common words (a sixteenth of the rows and more), phrases
(including two common words that occur together but never side by side), negations, and any
of these with filters, a date range or another order, and a common word the filters leave few
or none of (sparse). A search stopped by the 5 s guard
answers with a redirect (HTTP 302) and is counted as stopped.

The baseline is Django's default admin with ``search_fields = ["prompt"]`` (``icontains``),
over the same table in the same run, on one search of each class it can express (it has no
phrases or negations: it looks for the whole string).
"""

from __future__ import annotations

import json
import math
import statistics
from urllib.parse import urlencode

LIST = "/admin/tracking/videorequest/"
BASELINE = "/baseline-search/tracking/videorequest/"

# (class, search, extra parameters); the data is bench/admin_pages.py's LOAD_SQL.
SEARCHES = [
    ("absent", "zyzzyva", {}),
    ("absent", "qwertyuiop", {}),
    ("absent", "lighthouse zyzzyva", {}),  # a common word beside an absent one
    ("absent", "kraken zyzzyva", {}),
    ("rare", "kraken", {}),  # one row in 20,000
    ("rare", "lighthouse kraken", {}),  # a common word beside a rare one
    ("rare", "uv29000", {}),  # the long tail of the vocabulary
    ("rare", "kraken or zyzzyva", {}),
    ("common", "lighthouse", {}),
    ("common", "fox", {}),
    ("common", "forest shot", {}),
    ("common", "lighthouse or samurai", {}),
    ("phrase", '"red fox"', {}),
    ("phrase", '"slow dolly-in shot"', {}),
    ("phrase", '"kraken rising"', {}),
    ("phrase", '"forest fox"', {}),  # both words in 1 row in 160, never side by side
    ("negation", "fox -kraken", {}),
    ("negation", "-fox", {}),
    ("negation", "kraken -sea", {}),
    ("negation", "lighthouse -forest -shot", {}),
    ("filtered", "kraken", {"status__exact": "failed"}),
    ("filtered", "lighthouse", {"resolution__exact": "1080p", "status__exact": "failed"}),
    ("filtered", "zyzzyva", {"status__exact": "completed"}),
    ("filtered", '"red fox"', {"status__exact": "failed"}),
    ("filtered", "kraken", {"created_from": "2026-10-01", "created_to": "2026-10-15"}),
    ("filtered", "lighthouse", {"created_from": "2026-10-01", "created_to": "2026-10-15"}),
    ("filtered", "kraken", {"o": "1"}),  # oldest first
    ("filtered", "lighthouse", {"o": "1"}),
    ("filtered", "zyzzyva", {"o": "1"}),
    ("filtered", "lighthouse", {"p": "3"}),
    ("filtered", "kraken", {"p": "3"}),  # the third page
    # A common word the filters leave few or none of, one filter of the list each beside
    # 1080p (none of "lighthouse"'s or "fox"'s prompts is 1080p in this data), and a few rows.
    ("sparse", "lighthouse", {"resolution__exact": "1080p"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "status__exact": "completed"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "review_status__exact": "flagged"}),
    ("sparse", "fox -kraken", {"resolution__exact": "1080p", "aspect_ratio__exact": "9:16"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "duration_seconds__exact": "6"}),
    ("sparse", '"red fox"', {"resolution__exact": "1080p", "delivered": "yes"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "safety": "no"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "guild": "1"}),
    ("sparse", "lighthouse", {"resolution__exact": "1080p", "created_from": "2026-10-01", "created_to": "2026-10-15"}),
    # about 900 rows of 626,000: timeout, 9:16 and 8 s
    (
        "sparse",
        "lighthouse",
        {"status__exact": "timeout", "aspect_ratio__exact": "9:16", "duration_seconds__exact": "8"},
    ),
]

# One search per class the default admin can express, for the baseline.
BASELINE_SEARCHES = [
    ("absent", "zyzzyva", {}),
    ("rare", "kraken", {}),
    ("common", "lighthouse", {}),
    ("phrase", "red fox", {}),
    ("filtered", "kraken", {"status__exact": "failed"}),
]


def address(base: str, words: str, extra: dict) -> str:
    return f"{base}?{urlencode({'q': words, **extra})}"


def percentile(times: list[float], share: float) -> float:
    """Nearest-rank percentile: with 20 samples, p99 is the slowest."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure_searches(client, *, repeat: int, baseline_repeat: int, timed, classes: list[str] | None = None) -> dict:
    """Every search ``repeat`` times (after a warm-up) through ``timed(client, url, n)`` (which
    returns the samples or an error), then the figures per class, ours and the baseline's; only
    the searches of ``classes`` when given."""
    rows, per_class, stopped = [], {}, 0
    for kind, words, extra in SEARCHES:
        if classes and kind not in classes:
            continue
        result = timed(client, address(LIST, words, extra), repeat)
        stopped += result.get("status") == 302
        samples = result.pop("samples", [])
        rows.append({"class": kind, "search": words, "parameters": extra, **result, **summary(samples)})
        per_class.setdefault(kind, []).extend(samples)
        print(json.dumps(rows[-1]), flush=True)
    baseline = {}
    for kind, words, extra in BASELINE_SEARCHES:
        if classes and kind not in classes:
            continue
        result = timed(client, address(BASELINE, words, extra), baseline_repeat)
        baseline[kind] = {"search": words, **summary(result.get("samples", [])), "error": result.get("error")}
        print(json.dumps({"baseline": kind, **baseline[kind]}), flush=True)
    return {
        "searches": rows,
        "classes": {kind: summary(samples) | {"baseline": baseline.get(kind)} for kind, samples in per_class.items()},
        "stopped_by_guard": stopped,
    }


def summary(samples: list[float]) -> dict:
    if not samples:
        return {}
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(percentile(samples, 0.99), 1),
        "max_ms": round(max(samples), 1),
    }
