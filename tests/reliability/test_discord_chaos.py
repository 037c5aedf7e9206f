"""Discord chaos: the real bot (discord.py, worker, database, google-genai against the Veo fake)
delivering a batch of videos while the Discord fake misbehaves at random per request (seeded):
429s with retry-after (per route and global), 5xx, unknown webhooks and expired interaction
tokens, missing permissions and small upload limits in the channel.

Every fault is sent once first, then at random (seeded, the seed printed), and some generations
fail; the run checks it met every fault. Afterwards every request's outcome must be what delivery promises (docs/ARCHITECTURE.md) given its faults:
the original reply edited while its token works, else a post in the channel mentioning the
requester, the file attached when it fits, else a link, or a recorded delivery failure with
its reason. Nothing is delivered twice and nothing silently dropped.
"""

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.bot_harness import eventually, fake_discord, quick_bot_settings, run_bot
from tests.fakes import discord_server as fake
from tests.fakes import veo_server
from tests.fakes.interactions import CHANNEL_ID, USER_ID, deliver_and_wait, slash_command, user
from tests.outcomes import BY_NAME
from tracking.models import VideoRequest

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

server = pytest.fixture(fake_discord, name="server")
MEDIA_URL = "https://media.example.com/veo/"
SMALL = 1024  # bytes: an upload limit the sample video does not fit
FAILED = BY_NAME["operation_failed"]  # an error from Veo: a failure embed is what gets delivered


@dataclass(frozen=True)
class Plan:
    fault: str
    payload: dict
    failed_generation: bool

    @property
    def interaction_id(self) -> int:
        return int(self.payload["id"])

    @property
    def channel_id(self) -> int:
        return int(self.payload["channel_id"])

    @property
    def edit_route(self) -> str:
        return f"PATCH /webhooks/*/{self.payload['token']}/messages/@original"

    @property
    def post_route(self) -> str:
        return f"POST /channels/{self.channel_id}/messages"


# fault -> (weight, how the request must end: "interaction", "channel" or "undeliverable", attach or link)
FAULTS = {
    "none": (3, "interaction", "attach"),
    "small_interaction_limit": (1, "interaction", "link"),
    "429_on_edit": (2, "interaction", "attach"),
    "500_on_edit_once": (1, "interaction", "attach"),
    "503_on_edit_once": (1, "interaction", "attach"),
    "unknown_webhook": (1, "channel", "attach"),
    "expired_token": (2, "channel", "attach"),
    "expired_and_global_429_on_post": (1, "channel", "attach"),
    "expired_and_429_on_post": (1, "channel", "attach"),
    "expired_and_500_on_post_once": (1, "channel", "attach"),
    "expired_and_503_on_post_once": (1, "channel", "attach"),
    "expired_and_channel_down": (1, "undeliverable", None),
    "expired_and_missing_permissions": (1, "undeliverable", None),
    "expired_and_small_channel_limit": (1, "channel", "link"),
}


def _before_reply(server, plan: Plan, rng: random.Random) -> None:
    """Faults on the delivery's routes, scripted before the interaction arrives."""
    fault = plan.fault
    if fault == "429_on_edit":
        server.rate_limit(plan.edit_route, retry_after=rng.choice([0.05, 0.1, 0.2]), times=rng.randint(1, 3))
    elif fault == "500_on_edit_once":
        server.fail(plan.edit_route, fake.SERVER_ERROR, times=1)
    elif fault == "503_on_edit_once":
        server.fail(plan.edit_route, fake.SERVICE_UNAVAILABLE, times=1)
    elif fault == "unknown_webhook":
        server.fail(plan.edit_route, fake.UNKNOWN_WEBHOOK, times=None)
    elif fault == "expired_and_global_429_on_post":
        server.rate_limit(plan.post_route, retry_after=0.1, times=1, is_global=True)
    elif fault == "expired_and_429_on_post":
        server.rate_limit(plan.post_route, retry_after=rng.choice([0.05, 0.1, 0.2]), times=rng.randint(1, 3))
    elif fault == "expired_and_500_on_post_once":
        server.fail(plan.post_route, fake.SERVER_ERROR, times=1)
    elif fault == "expired_and_503_on_post_once":
        server.fail(plan.post_route, fake.SERVICE_UNAVAILABLE, times=1)
    elif fault == "expired_and_channel_down":
        server.fail(plan.post_route, fake.SERVICE_UNAVAILABLE, times=None)


def _after_reply(server, plan: Plan) -> None:
    """Faults that need the interaction answered first (a token that expires, a channel's rules)."""
    if plan.fault.startswith("expired"):
        server.expire_interaction(plan.interaction_id)
    if plan.fault == "expired_and_missing_permissions":
        server.deny_channel(plan.channel_id)
    if plan.fault == "expired_and_small_channel_limit":
        server.set_attachment_size_limit(SMALL, channel_id=plan.channel_id)


