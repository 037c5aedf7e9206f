"""Money in the panel: the price history (add a later price, past rows unchanged), role and
budget policies with clear messages, costs in the CSV export, the request page and the user page."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import VideoRequestFactory
from tracking.models import QuotaPolicy, VeoPrice

pytestmark = pytest.mark.django_db

PRICES = "/admin/tracking/veoprice/"
POLICIES = "/admin/tracking/quotapolicy/add/"
LIST = "/admin/tracking/videorequest/"
VEO = "veo-3.1-generate-001"


@pytest.fixture
def operator(as_role):
    return as_role("superuser")  # prices and policies are the operator's


def _price(**fields) -> dict:
    return {
        "model": VEO,
        "resolution": "720p",
        "generate_audio": "on",
        "usd_per_second": "0.45",
        "effective_from": "",
        "source": "Vertex AI pricing page, read today",
        **fields,
    }


def test_a_later_price_is_added_and_past_prices_stay_as_they_were(operator):
    before = list(VeoPrice.objects.order_by("id").values_list("id", "usd_per_second", "effective_from"))
    later = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    response = operator.post(f"{PRICES}add/", _price(effective_from=later))
    assert response.status_code == 302
    added = VeoPrice.objects.latest("id")
    assert (added.usd_per_second, added.created_by) == (Decimal("0.45"), "boss")
    assert (
        list(
            VeoPrice.objects.filter(id__lte=before[-1][0])
            .order_by("id")
            .values_list("id", "usd_per_second", "effective_from")
        )
        == before
    )
    # A past row opens read-only: no form to change it, and no delete.
    seeded = VeoPrice.objects.get(model=VEO, resolution="720p", generate_audio=True, id__lte=before[-1][0])
    page = operator.get(f"{PRICES}{seeded.id}/change/").content.decode()
    assert 'name="usd_per_second"' not in page and "/delete/" not in page
    assert operator.post(f"{PRICES}{seeded.id}/delete/", {"post": "yes"}).status_code == 403
    assert VeoPrice.objects.filter(id=seeded.id).exists()
    # The one not yet in effect may be withdrawn.
    assert operator.post(f"{PRICES}{added.id}/delete/", {"post": "yes"}).status_code == 302


def test_a_price_in_the_past_or_out_of_range_gets_a_clear_message(operator):
    count = VeoPrice.objects.count()
    response = operator.post(f"{PRICES}add/", _price(effective_from="2020-01-01 00:00"))
    assert "Prices are history: a new price starts now or later" in response.content.decode()
    response = operator.post(f"{PRICES}add/", _price(usd_per_second="-1"))
    assert "between 0 and 100 US dollars per second" in response.content.decode()
    assert VeoPrice.objects.count() == count
    # Empty: from now.
    assert operator.post(f"{PRICES}add/", _price()).status_code == 302
    assert VeoPrice.objects.latest("id").effective_from <= timezone.now()


def _policy(**fields) -> dict:
    return {"quota_limit": 3, "quota_window": "24h", "priority": 0, "note": "", **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"role_id": 501}, "A role policy needs the guild the role belongs to."),
        ({"guild_id": 1, "user_id": 2, "role_id": 501}, "leave the user empty"),
        ({"guild_id": 1, "role_id": -4}, "The role id must be a Discord id"),
        ({"guild_id": 1, "role_label": "Mods"}, "A role label needs a role id."),
        ({"user_id": 2, "budget_usd": "10"}, "A budget needs both an amount and a window"),
        ({"user_id": 2, "budget_usd": "-1", "budget_window": "24h"}, "between 0 and 1000000 US dollars"),
        ({"user_id": 2, "guild_budget_usd": "5", "guild_budget_window": "24h"}, "belongs on the guild"),
    ],
)
def test_role_and_budget_policies_are_validated_with_clear_messages(operator, fields, message):
    response = operator.post(POLICIES, _policy(**fields))
    assert response.status_code == 200 and message in response.content.decode()
    assert not QuotaPolicy.objects.exists()


def test_a_role_policy_with_a_budget_is_saved_and_listed(operator):
    fields = {"guild_id": 1, "role_id": 501, "role_label": "Patron", "budget_usd": "12.50", "budget_window": "7d"}
    assert operator.post(POLICIES, _policy(**fields)).status_code == 302
    policy = QuotaPolicy.objects.get()
    assert (policy.role_id, policy.budget_usd, policy.budget_window) == (501, Decimal("12.50"), timedelta(days=7))
    listing = operator.get("/admin/tracking/quotapolicy/").content.decode()
    assert "Patron (501)" in listing and "$12.50 per 7d" in listing


def test_costs_in_the_export_the_request_page_and_the_user_page(as_role):
    mod = as_role("moderator")
    row = VideoRequestFactory(user_id=31338, cost_estimated_usd=Decimal("3.2"), cost_final_usd=Decimal("3.2"))
    VideoRequestFactory(user_id=31338, status="failed", cost_estimated_usd=Decimal("1.6"), cost_final_usd=0)
    rows = list(csv.DictReader(io.StringIO(b"".join(mod.get(f"{LIST}export/").streaming_content).decode())))
    assert {(r["id"], r["cost_estimated_usd"], r["cost_final_usd"]) for r in rows} >= {
        (str(row.id), "3.2000", "3.2000")
    }
    page = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert "Priority and cost" in page and "3.2000" in page
    user = mod.get(f"{LIST}user/31338/").content.decode()
    assert "$3.20" in user and "spend (estimated)" in user  # the refunded failure does not count
