"""The outbound worker: the retry policy of SECURITY.md §3.3, signing, circuit and bounds.

Classification and scheduling run against a recording fake transport on a fake clock (no
real backoff sleeps); the signing and the concurrency bounds are also checked against a real
aiohttp server on 127.0.0.1 that verifies every signature server-side.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from types import MappingProxyType

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from federation import delivery
from federation.aiohttp_transport import AiohttpTransport
from federation.delivery import (
    HORIZON_MS,
    MAX_DELAY_MS,
    DeliveryWorker,
    attempted,
    backoff_ms,
    circuit_open_ms,
    classify,
    retry_after_ms,
    skipped,
)
from federation.ports import DeliveryOutcome, SigningKey
from federation.signatures import (
    KeyCache,
    SignatureError,
    generate_rsa_keypair,
    prepare_verification,
    verify_signature,
)
from federation.transport import HttpResponse, TransportError
from tests.unit.federation.memory_ports import (
    Circuits,
    DeliveryRow,
    MemoryDeliveryStore,
    MemoryInboxStore,
)

T0 = 1_800_000_000.0
T0_MS = int(T0 * 1000)
INBOX = "https://gamma.example/inbox"
BODY = b'{"id":"https://beta.example/activities/1","type":"Create"}'
KEY_ID = "https://beta.example/users/dave#main-key"
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    return generate_rsa_keypair()


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    @property
    def ms(self) -> int:
        return int(self.t * 1000)

    def to_ms(self, ms: int) -> None:
        self.t = ms / 1000


@dataclass
class Sent:
    url: str
    headers: dict[str, str]
    body: bytes | None
    at: float


Reply = int | tuple[int, dict[str, str]] | TransportError
Script = Callable[[Sent], Reply]


@dataclass
class FakeTransport:
    """Records every request and answers from a script (a status, or raises)."""

    script: Script
    clock: Clock
    sent: list[Sent] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    pause: float = 0.0
    on_send: Callable[[], None] | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = 1_048_576,
    ) -> HttpResponse:
        assert method == "POST"
        assert max_bytes == 65_536
        sent = Sent(url, dict(headers), body, self.clock())
        self.sent.append(sent)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_send is not None:
                self.on_send()
            if self.pause:
                await asyncio.sleep(self.pause)  # real time: lets requests overlap
            reply = self.script(sent)
        finally:
            self.in_flight -= 1
        if isinstance(reply, TransportError):
            raise reply
        status, extra = reply if isinstance(reply, tuple) else (reply, {})
        return HttpResponse(status, MappingProxyType(extra), b"", url)


def always(reply: Reply) -> Script:
    return lambda _sent: reply


def sequence(*replies: Reply) -> Script:
    queue = list(replies)
    return lambda _sent: queue.pop(0) if len(queue) > 1 else queue[0]


@dataclass
class Rig:
    store: MemoryDeliveryStore
    transport: FakeTransport
    clock: Clock
    worker: DeliveryWorker
    signer: SigningKey

    def add(self, url: str = INBOX, *, created_ms: int | None = None) -> DeliveryRow:
        created = created_ms if created_ms is not None else self.clock.ms
        return self.store.add(url, BODY, self.signer, created_ms=created)


def rig(
    pair: tuple[str, str], script: Script, *, circuits: Circuits | None = None, **options: int
) -> Rig:
    clock = Clock()
    store = MemoryDeliveryStore(circuits)
    transport = FakeTransport(script, clock)
    worker = DeliveryWorker(
        store,
        transport,
        clock,
        KeyCache(),
        rng=random.Random(7),
        user_agent="Steelyard-test/1 (+https://beta.example)",
        **options,
    )
    return Rig(store, transport, clock, worker, SigningKey(KEY_ID, pair[0]))


def verifies(sent: Sent, public_pem: str, host: str = "gamma.example") -> bool:
    assert sent.body is not None
    pending = prepare_verification(
        "POST", "/inbox", list(sent.headers.items()), sent.body, canonical_host=host, now=sent.at
    )
    return verify_signature(pending, public_pem)


# --- classify: the policy table --------------------------------------------------------------


def outcome(
    status: int | None, kind: str | None = None, attempts: int = 0, **kw: object
) -> DeliveryOutcome:
    headers = kw.pop("headers", {})
    created = kw.pop("created_ms", T0_MS)
    return classify(status, kind, attempts, headers, T0_MS, created, random.Random(1))  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert outcome(status) == DeliveryOutcome("delivered", status, None, None, host_failed=False)


@pytest.mark.parametrize("status", [400, 403, 404, 405, 410, 413, 422, 451])
def test_final_4xx_is_dead_and_visible(status: int) -> None:
    assert outcome(status) == DeliveryOutcome("dead", status, f"HTTP {status}", None, False)


@pytest.mark.parametrize(
    ("status", "host_failed"),
    [(401, False), (408, False), (429, True), (500, True), (502, True), (503, True), (504, True)],
)
def test_retryable_statuses(status: int, host_failed: bool) -> None:
    result = outcome(status)
    assert (result.state, result.status, result.host_failed) == ("queued", status, host_failed)
    assert result.next_attempt_ms is not None
    assert 24_000 <= result.next_attempt_ms - T0_MS <= 36_000


@pytest.mark.parametrize(
    "kind", ["timeout", "connect", "dns", "tls", "too-large", "protocol", "refused-address"]
)
def test_network_errors_retry_and_count_against_the_host(kind: str) -> None:
    result = outcome(None, kind)
    assert (result.state, result.error, result.host_failed) == ("queued", kind, True)


@pytest.mark.parametrize("kind", ["bad-url", "refused-scheme"])
def test_unusable_url_is_dead(kind: str) -> None:
    assert outcome(None, kind).state == "dead"


def test_redirects_are_retried_twice_then_dead() -> None:
    assert [outcome(301, attempts=n).state for n in range(4)] == [
        "queued",
        "queued",
        "dead",
        "dead",
    ]
    assert not outcome(308).host_failed


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(3)
    for attempts in range(25):
        base = min(30_000 * 2**attempts, MAX_DELAY_MS)
        delay = backoff_ms(attempts, rng)
        assert min(base * 0.8, MAX_DELAY_MS) <= delay <= min(base * 1.2, MAX_DELAY_MS)
    assert backoff_ms(40, rng) == MAX_DELAY_MS
    # Jitter spreads retries of many jobs that failed together.
    spread = {backoff_ms(0, rng) for _ in range(50)}
    assert min(spread) < 27_000 and max(spread) > 33_000


def test_retry_after_seconds_and_http_date_are_honoured() -> None:
    def after(value: str, status: int = 503) -> int:
        result = outcome(status, headers={"retry-after": value})
        assert result.state == "queued" and result.next_attempt_ms is not None
        return result.next_attempt_ms - T0_MS

    assert after("120") == 120_000
    assert after("3600", status=429) == 3_600_000
    assert after(formatdate(T0 + 900, usegmt=True)) == 900_000
    assert after("99999999") == MAX_DELAY_MS  # capped at 6 h
    assert 24_000 <= after("0") <= 36_000  # never earlier than the backoff
    assert 24_000 <= after("soon") <= 36_000  # unparseable: plain backoff


def test_retry_after_parsing() -> None:
    assert retry_after_ms(None, T0_MS) is None
    assert retry_after_ms(" 5 ", T0_MS) == 5_000
    assert retry_after_ms(formatdate(T0 - 60, usegmt=True), T0_MS) == 0
    assert retry_after_ms("-5", T0_MS) is None
    assert retry_after_ms("99999999", T0_MS) == MAX_DELAY_MS
    assert retry_after_ms(formatdate(T0 + 86_400, usegmt=True), T0_MS) == MAX_DELAY_MS
    assert retry_after_ms("Tue, 99 Foo 2027", T0_MS) is None


def test_past_the_horizon_a_retry_becomes_held() -> None:
    old = T0_MS - HORIZON_MS
    assert outcome(500, created_ms=old).state == "held"
    assert outcome(None, "timeout", created_ms=old).state == "held"
    held = outcome(503, created_ms=T0_MS - HORIZON_MS + 60_000, headers={"retry-after": "3600"})
    assert (held.state, held.next_attempt_ms, held.error) == ("held", None, "HTTP 503")
    assert outcome(500, created_ms=T0_MS - HORIZON_MS + 3_600_000).state == "queued"
    # Final answers are unaffected by age.
    assert outcome(202, created_ms=old).state == "delivered"
    assert outcome(410, created_ms=old).state == "dead"


def test_circuit_interval_and_skips() -> None:
    assert [circuit_open_ms(n) for n in (10, 11, 12)] == [30_000, 60_000, 120_000]
    assert circuit_open_ms(60) == MAX_DELAY_MS
    assert not attempted(skipped(5))
    assert attempted(outcome(None, "timeout")) and attempted(outcome(202))


# --- the worker on a fake transport ----------------------------------------------------------


async def test_delivery_is_signed_and_recorded(pair: tuple[str, str]) -> None:
    r = rig(pair, always(202))
    row = r.add()
    assert await r.worker.run_until_idle() == 1
    (sent,) = r.transport.sent
    assert sent.url == INBOX and sent.body == BODY
    assert sent.headers["Content-Type"] == "application/activity+json"
    assert sent.headers["Host"] == "gamma.example"
    assert sent.headers["Date"] == formatdate(T0, usegmt=True)
    assert sent.headers["User-Agent"].startswith("Steelyard-test/1")
    assert 'headers="(request-target) host date digest content-type"' in sent.headers["Signature"]
    assert verifies(sent, pair[1])
    assert (row.state, row.attempts, row.last_status, row.locked_until_ms) == (
        "delivered",
        1,
        202,
        None,
    )


async def test_every_attempt_is_signed_afresh(pair: tuple[str, str]) -> None:
    r = rig(pair, sequence(500, 202))
    row = r.add()
    await r.worker.run_once()
    r.clock.to_ms(row.next_attempt_ms)
    await r.worker.run_once()
    first, second = r.transport.sent
    assert first.headers["Date"] != second.headers["Date"]
    assert first.headers["Signature"] != second.headers["Signature"]
    assert verifies(first, pair[1]) and verifies(second, pair[1])
    # The first signature would now be outside the receiver's window.
    with pytest.raises(SignatureError):
        prepare_verification(
            "POST",
            "/inbox",
            list(first.headers.items()),
            BODY,
            canonical_host="gamma.example",
            now=r.clock() + 7200,
        )
    assert row.state == "delivered"


async def test_503_retry_after_is_honoured(pair: tuple[str, str]) -> None:
    r = rig(pair, sequence((503, {"retry-after": "120"}), 202))
    row = r.add()
    await r.worker.run_once()
    assert (row.state, row.next_attempt_ms, row.attempts) == ("queued", T0_MS + 120_000, 1)
    r.clock.t += 119
    assert await r.worker.run_until_idle() == 0
    assert len(r.transport.sent) == 1
    r.clock.t += 1
    assert await r.worker.run_until_idle() == 1
    assert row.state == "delivered"


@pytest.mark.parametrize("kind", ["too-large", "protocol"])
async def test_an_accepted_post_with_an_unreadable_answer_is_delivered_once(
    pair: tuple[str, str], kind: str
) -> None:
    """A 202 with a body over our cap (or a Content-Encoding we did not ask for) was still
    accepted: sending again would deliver twice."""
    r = rig(pair, always(TransportError(kind, "the answer's body", status=202)))  # type: ignore[arg-type]
    row = r.add()
    await r.worker.run_once()
    assert (row.state, row.last_status, row.attempts) == ("delivered", 202, 1)
    r.clock.t += 86_400
    assert await r.worker.run_until_idle() == 0
    assert len(r.transport.sent) == 1


async def test_an_unreadable_answer_without_a_2xx_is_still_retried(pair: tuple[str, str]) -> None:
    r = rig(pair, always(TransportError("too-large", "body", status=500)))
    row = r.add()
    await r.worker.run_once()
    assert (row.state, row.attempts) == ("queued", 1)
    assert "too-large" in str(row.last_error)


async def test_timeouts_are_retried_with_growing_backoff(pair: tuple[str, str]) -> None:
    r = rig(pair, always(TransportError("timeout", "deadline exceeded")))
    row = r.add()
    delays = []
    for _ in range(8):
        before = r.clock.ms
        assert await r.worker.run_once() == 1
        assert row.state == "queued"
        delays.append(row.next_attempt_ms - before)
        r.clock.to_ms(row.next_attempt_ms)
    for n, delay in enumerate(delays):
        assert 0.8 * 30_000 * 2**n <= delay <= 1.2 * 30_000 * 2**n
    assert row.attempts == 8 and row.last_error == "timeout: deadline exceeded"


async def test_410_is_dead_and_never_retried(pair: tuple[str, str]) -> None:
    r = rig(pair, always(410))
    row = r.add()
    await r.worker.run_once()
    r.clock.t += 30 * 86_400
    assert await r.worker.run_until_idle() == 0
    assert (row.state, row.last_status, len(r.transport.sent)) == ("dead", 410, 1)


async def test_held_after_the_horizon_and_not_retried(pair: tuple[str, str]) -> None:
    r = rig(pair, always(500))
    row = r.add(created_ms=T0_MS - 14 * DAY_MS + 60_000)
    await r.worker.run_once()
    assert row.state == "queued"
    r.clock.to_ms(row.next_attempt_ms)
    r.clock.t += 60
    await r.worker.run_once()
    assert (row.state, row.last_error) == ("held", "HTTP 500")
    r.clock.t += 365 * 86_400
    assert await r.worker.run_until_idle() == 0
    assert len(r.transport.sent) == 2


async def test_redirect_is_not_followed_and_ends_dead(pair: tuple[str, str]) -> None:
    r = rig(pair, always((301, {"location": "https://elsewhere.example/inbox"})))
    row = r.add()
    for _ in range(3):
        await r.worker.run_once()
        if row.next_attempt_ms:
            r.clock.to_ms(row.next_attempt_ms)
    assert (row.state, row.attempts) == ("dead", 3)
    assert {s.url for s in r.transport.sent} == {INBOX}


async def test_unsignable_job_is_held_without_a_request(pair: tuple[str, str]) -> None:
    r = rig(pair, always(202))
    row = r.store.add(INBOX, BODY, SigningKey(KEY_ID, "not a key"), created_ms=T0_MS)
    await r.worker.run_once()
    assert r.transport.sent == []
    assert row.state == "held" and "cannot sign" in (row.last_error or "")


async def test_open_circuit_sends_nothing_and_counts_no_attempt(pair: tuple[str, str]) -> None:
    circuits = Circuits()
    circuits.get("gamma.example").failures = 10
    circuits.get("gamma.example").open_until_ms = T0_MS + 60_000
    r = rig(pair, always(202), circuits=circuits)
    row = r.add()
    assert await r.worker.run_once() == 1
    assert r.transport.sent == []
    assert (row.state, row.attempts, row.next_attempt_ms) == ("queued", 0, T0_MS + 60_000)
    assert await r.worker.run_until_idle() == 0
    r.clock.to_ms(T0_MS + 60_000)  # half-open: a probe goes out and closes the circuit
    assert await r.worker.run_until_idle() == 1
    assert row.state == "delivered"
    assert await r.store.circuit_open_until("gamma.example") == 0


async def test_ten_consecutive_host_failures_open_the_circuit(pair: tuple[str, str]) -> None:
    r = rig(pair, always(500), per_host=1)
    rows = [r.add() for _ in range(12)]
    other = r.add("https://alpha.example/inbox")
    await r.worker.run_once()
    gamma = [s for s in r.transport.sent if "gamma" in s.url]
    assert len(gamma) == 10
    assert [row.attempts for row in rows] == [1] * 10 + [0, 0]
    until = await r.store.circuit_open_until("gamma.example")
    assert until == T0_MS + 30_000
    assert rows[11].next_attempt_ms == until
    assert other.attempts == 1  # other hosts are unaffected


async def test_half_open_circuit_sends_one_probe_at_a_time(pair: tuple[str, str]) -> None:
    circuits = Circuits()
    circuits.get("gamma.example").failures = 10
    circuits.get("gamma.example").open_until_ms = T0_MS - 1
    r = rig(pair, always(TransportError("connect", "refused")), circuits=circuits, per_host=4)
    r.transport.pause = 0.02  # the probe is in flight while the other jobs check the circuit
    rows = [r.add() for _ in range(5)]
    await r.worker.run_once()
    assert len(r.transport.sent) == 1  # the failed probe reopened the circuit for the rest
    assert sorted(row.attempts for row in rows) == [0, 0, 0, 0, 1]
    assert await r.store.circuit_open_until("gamma.example") == T0_MS + 60_000


async def test_inbound_traffic_resets_the_circuit(pair: tuple[str, str]) -> None:
    circuits = Circuits()
    circuits.get("gamma.example").failures = 15
    circuits.get("gamma.example").open_until_ms = T0_MS + 3_600_000
    r = rig(pair, always(202), circuits=circuits)
    inbox = MemoryInboxStore(circuits)
    await inbox.host_spoke("gamma.example", T0_MS)
    row = r.add()
    await r.worker.run_once()
    assert row.state == "delivered"


async def test_crash_mid_send_only_delays_the_job(pair: tuple[str, str]) -> None:
    r = rig(pair, always(202), lease_ms=120_000)
    row = r.add()
    # A worker claimed the job and died before recording anything.
    assert len(await r.store.claim_due(r.clock.ms, 10, 120_000)) == 1
    assert await r.worker.run_once() == 0
    r.clock.t += 120
    assert await r.worker.run_once() == 1
    assert row.state == "delivered"


async def test_job_is_given_back_unsent_when_its_lease_is_nearly_over(
    pair: tuple[str, str],
) -> None:
    r = rig(pair, always(202), per_host=1, lease_ms=120_000)
    first, second = r.add(), r.add()

    def slow() -> None:
        r.clock.t += 100  # the first send took 100 s of the 120 s lease

    r.transport.on_send = slow
    await r.worker.run_once()
    assert len(r.transport.sent) == 1
    assert first.state == "delivered"
    assert (second.state, second.attempts, second.locked_until_ms) == ("queued", 0, None)
    r.transport.on_send = None
    assert await r.worker.run_until_idle() == 1
    assert second.state == "delivered"


async def test_overall_concurrency_is_bounded(pair: tuple[str, str]) -> None:
    r = rig(pair, always(202), concurrency=3, per_host=4)
    r.transport.pause = 0.02
    for n in range(12):
        r.add(f"https://host{n % 6}.example/inbox")
    assert await r.worker.run_until_idle() == 12
    assert r.transport.max_in_flight == 3


async def test_run_forever_wakes_survives_store_errors_and_stops(pair: tuple[str, str]) -> None:
    r = rig(pair, always(202), poll_interval=30)
    r.store.fail_claim = 1
    stop = asyncio.Event()
    task = asyncio.create_task(r.worker.run_forever(stop))
    await asyncio.sleep(0)
    await _deliver_one_then_stop(r, stop, task)
    assert r.store.fail_claim == 0


async def _deliver_one_then_stop(r: Rig, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Queue a delivery, wait until the running worker has delivered it, then stop it."""
    row = r.add()
    async with asyncio.timeout(5):
        while row.state != "delivered":
            r.worker.wake()
            await asyncio.sleep(0.01)
    stop.set()
    async with asyncio.timeout(5):
        await task


