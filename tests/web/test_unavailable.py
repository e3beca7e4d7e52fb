"""When another process holds the database (a backup tool, an admin's sqlite3 shell) or the
disk refuses writes, a person gets a clear 503 with Retry-After, never the 500 "something went
wrong" page, and nothing half-done is kept; writes queued behind a failed one are told at once
instead of waiting out the lock again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from quart import Quart

from server.storage import posts
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login, post_form

WAIT_MS = 300  # how long the app's writer waits for a lock here (10 s in production)


@contextmanager
def _locked(path: object) -> Iterator[None]:
    """Another process's write transaction on the instance database."""
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def _short_wait(app: Quart) -> None:
    def set_timeout(conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {WAIT_MS}")

    await context_of(app).db.write(set_timeout)


async def test_a_locked_database_answers_503_and_keeps_nothing(app: Quart, people: People) -> None:
    ctx = context_of(app)
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    await _short_wait(app)

    with _locked(ctx.config.db_path):
        refused = await post_form(client, "/posts", {"text": "Written while locked"})

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "nothing was changed" in await refused.get_data(as_text=True)
    page = await ctx.db.read(
        posts.select_profile_feed, people.alice.id, people.alice.id, before=None, limit=5
    )
    assert page.items == ()
    again = await post_form(client, "/posts", {"text": "Written after"})
    assert again.status_code == 303


async def test_writes_queued_behind_a_locked_one_fail_with_it(app: Quart) -> None:
    ctx = context_of(app)
    await _short_wait(app)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO login_failures VALUES ('k', 1, 1)")

    with _locked(ctx.config.db_path):
        first = asyncio.ensure_future(ctx.db.write(write))
        await asyncio.sleep(WAIT_MS / 6000)  # the first batch is now waiting for the lock
        queued = asyncio.ensure_future(ctx.db.write(write))
        errors = await asyncio.gather(first, queued, return_exceptions=True)

    assert all(isinstance(e, sqlite3.OperationalError) for e in errors), errors
    # One wait for both: the queued write heard the first one's failure.
    assert errors[0] is errors[1]
