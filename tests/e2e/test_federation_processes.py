"""Two real ``steelyard serve`` processes federating over 127.0.0.1, killed with SIGKILL.

"acme" and "partner" are development instances (``http://127.0.0.1:PORT``) that allow each
other through ``steelyard federation allow``. People act through the web UI over HTTP
(sign in, People search for ``@name@host``, the follow and compose forms); the tests read
each instance's SQLite database read-only to check the outcome.

The delivery worker retries a failed host after 30 s × 2^n. A verified signed POST from that
host resets its backoff (SECURITY.md §3.3: "a signed inbound POST from the domain resets the
breaker"), so once a killed receiver is back, the tests make it *speak*: its person follows
someone new on acme. That exercises the reset path and keeps each test to seconds instead of
waiting out a 24-36 s backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.federation_processes import (
    Browser,
    Instance,
    new_instance,
    processes,
    rows,
    wait_for,
)

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # any single federation step; each normally takes well under 2 s


@dataclass
class Pair:
    acme: Instance
    partner: Instance

    def ensure_running(self) -> None:
        for instance in (self.acme, self.partner):
            proc = instance.server.proc
            if proc is None or proc.poll() is not None:
                instance.server.start()

    def diagnose(self) -> str:
        parts = []
        for instance in (self.acme, self.partner):
            deliveries = rows(
                instance.db,
                "SELECT state, count(*), max(attempts), group_concat(DISTINCT last_error)"
                " FROM deliveries GROUP BY state",
            )
            inbound = rows(
                instance.db,
                "SELECT activity_type, state, count(*) FROM inbox_activities"
                " GROUP BY activity_type, state",
            )
            parts.append(
                f"\n{instance.name}: deliveries {deliveries}; inbound {inbound}\n"
                f"{instance.server.log_path.read_text(errors='replace')[-1500:]}"
            )
        return "".join(parts)


async def _bob_follows(pair: Pair, username: str) -> None:
    """partner's bob follows *username* on acme through the web UI; wait for the Accept."""
    acme, partner = pair.acme, pair.partner
    async with Browser(partner, "bob") as bob:
        await bob.follow(f"{username}@{acme.host}")
    await wait_for(
        lambda: rows(
            partner.db,
            "SELECT 1 FROM follows f JOIN actors a ON a.id = f.followee_id"
            " JOIN actors b ON b.id = f.follower_id"
            " WHERE a.uri = ? AND b.username = 'bob' AND b.is_local = 1"
            " AND f.state = 'accepted'",
            (f"{acme.base}/users/{username}",),
        ),
        within=DEADLINE,
        what=f"partner's bob to follow acme's {username} (Follow, then Accept)",
        diagnose=pair.diagnose,
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """acme (alice, plus people bob can follow later) and partner (bob); bob follows alice."""
    root = tmp_path_factory.mktemp("federation-processes")
    with processes() as group:
        acme = new_instance(root, "acme", group)
        partner = new_instance(root, "partner", group)
        for name in ("alice", "carol", "dave", "erin"):
            acme.create_user(name)
        partner.create_user("bob", "Bob Partner")
        acme.allow(partner.host)
        partner.allow(acme.host)
        acme.server.start()
        partner.server.start()
        result = Pair(acme, partner)
        asyncio.run(_bob_follows(result, "alice"))
        yield result


async def _publish(pair: Pair, texts: list[str]) -> list[str]:
    """alice posts each text (Followers and Public alternately); returns the post URIs."""
    async with Browser(pair.acme, "alice") as alice:
        for index, text in enumerate(texts):
            await alice.publish(text, "followers" if index % 2 == 0 else "public")
    uris: list[str] = []
    for text in texts:
        found = rows(
            pair.acme.db,
            "SELECT uri FROM posts WHERE content_html LIKE ?",
            (f"%{text}%",),
        )
        assert len(found) == 1, (text, found)
        uris.append(found[0][0])
    return uris


def _deliveries(pair: Pair, uris: list[str]) -> list[tuple[Any, ...]]:
    """acme's delivery rows to partner for the Creates of *uris*: (uri, state, attempts,
    locked_until)."""
    marks = ",".join("?" * len(uris))
    return rows(
        pair.acme.db,
        "SELECT substr(o.activity_id, 1, length(o.activity_id) - 9), d.state, d.attempts,"
        " d.locked_until FROM deliveries d JOIN outbox_activities o ON o.id = d.outbox_id"
        f" WHERE d.host = ? AND o.activity_type = 'Create' AND o.activity_id IN ({marks})",
        (pair.partner.host, *[f"{uri}/activity" for uri in uris]),
    )


async def _waiting_for_retry(pair: Pair, uris: list[str]) -> None:
    """Wait until the worker has been through every delivery to the dead partner: each one
    failed (connection refused) or was put off because partner's circuit opened after ten
    consecutive failures, and none is claimed right now."""

    def settled() -> bool:
        found = rows(
            pair.acme.db,
            "SELECT d.state, d.attempts, d.locked_until, d.next_attempt_at > d.created_at"
            " FROM deliveries d JOIN outbox_activities o ON o.id = d.outbox_id"
            f" WHERE d.host = ? AND o.activity_id IN ({','.join('?' * len(uris))})",
            (pair.partner.host, *[f"{uri}/activity" for uri in uris]),
        )
        return len(found) == len(uris) and all(
            state == "queued" and locked == 0 and (attempts >= 1 or deferred)
            for state, attempts, locked, deferred in found
        )

    await wait_for(
        settled,
        within=DEADLINE,
        what="every delivery to the dead partner to fail (or be put off) and wait for retry",
        diagnose=pair.diagnose,
    )


def _copies_at_partner(pair: Pair, uris: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(uris))
    found = dict(
        rows(
            pair.partner.db,
            f"SELECT uri, count(*) FROM posts WHERE uri IN ({marks}) GROUP BY uri",
            uris,
        )
    )
    return {uri: int(found.get(uri, 0)) for uri in uris}


def _inbound_at_partner(pair: Pair, uris: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(uris))
    found = dict(
        rows(
            pair.partner.db,
            "SELECT activity_id, count(*) FROM inbox_activities"
            f" WHERE activity_id IN ({marks}) GROUP BY activity_id",
            [f"{uri}/activity" for uri in uris],
        )
    )
    return {uri: int(found.get(f"{uri}/activity", 0)) for uri in uris}


async def _all_arrive_exactly_once(pair: Pair, uris: list[str], texts: list[str]) -> None:
    await wait_for(
        lambda: all(n >= 1 for n in _copies_at_partner(pair, uris).values()),
        within=DEADLINE,
        what=f"all {len(uris)} posts at partner",
        diagnose=pair.diagnose,
    )
    await wait_for(
        lambda: all(state == "delivered" for _, state, _, _ in _deliveries(pair, uris)),
        within=DEADLINE,
        what="acme to record every delivery as delivered",
        diagnose=pair.diagnose,
    )
    deliveries = _deliveries(pair, uris)
    assert sorted(uri for uri, *_ in deliveries) == sorted(uris), "one delivery row per post"
    assert set(_copies_at_partner(pair, uris).values()) == {1}, _copies_at_partner(pair, uris)
    assert set(_inbound_at_partner(pair, uris).values()) == {1}, _inbound_at_partner(pair, uris)
    async with Browser(pair.partner, "bob") as bob:
        feed = await bob.home()
    counts = {text: feed.count(text) for text in texts}
    assert set(counts.values()) == {1}, f"each post once in bob's home feed: {counts}"


async def test_receiver_killed_with_deliveries_queued_gets_each_exactly_once(
    pair: Pair,
) -> None:
    pair.ensure_running()
    pair.partner.server.kill9()

    texts = [f"while partner was down no. {i:02d} k9r" for i in range(20)]
    uris = await _publish(pair, texts)
    await _waiting_for_retry(pair, uris)
    assert all(n == 0 for n in _copies_at_partner(pair, uris).values())

    started = time.monotonic()
    pair.partner.server.start()
    # partner speaks (a signed Follow): acme resets the backoff for partner's host.
    await _bob_follows(pair, "carol")
    await _all_arrive_exactly_once(pair, uris, texts)
    print(f"\n  receiver restart -> 20 posts delivered in {time.monotonic() - started:.1f} s")


async def test_sender_killed_with_queued_deliveries_loses_and_duplicates_nothing(
    pair: Pair,
) -> None:
    """acme dies (SIGKILL) holding queued deliveries and posts it had just accepted."""
    pair.ensure_running()
    pair.partner.server.kill9()
    texts = [f"queued when acme died no. {i:02d} k9s" for i in range(10)]
    uris = await _publish(pair, texts)
    await _waiting_for_retry(pair, uris)
    pair.acme.server.kill9()

    started = time.monotonic()
    pair.acme.server.start()
    pair.partner.server.start()
    # Every post acme answered 303 for survived the SIGKILL, with its delivery row.
    assert len(_deliveries(pair, uris)) == len(uris)
    await _bob_follows(pair, "dave")
    await _all_arrive_exactly_once(pair, uris, texts)
    print(f"\n  sender restart -> 10 posts delivered in {time.monotonic() - started:.1f} s")


class SlowRedelivery(AssertionError):
    """Deliveries claimed by the killed process were not retried promptly after restart."""


@contextlib.contextmanager
def _frozen(instance: Instance) -> Iterator[None]:
    """SIGSTOP the server: the kernel still accepts connections, nobody answers them."""
    proc = instance.server.proc
    assert proc is not None and proc.poll() is None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


async def test_sender_killed_mid_send_redelivers_exactly_once_after_restart(
    pair: Pair,
) -> None:
    """acme dies while its POSTs are on the wire (partner frozen, so none is answered)."""
    pair.ensure_running()
    texts = [f"in flight when acme died no. {i:02d} k9f" for i in range(8)]
    with _frozen(pair.partner):
        uris = await _publish(pair, texts)
        # The worker claims a batch and waits for all of it, so while a request hangs on
        # the frozen partner the later posts stay unclaimed: some in flight, some queued.
        await wait_for(
            lambda: (
                len(_deliveries(pair, uris)) == len(uris)
                and any(locked > 0 for _, _, _, locked in _deliveries(pair, uris))
            ),
            within=5,
            what="acme to claim deliveries (requests hanging on the frozen partner)",
            diagnose=pair.diagnose,
        )
        await asyncio.sleep(0.5)  # let the claimed requests reach partner's socket
        pair.acme.server.kill9()
        in_flight = {uri for uri, _, _, locked in _deliveries(pair, uris) if locked > 0}
    # partner resumes and may still apply the requests that reached it before acme died.

    started = time.monotonic()
    pair.acme.server.start()
    # Nothing was lost: every post and its delivery row survived the SIGKILL. (The ones
    # never claimed may already be delivered: the worker starts before the server answers.)
    after = _deliveries(pair, uris)
    assert len(after) == len(uris)
    assert all(state in ("queued", "delivered") for _, state, _, _ in after), after
    try:
        await wait_for(
            lambda: all(state == "delivered" for _, state, _, _ in _deliveries(pair, uris)),
            within=15,
            what="acme to redeliver what it was sending when it was killed",
            diagnose=pair.diagnose,
        )
    except AssertionError as exc:
        stuck = {uri for uri, state, _, _ in _deliveries(pair, uris) if state != "delivered"}
        assert stuck <= in_flight, "only the deliveries in flight at the kill may lag"
        assert all(n <= 1 for n in _copies_at_partner(pair, uris).values())
        raise SlowRedelivery(f"{len(stuck)} in-flight deliveries not retried: {exc}") from None
    await _all_arrive_exactly_once(pair, uris, texts)
    print(
        f"\n  sender restart -> in-flight posts redelivered in {time.monotonic() - started:.1f} s"
    )
