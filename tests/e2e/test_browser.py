"""A real browser (Debian chromium through playwright): follow, post, live update, phone size."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, free_port, run_cli

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "browser test password 1"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: run 'make test', which installs it")
    root = tmp_path_factory.mktemp("browser")
    port = free_port()
    inst = root / "inst"
    assert (
        run_cli(
            "--instance", str(inst), "init", "--url", f"http://127.0.0.1:{port}", "--name", "ACME"
        ).returncode
        == 0
    )
    people = (
        ("alice", "Alice Anders"),
        ("bob", "Bob Berg"),
        ("carol", "Carol Cho"),
        ("admin", "Ada Administrator"),
    )
    for name, display in people:
        made = run_cli(
            "--instance",
            str(inst),
            "user",
            "create",
            name,
            "--display-name",
            display,
            "--password-stdin",
            *(["--admin"] if name == "admin" else []),
            stdin=PASSWORD + "\n",
        )
        assert made.returncode == 0, made.stderr
    proc = ServerProcess(inst, port, root / "server.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def _sign_in(page, base: str, name: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"{base}/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")


async def _signed_in(browser, base: str, name: str):  # type: ignore[no-untyped-def]
    """A fresh browser context with *name* signed in, and its page (on the home feed)."""
    context = await browser.new_context()
    page = await context.new_page()
    await _sign_in(page, base, name)
    return context, page


async def test_follow_post_and_live_update(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    alice_ctx, alice = await _signed_in(browser, server.base, "alice")
    bob_ctx, bob = await _signed_in(browser, server.base, "bob")

    # Bob follows Alice from her profile.
    await bob.goto(f"{server.base}/people/alice")
    await bob.get_by_role("button", name="Follow").click()
    await bob.wait_for_load_state()
    assert await bob.get_by_role("button", name="Unfollow").count() == 1

    # Bob keeps his feed open; Alice posts; the post appears without a reload.
    await bob.goto(f"{server.base}/")
    await bob.wait_for_timeout(500)  # let the EventSource connect
    marker = "Finishing the Q3 supplier review"
    await alice.goto(f"{server.base}/")
    await alice.get_by_label("What are you working on?").fill(marker)
    await alice.get_by_label("Visibility").select_option("followers")
    await alice.get_by_role("button", name="Post", exact=True).click()
    await bob.locator("article.post", has_text=marker).wait_for(timeout=10_000)
    await bob.screenshot(path=str(ARTIFACTS / "feed.png"), full_page=True)
    # A screen reader hears one line, not the whole card (the feed is not a live region).
    status = bob.locator("[data-feed-status]")
    assert await status.get_attribute("role") == "status"
    assert await status.inner_text() == "New post from Alice Anders"
    assert await bob.locator("[data-feed]").get_attribute("aria-live") is None

    # Carol (whom Bob does not follow) posts publicly; Alice boosts it; Bob's open feed shows
    # it without a reload, marked as Alice's boost.
    carol_ctx, carol = await _signed_in(browser, server.base, "carol")
    boosted = "Plant tour photos are up"
    await carol.get_by_label("What are you working on?").fill(boosted)
    await carol.get_by_label("Visibility").select_option("public")
    await carol.get_by_role("button", name="Post", exact=True).click()
    await carol.locator("article.post", has_text=boosted).wait_for(timeout=10_000)
    await alice.goto(f"{server.base}/people/carol")
    card = alice.locator("article.post", has_text=boosted)
    await alice.evaluate("window.stillThisPage = true")
    await card.get_by_role("button", name="Boost").focus()
    await alice.keyboard.press("Enter")
    # In place, like a like: the toggle button shows as pressed without a reload, and keeps
    # the keyboard focus (a disabled button would drop it to the page).
    await card.get_by_role("button", name="Boost", pressed=True).wait_for(timeout=10_000)
    assert await alice.evaluate("window.stillThisPage === true")
    # ... and counts the boost (the number shown, and words for a screen reader).
    focused = await alice.evaluate(
        "[document.activeElement.classList.contains('action-boost'),"
        " document.activeElement.ariaPressed,"
        " document.activeElement.querySelector('[data-boost-count]').textContent,"
        " document.activeElement.querySelector('[data-boost-words]').textContent]"
    )
    assert focused == [True, "true", "1", "1 boost"], focused
    live = bob.locator("article.post", has_text=boosted)
    await live.wait_for(timeout=10_000)
    assert "Alice Anders boosted" in await live.inner_text()
    assert await status.inner_text() == "Alice Anders boosted a post by Carol Cho"
    # Carol's page, open all along, shows the boost as a new notification without a reload.
    await carol.locator("[data-unread]", has_text="1").wait_for(timeout=10_000)
    # Carol edits it: Bob's open feed shows the new text, still as Alice's boost.
    await (
        carol.locator("article.post", has_text=boosted)
        .get_by_role("link", name="Edit post by Carol Cho")
        .click()
    )
    await carol.get_by_label("Text").fill(boosted + " (all 40)")
    await carol.get_by_role("button", name="Save").click()
    edited = bob.locator("article.post", has_text=boosted + " (all 40)")
    await edited.wait_for(timeout=10_000)
    assert "Alice Anders boosted" in await edited.inner_text()

    # Alice edits her post, then deletes it: Bob's open feed follows, without a reload.
    await alice.goto(f"{server.base}/")
    own = alice.locator("article.post", has_text=marker)
    await own.get_by_role("link", name="Edit post by Alice Anders").click()
    await alice.get_by_label("Text").fill(marker + " (done)")
    await alice.get_by_role("button", name="Save").click()
    await bob.locator("article.post", has_text=marker + " (done)").wait_for(timeout=10_000)
    await alice.goto(f"{server.base}/")
    alice.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await (
        alice.locator("article.post", has_text=marker)
        .get_by_role("button", name="Delete post by Alice Anders")
        .click()
    )
    await bob.locator("article.post", has_text=marker).wait_for(state="detached", timeout=10_000)
    await carol_ctx.close()
    await alice_ctx.close()
    await bob_ctx.close()


async def test_live_posts_keep_their_order_when_a_card_loads_slowly(  # type: ignore[no-untyped-def]
    server: ServerProcess, browser
) -> None:
    """The first of two new posts takes longer to fetch: it must still end up below the
    second, as after a reload."""
    carol_ctx, carol = await _signed_in(browser, server.base, "carol")
    dave_ctx, dave = await _signed_in(browser, server.base, "admin")
    await dave.goto(f"{server.base}/people/carol")
    await dave.get_by_role("button", name="Follow").click()
    await dave.wait_for_load_state()
    fetched: list[str] = []

    async def slow_first(route) -> None:  # type: ignore[no-untyped-def]
        fetched.append(route.request.url)
        if len(fetched) == 1:
            await asyncio.sleep(1.5)
        await route.continue_()

    await dave.route("**/posts/*/card*", slow_first)
    await dave.goto(f"{server.base}/")
    await dave.wait_for_timeout(500)  # let the EventSource connect
    for text in ("Older: kickoff booked", "Newer: agenda sent"):
        await carol.get_by_label("What are you working on?").fill(text)
        await carol.get_by_label("Visibility").select_option("followers")
        await carol.get_by_role("button", name="Post", exact=True).click()
        await carol.locator("article.post", has_text=text).wait_for(timeout=10_000)
    await dave.locator("article.post", has_text="Older: kickoff booked").wait_for(timeout=10_000)
    await dave.locator("article.post", has_text="Newer: agenda sent").wait_for(timeout=10_000)
    order = await dave.locator("article.post .post-content").all_inner_texts()
    assert order.index("Newer: agenda sent") < order.index("Older: kickoff booked"), order
    await carol_ctx.close()
    await dave_ctx.close()


async def test_the_composer_counts_down_near_the_limit(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = await _signed_in(browser, server.base, "carol")
    box = page.get_by_label("What are you working on?")
    count = page.locator("#composer-count")
    await box.fill("Short update")
    assert await count.is_hidden()
    await box.fill("x" * 4_700)
    await count.wait_for(state="visible")
    assert await count.inner_text() == "300 characters left"
    assert await box.get_attribute("aria-describedby") == "composer-count"
    await context.close()


async def test_the_badge_catches_up_when_the_live_stream_comes_back(  # type: ignore[no-untyped-def]
    server: ServerProcess, browser
) -> None:
    """What was notified while the stream was away shows once it reconnects."""
    alice_ctx, alice = await _signed_in(browser, server.base, "alice")
    bob_ctx, bob = await _signed_in(browser, server.base, "bob")

    # Bob's first stream opens and ends at once; his browser's reconnection is held back.
    calls = 0
    reconnecting = asyncio.Event()
    release = asyncio.Event()

    async def live(route) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            await route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 300\n\n"
            )
            return
        reconnecting.set()
        await release.wait()
        await route.continue_()

    await bob.route(f"{server.base}/live", live)
    await bob.goto(f"{server.base}/")
    await asyncio.wait_for(reconnecting.wait(), 10)

    async def unread() -> int:
        response = await bob_ctx.request.get(f"{server.base}/notifications/count")
        return int((await response.json())["unread"])

    before = await unread()
    # While Bob's stream is away, Alice mentions him.
    await alice.goto(f"{server.base}/")
    await alice.get_by_label("What are you working on?").fill("Review the tender with @bob")
    await alice.get_by_role("button", name="Post", exact=True).click()
    await alice.locator("article.post", has_text="Review the tender").first.wait_for()
    assert await unread() == before + 1
    # When the stream is back, the badge says so without a reload.
    release.set()
    badge = bob.locator("[data-unread]", has_text=re.compile(rf"^{before + 1}\b"))
    await badge.wait_for(timeout=10_000)
    # The tab's title leads with the count too, once, however often it changes.
    assert await bob.title() == f"({before + 1}) Home · ACME"
    await alice_ctx.close()
    await bob_ctx.close()


# Long unbroken strings are what push a phone layout sideways: a pasted URL, a part number.
LONG_URL = "https://intranet.example/projects/" + "very-long-path-segment-" * 8 + "?q=" + "x" * 60
LONG_WORD = "Supercalifragilistic" * 6
LONG_TAG = "quarterlyroadmapreviewfortheentireengineeringdepartment"
LONG_TITLE = "Head of Qualitätssicherungsmaßnahmenkoordinationsabteilung"


async def _overflow(page) -> int:  # type: ignore[no-untyped-def]
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


async def test_deleting_asks_first_with_and_without_javascript(
    server: ServerProcess, browser
) -> None:  # type: ignore[no-untyped-def]
    """With JavaScript a dialog asks; without it the server's own page asks. Either way one
    stray tap deletes nothing."""
    for scripts in (True, False):
        context = await browser.new_context(java_script_enabled=scripts)
        page = await context.new_page()
        await _sign_in(page, server.base, "carol")
        text = f"Draft to delete ({'with' if scripts else 'without'} JavaScript)"
        await page.get_by_label("What are you working on?").fill(text)
        await page.get_by_role("button", name="Post", exact=True).click()
        card = page.locator("article.post", has_text=text)
        await card.wait_for()
        delete = card.get_by_role("button", name="Delete post by Carol Cho")
        if scripts:
            page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
            await delete.click()
            await page.wait_for_timeout(300)
            assert await card.count() == 1  # dismissed: still there
            page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await delete.click()
        else:
            await delete.click()
            await page.get_by_role("heading", name="Delete this post?").wait_for()
            assert text in await page.content()
            await page.get_by_role("button", name="Delete", exact=True).click()
        await page.get_by_text("The post was removed.").wait_for()
        assert await page.locator("article.post", has_text=text).count() == 0
        await context.close()


async def test_phone_sized_screen_has_no_horizontal_scroll(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    """Every page a person or an admin reaches, at 320 px wide, with long words and URLs in
    posts, a wall post and a reply: nothing scrolls sideways."""
    ctx = await browser.new_context(viewport={"width": 320, "height": 700}, is_mobile=True)
    page = await ctx.new_page()
    await page.goto(f"{server.base}/login")
    assert await _overflow(page) <= 1, "/login"
    await _sign_in(page, server.base, "alice")
    await page.get_by_label("What are you working on?").fill(
        f"Spec at {LONG_URL} for part {LONG_WORD} #{LONG_TAG}"
    )
    await page.get_by_role("button", name="Post", exact=True).click()
    await page.wait_for_selector(f"text={LONG_WORD}")
    assert await _overflow(page) <= 1, "/ with a long post"
    post_path = await page.locator("article.post a[href^='/posts/']").first.get_attribute("href")
    assert post_path is not None
    await page.goto(f"{server.base}{post_path}")
    await page.get_by_label("Reply").fill(f"Re: {LONG_WORD}")
    await page.get_by_role("button", name="Reply", exact=True).click()
    await page.wait_for_selector(f"text=Re: {LONG_WORD}")
    await page.goto(f"{server.base}{post_path}/edit")
    await page.locator("textarea").fill(f"Edited: {LONG_URL} {LONG_WORD}")
    await page.get_by_role("button", name="Save").click()
    # A German compound in a job title is one long word on the people pages.
    await page.goto(f"{server.base}/settings/profile")
    await page.get_by_label("Job title").fill(LONG_TITLE)
    await page.get_by_role("button", name="Save profile").click()
    await page.goto(f"{server.base}/people/bob")
    await page.locator("textarea").fill(f"On your wall: {LONG_WORD}")
    await page.locator("form.composer button[type=submit]").click()
    await page.wait_for_selector(f"text=On your wall: {LONG_WORD}")
    paths = [
        "/",
        post_path,
        f"{post_path}/history",
        f"{post_path}/edit",
        f"/tags/{LONG_TAG}",
        "/people",
        "/people?q=zzz-nobody",
        "/people/alice",
        "/people/bob",
        "/people/alice/followers",
        "/people/alice/following",
        "/notifications",
        "/settings/profile",
        "/settings/password",
        "/posts/999999999",  # the error page
    ]
    for path in paths:
        await page.goto(f"{server.base}{path}")
        assert await _overflow(page) <= 1, path
    await page.goto(f"{server.base}/people")
    assert LONG_TITLE in await page.content()
    # Text at twice the size (a reader's own setting) wraps instead of widening the page.
    for path in ("/", "/people", "/people/alice", post_path, "/settings/profile"):
        await page.goto(f"{server.base}{path}")
        await page.evaluate("document.documentElement.style.fontSize = '200%'")
        assert await _overflow(page) <= 1, f"{path} at 200% text"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(f"{server.base}/")
    await page.screenshot(path=str(ARTIFACTS / "phone-feed.png"), full_page=True)
    await ctx.close()

    admin_ctx = await browser.new_context(viewport={"width": 320, "height": 700}, is_mobile=True)
    admin = await admin_ctx.new_page()
    await _sign_in(admin, server.base, "admin")
    await admin.goto(f"{server.base}/admin/federation")
    await admin.get_by_label("Host", exact=True).fill("supplier-with-a-long-name.example:8443")
    await admin.get_by_label("Note (optional)").fill(f"Contract {LONG_WORD}")
    await admin.get_by_role("button", name="Allow host").click()
    await admin.wait_for_selector("text=supplier-with-a-long-name.example:8443")
    # Wide admin tables become one card per row: every action is in sight without scrolling
    # the table sideways.
    for path, action in (("/admin/users", "Deactivate"), ("/admin/federation", "Remove")):
        await admin.goto(f"{server.base}{path}")
        assert await _overflow(admin) <= 1, path
        box = await admin.get_by_role("button", name=action).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 320, (path, box)
    await admin.screenshot(path=str(ARTIFACTS / "phone-admin-federation.png"), full_page=True)
    await admin_ctx.close()


async def _nav_rows(page) -> int:  # type: ignore[no-untyped-def]
    """How many lines the main navigation's items take."""
    tops = await page.evaluate(
        "[...document.querySelectorAll('.site-nav li')].map(li => li.getBoundingClientRect().top)"
    )
    return len({round(top) for top in tops})


