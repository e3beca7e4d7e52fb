"""Federation state: allowlist, remote actors and keys, the inbound archive, the outbox and its
delivery rows, per-host health, tombstones.

Invariants:
- ``inbox_activities.activity_id`` is UNIQUE: storing a repeat is a no-op.
- Delivery rows are never deleted: delivered, dead, held and cancelled rows stay visible.
- A claimed delivery carries a lease (``locked_until``); a crash mid-send only delays it.
- Removing a host from the allowlist cancels its queued deliveries in the same transaction,
  and claiming never hands out a delivery to a host that is not allowed (it is cancelled).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from federation.ports import DeliveryJob, InboundRecord, KnownKey, SigningKey, StoredInbound
from federation.types import RemoteActor

CIRCUIT_THRESHOLD = 10


# --- allowlist -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowedHost:
    host: str
    relation: str
    note: str
    added_at: int
    added_by: str
    removed_at: int | None
    removed_by: str | None


def upsert_allowed_host(
    conn: sqlite3.Connection, host: str, relation: str, note: str, by: str, now_ms: int
) -> None:
    conn.execute(
        "INSERT INTO allowed_hosts (host, relation, note, added_at, added_by)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET relation = excluded.relation,"
        " note = excluded.note, added_at = CASE WHEN removed_at IS NULL THEN added_at"
        " ELSE excluded.added_at END, added_by = CASE WHEN removed_at IS NULL THEN added_by"
        " ELSE excluded.added_by END, removed_at = NULL, removed_by = NULL",
        (host, relation, note, now_ms, by),
    )
    # Follows frozen by an earlier removal come back to life.
    conn.execute(
        "UPDATE follows SET state = 'accepted' WHERE state = 'frozen' AND (follower_id IN"
        " (SELECT id FROM actors WHERE host = ? AND is_local = 0) OR followee_id IN"
        " (SELECT id FROM actors WHERE host = ? AND is_local = 0))",
        (host, host),
    )


def remove_allowed_host(conn: sqlite3.Connection, host: str, by: str, now_ms: int) -> int:
    """Mark removed, cancel queued deliveries (kept visible), freeze follows. Returns the
    number of deliveries cancelled."""
    found = conn.execute(
        "UPDATE allowed_hosts SET removed_at = ?, removed_by = ? WHERE host = ?"
        " AND removed_at IS NULL",
        (now_ms, by, host),
    ).rowcount
    if not found:
        return -1
    cancelled = conn.execute(
        "UPDATE deliveries SET state = 'cancelled', finished_at = ?,"
        " last_error = 'host removed from the allowlist' WHERE host = ? AND state = 'queued'",
        (now_ms, host),
    ).rowcount
    # Only accepted follows freeze: re-allowing the host turns 'frozen' back into 'accepted',
    # so a pending request frozen here would come back accepted without anyone's approval.
    # Pending requests stay pending (they grant nothing; answering one is refused meanwhile).
    conn.execute(
        "UPDATE follows SET state = 'frozen' WHERE state = 'accepted' AND"
        " (follower_id IN (SELECT id FROM actors WHERE host = ? AND is_local = 0) OR"
        " followee_id IN (SELECT id FROM actors WHERE host = ? AND is_local = 0))",
        (host, host),
    )
    return cancelled


def select_host_relation(conn: sqlite3.Connection, host: str) -> str | None:
    """The relation of an allowed host (partner, supplier, customer); None if not allowed."""
    row = conn.execute(
        "SELECT relation FROM allowed_hosts WHERE host = ? AND removed_at IS NULL", (host,)
    ).fetchone()
    return str(row[0]) if row else None


def select_allowed_hosts(conn: sqlite3.Connection, *, include_removed: bool) -> list[AllowedHost]:
    where = "" if include_removed else " WHERE removed_at IS NULL"
    rows = conn.execute(
        "SELECT host, relation, note, added_at, added_by, removed_at, removed_by"
        f" FROM allowed_hosts{where} ORDER BY host"
    ).fetchall()
    return [AllowedHost(*r) for r in rows]


def select_active_hosts(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT host FROM allowed_hosts WHERE removed_at IS NULL")}


@dataclass(frozen=True, slots=True)
class InboundTrouble:
    """An inbound activity that was not applied: ``retrying`` or given up (``failed``)."""

    activity_id: str
    activity_type: str
    origin_host: str
    received_at: int
    attempts: int
    state: str
    error: str | None


_BACKLOG_COUNTED = 100_000  # beyond this the page says "more than"; counting on costs time


def select_inbound_backlog(conn: sqlite3.Connection) -> tuple[int, int | None]:
    """(activities received and not yet tried, up to ``_BACKLOG_COUNTED``; when the oldest
    of them was received, epoch ms). Retries are not counted here: they wait their backoff
    and are listed with their error. A backlog that only ages means nothing applies them."""
    waiting = (
        "FROM inbox_activities INDEXED BY inbox_activities_queue"
        " WHERE state = 'pending' AND last_error IS NULL"
    )
    count = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 {waiting} LIMIT ?)", (_BACKLOG_COUNTED,)
    ).fetchone()[0]
    oldest = conn.execute(f"SELECT received_at {waiting} ORDER BY id LIMIT 1").fetchone()
    return int(count), (int(oldest[0]) if oldest else None)


def select_inbound_trouble(
    conn: sqlite3.Connection, limit: int
) -> tuple[int, int, list[InboundTrouble]]:
    """(failed for good, retrying, the newest *limit* of them) of the inbound archive."""
    trouble = "state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL)"
    failed, retrying = conn.execute(
        f"SELECT coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'pending'), 0)"
        f" FROM inbox_activities INDEXED BY inbox_activities_trouble WHERE {trouble}"
    ).fetchone()
    rows = conn.execute(
        "SELECT activity_id, activity_type, origin_host, received_at, attempts, state,"
        f" last_error FROM inbox_activities INDEXED BY inbox_activities_trouble WHERE {trouble}"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    listed = [
        InboundTrouble(
            activity_id=str(r[0]),
            activity_type=str(r[1]),
            origin_host=str(r[2]),
            received_at=int(r[3]),
            attempts=int(r[4]),
            state="failed" if r[5] == "failed" else "retrying",
            error=r[6],
        )
        for r in rows
    ]
    return int(failed), int(retrying), listed


@dataclass(frozen=True, slots=True)
class HostHealth:
    host: str
    queued: int
    failing: int
    held: int
    dead: int
    cancelled: int
    last_success_at: int | None
    last_failure_at: int | None
    last_error: str | None
    circuit_open_until: int
    retry_after_until: int = 0
    consecutive_failures: int = 0


def select_host_health(conn: sqlite3.Connection) -> dict[str, HostHealth]:
    counts: dict[str, dict[str, int]] = {}
    for host, state, failing, n in conn.execute(
        # Not the delivered rows: they are the archive, and counting them grew with it.
        "SELECT host, state, attempts > 0, count(*) FROM deliveries INDEXED BY deliveries_open"
        " WHERE state IN ('queued', 'held', 'dead', 'cancelled') GROUP BY host, state,"
        " attempts > 0"
    ):
        bucket = counts.setdefault(host, {})
        bucket[state] = bucket.get(state, 0) + n
        if state == "queued" and failing:
            bucket["failing"] = bucket.get("failing", 0) + n
    health = {
        r[0]: r
        for r in conn.execute(
            "SELECT host, last_success_at, last_failure_at, last_error, circuit_open_until,"
            " retry_after_until, consecutive_failures FROM host_health"
        )
    }
    result: dict[str, HostHealth] = {}
    for host in set(counts) | set(health):
        c = counts.get(host, {})
        h = health.get(host)
        result[host] = HostHealth(
            host=host,
            queued=c.get("queued", 0),
            failing=c.get("failing", 0),
            held=c.get("held", 0),
            dead=c.get("dead", 0),
            cancelled=c.get("cancelled", 0),
            last_success_at=h[1] if h else None,
            last_failure_at=h[2] if h else None,
            last_error=h[3] if h else None,
            circuit_open_until=h[4] if h else 0,
            retry_after_until=h[5] if h else 0,
            consecutive_failures=h[6] if h else 0,
        )
    return result


# --- keys and actors -----------------------------------------------------------------------


def select_instance_key(conn: sqlite3.Connection) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT private_key_pem, public_key_pem FROM instance_keys WHERE id = 1"
    ).fetchone()
    return (row[0], row[1]) if row else None


def insert_instance_key(
    conn: sqlite3.Connection, private_pem: str, public_pem: str, now_ms: int
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO instance_keys (id, private_key_pem, public_key_pem, created_at)"
        " VALUES (1, ?, ?, ?)",
        (private_pem, public_pem, now_ms),
    )


def select_known_key(conn: sqlite3.Connection, key_id: str) -> KnownKey | None:
    row = conn.execute(
        "SELECT key_id, owner_uri, public_key_pem, last_seen_at FROM remote_keys"
        " WHERE key_id = ? ORDER BY last_seen_at DESC LIMIT 1",
        (key_id,),
    ).fetchone()
    return KnownKey(row[0], row[1], row[2], row[3]) if row else None


def upsert_known_key(conn: sqlite3.Connection, key: KnownKey) -> None:
    """Remember *key* as the current key of its id. Its ``last_seen_at`` is made later than
    any other key's of that id, even within one millisecond (a rotation announced right
    after the old key was fetched): the key read back is the one stored last."""
    conn.execute(
        "INSERT INTO remote_keys (key_id, public_key_pem, owner_uri, first_seen_at, last_seen_at)"
        " VALUES (:id, :pem, :owner, :at, max(:at, coalesce((SELECT max(last_seen_at) + 1"
        " FROM remote_keys WHERE key_id = :id AND public_key_pem != :pem), 0)))"
        " ON CONFLICT (key_id, public_key_pem) DO UPDATE SET"
        " last_seen_at = excluded.last_seen_at, owner_uri = excluded.owner_uri",
        {
            "id": key.key_id,
            "pem": key.public_key_pem,
            "owner": key.owner_uri,
            "at": key.fetched_at_ms,
        },
    )


def select_handle_holder(
    conn: sqlite3.Connection, host: str, username: str, uri: str
) -> tuple[int, str] | None:
    """(id, uri) of another actor than *uri* known as *username* on *host* (in any case)."""
    row = conn.execute(
        "SELECT id, uri FROM actors WHERE host = ? AND username = ? COLLATE NOCASE AND uri != ?"
        " LIMIT 1",
        (host, username, uri),
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def set_actor_username(conn: sqlite3.Connection, actor_id: int, username: str) -> None:
    conn.execute("UPDATE actors SET username = ? WHERE id = ?", (username, actor_id))


def is_handle_checked(conn: sqlite3.Connection, actor_id: int) -> bool:
    """Has the actor's server (WebFinger) confirmed its handle?"""
    row = conn.execute("SELECT handle_checked_at FROM actors WHERE id = ?", (actor_id,)).fetchone()
    return row is not None and row[0] is not None


