"""Images as input end to end: /veo's image and last_frame options and the "Animate with Veo"
context menu, through the real discord.py against the fake Discord (its CDN serves the
attachments), checked before admission, and received by the Veo fake through google-genai."""

from datetime import timedelta
from pathlib import Path

import pytest

from discordbot.commands import veo_commands
from tests.bot_harness import delivered, eventually, run_bot, run_to_delivery
from tests.fakes import discord_server as fake
from tests.fakes.interactions import (
    CHANNEL_ID,
    GUILD_ID,
    button_click,
    deliver_and_wait,
    message_command,
    modal_submit,
    slash_command,
    with_attachment,
)
from tests.image_files import jpeg, png, webp_lossy
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

VEO_3_0 = "veo-3.0-generate-001"  # first frames, but no last frame


def attach(server, data: bytes, filename: str = "frame.png", **kwargs) -> dict:
    return server.add_user_attachment(data, filename, channel_id=CHANNEL_ID, **kwargs)


def veo_with(server, *, prompt="the fox starts to run", **attachments) -> dict:
    payload = slash_command("veo", {"prompt": prompt})
    for option, attachment in attachments.items():
        with_attachment(payload, option, attachment)
    return payload


def refusal(server, payload) -> str:
    """The private answer to ``payload``, from a bot whose worker is off (nothing may run anyway)."""
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)
    answers = [server.original_response(payload["id"])] + server.followups(payload["id"])
    private = [a for a in answers if a is not None and a["flags"] & fake.EPHEMERAL]
    assert len(private) == 1, answers
    return private[0]["content"]


def input_files(settings) -> list[Path]:
    root = Path(settings.VEO_MEDIA_ROOT) / "inputs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_veo_offers_image_options_only_where_the_model_takes_them(settings):
    def options():
        cog = veo_commands(admitter=None, replies=None, health=None, frames=object())
        [command] = [c for c in cog.get_app_commands() if c.name == "veo"]
        return [parameter.name for parameter in command.parameters]

    assert options()[-2:] == ["image", "last_frame"]
    settings.VEO_MODEL, settings.VEO_MODELS = VEO_3_0, (VEO_3_0,)
    assert options()[-1] == "image"  # no last frame on 3.0
    settings.VEO_MODEL, settings.VEO_MODELS = "veo-9-unknown", ("veo-9-unknown",)
    assert "image" not in options()  # a model the table does not know: nothing optional


def test_an_image_and_a_last_frame_reach_veo_and_are_kept_beside_the_output(server, veo_fake, settings):
    first, last = png(64, 36), jpeg(64, 36)
    payload = veo_with(server, image=attach(server, first), last_frame=attach(server, last, "end.jpg"))

    final = run_to_delivery(server, payload)

    assert final["embeds"][0]["title"] == "Your video is ready"
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert row.image_uri.endswith("-image.png") and row.last_frame_uri.endswith("-last_frame.jpg")
    assert [p.read_bytes() for p in input_files(settings)] == [first, last]
    [create] = veo_fake.creates()
    assert (create.image_bytes, create.last_frame_bytes) == (first, last)
    assert create.inputs.image.mime_type == "image/png" and create.inputs.last_frame.mime_type == "image/jpeg"


def _stalled(server):
    image = attach(server, png(8, 8))
    server.stall_attachment(image, 30)
    return image


