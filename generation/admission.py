"""Admission from Discord: the database's one-round-trip answer, or the degraded-mode one.

The result carries an in-memory ``VideoRequest`` (saved or, when degraded, not yet) so the
reply, the direct runner and delivery all read the same fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from generation import metrics, wakeup
from generation.admission_batch import AdmissionBatches
from generation.degraded import DegradedRunner
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from generation.limiter import LocalLimiter
from tracking import aio, selectors, selectors_spend
from tracking.models import Source, Status, VideoRequest
from tracking.services import ReplyTokenRow, VideoParameters
from tracking.services.burst import AdmissionCall


@dataclass
class Decision:
    request: VideoRequest
    admitted: bool
    duplicate: bool
    reason_code: str | None
    reason: str | None
    limit: int
    remaining: int
    reset_at: datetime | None
    ahead: int | None = None
    median_ms: int | None = None
    degraded: bool = False
    # Degraded because the database did not answer in time: it may have admitted the request all
    # the same, so the request waits for it instead of running here (Admitter.admit).
    held: bool = False
    admit_ms: float = 0.0
    cost_usd: Decimal | None = None  # the estimate (None: no price known)
    token_kept: bool = False  # the reply token given to Admitter.admit was written with the admission


def unsaved_request(
    *,
    request_id: int | None,
    interaction_id: int,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    params: VideoParameters,
    status: str,
    created_at: datetime,
) -> VideoRequest:
    return VideoRequest(
        id=request_id,
        source=Source.DISCORD,
        interaction_id=interaction_id,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        duration_seconds=params.duration_seconds,
        aspect_ratio=params.aspect_ratio,
        resolution=params.resolution,
        generate_audio=params.generate_audio,
        person_generation=params.person_generation,
        seed=params.seed,
        model=params.model,
        parent_id=params.parent_id,
        derived_as=params.derived_as,
        image_uri=params.image_uri,
        last_frame_uri=params.last_frame_uri,
        video_input_uri=params.video_input_uri,
        status=status,
        created_at=created_at,
        counts_toward_quota=status == Status.PENDING,
        output_uris=[],
        public_urls=[],
        safety_filtered_reasons=[],
        attempts=0,
    )


@dataclass(frozen=True)
class Quota:
    """A user's quota as admission sees it: from the database, or this process's count while it is away."""

    used: int
    limit: int
    window: timedelta
    reset_at: datetime | None
    degraded: bool
    budgets: list[selectors_spend.Budget] = field(default_factory=list)  # unknown while degraded


class Admitter:
    def __init__(self, *, health: DatabaseHealth, limiter: LocalLimiter, runner: DegradedRunner):
        self.health = health
        self.runner = runner
        self.limiter = limiter
        self.batches = AdmissionBatches(health=health)
        self._journaled: dict[int, Decision] = {}  # degraded admissions, for duplicate interactions
        # user id -> interaction ids admitted here while degraded and not yet replayed. The
        # database cannot count those, so their users stay on the local limiter until it can.
        self._unreplayed: dict[int, set[int]] = {}

    async def admit(
        self,
        *,
        interaction_id: int,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        params: VideoParameters,
        role_ids: list[int] | None = None,
        reply_token: ReplyTokenRow | None = None,
    ) -> Decision:
        """``params`` must already be clean (services.clean_parameters); ``role_ids``: the
        member's Discord roles, for role policies (none in DMs); ``reply_token``: the reply's
        token, written with the admission if it admits a new request (``Decision.token_kept``)."""
        started = time.perf_counter()
        held = False
        if not self.health.degraded and not self._unreplayed.get(user_id):
            try:
                decision = await self._admit_in_database(
                    interaction_id=interaction_id,
                    user_id=user_id,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    params=params,
                    role_ids=role_ids,
                    reply_token=reply_token,
                )
            except DATABASE_DOWN as error:
                self.health.failed(error)
                # Refused connections never reached it; a call that went unanswered (a network
                # partition) may have: the database may admit it whenever the call gets through.
                held = isinstance(error, aio.NoAnswer)
            else:
                return _timed(decision, started)
        decision = await self._admit_locally(
            interaction_id=interaction_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            params=params,
            held=held,
        )
        return _timed(decision, started)

    async def _admit_in_database(
        self,
        *,
        interaction_id: int,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        params: VideoParameters,
        role_ids: list[int] | None,
        reply_token: ReplyTokenRow | None,
    ) -> Decision:
        # In the next batch (generation.admission_batch): one statement and one commit for all the
        # admissions that arrive meanwhile, where each used to queue for a pooled connection.
        burst = await self.batches.admit(
            AdmissionCall(
                interaction_id=interaction_id,
                user_id=user_id,
                guild_id=guild_id,
                channel_id=channel_id,
                params=params,
                role_ids=role_ids,
                reply_token=reply_token,
            )
        )
        answer = burst.admission
        if answer.admitted and not answer.duplicate:
            wakeup.wake_local_workers()  # our own worker starts it now; other processes hear NOTIFY later
        self.limiter.remember(
            user_id=user_id,
            used=answer.used,
            limit=answer.limit,
            reset_at=answer.reset_at,
            reason_code=answer.reason_code,
            reason=answer.reason,
        )
        if answer.admitted and not answer.duplicate:
            self.limiter.remember_price(params=params, cost_usd=answer.cost_usd)
        request = unsaved_request(
            request_id=answer.request_id,
            interaction_id=interaction_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            params=params,
            status=answer.status,
            created_at=timezone.now(),
        )
        decision = Decision(
            request,
            answer.admitted,
            answer.duplicate,
            answer.reason_code,
            answer.reason,
            answer.limit,
            answer.remaining,
            answer.reset_at,
            cost_usd=answer.cost_usd,
            token_kept=burst.token_kept,
        )
        decision.ahead, decision.median_ms = burst.ahead, burst.median_generation_ms
        return decision

    async def _admit_locally(
        self,
        *,
        interaction_id: int,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        params: VideoParameters,
        held: bool,
    ) -> Decision:
        """This process's answer while the database is away. A ``held`` request is journaled but
        not run: replay gives it to the database, which runs it as a row it admitted itself if its
        unanswered admission got through after all, or as the journal's row if not. Either way it
        runs once, where a run here could have been a second one."""
        if interaction_id in self._journaled:
            seen = self._journaled[interaction_id]
            return Decision(**{**seen.__dict__, "duplicate": True})
        created_at = timezone.now()
        local = self.limiter.admit(user_id=user_id, at=created_at, params=params)
        status = Status.PENDING if local.admitted else Status.REJECTED
        request = unsaved_request(
            request_id=None,
            interaction_id=interaction_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            params=params,
            status=status,
            created_at=created_at,
        )
        request.error_code, request.error_message = local.reason_code, local.reason
        if local.admitted:
            self._unreplayed.setdefault(user_id, set()).add(interaction_id)
        await self.runner.admit(request, hold=held)  # journaled (fsync'd) before anyone is told anything
        decision = Decision(
            request,
            local.admitted,
            False,
            local.reason_code,
            local.reason,
            local.limit,
            local.remaining,
            local.reset_at,
            ahead=None if held else self.runner.ahead,
            degraded=True,
            held=held and local.admitted,
            cost_usd=local.cost_usd,
        )
        self._journaled[interaction_id] = decision
        return decision

    async def quota(self, *, user_id: int, guild_id: int | None, role_ids: list[int] | None = None) -> Quota:
        if not self.health.degraded:
            try:
                status, budgets = await aio.run_within(
                    ANSWER_TIMEOUT, _quota_and_budgets, user_id=user_id, guild_id=guild_id, role_ids=role_ids
                )
            except DATABASE_DOWN as error:
                self.health.failed(error)
            else:
                return Quota(status.used, status.limit, status.window, status.reset_at, degraded=False, budgets=budgets)
        local = self.limiter.status(user_id=user_id)
        return Quota(local.used, local.limit, settings.VEO_QUOTA_WINDOW, local.reset_at, degraded=True)

    def replayed(self, interaction_id: int) -> None:
        """The journal replay wrote this interaction's request into the database."""
        decision = self._journaled.get(interaction_id)
        if decision is None:
            return  # journaled by another process
        waiting = self._unreplayed.get(decision.request.user_id, set())
        waiting.discard(interaction_id)
        if not waiting:
            self._unreplayed.pop(decision.request.user_id, None)


def _timed(decision: Decision, started: float) -> Decision:
    decision.admit_ms = (time.perf_counter() - started) * 1000
    metrics.ADMISSION_SECONDS.labels("degraded" if decision.degraded else "database").observe(decision.admit_ms / 1000)
    return decision


def _quota_and_budgets(
    *, user_id: int, guild_id: int | None, role_ids: list[int] | None
) -> tuple[selectors.QuotaStatus, list[selectors_spend.Budget]]:
    return (
        selectors.quota_status(user_id=user_id, guild_id=guild_id, role_ids=role_ids),
        selectors_spend.budgets(user_id=user_id, guild_id=guild_id, role_ids=role_ids),
    )