def set_handle_checked(conn: sqlite3.Connection, actor_id: int, now_ms: int) -> None:
    conn.execute("UPDATE actors SET handle_checked_at = ? WHERE id = ?", (now_ms, actor_id))


def upsert_remote_actor(
    conn: sqlite3.Connection,
    actor: RemoteActor,
    *,
    summary_html: str,
    now_ms: int,
    username: str | None = None,
) -> int:
    """Insert or refresh a remote actor; endpoints may only be those parsed from its own
    origin (the parser checked); returns its id. *username*: the handle to store a new
    actor under, when its ``preferredUsername`` is another actor's (see services/remote)."""
    conn.execute(
        "INSERT INTO actors (uri, is_local, username, host, display_name, bio_html, avatar_url,"
        " profile_url, public_key_pem, manually_approves, search_text, created_at, updated_at,"
        " actor_type, inbox_url, shared_inbox_url, outbox_url, followers_url, following_url,"
        " key_id, fetched_at, wall_url) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?, ?, ?) ON CONFLICT (uri) DO UPDATE SET display_name = excluded.display_name,"
        " bio_html = excluded.bio_html, avatar_url = excluded.avatar_url,"
        " profile_url = excluded.profile_url, public_key_pem = excluded.public_key_pem,"
        " manually_approves = excluded.manually_approves, search_text = excluded.search_text,"
        " updated_at = excluded.updated_at, actor_type = excluded.actor_type,"
        " inbox_url = excluded.inbox_url, shared_inbox_url = excluded.shared_inbox_url,"
        " outbox_url = excluded.outbox_url, followers_url = excluded.followers_url,"
        " following_url = excluded.following_url, key_id = excluded.key_id,"
        " fetched_at = excluded.fetched_at, wall_url = excluded.wall_url, deleted_at = NULL",
        (
            actor.uri,
            username or actor.username,
            actor.host,
            actor.display_name[:200],
            summary_html,
            actor.icon_url,
            actor.url,
            actor.public_key_pem,
            int(actor.manually_approves),
            f"{actor.username} {actor.display_name}".casefold()[:400],
            now_ms,
            now_ms,
            actor.actor_type,
            actor.inbox,
            actor.shared_inbox,
            actor.outbox,
            actor.followers,
            actor.following,
            actor.key_id,
            now_ms,
            actor.wall,
        ),
    )
    return int(conn.execute("SELECT id FROM actors WHERE uri = ?", (actor.uri,)).fetchone()[0])


