"""Doing again what PostgreSQL ended to break a deadlock.

PostgreSQL breaks a deadlock by ending one of its transactions (deadlock_detected), and a
serializable transaction that cannot be ordered ends the same way (serialization_failure). Either
arrives as an OperationalError, like an outage, but the database is there and nothing of that
transaction committed: the same work can simply be done again. Writes that take several rows of
the ledgers in one transaction (a refund or cancellation of several requests, beside admissions
taking the same rows in their own order) meet this under load; they are done again instead of
failing in front of a moderator, or being taken for an outage.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

log = logging.getLogger(__name__)

ROLLED_BACK = {"40P01", "40001"}  # deadlock_detected, serialization_failure
ATTEMPTS = 3  # a deadlock needs two transactions meeting again the same way: twice more is plenty
# Before doing it again, a pause of this many seconds (times the attempt, drawn at random): done
# at once, the write would take its first row back before the other transaction, woken by its
# end, got it, and the two would meet in the same deadlock again.
PAUSE = (0.05, 0.2)

P = ParamSpec("P")
T = TypeVar("T")


def rolled_back(error: BaseException) -> bool:
    """Whether PostgreSQL ended the transaction to break a deadlock (or for a serialization
    failure), as the driver's error or as Django's OperationalError around it."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error.__cause__, "sqlstate", None)
    return sqlstate in ROLLED_BACK


def first_line(error: BaseException) -> str:
    """The error's first line, for a log line (PostgreSQL adds DETAIL and CONTEXT lines)."""
    return (str(error).strip().splitlines() or [""])[0][:200]


def redone_if_rolled_back(write: Callable[P, T]) -> Callable[P, T]:
    """``write`` (a transaction of its own) done again, up to ATTEMPTS times, when PostgreSQL ends
    it to break a deadlock. Inside a caller's transaction nothing can be redone here (the whole
    transaction is lost): the error goes to its owner."""

    @functools.wraps(write)
    def again(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, ATTEMPTS):
            try:
                return write(*args, **kwargs)
            except OperationalError as error:
                if connection.in_atomic_block or not rolled_back(error):
                    raise
                log.info("%s was ended to break a deadlock; doing it again (%s)", write.__name__, first_line(error))
                time.sleep(random.uniform(*PAUSE) * attempt)
        return write(*args, **kwargs)  # the last attempt: whatever it raises is the caller's

    return again