@pytest.mark.parametrize(
    "size", [(320, 640), (360, 740), (390, 844)], ids=["320x640", "360x740", "390x844"]
)
async def test_on_a_phone_the_menu_is_one_row_and_no_page_scrolls_sideways(  # type: ignore[no-untyped-def]
    server: ServerProcess, browser, size: tuple[int, int]
) -> None:
    """An admin has the most menu items: all of them in one row of icons and short labels,
    Sign out in sight, and no page wider than the screen."""
    width, height = size
    context = await browser.new_context(
        viewport={"width": width, "height": height}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    await _sign_in(page, server.base, "admin")
    # The visibility menu sits under its label, as wide as the text box: beside the label
    # "Internal (colleagues only)" was cut off.
    text_box = await page.get_by_label("What are you working on?").bounding_box()
    menu = await page.get_by_label("Visibility").bounding_box()
    assert text_box and menu and abs(menu["width"] - text_box["width"]) <= 1, (text_box, menu)
    # Every choice fits the closed menu whole ("Direct (mentioned people o…" did not at 320 px).
    cut = await page.get_by_label("Visibility").evaluate(
        """select => {
            const style = getComputedStyle(select);
            const context = document.createElement('canvas').getContext('2d');
            context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            // The native menu draws its arrow inside the padding box: about 20 px.
            const arrow = style.appearance === 'none' ? 0 : 20;
            const room = select.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight) - arrow;
            return [...select.options].map(o => o.text)
                .filter(text => context.measureText(text).width > room);
        }"""
    )
    assert cut == [], (width, cut)
    # A getting-started step's number stands by its first line (it is a block, not inline).
    for step in await page.locator(".setup-steps a").all():
        assert await step.evaluate("el => getComputedStyle(el).display") == "block"
    await page.get_by_label("What are you working on?").fill(
        f"Phone check {width}: {LONG_WORD} " + "and a long paragraph of notes " * 20
    )
    await page.get_by_role("button", name="Post", exact=True).click()
    card = page.locator("article.post", has_text=f"Phone check {width}")
    await card.wait_for()
    # The visibility badge is short ("Internal") and stays on the line of the time.
    time_box = await card.locator(".post-info time").bounding_box()
    badge_box = await card.locator(".badge-vis").bounding_box()
    assert time_box and badge_box and abs(time_box["y"] - badge_box["y"]) < 12, (
        time_box,
        badge_box,
    )
    assert await card.locator(".badge-vis").inner_text() == "Internal"
    post_path = await card.locator(".post-info a[href^='/posts/']").first.get_attribute("href")
    assert post_path is not None
    await page.goto(f"{server.base}{post_path}")
    await page.get_by_label("Reply").fill(f"Reply at {width}")
    await page.get_by_role("button", name="Reply", exact=True).click()
    await page.wait_for_selector(f"text=Reply at {width}")
    for path in (
        "/",
        "/people/admin",
        post_path,
        "/people",
        "/notifications",
        "/settings/profile",
        "/settings/password",
        "/admin/users",
        "/admin/federation",
        "/admin/backups",
    ):
        await page.goto(f"{server.base}{path}")
        sizes = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes[0] <= sizes[1], (path, sizes)
        assert await _nav_rows(page) == 1, path
        nav = page.get_by_role("navigation", name="Main")
        for label in ("Home", "People", "Alerts", "Profile", "Settings", "Admin"):
            box = await nav.get_by_role("link", name=label).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert box["height"] >= 44, (label, box)  # a finger-sized target
        sign_out = await page.get_by_role("button", name="Sign out").bounding_box()
        assert sign_out is not None and sign_out["y"] + sign_out["height"] <= 120, path
    await page.goto(f"{server.base}/")
    # The reply shows in the feed as "Replying to Ada Administrator"; a name that is one long
    # word wraps instead of widening the page.
    note = page.locator(".reply-note a", has_text="Replying to Ada Administrator").first
    await note.evaluate(f"el => {{ el.textContent = 'Replying to {LONG_WORD}'; }}")
    assert await _overflow(page) <= 0
    await page.goto(f"{server.base}/")
    await page.screenshot(path=str(ARTIFACTS / f"phone-{width}-feed.png"), full_page=True)
    await context.close()


async def test_a_long_post_opens_in_place_or_on_its_page(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    """With JavaScript "Show more" opens the text where it is (and says so); without, it is
    a link to the post's page, which shows all of it. Likes toggle in place, aria-pressed;
    the time of a new post reads "now" with JavaScript, the date and time without."""
    text = "Minutes of the supplier meeting. " * 25 + "LAST-WORDS"
    for scripts in (True, False):
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, java_script_enabled=scripts
        )
        page = await context.new_page()
        await _sign_in(page, server.base, "bob")
        await page.get_by_label("What are you working on?").fill(f"{scripts} {text}")
        await page.get_by_role("button", name="Post", exact=True).click()
        card = page.locator("article.post", has_text=f"{scripts} Minutes")
        await card.wait_for()
        body = card.locator(".post-content")
        clipped = "el => el.scrollHeight - el.clientHeight"
        assert await body.evaluate(clipped) > 20  # shortened
        posted = card.locator(".post-info time")
        if scripts:
            # A time in a feed reads as people say it; the date and time is in the tooltip.
            assert await posted.inner_text() in ("now", "1 minute ago"), await posted.inner_text()
            assert re.search(r"\d{4}", await posted.get_attribute("title") or "")
            more = card.get_by_role("button", name="Show more")
            assert await more.get_attribute("aria-expanded") == "false"
            await more.click()
            less = card.get_by_role("button", name="Show less")
            assert await less.get_attribute("aria-expanded") == "true"
            assert await body.evaluate(clipped) <= 1
            await less.click()
            assert await body.evaluate(clipped) > 20
            like = card.get_by_role("button", name="Like post by Bob Berg")
            assert await like.get_attribute("aria-pressed") == "false"
            await page.evaluate("window.stillThisPage = true")
            await like.click()
            await card.locator('button.action-like[aria-pressed="true"]').wait_for()
            assert await like.locator("[data-like-count]").inner_text() == "1"
            assert await like.locator("[data-like-words]").inner_text() == "1 like"
            assert await page.evaluate("window.stillThisPage === true")
        else:
            assert re.search(r"\d{4}", await posted.inner_text())  # the date, from the server
            await card.get_by_role("link", name="Show more").click()
            await page.wait_for_url(re.compile(r"/posts/\d+$"))
            whole = page.locator("article.post", has_text=f"{scripts} Minutes")
            assert await whole.locator(".post-content").evaluate(clipped) <= 1
            assert await whole.get_by_text("LAST-WORDS").is_visible()
        await context.close()


def test_chromium_binary_is_debians() -> None:
    assert shutil.which("chromium") == CHROMIUM or Path(CHROMIUM).exists()
