"""People and accounts: ``actors`` (local and remote), ``accounts``, ``profile_versions``,
``login_failures`` and ``audit_log``.

Functions take a ``sqlite3.Connection`` and run inside a transaction opened by
:class:`server.storage.db.Database` (``read`` or ``write``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.domain import Account, Actor
from server.storage.db import open_sync
from server.storage.notifications import count_unread
from server.storage.rows import ACTOR_COLUMNS, actor_from_row, actors_from_rows

PROFILE_FIELDS = ("display_name", "job_title", "department", "location", "contact", "bio_html")


@dataclass(frozen=True, slots=True)
class Credentials:
    account: Account
    password_hash: str


def _search_text(*parts: str) -> str:
    return " ".join(p.casefold() for p in parts if p)


def insert_local_user(
    conn: sqlite3.Connection,
    *,
    uri: str,
    username: str,
    host: str,
    display_name: str,
    password_hash: str,
    is_admin: bool,
    private_key_pem: str,
    public_key_pem: str,
    now_ms: int,
    one_time: bool = False,
) -> int:
    """Create a local actor and its account; raises sqlite3.IntegrityError if the name is taken."""
    cur = conn.execute(
        "INSERT INTO actors (uri, is_local, username, host, display_name, public_key_pem,"
        " search_text, created_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
        (
            uri,
            username,
            host,
            display_name,
            public_key_pem,
            _search_text(username, display_name),
            now_ms,
            now_ms,
        ),
    )
    actor_id = int(cur.lastrowid or 0)
    conn.execute(
        "INSERT INTO accounts (actor_id, password_hash, is_admin, private_key_pem, created_at,"
        " must_change_password) VALUES (?, ?, ?, ?, ?, ?)",
        (actor_id, password_hash, int(is_admin), private_key_pem, now_ms, int(one_time)),
    )
    return actor_id


def local_username_taken(conn: sqlite3.Connection, username: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM actors WHERE is_local = 1 AND username = ? COLLATE NOCASE", (username,)
    ).fetchone()
    return row is not None


def select_actor(conn: sqlite3.Connection, actor_id: int) -> Actor | None:
    row = conn.execute(f"SELECT {ACTOR_COLUMNS} FROM actors WHERE id = ?", (actor_id,)).fetchone()
    return actor_from_row(row) if row else None


def select_actor_by_uri(conn: sqlite3.Connection, uri: str) -> Actor | None:
    row = conn.execute(f"SELECT {ACTOR_COLUMNS} FROM actors WHERE uri = ?", (uri,)).fetchone()
    return actor_from_row(row) if row else None


def select_local_actor(conn: sqlite3.Connection, username: str) -> Actor | None:
    row = conn.execute(
        f"SELECT {ACTOR_COLUMNS} FROM actors WHERE is_local = 1 AND username = ? COLLATE NOCASE",
        (username,),
    ).fetchone()
    return actor_from_row(row) if row else None


# The actor columns of ``actors a``, for reads that join another table.
_ACTOR_COLUMNS_A = ", ".join("a." + c.strip() for c in ACTOR_COLUMNS.split(","))


def select_active_local_actor(conn: sqlite3.Connection, username: str) -> Actor | None:
    """The local person *username* if their account is active and not deleted: whom a
    partner may follow or address (see ``accounts.federated_person``)."""
    row = conn.execute(
        f"SELECT {_ACTOR_COLUMNS_A} FROM actors a JOIN accounts ac ON ac.actor_id = a.id"
        " WHERE a.is_local = 1 AND a.username = ? COLLATE NOCASE AND a.deleted_at IS NULL"
        " AND ac.is_active = 1",
        (username,),
    ).fetchone()
    return actor_from_row(row) if row else None


def select_actor_by_handle(conn: sqlite3.Connection, username: str, host: str) -> Actor | None:
    row = conn.execute(
        f"SELECT {ACTOR_COLUMNS} FROM actors WHERE host = ? AND username = ? COLLATE NOCASE",
        (host, username),
    ).fetchone()
    return actor_from_row(row) if row else None


def select_local_actors_by_names(
    conn: sqlite3.Connection, usernames: list[str]
) -> dict[str, Actor]:
    """Active local people by lower-cased username (for @mentions)."""
    if not usernames:
        return {}
    marks = ",".join("?" * len(usernames))
    rows = conn.execute(
        f"SELECT {_ACTOR_COLUMNS_A} FROM actors a JOIN accounts ac ON ac.actor_id = a.id"
        f" WHERE a.is_local = 1 AND ac.is_active = 1 AND lower(a.username) IN ({marks})",
        [u.lower() for u in usernames],
    ).fetchall()
    return {actor.username.lower(): actor for actor in actors_from_rows(rows)}


def select_credentials(conn: sqlite3.Connection, username: str) -> Credentials | None:
    row = conn.execute(
        "SELECT a.id, a.username, ac.password_hash, ac.is_admin, ac.is_active,"
        " ac.session_epoch, ac.created_at, ac.must_change_password"
        " FROM actors a JOIN accounts ac ON ac.actor_id = a.id"
        " WHERE a.is_local = 1 AND a.username = ? COLLATE NOCASE",
        (username,),
    ).fetchone()
    if row is None:
        return None
    return Credentials(_account(row), row["password_hash"])


def select_account(conn: sqlite3.Connection, actor_id: int) -> Account | None:
    row = conn.execute(
        "SELECT a.id, a.username, ac.is_admin, ac.is_active, ac.session_epoch, ac.created_at,"
        " ac.must_change_password FROM actors a JOIN accounts ac ON ac.actor_id = a.id"
        " WHERE a.id = ?",
        (actor_id,),
    ).fetchone()
    return _account(row) if row else None


def select_password_hash(conn: sqlite3.Connection, actor_id: int) -> str | None:
    row = conn.execute(
        "SELECT password_hash FROM accounts WHERE actor_id = ?", (actor_id,)
    ).fetchone()
    return str(row[0]) if row else None


def _account(row: sqlite3.Row) -> Account:
    return Account(
        actor_id=row["id"],
        username=row["username"],
        is_admin=bool(row["is_admin"]),
        is_active=bool(row["is_active"]),
        session_epoch=row["session_epoch"],
        created_at=row["created_at"],
        must_change_password=bool(row["must_change_password"]),
    )


@dataclass(frozen=True, slots=True)
class AccountListing:
    actor: Actor
    account: Account


def select_accounts(conn: sqlite3.Connection) -> list[AccountListing]:
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c.strip() for c in ACTOR_COLUMNS.split(','))},"
        " ac.is_admin, ac.is_active, ac.session_epoch, ac.must_change_password"
        " FROM actors a JOIN accounts ac ON ac.actor_id = a.id ORDER BY a.username"
    ).fetchall()
    return [
        AccountListing(actor, _account(r))
        for actor, r in zip(actors_from_rows(rows), rows, strict=True)
    ]


def update_password(
    conn: sqlite3.Connection, actor_id: int, password_hash: str, *, one_time: bool = False
) -> None:
    """Store a new hash and end every other session (the epoch is part of the cookie).
    *one_time*: someone else chose or saw it; its holder must choose their own next."""
    conn.execute(
        "UPDATE accounts SET password_hash = ?, session_epoch = session_epoch + 1,"
        " must_change_password = ? WHERE actor_id = ?",
        (password_hash, int(one_time), actor_id),
    )


def update_account_active(
    conn: sqlite3.Connection, actor_id: int, *, active: bool, now_ms: int
) -> bool:
    cur = conn.execute(
        "UPDATE accounts SET is_active = ?, deactivated_at = ?,"
        " session_epoch = session_epoch + 1 WHERE actor_id = ?",
        (int(active), None if active else now_ms, actor_id),
    )
    return cur.rowcount > 0


def update_profile(
    conn: sqlite3.Connection, actor_id: int, fields: Mapping[str, str | int], now_ms: int
) -> None:
    """Replace profile fields, keeping the previous profile in ``profile_versions``."""
    current = conn.execute(
        f"SELECT {', '.join(PROFILE_FIELDS)}, avatar_file, manually_approves, username"
        " FROM actors WHERE id = ?",
        (actor_id,),
    ).fetchone()
    if current is None:
        return
    previous = {k: current[k] for k in (*PROFILE_FIELDS, "avatar_file", "manually_approves")}
    conn.execute(
        "INSERT INTO profile_versions (actor_id, data_json, created_at) VALUES (?, ?, ?)",
        (actor_id, json.dumps(previous, sort_keys=True), now_ms),
    )
    merged = {**previous, **fields}
    assignments = ", ".join(f"{k} = ?" for k in fields)
    conn.execute(
        f"UPDATE actors SET {assignments}, search_text = ?, updated_at = ? WHERE id = ?",
        (
            *fields.values(),
            _search_text(
                current["username"],
                str(merged["display_name"] or ""),
                str(merged["job_title"] or ""),
                str(merged["department"] or ""),
                str(merged["location"] or ""),
            ),
            now_ms,
            actor_id,
        ),
    )


def search_local_people(
    conn: sqlite3.Connection, query: str, *, limit: int, offset: int
) -> list[Actor]:
    """Active colleagues whose name, title, department or location contain every word."""
    words = [w for w in query.casefold().split() if w][:8]
    clauses = " AND ".join("a.search_text LIKE ? ESCAPE '\\'" for _ in words) or "1"
    params: list[object] = [f"%{_like_escape(w)}%" for w in words]
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c.strip() for c in ACTOR_COLUMNS.split(','))} FROM actors a"
        " JOIN accounts ac ON ac.actor_id = a.id"
        f" WHERE a.is_local = 1 AND ac.is_active = 1 AND {clauses}"
        " ORDER BY lower(coalesce(nullif(a.display_name, ''), a.username)) LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return actors_from_rows(rows)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def count_local_users(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM accounts").fetchone()[0])


def select_private_key(conn: sqlite3.Connection, actor_id: int) -> str | None:
    row = conn.execute(
        "SELECT private_key_pem FROM accounts WHERE actor_id = ?", (actor_id,)
    ).fetchone()
    return str(row[0]) if row else None


# --- sign-in throttling -------------------------------------------------------------------


def select_login_failures(conn: sqlite3.Connection, key: str) -> tuple[int, int] | None:
    row = conn.execute(
        "SELECT failures, window_start FROM login_failures WHERE key = ?", (key,)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def record_login_failure(conn: sqlite3.Connection, key: str, now_ms: int, window_ms: int) -> int:
    """Count a failure in the current window and return the count."""
    conn.execute(
        "INSERT INTO login_failures (key, failures, window_start) VALUES (?, 1, ?)"
        " ON CONFLICT (key) DO UPDATE SET"
        " failures = CASE WHEN window_start < ? THEN 1 ELSE failures + 1 END,"
        " window_start = CASE WHEN window_start < ? THEN excluded.window_start"
        " ELSE window_start END",
        (key, now_ms, now_ms - window_ms, now_ms - window_ms),
    )
    return int(
        conn.execute("SELECT failures FROM login_failures WHERE key = ?", (key,)).fetchone()[0]
    )


def clear_login_failures(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))


def is_active_account(conn: sqlite3.Connection, actor_id: int) -> bool:
    """A local person who may sign in (False for deactivated accounts and remote people)."""
    row = conn.execute("SELECT is_active FROM accounts WHERE actor_id = ?", (actor_id,)).fetchone()
    return bool(row and row[0])


def session_is_valid(conn: sqlite3.Connection, actor_id: int, sid: str, epoch: int) -> bool:
    """Is this session still signed in: not signed out, the account active, and its password
    (epoch) unchanged since?"""
    row = conn.execute(
        "SELECT 1 FROM accounts WHERE actor_id = ? AND is_active = 1 AND session_epoch = ?"
        " AND NOT EXISTS (SELECT 1 FROM revoked_sessions WHERE sid = ?)",
        (actor_id, epoch, sid),
    ).fetchone()
    return row is not None


def revoke_session(conn: sqlite3.Connection, sid: str, now_ms: int, lifetime_ms: int) -> None:
    """Sign out session *sid* for good; forget revocations of sessions that expired anyway."""
    conn.execute(
        "INSERT OR IGNORE INTO revoked_sessions (sid, revoked_at) VALUES (?, ?)", (sid, now_ms)
    )
    conn.execute("DELETE FROM revoked_sessions WHERE revoked_at < ?", (now_ms - lifetime_ms,))


def forgive_login_failure(conn: sqlite3.Connection, key: str) -> None:
    """Take back one counted failure (an attempt counted in advance that succeeded)."""
    conn.execute("UPDATE login_failures SET failures = max(failures - 1, 0) WHERE key = ?", (key,))


def insert_audit(
    conn: sqlite3.Connection, *, actor_id: int | None, action: str, detail: str, now_ms: int
) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, actor_id, action, detail) VALUES (?, ?, ?, ?)",
        (now_ms, actor_id, action, detail),
    )


def append_audit(db_path: Path, *, action: str, detail: str, now_ms: int) -> None:
    """One audit entry by the system (no actor), through a connection of its own, for the
    command line while the server may run: SQLite's busy timeout makes it wait for the
    server's writer, never interleave with it."""
    conn = open_sync(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        insert_audit(conn, actor_id=None, action=action, detail=detail, now_ms=now_ms)
        conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: int
    actor_id: int | None
    action: str
    detail: str


def select_audit(
    conn: sqlite3.Connection, actions: Sequence[str], *, limit: int
) -> list[AuditEntry]:
    """The newest audit entries of the given actions, newest first."""
    marks = ", ".join("?" for _ in actions)
    rows = conn.execute(
        "SELECT at, actor_id, action, detail FROM audit_log"
        f" WHERE action IN ({marks}) ORDER BY id DESC LIMIT ?",
        (*actions, limit),
    ).fetchall()
    return [AuditEntry(int(r[0]), r[1], str(r[2]), str(r[3])) for r in rows]


UNREAD_CAP = 100  # the badge shows "99+" beyond; counting further would cost with no use


def select_viewer(
    conn: sqlite3.Connection, actor_id: int, sid: str, epoch: int
) -> tuple[Account, Actor, int] | None:
    """The signed-in person's account, actor and unread notifications (at most
    ``UNREAD_CAP``) in one read: it runs on every request, and the count is in the page so
    the badge needs neither JavaScript nor a second request. None when the session is no
    longer valid (:func:`session_is_valid`)."""
    if not session_is_valid(conn, actor_id, sid, epoch):
        return None
    account = select_account(conn, actor_id)
    if account is None:
        return None
    actor = select_actor(conn, actor_id)
    if actor is None:
        return None
    return account, actor, count_unread(conn, actor_id, cap=UNREAD_CAP)
