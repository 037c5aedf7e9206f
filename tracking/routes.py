"""The default database's two routes when DATABASE_URL goes through PgBouncer in transaction
pooling mode (DATABASE_DIRECT_URL set): through PgBouncer, as every query goes, or to the
server itself, for a process that needs one session throughout (Django's migrate, whose data
migrations query the default database inside the schema editor's transaction; the test
database's creation). Without a direct URL both routes are the same and nothing here changes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from tracking.sql_migrations import DIRECT_DB_ALIAS

ROUTE = ("HOST", "PORT", "USER", "PASSWORD", "OPTIONS")  # what differs between the two routes
_configured: dict | None = None  # the default database's route as configured (through PgBouncer)
_direct = False


def take_route(*, direct: bool) -> None:
    """Point the default database at the server itself, or back through PgBouncer. Its open
    connection and pool are closed first, so that nothing goes on using the other route."""
    global _configured, _direct
    if not settings.DATABASE_POOLED or direct == _direct:
        return
    default = connections[DEFAULT_DB_ALIAS]
    if _configured is None:
        _configured = {field: copy.deepcopy(default.settings_dict[field]) for field in ROUTE}
    default.close()
    default.close_pool()
    source = connections[DIRECT_DB_ALIAS].settings_dict if direct else _configured
    default.settings_dict.update({field: copy.deepcopy(source[field]) for field in ROUTE})
    _direct = direct


@contextmanager
def directly() -> Iterator[None]:
    """The default database on the server itself while the block runs, then as it was."""
    before = _direct
    take_route(direct=True)
    try:
        yield
    finally:
        take_route(direct=before)
