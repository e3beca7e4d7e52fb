"""Interop with a third-party ActivityPub server: bovine-herd (PyPI) on 127.0.0.1.

Real processes on both sides: ``steelyard serve`` for a development instance and bovine-herd
under Hypercorn in a venv of its own (installed on first use and cached, see
``tests/support/bovine/harness.py``; an install failure fails the test, it never skips).
Both directions of follow-then-post, with draft-cavage signatures on every request, signed
GETs (bovine and we both require them) and each side's own delivery queue.

What bovine 0.5.19 does that matters to us (seen in these tests' archives and fetches):

- Its POSTs sign ``(request-target) host date digest content-type`` with keyId
  ``<actor>#serverKey``, and send ``Digest: sha-256=…`` in lower case (our verifier compares
  the algorithm case-insensitively).
- It delivers to our personal inboxes (``/users/<name>/inbox``), not our shared inbox, and its
  own actors offer no ``sharedInbox``.
- Its Accept names our Follow by id only (not embedded); its ``to`` is a string, not a list.
- To anyone but the owner it serves its actor *without* ``followers`` and ``following``; a
  post addressed only to its followers collection is recognised as followers-only because
  that collection is on the author's origin and is no actor we know
  (``inbound._guess_followers_collection``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.bovine.harness import BovineServer, BovineUser, bovine_server
from tests.support.federation_processes import (
    Browser,
    Instance,
    new_instance,
    processes,
    rows,
    wait_for,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

# bovine delivers from a background task: allow it a few seconds, polled, never slept.
PEER_DEADLINE = 20.0


@dataclass
class Setup:
    ours: Instance
    bovine: BovineServer
    alice: BovineUser  # on bovine


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One Steelyard instance and one bovine for the module; each test uses its own people."""
    root = tmp_path_factory.mktemp("bovine-interop")
    with processes() as group:
        ours = new_instance(root, "acme", group)
        for name in ("bob", "carol", "dave"):
            ours.create_user(name)
        with bovine_server(root / "bovine", free_port()) as bovine:
            ours.allow(bovine.host)
            ours.server.start()
            alice = bovine.register("alice")
            yield Setup(ours, bovine, alice)


def _diagnose(setup: Setup) -> str:
    deliveries = rows(
        setup.ours.db,
        "SELECT d.inbox_url, d.state, d.attempts, d.last_status, d.last_error"
        " FROM deliveries d ORDER BY d.id",
    )
    inbound = rows(
        setup.ours.db,
        "SELECT activity_type, state, last_error FROM inbox_activities ORDER BY id",
    )
    return (
        f"\nour deliveries: {deliveries}\nour inbound: {inbound}"
        f"\nour log:\n{setup.ours.server.log_path.read_text()[-3000:]}"
        f"\nbovine log:\n{setup.bovine.log_tail()}"
    )


