"""Sign-in, sessions, CSRF, throttling, password change, deactivation, redirects."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from quart import Quart

from server.app import create_app
from server.domain import Visibility
from server.errors import InvalidInput, SteelyardError, TooManyRequests
from server.services import accounts, following, posting
from server.web.support import client_address
from tests.conftest import PASSWORD, People, context_of, make_instance
from tests.support.web import csrf_of, login, post_form


async def test_anonymous_is_sent_to_sign_in(app: Quart) -> None:
    client = app.test_client()
    response = await client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


async def test_sign_in_and_out(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    home = await client.get("/")
    assert home.status_code == 200
    assert "What are you working on?" in await home.get_data(as_text=True)
    out = await post_form(client, "/logout", {})
    assert out.status_code == 302
    assert (await client.get("/")).status_code == 302


async def test_wrong_password_gets_a_clear_message(app: Quart, people: People) -> None:
    client = app.test_client()
    token = await csrf_of(client)
    response = await client.post(
        "/login", form={"username": "alice", "password": "nope nope nope", "csrf_token": token}
    )
    assert response.status_code == 400
    assert "Wrong username or password." in await response.get_data(as_text=True)


async def test_failed_sign_ins_are_throttled(app: Quart, people: People) -> None:
    client = app.test_client()
    for _ in range(accounts.MAX_FAILURES):
        token = await csrf_of(client)
        await client.post(
            "/login", form={"username": "bob", "password": "wrong password!", "csrf_token": token}
        )
    token = await csrf_of(client)
    # Even the right password is refused while throttled.
    blocked = await client.post(
        "/login", form={"username": "bob", "password": PASSWORD, "csrf_token": token}
    )
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in await blocked.get_data(as_text=True)


async def test_concurrent_guesses_are_counted_before_they_are_checked(
    app: Quart, people: People
) -> None:
    """Each attempt is counted in the same transaction that checks the limit, so guesses
    sent at once cannot all reach the password check while each other's scrypt runs."""
    ctx = context_of(app)

    async def guess(n: int) -> str:
        try:
            await accounts.authenticate(ctx, "bob", f"guess number {n}", "192.0.2.7")
        except SteelyardError as exc:
            return type(exc).__name__
        return "signed in"

    outcomes = await asyncio.gather(*(guess(n) for n in range(20)))

    assert outcomes.count("InvalidInput") == accounts.MAX_FAILURES
    assert outcomes.count("TooManyRequests") == 20 - accounts.MAX_FAILURES


async def test_one_persons_failures_do_not_lock_out_colleagues_on_the_same_address(
    app: Quart, people: People
) -> None:
    """Behind one NAT or proxy everyone shares an address: its own limit is looser."""
    ctx = context_of(app)
    for n in range(accounts.MAX_FAILURES):
        with pytest.raises(InvalidInput):
            await accounts.authenticate(ctx, "bob", f"typo {n}", "192.0.2.8")
    signed_in = await accounts.authenticate(ctx, "carol", PASSWORD, "192.0.2.8")
    assert signed_in.actor_id == people.carol.id
    # ... but an address that keeps failing, across usernames, is stopped too.
    for n in range(accounts.MAX_CLIENT_FAILURES - accounts.MAX_FAILURES):
        with pytest.raises(InvalidInput):
            await accounts.authenticate(ctx, f"nobody{n}", "whatever it is", "192.0.2.8")
    with pytest.raises(TooManyRequests):
        await accounts.authenticate(ctx, "alice", PASSWORD, "192.0.2.8")


async def test_the_client_address_comes_from_trusted_proxies_only(tmp_path: Path) -> None:
    """X-Forwarded-For is believed only as far as proxy_hops says: its leftmost entries are
    whatever the client wrote."""
    for hops, expected in ((0, "<peer>"), (1, "198.51.100.9"), (2, "203.0.113.5")):
        instance = make_instance(tmp_path / f"hops{hops}")
        app = create_app(instance, overrides={"proxy_hops": hops})
        async with (
            app.test_app(),
            app.test_request_context(
                "/login", headers={"X-Forwarded-For": "203.0.113.5, 198.51.100.9"}
            ),
        ):
            from quart import request

            peer = request.remote_addr or "?"
            assert client_address() == (peer if expected == "<peer>" else expected)