def _problems(server, plan: Plan, row: VideoRequest | None) -> list[str]:
    """What is wrong with how this request ended, given its faults (empty: all right)."""
    _, method, form = FAULTS[plan.fault]
    problems = []
    if row is None:
        return ["no row"]
    if row.delivered_at is None:
        return ["never delivered"]
    if row.delivery_method != method:
        problems.append(f"delivered by {row.delivery_method}, expected {method}")
    posts = [r for r in server.requests(plan.post_route) if r.status == 200]
    edits = [r for r in server.requests(plan.edit_route) if r.status == 200]
    if len(edits) != (method == "interaction"):
        problems.append(f"the original reply was edited {len(edits)} times")
    if method == "undeliverable":
        if not row.delivery_error:
            problems.append("undeliverable without a recorded reason")
        if posts:
            problems.append("undeliverable, yet a message was posted")
        return problems
    message = server.message(row.discord_message_id or 0)
    if message is None:
        return problems + [f"message {row.discord_message_id} does not exist"]
    if method == "interaction" and int(message["id"]) != server.interaction(plan.interaction_id).original_message_id:
        problems.append("not the original reply")
    if method == "channel":
        if len(posts) != 1:
            problems.append(f"{len(posts)} posts in the channel")
        if [m["id"] for m in message["mentions"]] != [str(row.user_id)]:
            problems.append(f"mentions {message['mentions']}, expected only the requester")
    expected_form = None if plan.failed_generation else form  # a failure embed carries no video
    found_form = "attach" if message["attachments"] else "link" if MEDIA_URL in json.dumps(message["embeds"]) else None
    if found_form != expected_form:
        problems.append(f"video {found_form}, expected {expected_form}")
    return problems


def test_discord_misbehaving_at_random(server, settings, tmp_path, scale, chaos_seed, chaos_report, veo_fake):
    quick_bot_settings(settings, tmp_path)
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=1.0)
    settings.VEO_PUBLIC_MEDIA_URL = MEDIA_URL
    settings.VEO_RETRY_BACKOFF = timedelta(milliseconds=50)  # between delivery attempts
    settings.VEO_WORKER_SLOTS = settings.VEO_MAX_CONCURRENT = 16
    settings.VEO_MAX_STARTS_PER_MINUTE = 10_000
    deliveries = scale(quick=20, full=100)
    rng = random.Random(chaos_seed)
    names, weights = list(FAULTS), [FAULTS[name][0] for name in FAULTS]
    # Every fault once, then at random; some generations fail (their failure is what is delivered).
    faults = names + rng.choices(names, weights, k=deliveries - len(names))
    failed = [rng.random() < 0.15 for _ in faults]
    failed[rng.randrange(len(names))] = True  # at least one failure, among the faults sent once
    plans = []
    for number, (fault, failed_generation) in enumerate(zip(faults, failed, strict=True)):
        payload = slash_command(
            "veo",
            {"prompt": (FAILED.prompt if failed_generation else str)(f"a red fox in snow, take {number}")},
            author=user(USER_ID + 1000 + number, f"user{number}"),
            channel_id=CHANNEL_ID + 1000 + number,
            attachment_size_limit=SMALL if fault == "small_interaction_limit" else 10 * 1024 * 1024,
        )
        plans.append(Plan(fault, payload, failed_generation))
    chaos_report.inject(
        deliveries=deliveries,
        faults=dict(Counter(p.fault for p in plans)),
        failed_generations=sum(p.failed_generation for p in plans),
    )

    async def scenario(bot):
        for plan in plans:
            _before_reply(server, plan, rng)
            await deliver_and_wait(bot, plan.payload, server=server)
            _after_reply(server, plan)
        ids = [plan.interaction_id for plan in plans]
        await eventually(
            lambda: VideoRequest.objects.filter(interaction_id__in=ids, delivered_at__isnull=False).count() == len(ids),
            timeout=300,
            what="every request delivered or recorded undeliverable",
        )

    try:
        run_bot(scenario)
    finally:
        rows = {
            row.interaction_id: row
            for row in VideoRequest.objects.filter(interaction_id__in=[plan.interaction_id for plan in plans])
        }
        wrong = {
            plan.interaction_id: (plan.fault, problems)
            for plan in plans
            if (problems := _problems(server, plan, rows.get(plan.interaction_id)))
        }
        received = Counter(
            f"{r.method} {r.route} {r.status}" for r in server.requests() if r.route and ("messages" in r.route)
        )
        chaos_report.find(
            methods=dict(Counter(str(row.delivery_method) for row in rows.values())),
            recorded_failures=dict(
                Counter(re.sub(r"\d{15,}", "<id>", row.delivery_error) for row in rows.values() if row.delivery_error)
            ),
            discord_received=dict(received),
            wrong_outcome=len(wrong),
        )
    assert not wrong, f"{len(wrong)} deliveries went wrong, e.g. {list(wrong.items())[:3]}"
    assert {plan.fault for plan in plans} == set(FAULTS)  # the coverage this run claims
    assert {plan.failed_generation for plan in plans} == {True, False}
