"""A storm of admissions from several processes against one guild's budget never spends past it,
and fills it exactly (the small version of bench/budget_storm.py)."""

from decimal import Decimal

import pytest
from psycopg.conninfo import make_conninfo

from bench.budget_storm import storm
from tests.concurrency import conninfo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]


@pytest.mark.parametrize("run", range(2))
def test_concurrent_admissions_never_spend_past_a_guild_budget(db_settings, run):
    info = make_conninfo("", **{k: v for k, v in conninfo(db_settings).items() if v is not None})
    result = storm(info, guild_id=770_000 + run, budget=Decimal("8.00"), processes=2, threads=4, per_connection=2)
    assert result.attempts == 16
    assert result.spend <= result.budget
    # $8.00 fits five $1.60 videos: exactly five, refused by the guild budget after that.
    assert (result.admitted, result.refused_by_budget, result.spend) == (5, 11, Decimal("8.00"))
