"""The admin sign-in throttle, through the real login page and PostgreSQL."""

import re

import pytest
from django.db import connection
from django.test import Client

from tracking import throttle
from tracking.models import LoginFailure

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

LOGIN = "/admin/login/"
REFUSED = "Too many failed sign-in attempts. Try again in"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP = 5


def sign_in(username: str, password: str, ip: str = "203.0.113.7") -> tuple[bool, str]:
    """(signed in?, page text) for one attempt from a fresh browser at ip."""
    client = Client(REMOTE_ADDR=ip)
    response = client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})
    signed_in = response.status_code == 302 and client.get("/admin/").status_code == 200
    return signed_in, response.content.decode()


def let_the_window_pass(window) -> None:
    """Age the recorded failures instead of sleeping through the window."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE login_failures SET at = at - %s", [window])


def test_brute_force_is_refused_even_with_the_right_password_until_the_window_passes(accounts, settings):
    for _ in range(3):
        signed_in, page = sign_in("boss", "guess")
        assert not signed_in and REFUSED not in page
    signed_in, page = sign_in("boss", "boss-pass-123")
    assert not signed_in and REFUSED in page and "Try again in 15 minutes" in page

    let_the_window_pass(settings.ADMIN_LOGIN_LOCKOUT)
    assert sign_in("boss", "boss-pass-123")[0]
    assert not LoginFailure.objects.exists()  # success forgets that name's failures


def test_refused_attempts_do_not_extend_the_lock(accounts):
    for _ in range(3):
        sign_in("boss", "guess")
    for _ in range(5):
        assert REFUSED in sign_in("boss", "guess")[1]
    assert LoginFailure.objects.count() == 3


def test_success_resets_the_count(accounts):
    for _ in range(2):
        assert not sign_in("boss", "guess")[0]
    assert sign_in("boss", "boss-pass-123")[0]
    for _ in range(2):
        assert REFUSED not in sign_in("boss", "guess")[1]
    assert sign_in("boss", "boss-pass-123")[0]


def test_other_users_are_unaffected(accounts):
    accounts["moderator"].set_password("mod-pass-123")
    accounts["moderator"].save()
    for _ in range(4):
        sign_in("boss", "guess", ip="198.51.100.1")
    assert REFUSED in sign_in("boss", "boss-pass-123", ip="198.51.100.1")[1]
    assert sign_in("mod", "mod-pass-123", ip="198.51.100.1")[0]  # same address, under its own limit
    assert sign_in("mod", "mod-pass-123", ip="198.51.100.2")[0]


def test_one_address_trying_many_names_is_refused_then_others_are_not(accounts):
    for name in ("a1", "a2", "a3", "a4", "a5"):
        assert REFUSED not in sign_in(name, "guess", ip="192.0.2.66")[1]
    assert REFUSED in sign_in("boss", "boss-pass-123", ip="192.0.2.66")[1]
    assert sign_in("boss", "boss-pass-123", ip="192.0.2.67")[0]


def normalised(page: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page).replace("no-such-user", "boss")


def test_the_refusal_does_not_reveal_whether_the_name_exists(accounts):
    pages = {}
    for name, ip in (("boss", "192.0.2.1"), ("no-such-user", "192.0.2.2")):
        for _ in range(3):
            first = sign_in(name, "guess", ip=ip)[1]
        pages[name] = (normalised(first), normalised(sign_in(name, "guess", ip=ip)[1]))
    assert pages["boss"] == pages["no-such-user"]
    assert REFUSED in pages["boss"][1] and "Please enter the correct username and password" in pages["boss"][0]


def test_names_are_stored_as_keyed_hashes_case_insensitively(accounts):
    sign_in("Boss", "guess")
    sign_in(" boss ", "guess")
    keys = set(LoginFailure.objects.values_list("username_key", flat=True))
    assert keys == {throttle.username_key("boss")} and "boss" not in next(iter(keys))


def test_the_proxy_header_names_the_client(accounts, settings):
    settings.ADMIN_LOGIN_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    client.post(LOGIN, {"username": "boss", "password": "guess"})
    assert list(LoginFailure.objects.values_list("client_ip", flat=True)) == ["203.0.113.9"]


@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_cannot_slip_past_the_limit(db_settings):
    """20 attempts for one name at the same instant, each on its own connection: exactly the
    limit gets through to the password check."""
    import threading

    import psycopg

    from tests.concurrency import conninfo

    connections = [psycopg.connect(**conninfo(db_settings), autocommit=True) for _ in range(20)]
    together, allowed = threading.Barrier(len(connections)), []

    def guess(connection, n):
        together.wait()
        wait = connection.execute(
            "SELECT login_attempt(%s, %s, interval '15 minutes', 3, 1000)",
            [throttle.username_key("boss"), f"198.51.100.{n}"],
        ).fetchone()[0]
        allowed.append(wait is None)

    threads = [threading.Thread(target=guess, args=(c, n)) for n, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in connections:
        each.close()
    assert (allowed.count(True), allowed.count(False)) == (3, 17)
