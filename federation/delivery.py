"""The outbound worker: claim due deliveries, sign now, POST, classify, schedule the retry.

Policy (SECURITY.md §3.3), decided by the pure function :func:`classify`:

- 2xx → ``delivered``.
- 400, 403, 404, 410, 413 and every other 4xx except 401/408/429 → ``dead``: final for that
  (activity, inbox) pair, kept visible.
- 429 and 503 → retry no earlier than ``Retry-After`` (seconds or HTTP-date; capped at 6 h)
  and no earlier than the backoff.
- other 5xx, 408, 401, network errors and timeouts → retry after 30 s × 2^attempts with
  ±20 % jitter, capped at 6 h.
- 3xx (the transport never follows redirects, and a signed POST must not be re-sent to
  another place): retried like a transient failure, ``dead`` from the third attempt on
  (:data:`MAX_REDIRECT_ATTEMPTS`); a moved inbox is fixed by refetching the actor.
- a retry due after the 14-day horizon (counted from the row's creation) becomes ``held``:
  never deleted, an admin can resend.
- ``host_failed`` (feeds the per-host circuit) is True for network errors, timeouts, 5xx and
  429 only: any other answer proves the host is up.

What the :class:`DeliveryQueue` implementation must honour:

- ``claim_due(now_ms, limit, lease_ms)``: rows in state ``queued`` with
  ``next_attempt_ms <= now_ms`` and no live lease (``locked_until_ms`` NULL or ``<= now_ms``),
  ORDER BY id, LIMIT *limit*; in the same transaction set ``locked_until_ms = now_ms +
  lease_ms``. ``DeliveryJob.attempts`` counts attempts recorded so far (0 before the first);
  ``DeliveryJob.host`` is ``hosts.host_of_url(inbox_url)``, the spelling ``host_spoke`` gets.
  A crash mid-send therefore only delays the job until the lease runs out.
- ``record_outcome(job, outcome, now_ms)``, one transaction: ``state``,
  ``next_attempt_ms`` (set only for ``queued``) and ``locked_until_ms = NULL``; if
  :func:`attempted` (a real request was made): ``attempts += 1`` and the last status, error
  and attempt time. A skip (circuit open, lease nearly over) counts no attempt. A row moved
  to ``cancelled_by_policy`` while in flight stays cancelled. Then the circuit of
  ``job.host``: ``host_failed`` → ``consecutive_failures += 1`` and, once it is at least
  :data:`CIRCUIT_THRESHOLD`, ``open_until_ms = now_ms + circuit_open_ms(failures)``; any
  other attempted outcome → failures 0 and ``open_until_ms`` 0; a skip leaves it alone.
- ``circuit_open_until(host)``: 0 while closed (below the threshold), else ``open_until_ms``
  — which stays set after it passed (half-open) until a success or ``host_spoke`` resets
  it. The worker skips a host whose circuit is open and, when half-open, sends one probe at
  a time to it.
- ``host_spoke(host, now_ms)`` (the inbox, after a verified request) resets that circuit.
- ``created_ms(job_id)``: when the delivery row was created (start of the horizon).
- ``record_outcome`` also keeps ``wait_until_ms`` (a ``Retry-After``) for the host; until
  then nothing hurries the host's queue. A ``delivered`` outcome after failures makes the
  host's other queued rows due at once.
- ``probe_waiting_hosts(now_ms, interval_ms)``: every :data:`PROBE_LOOK_S` the worker
  asks for one probe per allowed host that failed and was not tried for
  :func:`probe_interval_ms` of its consecutive failures (never one that asked to wait): its
  oldest row that nothing must precede, due now and past the circuit. So a partner that
  comes back is caught up within a minute of an outage of up to about an hour, and within
  ten minutes of a longer one, while a host that stays down costs one request a minute for
  the first hour and one every ten minutes after that.

Invariants: every attempt is signed afresh (new Date, Digest, Signature); at most
``concurrency`` requests are in flight overall and ``per_host`` per host; the worker never
dies of an exception (logged with activity id and host; the lease brings the job back);
time comes only from the injected ``now``; nothing here logs bodies or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from federation import ports
from federation.dispatch import until_idle
from federation.ports import DeliveryOutcome
from federation.signatures import KeyCache, sign_request
from federation.transport import Transport, TransportError

__all__ = [
    "CIRCUIT_THRESHOLD",
    "DeliveryQueue",
    "DeliveryWorker",
    "attempted",
    "backoff_ms",
    "circuit_open_ms",
    "classify",
    "probe_interval_ms",
    "retry_after_ms",
    "skipped",
]

_log = logging.getLogger(__name__)

BASE_DELAY_MS = 30_000
MAX_DELAY_MS = 6 * 3_600_000
HORIZON_MS = 14 * 86_400_000
JITTER = 0.2
MAX_REDIRECT_ATTEMPTS = 3
CIRCUIT_THRESHOLD = 10
PROBE_INTERVAL_MS = 60_000
# How often the worker looks for hosts due a probe: a sixth of the interval, so that a probe
# whose own failure came back a moment after the look is not put off a whole interval.
PROBE_LOOK_S = PROBE_INTERVAL_MS / 6000
SLOW_PROBE_INTERVAL_MS = 600_000
# Past this many consecutive failures (ten open the circuit, then one per probe: about an
# hour of probes a minute apart) a host that stays down is probed every ten minutes.
SLOW_PROBE_AFTER_FAILURES = 70
RESPONSE_MAX_BYTES = 65_536
ACTIVITY_JSON = "application/activity+json"
_RETRY_STATUSES = frozenset({401, 408})
_FINAL_TRANSPORT_KINDS = frozenset({"bad-url", "refused-scheme"})
_SEND_BUDGET_MS = 35_000  # transport deadline (30 s) plus signing and bookkeeping
_MAX_ERROR = 300


class DeliveryQueue(ports.DeliveryStore, Protocol):
    """The delivery port plus the row's creation time, which the horizon needs."""

    async def created_ms(self, job_id: int) -> int: ...


