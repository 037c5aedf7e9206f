"""Re-roll, Edit and Extend end to end: a result delivered by one bot process, the click answered
by another (the buttons outlive the process that drew them), the child run by the real worker
through google-genai against the Veo fake, and delivered in the click's own reply."""

import base64
from pathlib import Path

import pytest

from generation.storage import LocalStorage
from tests.bot_harness import delivered, eventually, run_bot, run_to_delivery
from tests.bot_harness import veo_command as veo
from tests.factories import VideoRequestFactory
from tests.fakes import discord_server as fake
from tests.fakes import veo_server
from tests.fakes.interactions import USER_ID, button_click, deliver_and_wait, modal_submit, user
from tracking import services
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

OTHER_USER_ID = USER_ID + 1
VEO_3_0 = "veo-3.0-generate-001"  # a model without extension


def _buttons(message: dict) -> list[tuple[str, str]]:
    return [(b["label"], b["custom_id"]) for row in message.get("components", []) for b in row["components"]]


def _click_and_run(server, message: dict, custom_id: str, **kwargs) -> tuple[dict, dict]:
    """Click in a fresh bot and let its worker run what the click made; returns the click and
    its first answer (the final one is ``server.original_response(click["id"])``)."""
    click = button_click(message, custom_id, **kwargs)

    async def scenario(bot):
        await deliver_and_wait(bot, click, server=server)
        first = server.original_response(click["id"])
        if not first["flags"] & fake.EPHEMERAL:
            await eventually(delivered(int(click["id"])), what="the child's delivery")
        return first

    return click, run_bot(scenario)


def _private(server, message: dict, custom_id: str, **kwargs) -> str:
    click = button_click(message, custom_id, **kwargs)
    run_bot(lambda bot: deliver_and_wait(bot, click, server=server), run_worker=False)
    answer = server.original_response(click["id"])
    assert answer["flags"] & fake.EPHEMERAL
    return answer["content"]


def test_a_result_offers_reroll_edit_extend_delete_and_report(server):
    payload = veo()
    key = payload["id"]
    assert _buttons(run_to_delivery(server, payload)) == [
        ("Re-roll", f"veo:reroll:{key}"),
        ("Edit", f"veo:edit:{key}"),
        ("Extend", f"veo:extend:{key}"),
        ("Delete", f"veo:delete:{key}"),
        ("Report", f"veo:report:{key}"),
    ]


def test_extend_is_hidden_on_a_model_that_does_not_extend(server, settings):
    settings.VEO_MODEL, settings.VEO_MODELS = VEO_3_0, (VEO_3_0,)
    labels = [label for label, _ in _buttons(run_to_delivery(server, veo()))]
    assert labels == ["Re-roll", "Edit", "Delete", "Report"]