async def test_login_without_or_with_wrong_csrf_is_refused(app: Quart, people: People) -> None:
    client = app.test_client()
    await csrf_of(client)
    missing = await client.post("/login", form={"username": "alice", "password": PASSWORD})
    assert missing.status_code == 400
    wrong = await client.post(
        "/login", form={"username": "alice", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert wrong.status_code == 400
    assert (await client.get("/")).status_code == 302


async def test_state_change_without_csrf_changes_nothing(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await client.post("/posts", form={"text": "forged post", "visibility": "internal"})
    assert response.status_code == 400
    home = await (await client.get("/")).get_data(as_text=True)
    assert "forged post" not in home
    header_wrong = await client.post(
        "/posts", form={"text": "forged 2"}, headers={"X-CSRF-Token": "nope"}
    )
    assert header_wrong.status_code == 400


async def test_open_redirect_after_login_is_ignored(app: Quart, people: People) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client = app.test_client()
        token = await csrf_of(client)
        response = await client.post(
            "/login",
            form={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/"


async def test_deactivated_user_is_signed_out_and_cannot_sign_in(
    app: Quart, people: People
) -> None:
    client = app.test_client()
    await login(client, "bob", PASSWORD)
    await accounts.set_active(context_of(app), "bob", active=False, by=None)
    assert (await client.get("/")).status_code == 302
    token = await csrf_of(client)
    again = await client.post(
        "/login", form={"username": "bob", "password": PASSWORD, "csrf_token": token}
    )
    assert again.status_code == 403
    assert "deactivated" in await again.get_data(as_text=True)
    assert (await client.get("/")).status_code == 302  # and not signed in
    # Only the right password learns that: a wrong one reads like any wrong one.
    token = await csrf_of(client)
    guess = await client.post(
        "/login", form={"username": "bob", "password": "not the password", "csrf_token": token}
    )
    body = await guess.get_data(as_text=True)
    assert guess.status_code == 400 and "Wrong username or password." in body
    assert "deactivated" not in body


async def test_an_admin_resets_a_password_after_confirming(app: Quart, people: People) -> None:
    """A forgotten password: the admin gives a new one-time password on the web (shown once),
    the old one stops working and the person's sessions end."""
    bob = app.test_client()
    await login(bob, "bob", PASSWORD)
    admin = app.test_client()
    await login(admin, "alice", PASSWORD)
    assert "Reset password" in await (await admin.get("/admin/users")).get_data(as_text=True)

    asked = await post_form(admin, "/admin/users/bob/password", {})
    assert "Give bob a new password?" in await asked.get_data(as_text=True)
    assert (await bob.get("/")).status_code == 200  # nothing happened yet
    done = await post_form(admin, "/admin/users/bob/password", {"confirmed": "yes"})
    assert done.status_code == 303
    page = await (await admin.get("/admin/users")).get_data(as_text=True)
    found = re.search(r"New one-time password for bob: (\S+) \(shown once\)", page)
    assert found is not None
    assert (await bob.get("/")).status_code == 302  # signed out
    fresh = app.test_client()
    await login(fresh, "bob", found[1])
    token = await csrf_of(app.test_client())
    old = await app.test_client().post(
        "/login", form={"username": "bob", "password": PASSWORD, "csrf_token": token}
    )
    assert old.status_code in (400, 403)
    # not one's own (that needs the current password), and not for non-admins
    own = await post_form(admin, "/admin/users/alice/password", {"confirmed": "yes"})
    assert own.status_code == 403
    carol = app.test_client()
    await login(carol, "carol", PASSWORD)
    refused = await post_form(carol, "/admin/users/bob/password", {"confirmed": "yes"})
    assert refused.status_code == 403


async def test_admin_deactivates_only_after_confirming(app: Quart, people: People) -> None:
    """Without JavaScript's dialog one tap only asks; reactivating asks nothing."""
    bob = app.test_client()
    await login(bob, "bob", PASSWORD)
    admin = app.test_client()
    await login(admin, "alice", PASSWORD)

    asked = await post_form(admin, "/admin/users/bob/active", {"active": "0"})

    assert asked.status_code == 200
    page = await asked.get_data(as_text=True)
    assert "Deactivate bob?" in page and 'name="active" value="0"' in page
    assert (await bob.get("/")).status_code == 200  # still signed in
    done = await post_form(admin, "/admin/users/bob/active", {"active": "0", "confirmed": "yes"})
    assert done.status_code == 303
    assert (await bob.get("/")).status_code == 302
    back = await post_form(admin, "/admin/users/bob/active", {"active": "1"})
    assert back.status_code == 303
    await login(bob, "bob", PASSWORD)
    assert (await bob.get("/")).status_code == 200


async def test_password_change_ends_other_sessions(app: Quart, people: People) -> None:
    first, second = app.test_client(), app.test_client()
    await login(first, "carol", PASSWORD)
    await login(second, "carol", PASSWORD)
    new = "a brand new passphrase 7"
    response = await post_form(
        first,
        "/settings/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert response.status_code == 302
    assert (await first.get("/")).status_code == 200
    assert (await second.get("/")).status_code == 302
    wrong = await post_form(
        first,
        "/settings/password",
        {
            "current_password": "not it at all",
            "new_password": new + "x",
            "confirm_password": new + "x",
        },
    )
    assert wrong.status_code == 400


async def test_cookie_is_secure_on_https_instances(tmp_path: Path) -> None:
    inst = make_instance(tmp_path / "secure", url="https://social.acme.example")
    app = create_app(inst)
    async with app.test_app():
        await accounts.create_user(context_of(app), "dora", PASSWORD)
        client = app.test_client()
        token = await csrf_of(client)
        response = await client.post(
            "/login", form={"username": "dora", "password": PASSWORD, "csrf_token": token}
        )
        cookie = response.headers.get("Set-Cookie", "")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Strict-Transport-Security" in response.headers


async def test_admin_pages_are_for_admins(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "bob", PASSWORD)
    assert (await client.get("/admin/users")).status_code == 403
    refused = await post_form(client, "/admin/users", {"username": "mallory"})
    assert refused.status_code == 403
    admin = app.test_client()
    await login(admin, "alice", PASSWORD)
    page = await admin.get("/admin/users")
    assert page.status_code == 200
    made = await post_form(
        admin,
        "/admin/users",
        {"username": "frank", "display_name": "Frank"},
        token_from="/admin/users",
    )
    assert made.status_code == 303
    listing = await (await admin.get("/admin/users")).get_data(as_text=True)
    assert "frank" in listing and "One-time password" in listing


async def test_a_one_time_password_opens_only_the_page_to_choose_ones_own(
    app: Quart, people: People
) -> None:
    """The admin (or whoever saw the password on the way) cannot use the account: the first
    sign-in leads to choosing a new password, and nothing else answers until then."""
    admin = app.test_client()
    await login(admin, "alice", PASSWORD)
    await post_form(
        admin,
        "/admin/users",
        {"username": "frank", "display_name": "Frank"},
        token_from="/admin/users",
    )
    listing = await (await admin.get("/admin/users")).get_data(as_text=True)
    found = re.search(r"One-time password: ([A-Za-z0-9_-]+)", listing)
    assert found is not None
    frank = app.test_client()
    await login(frank, "frank", found[1])
    home = await frank.get("/")
    assert home.status_code == 303 and home.headers["Location"].endswith("/settings/password")
    token = await csrf_of(frank, "/settings/password")
    posted = await frank.post(
        "/posts", form={"text": "hello", "visibility": "internal", "csrf_token": token}
    )
    assert posted.status_code == 303
    fetched = await frank.post(
        "/posts",
        form={"text": "hello", "visibility": "internal", "csrf_token": token},
        headers={"X-Requested-With": "steelyard"},
    )
    assert (
        fetched.status_code == 403
        and "Choose your own password" in (await fetched.get_json())["error"]
    )
    assert (await frank.get("/people")).status_code == 303
    page = await (await frank.get("/settings/password")).get_data(as_text=True)
    assert "You signed in with a password someone gave you" in page
    changed = await frank.post(
        "/settings/password",
        form={
            "current_password": found[1],
            "new_password": "a long new passphrase 42",
            "confirm_password": "a long new passphrase 42",
            "csrf_token": token,
        },
    )
    assert changed.status_code in (302, 303)
    assert (await frank.get("/")).status_code == 200
    ctx = context_of(app)
    from server.storage import users

    posts_by_frank = await ctx.db.read(
        lambda c: c.execute(
            "SELECT count(*) FROM posts p JOIN actors a ON a.id = p.author_id"
            " WHERE a.username = 'frank'"
        ).fetchone()[0]
    )
    assert posts_by_frank == 0  # nothing went through before
    frank_actor = await ctx.db.read(users.select_local_actor, "frank")
    assert frank_actor is not None
    account = await ctx.db.read(users.select_account, frank_actor.id)
    assert account is not None and not account.must_change_password


async def test_the_field_at_fault_is_marked_for_screen_readers(app: Quart, people: People) -> None:
    """The error names its field: that field is aria-invalid and described by the message,
    which takes the focus; the other fields are left as they were."""
    client = app.test_client()
    await login(client, "carol", PASSWORD)
    weak = await post_form(
        client,
        "/settings/password",
        {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"},
    )
    page = await weak.get_data(as_text=True)
    assert weak.status_code == 400
    assert 'id="form-error" tabindex="-1" autofocus' in page
    assert re.search(
        r'name="new_password"[^>]*aria-invalid="true" aria-describedby="form-error pw-help"', page
    )
    assert page.count('aria-invalid="true"') == 1
    wrong = await post_form(
        client,
        "/settings/password",
        {
            "current_password": "not it at all",
            "new_password": "x" * 12,
            "confirm_password": "x" * 12,
        },
    )
    page = await wrong.get_data(as_text=True)
    assert re.search(r'name="current_password"[^>]*aria-invalid="true"', page)
    assert re.search(r'name="new_password"[^>]*aria-describedby="pw-help">', page)

    admin = app.test_client()
    await login(admin, "alice", PASSWORD)
    taken = await post_form(admin, "/admin/users", {"username": "bob"}, token_from="/admin/users")
    assert taken.status_code == 409
    assert re.search(r'name="username"[^>]*aria-invalid="true"', await taken.get_data(as_text=True))


async def test_signing_out_ends_the_session_on_the_server(app: Quart, people: People) -> None:
    """A copy of the cookie taken before signing out (a shared computer, a proxy log) no
    longer signs anyone in."""
    client = app.test_client()
    await login(client, "bob", PASSWORD)
    stolen = app.test_client()
    for cookie in client.cookie_jar:
        stolen.cookie_jar.set_cookie(cookie)
    assert (await stolen.get("/")).status_code == 200

    await post_form(client, "/logout", {})

    assert (await stolen.get("/")).status_code == 302
    await login(client, "bob", PASSWORD)  # signing in again makes a new session
    assert (await client.get("/")).status_code == 200


@pytest.mark.parametrize("ending", ["deactivated", "signed out", "password changed"])
async def test_an_open_live_stream_ends_with_its_session(
    app: Quart, people: People, ending: str
) -> None:
    """The live stream checks its session before each event: ids of new posts stop reaching
    a deactivated account, a signed-out session or one whose password changed."""
    ctx = context_of(app)
    await following.follow(ctx, people.bob, people.alice.id)  # her posts reach his stream
    bob = app.test_client()
    await login(bob, "bob", PASSWORD)
    received = b""
    async with bob.request("/live") as stream:
        await stream.send_complete()
        while b"event: notifications" not in received:
            received += await asyncio.wait_for(stream.receive(), 5)
        if ending == "deactivated":
            await accounts.set_active(ctx, "bob", active=False, by=None)
        elif ending == "signed out":
            await post_form(bob, "/logout", {})
        else:
            await accounts.set_password(ctx, people.bob.id, "a brand new passphrase 8")
        await posting.publish_post(
            ctx, people.alice, posting.Draft("Plant news", Visibility.INTERNAL)
        )
        after = b""
        try:
            while True:
                after += await asyncio.wait_for(stream.receive(), 2)
        except Exception:  # ended, or went quiet: either way nothing more came
            pass
        await stream.disconnect()
    assert b"event: post" not in after
    assert b"event: notifications" not in after