def _id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _creates_with(items: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    found = []
    for item in items:
        obj = item.get("object")
        if (
            item.get("type") == "Create"
            and isinstance(obj, dict)
            and marker in str(obj.get("content", ""))
        ):
            found.append(item)
    return found


async def test_bovine_follows_us_and_gets_our_followers_only_post(setup: Setup) -> None:
    ours, alice = setup.ours, setup.alice
    bob_id = f"{ours.base}/users/bob"

    sent = alice.follow(f"acct:bob@{ours.host}")
    assert sent["status"] in (200, 201, 202), sent

    def follower_row() -> list[tuple[Any, ...]]:
        return rows(
            ours.db,
            "SELECT f.state FROM follows f JOIN actors a ON a.id = f.follower_id"
            " JOIN actors b ON b.id = f.followee_id"
            " WHERE a.uri = ? AND b.username = 'bob' AND b.is_local = 1 AND f.state = 'accepted'",
            (alice.id,),
        )

    await wait_for(
        follower_row,
        within=PEER_DEADLINE,
        what="bovine's Follow to be accepted by bob",
        diagnose=lambda: _diagnose(setup),
    )
    # Our Accept reaches bovine: bob shows in alice's following collection.
    await wait_for(
        lambda: bob_id in alice.collections()["following"],
        within=PEER_DEADLINE,
        what="bob in bovine alice's following (our Accept applied)",
        diagnose=lambda: _diagnose(setup),
    )

    marker = "followers-only hello to bovine 7f3a"
    async with Browser(ours, "bob") as bob:
        await bob.publish(marker, "followers")

    found = await wait_for(
        lambda: _creates_with(alice.inbox(), marker),
        within=PEER_DEADLINE,
        what="bob's followers-only post in bovine alice's inbox",
        diagnose=lambda: _diagnose(setup),
    )
    assert len(found) == 1
    note = found[0]["object"]
    assert note["attributedTo"] == bob_id
    assert f"{bob_id}/followers" in [*note.get("to", []), *note.get("cc", [])]
    assert "https://www.w3.org/ns/activitystreams#Public" not in [
        *note.get("to", []),
        *note.get("cc", []),
    ]
    delivered = rows(
        ours.db,
        "SELECT state, last_status FROM deliveries WHERE inbox_url = ?",
        (alice.actor["inbox"],),
    )
    assert delivered and all(state == "delivered" for state, _ in delivered), delivered


async def _follow_alice(setup: Setup, person: Browser) -> None:
    """*person* finds bovine's alice through People search and follows her; bovine accepts."""
    ours, alice = setup.ours, setup.alice
    page = await person.find(f"@{alice.handle}")
    assert alice.handle in html.unescape(page), "the remote person is not shown"
    await person.follow(alice.handle)
    follower_uri = f"{ours.base}/users/{person.username}"
    # bovine's driver accepts the Follows it finds in alice's inbox (each once).
    await wait_for(
        lambda: any(
            i.get("type") == "Follow" and _id(i.get("actor")) == follower_uri for i in alice.inbox()
        ),
        within=PEER_DEADLINE,
        what=f"{person.username}'s Follow in bovine alice's inbox",
        diagnose=lambda: _diagnose(setup),
    )
    await wait_for(
        lambda: rows(
            ours.db,
            "SELECT 1 FROM follows f JOIN actors a ON a.id = f.followee_id"
            " JOIN actors me ON me.id = f.follower_id"
            " WHERE a.uri = ? AND me.uri = ? AND f.state = 'accepted'",
            (alice.id, follower_uri),
        ),
        within=PEER_DEADLINE,
        what=f"bovine's Accept of {person.username}'s Follow",
        diagnose=lambda: _diagnose(setup),
    )
    assert follower_uri in alice.collections()["followers"]


async def _applied_create(setup: Setup, marker: str) -> None:
    """Wait until bovine's Create carrying *marker* was received and applied by us."""
    await wait_for(
        lambda: rows(
            setup.ours.db,
            "SELECT 1 FROM inbox_activities WHERE activity_type = 'Create'"
            " AND state = 'done' AND CAST(body AS TEXT) LIKE ?",
            (f"%{marker}%",),
        ),
        within=PEER_DEADLINE,
        what=f"bovine's Create {marker!r} received and applied",
        diagnose=lambda: _diagnose(setup),
    )


async def test_we_follow_bovine_and_its_post_reaches_our_home_feed(setup: Setup) -> None:
    ours, alice = setup.ours, setup.alice
    async with Browser(ours, "carol") as carol:
        await _follow_alice(setup, carol)

        # To alice's followers and, explicitly, to carol: see the next test for why.
        marker = "hello from bovine to its followers 91c2"
        sent = alice.post(marker, f"{ours.base}/users/carol")
        assert sent["status"] in (200, 201, 202), sent
        await _applied_create(setup, marker)

        async def in_home_feed() -> bool:
            return marker in await carol.home()

        await wait_for(
            in_home_feed,
            within=PEER_DEADLINE,
            what="bovine alice's post in carol's home feed",
            diagnose=lambda: _diagnose(setup),
        )
        stored = rows(
            ours.db,
            "SELECT count(*) FROM posts p JOIN actors a ON a.id = p.author_id"
            " WHERE a.uri = ? AND p.content_html LIKE ?",
            (alice.id, f"%{marker}%"),
        )
        assert stored == [(1,)], stored
        # The archive keeps bovine's headers as received: the lower-case digest was verified.
        archived = rows(
            ours.db,
            "SELECT headers_json FROM inbox_activities WHERE activity_type = 'Create'"
            " AND CAST(body AS TEXT) LIKE ?",
            (f"%{marker}%",),
        )
        headers = {name.lower(): value for name, value in json.loads(archived[0][0])}
        assert headers["digest"].startswith("sha-256="), headers


async def test_followers_only_post_from_bovine_reaches_a_follower(setup: Setup) -> None:
    ours, alice = setup.ours, setup.alice
    async with Browser(ours, "dave") as dave:
        await _follow_alice(setup, dave)
        marker = "followers-only from bovine c0de"
        sent = alice.post(marker)
        assert sent["status"] in (200, 201, 202), sent
        await _applied_create(setup, marker)
        # Applied means visible: no further wait is needed for the page.
        assert marker in await dave.home()
