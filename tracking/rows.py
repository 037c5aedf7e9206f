"""Whole video_requests rows (``SELECT *`` / ``RETURNING *``) as model instances, cheaply.

The worker turns a few rows into models on every request. ``Manager.raw()`` works out, on
each call, which model field every column feeds and which converters apply; here the column
order is worked out once per layout, and each row becomes a model through ``Model.from_db``,
the constructor Django's own querysets use, so instances behave exactly like queried ones.
"""

from __future__ import annotations

from django.db import connection
from django.db.models.sql import Query

from tracking.models import VideoRequest

_FIELDS = VideoRequest._meta.concrete_fields
_NAMES = [field.attname for field in _FIELDS]
_orders: dict[tuple[str, ...], list[int]] = {}


def _order(columns: tuple[str, ...]) -> list[int]:
    """Where each of the model's concrete fields is among ``columns``."""
    position = {name: index for index, name in enumerate(columns)}
    missing = [field.column for field in _FIELDS if field.column not in position]
    if missing:
        raise ValueError(f"not whole video_requests rows: {', '.join(missing)} missing")
    return [position[field.column] for field in _FIELDS]


def _converters():
    """The converters Django would apply to these fields on this connection (none, for
    PostgreSQL and the current fields; kept so a future field type still converts)."""
    compiler = Query(VideoRequest).get_compiler(connection=connection)
    return compiler, compiler.get_converters([field.get_col(VideoRequest._meta.db_table) for field in _FIELDS])


def fetch_requests(sql: str, params) -> list[VideoRequest]:
    """Run one statement that returns whole video_requests rows; those rows as models."""
    global _needs_conversion
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        columns = tuple(column.name for column in cursor.description or ())
    if not rows:
        return []
    order = _orders.get(columns)
    if order is None:
        order = _orders[columns] = _order(columns)
    values = [[row[index] for index in order] for row in rows]
    if _needs_conversion is not False:
        compiler, converters = _converters()
        _needs_conversion = bool(converters)
        if converters:
            values = [list(row) for row in compiler.apply_converters(values, converters)]
    db = connection.alias
    return [VideoRequest.from_db(db, _NAMES, row) for row in values]


_needs_conversion: bool | None = None  # settled by the first call


def fetch_tuples(query: str, params: list | dict) -> list[tuple]:
    """Plain rows of a read-only query, as tuples."""
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()
