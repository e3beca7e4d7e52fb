"""Hot-path queries cost the same however large the archive grows.

Rows are never deleted (applied inbound activities, delivered deliveries and old posts are
the compliance archive), so a query that walks past them gets slower every day. Each test
runs one storage function against a small and a twenty times larger history and compares
the SQLite virtual-machine steps it took: a missing or unused index shows up as a cost that
grows with the history, whatever the machine's speed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.ports import SigningKey
from server.storage import federation as fed
from server.storage import follows, migrate, posts
from server.storage.db import open_sync
from server.storage.notifications import count_unread
from server.storage.users import UNREAD_CAP

SMALL = 500
LARGE = 10_000
NOW = 1_800_000_000_000


def _fresh(path: Path) -> sqlite3.Connection:
    conn = open_sync(path)
    migrate.migrate(conn, backups_dir=path.parent / "backups", now_ms=1)
    # The history rows below reference nothing real; only the queries' cost is under test.
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def _steps(conn: sqlite3.Connection, work: Callable[[], object]) -> int:
    counted = 0

    def tick() -> int:
        nonlocal counted
        counted += 1
        return 0

    conn.set_progress_handler(tick, 10)
    try:
        work()
    finally:
        conn.set_progress_handler(None, 0)
    return counted * 10


def _history_inbound(conn: sqlite3.Connection, applied: int) -> None:
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO inbox_activities (activity_id, activity_type, actor_uri, origin_host,"
        " key_id, target, headers_json, body, received_at, state, next_attempt_at,"
        " processed_at) SELECT 'https://p.example/a/' || i, 'Create', 'https://p.example/u',"
        " 'p.example', 'https://p.example/u#k', '/inbox', '{}', zeroblob(1500), i, 'done', i, i"
        " FROM n",
        (applied,),
    )
    for i in range(3):  # what is waiting now, after the whole history
        conn.execute(
            "INSERT INTO inbox_activities (activity_id, activity_type, actor_uri, origin_host,"
            " key_id, target, headers_json, body, received_at, state, next_attempt_at)"
            " VALUES (?, 'Create', 'https://p.example/u', 'p.example', 'k', '/inbox', '{}',"
            " '{}', ?, 'pending', ?)",
            (f"https://p.example/new/{i}", NOW, NOW),
        )


def _history_tags(conn: sqlite3.Connection, tagged_posts: int) -> int:
    """Other posts' hashtags, then one post of our own with two; returns its id."""
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO post_tags (tag, post_id) SELECT 'tag' || (i % 50), 1000 + i FROM n",
        (tagged_posts,),
    )
    conn.execute(
        "INSERT INTO actors (id, uri, is_local, username, host, created_at, updated_at)"
        " VALUES (1, 'https://us.example/users/ann', 1, 'ann', 'us.example', 1, 1)"
    )
    conn.execute(
        "INSERT INTO posts (id, uri, author_id, visibility, thread_root_id, content_html,"
        " created_at) VALUES (1, 'https://us.example/p/1', 1, 'public', 1, '<p>x</p>', 1)"
    )
    conn.executemany("INSERT INTO post_tags (tag, post_id) VALUES (?, 1)", [("alpha",), ("beta",)])
    return 1


def _history_deliveries(conn: sqlite3.Connection, delivered: int) -> None:
    conn.execute(
        "INSERT INTO outbox_activities (id, activity_id, activity_type, body, created_at)"
        " VALUES (1, 'https://us.example/a/1', 'Create', '{}', 1)"
    )
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO deliveries (outbox_id, inbox_url, host, state, next_attempt_at,"
        " created_at) SELECT 1, 'https://h' || (i % 5) || '.example/inbox/' || i,"
        " 'h' || (i % 5) || '.example', 'delivered', i, i FROM n",
        (delivered,),
    )
    conn.execute(
        "INSERT INTO deliveries (outbox_id, inbox_url, host, state, next_attempt_at,"
        " created_at, attempts) VALUES (1, 'https://h1.example/inbox', 'h1.example', 'queued',"
        " ?, ?, 2)",
        (NOW, NOW),
    )