async def test_run_forever_probes_at_its_interval_and_survives_a_failed_probe(
    pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "PROBE_LOOK_S", 0.05)
    r = rig(pair, always(202), poll_interval=0.01)
    r.store.fail_probe = 1
    stop = asyncio.Event()
    began = asyncio.get_running_loop().time()
    task = asyncio.create_task(r.worker.run_forever(stop))
    await asyncio.sleep(0.28)
    await _deliver_one_then_stop(r, stop, task)
    assert r.store.fail_probe == 0
    elapsed = asyncio.get_running_loop().time() - began
    # At once, then every 50 ms: not at every poll (10 ms), and on after the failed one
    assert 3 <= len(r.store.probes) <= elapsed / 0.05 + 2, (len(r.store.probes), elapsed)


async def test_logs_name_activity_and_host_never_bodies_or_keys(
    pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="federation.delivery")
    r = rig(pair, always(500))
    r.add()
    await r.worker.run_once()
    assert "https://beta.example/activities/1" in caplog.text and "gamma.example" in caplog.text
    assert "Create" not in caplog.text and "PRIVATE KEY" not in caplog.text


# --- the real transport against a real server ------------------------------------------------


class StaticResolver(AbstractResolver):
    """Every name is 127.0.0.1, so two partner hosts can live on one loopback server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@dataclass
class Partner:
    port: int
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    verified: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@pytest.fixture
async def partner(pair: tuple[str, str]) -> AsyncIterator[Partner]:
    state = Partner(port=0)
    public_pem = pair[1]

    async def inbox(request: web.Request) -> web.Response:
        host = request.host
        state.in_flight[host] = state.in_flight.get(host, 0) + 1
        state.max_in_flight[host] = max(state.max_in_flight.get(host, 0), state.in_flight[host])
        try:
            body = await request.read()
            try:
                pending = prepare_verification(
                    request.method,
                    request.raw_path,
                    list(request.headers.items()),
                    body,
                    canonical_host=host,
                    now=T0,
                )
            except SignatureError as exc:
                state.rejected.append(exc.reason)
                return web.Response(status=exc.status)
            if pending.key_id != KEY_ID or not verify_signature(pending, public_pem):
                state.rejected.append("bad signature")
                return web.Response(status=401)
            state.verified.append(host)
            await asyncio.sleep(0.03)  # hold the request so overlaps can be counted
            return web.Response(status=202)
        finally:
            state.in_flight[host] -= 1

    app = web.Application()
    app.router.add_post("/inbox", inbox)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


async def with_transport(use: Callable[[AiohttpTransport], Awaitable[None]]) -> None:
    transport = AiohttpTransport(
        allow_loopback=True, user_agent="Steelyard-test/1", resolver=StaticResolver()
    )
    try:
        await use(transport)
    finally:
        await transport.close()


async def test_real_transport_signatures_verify_and_per_host_bound_holds(
    pair: tuple[str, str], partner: Partner
) -> None:
    clock = Clock()
    store = MemoryDeliveryStore()
    signer = SigningKey(KEY_ID, pair[0])
    hosts = (f"alpha.example:{partner.port}", f"gamma.example:{partner.port}")
    rows = [
        store.add(f"http://{hosts[n % 2]}/inbox", BODY, signer, created_ms=clock.ms)
        for n in range(12)
    ]

    async def run(transport: AiohttpTransport) -> None:
        worker = DeliveryWorker(
            store, transport, clock, KeyCache(), per_host=2, concurrency=16, user_agent="t"
        )
        assert await worker.run_until_idle() == 12

    await with_transport(run)
    assert partner.rejected == []
    assert sorted(partner.verified) == sorted(hosts * 6)
    assert [row.state for row in rows] == ["delivered"] * 12
    assert partner.max_in_flight == {hosts[0]: 2, hosts[1]: 2}


async def test_real_transport_tampered_signature_is_refused_and_retried(
    pair: tuple[str, str], partner: Partner
) -> None:
    clock = Clock()
    store = MemoryDeliveryStore()
    other_private, _ = generate_rsa_keypair()
    row = store.add(
        f"http://gamma.example:{partner.port}/inbox",
        BODY,
        SigningKey(KEY_ID, other_private),
        created_ms=clock.ms,
    )

    async def run(transport: AiohttpTransport) -> None:
        worker = DeliveryWorker(store, transport, clock, KeyCache(), user_agent="t")
        await worker.run_once()

    await with_transport(run)
    assert partner.rejected == ["bad signature"]
    assert (row.state, row.last_status) == ("queued", 401)
