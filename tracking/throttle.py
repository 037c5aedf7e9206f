"""Admin sign-in throttle: too many failures for a user name, or from one address, within
ADMIN_LOGIN_LOCKOUT and further attempts are refused until the window has passed.

The counting lives in PostgreSQL (login_attempt() in 0007_login_throttle.sql) so it holds
across every web process. An attempt is recorded before the password is checked and cleared
when it succeeds, so guesses sent in parallel cannot slip past the limit. The refusal is the
same whether or not the user name exists.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils.crypto import salted_hmac


def username_key(username: str) -> str:
    """A keyed hash of the name typed: people type passwords into the user name field, so the
    name itself is never stored. Case-insensitive, like an attacker's variations would be."""
    return salted_hmac("veobot.login-throttle", username.strip().casefold(), algorithm="sha256").hexdigest()


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the header a trusted proxy sets
    (ADMIN_LOGIN_IP_HEADER; of X-Forwarded-For, the last entry, the one the proxy added)."""
    address = ""
    if settings.ADMIN_LOGIN_IP_HEADER:
        address = request.META.get(settings.ADMIN_LOGIN_IP_HEADER, "").split(",")[-1].strip()
    return (address or request.META.get("REMOTE_ADDR") or "unknown")[:64]


def attempt(*, username: str, client_ip: str) -> timedelta | None:
    """Record a sign-in attempt; None to go ahead, or how long to wait when refused."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT login_attempt(%s, %s, %s, %s, %s)",
            [
                username_key(username),
                client_ip,
                settings.ADMIN_LOGIN_LOCKOUT,
                settings.ADMIN_LOGIN_MAX_FAILURES,
                settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP,
            ],
        )
        return cursor.fetchone()[0]


def succeeded(*, username: str) -> None:
    """The password was right: that user name's failures are forgotten."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT login_succeeded(%s)", [username_key(username)])


def wait_text(wait: timedelta) -> str:
    minutes = -(-int(wait.total_seconds()) // 60)  # rounded up: never "0 minutes"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
