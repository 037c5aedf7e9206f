"""Prices and costs: every request's estimated cost from the price in effect at its creation,
its final cost when it ends (refunds give it back), and prices kept as dated history."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from generation import labels
from tests.helpers import admit, next_interaction
from tracking import services
from tracking.models import VeoPrice, VideoRequest

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

VEO = "veo-3.1-generate-001"
FAST = "veo-3.1-fast-generate-001"
# The public Vertex AI prices the migration seeds (USD per second): model, resolution, audio.
SEEDED = [
    (VEO, "720p", True, "0.40"),
    (VEO, "720p", False, "0.20"),
    (VEO, "1080p", True, "0.40"),
    (VEO, "1080p", False, "0.20"),
    (FAST, "720p", True, "0.10"),
    (FAST, "720p", False, "0.08"),
    (FAST, "1080p", True, "0.12"),
    (FAST, "1080p", False, "0.10"),
]


@pytest.fixture
def priced_models(settings):
    """Requests recorded under the model asked for, as with a real backend (not the offline sample)."""
    settings.VEO_MODELS = (VEO, FAST, "veo-3.0-generate-001", "veo-3.1-preview-unpriced")
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = VEO


@pytest.mark.parametrize(("model", "resolution", "audio", "per_second"), SEEDED)
def test_each_model_resolution_and_audio_records_its_cost(priced_models, model, resolution, audio, per_second):
    answer = admit(user_id=4101, model=model, resolution=resolution, generate_audio=audio, duration_seconds=8)
    expected = Decimal(per_second) * 8
    assert answer.admitted and answer.cost_usd == expected
    row = VideoRequest.objects.get(id=answer.request_id)
    assert row.cost_estimated_usd == expected and row.cost_final_usd is None  # not ended yet
    services.mark_generating(request_id=row.id, operation_name="operations/cost")
    services.mark_completed(request_id=row.id, output_uris=["file:out.mp4"])
    row.refresh_from_db()
    assert row.cost_final_usd == expected


def test_every_known_model_is_priced_or_explicitly_unpriced():
    """The capability table's models: the 3.1 and 3.1 Fast families have prices; the others are
    unpriced on purpose (their cost is unknown, not 0) until an operator adds a price."""
    from tracking import capabilities

    priced = set(VeoPrice.objects.values_list("model", flat=True))
    unpriced = {m for m in capabilities.MODELS if m not in priced}
    assert {m for m in capabilities.MODELS if m.startswith(("veo-3.1-generate", "veo-3.1-fast"))} <= priced
    assert unpriced == {m for m in capabilities.MODELS if "lite" in m or m.startswith("veo-3.0")}
    assert capabilities.SAMPLE_MODEL in priced


def test_a_model_without_a_price_has_an_unknown_cost_not_zero(priced_models):
    answer = admit(user_id=4102, model="veo-3.0-generate-001")
    assert answer.admitted and answer.cost_usd is None
    assert VideoRequest.objects.get(id=answer.request_id).cost_estimated_usd is None


def test_the_offline_sample_costs_nothing():
    answer = admit(user_id=4103)  # the test settings' offline backend records the bundled sample
    assert VideoRequest.objects.get(id=answer.request_id).model == "offline-sample"
    assert answer.cost_usd == 0


def test_a_rejected_request_costs_nothing(priced_models, settings):
    settings.VEO_QUOTA_LIMIT = 0
    answer = admit(user_id=4104)
    row = VideoRequest.objects.get(id=answer.request_id)
    assert not answer.admitted and (row.cost_estimated_usd, row.cost_final_usd) == (0, 0)


def test_refunds_end_at_zero_and_a_later_refund_gives_a_completed_video_back(priced_models):
    failed = admit(user_id=4105).request_id
    services.mark_failed(request_id=failed, error_code="backend_error", error_message="Veo 500", refund=True)
    assert VideoRequest.objects.get(id=failed).cost_final_usd == 0
    done = admit(user_id=4105).request_id
    services.mark_generating(request_id=done, operation_name="operations/x")
    services.mark_completed(request_id=done, output_uris=["file:out.mp4"])
    assert VideoRequest.objects.get(id=done).cost_final_usd == Decimal("1.60")
    assert services.refund(request_id=done, actor="mod", reason="bad output")
    row = VideoRequest.objects.get(id=done)
    assert (row.cost_estimated_usd, row.cost_final_usd) == (Decimal("1.60"), 0)


def test_costs_are_the_databases_to_write(priced_models):
    row_id = admit(user_id=4106).request_id
    with pytest.raises(IntegrityError, match="read-only"), transaction.atomic():
        VideoRequest.objects.filter(id=row_id).update(cost_estimated_usd=0)
    # A caller's final cost is replaced by the derived one.
    services.cancel(request_id=row_id, actor="mod", reason="test")
    VideoRequest.objects.filter(id=row_id).update(cost_final_usd=99)
    assert VideoRequest.objects.get(id=row_id).cost_final_usd == 0


def _replayed(*, created_at, interaction_id: int) -> VideoRequest:
    """A request written by the journal's replay (its own insert path) with its original time."""
    request = {
        "interaction_id": interaction_id,
        "user_id": 4107,
        "guild_id": 2001,
        "channel_id": 3001,
        "prompt": "a red fox in snow",
        "duration_seconds": 4,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "generate_audio": True,
        "person_generation": "allow_adult",
        "model": VEO,
        "status": "pending",
        "created_at": created_at.isoformat(),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id FROM replay_video_request(%s::jsonb, '[]'::jsonb, 'test')", [json.dumps(request)]
        )
        return VideoRequest.objects.get(id=cursor.fetchone()[0])


