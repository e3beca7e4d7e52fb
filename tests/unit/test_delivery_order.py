"""Order per receiving inbox: which activities wait for which (``vocab.ordering_key``) and
the claim that keeps it (``claim_deliveries``), on a real SQLite file.

Receivers undo a follow by the relationship and a like by the post, not by activity id: a
late Undo of the first follow would end the second one, so an unfollow waits for the
follow before it and the next follow waits for the unfollow."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from federation import vocab
from federation.ports import SigningKey
from server.storage import federation as fed
from server.storage import migrate
from server.storage.db import open_sync

US = "https://us.example/users/ann"
BOB = "https://them.example/users/bob"
NOTE = "https://them.example/notes/1"
INBOX = "https://them.example/inbox"
KEY = SigningKey(f"{US}#main-key", "pem")


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    connection = open_sync(tmp_path / "db.sqlite3")
    migrate.migrate(connection, backups_dir=tmp_path / "backups", now_ms=1)
    connection.execute(
        "INSERT INTO allowed_hosts (host, relation, note, added_at, added_by)"
        " VALUES ('them.example', 'partner', '', 1, 'test')"
    )
    return connection


def activity(kind: str, obj: Any, n: int) -> dict[str, Any]:
    return {"id": f"https://us.example/activities/{n}", "type": kind, "actor": US, "object": obj}


def queue(conn: sqlite3.Connection, act: dict[str, Any]) -> None:
    fed.insert_outbox(
        conn,
        activity_id=act["id"],
        activity_type=act["type"],
        actor_id=None,
        body=act,
        targets=[(INBOX, "them.example")],
        now_ms=1,
        ordering_key=vocab.ordering_key(act),
    )


def set_state(conn: sqlite3.Connection, act: dict[str, Any], state: str, due: int = 0) -> None:
    conn.execute(
        "UPDATE deliveries SET state = ?, next_attempt_at = ?, locked_until = 0"
        " WHERE outbox_id = (SELECT id FROM outbox_activities WHERE activity_id = ?)",
        (state, due, act["id"]),
    )


def claimed(conn: sqlite3.Connection) -> list[str]:
    return [job.activity_id for job in fed.claim_deliveries(conn, 1_000, 32, 60_000, KEY)]


@pytest.mark.parametrize("kind", ["Follow", "Like", "Announce"])
def test_a_redo_waits_for_the_undo_before_it(conn: sqlite3.Connection, kind: str) -> None:
    target = BOB if kind == "Follow" else NOTE
    first = activity(kind, target, 1)
    undo = activity("Undo", first, 2)
    again = activity(kind, target, 3)
    for act in (first, undo):
        queue(conn, act)
    set_state(conn, first, "delivered")
    set_state(conn, undo, "queued", due=10_000)  # told to come back later
    queue(conn, again)
    assert claimed(conn) == []  # the second follow would arrive before the unfollow
    set_state(conn, undo, "delivered")
    assert claimed(conn) == [again["id"]]


def test_unrelated_activities_do_not_wait(conn: sqlite3.Connection) -> None:
    waiting = activity("Follow", BOB, 1)
    queue(conn, waiting)
    set_state(conn, waiting, "queued", due=10_000)
    other = activity("Like", NOTE, 2)
    note = {"id": "https://us.example/notes/9", "type": "Note"}
    create = activity("Create", note, 3)
    for act in (other, create):
        queue(conn, act)
    assert claimed(conn) == [other["id"], create["id"]]


def test_ordering_keys() -> None:
    note = {"id": "https://us.example/notes/9", "type": "Note"}
    follow = activity("Follow", BOB, 1)
    assert vocab.ordering_key(follow) == f"Follow {US} {BOB}"
    assert vocab.ordering_key(activity("Undo", follow, 2)) == f"Follow {US} {BOB}"
    assert vocab.ordering_key(activity("Create", note, 3)) == note["id"]
    assert vocab.ordering_key(activity("Update", note, 4)) == note["id"]
    assert vocab.ordering_key(activity("Delete", note["id"], 5)) == note["id"]
    remote_follow = {"id": "https://them.example/f/1", "type": "Follow", "actor": BOB}
    accept = activity("Accept", remote_follow, 6)
    assert vocab.ordering_key(accept) == remote_follow["id"]  # a Reject later waits for it
    assert vocab.ordering_key({"type": "Undo", "object": 7}) is None