def _cost(
    tmp_path: Path,
    size: int,
    seed: Callable[[sqlite3.Connection, int], object],
    work: Callable[[sqlite3.Connection, object], object],
) -> int:
    conn = _fresh(tmp_path / f"{size}.sqlite3")
    seeded = seed(conn, size)
    return _steps(conn, lambda: work(conn, seeded))


def _assert_flat_cost(
    tmp_path: Path,
    seed: Callable[[sqlite3.Connection, int], object],
    work: Callable[[sqlite3.Connection, object], object],
) -> None:
    _assert_flat(_cost(tmp_path, SMALL, seed, work), _cost(tmp_path, LARGE, seed, work))


def _assert_flat(small: int, large: int) -> None:
    # Twenty times the history; an index lookup grows by a step or two of B-tree depth,
    # a scan by the factor itself.
    assert large < small * 2, f"cost grew with the history: {small} -> {large} steps"


def test_claiming_inbound_work_does_not_walk_the_applied_archive(tmp_path: Path) -> None:
    def claim(conn: sqlite3.Connection, _: object) -> object:
        claimed = fed.claim_inbound(conn, NOW, 50, 60_000)
        assert len(claimed) == 3  # the waiting ones, none of the applied
        return claimed

    _assert_flat_cost(tmp_path, _history_inbound, claim)


def test_reading_and_replacing_a_posts_hashtags_is_by_post(tmp_path: Path) -> None:
    def read_and_edit(conn: sqlite3.Connection, post_id: object) -> object:
        assert isinstance(post_id, int)
        found = fed.select_post_for_federation(conn, post_id)
        assert found is not None and sorted(found.tags) == ["alpha", "beta"]
        posts.update_post_content(
            conn,
            post_id,
            source="x #gamma",
            content_html="<p>x</p>",
            recipient_ids=[],
            tags=["gamma"],
            now_ms=NOW,
        )
        return found

    _assert_flat_cost(tmp_path, _history_tags, read_and_edit)


def test_delivery_health_does_not_count_the_delivered_archive(tmp_path: Path) -> None:
    def health(conn: sqlite3.Connection, _: object) -> object:
        found = fed.select_host_health(conn)
        assert found["h1.example"].queued == 1 and found["h1.example"].failing == 1
        return found

    _assert_flat_cost(tmp_path, _history_deliveries, health)


def _history_of_one_note(conn: sqlite3.Connection, delivered: int) -> None:
    """*delivered* Updates of one note already delivered to an inbox, then 50 more queued
    behind a first one that waits for a retry (a note edited often while its partner is
    down)."""
    total = delivered + 50
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO outbox_activities (id, activity_id, activity_type, body, created_at,"
        " ordering_key) SELECT i, 'https://us.example/a/' || i, 'Update', '{}', i,"
        " 'https://us.example/notes/1' FROM n",
        (total,),
    )
    conn.execute(
        "INSERT INTO deliveries (outbox_id, inbox_url, host, state, next_attempt_at,"
        " created_at, ordering_key) SELECT id, 'https://h.example/inbox', 'h.example',"
        " CASE WHEN id <= :done THEN 'delivered' ELSE 'queued' END,"
        " CASE WHEN id = :done + 1 THEN :later ELSE 0 END, id, ordering_key"
        " FROM outbox_activities",
        {"done": delivered, "later": NOW + 60_000},
    )
    conn.execute(
        "INSERT INTO allowed_hosts (host, relation, note, added_at, added_by)"
        " VALUES ('h.example', 'partner', '', 1, 'test')"
    )


def test_keeping_order_per_inbox_does_not_walk_what_was_delivered(tmp_path: Path) -> None:
    def claim(conn: sqlite3.Connection, _: object) -> object:
        claimed = fed.claim_deliveries(conn, NOW, 32, 60_000, SigningKey("k", "pem"))
        assert claimed == []  # every queued Update waits for the first one
        return claimed

    _assert_flat_cost(tmp_path, _history_of_one_note, claim)