def _new_price(usd: str, effective_from, *, source: str = "test") -> VeoPrice:
    """A price of Veo 3.1 at 720p with audio, the seeded one's successor (or predecessor)."""
    return VeoPrice.objects.create(
        model=VEO,
        resolution="720p",
        generate_audio=True,
        usd_per_second=Decimal(usd),
        effective_from=effective_from,
        source=source,
    )


def test_a_new_price_applies_from_its_date_only():
    now = timezone.now()
    before = _replayed(created_at=now - timedelta(minutes=5), interaction_id=next_interaction())
    _new_price("0.50", now + timedelta(hours=1))
    just_before = _replayed(created_at=now + timedelta(minutes=59), interaction_id=next_interaction())
    after = _replayed(created_at=now + timedelta(hours=2), interaction_id=next_interaction())
    costs = [VideoRequest.objects.get(id=r.id).cost_estimated_usd for r in (before, just_before, after)]
    assert costs == [Decimal("1.60"), Decimal("1.60"), Decimal("2.00")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT veo_price(%s, '720p', true, %s)", [VEO, now + timedelta(hours=1)])
        assert cursor.fetchone()[0] == Decimal("0.50")


def test_admission_estimates_from_the_latest_price_in_effect_as_the_row_records(priced_models):
    """Admission prices a request itself (its budgets are checked before the row exists): with
    prices before and after the one in effect, its answer and the recorded cost both take that one."""
    now = timezone.now()
    _new_price("0.30", now - timedelta(days=2))
    _new_price("0.35", now - timedelta(hours=1))  # the one in effect
    _new_price("0.90", now + timedelta(hours=1))
    answer = admit(user_id=4311, model=VEO, resolution="720p", generate_audio=True, duration_seconds=8)
    row = VideoRequest.objects.get(id=answer.request_id)
    assert answer.admitted and answer.cost_usd == row.cost_estimated_usd == Decimal("2.80")


def test_prices_are_history_past_rows_cannot_change():
    seeded = VeoPrice.objects.get(model=VEO, resolution="720p", generate_audio=True)
    with pytest.raises(IntegrityError, match="add a new price"), transaction.atomic():
        VeoPrice.objects.filter(id=seeded.id).update(usd_per_second=Decimal("0.01"))
    with pytest.raises(IntegrityError, match="stays as history"), transaction.atomic():
        VeoPrice.objects.filter(id=seeded.id).delete()
    future = _new_price("0.45", timezone.now() + timedelta(days=1), source="announced")
    VeoPrice.objects.filter(id=future.id).delete()  # not yet in effect: may be withdrawn
    assert VeoPrice.objects.get(id=seeded.id).usd_per_second == Decimal("0.40")


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("usd_per_second", Decimal("-0.01"), "veo_prices_usd_per_second_check"),
        ("resolution", "8k", "veo_prices_resolution_check"),
        ("source", "   ", "veo_prices_source_check"),
    ],
)
def test_bad_prices_are_refused_by_the_schema(column, value, constraint):
    fields = {
        "model": VEO,
        "resolution": "720p",
        "generate_audio": True,
        "usd_per_second": Decimal("0.30"),
        "effective_from": timezone.now() + timedelta(days=3),
        "source": "test",
        column: value,
    }
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        VeoPrice.objects.create(**fields)


@pytest.mark.parametrize(
    ("value", "label"),
    [(123456789012345678, "123456789012345678"), ("DM", "dm"), ("Über Guild!", "_ber_guild_"), ("x" * 80, "x" * 63)],
)
def test_label_values_meet_vertex_rules(value, label):
    assert labels.label_value(value) == label
