"""The page frame: the header's menu and sign-in, for people and for visitors."""

from __future__ import annotations

import re

from quart import Quart

from server.domain import Visibility
from server.services import posting
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login


def _header(html: str) -> str:
    match = re.search(r'<header class="site-header">.*?</header>', html, re.S)
    assert match
    return match.group(0)


async def test_a_visitor_reading_a_public_post_can_sign_in_from_the_header(
    app: Quart, people: People
) -> None:
    post = await posting.publish_post(
        context_of(app), people.alice, posting.Draft("Open day", Visibility.PUBLIC)
    )
    visitor = app.test_client()
    header = _header(await (await visitor.get(f"/posts/{post.id}")).get_data(as_text=True))
    assert f'href="/login?next=/posts/{post.id}">Sign in</a>' in header
    # Not on the sign-in page itself.
    login_page = await (await visitor.get("/login")).get_data(as_text=True)
    assert "Sign in</a>" not in _header(login_page)


async def test_the_menu_has_icons_and_a_short_label_for_phones(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    header = _header(await (await client.get("/")).get_data(as_text=True))
    nav = header[header.index('<nav class="site-nav"') : header.index("</nav>")]
    assert nav.count('<svg class="icon') == 6  # alice is an admin
    assert (
        '<span class="nav-label nav-long">Notifications</span>'
        '<span class="nav-label nav-short">Alerts</span>'
    ) in nav
    assert "Sign out" not in nav  # beside the name, not among the places to go
    assert header.index("</nav>") < header.index("Sign out</span></button>")


async def test_the_unread_count_leads_the_page_title(app: Quart, people: People) -> None:
    from server.services import following

    client = app.test_client()
    await login(client, "alice", PASSWORD)
    assert "<title>Home · Test</title>" in await (await client.get("/")).get_data(as_text=True)
    await following.follow(context_of(app), people.bob, people.alice.id)
    page = await (await client.get("/people")).get_data(as_text=True)
    assert "<title>(1) People · Test</title>" in page


async def test_notifications_show_the_ui_icons_not_text_glyphs(app: Quart, people: People) -> None:
    """The same drawn icons as the post cards (a text "♥" differs from font to font)."""
    ctx = context_of(app)
    post = await posting.publish_post(ctx, people.alice, posting.Draft("Canteen menu"))
    await posting.like_post(ctx, people.bob, post.id, like=True)
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    page = await (await client.get("/notifications")).get_data(as_text=True)
    icon = re.search(r'<span class="notification-icon">(<svg [^>]*>)', page)
    assert icon and 'class="icon icon-heart"' in icon.group(1)
    assert 'aria-hidden="true"' in icon.group(1)
    assert "♥" not in page
