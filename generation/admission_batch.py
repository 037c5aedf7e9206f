"""Group commit for /veo admissions: the interactions that arrive while a batch is in the
database go together in the next one, one statement and one commit for all of them.

The first admission after a quiet spell goes at once, alone; under a burst the batches grow by
themselves (up to MAX_BATCH), so the batches' connection (generation.admission_conn, on the event
loop) carries a few statements instead of one per interaction. Every caller still gets its own
answer or its own exception:

- the database down (refused, or no answer in time): every admission of the batch gets that
  error, so each falls back to the degraded path as a single one would (Admitter.admit); those
  still waiting for a batch of their own get a plain refusal (they never reached the database,
  so none of them is held). They get it as soon as the process declares the outage (the
  heartbeat notices a partition within HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT), not once the
  batch ahead of them has waited out ANSWER_TIMEOUT: their users are answered that much sooner;
- an element that is not admissible (InvalidInput) gets its error; the others go on;
- the database refusing the batch for anything else (one element's interaction id belonging to
  another user fails the whole statement), or ending it to break a deadlock
  (tracking.retries.rolled_back: the database is there, nothing committed): that batch is
  admitted again one by one, so each element gets the answer, or the error, a single admission
  would have given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from django.db import OperationalError

from generation import metrics, wakeup
from generation.admission_conn import AdmissionConnection
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from tracking import aio, selectors, services
from tracking.models import Status
from tracking.retries import rolled_back
from tracking.services.burst import AdmissionCall, BurstAnswer

log = logging.getLogger(__name__)

MAX_BATCH = 50  # past this, a statement's own time outgrows what waiting for the next one saves


class AdmissionBatches:
    def __init__(self, *, max_batch: int = MAX_BATCH, health: DatabaseHealth | None = None):
        self.max_batch = max_batch
        self._waiting: list[tuple[AdmissionCall, asyncio.Future]] = []
        self._draining = False
        self.connection = AdmissionConnection()  # the batches' statements go one at a time: one connection
        if health is not None:
            health.on_outage(lambda: self._refuse_waiting("PostgreSQL is unreachable (an outage began)"))

    def close(self) -> None:
        self.connection.close()

    async def admit(self, call: AdmissionCall) -> BurstAnswer:
        """``call``'s answer, from the next batch; raises what its admission raised."""
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((call, answer))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                if not await self._run(batch):
                    # That batch got no answer: the database is away, and the ones still waiting
                    # never reached it. They go the degraded way at once, not after a timeout of their own.
                    self._refuse_waiting("PostgreSQL did not answer the admissions before this one")
        except asyncio.CancelledError:
            # The loop is closing: nobody is left to admit the rest, so nobody waits for them.
            waiting, self._waiting = self._waiting, []
            for _, answer in waiting:
                answer.cancel()
            raise
        finally:
            self._draining = False

    def _refuse_waiting(self, reason: str) -> None:
        """Every admission still waiting for a batch gets a refusal: none of them reached the database."""
        waiting, self._waiting = self._waiting, []
        for _, answer in waiting:
            # One exception each: a raised exception gathers the traceback of every place it is
            # raised from, and these are raised in as many handlers.
            _settle(answer, error=OperationalError(reason))

    async def _run(self, batch: list[tuple[AdmissionCall, asyncio.Future]]) -> bool:
        """Admit ``batch``, settling every future; False when the database gave no answer."""
        calls = [call for call, _ in batch]
        metrics.ADMISSION_BATCH_SIZE.observe(len(calls))
        try:
            # Decided here, on the worker's loop: no NOTIFY while our own worker fills the cap.
            notify = not wakeup.cap_held_here()
            outcomes, retried = await admit_batch(calls=calls, connection=self.connection, notify=notify)
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as error:  # every waiter gets it: DATABASE_DOWN, NoAnswer, or a bug
            for _, answer in batch:
                _settle(answer, error=error)
            return not isinstance(error, aio.NoAnswer)
        if retried:
            metrics.ADMISSION_BATCHES_RETRIED.inc()
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _settle(answer, error=outcome)
            else:
                _settle(answer, value=outcome)
        return True


