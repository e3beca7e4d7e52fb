"""Work already accepted keeps moving when the wall clock steps back (an NTP correction, a
VM restored from a snapshot): nothing we queue is due at a time that lies in the future after
the step, and at start-up a retry or circuit pause further ahead than the longest delay we
ever set is due now."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from federation.delivery import MAX_DELAY_MS
from federation.ports import SigningKey
from server.storage import federation as fed
from server.storage import migrate
from server.storage.db import open_sync
from tests.support.records import inbound_record

BEFORE = 1_800_000_000_000  # when the work was accepted
AFTER = BEFORE - 30 * 60_000  # the clock, stepped back half an hour
INBOUND_DELAY_MS = 3_600_000
NO_KEY = SigningKey("https://ours.example/actor#main-key", "unused")


def _db(tmp_path: Path) -> sqlite3.Connection:
    conn = open_sync(tmp_path / "db.sqlite3")
    migrate.migrate(conn, backups_dir=tmp_path / "backups", now_ms=1)
    conn.execute("PRAGMA foreign_keys = OFF")  # deliveries here belong to no real actor
    return conn


def _accept_inbound(conn: sqlite3.Connection, n: int) -> None:
    fed.insert_inbound(conn, inbound_record(str(n), BEFORE))


def _queue_delivery(conn: sqlite3.Connection, n: int) -> None:
    fed.insert_outbox(
        conn,
        activity_id=f"https://ours.example/activities/{n}",
        activity_type="Create",
        actor_id=None,
        body={"id": f"https://ours.example/activities/{n}"},
        targets=[("https://partner.example/inbox", "partner.example")],
        now_ms=BEFORE,
    )


def _allow_partner(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO allowed_hosts (host, relation, added_at, added_by)"
        " VALUES ('partner.example', 'partner', 1, 'test')"
    )


def test_accepted_work_is_due_at_once_whatever_the_clock_says(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    _allow_partner(conn)
    _accept_inbound(conn, 1)
    _queue_delivery(conn, 1)

    assert len(fed.claim_inbound(conn, AFTER, 50, 60_000)) == 1
    assert len(fed.claim_deliveries(conn, AFTER, 50, 60_000, NO_KEY)) == 1


def test_start_up_makes_far_future_retries_and_pauses_due(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    _allow_partner(conn)
    _accept_inbound(conn, 1)
    _queue_delivery(conn, 1)
    _queue_delivery(conn, 2)
    # Set by a clock that was ahead: further out than any delay we ever choose.
    conn.execute("UPDATE inbox_activities SET next_attempt_at = ?", (AFTER + 2 * 3_600_000,))
    conn.execute("UPDATE deliveries SET next_attempt_at = ? WHERE id = 1", (AFTER + 8 * 3_600_000,))
    # A real retry, within the longest delay, keeps its time.
    conn.execute("UPDATE deliveries SET next_attempt_at = ? WHERE id = 2", (AFTER + 600_000,))
    conn.execute(
        "INSERT INTO host_health (host, consecutive_failures, circuit_open_until)"
        " VALUES ('partner.example', 12, ?)",
        (AFTER + 7 * 3_600_000,),
    )

    fed.release_leases(
        conn, AFTER, delivery_delay_ms=MAX_DELAY_MS, inbound_delay_ms=INBOUND_DELAY_MS
    )

    assert [r.id for r in fed.claim_inbound(conn, AFTER, 50, 60_000)] == [1]
    due = conn.execute("SELECT id FROM deliveries WHERE next_attempt_at <= ?", (AFTER,))
    assert [r[0] for r in due] == [1]
    assert fed.select_circuit(conn, "partner.example") == AFTER
