"""The federation allowlist: which hosts we federate with, in what relation, and their health.

Used by the ``steelyard federation`` CLI and the admin page ``/admin/federation``; both call
these functions, so the rules below hold whichever way an admin works.

Invariants:

- Hosts are stored and compared only in canonical form (:func:`federation.hosts.normalize_host`
  after trimming the surrounding whitespace of a form field, with the default port of the
  scheme we would use dropped, exactly as the federation policy canonicalizes URLs). Anything
  that is not plainly a host (userinfo, path, scheme, empty labels…) is refused with
  :class:`InvalidInput`, never "cleaned up" into a different host.
- Our own host is never on the list.
- Every change and its audit row are committed in one transaction.
- Removal never deletes: the entry stays (``removed_at``/``removed_by``), queued deliveries to
  the host become ``cancelled`` and are kept for the record, and follows with its actors are
  frozen (``server.storage.federation.remove_allowed_host``). Adding the host again thaws them.
- Resending only touches hosts that are currently allowed: held deliveries to a removed host
  stay where they are.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from dataclasses import dataclass

from federation.delivery import probe_interval_ms
from federation.hosts import normalize_host
from server.errors import InvalidInput, NotFound
from server.services.context import Context
from server.storage import federation as fed
from server.storage import users

RELATIONS = ("partner", "supplier", "customer")
NOTE_LIMIT = 500
BY_LIMIT = 100
# How much of a refused input is echoed back in an error message.
_ECHO_LIMIT = 80


@dataclass(frozen=True, slots=True)
class HostRow:
    """One allowlist entry (current or removed) with the delivery health of its host."""

    host: str
    relation: str
    note: str
    added_at: int
    added_by: str
    removed_at: int | None
    removed_by: str | None
    queued: int
    failing: int
    held: int
    dead: int
    cancelled: int
    last_success_at: int | None
    last_failure_at: int | None
    last_error: str | None
    circuit: str  # "closed", "open" (not trying until the breaker's time) or "half-open"
    circuit_open_until: int
    # When the next attempt may go while paused: the breaker's time, or the next probe
    # (a minute or ten after the last failure), or the end of the host's Retry-After.
    next_try_at: int = 0
    asked_to_wait: bool = False  # the host answered 429/503 with a Retry-After not yet over

    @property
    def allowed(self) -> bool:
        return self.removed_at is None

    @property
    def state(self) -> str:
        return "allowed" if self.removed_at is None else "removed"

    @property
    def resendable(self) -> int:
        """Deliveries an admin may put back in the queue (held after the horizon, or dead)."""
        return self.held + self.dead

    @property
    def health(self) -> tuple[str, str] | None:
        """Delivery health in a few words, and its tone (``success``, ``warning`` or
        ``danger``), for an admin who looks at the list; None for a removed host."""
        if not self.allowed:
            return None
        if self.resendable:
            return f"{self.resendable} not delivered: resend when it is back", "danger"
        if self.asked_to_wait:
            return "Asked us to wait", "warning"
        if self.circuit == "open":
            return "Not answering: paused", "danger"
        if self.failing or self.circuit == "half-open":
            return "Retrying", "warning"
        if self.queued:
            return "Sending", "success"
        return "Healthy", "success"

    @property
    def recovered(self) -> bool:
        """The last error is older than the last success: history, not the present."""
        return (self.last_success_at or 0) > (self.last_failure_at or 0) > 0

    @property
    def last_error_words(self) -> str:
        """The last delivery error in plain words, then the technical detail."""
        return plain_delivery_error(self.last_error or "")


# The failure kinds our transport reports, as an admin would say them.
_ERROR_WORDS = {
    "connect": "Could not connect (refused or unreachable)",
    "timeout": "No answer in time",
    "dns": "Host name not found",
    "tls": "Secure connection (TLS certificate) failed",
    "too-large": "Answer too large",
    "protocol": "Unreadable answer",
    "refused-address": "Address refused (not a public address)",
    "refused-scheme": "Plain http refused",
    "bad-url": "Unusable inbox address",
}


def plain_delivery_error(error: str) -> str:
    kind, sep, _ = error.partition(":")
    words = _ERROR_WORDS.get(kind.strip())
    if words is None or not sep:
        return error
    return f"{words}. ({error})"


def canonical_host(ctx: Context, value: str) -> str:
    """The canonical spelling of an admin-typed host, or :class:`InvalidInput`."""
    raw = value.strip()
    if not raw:
        raise InvalidInput(
            "Enter a host name, e.g. partner.example or partner.example:8443.", field="host"
        )
    try:
        host = normalize_host(raw)
    except ValueError:
        shown = raw if len(raw) <= _ECHO_LIMIT else raw[:_ECHO_LIMIT] + "…"
        raise InvalidInput(
            f"{shown!r} is not a valid host name: enter only the host, e.g. partner.example"
            " or partner.example:8443 (no scheme, user, path or spaces).",
            field="host",
        ) from None
    # The policy drops the scheme's default port from URLs (https://h:443/ is host h): an
    # entry spelled with it would never match, so store it the way it will be compared.
    default_port = 443 if ctx.federator.policy.scheme_for(host) == "https" else 80
    suffix = f":{default_port}"
    if host.endswith(suffix):
        host = host[: -len(suffix)]
    return host


def _clean_by(by: str) -> str:
    cleaned = "".join(ch for ch in by if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:BY_LIMIT] or "unknown"


def _clean_note(note: str) -> str:
    cleaned = " ".join(note.split())
    if any(unicodedata.category(ch)[0] == "C" for ch in cleaned):
        raise InvalidInput("The note may not contain control characters.", field="note")
    if len(cleaned) > NOTE_LIMIT:
        raise InvalidInput(f"The note is too long (max {NOTE_LIMIT} characters).", field="note")
    return cleaned


def _find(conn: sqlite3.Connection, host: str) -> fed.AllowedHost | None:
    for entry in fed.select_allowed_hosts(conn, include_removed=True):
        if entry.host == host:
            return entry
    return None


async def allow(
    ctx: Context,
    host: str,
    *,
    relation: str,
    note: str = "",
    by: str,
    actor_id: int | None = None,
) -> str:
    """Put *host* on the allowlist (or change its relation and note, or add it back after a
    removal). *by* is recorded as who added it; *actor_id* is the admin's actor for the audit
    log (``None`` for the CLI). Returns the canonical host."""
    canonical = canonical_host(ctx, host)
    if canonical == ctx.federator.host:
        raise InvalidInput(
            f"{canonical} is this instance's own host; it cannot be allowed.", field="host"
        )
    if relation not in RELATIONS:
        raise InvalidInput(
            f"The relation must be one of: {', '.join(RELATIONS)}.", field="relation"
        )
    cleaned_note = _clean_note(note)
    who = _clean_by(by)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        before = _find(conn, canonical)
        fed.upsert_allowed_host(conn, canonical, relation, cleaned_note, who, now)
        if before is None or before.removed_at is not None:
            action = "federation.allow"
        else:
            action = "federation.update"
        users.insert_audit(
            conn,
            actor_id=actor_id,
            action=action,
            detail=f"{canonical} as {relation} by {who}",
            now_ms=now,
        )

    await ctx.db.write(tx)
    ctx.federator.allowlist.changed()
    return canonical


async def deny(ctx: Context, host: str, *, by: str, actor_id: int | None = None) -> int:
    """Remove *host* from the allowlist. Its queued deliveries are cancelled (kept, never
    sent) and follows with its actors are frozen, in the same transaction as the audit row.
    Returns the number of deliveries cancelled."""
    canonical = canonical_host(ctx, host)
    who = _clean_by(by)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int:
        cancelled = fed.remove_allowed_host(conn, canonical, who, now)
        if cancelled < 0:
            entry = _find(conn, canonical)
            if entry is not None:
                raise NotFound(f"{canonical} was already removed from the allowlist.")
            raise NotFound(f"{canonical} is not on the allowlist.")
        users.insert_audit(
            conn,
            actor_id=actor_id,
            action="federation.deny",
            detail=f"{canonical} by {who}; {cancelled} queued deliveries cancelled",
            now_ms=now,
        )
        return cancelled

    cancelled = await ctx.db.write(tx)
    # From this moment its requests get 403, in every process of the instance.
    ctx.federator.allowlist.changed()
    return cancelled


async def listing(ctx: Context) -> list[HostRow]:
    """Every entry, current and removed, ordered by host, with its delivery health."""
    now = ctx.clock.now_ms()

    def read(
        conn: sqlite3.Connection,
    ) -> tuple[list[fed.AllowedHost], dict[str, fed.HostHealth]]:
        return fed.select_allowed_hosts(conn, include_removed=True), fed.select_host_health(conn)

    entries, health = await ctx.db.read(read)
    rows: list[HostRow] = []
    for entry in entries:
        h = health.get(entry.host)
        open_until = h.circuit_open_until if h else 0
        if open_until == 0:
            circuit = "closed"
        elif open_until > now:
            circuit = "open"
        else:
            circuit = "half-open"
        wait_until = h.retry_after_until if h else 0
        next_try = 0
        if wait_until > now:
            next_try = wait_until
        elif circuit == "open" and h is not None:
            # The worker probes a failing host a minute (later ten) after its last failure.
            last = min(h.last_failure_at or now, now)  # a failure "ahead": the clock stepped back
            probe_at = last + probe_interval_ms(h.consecutive_failures)
            next_try = min(open_until, max(probe_at, now))
        rows.append(
            HostRow(
                host=entry.host,
                relation=entry.relation,
                note=entry.note,
                added_at=entry.added_at,
                added_by=entry.added_by,
                removed_at=entry.removed_at,
                removed_by=entry.removed_by,
                queued=h.queued if h else 0,
                failing=h.failing if h else 0,
                held=h.held if h else 0,
                dead=h.dead if h else 0,
                cancelled=h.cancelled if h else 0,
                last_success_at=h.last_success_at if h else None,
                last_failure_at=h.last_failure_at if h else None,
                last_error=h.last_error if h else None,
                circuit=circuit,
                circuit_open_until=open_until,
                next_try_at=next_try,
                asked_to_wait=wait_until > now,
            )
        )
    return rows


async def resend(
    ctx: Context, host: str | None, *, by: str, actor_id: int | None = None
) -> tuple[int, int]:
    """Put held and dead deliveries back in the queue, and make the queued ones waiting out
    a backoff due now, with the host's pause lifted: for *host*, or for every allowed host
    when *host* is ``None``. A removed host is refused. Returns (requeued, made due now)."""
    canonical = canonical_host(ctx, host) if host is not None else None
    who = _clean_by(by)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> tuple[int, int]:
        if canonical is None:
            targets = sorted(fed.select_active_hosts(conn))
        else:
            entry = _find(conn, canonical)
            if entry is None:
                raise NotFound(f"{canonical} is not on the allowlist.")
            if entry.removed_at is not None:
                raise NotFound(
                    f"{canonical} was removed from the allowlist; add it again before resending."
                )
            targets = [canonical]
        done = [fed.resend_held(conn, target, now) for target in targets]
        count, hurried = sum(d[0] for d in done), sum(d[1] for d in done)
        users.insert_audit(
            conn,
            actor_id=actor_id,
            action="federation.resend",
            detail=f"{canonical or 'all allowed hosts'} by {who}; {count} deliveries requeued,"
            f" {hurried} made due now",
            now_ms=now,
        )
        return count, hurried

    result = await ctx.db.write(tx)
    ctx.federator.wake()  # a running delivery worker picks them up now (no-op in the CLI)
    return result


# --- messages shared by the CLI and the admin page ----------------------------------------


def added_message(host: str, relation: str) -> str:
    return f"{host} added as {relation}."


def removed_message(host: str, cancelled: int) -> str:
    if cancelled == 0:
        return f"{host} removed: there were no queued deliveries to cancel."
    noun = "delivery" if cancelled == 1 else "deliveries"
    return f"{host} removed: {cancelled} queued {noun} cancelled and kept for the record."


def resent_message(host: str | None, count: int, hurried: int = 0) -> str:
    where = host or "all allowed hosts"
    waiting = ""
    if hurried:
        waits = "delivery that waited" if hurried == 1 else "deliveries that waited"
        go = "goes" if hurried == 1 else "go"
        waiting = f" {hurried} queued {waits} for a retry {go} out now."
    if count == 0:
        return f"No held deliveries for {where}.{waiting or ' Nothing was waiting either.'}"
    noun = "delivery" if count == 1 else "deliveries"
    return f"{count} held {noun} for {where} queued again.{waiting}"
