"""The seams between the federation pipeline and the application that hosts it.

``federation`` never imports ``server``: the inbox, dispatcher and delivery worker talk to the
application only through these Protocols, which ``server`` implements over its database.
Every method is async and every durable effect happens in the implementation's own
transaction; the pipeline never holds a transaction across network I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KnownKey:
    """A remote public key we hold, bound to the actor that owns it."""

    key_id: str
    owner_uri: str
    public_key_pem: str
    fetched_at_ms: int


@dataclass(frozen=True, slots=True)
class SigningKey:
    """Who signs an outgoing request: key id and private key of a local or instance actor."""

    key_id: str
    private_key_pem: str


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A verified inbound request, as archived before we answer 202."""

    activity_id: str
    activity_type: str
    actor_uri: str
    origin_host: str
    key_id: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class StoredInbound:
    id: int
    activity: Mapping[str, Any]
    actor_uri: str
    origin_host: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One claimed delivery: POST ``body`` to ``inbox_url`` signed by ``signer``."""

    id: int
    inbox_url: str
    host: str
    body: bytes
    signer: SigningKey
    attempts: int
    activity_id: str


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What happened to an attempt, decided by the delivery worker.

    ``state`` is ``delivered``, ``queued`` (retry at ``next_attempt_ms``), ``dead`` (final
    refusal) or ``held`` (retry horizon passed; kept for an admin to resend).
    ``wait_until_ms``: the host answered 429 or 503 with a ``Retry-After`` that ends then;
    until it does, nothing may hurry the host's queue.
    """

    state: str
    status: int | None
    error: str | None
    next_attempt_ms: int | None
    host_failed: bool
    wait_until_ms: int | None = None


class Allowlist(Protocol):
    async def is_allowed(self, host: str) -> bool:
        """Is this normalized host (``host`` or ``host:port``) allowed to federate now?"""
        ...


class KeyStore(Protocol):
    async def known_key(self, key_id: str, *, fresh: bool = False) -> KnownKey | None:
        """The stored key; *fresh*: as stored now, not as remembered in memory (another
        process may have replaced it, e.g. from the owner's ``Update``)."""
        ...

    async def remember_key(self, key: KnownKey) -> None: ...


class InboxStore(Protocol):
    async def store_inbound(self, record: InboundRecord) -> bool:
        """Archive and queue; False when the activity id was already stored (a no-op)."""
        ...

    async def inbound_seen(self, activity_id: str) -> bool: ...

    async def claim_inbound(self, now_ms: int, limit: int) -> Sequence[StoredInbound]: ...

    async def finish_inbound(
        self, inbound_id: int, *, error: str | None, retry_at_ms: int | None
    ) -> None: ...

    async def finish_inbound_done(self, inbound_ids: Sequence[int]) -> None:
        """Mark several rows done at once (``finish_inbound`` with no error, in one write)."""
        ...

    async def host_spoke(self, host: str, now_ms: int) -> None:
        """A signed request from ``host`` verified: reset its delivery circuit."""
        ...


class DeliveryStore(Protocol):
    async def claim_due(self, now_ms: int, limit: int, lease_ms: int) -> Sequence[DeliveryJob]: ...

    async def record_outcome(
        self, job: DeliveryJob, outcome: DeliveryOutcome, now_ms: int
    ) -> int | None:
        """Record the attempt; when it was the host's first success after failures, how
        many of its queued deliveries that waited are due now (else None)."""
        ...

    async def circuit_open_until(self, host: str) -> int:
        """Epoch ms until which new attempts to ``host`` wait (0 when closed)."""
        ...

    async def probe_waiting_hosts(self, now_ms: int, interval_ms: Callable[[int], int]) -> int:
        """Make the oldest sendable queued delivery of each failing host not tried for
        ``interval_ms(consecutive failures)`` due now, past its circuit; how many hosts."""
        ...

    async def next_due_ms(self) -> int | None: ...