def classify(
    status: int | None,
    error_kind: str | None,
    attempts: int,
    headers: Mapping[str, str],
    now_ms: int,
    created_ms: int,
    rng: random.Random,
) -> DeliveryOutcome:
    """Decide what an attempt means (module docstring); *attempts* counts earlier ones."""
    if status is not None:
        error = f"HTTP {status}"
        if 200 <= status < 300:
            return DeliveryOutcome("delivered", status, None, None, host_failed=False)
        if 300 <= status < 400:
            if attempts + 1 >= MAX_REDIRECT_ATTEMPTS:
                return DeliveryOutcome("dead", status, error, None, host_failed=False)
            return _retry(status, error, attempts, None, now_ms, created_ms, rng, host_failed=False)
        if status in _RETRY_STATUSES:
            return _retry(status, error, attempts, None, now_ms, created_ms, rng, host_failed=False)
        if status in (429, 503):
            after = retry_after_ms(_header(headers, "retry-after"), now_ms)
            return _retry(status, error, attempts, after, now_ms, created_ms, rng, host_failed=True)
        if 400 <= status < 500:
            return DeliveryOutcome("dead", status, error, None, host_failed=False)
        # 5xx, and nonsense such as 1xx or 600+: the host is not answering properly.
        return _retry(status, error, attempts, None, now_ms, created_ms, rng, host_failed=True)
    kind = error_kind or "unknown"
    if kind in _FINAL_TRANSPORT_KINDS:
        # Our URL for their inbox cannot work (not http(s), not ASCII): retrying won't help.
        return DeliveryOutcome("dead", None, kind, None, host_failed=False)
    return _retry(None, kind, attempts, None, now_ms, created_ms, rng, host_failed=True)


