"""One handle, two actors: a partner's user and group of one name (Lemmy's /u/news and
/c/news), or a user who registers an existing group's name. The partner's WebFinger decides
who is ``news@host``; the other is stored under a stand-in handle, and neither loses a post."""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.signatures import sign_request
from federation.types import AS_PUBLIC
from server.services import remote
from tests.federation.conftest import PEER, Peered
from tests.federation.support import raw_post

USER = f"https://{PEER}/u/news"
GROUP = f"https://{PEER}/c/news"
WEBFINGER = f"https://{PEER}/.well-known/webfinger?resource=acct:news@{PEER}"


def _actor(uri: str, kind: str, public_pem: str) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": uri,
        "type": kind,
        "preferredUsername": "news",
        "name": f"News ({kind})",
        "inbox": f"{uri}/inbox",
        "followers": f"{uri}/followers",
        "publicKey": {"id": f"{uri}#main-key", "owner": uri, "publicKeyPem": public_pem},
    }


def _webfinger(p: Peered, uri: str) -> None:
    p.serve(
        WEBFINGER,
        {
            "subject": f"acct:news@{PEER}",
            "links": [{"rel": "self", "type": "application/activity+json", "href": uri}],
        },
        media_type="application/jrd+json",
    )


async def _post_as_group(p: Peered, private_pem: str, number: int) -> str:
    note = {
        "id": f"{GROUP}/posts/{number}",
        "type": "Note",
        "attributedTo": GROUP,
        "content": f"<p>Community post {number}</p>",
        "to": [AS_PUBLIC],
        "cc": [],
        "published": "2026-12-04T09:00:00Z",
    }
    create = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{GROUP}/activities/{number}",
        "type": "Create",
        "actor": GROUP,
        "object": note,
        "to": [AS_PUBLIC],
    }
    body = json.dumps(create).encode()
    ctx = p.alpha.ctx
    headers = sign_request(
        "POST",
        f"{p.alpha.base}/inbox",
        key_id=f"{GROUP}#main-key",
        private_key_pem=private_pem,
        body=body,
        now=ctx.clock.now(),
        extra_headers={"Content-Type": "application/activity+json"},
    )
    assert (await raw_post(p.alpha, "/inbox", headers, body)).status == 202
    await ctx.federator.settle_once()
    return str(note["id"])


async def _handle_of(p: Peered, uri: str) -> str | None:
    value = await p.alpha.value("SELECT username FROM actors WHERE uri = ?", uri)
    return None if value is None else str(value)


@pytest.mark.parametrize("webfinger_names", ["group", "user", "nobody"])
async def test_a_second_actor_of_one_name_is_stored_and_webfinger_decides_the_handle(
    peered: Peered, webfinger_names: str
) -> None:
    p = peered
    (_, user_public), (group_private, group_public) = p.keys[0], p.keys[1]
    p.serve(USER, _actor(USER, "Person", user_public))
    p.serve(GROUP, _actor(GROUP, "Group", group_public))
    if webfinger_names != "nobody":
        _webfinger(p, GROUP if webfinger_names == "group" else USER)
    # The user is seen first (it followed or mentioned someone here) and holds "news".
    await remote.fetch_actor(p.alpha.ctx, USER)
    assert await _handle_of(p, USER) == "news"
    # The group's post arrives: it is stored, whoever WebFinger names.
    note_id = await _post_as_group(p, group_private, 1)
    assert await p.alpha.value("SELECT count(*) FROM posts WHERE uri = ?", note_id) == 1
    user_handle, group_handle = await _handle_of(p, USER), await _handle_of(p, GROUP)
    if webfinger_names == "group":
        assert group_handle == "news"
        assert user_handle is not None and user_handle.startswith("news~")
        assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == GROUP
    else:  # the holder keeps it: a newcomer takes a handle only when WebFinger says so
        assert user_handle == "news"
        assert group_handle is not None and group_handle.startswith("news~")
        assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == USER
    # Later posts of both are applied too (no handle clash on the next refresh either).
    second = await _post_as_group(p, group_private, 2)
    assert await p.alpha.value("SELECT count(*) FROM posts WHERE uri = ?", second) == 1


async def test_a_handle_typed_by_a_colleague_reaches_whom_its_server_names(
    peered: Peered,
) -> None:
    """A user who took the group's name before the group was ever seen here holds the
    handle on its own word; the first time a colleague types it, WebFinger is asked, and a
    mention or a follow reaches the group, not the user."""
    p = peered
    (_, user_public), (_, group_public) = p.keys[0], p.keys[1]
    p.serve(USER, _actor(USER, "Person", user_public))
    p.serve(GROUP, _actor(GROUP, "Group", group_public))
    await remote.fetch_actor(p.alpha.ctx, USER)  # seen first, in an activity of its own
    # Its server cannot answer yet: the stored actor, asked again next time.
    assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == USER
    _webfinger(p, GROUP)
    assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == GROUP
    user_handle = await _handle_of(p, USER)
    assert user_handle is not None and user_handle.startswith("news~")
    # Confirmed once, the handle is not asked again.
    del p.peer.documents[WEBFINGER]
    assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == GROUP


async def test_a_profile_or_wall_opened_by_handle_is_confirmed_too(peered: Peered) -> None:
    """The profile page, its Follow button and a wall post name the person by handle
    (remote.person_by_handle): the same first-use question as search and mentions."""
    p = peered
    (_, user_public), (_, group_public) = p.keys[0], p.keys[1]
    p.serve(USER, _actor(USER, "Person", user_public))
    p.serve(GROUP, _actor(GROUP, "Group", group_public))
    await remote.fetch_actor(p.alpha.ctx, USER)
    _webfinger(p, GROUP)
    found = await remote.person_by_handle(p.alpha.ctx, f"news@{PEER}")
    assert found is not None and found.uri == GROUP


async def test_a_handle_its_server_confirms_is_asked_once(peered: Peered) -> None:
    p = peered
    _, user_public = p.keys[0]
    p.serve(USER, _actor(USER, "Person", user_public))
    _webfinger(p, USER)
    await remote.fetch_actor(p.alpha.ctx, USER)
    assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == USER
    del p.peer.documents[WEBFINGER]
    del p.peer.documents[USER]
    assert (await remote.find_person(p.alpha.ctx, f"news@{PEER}")).uri == USER
