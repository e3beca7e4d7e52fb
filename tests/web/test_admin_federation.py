"""The admin federation page: who may see and change it, allow / remove / resend, CSRF, and the
per-host delivery health it shows."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from quart import Quart

from federation.dispatch import Dispatcher
from federation.ports import StoredInbound
from server.app import create_app
from server.services import allowlist
from server.services.context import Context
from server.storage import federation as fed
from server.web import admin
from tests.conftest import PASSWORD, People, context_of
from tests.support.records import inbound_record
from tests.support.web import login, post_form

PAGE = "/admin/federation"


@pytest.fixture
async def app(instance_dir: Path) -> AsyncIterator[Quart]:
    # No delivery worker: queued rows stay exactly as the tests put them (and nothing here
    # ever tries the network).
    application = create_app(instance_dir, overrides={"run_workers": False})
    async with application.test_app():
        yield application


async def queue_deliveries(ctx: Context, actor_id: int, targets: list[tuple[str, str]]) -> int:
    def tx(conn: sqlite3.Connection) -> int:
        return fed.insert_outbox(
            conn,
            activity_id=f"{ctx.config.url}/activities/{len(targets)}-{ctx.clock.now_ms()}",
            activity_type="Create",
            actor_id=actor_id,
            body={"type": "Create"},
            targets=targets,
            now_ms=ctx.clock.now_ms(),
        )

    return await ctx.db.write(tx)


async def delivery_states(ctx: Context, host: str) -> list[str]:
    def read(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT state FROM deliveries WHERE host = ? ORDER BY id", (host,)
        ).fetchall()
        return [r[0] for r in rows]

    return await ctx.db.read(read)


def host_row(body: str, host: str) -> str:
    match = re.search(rf'<tr data-host="{re.escape(host)}"[^>]*>(.*?)</tr>', body, re.S)
    assert match, f"no row for {host}"
    return match.group(0)


def health(row: str, name: str) -> str:
    match = re.search(rf'data-health="{name}">(.*?)</td>', row, re.S)
    assert match, name
    return match.group(1).strip()


async def test_anonymous_is_sent_to_sign_in(app: Quart, people: People) -> None:
    response = await app.test_client().get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


async def test_non_admin_gets_403_on_get_and_post(app: Quart, people: People) -> None:
    await allowlist.allow(context_of(app), "partner.example", relation="partner", by="test")
    client = app.test_client()
    await login(client, "bob", PASSWORD)
    assert (await client.get(PAGE)).status_code == 403
    added = await post_form(client, PAGE, {"host": "evil.example", "relation": "partner"})
    assert added.status_code == 403
    removed = await post_form(client, f"{PAGE}/partner.example/remove", {"confirmed": "yes"})
    assert removed.status_code == 403
    resent = await post_form(client, f"{PAGE}/partner.example/resend", {})
    assert resent.status_code == 403
    rows = {row.host: row for row in await allowlist.listing(context_of(app))}
    assert set(rows) == {"partner.example"}
    assert rows["partner.example"].allowed


async def test_admin_adds_a_host_and_sees_it(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    page = await client.get(PAGE)
    assert page.status_code == 200
    body = await page.get_data(as_text=True)
    assert "No hosts yet" in body
    assert 'aria-label="Administration"' in body
    assert re.search(r'href="/admin/federation" aria-current="page">Federation', body)

    response = await post_form(
        client,
        PAGE,
        {"host": " Partner.Example ", "relation": "supplier", "note": "Bolts, contract 42"},
        token_from=PAGE,
    )
    assert response.status_code == 303
    shown = await (await client.get(PAGE)).get_data(as_text=True)
    assert "partner.example added as supplier." in shown
    row = host_row(shown, "partner.example")
    assert "Supplier" in row and "Allowed" in row and "by alice" in row
    assert "Bolts, contract 42" in row
    assert "inactive" not in row

    def audit(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
        rows = conn.execute(
            "SELECT actor_id, action, detail FROM audit_log WHERE action LIKE 'federation.%'"
        ).fetchall()
        return [tuple(r) for r in rows]

    entries = await context_of(app).db.read(audit)
    assert entries == [
        (people.alice.id, "federation.allow", "partner.example as supplier by alice")
    ]


@pytest.mark.parametrize(
    ("host", "relation", "message"),
    [
        ("evil.example@partner.example", "partner", "is not a valid host name"),
        ("partner.example/x", "partner", "is not a valid host name"),
        ("http://partner.example", "partner", "is not a valid host name"),
        ("partner..example", "partner", "is not a valid host name"),
        ("", "partner", "Enter a host name"),
        ("127.0.0.1:8000", "partner", "own host"),
        ("partner.example", "friend", "The relation must be one of"),
    ],
)
async def test_bad_input_rerenders_with_400(
    app: Quart, people: People, host: str, relation: str, message: str
) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await post_form(client, PAGE, {"host": host, "relation": relation}, token_from=PAGE)
    assert response.status_code == 400
    body = await response.get_data(as_text=True)
    assert message in body
    assert 'role="alert"' in body
    assert 'name="host"' in body  # the form is shown again
    assert await allowlist.listing(context_of(app)) == []


async def test_removal_cancels_queued_deliveries_and_keeps_them(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await allowlist.allow(ctx, "partner.example", relation="partner", by="cli:root")
    await allowlist.allow(ctx, "other.example", relation="customer", by="cli:root")
    await queue_deliveries(
        ctx,
        people.alice.id,
        [
            ("https://partner.example/users/a/inbox", "partner.example"),
            ("https://partner.example/users/b/inbox", "partner.example"),
            ("https://partner.example/inbox", "partner.example"),
            ("https://other.example/inbox", "other.example"),
        ],
    )
    assert await delivery_states(ctx, "partner.example") == ["queued"] * 3

    client = app.test_client()
    await login(client, "alice", PASSWORD)
    page = await (await client.get(PAGE)).get_data(as_text=True)
    row = host_row(page, "partner.example")
    assert 'data-confirm="Remove partner.example from the allowlist? Its 3 queued' in row

    # Without JavaScript's dialog the server asks first, and nothing changes yet.
    asked = await post_form(client, f"{PAGE}/partner.example/remove", {}, token_from=PAGE)
    assert asked.status_code == 200
    assert "Remove partner.example from the allowlist?" in await asked.get_data(as_text=True)
    assert await delivery_states(ctx, "partner.example") == ["queued"] * 3

    response = await post_form(
        client, f"{PAGE}/partner.example/remove", {"confirmed": "yes"}, token_from=PAGE
    )
    assert response.status_code == 303
    shown = await (await client.get(PAGE)).get_data(as_text=True)
    assert (
        "partner.example removed: 3 queued deliveries cancelled and kept for the record." in shown
    )
    # Kept, never deleted; the other host's delivery is untouched.
    assert await delivery_states(ctx, "partner.example") == ["cancelled"] * 3
    assert await delivery_states(ctx, "other.example") == ["queued"]

    removed = host_row(shown, "partner.example")
    assert 'class="inactive"' in removed
    assert "Removed" in removed and "by alice" in removed
    assert health(removed, "cancelled") == "3"
    assert health(removed, "queued") == "0"
    assert "/partner.example/remove" not in removed  # no second Remove button

    again = await post_form(client, f"{PAGE}/partner.example/remove", {}, token_from=PAGE)
    assert again.status_code == 404
    assert "already removed" in await again.get_data(as_text=True)


async def test_removing_an_unknown_host_is_404(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await post_form(client, f"{PAGE}/stranger.example/remove", {}, token_from=PAGE)
    assert response.status_code == 404
    body = await response.get_data(as_text=True)
    assert "stranger.example is not on the allowlist." in body
    assert "Allow a host" in body


async def test_missing_csrf_is_400_and_changes_nothing(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await allowlist.allow(ctx, "partner.example", relation="partner", by="cli:root")
    await queue_deliveries(
        ctx, people.alice.id, [("https://partner.example/inbox", "partner.example")]
    )
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    removed = await client.post(f"{PAGE}/partner.example/remove", form={"confirmed": "yes"})
    assert removed.status_code == 400
    added = await client.post(PAGE, form={"host": "new.example", "relation": "partner"})
    assert added.status_code == 400
    forged = await client.post(
        PAGE, form={"host": "new.example", "relation": "partner", "csrf_token": "forged"}
    )
    assert forged.status_code == 400
    rows = {row.host: row for row in await allowlist.listing(ctx)}
    assert set(rows) == {"partner.example"}
    assert rows["partner.example"].allowed
    assert await delivery_states(ctx, "partner.example") == ["queued"]


async def test_page_shows_health_numbers_and_resend_works(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await allowlist.allow(ctx, "partner.example", relation="partner", by="cli:root")
    await queue_deliveries(
        ctx,
        people.alice.id,
        [(f"https://partner.example/users/u{i}/inbox", "partner.example") for i in range(5)],
    )

    def ids(conn: sqlite3.Connection) -> list[int]:
        return [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY id")]

    first, second, third, *_ = await ctx.db.read(ids)
    now = ctx.clock.now_ms()

    def outcome(
        conn: sqlite3.Connection,
        delivery_id: int,
        state: str,
        status: int,
        error: str | None,
        *,
        retry_at: int | None = None,
    ) -> None:
        fed.record_delivery(
            conn,
            delivery_id,
            "partner.example",
            state=state,
            counted=True,
            status=status,
            error=error,
            next_attempt_ms=retry_at,
            host_failed=error is not None,
            now_ms=now,
            circuit_ms=lambda failures: 60_000,
        )

    def outcomes(conn: sqlite3.Connection) -> None:
        outcome(conn, first, "delivered", 202, None)
        outcome(conn, second, "queued", 503, "HTTP 503 from the inbox", retry_at=now + 30_000)
        outcome(conn, third, "held", 500, "gave up after 14 days")

    await ctx.db.write(outcomes)

    client = app.test_client()
    await login(client, "alice", PASSWORD)
    body = await (await client.get(PAGE)).get_data(as_text=True)
    row = host_row(body, "partner.example")
    assert health(row, "queued") == "3"  # the failing one is still queued
    assert health(row, "failing") == "1"
    assert health(row, "held") == "1"
    assert health(row, "cancelled") == "0"
    assert "<time" in health(row, "last-success")
    assert "gave up after 14 days" in health(row, "last-error")
    assert "Resend held" in row
    assert re.search(r'badge-danger" data-health="summary">1 not delivered: resend', row)

    response = await post_form(client, f"{PAGE}/partner.example/resend", {}, token_from=PAGE)
    assert response.status_code == 303
    shown = await (await client.get(PAGE)).get_data(as_text=True)
    assert (
        "1 held delivery for partner.example queued again."
        " 1 queued delivery that waited for a retry goes out now." in shown
    )

    def waiting(conn: sqlite3.Connection) -> tuple[int, int]:
        due = conn.execute("SELECT max(next_attempt_at) FROM deliveries").fetchone()[0]
        pause = conn.execute(
            "SELECT circuit_open_until FROM host_health WHERE host = 'partner.example'"
        ).fetchone()[0]
        return int(due), int(pause)

    assert await ctx.db.read(waiting) == (0, 0)  # the retry pause is over, the circuit closed
    states = await delivery_states(ctx, "partner.example")
    assert states.count("held") == 0 and states.count("queued") == 4
    row = host_row(shown, "partner.example")
    assert "Resend held" not in row
    assert re.search(r'badge-warning" data-health="summary">Retrying<', row)


async def test_next_try_is_the_next_probe_or_the_end_of_a_retry_after(
    app: Quart, people: People
) -> None:
    """Paused for hours, a failing host is still tried about a minute after its last failure
    (the probe), and the page says so; a host that asked us to wait says until when."""
    ctx = context_of(app)
    for host in ("down.example", "busy.example"):
        await allowlist.allow(ctx, host, relation="partner", by="cli:root")
    await queue_deliveries(
        ctx,
        people.alice.id,
        [(f"https://{h}/inbox", h) for h in ("down.example", "busy.example")],
    )
    now = ctx.clock.now_ms()

    def fail(conn: sqlite3.Connection) -> None:
        for delivery_id, host in conn.execute("SELECT id, host FROM deliveries").fetchall():
            busy = host == "busy.example"
            for _ in range(10):  # enough to open the circuit
                fed.record_delivery(
                    conn,
                    delivery_id,
                    host,
                    state="queued",
                    counted=True,
                    status=503 if busy else None,
                    error="HTTP 503" if busy else "connect: refused",
                    next_attempt_ms=now + 3_600_000,
                    host_failed=True,
                    now_ms=now,
                    circuit_ms=lambda failures: 6 * 3_600_000,
                    wait_until_ms=now + 7_200_000 if busy else None,
                )

    await ctx.db.write(fail)
    rows = {row.host: row for row in await allowlist.listing(ctx)}
    down, busy = rows["down.example"], rows["busy.example"]
    assert down.circuit == "open" and down.next_try_at == now + 60_000
    assert down.health == ("Not answering: paused", "danger")
    assert busy.next_try_at == now + 7_200_000
    assert busy.health == ("Asked us to wait", "warning")


def test_delivery_health_and_errors_read_plainly() -> None:
    base = allowlist.HostRow(
        host="p.example",
        relation="partner",
        note="",
        added_at=1,
        added_by="a",
        removed_at=None,
        removed_by=None,
        queued=0,
        failing=0,
        held=0,
        dead=0,
        cancelled=0,
        last_success_at=None,
        last_failure_at=None,
        last_error=None,
        circuit="closed",
        circuit_open_until=0,
    )
    assert base.health == ("Healthy", "success")
    assert replace(base, queued=2).health == ("Sending", "success")
    assert replace(base, queued=2, failing=1).health == ("Retrying", "warning")
    assert replace(base, circuit="open").health == ("Not answering: paused", "danger")
    assert replace(base, circuit="open", asked_to_wait=True).health == (
        "Asked us to wait",
        "warning",
    )
    assert replace(base, held=1, dead=1).health == (
        "2 not delivered: resend when it is back",
        "danger",
    )
    assert replace(base, removed_at=5).health is None
    assert replace(base, last_failure_at=5, last_success_at=9).recovered
    assert not replace(base, last_failure_at=9, last_success_at=5).recovered
    assert not replace(base, last_success_at=5).recovered
    error = "connect: Cannot connect to host p.example:443 ssl:default [Connect call failed]"
    shown = replace(base, last_error=error).last_error_words
    assert shown.startswith("Could not connect (refused or unreachable). (connect: Cannot")
    assert replace(base, last_error="HTTP 503").last_error_words == "HTTP 503"


async def test_resend_to_a_removed_host_is_refused(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await allowlist.allow(ctx, "partner.example", relation="partner", by="cli:root")
    await allowlist.deny(ctx, "partner.example", by="cli:root")
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await post_form(client, f"{PAGE}/partner.example/resend", {}, token_from=PAGE)
    assert response.status_code == 404
    assert "add it again before resending" in await response.get_data(as_text=True)


async def test_allowing_again_restores_a_removed_host(app: Quart, people: People) -> None:
    ctx = context_of(app)
    await allowlist.allow(ctx, "partner.example", relation="partner", by="cli:root")
    await allowlist.deny(ctx, "partner.example", by="cli:root")
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await post_form(
        client, PAGE, {"host": "partner.example", "relation": "customer"}, token_from=PAGE
    )
    assert response.status_code == 303
    (row,) = await allowlist.listing(ctx)
    assert row.allowed and row.relation == "customer" and row.added_by == "alice"


async def test_inbound_activities_that_failed_to_apply_are_listed(
    app: Quart, people: People
) -> None:
    ctx = context_of(app)
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    body = await (await client.get(PAGE)).get_data(as_text=True)
    assert "Every activity received from partners has been applied." in body

    # Two archived activities whose handler fails: one gives up at once, one will retry.
    now = ctx.clock.now_ms()
    for n in (1, 2):
        await ctx.db.write(fed.insert_inbound, inbound_record(f"{n}<script>", now))

    async def broken(_: StoredInbound) -> None:
        raise RuntimeError("table posts is <b>locked</b>")

    await Dispatcher(
        ctx.federator.inbox_store, broken, ctx.clock.now_ms, batch=1, max_attempts=1
    ).run_once()
    await Dispatcher(
        ctx.federator.inbox_store, broken, ctx.clock.now_ms, batch=1, max_attempts=2
    ).run_once()

    body = await (await client.get(PAGE)).get_data(as_text=True)
    assert "(1 given up, 1 retrying)" in body
    assert body.count('data-inbound="failed"') == 1
    assert body.count('data-inbound="retrying"') == 1
    assert "RuntimeError: table posts is &lt;b&gt;locked&lt;/b&gt;" in body
    assert "activities/1&lt;script&gt;" in body and "<script>" not in body.split("<main")[1]


async def test_a_refused_host_is_the_field_marked_invalid(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    refused = await post_form(
        client, PAGE, {"host": "https://x.example/path", "relation": "partner"}, token_from=PAGE
    )
    page = await refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert re.search(r'name="host"[^>]*aria-invalid="true" aria-describedby="form-error ', page)
    assert page.count('aria-invalid="true"') == 1


async def test_activities_waiting_too_long_to_be_applied_are_flagged(
    app: Quart, people: People
) -> None:
    """Received and never tried (nothing applies them: an applier that died on a full disk)
    is not "every activity has been applied": the page counts them and says since when."""
    ctx = context_of(app)
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    now = ctx.clock.now_ms()

    async def receive(name: str, received_at_ms: int) -> None:
        await ctx.db.write(fed.insert_inbound, inbound_record(name, received_at_ms))

    await receive("fresh-1", now)
    await receive("fresh-2", now)
    body = await (await client.get(PAGE)).get_data(as_text=True)
    assert 'data-inbound-backlog="waiting"' in body and "2 received and waiting" in body
    assert "Every activity received from partners has been applied." not in body

    async def applied(_: StoredInbound) -> None:
        return None

    await Dispatcher(ctx.federator.inbox_store, applied, ctx.clock.now_ms).run_until_idle()
    body = await (await client.get(PAGE)).get_data(as_text=True)
    assert "Every activity received from partners has been applied." in body
    await receive("old", now - admin.BACKLOG_STALLED_MS - 1000)
    body = await (await client.get(PAGE)).get_data(as_text=True)
    assert 'data-inbound-backlog="stalled"' in body and "nothing seems to apply them" in body
