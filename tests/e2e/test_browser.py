"""A real browser (Debian chromium through playwright): follow, post, live update, phone size."""

from __future__ import annotations

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
    for name, display in (("alice", "Alice Anders"), ("bob", "Bob Berg"), ("carol", "Carol Cho")):
        made = run_cli(
            "--instance",
            str(inst),
            "user",
            "create",
            name,
            "--display-name",
            display,
            "--password-stdin",
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


async def test_follow_post_and_live_update(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    alice_ctx = await browser.new_context()
    bob_ctx = await browser.new_context()
    alice = await alice_ctx.new_page()
    bob = await bob_ctx.new_page()
    await _sign_in(alice, server.base, "alice")
    await _sign_in(bob, server.base, "bob")

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
    await alice.get_by_role("button", name="Post").click()
    await bob.locator("article.post", has_text=marker).wait_for(timeout=10_000)
    await bob.screenshot(path=str(ARTIFACTS / "feed.png"), full_page=True)

    # Carol (whom Bob does not follow) posts publicly; Alice boosts it; Bob's open feed shows
    # it without a reload, marked as Alice's boost.
    carol_ctx = await browser.new_context()
    carol = await carol_ctx.new_page()
    await _sign_in(carol, server.base, "carol")
    boosted = "Plant tour photos are up"
    await carol.get_by_label("What are you working on?").fill(boosted)
    await carol.get_by_label("Visibility").select_option("public")
    await carol.get_by_role("button", name="Post").click()
    await carol.locator("article.post", has_text=boosted).wait_for(timeout=10_000)
    await alice.goto(f"{server.base}/people/carol")
    card = alice.locator("article.post", has_text=boosted)
    await card.get_by_role("button", name="Boost").click()
    await alice.wait_for_load_state()
    live = bob.locator("article.post", has_text=boosted)
    await live.wait_for(timeout=10_000)
    assert "Alice Anders boosted" in await live.inner_text()
    await carol_ctx.close()
    await alice_ctx.close()
    await bob_ctx.close()


async def test_phone_sized_screen_has_no_horizontal_scroll(server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    ctx = await browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = await ctx.new_page()
    await _sign_in(page, server.base, "alice")
    for path in ("/", "/people", "/people/alice", "/notifications", "/settings/profile"):
        await page.goto(f"{server.base}{path}")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, (path, overflow)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(f"{server.base}/")
    await page.screenshot(path=str(ARTIFACTS / "phone-feed.png"), full_page=True)
    await ctx.close()


def test_chromium_binary_is_debians() -> None:
    assert shutil.which("chromium") == CHROMIUM or Path(CHROMIUM).exists()