def test_a_failure_offers_to_try_again_and_nothing_else(server, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("error_operation")
    payload = veo()
    final = run_to_delivery(server, payload)
    assert final["embeds"][0]["title"] == "Generation failed"
    assert [label for label, _ in _buttons(final)] == ["Re-roll", "Edit"]


def test_reroll_from_another_process_makes_a_child_with_a_new_seed_delivered_in_its_own_reply(server, veo_fake):
    payload = veo(opts={"length": 6, "ratio": "9:16", "audio": False, "negative_prompt": "rain"})
    result = run_to_delivery(server, payload)
    parent = VideoRequest.objects.get(interaction_id=payload["id"])

    click, first = _click_and_run(server, result, f"veo:reroll:{payload['id']}")

    assert first["embeds"][0]["title"] == "Queued" and not first["flags"] & fake.EPHEMERAL
    assert first["embeds"][0]["footer"]["text"].endswith(f"re-roll of #{parent.id}")
    child = VideoRequest.objects.get(interaction_id=click["id"])
    assert (child.parent_id, child.derived_as, child.user_id, child.status) == (
        parent.id,
        "reroll",
        USER_ID,
        "completed",
    )
    same = ("prompt", "negative_prompt", "duration_seconds", "aspect_ratio", "resolution", "generate_audio", "model")
    assert {f: getattr(child, f) for f in same} == {f: getattr(parent, f) for f in same}
    assert child.seed is not None and child.seed != parent.seed
    create = veo_fake.creates()[-1]
    assert create.parameters["seed"] == child.seed
    final = server.original_response(click["id"])
    assert final["embeds"][0]["title"] == "Your video is ready" and final["id"] == first["id"]  # edited in place
    assert server.message(result["id"]) is not None  # the parent's message stays as it was


def test_reroll_by_someone_else_is_theirs_and_counts_against_their_quota(server):
    payload = veo()
    result = run_to_delivery(server, payload)
    click, _ = _click_and_run(server, result, f"veo:reroll:{payload['id']}", author=user(OTHER_USER_ID, username="bo"))
    child = VideoRequest.objects.get(interaction_id=click["id"])
    assert (child.user_id, child.counts_toward_quota) == (OTHER_USER_ID, True)
    assert VideoRequest.objects.filter(user_id=USER_ID, counts_toward_quota=True).count() == 1


def test_reroll_over_quota_is_refused_privately_and_charges_nothing(server, settings):
    payload = veo()
    result = run_to_delivery(server, payload)
    settings.VEO_QUOTA_LIMIT = 1  # the parent used the only slot

    answer = _private(server, result, f"veo:reroll:{payload['id']}")

    assert answer.startswith("You have used all 1 of your videos for now. Next slot in ")
    assert answer.endswith("Nothing was charged.")
    refused = VideoRequest.objects.exclude(interaction_id=payload["id"]).get()
    assert (refused.status, refused.counts_toward_quota, refused.derived_as) == ("rejected", False, "reroll")


def test_a_double_click_on_reroll_makes_one_request(server):
    payload = veo()
    result = run_to_delivery(server, payload)
    first = button_click(result, f"veo:reroll:{payload['id']}")
    second = button_click(result, f"veo:reroll:{payload['id']}")

    async def scenario(bot):
        await deliver_and_wait(bot, first, server=server)
        await deliver_and_wait(bot, second, server=server)

    run_bot(scenario, run_worker=False)

    [child] = VideoRequest.objects.filter(parent__interaction_id=payload["id"])
    assert child.interaction_id == int(first["id"])
    again = server.original_response(second["id"])
    assert again["flags"] & fake.EPHEMERAL
    assert again["content"] == f"Already on it: request #{child.id} is pending. Nothing more was charged."


def test_edit_opens_a_prefilled_modal_and_makes_a_child_with_the_new_text_and_the_same_seed(server, veo_fake):
    payload = veo(opts={"negative_prompt": "rain"})
    result = run_to_delivery(server, payload)
    parent = VideoRequest.objects.get(interaction_id=payload["id"])
    click = button_click(result, f"veo:edit:{payload['id']}")
    run_bot(lambda bot: deliver_and_wait(bot, click, server=server), run_worker=False)
    modal = server.interaction(click["id"]).modal
    inputs = [row["components"][0] for row in modal["components"]]
    values = {inputs[0]["custom_id"]: "a blue fox in  deep snow", inputs[1]["custom_id"]: ""}
    submitted = modal_submit(click, modal, values)

    async def scenario(bot):  # another process: the form outlives the one that opened it
        await deliver_and_wait(bot, submitted, server=server)
        await eventually(delivered(int(submitted["id"])), what="the edit's delivery")

    run_bot(scenario)

    assert modal["title"] == "Edit and generate"
    assert [(i["label"], i.get("value")) for i in inputs] == [("Prompt", parent.prompt), ("Avoid (optional)", "rain")]
    child = VideoRequest.objects.get(interaction_id=submitted["id"])
    assert (child.parent_id, child.derived_as, child.prompt, child.negative_prompt) == (
        parent.id,
        "edit",
        "a blue fox in deep snow",
        None,
    )
    assert child.seed == parent.seed and child.status == "completed"
    assert veo_fake.creates()[-1].prompt == "a blue fox in deep snow"


def test_extend_sends_the_parents_video_to_veo_and_links_the_child(server, veo_fake, settings):
    payload = veo(opts={"hd": True, "length": 4})
    result = run_to_delivery(server, payload)
    parent = VideoRequest.objects.get(interaction_id=payload["id"])
    parent_video = LocalStorage(Path(settings.VEO_MEDIA_ROOT)).path(parent.output_uris[0]).read_bytes()

    click, first = _click_and_run(server, result, f"veo:extend:{payload['id']}")

    assert first["embeds"][0]["footer"]["text"].endswith(f"extends #{parent.id} by 7 s")
    child = VideoRequest.objects.get(interaction_id=click["id"])
    assert (child.derived_as, child.parent_id, child.video_input_uri) == ("extend", parent.id, parent.output_uris[0])
    assert (child.resolution, child.duration_seconds, child.status) == ("720p", 8, "completed")
    create = veo_fake.creates()[-1]
    assert base64.b64decode(create.instance["video"]["bytesBase64Encoded"]) == parent_video
    assert create.parameters["resolution"] == "720p"


def test_extend_of_an_extension_chain_at_veos_limit_is_refused(server):
    payload = veo()
    result = run_to_delivery(server, payload)
    parent = VideoRequest.objects.get(interaction_id=payload["id"])
    last = parent
    for _ in range(20):  # as if it were the 20th extension in a row
        last = VideoRequestFactory(model=parent.model, parent=last, derived_as="extend")
    result["components"][0]["components"][2]["custom_id"] = custom_id = f"veo:extend:{last.interaction_id}"

    answer = _private(server, result, custom_id)

    assert answer == "This video has been extended 20 times, as often as Veo allows. Nothing was charged."
    one_less = services.derivation_source(interaction_id=last.parent.interaction_id, derived_as="extend")
    assert one_less == (services.Derivable.YES, last.parent)


@pytest.mark.parametrize("action", ["reroll", "edit", "extend"])
def test_a_click_on_a_deleted_video_is_refused(server, action):
    payload = veo()
    result = run_to_delivery(server, payload)
    VideoRequest.objects.filter(interaction_id=payload["id"]).update(review_status="removed", reviewed_by="x")

    answer = _private(server, result, f"veo:{action}:{payload['id']}")

    assert answer == "This video was removed, so nothing new can be made from it. Nothing was charged."
    assert VideoRequest.objects.count() == 1


@pytest.mark.parametrize("action", ["reroll", "edit", "extend"])
def test_a_click_naming_an_unknown_request_says_so(server, action):
    result = run_to_delivery(server, veo())
    index = {"reroll": 0, "edit": 1, "extend": 2}[action]
    result["components"][0]["components"][index]["custom_id"] = unknown = f"veo:{action}:1180000000000000998"
    assert _private(server, result, unknown) == "There is no such request (any more). Nothing was charged."
    assert VideoRequest.objects.count() == 1
