"""Reading settings from the environment with errors that name the variable.

Every failure raises ``ConfigError`` whose message is one line starting with the
variable's name; ``manage.py`` prints that line and exits instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

import environ


class ConfigError(Exception):
    """A setting is missing or wrong. The message names the variable."""


env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def is_set(name: str) -> bool:
    return name in env.ENVIRON


def get_str(name: str, default: str | None = None) -> str:
    value = env.ENVIRON.get(name, default)
    if value is None:
        raise ConfigError(f"{name} is required but not set (see .env.example)")
    return value


def get_bool(name: str, default: bool) -> bool:
    if not is_set(name):
        return default
    raw = env.ENVIRON[name].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (got {env.ENVIRON[name]!r})")


def get_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    if not is_set(name):
        return default
    raw = env.ENVIRON[name].strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number between {minimum} and {maximum} (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def get_money(name: str, *, maximum: Decimal) -> Decimal | None:
    """An amount of US dollars with at most 2 decimals ('50', '12.5'); None when unset or empty."""
    raw = env.ENVIRON.get(name, "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be an amount of US dollars such as 50 or 12.50 (got {raw!r})") from None
    if not value.is_finite() or not 0 <= value <= maximum or value != round(value, 2):
        raise ConfigError(f"{name} must be between 0 and {maximum} US dollars, in cents at most (got {raw!r})")
    return value


def get_list(name: str, default: list[str]) -> list[str]:
    if not is_set(name):
        return default
    return [item.strip() for item in env.ENVIRON[name].split(",") if item.strip()]


def get_int_set(name: str) -> frozenset[int]:
    ids = set()
    for item in get_list(name, []):
        if not item.isdigit():
            raise ConfigError(f"{name} must be a comma-separated list of numeric ids (got {item!r})")
        ids.add(int(item))
    return frozenset(ids)


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """'500ms', '90s', '15m', '24h', '7d' -> timedelta. Raises ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(text)
    amount, unit = match.groups()
    return timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])


def get_duration(name: str, default: str, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    raw = env.ENVIRON.get(name, default)
    try:
        value = parse_duration(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a duration like 500ms, 90s, 15m, 24h or 7d (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {raw!r})")
    return value


_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def _meta_key(header: str) -> str:
    """How Django's request.META names an HTTP header: X-Real-IP -> HTTP_X_REAL_IP."""
    return "HTTP_" + header.upper().replace("-", "_")


def get_header_name(name: str) -> str:
    """An HTTP header name ('X-Real-IP') as its request.META key; '' when unset."""
    raw = env.ENVIRON.get(name, "").strip()
    if raw and not _HEADER_NAME.match(raw):
        raise ConfigError(f"{name} must be an HTTP header name like X-Real-IP (got {raw!r})")
    return _meta_key(raw) if raw else ""


def get_proxy_header(name: str) -> tuple[str, str] | None:
    """'X-Forwarded-Proto: https' -> ('HTTP_X_FORWARDED_PROTO', 'https'), the form of
    Django's SECURE_PROXY_SSL_HEADER; None when unset."""
    raw = env.ENVIRON.get(name, "").strip()
    if not raw:
        return None
    header, _, value = (part.strip() for part in raw.partition(":"))
    if not value or not _HEADER_NAME.match(header):
        raise ConfigError(f"{name} must look like 'X-Forwarded-Proto: https' (got {raw!r})")
    return _meta_key(header), value


def get_ip_address(name: str, default: str) -> str:
    """An IPv4 or IPv6 address to listen on ('127.0.0.1', '::1', '0.0.0.0')."""
    raw = env.ENVIRON.get(name, default).strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(f"{name} must be an IP address like 127.0.0.1 or 0.0.0.0 (got {raw!r})") from None


def get_ip_networks(name: str, default: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or networks ('127.0.0.1, 10.0.0.0/8, ::1')."""
    networks = []
    for item in get_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or networks like 10.0.0.0/8 (got {item!r})") from None
    return tuple(networks)


MAX_SHARDS = 65536  # far beyond any bot's needs; a typo such as 40000000 is refused


def parse_shard_ids(name: str, raw: str, *, count: int) -> tuple[int, ...]:
    """'0-3' or '4,5' or '0-1,6' -> the shard ids, in order. Each below ``count``, none twice."""
    ids: list[int] = []
    for item in (part.strip() for part in raw.split(",")):
        first, dash, last = (piece.strip() for piece in item.partition("-"))
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ConfigError(f"{name} must list shard ids or ranges like 0-3 or 4,5 (got {item!r} in {raw!r})")
        low, high = int(first), int(last) if dash else int(first)
        if low > high:
            raise ConfigError(f"{name}: the range {item!r} runs backwards (write {high}-{low})")
        if high >= count:
            raise ConfigError(
                f"{name}: shard {high} does not exist with DISCORD_SHARD_COUNT {count} (ids run from 0 to {count - 1})"
            )
        for shard in range(low, high + 1):
            if shard in ids:
                raise ConfigError(f"{name} lists shard {shard} twice (in {raw!r})")
            ids.append(shard)
    return tuple(ids)


def get_shards(count_name: str, ids_name: str) -> tuple[int | str | None, tuple[int, ...] | None]:
    """The shard count (a number, 'auto' for Discord's recommendation, or None: no sharding) and the
    shards this process runs (None: all of them)."""
    raw_count = env.ENVIRON.get(count_name, "").strip().lower()
    raw_ids = env.ENVIRON.get(ids_name, "").strip()
    if not raw_count:
        if raw_ids:
            raise ConfigError(f"{ids_name} needs {count_name}: every process must be told the total number of shards")
        return None, None
    if raw_count == "auto":
        if raw_ids:
            raise ConfigError(
                f"{ids_name} needs a numeric {count_name}, not auto: processes that split the shards "
                "must agree on their number, and Discord's recommendation can change between starts"
            )
        return "auto", None
    if not raw_count.isdigit() or not 1 <= int(raw_count) <= MAX_SHARDS:
        raise ConfigError(f"{count_name} must be auto or a whole number between 1 and {MAX_SHARDS} (got {raw_count!r})")
    count = int(raw_count)
    return count, parse_shard_ids(ids_name, raw_ids, count=count) if raw_ids else None