def backoff_ms(attempts: int, rng: random.Random) -> int:
    """30 s × 2^attempts with ±20 % jitter, capped at 6 h (*attempts* = earlier attempts)."""
    base = BASE_DELAY_MS << min(max(attempts, 0), 20)
    jittered = base * rng.uniform(1 - JITTER, 1 + JITTER)
    return int(min(jittered, MAX_DELAY_MS))


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """Milliseconds to wait per a ``Retry-After`` value (delta seconds or HTTP-date).

    None when absent or unparseable; capped at 6 h; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if text.isascii() and text.isdigit():
        return min(int(text[:12]) * 1000, MAX_DELAY_MS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    delta = int(moment.timestamp() * 1000) - now_ms
    return min(max(delta, 0), MAX_DELAY_MS)


def circuit_open_ms(consecutive_failures: int) -> int:
    """How long a host's circuit stays open after its *n*-th consecutive failure (n ≥ 10).

    30 s at the threshold, doubling with each failed probe, capped at 6 h.
    """
    exponent = min(max(consecutive_failures - CIRCUIT_THRESHOLD, 0), 20)
    return min(BASE_DELAY_MS << exponent, MAX_DELAY_MS)


def probe_interval_ms(consecutive_failures: int) -> int:
    """How long after its last failure a failing host is probed (see the module docstring)."""
    if consecutive_failures >= SLOW_PROBE_AFTER_FAILURES:
        return SLOW_PROBE_INTERVAL_MS
    return PROBE_INTERVAL_MS


def skipped(until_ms: int) -> DeliveryOutcome:
    """An outcome that sends nothing and counts no attempt: try again at *until_ms*."""
    return DeliveryOutcome("queued", None, None, until_ms, host_failed=False)


def attempted(outcome: DeliveryOutcome) -> bool:
    """True when *outcome* reports a real request (a skip has neither status nor error)."""
    return outcome.status is not None or outcome.error is not None


def _retry(
    status: int | None,
    error: str,
    attempts: int,
    after_ms: int | None,
    now_ms: int,
    created_ms: int,
    rng: random.Random,
    *,
    host_failed: bool,
) -> DeliveryOutcome:
    delay = backoff_ms(attempts, rng)
    wait_until = None
    if after_ms is not None:
        # Honour Retry-After (never earlier than asked) without letting "0" make us hammer.
        delay = max(delay, after_ms)
        wait_until = now_ms + after_ms
    next_ms = now_ms + min(delay, MAX_DELAY_MS)
    if next_ms >= created_ms + HORIZON_MS:
        return DeliveryOutcome("held", status, error, None, host_failed, wait_until)
    return DeliveryOutcome("queued", status, error, next_ms, host_failed, wait_until)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class DeliveryWorker:
    """Works the delivery queue with bounded concurrency, overall and per host.

    Each round claims at most *batch* jobs (default ``2 × concurrency``) under a lease of
    *lease_ms*. A job whose lease is nearly over (less than one transport deadline left,
    e.g. because it waited behind a slow host) is given back unsent rather than risk a
    second sender. Responses are read up to 64 KiB: a larger answer surfaces as the
    transport's ``too-large`` error and is retried (receivers de-duplicate by activity id).
    """

    def __init__(
        self,
        store: DeliveryQueue,
        transport: Transport,
        now: Callable[[], float],
        key_cache: KeyCache,
        *,
        concurrency: int = 16,
        per_host: int = 4,
        lease_ms: int = 120_000,
        rng: random.Random | None = None,
        user_agent: str,
        batch: int | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._transport = transport
        self._now = now
        self._key_cache = key_cache
        self._per_host = per_host
        self._lease_ms = lease_ms
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 -- jitter only
        self._user_agent = user_agent
        self._batch = batch if batch is not None else concurrency * 2
        self._poll_interval = poll_interval
        self._slots = asyncio.Semaphore(concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._probes: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask :meth:`run_forever` to look for work now (after a commit that queued some)."""
        self._wake.set()

    async def probe(self) -> int:
        """Make one delivery due now for each failing host not tried for its probe interval
        (``probe_waiting_hosts`` above); return how many hosts. :meth:`run_forever` calls it
        every :data:`PROBE_LOOK_S`."""
        return await self._store.probe_waiting_hosts(self._now_ms(), probe_interval_ms)

    async def run_once(self) -> int:
        """Claim one batch of due jobs and work them; return how many were claimed."""
        claimed_ms = self._now_ms()
        jobs = await self._store.claim_due(claimed_ms, self._batch, self._lease_ms)
        await asyncio.gather(*(self._process(job, claimed_ms) for job in jobs))
        return len(jobs)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (tests); return the number of jobs worked."""
        return await until_idle(self.run_once, max_rounds)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Work until *stop* is set, as a pipeline: new jobs are claimed while others are
        still in flight, so one slow or hanging partner never holds up the others.

        A host may hold at most ``2 × per_host`` claimed jobs at once; further jobs for it
        are handed back for a second (no attempt counted) instead of waiting in memory.
        """
        inflight: dict[asyncio.Task[None], str] = {}
        loop = asyncio.get_running_loop()
        next_probe = loop.time()  # monotonic: a wall clock stepped back must not stop probes
        try:
            while not stop.is_set():
                self._wake.clear()
                if loop.time() >= next_probe:
                    next_probe = loop.time() + PROBE_LOOK_S
                    try:
                        await self.probe()
                    except Exception:
                        _log.exception("delivery probe failed; continuing")
                room = self._batch - len(inflight)
                claimed = 0
                if room > 0:
                    try:
                        claimed = await self._claim_into(inflight, room)
                    except Exception:
                        _log.exception("delivery claim failed; continuing")
                if room > 0 and claimed == room:
                    continue  # more may be due right now
                waiters: set[asyncio.Future[Any]] = {
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                }
                try:
                    await asyncio.wait(
                        waiters | set(inflight),
                        timeout=self._poll_interval,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                    for waiter in waiters:
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
        finally:
            # Jobs still in flight keep their lease; a restart releases and resends them.
            for task in inflight:
                task.cancel()
            for task in list(inflight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _claim_into(self, inflight: dict[asyncio.Task[None], str], room: int) -> int:
        claimed_ms = self._now_ms()
        jobs = await self._store.claim_due(claimed_ms, room, self._lease_ms)
        per_host: dict[str, int] = {}
        for host in inflight.values():
            per_host[host] = per_host.get(host, 0) + 1
        for job in jobs:
            if per_host.get(job.host, 0) >= 2 * self._per_host:
                await self._record(job, skipped(claimed_ms + 1000))
                continue
            per_host[job.host] = per_host.get(job.host, 0) + 1
            task = asyncio.create_task(self._process(job, claimed_ms))
            inflight[task] = job.host
            task.add_done_callback(lambda done: inflight.pop(done, None))
        return len(jobs)

    def _now_ms(self) -> int:
        return int(self._now() * 1000)

    async def _process(self, job: ports.DeliveryJob, claimed_ms: int) -> None:
        try:
            async with self._host_slot(job.host):
                until = await self._store.circuit_open_until(job.host)
                if until > self._now_ms():
                    await self._record(job, skipped(until))
                    return
                if until == 0:
                    await self._send(job, claimed_ms)
                    return
                # Half-open: one probe at a time; the others wait for its verdict.
                async with self._probe_lock(job.host):
                    until = await self._store.circuit_open_until(job.host)
                    if until > self._now_ms():
                        await self._record(job, skipped(until))
                        return
                    await self._send(job, claimed_ms)
        except Exception:
            # The job stays leased; when the lease runs out it is claimed again.
            _log.exception(
                "delivery %d failed unexpectedly (activity %s, host %s)",
                job.id,
                job.activity_id,
                job.host,
            )

    async def _send(self, job: ports.DeliveryJob, claimed_ms: int) -> None:
        async with self._slots:
            budget = min(_SEND_BUDGET_MS, self._lease_ms // 4)
            now_ms = self._now_ms()
            if now_ms > claimed_ms + self._lease_ms - budget:
                # Our lease may run out mid-send and another worker take the job: give it
                # back unsent instead of risking two senders.
                await self._record(job, skipped(now_ms))
                return
            outcome = await self._attempt(job)
        await self._record(job, outcome)

    async def _attempt(self, job: ports.DeliveryJob) -> DeliveryOutcome:
        # Read before sending: a store failure here must not follow a request already sent.
        created_ms = await self._store.created_ms(job.id)
        try:
            # Signed at send time, every time: a stale Date fails the receiver's window.
            headers = sign_request(
                "POST",
                job.inbox_url,
                key_id=job.signer.key_id,
                private_key_pem=job.signer.private_key_pem,
                body=job.body,
                now=self._now(),
                extra_headers={"Content-Type": ACTIVITY_JSON, "User-Agent": self._user_agent},
                keys=self._key_cache,
            )
        except Exception as exc:
            # Our key or our URL for them is unusable: no request can succeed until an
            # admin fixes it, then resends the held job.
            _log.error(
                "delivery %d cannot be signed (activity %s, host %s): %s",
                job.id,
                job.activity_id,
                job.host,
                type(exc).__name__,
            )
            return DeliveryOutcome(
                "held", None, f"cannot sign: {type(exc).__name__}", None, host_failed=False
            )
        status: int | None = None
        kind: str | None = None
        detail: str | None = None
        response_headers: Mapping[str, str] = {}
        try:
            response = await self._transport.request(
                "POST",
                job.inbox_url,
                headers=headers,
                body=job.body,
                max_bytes=RESPONSE_MAX_BYTES,
            )
        except TransportError as exc:
            if exc.status is not None and 200 <= exc.status < 300:
                # Accepted; what the receiver said beyond the status line does not matter,
                # and sending again would deliver twice.
                status = exc.status
            else:
                kind, detail = exc.kind, str(exc)
        except Exception as exc:
            _log.exception("transport raised for delivery %d (host %s)", job.id, job.host)
            kind, detail = "protocol", f"{type(exc).__name__}: {exc}"
        else:
            status, response_headers = response.status, response.headers
        outcome = classify(
            status, kind, job.attempts, response_headers, self._now_ms(), created_ms, self._rng
        )
        if detail is not None:
            outcome = dataclasses.replace(outcome, error=detail[:_MAX_ERROR])
        return outcome

    async def _record(self, job: ports.DeliveryJob, outcome: DeliveryOutcome) -> None:
        if attempted(outcome) and outcome.state != "delivered":
            _log.info(
                "delivery %d attempt %d: %s (%s) (activity %s, host %s)",
                job.id,
                job.attempts + 1,
                outcome.state,
                outcome.error,
                job.activity_id,
                job.host,
            )
        caught_up = await self._store.record_outcome(job, outcome, self._now_ms())
        if caught_up is not None:
            _log.info(
                "deliveries to %s work again; %d queued deliveries that waited go now",
                job.host,
                caught_up,
            )

    @contextlib.asynccontextmanager
    async def _host_slot(self, host: str) -> AsyncIterator[None]:
        # One semaphore per allowlisted host: a bounded set, kept for the worker's life.
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._per_host)
        async with slot:
            yield

    def _probe_lock(self, host: str) -> asyncio.Lock:
        lock = self._probes.get(host)
        if lock is None:
            lock = self._probes[host] = asyncio.Lock()
        return lock