BAD_IMAGES = {
    "not_an_image": (
        lambda server: attach(server, b"%PDF-1.7 not an image", "doc.png", content_type="image/png"),
        "Can't queue that: image must be a PNG, JPEG or WebP image (got a PDF document).",
    ),
    "wrong_type": (
        lambda server: attach(server, webp_lossy(64, 36), "frame.webp"),
        "Can't queue that: image must be PNG or JPEG for this model (got WebP).",
    ),
    "said_to_be_a_pdf": (
        lambda server: attach(server, png(8, 8), "frame.pdf", content_type="application/pdf"),
        "Can't queue that: image must be PNG or JPEG (Discord says it is application/pdf).",
    ),
    "too_large_by_discords_word": (
        lambda server: attach(server, png(64, 64)),
        "Can't queue that: image is larger than 50 bytes.",
    ),
    "too_large_though_discord_says_small": (
        lambda server: {**attach(server, png(64, 64)), "size": 10},
        "Can't queue that: image is larger than 50 bytes.",
    ),
    "too_many_pixels": (
        lambda server: attach(server, png(400, 300, pixels=False)),
        "Can't queue that: image is 400x300 pixels (120,000), more than the 100,000 pixels accepted:"
        " make it smaller and try again.",
    ),
    "unreachable": (
        lambda server: {**attach(server, png(8, 8)), "url": "http://127.0.0.1:9/frame.png"},
        "Can't queue that: could not download the image: could not connect to 127.0.0.1.",
    ),
    "stalls": (_stalled, "Can't queue that: image download took longer than 2 s."),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_a_bad_image_is_refused_privately_with_why_and_nothing_is_kept_or_charged(server, veo_fake, settings, case):
    settings.VEO_IMAGE_MAX_PIXELS = 100_000
    settings.VEO_IMAGE_DOWNLOAD_TIMEOUT = timedelta(seconds=2)  # past DEFER_AFTER: the deferred path
    if case.startswith("too_large"):
        settings.VEO_IMAGE_MAX_BYTES = 50
    make, expected = BAD_IMAGES[case]
    payload = veo_with(server, image=make(server))

    assert refusal(server, payload) == expected + " Nothing was charged."
    assert not VideoRequest.objects.exists() and input_files(settings) == [] and veo_fake.creates() == []
    if case == "stalls":  # deferred in time, then the public placeholder made way for the refusal
        assert server.interaction(payload["id"]).response_type == 5
        assert server.original_response(payload["id"]) is None


def test_a_last_frame_without_an_image_is_refused_before_any_download(server, veo_fake, settings):
    payload = veo_with(server, last_frame=attach(server, png(8, 8)))
    answer = refusal(server, payload)
    assert answer == "Can't queue that: a last frame needs a first frame: give an image as well. Nothing was charged."
    assert not VideoRequest.objects.exists() and input_files(settings) == []
    assert not [r for r in server.requests() if "/attachments/" in r.path]  # never fetched


def test_a_frame_the_model_does_not_take_is_refused_as_an_unknown_option(server, settings):
    settings.VEO_MODEL, settings.VEO_MODELS = VEO_3_0, (VEO_3_0,)
    payload = veo_with(server, image=attach(server, png(8, 8)), last_frame=attach(server, png(8, 8)))
    assert refusal(server, payload) == "Can't queue that: /veo has no option 'last\\_frame'. Nothing was charged."
    assert not VideoRequest.objects.exists()


def test_the_length_and_resolution_rules_refuse_an_image_request_before_its_download(server, settings):
    settings.VEO_MODEL, settings.VEO_MODELS = "veo-3.1-lite-generate-001", ("veo-3.1-lite-generate-001",)
    payload = slash_command("veo", {"prompt": "the fox starts to run", "length": 4, "hd": True})
    with_attachment(payload, "image", attach(server, png(8, 8)))
    answer = refusal(server, payload)
    assert answer.startswith("Can't queue that: veo-3.1-lite-generate-001 makes 1080p videos only 8 seconds long")
    assert not [r for r in server.requests() if "/attachments/" in r.path]


# -- "Animate with Veo" on a message ------------------------------------------------------------


def _message_with(server, *attachments) -> dict:
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    return server.add_user_message(CHANNEL_ID, "look at my cat", attachments=attachments)


def test_animate_with_veo_asks_what_should_happen_and_animates_the_messages_image(server, veo_fake):
    picture = jpeg(640, 360)
    target = _message_with(server, attach(server, b"notes", "notes.txt"), attach(server, picture, "cat.jpg"))
    menu = message_command("Animate with Veo", target)
    run_bot(lambda bot: deliver_and_wait(bot, menu, server=server), run_worker=False)
    modal = server.interaction(menu["id"]).modal
    field = modal["components"][0]["components"][0]
    submitted = modal_submit(menu, modal, {field["custom_id"]: "the cat yawns and stretches"})

    async def scenario(bot):  # another process: it reads the message again for its image
        await deliver_and_wait(bot, submitted, server=server)
        await eventually(delivered(int(submitted["id"])), what="the animation's delivery")

    run_bot(scenario)

    assert modal["title"] == "Animate with Veo" and field["label"] == "What should happen in the video?"
    row = VideoRequest.objects.get(interaction_id=submitted["id"])
    assert (row.prompt, row.status) == ("the cat yawns and stretches", "completed") and row.image_uri
    [create] = veo_fake.creates()
    assert create.image_bytes == picture and create.prompt == "the cat yawns and stretches"
    assert server.original_response(submitted["id"])["embeds"][0]["title"] == "Your video is ready"


def test_animate_on_a_message_deleted_before_the_prompt_came_says_so(server, veo_fake):
    target = _message_with(server, attach(server, png(8, 8)))
    menu = message_command("Animate with Veo", target)
    run_bot(lambda bot: deliver_and_wait(bot, menu, server=server), run_worker=False)
    modal = server.interaction(menu["id"]).modal
    submitted = modal_submit(menu, modal, {modal["components"][0]["components"][0]["custom_id"]: "it moves"})
    server.delete_message(int(target["id"]))

    answer = refusal(server, submitted)

    assert answer.startswith("The message with the image could not be read again (deleted")
    assert not VideoRequest.objects.exists() and veo_fake.creates() == []


def test_animate_on_a_message_without_an_image_says_so(server):
    menu = message_command("Animate with Veo", _message_with(server, attach(server, b"notes", "notes.txt")))
    run_bot(lambda bot: deliver_and_wait(bot, menu, server=server), run_worker=False)
    answer = server.original_response(menu["id"])
    assert answer["flags"] & fake.EPHEMERAL
    assert answer["content"] == (
        "That message has no image to animate: use it on a message with a PNG or JPEG attached."
    )
    assert not VideoRequest.objects.exists()


def test_a_reroll_of_an_animated_image_owns_a_copy_of_the_frame(server, veo_fake, settings):
    picture = png(64, 36)
    payload = veo_with(server, image=attach(server, picture))
    final = run_to_delivery(server, payload)
    parent = VideoRequest.objects.get(interaction_id=payload["id"])
    click = button_click(final, f"veo:reroll:{payload['id']}")

    async def scenario(bot):
        await deliver_and_wait(bot, click, server=server)
        await eventually(delivered(int(click["id"])), what="the re-roll's delivery")

    run_bot(scenario)

    child = VideoRequest.objects.get(interaction_id=click["id"])
    assert child.image_uri and child.image_uri != parent.image_uri
    assert veo_fake.creates()[-1].image_bytes == picture
    # The parent deleted by its author: its frame goes, the child's stays.
    assert refusal(server, button_click(final, f"veo:delete:{payload['id']}")).startswith("Deleted")
    assert [p.name for p in input_files(settings)] == [Path(child.image_uri).name]


def test_a_reroll_whose_frame_is_gone_is_refused_and_charges_nothing(server, veo_fake, settings):
    payload = veo_with(server, image=attach(server, png(8, 8)))
    final = run_to_delivery(server, payload)
    for path in input_files(settings):
        path.unlink()  # as if lost from the disk

    answer = refusal(server, button_click(final, f"veo:reroll:{payload['id']}"))

    assert answer.startswith("Can't make it again: the image of the request it comes from is gone")
    assert answer.endswith("Nothing was charged.") and VideoRequest.objects.count() == 1
