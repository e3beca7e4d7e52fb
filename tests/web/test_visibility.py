"""Who may see what, on every surface: thread page, live card, history, profile feed, home
feed, hashtag page, notifications. Each expectation fails if its rule is removed."""

from __future__ import annotations

import pytest
from quart import Quart

from server.domain import Visibility
from server.services import following, posting
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login

# visibility -> who may read it: (anonymous, carol: colleague not following, bob: follower,
# carol is also the one @mentioned in the direct post)
MATRIX = {
    Visibility.PUBLIC: {"anon": True, "carol": True, "bob": True},
    Visibility.INTERNAL: {"anon": False, "carol": True, "bob": True},
    Visibility.FOLLOWERS: {"anon": False, "carol": False, "bob": True},
    Visibility.DIRECT: {"anon": False, "carol": True, "bob": False},
}


@pytest.fixture
async def setup(app: Quart, people: People) -> dict[Visibility, int]:
    ctx = context_of(app)
    await following.follow(ctx, people.bob, people.alice.id)
    ids = {}
    for vis in MATRIX:
        text = f"secret-{vis.value} #topic{vis.value}"
        if vis is Visibility.DIRECT:
            text = f"@carol {text}"
        post = await posting.publish_post(ctx, people.alice, posting.Draft(text, vis))
        ids[vis] = post.id
    return ids