def test_the_unread_count_read_on_every_page_stops_at_its_cap(tmp_path: Path) -> None:
    def seed(conn: sqlite3.Connection, size: int) -> object:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO notifications (recipient_id, kind, actor_id, created_at)"
            " SELECT 1, 'like', 2, i FROM n",
            (size,),
        )
        return None

    def viewer_count(conn: sqlite3.Connection, _: object) -> object:
        found = count_unread(conn, 1, cap=UNREAD_CAP)
        assert found == UNREAD_CAP
        return found

    _assert_flat_cost(tmp_path, seed, viewer_count)


def _history_likes(conn: sqlite3.Connection, size: int) -> object:
    """The author's long notification history, then one like of post 7 by actor 2."""
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
        " SELECT 1, 'like', 3 + i, 1000 + i, i FROM n",
        (size,),
    )
    conn.execute("INSERT INTO likes (actor_id, post_id, created_at) VALUES (2, 7, 1)")
    conn.execute(
        "INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
        " VALUES (1, 'like', 2, 7, 1)"
    )
    return None


def _unlike(conn: sqlite3.Connection, _: object) -> object:
    assert posts.delete_like(conn, 2, 7)
    left = conn.execute("SELECT count(*) FROM notifications WHERE post_id = 7").fetchone()
    assert left[0] == 0
    return None


def _history_followers(conn: sqlite3.Connection, size: int) -> object:
    """Person 1 was followed by many and mentioned often; then person 2 follows too."""
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
        " SELECT 1, CASE i % 2 WHEN 0 THEN 'follow' ELSE 'mention' END, 3 + i,"
        " CASE i % 2 WHEN 0 THEN NULL ELSE 1000 + i END, i FROM n",
        (size,),
    )
    conn.execute(
        "INSERT INTO follows (follower_id, followee_id, state, created_at)"
        " VALUES (2, 1, 'accepted', 1)"
    )
    conn.execute(
        "INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
        " VALUES (1, 'follow', 2, NULL, 1)"
    )
    return None


def _unfollow(conn: sqlite3.Connection, _: object) -> object:
    assert follows.delete_follow(conn, 2, 1)
    left = conn.execute(
        "SELECT count(*) FROM notifications WHERE recipient_id = 1 AND actor_id = 2"
        " AND post_id IS NULL"
    ).fetchone()
    assert left[0] == 0
    return None


def _claim(conn: sqlite3.Connection, _: object) -> object:
    return fed.claim_inbound(conn, NOW, 50, 60_000)


def _tags_of(conn: sqlite3.Connection, post_id: object) -> object:
    assert isinstance(post_id, int)
    return fed.select_post_for_federation(conn, post_id)


def test_taking_a_like_back_finds_its_notification_by_post(tmp_path: Path) -> None:
    _assert_flat_cost(tmp_path, _history_likes, _unlike)


def test_an_ended_follow_finds_its_notification_by_the_two_people(tmp_path: Path) -> None:
    _assert_flat_cost(tmp_path, _history_followers, _unfollow)


@pytest.mark.parametrize(
    ("index", "seed", "work"),
    [
        ("inbox_activities_queue", _history_inbound, _claim),
        ("post_tags_post", _history_tags, _tags_of),
        ("notifications_post", _history_likes, _unlike),
        ("notifications_follow", _history_followers, _unfollow),
    ],
)
def test_the_guard_notices_a_missing_index(
    tmp_path: Path,
    index: str,
    seed: Callable[[sqlite3.Connection, int], object],
    work: Callable[[sqlite3.Connection, object], object],
) -> None:
    """Without the index the same comparison fails: the tests above can fail."""

    def seed_without_index(conn: sqlite3.Connection, size: int) -> object:
        conn.execute(f"DROP INDEX {index}")
        return seed(conn, size)

    small = _cost(tmp_path, SMALL, seed_without_index, work)
    large = _cost(tmp_path, LARGE, seed_without_index, work)
    with pytest.raises(AssertionError, match="grew with the history"):
        _assert_flat(small, large)