@dataclass(frozen=True, slots=True)
class Endpoints:
    actor_id: int
    uri: str
    host: str
    inbox: str | None
    shared_inbox: str | None
    followers: str | None


def select_endpoints(conn: sqlite3.Connection, actor_id: int) -> Endpoints | None:
    row = conn.execute(
        "SELECT id, uri, host, inbox_url, shared_inbox_url, followers_url FROM actors"
        " WHERE id = ? AND is_local = 0",
        (actor_id,),
    ).fetchone()
    return Endpoints(*row) if row else None


def select_remote_follower_inboxes(
    conn: sqlite3.Connection, actor_id: int
) -> list[tuple[str, str]]:
    """(inbox, host) of remote accepted followers, shared inbox where offered, deduplicated."""
    rows = conn.execute(
        "SELECT DISTINCT coalesce(a.shared_inbox_url, a.inbox_url), a.host FROM follows f"
        " JOIN actors a ON a.id = f.follower_id WHERE f.followee_id = ? AND f.state = 'accepted'"
        " AND a.is_local = 0 AND a.inbox_url IS NOT NULL AND a.deleted_at IS NULL",
        (actor_id,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def select_remote_contact_inboxes(conn: sqlite3.Connection, actor_id: int) -> list[tuple[str, str]]:
    """(inbox, host) of every remote person who follows or is followed by ``actor_id`` (any
    state), shared inbox where offered, deduplicated: who must hear of an account's deletion."""
    rows = conn.execute(
        "SELECT DISTINCT coalesce(a.shared_inbox_url, a.inbox_url), a.host FROM follows f"
        " JOIN actors a ON a.id = CASE WHEN f.followee_id = :me THEN f.follower_id"
        "   ELSE f.followee_id END"
        " WHERE (f.followee_id = :me OR f.follower_id = :me)"
        " AND a.is_local = 0 AND a.inbox_url IS NOT NULL AND a.deleted_at IS NULL",
        {"me": actor_id},
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def mark_actor_deleted(conn: sqlite3.Connection, actor_id: int, now_ms: int) -> None:
    conn.execute(
        "UPDATE actors SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now_ms, actor_id)
    )


# --- inbox ---------------------------------------------------------------------------------


def insert_inbound(conn: sqlite3.Connection, record: InboundRecord) -> bool:
    """Archive and queue an accepted activity, due at once (``next_attempt_at`` 0, not the
    arrival time: after the wall clock steps back, a time would lie in the future)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO inbox_activities (activity_id, activity_type, actor_uri,"
        " origin_host, key_id, target, headers_json, body, received_at, state, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        (
            record.activity_id,
            record.activity_type,
            record.actor_uri,
            record.origin_host,
            record.key_id,
            record.target,
            json.dumps(list(record.headers)),
            record.body,
            record.received_at_ms,
            0,
        ),
    )
    return cur.rowcount > 0


def inbound_exists(conn: sqlite3.Connection, activity_id: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM inbox_activities WHERE activity_id = ?", (activity_id,)
        ).fetchone()
        is not None
    )


def claim_inbound(
    conn: sqlite3.Connection, now_ms: int, limit: int, lease_ms: int
) -> list[StoredInbound]:
    rows = conn.execute(
        "SELECT id, body, actor_uri, origin_host, attempts FROM inbox_activities"
        " WHERE state = 'pending' AND next_attempt_at <= ? AND locked_until <= ?"
        " ORDER BY id LIMIT ?",
        (now_ms, now_ms, limit),
    ).fetchall()
    claimed: list[StoredInbound] = []
    for row in rows:
        # Claims are counted: a row whose handler crashes the process is eventually failed.
        conn.execute(
            "UPDATE inbox_activities SET locked_until = ?, attempts = attempts + 1 WHERE id = ?",
            (now_ms + lease_ms, row[0]),
        )
        try:
            activity: dict[str, Any] = json.loads(row[1])
        except ValueError:
            activity = {}
        claimed.append(StoredInbound(row[0], activity, row[2], row[3], row[4] + 1))
    return claimed


def finish_inbound_done(conn: sqlite3.Connection, inbound_ids: list[int], *, now_ms: int) -> None:
    conn.executemany(
        "UPDATE inbox_activities SET state = 'done', processed_at = ?, last_error = NULL,"
        " locked_until = 0 WHERE id = ?",
        [(now_ms, inbound_id) for inbound_id in inbound_ids],
    )


def finish_inbound(
    conn: sqlite3.Connection,
    inbound_id: int,
    *,
    error: str | None,
    retry_at_ms: int | None,
    now_ms: int,
) -> None:
    if error is None:
        conn.execute(
            "UPDATE inbox_activities SET state = 'done', processed_at = ?, last_error = NULL,"
            " locked_until = 0 WHERE id = ?",
            (now_ms, inbound_id),
        )
    elif retry_at_ms is not None:
        conn.execute(
            "UPDATE inbox_activities SET last_error = ?, next_attempt_at = ?, locked_until = 0"
            " WHERE id = ?",
            (error[:1000], retry_at_ms, inbound_id),
        )
    else:
        conn.execute(
            "UPDATE inbox_activities SET state = 'failed', last_error = ?, processed_at = ?,"
            " locked_until = 0 WHERE id = ?",
            (error[:1000], now_ms, inbound_id),
        )


def count_inbound(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        r[0]: r[1]
        for r in conn.execute("SELECT state, count(*) FROM inbox_activities GROUP BY state")
    }


# --- outbox and deliveries ----------------------------------------------------------------


def insert_outbox(
    conn: sqlite3.Connection,
    *,
    activity_id: str,
    activity_type: str,
    actor_id: int | None,
    body: dict[str, Any],
    targets: Sequence[tuple[str, str]],
    now_ms: int,
    ordering_key: str | None = None,
) -> int:
    """Record an emitted activity and one queued delivery per (inbox, host), deduplicated.

    *ordering_key*: what the activity is about (``vocab.ordering_key``); to any one inbox,
    activities with one key are sent one after the other, in the order recorded here."""
    cur = conn.execute(
        "INSERT INTO outbox_activities (activity_id, activity_type, actor_id, body, created_at,"
        " ordering_key) VALUES (?, ?, ?, ?, ?, ?)",
        (
            activity_id,
            activity_type,
            actor_id,
            json.dumps(body, separators=(",", ":")),
            now_ms,
            ordering_key,
        ),
    )
    outbox_id = int(cur.lastrowid or 0)
    # Due at once (0), not at now_ms, which a backwards step of the clock would put in the
    # future; fresh deliveries then go out in the order they were made (ORDER BY ..., id).
    conn.executemany(
        "INSERT OR IGNORE INTO deliveries (outbox_id, inbox_url, host, state, next_attempt_at,"
        " created_at, ordering_key) VALUES (?, ?, ?, 'queued', 0, ?, ?)",
        [(outbox_id, inbox, host, now_ms, ordering_key) for inbox, host in dict(targets).items()],
    )
    return outbox_id


def select_outbox_body(conn: sqlite3.Connection, activity_id: str) -> str | None:
    row = conn.execute(
        "SELECT body FROM outbox_activities WHERE activity_id = ?", (activity_id,)
    ).fetchone()
    return str(row[0]) if row else None


def claim_deliveries(
    conn: sqlite3.Connection, now_ms: int, limit: int, lease_ms: int, instance_key: SigningKey
) -> list[DeliveryJob]:
    # Defence in depth: whatever queued it, nothing is sent to a host that is not allowed now
    # (removal cancels in its own transaction; this also covers rows requeued since).
    conn.execute(
        "UPDATE deliveries SET state = 'cancelled', finished_at = ?,"
        " last_error = 'host is not on the allowlist' WHERE state = 'queued'"
        " AND next_attempt_at <= ? AND host NOT IN"
        " (SELECT host FROM allowed_hosts WHERE removed_at IS NULL)",
        (now_ms, now_ms),
    )
    rows = conn.execute(
        "SELECT d.id, d.inbox_url, d.host, o.body, d.attempts, o.activity_id, o.actor_id,"
        " a.username, ac.private_key_pem FROM deliveries d"
        " JOIN outbox_activities o ON o.id = d.outbox_id"
        " LEFT JOIN actors a ON a.id = o.actor_id LEFT JOIN accounts ac ON ac.actor_id = a.id"
        " WHERE d.state = 'queued' AND d.next_attempt_at <= ? AND d.locked_until <= ?"
        # Not while an earlier activity about the same thing still waits for (or is on its
        # way to) this inbox: retries and hand-backs reorder rows, receivers must not see it.
        " AND NOT EXISTS (SELECT 1 FROM deliveries ed INDEXED BY deliveries_ordering"
        "     WHERE ed.inbox_url = d.inbox_url AND ed.ordering_key = d.ordering_key"
        "     AND ed.outbox_id < d.outbox_id AND ed.state = 'queued'"
        "     AND ed.ordering_key IS NOT NULL)"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now_ms, now_ms, limit),
    ).fetchall()
    jobs: list[DeliveryJob] = []
    for row in rows:
        conn.execute(
            "UPDATE deliveries SET locked_until = ? WHERE id = ?", (now_ms + lease_ms, row[0])
        )
        if row[8]:
            uri = conn.execute("SELECT uri FROM actors WHERE id = ?", (row[6],)).fetchone()[0]
            signer = SigningKey(f"{uri}#main-key", row[8])
        else:
            signer = instance_key
        jobs.append(
            DeliveryJob(
                id=row[0],
                inbox_url=row[1],
                host=row[2],
                body=str(row[3]).encode("utf-8"),
                signer=signer,
                attempts=row[4],
                activity_id=row[5],
            )
        )
    return jobs


def record_delivery(
    conn: sqlite3.Connection,
    delivery_id: int,
    host: str,
    *,
    state: str,
    counted: bool,
    status: int | None,
    error: str | None,
    next_attempt_ms: int | None,
    host_failed: bool,
    now_ms: int,
    circuit_ms: Callable[[int], int],
    wait_until_ms: int | None = None,
) -> int | None:
    """Record an attempt's outcome and the host's health. Returns, when this delivery was
    the host's first success after failures, how many of its queued deliveries that waited
    were made due now; otherwise None."""
    finished = state in ("delivered", "dead", "held")
    conn.execute(
        "UPDATE deliveries SET state = CASE WHEN state = 'cancelled' THEN state ELSE ? END,"
        " attempts = attempts + ?, last_status = coalesce(?, last_status),"
        " last_error = CASE WHEN ? THEN ? ELSE last_error END,"
        " next_attempt_at = coalesce(?, next_attempt_at), locked_until = 0,"
        " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
        (
            state,
            int(counted),
            status,
            int(counted),  # a skip keeps the last real error visible to admins
            error[:500] if error else None,
            next_attempt_ms,
            int(finished),
            now_ms,
            delivery_id,
        ),
    )
    if not counted:
        return None  # a skip (circuit open) counts nothing and leaves the circuit alone
    if not host_failed:
        # Any answer that is not a host failure (even a 4xx) shows the host is up. A 2xx
        # after failures also sends what waited out a backoff for it now, not each at the
        # end of its own (a 401 or a redirect would only earn the same answer for all).
        catch_up = state == "delivered" and host_needs_reset(conn, host)
        conn.execute(
            "INSERT INTO host_health (host, consecutive_failures, circuit_open_until,"
            " last_success_at) VALUES (?, 0, 0, ?) ON CONFLICT (host) DO UPDATE SET"
            " consecutive_failures = 0, circuit_open_until = 0,"
            " last_success_at = CASE WHEN ? THEN excluded.last_success_at"
            " ELSE host_health.last_success_at END",
            (host, now_ms if state == "delivered" else None, int(state == "delivered")),
        )
        return _queue_due_now(conn, host, now_ms) if catch_up else None
    conn.execute(
        "INSERT INTO host_health (host, consecutive_failures, last_failure_at, last_error,"
        " retry_after_until) VALUES (?, 1, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET"
        " consecutive_failures = consecutive_failures + 1,"
        " last_failure_at = excluded.last_failure_at, last_error = excluded.last_error,"
        " retry_after_until = max(retry_after_until, excluded.retry_after_until)",
        (host, now_ms, (error or f"HTTP {status}")[:500], wait_until_ms or 0),
    )
    failures = conn.execute(
        "SELECT consecutive_failures FROM host_health WHERE host = ?", (host,)
    ).fetchone()[0]
    if failures >= CIRCUIT_THRESHOLD:
        conn.execute(
            "UPDATE host_health SET circuit_open_until = ? WHERE host = ?",
            (now_ms + circuit_ms(failures), host),
        )
    return None


def host_needs_reset(conn: sqlite3.Connection, host: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM host_health WHERE host = ? AND (consecutive_failures > 0"
        " OR circuit_open_until > 0)",
        (host,),
    ).fetchone()
    return row is not None


def reset_host(conn: sqlite3.Connection, host: str, now_ms: int) -> None:
    """The host spoke to us (verified signed request): it is up; retry its queue now."""
    changed = conn.execute(
        "UPDATE host_health SET consecutive_failures = 0, circuit_open_until = 0"
        " WHERE host = ? AND (consecutive_failures > 0 OR circuit_open_until > 0)",
        (host,),
    ).rowcount
    if changed:
        _queue_due_now(conn, host, now_ms)


def _queue_due_now(conn: sqlite3.Connection, host: str, now_ms: int) -> int:
    """Every queued delivery to *host* due now (backoffs forgotten), unless the host asked
    us to wait (``Retry-After``) and that time has not come; how many waited."""
    return int(
        conn.execute(
            "UPDATE deliveries SET next_attempt_at = 0"
            " WHERE host = ? AND state = 'queued' AND next_attempt_at > 0"
            " AND NOT EXISTS (SELECT 1 FROM host_health"
            "     WHERE host = ? AND retry_after_until > ?)",
            (host, host, now_ms),
        ).rowcount
    )


def hosts_due_a_probe(
    conn: sqlite3.Connection, now_ms: int, interval_ms: Callable[[int], int]
) -> list[str]:
    """The hosts :func:`probe_waiting_hosts` would probe now (a read: mostly there are none)."""
    return [
        str(host)
        for host, failures, last_failure_at in conn.execute(
            "SELECT host, consecutive_failures, coalesce(last_failure_at, 0) FROM host_health"
            " WHERE consecutive_failures > 0 AND retry_after_until <= ?"
            " AND host IN (SELECT host FROM allowed_hosts WHERE removed_at IS NULL)",
            (now_ms,),
        )
        if last_failure_at <= now_ms - interval_ms(failures) or last_failure_at > now_ms
    ]


def probe_waiting_hosts(
    conn: sqlite3.Connection, now_ms: int, interval_ms: Callable[[int], int]
) -> int:
    """A probe for each allowed host that failed (network error, timeout, 5xx) and was not
    tried for ``interval_ms(consecutive failures)``: its oldest queued delivery that nothing
    must precede is made due now, past an open circuit. Its success makes the rest due at
    once (:func:`record_delivery`), so a partner that is back hears from us within about one
    probe interval, however long it was away and however long its backoffs grew. A host that
    asked us to wait (``Retry-After``, until then) is not probed; nor one whose oldest
    delivery is in flight. A last failure in the future (the wall clock stepped back) does
    not hold probes up. Returns how many hosts were probed.

    Cost: the small ``host_health`` table, then per failing host an index walk in id order
    that stops at the first sendable row, so a queue of a million rows costs what one of ten
    does.
    """
    probed = 0
    for host in hosts_due_a_probe(conn, now_ms, interval_ms):
        row = conn.execute(
            "SELECT d.id, d.locked_until FROM deliveries d INDEXED BY deliveries_host"
            " WHERE d.host = ? AND d.state = 'queued'"
            " AND NOT EXISTS (SELECT 1 FROM deliveries ed INDEXED BY deliveries_ordering"
            "     WHERE ed.inbox_url = d.inbox_url AND ed.ordering_key = d.ordering_key"
            "     AND ed.outbox_id < d.outbox_id AND ed.state = 'queued'"
            "     AND ed.ordering_key IS NOT NULL)"
            " ORDER BY d.id LIMIT 1",
            (host,),
        ).fetchone()
        if row is None or row[1] > now_ms:
            continue
        conn.execute("UPDATE deliveries SET next_attempt_at = 0 WHERE id = ?", (row[0],))
        conn.execute(
            "UPDATE host_health SET circuit_open_until = ?"
            " WHERE host = ? AND circuit_open_until > ?",
            (now_ms, host, now_ms),
        )
        probed += 1
    return probed


def select_circuit(conn: sqlite3.Connection, host: str) -> int:
    """0 while the host has fewer than the threshold of consecutive failures; otherwise the
    stored time, which stays set after it passes (half-open) until a success or reset."""
    row = conn.execute(
        "SELECT circuit_open_until, consecutive_failures FROM host_health WHERE host = ?",
        (host,),
    ).fetchone()
    if row is None or row[1] < CIRCUIT_THRESHOLD:
        return 0
    return int(row[0])


def select_delivery_created(conn: sqlite3.Connection, delivery_id: int) -> int:
    """When the delivery's retry horizon started: when it was made, or last resent."""
    row = conn.execute(
        "SELECT coalesce(resent_at, created_at) FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def select_next_due(conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT min(max(next_attempt_at, locked_until)) FROM deliveries WHERE state = 'queued'"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def resend_held(conn: sqlite3.Connection, host: str | None, now_ms: int) -> tuple[int, int]:
    """Admin action: put held (and dead) deliveries back in the queue, with a whole retry
    horizon of their own from now, and close their hosts' circuits: the admin's word that the
    partner is back should be tried at once, not after the circuit's cool-off. For *host*,
    its queued deliveries waiting out a backoff are made due now too. Returns (requeued,
    made due now)."""
    where = "state IN ('held', 'dead')" + (" AND host = ?" if host else "")
    params: tuple[Any, ...] = (host,) if host else ()
    hosts = [
        str(r[0])
        for r in conn.execute(f"SELECT DISTINCT host FROM deliveries WHERE {where}", params)
    ]
    count = conn.execute(
        f"UPDATE deliveries SET state = 'queued', next_attempt_at = 0, attempts = 0,"
        f" finished_at = NULL, resent_at = ? WHERE {where}",
        (now_ms, *params),
    ).rowcount
    if host is not None and host not in hosts:
        hosts.append(host)
    conn.executemany(
        "UPDATE host_health SET consecutive_failures = 0, circuit_open_until = 0,"
        " retry_after_until = 0 WHERE host = ?",
        [(h,) for h in hosts],
    )
    hurried = _queue_due_now(conn, host, now_ms) if host is not None else 0
    return count, hurried


def insert_tombstone(conn: sqlite3.Connection, uri: str, actor_id: int, now_ms: int) -> None:
    """*actor_id* deleted (or undid) *uri*: a later activity of theirs with it is ignored."""
    conn.execute(
        "INSERT OR IGNORE INTO tombstones (uri, actor_id, deleted_at) VALUES (?, ?, ?)",
        (uri, actor_id, now_ms),
    )


def is_tombstoned(conn: sqlite3.Connection, uri: str, actor_id: int) -> bool:
    """Did *actor_id* delete or undo *uri* before (0: a tombstone from before they were kept
    per actor, which stops everyone)?"""
    row = conn.execute(
        "SELECT 1 FROM tombstones WHERE uri = ? AND actor_id IN (?, 0)", (uri, actor_id)
    ).fetchone()
    return row is not None


# --- what outgoing activities are built from ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """A person a post is addressed to, with what delivery needs."""

    actor_id: int
    uri: str
    username: str
    host: str
    is_local: bool
    inbox: str | None
    shared_inbox: str | None
    deleted: bool = False
    wall_url: str | None = None  # the FEP-400e wall a partner advertises


@dataclass(frozen=True, slots=True)
class PostForFederation:
    id: int
    uri: str
    url: str | None
    author_id: int
    author_username: str
    author_is_local: bool
    visibility: str
    content_html: str
    created_at: int
    edited_at: int | None
    deleted_at: int | None
    version: int
    in_reply_to_uri: str | None
    wall_owner: Party | None
    recipients: tuple[Party, ...]
    tags: tuple[str, ...]


def _party(row: sqlite3.Row) -> Party:
    return Party(
        actor_id=row["id"],
        uri=row["uri"],
        username=row["username"],
        host=row["host"],
        is_local=bool(row["is_local"]),
        inbox=row["inbox_url"],
        shared_inbox=row["shared_inbox_url"],
        deleted=row["deleted_at"] is not None,
        wall_url=row["wall_url"],
    )


_PARTY = (
    "a.id, a.uri, a.username, a.host, a.is_local, a.inbox_url, a.shared_inbox_url, a.deleted_at,"
    " a.wall_url"
)


def select_party(conn: sqlite3.Connection, actor_id: int) -> Party | None:
    row = conn.execute(f"SELECT {_PARTY} FROM actors a WHERE a.id = ?", (actor_id,)).fetchone()
    return _party(row) if row else None


def select_post_for_federation(conn: sqlite3.Connection, post_id: int) -> PostForFederation | None:
    row = conn.execute(
        "SELECT p.id, p.uri, p.url, p.author_id, au.username, au.is_local, p.visibility,"
        " p.content_html, p.created_at, p.edited_at, p.deleted_at, p.version,"
        " p.in_reply_to_uri, p.wall_owner_id FROM posts p JOIN actors au ON au.id = p.author_id"
        " WHERE p.id = ?",
        (post_id,),
    ).fetchone()
    if row is None:
        return None
    recipients = tuple(
        _party(r)
        for r in conn.execute(
            f"SELECT {_PARTY} FROM post_recipients pr JOIN actors a ON a.id = pr.actor_id"
            " WHERE pr.post_id = ? ORDER BY a.id",
            (post_id,),
        )
    )
    tags = tuple(
        r[0] for r in conn.execute("SELECT tag FROM post_tags WHERE post_id = ?", (post_id,))
    )
    return PostForFederation(
        id=row[0],
        uri=row[1],
        url=row[2],
        author_id=row[3],
        author_username=row[4],
        author_is_local=bool(row[5]),
        visibility=row[6],
        content_html=row[7],
        created_at=row[8],
        edited_at=row[9],
        deleted_at=row[10],
        version=row[11],
        in_reply_to_uri=row[12],
        wall_owner=select_party(conn, row[13]) if row[13] is not None else None,
        recipients=recipients,
        tags=tags,
    )


def select_public_key_pem(conn: sqlite3.Connection, actor_id: int) -> str | None:
    row = conn.execute("SELECT public_key_pem FROM actors WHERE id = ?", (actor_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def release_leases(
    conn: sqlite3.Connection, now_ms: int, *, delivery_delay_ms: int, inbound_delay_ms: int
) -> tuple[int, int]:
    """At start-up (the one process that runs the workers): work claimed by a process that
    died is due again at once instead of when its lease would have run out.

    Also, any retry or circuit pause set further ahead than the longest delay we ever set
    (``*_delay_ms``) was set by a clock that has since stepped back: it is due now rather than
    hours late."""
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ? WHERE state = 'queued' AND next_attempt_at > ?",
        (now_ms, now_ms + delivery_delay_ms),
    )
    conn.execute(
        "UPDATE host_health SET circuit_open_until = ? WHERE circuit_open_until > ?",
        (now_ms, now_ms + delivery_delay_ms),
    )
    conn.execute(
        "UPDATE inbox_activities SET next_attempt_at = ? WHERE state = 'pending'"
        " AND next_attempt_at > ?",
        (now_ms, now_ms + inbound_delay_ms),
    )
    deliveries = conn.execute(
        "UPDATE deliveries SET locked_until = 0 WHERE state = 'queued' AND locked_until > 0"
    ).rowcount
    inbound = conn.execute(
        "UPDATE inbox_activities SET locked_until = 0 WHERE state = 'pending' AND locked_until > 0"
    ).rowcount
    return deliveries, inbound