async def _client(app: Quart, who: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    if who != "anon":
        await login(client, who, PASSWORD)
    return client


@pytest.mark.parametrize("who", ["anon", "carol", "bob"])
async def test_post_pages(app: Quart, setup: dict[Visibility, int], who: str) -> None:
    client = await _client(app, who)
    for vis, post_id in setup.items():
        allowed = MATRIX[vis][who]
        page = await client.get(f"/posts/{post_id}")
        assert (page.status_code == 200) is allowed, (vis, who, page.status_code)
        body = await page.get_data(as_text=True)
        assert (f"secret-{vis.value}" in body) is allowed
        if who != "anon":
            card = await client.get(f"/posts/{post_id}/card")
            assert (card.status_code == 200) is allowed, ("card", vis, who)
            history = await client.get(f"/posts/{post_id}/history")
            assert (history.status_code == 200) is allowed, ("history", vis, who)
        else:
            # A missing post and a hidden one look the same.
            assert page.status_code in (200, 404)


@pytest.mark.parametrize("who", ["carol", "bob"])
async def test_profile_and_tag_pages(app: Quart, setup: dict[Visibility, int], who: str) -> None:
    client = await _client(app, who)
    profile = await (await client.get("/people/alice")).get_data(as_text=True)
    for vis in setup:
        assert (f"secret-{vis.value}" in profile) is MATRIX[vis][who], (vis, who)
        tag = await (await client.get(f"/tags/topic{vis.value}")).get_data(as_text=True)
        assert (f"secret-{vis.value}" in tag) is MATRIX[vis][who], ("tag", vis, who)


async def test_home_feeds(app: Quart, setup: dict[Visibility, int]) -> None:
    bob = await _client(app, "bob")
    home = await (await bob.get("/")).get_data(as_text=True)
    for vis in setup:
        assert (f"secret-{vis.value}" in home) is MATRIX[vis]["bob"], vis
    carol = await _client(app, "carol")
    carol_home = await (await carol.get("/")).get_data(as_text=True)
    # Carol follows nobody: only the post addressed to her reaches her home feed.
    assert "secret-direct" in carol_home
    assert "secret-internal" not in carol_home and "secret-followers" not in carol_home


async def test_anonymous_sees_no_member_pages(app: Quart, setup: dict[Visibility, int]) -> None:
    client = app.test_client()
    for path in (
        "/",
        "/people",
        "/people/alice",
        "/tags/topicpublic",
        "/notifications",
        f"/posts/{setup[Visibility.PUBLIC]}/card",
    ):
        response = await client.get(path)
        assert response.status_code == 302, path


async def test_notifications_do_not_leak_to_others(
    app: Quart, setup: dict[Visibility, int]
) -> None:
    bob = await _client(app, "bob")
    notes = await (await bob.get("/notifications")).get_data(as_text=True)
    assert "secret-direct" not in notes
    carol = await _client(app, "carol")
    carol_notes = await (await carol.get("/notifications")).get_data(as_text=True)
    assert "mentioned you" in carol_notes


async def test_cannot_reply_to_or_like_invisible_posts(
    app: Quart, people: People, setup: dict[Visibility, int]
) -> None:
    ctx = context_of(app)
    from server.errors import NotFound

    with pytest.raises(NotFound):
        await posting.publish_post(
            ctx, people.carol, posting.Draft("sneaky", in_reply_to=setup[Visibility.FOLLOWERS])
        )
    with pytest.raises(NotFound):
        await posting.like_post(ctx, people.bob, setup[Visibility.DIRECT], like=True)


@pytest.mark.parametrize("chosen", list(Visibility))
async def test_a_reply_to_a_followers_post_is_never_wider(
    app: Quart, people: People, setup: dict[Visibility, int], chosen: Visibility
) -> None:
    """Internal is every colleague: wider than the followers who could read the parent."""
    ctx = context_of(app)
    reply = await posting.publish_post(
        ctx,
        people.bob,
        posting.Draft("quoting: secret-followers", chosen, in_reply_to=setup[Visibility.FOLLOWERS]),
    )
    assert reply.visibility in (Visibility.FOLLOWERS, Visibility.DIRECT)
    carol = await _client(app, "carol")  # follows neither alice nor bob
    assert (await carol.get(f"/posts/{reply.id}")).status_code == 404
    # and the reply form offers only what the server would keep
    page = await (await _client(app, "bob")).get(f"/posts/{setup[Visibility.FOLLOWERS]}")
    offered = await page.get_data(as_text=True)
    assert 'value="internal"' not in offered and 'value="public"' not in offered
    assert 'value="followers" selected' in offered


async def test_reply_to_direct_stays_direct_with_same_people(
    app: Quart, people: People, setup: dict[Visibility, int]
) -> None:
    ctx = context_of(app)
    reply = await posting.publish_post(
        ctx,
        people.carol,
        posting.Draft("thanks", Visibility.PUBLIC, in_reply_to=setup[Visibility.DIRECT]),
    )
    assert reply.visibility is Visibility.DIRECT
    bob = await _client(app, "bob")
    assert (await bob.get(f"/posts/{reply.id}")).status_code == 404
    alice = await _client(app, "alice")
    assert (await alice.get(f"/posts/{reply.id}")).status_code == 200


async def test_a_mention_edited_out_of_a_direct_post_takes_its_person_out(
    app: Quart, people: People
) -> None:
    """carol, edited out of a direct message, reads neither the new text nor, through her
    notification, a snippet of it; bob, still mentioned, reads on."""
    ctx = context_of(app)
    post = await posting.publish_post(
        ctx, people.alice, posting.Draft("@bob @carol draft numbers", Visibility.DIRECT)
    )

    await posting.edit_post(ctx, people.alice, post.id, "@bob only: the real numbers 42")

    carol = await _client(app, "carol")
    assert (await carol.get(f"/posts/{post.id}")).status_code == 404
    assert (await carol.get(f"/posts/{post.id}/history")).status_code == 404
    assert "real numbers" not in await (await carol.get("/notifications")).get_data(as_text=True)
    bob = await _client(app, "bob")
    assert "the real numbers 42" in await (await bob.get(f"/posts/{post.id}")).get_data(
        as_text=True
    )


async def test_the_person_replied_to_stays_when_their_mention_is_edited_out(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    parent = await posting.publish_post(
        ctx, people.alice, posting.Draft("@bob a question", Visibility.DIRECT)
    )
    reply = await posting.publish_post(
        ctx, people.bob, posting.Draft("@alice yes", Visibility.DIRECT, in_reply_to=parent.id)
    )

    await posting.edit_post(ctx, people.bob, reply.id, "yes, definitely")

    alice = await _client(app, "alice")
    assert (await alice.get(f"/posts/{reply.id}")).status_code == 200


async def test_a_reply_count_counts_only_the_replies_its_reader_may_open(
    app: Quart, people: People, setup: dict[Visibility, int]
) -> None:
    """A count must not show that a reply its reader cannot open exists: a direct answer,
    an Internal one (to anonymous readers), a followers-only one (to non-followers)."""
    ctx = context_of(app)
    public = setup[Visibility.PUBLIC]
    await posting.publish_post(
        ctx, people.bob, posting.Draft("just between us", Visibility.DIRECT, in_reply_to=public)
    )
    await posting.publish_post(
        ctx, people.bob, posting.Draft("colleagues only", Visibility.INTERNAL, in_reply_to=public)
    )
    await posting.publish_post(
        ctx, people.bob, posting.Draft("bob's followers", Visibility.FOLLOWERS, in_reply_to=public)
    )
    seen = await posting.publish_post(
        ctx, people.bob, posting.Draft("for everyone", Visibility.PUBLIC, in_reply_to=public)
    )
    expected = {"anon": 1, "carol": 2, "alice": 4}  # alice is addressed in the direct one
    for who, count in expected.items():
        client = await _client(app, who)
        page = await (await client.get(f"/posts/{public}")).get_data(as_text=True)
        assert _replies(count) in page, who
    await posting.delete_post(ctx, people.bob, seen.id)
    anon = await _client(app, "anon")
    page = await (await anon.get(f"/posts/{public}")).get_data(as_text=True)
    assert _replies(0) in page


def _replies(count: int) -> str:
    """A card's reply count: the number as shown, and in words for screen readers (followed
    by whose post it counts for)."""
    shown = str(count) if count else ""  # no number at zero
    words = "no replies" if count == 0 else f"{count} {'reply' if count == 1 else 'replies'}"
    return (
        f'<span class="count" aria-hidden="true">{shown}</span>'
        f'<span class="sr-only">{words} to the post by '
    )
