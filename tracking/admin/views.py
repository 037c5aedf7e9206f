"""Staff-only views behind the admin: the output stream (with HTTP Range) or a signed
redirect for outputs in Cloud Storage, CSV export, the dashboard and the per-user page.
Each is wrapped by AdminSite.admin_view (login, staff) and checks the model permission itself."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from tracking import gcs
from tracking.admin.query import refuse_nul

log = logging.getLogger("veobot.moderation")

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def stream_file(
    request: HttpRequest, path: Path, *, download_name: str, content_type: str = "video/mp4"
) -> HttpResponse:
    """Serve a local file (a video, an input frame) to a staff member, honouring a single byte
    range (what <video> asks for when seeking). Malformed or multi-range headers get the whole
    file (RFC 9110)."""
    size = path.stat().st_size
    start, end, status = 0, size - 1, 200
    match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:
            start = max(size - int(match[2]), 0) if int(match[2]) else size
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    handle = path.open("rb")
    handle.seek(start)
    response = StreamingHttpResponse(_read(handle, end - start + 1), status=status, content_type=content_type)
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    # The name is ours (request id), never the stored path: nothing user-controlled in a header.
    response["Content-Disposition"] = f'inline; filename="{download_name}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"  # served as what it is, never guessed at
    return response


# Moderators get a fresh link each time the player loads; a copied one soon stops working.
ADMIN_LINK_TTL = timedelta(minutes=15)


def signed_redirect(uri: str) -> HttpResponse:
    """Send the player to a short-lived V4 signed URL of a gs:// output, or say plainly why
    it cannot be viewed (never a traceback, never credentials)."""
    signed = gcs.signed_link(uri, ttl=ADMIN_LINK_TTL)
    if signed.url is None:
        log.warning("GCS output not viewable in the admin: %s", signed.problem)
        response = HttpResponse(
            f"Not viewable: {signed.problem}.\n", status=503, content_type="text/plain; charset=utf-8"
        )
    else:
        response = HttpResponseRedirect(signed.url)
        response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response


def _read(handle, remaining: int) -> Iterator[bytes]:
    try:
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


EXPORT_COLUMNS = [
    "id",
    "created_at",
    "status",
    "review_status",
    "user_id",
    "guild_id",
    "channel_id",
    "source",
    "prompt",
    "negative_prompt",
    "duration_seconds",
    "aspect_ratio",
    "resolution",
    "generate_audio",
    "model",
    "duration_ms",
    "safety_filtered_count",
    "error_code",
    "error_message",
    "delivered_at",
    "reviewed_by",
    "reviewed_at",
    "review_note",
    "counts_toward_quota",
    "cost_estimated_usd",
    "cost_final_usd",
    "priority",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value) -> object:
    if isinstance(value, (dict, list)):  # a JSON column (the audit log's before/after)
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    # A spreadsheet would run "=HYPERLINK(...)" typed into a prompt: neutralise formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(
    queryset, *, filename: str, user: str, columns: list[str] = EXPORT_COLUMNS, what: str = "video requests"
) -> StreamingHttpResponse:
    """The rows of `queryset` (the current filtered list), streamed: memory stays flat
    however many rows match (server-side cursor, chunks of 2000).

    The cursor lives in a transaction, for as long as the download: outside one Django would
    declare it holdable, to outlive the transaction -- and through a transaction-pooling
    PgBouncer the next FETCH runs on another server connection, where no such cursor exists."""
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(columns)
        with transaction.atomic():
            for row in queryset.values_list(*columns).iterator(chunk_size=2000):
                yield writer.writerow([_cell(value) for value in row])

    log.info("CSV export of %s by %s", what, user)
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def export_list(model_admin, request, *, name: str, columns: list[str] = EXPORT_COLUMNS, what: str = "video requests"):
    """The CSV of a list as filtered in the address (``name``-YYYYmmdd-HHMMSS.csv), or back to
    the list with a message when a filter is not valid."""
    opts = model_admin.opts
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    refused = refuse_nul(request, to=changelist)
    if refused:
        return refused
    try:
        cl = model_admin.get_changelist_instance(request)
    except IncorrectLookupParameters:
        model_admin.message_user(request, "Nothing exported: a filter in the address is not valid.", messages.ERROR)
        return HttpResponseRedirect(changelist)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return export_csv(
        cl.get_queryset(request),
        filename=f"{name}-{stamp}.csv",
        user=request.user.get_username(),
        columns=columns,
        what=what,
    )


def page_link(view: str, object_id: int | None, text: object = None):
    """A link to an object's page in the panel (its id as the text unless given); "" without an id."""
    if object_id is None:
        return ""
    return format_html('<a href="{}">{}</a>', reverse(view, args=[object_id]), object_id if text is None else text)


def not_found() -> Http404:
    return Http404("not found")
