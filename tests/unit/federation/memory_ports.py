"""In-memory ports for the pipeline's unit tests only; the real ones live in server.storage.

Small but faithful to the documented semantics (federation/dispatch.py and
federation/delivery.py module docstrings): claim order by id, leases, attempts counted at
claim (inbound) or on a recorded attempt (delivery), and the per-host circuit rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from federation import ports
from federation.delivery import CIRCUIT_THRESHOLD, attempted, circuit_open_ms
from federation.hosts import host_of_url

INBOUND_LEASE_MS = 300_000


class MemoryAllowlist:
    def __init__(self, *hosts: str) -> None:
        self.hosts = set(hosts)
        self.calls: list[str] = []
        self.fail = False

    async def is_allowed(self, host: str) -> bool:
        self.calls.append(host)
        if self.fail:
            raise RuntimeError("database is locked")
        return host in self.hosts


@dataclass
class Circuit:
    failures: int = 0
    open_until_ms: int = 0


class Circuits:
    """Per-host delivery health, shared by the inbox store (host_spoke) and delivery store."""

    def __init__(self) -> None:
        self.by_host: dict[str, Circuit] = {}

    def get(self, host: str) -> Circuit:
        return self.by_host.setdefault(host, Circuit())

    def reset(self, host: str) -> None:
        self.by_host[host] = Circuit()


@dataclass
class InboundRow:
    id: int
    record: ports.InboundRecord
    state: str = "pending"
    attempts: int = 0
    retry_at_ms: int = 0
    error: str | None = None


class MemoryInboxStore:
    def __init__(self, circuits: Circuits | None = None) -> None:
        self.circuits = circuits or Circuits()
        self.rows: list[InboundRow] = []
        self.spoke: list[tuple[str, int]] = []
        self.fail_store = False
        self.fail_finish = 0

    async def store_inbound(self, record: ports.InboundRecord) -> bool:
        if self.fail_store:
            raise OSError(28, "No space left on device")
        if any(row.record.activity_id == record.activity_id for row in self.rows):
            return False
        self.rows.append(InboundRow(id=len(self.rows) + 1, record=record))
        return True

    async def inbound_seen(self, activity_id: str) -> bool:
        return any(row.record.activity_id == activity_id for row in self.rows)

    async def claim_inbound(self, now_ms: int, limit: int) -> Sequence[ports.StoredInbound]:
        due = [r for r in self.rows if r.state == "pending" and r.retry_at_ms <= now_ms]
        claimed = []
        for row in sorted(due, key=lambda r: r.id)[:limit]:
            row.attempts += 1
            row.retry_at_ms = now_ms + INBOUND_LEASE_MS
            claimed.append(
                ports.StoredInbound(
                    id=row.id,
                    activity=json.loads(row.record.body),
                    actor_uri=row.record.actor_uri,
                    origin_host=row.record.origin_host,
                    attempts=row.attempts,
                )
            )
        return claimed

    async def finish_inbound(
        self, inbound_id: int, *, error: str | None, retry_at_ms: int | None
    ) -> None:
        if self.fail_finish:
            self.fail_finish -= 1
            raise OSError("disk I/O error")
        row = self.rows[inbound_id - 1]
        row.error = error
        if error is None:
            row.state = "done"
        elif retry_at_ms is None:
            row.state = "failed"
        else:
            row.retry_at_ms = retry_at_ms

    async def finish_inbound_done(self, inbound_ids: Sequence[int]) -> None:
        if self.fail_finish:  # one transaction: all or nothing
            self.fail_finish -= 1
            raise OSError("disk I/O error")
        for inbound_id in inbound_ids:
            await self.finish_inbound(inbound_id, error=None, retry_at_ms=None)

    async def host_spoke(self, host: str, now_ms: int) -> None:
        self.spoke.append((host, now_ms))
        self.circuits.reset(host)


@dataclass
class DeliveryRow:
    id: int
    inbox_url: str
    host: str
    body: bytes
    signer: ports.SigningKey
    activity_id: str
    created_ms: int
    state: str = "queued"
    attempts: int = 0
    next_attempt_ms: int = 0
    locked_until_ms: int | None = None
    last_status: int | None = None
    last_error: str | None = None
    outcomes: list[ports.DeliveryOutcome] = field(default_factory=list)


class MemoryDeliveryStore:
    def __init__(self, circuits: Circuits | None = None) -> None:
        self.circuits = circuits or Circuits()
        self.rows: list[DeliveryRow] = []
        self.claims = 0
        self.fail_claim = 0
        self.probes: list[int] = []
        self.fail_probe = 0

    def add(
        self,
        inbox_url: str,
        body: bytes,
        signer: ports.SigningKey,
        *,
        created_ms: int,
        activity_id: str = "https://beta.example/activities/1",
    ) -> DeliveryRow:
        row = DeliveryRow(
            id=len(self.rows) + 1,
            inbox_url=inbox_url,
            host=host_of_url(inbox_url),
            body=body,
            signer=signer,
            activity_id=activity_id,
            created_ms=created_ms,
            next_attempt_ms=created_ms,
        )
        self.rows.append(row)
        return row

    async def claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> Sequence[ports.DeliveryJob]:
        self.claims += 1
        if self.fail_claim:
            self.fail_claim -= 1
            raise OSError("database is locked")
        due = [
            r
            for r in self.rows
            if r.state == "queued"
            and r.next_attempt_ms <= now_ms
            and (r.locked_until_ms is None or r.locked_until_ms <= now_ms)
        ]
        jobs = []
        for row in sorted(due, key=lambda r: r.id)[:limit]:
            row.locked_until_ms = now_ms + lease_ms
            jobs.append(
                ports.DeliveryJob(
                    id=row.id,
                    inbox_url=row.inbox_url,
                    host=row.host,
                    body=row.body,
                    signer=row.signer,
                    attempts=row.attempts,
                    activity_id=row.activity_id,
                )
            )
        return jobs

    async def record_outcome(
        self, job: ports.DeliveryJob, outcome: ports.DeliveryOutcome, now_ms: int
    ) -> int | None:
        row = self.rows[job.id - 1]
        row.outcomes.append(outcome)
        row.locked_until_ms = None
        if row.state != "cancelled_by_policy":
            row.state = outcome.state
        if outcome.state == "queued" and outcome.next_attempt_ms is not None:
            row.next_attempt_ms = outcome.next_attempt_ms
        if not attempted(outcome):
            return None
        row.attempts += 1
        row.last_status, row.last_error = outcome.status, outcome.error
        circuit = self.circuits.get(job.host)
        if outcome.host_failed:
            circuit.failures += 1
            if circuit.failures >= CIRCUIT_THRESHOLD:
                circuit.open_until_ms = now_ms + circuit_open_ms(circuit.failures)
        else:
            self.circuits.reset(job.host)
        return None  # the catch-up of waiting rows is the SQLite store's (tests/federation)

    async def circuit_open_until(self, host: str) -> int:
        circuit = self.circuits.get(host)
        return circuit.open_until_ms if circuit.failures >= CIRCUIT_THRESHOLD else 0

    async def probe_waiting_hosts(self, now_ms: int, interval_ms: Callable[[int], int]) -> int:
        self.probes.append(now_ms)
        if self.fail_probe:
            self.fail_probe -= 1
            raise OSError("database is locked")
        return 0

    async def next_due_ms(self) -> int | None:
        due = [
            max(r.next_attempt_ms, r.locked_until_ms or 0) for r in self.rows if r.state == "queued"
        ]
        return min(due, default=None)

    async def created_ms(self, job_id: int) -> int:
        return self.rows[job_id - 1].created_ms