def _settle(answer: asyncio.Future, *, value: BurstAnswer | None = None, error: BaseException | None = None) -> None:
    if answer.done():
        return  # its caller has gone (cancelled)
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(value)


async def admit_batch(
    *, calls: Sequence[AdmissionCall], connection: AdmissionConnection, notify: bool = True
) -> tuple[list[BurstAnswer | Exception], bool]:
    """Each call's answer (or its own exception), in order, and whether the batch had to be admitted
    one by one. The statement goes over ``connection``, on the event loop; raises one of
    DATABASE_DOWN when the database is away (NoAnswer: none within ANSWER_TIMEOUT).
    ``notify``: other processes' workers are told of new work (wakeup.cap_held_here says when not)."""
    outcomes: list[BurstAnswer | Exception | None] = [None] * len(calls)
    elements, positions = [], []
    for position, call in enumerate(calls):
        try:
            elements.append(services.burst.checked_element(call))
        except Exception as error:  # InvalidInput: this caller's answer; the others go on
            outcomes[position] = error
        else:
            positions.append(position)
    retried = False
    if elements:
        statement = services.burst.admission_statement(
            elements=elements,
            position_cap=selectors.POSITION_CAP,
            eta_sample=selectors.ETA_SAMPLE,
            reply_tokens=[calls[position].reply_token for position in positions],
        )
        try:
            answers = await connection.admit(statement, seconds=ANSWER_TIMEOUT)
        except Exception as error:
            # The database down is every caller's (the degraded path). Refused for anything else, or
            # ended to break a deadlock (a refund of several requests takes the ledgers' rows in its
            # own order): nothing of it committed, and it is done again one admission at a time
            # (on a database thread: the rare path keeps the services' own code).
            if isinstance(error, DATABASE_DOWN) and not rolled_back(error):
                raise
            log.warning("a batch of %d admissions was refused (%s): admitting them one by one", len(elements), error)
            retried = True
            singly = await aio.run_within(ANSWER_TIMEOUT, _admit_each, calls=[calls[p] for p in positions])
            for position, outcome in zip(positions, singly, strict=True):
                outcomes[position] = outcome
        else:
            for position, answer in zip(positions, answers, strict=True):
                outcomes[position] = answer
    if notify and any(
        isinstance(o, BurstAnswer) and o.admission.admitted and not o.admission.duplicate for o in outcomes
    ):
        # Other processes' workers hear of it from here, after the commit, once for the batch.
        # Our own are woken directly (Admitter._admit_in_database): our listener ignores this one.
        await connection.notify(sender=wakeup.THIS_PROCESS, seconds=ANSWER_TIMEOUT)
    return outcomes, retried


def _admit_each(*, calls: Sequence[AdmissionCall]) -> list[BurstAnswer | Exception]:
    """On a database thread: each call admitted by itself."""
    return [_admit_singly(call) for call in calls]


def _admit_singly(call: AdmissionCall) -> BurstAnswer | Exception:
    try:  # services.admit_request is itself done again when a deadlock ends it
        answer = services.admit_request(
            interaction_id=call.interaction_id,
            user_id=call.user_id,
            guild_id=call.guild_id,
            channel_id=call.channel_id,
            params=call.params,
            role_ids=call.role_ids,
        )
    except Exception as error:
        return error
    if answer.status != Status.PENDING:
        return BurstAnswer(answer, None, None)
    try:
        estimate = selectors.queue_estimate(
            request_id=answer.request_id,
            duration_seconds=call.params.duration_seconds,
            resolution=call.params.resolution,
        )
    except DATABASE_DOWN:
        return BurstAnswer(answer, None, None)  # admitted all the same; the reply just has no estimate
    return BurstAnswer(answer, estimate.ahead, estimate.median_generation_ms)
