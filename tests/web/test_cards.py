"""The post card as readers see it in feeds: whom a reply answers, long posts, like buttons."""

from __future__ import annotations

import re

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from server.domain import Post, Visibility
from server.services import following, posting
from server.storage import visibility
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login


async def _client(app: Quart, name: str) -> Client:
    client = app.test_client()
    await login(client, name, PASSWORD)
    return client


async def _page(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200, path
    return str(await response.get_data(as_text=True))


async def _bobs_answer_to_alices_followers(app: Quart, people: People) -> tuple[Post, Post]:
    """Bob follows Alice and answers her Followers post to his own followers; Carol follows
    Bob, not Alice: she may read the answer, not the post it answers."""
    ctx = context_of(app)
    await following.follow(ctx, people.bob, people.alice.id)
    await following.follow(ctx, people.carol, people.bob.id)
    parent = await posting.publish_post(
        ctx, people.alice, posting.Draft("Budget draft", Visibility.FOLLOWERS)
    )
    reply = await posting.publish_post(
        ctx,
        people.bob,
        posting.Draft("Looks right", Visibility.FOLLOWERS, in_reply_to=parent.id),
    )
    return parent, reply


def _card(html: str, post_id: int) -> str:
    match = re.search(rf'<article [^>]*id="post-{post_id}".*?</article>', html, re.S)
    assert match, f"post {post_id} is not on the page"
    return match.group(0)


async def test_a_reply_outside_its_thread_names_whom_it_answers(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await following.follow(ctx, people.carol, people.bob.id)
    parent = await posting.publish_post(ctx, people.alice, posting.Draft("Kick-off Monday"))
    reply = await posting.publish_post(
        ctx, people.bob, posting.Draft("Count me in #kickoff", in_reply_to=parent.id)
    )
    carol = await _client(app, "carol")
    link = f'<a href="/posts/{parent.id}">Replying to Alice Example</a>'
    for path in ("/", "/people/bob", "/tags/kickoff"):
        assert link in _card(await _page(carol, path), reply.id), path
    live = await _page(carol, f"/posts/{reply.id}/card")
    assert link in live
    # In the thread itself the conversation is in sight: no note.
    assert "Replying to" not in await _page(carol, f"/posts/{reply.id}")


async def test_names_on_a_card_are_text_and_a_deleted_parent_goes_unnamed(
    app: Quart, people: People
) -> None:
    """A display name is whatever its owner (or a partner's server) typed: "Replying to …"
    and "Show more of the post by …" print it as text. A deleted parent is named no more."""
    from server.services import accounts

    ctx = context_of(app)
    sly = '<img src=x onerror="alert(1)"> & Co'
    await accounts.update_profile(ctx, people.alice.id, {"display_name": sly}, bio_source="")
    parent = await posting.publish_post(ctx, people.alice, posting.Draft("Kick-off"))
    reply = await posting.publish_post(
        ctx, people.alice, posting.Draft("Agenda below. " * 60, in_reply_to=parent.id)
    )
    alice = await _client(app, "alice")
    card = _card(await _page(alice, "/people/alice"), reply.id)
    shown = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; Co"
    assert f"Replying to {shown}</a>" in card
    assert f'<span class="sr-only"> of the post by {shown}</span>' in card
    assert "<img" not in card
    await posting.delete_post(ctx, people.alice, parent.id)
    card = _card(await _page(alice, "/people/alice"), reply.id)
    assert "Replying to" not in card and f'/posts/{parent.id}"' not in card
    assert f'<a href="/posts/{reply.id}">Reply in a conversation</a>' in card


@pytest.mark.parametrize("hidden", [Visibility.FOLLOWERS, Visibility.DIRECT])
async def test_a_reply_never_names_a_parent_the_reader_may_not_see(
    app: Quart, people: People, hidden: Visibility
) -> None:
    """Carol follows Bob, not Alice: she sees Bob's answer to Alice's Followers post (or to a
    Direct post to Bob), but must learn neither whom it answers nor where that post is."""
    ctx = context_of(app)
    await following.follow(ctx, people.bob, people.alice.id)
    await following.follow(ctx, people.carol, people.bob.id)
    text = "@bob Budget draft" if hidden is Visibility.DIRECT else "Budget draft"
    parent = await posting.publish_post(ctx, people.alice, posting.Draft(text, hidden))
    reply = await posting.publish_post(
        ctx,
        people.bob,
        posting.Draft("@carol Looks right #budget", hidden, in_reply_to=parent.id),
    )
    carol = await _client(app, "carol")
    for path in ("/", "/people/bob", "/tags/budget", f"/posts/{reply.id}/card"):
        card = _card(await _page(carol, path), reply.id)
        assert "Alice" not in card, path
        assert f"/posts/{parent.id}" not in card, path
        assert f'<a href="/posts/{reply.id}">Reply in a conversation</a>' in card, path
    # Bob may read the parent: his own feed names it.
    bob = await _client(app, "bob")
    assert "Replying to Alice Example" in _card(await _page(bob, "/people/bob"), reply.id)


async def test_a_thread_sets_a_reply_in_only_under_a_post_on_the_page(
    app: Quart, people: People
) -> None:
    """Carol follows Bob, not Alice: Bob's answer to Alice's Followers post opens Carol's
    thread page as its first post, not set in under nothing."""
    ctx = context_of(app)
    parent, reply = await _bobs_answer_to_alices_followers(app, people)
    answer = await posting.publish_post(
        ctx, people.carol, posting.Draft("Agreed", in_reply_to=reply.id)
    )

    def classes(html: str, post_id: int) -> str:
        match = re.search(rf'<article class="([^"]*)" id="post-{post_id}"', html)
        assert match, post_id
        return match.group(1)

    carol = await _page(await _client(app, "carol"), f"/posts/{reply.id}")
    assert f'id="post-{parent.id}"' not in carol
    assert "post-reply" not in classes(carol, reply.id)
    assert "post-reply" in classes(carol, answer.id)
    bob = await _page(await _client(app, "bob"), f"/posts/{reply.id}")
    assert "post-reply" in classes(bob, reply.id)


async def test_the_reply_note_uses_the_one_visibility_rule(
    app: Quart, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guard for the test above: were the rule not applied to the parent, Alice would be
    named (so the test above would fail without the check)."""
    from server.storage import replies

    _, reply = await _bobs_answer_to_alices_followers(app, people)
    monkeypatch.setattr(replies, "visible_sql", lambda viewer_id, alias="p": "1")
    assert visibility.visible_sql(None) != "1"  # only the reply note's check is removed
    carol = await _client(app, "carol")
    assert "Replying to Alice Example" in _card(await _page(carol, "/"), reply.id)


async def test_a_long_post_is_shortened_in_feeds_and_whole_on_its_page(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    long_text = "Supplier review notes for the tender. " * 15  # 570 characters
    many_lines = "\n\n".join(f"Point {n}" for n in range(12))  # short, but twelve paragraphs
    short = await posting.publish_post(ctx, people.alice, posting.Draft("Short and sweet"))
    long_ids = [
        (await posting.publish_post(ctx, people.alice, posting.Draft(text))).id
        for text in (long_text, many_lines)
    ]
    alice = await _client(app, "alice")
    for path in ("/", "/people/alice"):
        page = await _page(alice, path)
        for post_id in long_ids:
            card = _card(page, post_id)
            assert f'class="post-content is-collapsed" id="post-{post_id}-text"' in card
            # Without JavaScript "Show more" is a link to the whole post; it names whose post.
            assert (
                f'<a href="/posts/{post_id}" data-show-more aria-controls="post-{post_id}-text">'
                'Show more<span class="sr-only"> of the post by Alice Example</span></a>'
            ) in card
        assert "is-collapsed" not in _card(page, short.id)
        assert "Show more" not in _card(page, short.id)
    for post_id in long_ids:
        whole = _card(await _page(alice, f"/posts/{post_id}"), post_id)
        assert "is-collapsed" not in whole and "Show more" not in whole
    assert "Point 11" in _card(await _page(alice, f"/posts/{long_ids[1]}"), long_ids[1])


async def test_like_and_boost_are_toggle_buttons_with_compact_counts(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    post = await posting.publish_post(
        ctx, people.alice, posting.Draft("Plant tour photos", Visibility.PUBLIC)
    )
    await posting.like_post(ctx, people.bob, post.id, like=True)
    await posting.like_post(ctx, people.carol, post.id, like=True)
    bob = await _client(app, "bob")
    card = _card(await _page(bob, "/people/alice"), post.id)
    # One name ("Like", whose post, how many likes); the state in aria-pressed.
    like = _button(card, "action-like")
    assert 'aria-pressed="true"' in like
    assert _spoken(like) == "Like post by Alice Example, 2 likes"
    assert _shown(like) == "2"  # ♥ 2
    assert 'class="icon icon-heart" viewBox="0 0 24 24" aria-hidden="true"' in like
    assert 'aria-pressed="false"' in _button(card, "action-boost")
    assert _spoken(_button(card, "action-boost")) == "Boost post by Alice Example, no boosts"
    assert "Unlike" not in card and "Unboost" not in card
    # Carol's own like shows on her card; taken back, the same button is not pressed, and
    # the number shows no more at zero.
    carol = await _client(app, "carol")
    assert 'aria-pressed="true"' in _button(
        _card(await _page(carol, "/people/alice"), post.id), "action-like"
    )
    await posting.like_post(ctx, people.carol, post.id, like=False)
    await posting.like_post(ctx, people.bob, post.id, like=False)
    like = _button(_card(await _page(carol, "/people/alice"), post.id), "action-like")
    assert 'aria-pressed="false"' in like
    assert _spoken(like) == "Like post by Alice Example, no likes"
    assert _shown(like) == ""
    # Anonymous readers see the count too, worded for screen readers.
    await posting.like_post(ctx, people.bob, post.id, like=True)
    anon = _card(await _page(app.test_client(), f"/posts/{post.id}"), post.id)
    static = re.search(r'<span class="action-static">.*?</span></span>', anon)
    assert static and _spoken(static.group(0)) == "1 like" and _shown(static.group(0)) == "1"
    assert _spoken(anon).endswith("1 like no boosts no replies to the post by Alice Example")
    # Boosts are counted the same way, and the answer to a boost from app.js carries the count.
    await posting.boost_post(ctx, people.carol, post.id, boost=True)
    page = await bob.get("/people/alice")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert token
    answer = await bob.post(
        f"/posts/{post.id}/boost",
        form={"csrf_token": token.group(1), "action": "boost"},
        headers={"X-Requested-With": "steelyard"},
    )
    assert await answer.get_json() == {"boosted": True, "count": 2}
    boost = _button(_card(await _page(bob, "/people/alice"), post.id), "action-boost")
    assert 'aria-pressed="true"' in boost
    assert _spoken(boost) == "Boost post by Alice Example, 2 boosts" and _shown(boost) == "2"
    anon = _card(await _page(app.test_client(), f"/posts/{post.id}"), post.id)
    assert _spoken(anon).endswith("1 like 2 boosts no replies to the post by Alice Example")


def _button(card: str, kind: str) -> str:
    match = re.search(rf'<button type="submit" class="action {kind}"[^>]*>.*?</button>', card)
    assert match, card
    return match.group(0)


def _spoken(html: str) -> str:
    """The text a screen reader reads: without what is aria-hidden."""
    html = re.sub(r'<(span|svg)[^>]*aria-hidden="true"[^>]*>.*?</\1>', "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" ,", ",")


def _shown(html: str) -> str:
    """The count as seen: the aria-hidden number."""
    match = re.search(r'<span class="count"[^>]*aria-hidden="true">([^<]*)</span>', html)
    assert match, html
    return match.group(1)


async def test_the_visibility_badge_has_a_short_form_for_phones(app: Quart, people: People) -> None:
    """style.css hides the part in brackets on a phone; the first word always shows."""
    ctx = context_of(app)
    internal = await posting.publish_post(ctx, people.alice, posting.Draft("Canteen menu"))
    public = await posting.publish_post(
        ctx, people.alice, posting.Draft("Open day", Visibility.PUBLIC)
    )
    page = await _page(await _client(app, "bob"), "/people/alice")
    assert (
        '<span class="badge badge-vis badge-internal">Internal'
        '<span class="vis-detail"> (colleagues only)</span></span>'
    ) in _card(page, internal.id)
    assert '<span class="badge badge-vis badge-public">Public</span>' in _card(page, public.id)
