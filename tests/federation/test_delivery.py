"""Outbound delivery under failure, on a fake clock: 503 with Retry-After, timeouts with
backoff, final refusals, the per-host circuit, the 14-day horizon (held, never deleted) and
the admin's resend. Every attempt is signed afresh."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from server.domain import Actor, Visibility
from server.services import federating, following, posting, remote
from server.storage import federation as fed
from tests.federation.conftest import Trio
from tests.federation.support import (
    cast,
    copy_of,
    deliveries,
    follow_across,
    home_texts,
)
from tests.support.network import Fault

DAY = 86_400.0


async def _alice_follows_bob(trio: Trio) -> tuple[Actor, Actor]:
    people = await cast(trio)
    await follow_across(trio.net, trio.alpha, people.alice, "bob@beta.example")
    return people.alice, people.bob


async def _bobs_delivery(trio: Trio) -> dict[str, Any]:
    rows = await deliveries(trio.beta, "Create")
    assert len(rows) == 1
    return rows[0]


def _posts_to_alpha(trio: Trio) -> int:
    return len(trio.net.requests_to("alpha.example", "POST"))


async def test_503_with_retry_after_is_retried_no_earlier_than_asked(trio: Trio) -> None:
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    net.faults["alpha.example"] = Fault(status=503, headers={"Retry-After": "600"}, remaining=1)

    # When bob posts while alpha answers 503 "come back in 10 minutes"
    post = await posting.publish_post(
        beta.ctx, bob, posting.Draft("Retry me", Visibility.FOLLOWERS)
    )
    await net.settle()

    # Then the delivery waits, attempt counted, status kept, due in 600 s (not the 30 s backoff)
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("queued", 1, 503)
    assert row["next_attempt_at"] == net.clock.now_ms() + 600_000
    sent = _posts_to_alpha(trio)
    net.clock.advance(599)
    await net.settle()
    assert _posts_to_alpha(trio) == sent  # not a second early
    assert (await _bobs_delivery(trio))["state"] == "queued"

    net.clock.advance(2)
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 202)
    assert await copy_of(alpha, post.uri) is not None
    assert "Retry me" in await home_texts(alpha, alice)


async def test_timeouts_back_off_exponentially_then_deliver(trio: Trio) -> None:
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    net.faults["alpha.example"] = Fault(error="timeout", remaining=2)

    await posting.publish_post(beta.ctx, bob, posting.Draft("Slow network", Visibility.FOLLOWERS))
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("queued", 1, None)
    assert "timeout" in str(row["last_error"])
    wait = int(row["next_attempt_at"]) - net.clock.now_ms()
    assert 24_000 <= wait <= 36_000  # 30 s ± 20 %

    net.clock.advance(37)
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"]) == ("queued", 2)
    wait = int(row["next_attempt_at"]) - net.clock.now_ms()
    assert 48_000 <= wait <= 72_000  # doubled

    net.clock.advance(73)
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 3, 202)
    assert "Slow network" in await home_texts(alpha, alice)


async def test_final_refusal_is_dead_and_kept(trio: Trio) -> None:
    _, bob = await _alice_follows_bob(trio)
    beta, net = trio.beta, trio.net
    net.faults["alpha.example"] = Fault(status=410)

    await posting.publish_post(beta.ctx, bob, posting.Draft("Gone?", Visibility.FOLLOWERS))
    await net.settle()
    sent = _posts_to_alpha(trio)
    net.clock.advance(DAY)
    await net.settle()

    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("dead", 1, 410)
    assert _posts_to_alpha(trio) == sent


async def test_after_the_14_day_horizon_the_delivery_is_held_then_resent(trio: Trio) -> None:
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    net.faults["alpha.example"] = Fault(status=503)
    created = net.clock.now_ms()

    await posting.publish_post(beta.ctx, bob, posting.Draft("Two weeks late", Visibility.FOLLOWERS))
    await net.settle()
    # When alpha keeps failing for more than two weeks (checked every few hours)
    for _ in range(200):
        row = await _bobs_delivery(trio)
        if row["state"] != "queued":
            break
        net.clock.advance(3 * 3600)
        await net.settle()

    # Then the delivery is held (never deleted), about 14 days after it was queued
    row = await _bobs_delivery(trio)
    assert row["state"] == "held"
    assert 13 * DAY * 1000 <= net.clock.now_ms() - created <= 15 * DAY * 1000
    assert int(row["attempts"]) >= 50
    health = await beta.ctx.db.read(fed.select_host_health)
    assert health["alpha.example"].held == 1
    sent = _posts_to_alpha(trio)
    net.clock.advance(DAY)
    await net.settle()
    assert _posts_to_alpha(trio) == sent  # held means nobody retries it on their own

    # When alpha is back and the admin resends
    del net.faults["alpha.example"]
    assert await beta.ctx.db.write(fed.resend_held, "alpha.example", net.clock.now_ms()) == (1, 0)
    await net.settle()

    # Then it is delivered, signed now (a 15-day-old signature would be refused)
    row = await _bobs_delivery(trio)
    assert (row["state"], row["last_status"]) == ("delivered", 202)
    assert "Two weeks late" in await home_texts(alpha, alice)


async def test_circuit_opens_after_repeated_failures_and_a_signed_request_closes_it(
    trio: Trio,
) -> None:
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    await follow_across(net, beta, bob, "alice@alpha.example")
    net.faults["alpha.example"] = Fault(error="connect")
    for n in range(10):
        await posting.publish_post(beta.ctx, bob, posting.Draft(f"Post {n}", Visibility.FOLLOWERS))
    await net.settle()

    # Ten consecutive failures open the circuit for alpha
    health = (await beta.ctx.db.read(fed.select_host_health))["alpha.example"]
    assert health.circuit_open_until > net.clock.now_ms()
    assert health.failing == 10
    # a new post to alpha is not even attempted while it is open
    net.log.clear()
    await posting.publish_post(beta.ctx, bob, posting.Draft("Post 10", Visibility.FOLLOWERS))
    await net.settle()
    assert net.requests_to("alpha.example") == []

    # When alpha speaks to beta (a signed, verified POST), beta knows alpha is up again
    del net.faults["alpha.example"]
    await posting.publish_post(alpha.ctx, alice, posting.Draft("Hello bob", Visibility.FOLLOWERS))
    await net.settle()

    # Then the circuit is closed and the whole queue for alpha went out at once
    rows = await deliveries(beta, "Create")
    assert {r["state"] for r in rows} == {"delivered"}
    assert "Post 10" in await home_texts(alpha, alice)


async def _down_for_hours(trio: Trio, hours: int, fault: Fault) -> tuple[Actor, list[str]]:
    """Bob posts to his followers (alice, on alpha) once an hour while alpha fails; returns
    alice and the texts."""
    beta, net = trio.beta, trio.net
    people = await cast(trio)
    await follow_across(net, trio.alpha, people.alice, "bob@beta.example")
    net.faults["alpha.example"] = fault
    texts = []
    for hour in range(hours):
        texts.append(f"Hour {hour}")
        await posting.publish_post(
            beta.ctx, people.bob, posting.Draft(texts[-1], Visibility.FOLLOWERS)
        )
        for _ in range(12):  # every retry that falls due within the hour
            net.clock.advance(300)
            await net.settle()
    return people.alice, texts


async def _until_nothing_is_due_soon(trio: Trio) -> None:
    """Retries have jitter: go on failing until no Create to alpha is due within two probe
    intervals, so that after this only a probe can send anything (without one: up to 6 h)."""
    net = trio.net
    for _ in range(20):
        rows = await deliveries(trio.beta, "Create")
        assert {r["state"] for r in rows} == {"queued"}
        wait_s = (min(r["next_attempt_at"] for r in rows) - net.clock.now_ms()) / 1000
        if wait_s > 125:
            return
        net.clock.advance(max(wait_s, 0) + 1)
        await net.settle()
    raise AssertionError("the retries never spread out")


async def test_a_partner_back_from_a_long_outage_is_caught_up_within_a_probe(
    trio: Trio, caplog: pytest.LogCaptureFixture
) -> None:
    """Backoffs and the circuit grow to hours; one probe a minute finds the partner back, and
    its success sends everything that waited, not each row at the end of its own backoff."""
    caplog.set_level("INFO", logger="federation.delivery")
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    alice, texts = await _down_for_hours(trio, 6, Fault(error="connect"))
    await _until_nothing_is_due_soon(trio)

    # While alpha is still down a probe is one request, and nothing else goes out
    worker = beta.ctx.federator.delivery
    net.clock.advance(61)
    net.log.clear()
    assert await worker.probe() == 1
    await net.settle()
    assert len(net.requests_to("alpha.example", "POST")) == 1

    # When alpha is back, the next probe, a minute later, delivers it all at once
    del net.faults["alpha.example"]
    net.clock.advance(60)
    await net.settle()
    assert {r["state"] for r in await deliveries(beta, "Create")} == {"queued"}
    assert await worker.probe() == 1
    await net.settle()
    assert {r["state"] for r in await deliveries(beta, "Create")} == {"delivered"}
    home = await home_texts(alpha, alice)
    assert all(text in home for text in texts)
    # The recovery is in the log, next to the failures
    assert f"deliveries to alpha.example work again; {len(texts) - 1} queued" in caplog.text


async def test_a_host_down_for_long_is_probed_every_ten_minutes(trio: Trio) -> None:
    """About an hour of probes a minute apart, then one every ten minutes: a dead host is
    not hammered for the two weeks until its deliveries are held."""
    beta, net = trio.beta, trio.net
    await _down_for_hours(trio, 1, Fault(error="connect"))
    worker = beta.ctx.federator.delivery

    async def failures_then_probe(failures: int, after_s: float) -> int:
        await beta.ctx.db.write(
            lambda conn: conn.execute(
                "UPDATE host_health SET consecutive_failures = ?, last_failure_at = ?"
                " WHERE host = 'alpha.example'",
                (failures, net.clock.now_ms()),
            )
        )
        net.clock.advance(after_s)
        return await worker.probe()

    assert await failures_then_probe(20, 61) == 1
    await net.settle()
    assert await failures_then_probe(80, 61) == 0
    assert await failures_then_probe(80, 601) == 1
    await net.settle()
    # A wall clock stepped back an hour leaves the last failure in the future: still probed
    assert await failures_then_probe(20, -3600) == 1


async def test_a_partner_that_asked_to_wait_is_not_probed_until_then(trio: Trio) -> None:
    """A 503 or 429 with Retry-After means the host is up and wants us to wait; once that
    time has passed, a host that then fails otherwise is probed like any other."""
    beta, net = trio.beta, trio.net
    await _down_for_hours(trio, 1, Fault(status=503, headers={"Retry-After": "7200"}))
    rows = await deliveries(beta, "Create")
    assert [r["last_status"] for r in rows] == [503]
    assert rows[0]["next_attempt_at"] > net.clock.now_ms() + 3_000_000
    worker = beta.ctx.federator.delivery
    assert await worker.probe() == 0

    # When the wait is over the retry meets a host that is down altogether
    net.faults["alpha.example"] = Fault(error="connect")
    net.clock.advance((rows[0]["next_attempt_at"] - net.clock.now_ms()) / 1000 + 1)
    await net.settle()
    row = (await deliveries(beta, "Create"))[0]
    assert (row["state"], row["attempts"], row["last_status"]) == ("queued", 2, 503)
    # Then, a minute later, it is probed although its last status is still that 503
    net.clock.advance(61)
    assert await worker.probe() == 1


async def _two_posts_ten_seconds_apart(trio: Trio, fault: Fault) -> None:
    """Alice (alpha) follows bob (beta); bob posts twice, ten seconds apart, while *fault*
    stands for alpha."""
    people = await cast(trio)
    await follow_across(trio.net, trio.alpha, people.alice, "bob@beta.example")
    trio.net.faults["alpha.example"] = fault
    for text in ("One", "Two"):
        await posting.publish_post(
            trio.beta.ctx, people.bob, posting.Draft(text, Visibility.FOLLOWERS)
        )
        await trio.net.settle()
        trio.net.clock.advance(10)


async def test_a_success_elsewhere_does_not_cut_a_retry_after_short(trio: Trio) -> None:
    beta, net = trio.beta, trio.net
    await _two_posts_ten_seconds_apart(
        trio, Fault(status=429, headers={"Retry-After": "3600"}, remaining=1)
    )
    first, second = await deliveries(beta, "Create")
    assert (second["state"], first["state"], first["attempts"]) == ("delivered", "queued", 1)
    assert await beta.ctx.federator.delivery.probe() == 0
    net.clock.advance((first["next_attempt_at"] - net.clock.now_ms()) / 1000 - 1)
    await net.settle()
    assert (await deliveries(beta, "Create"))[0]["state"] == "queued"  # not a second early
    net.clock.advance(2)
    await net.settle()
    assert (await deliveries(beta, "Create"))[0]["state"] == "delivered"


async def test_an_edit_queued_behind_its_post_does_not_stop_the_probe(trio: Trio) -> None:
    """The Update waits (due, but not sendable) behind its Create; the host is probed with
    the Create, and both arrive, in order, when the partner is back."""
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    people = await cast(trio)
    await follow_across(net, alpha, people.alice, "bob@beta.example")
    net.faults["alpha.example"] = Fault(error="connect")
    post = await posting.publish_post(
        beta.ctx, people.bob, posting.Draft("Price: draft", Visibility.FOLLOWERS)
    )
    await net.settle()
    await posting.edit_post(beta.ctx, people.bob, post.id, "Price: FINAL")
    for _ in range(24):
        net.clock.advance(600)
        await net.settle()
    await _until_nothing_is_due_soon(trio)

    del net.faults["alpha.example"]
    net.clock.advance(61)
    assert await beta.ctx.federator.delivery.probe() == 1
    await net.settle()
    assert {r["state"] for r in await deliveries(beta)} == {"delivered"}
    texts = await home_texts(alpha, people.alice)
    assert "Price: FINAL" in texts and "Price: draft" not in texts


async def test_a_host_that_answers_is_not_probed(trio: Trio) -> None:
    """A 401 is an answer: the host is up, and its deliveries keep their own backoff."""
    beta, net = trio.beta, trio.net
    await _down_for_hours(trio, 1, Fault(status=401))
    (row,) = await deliveries(beta, "Create")
    assert (row["state"], row["last_status"]) == ("queued", 401)
    net.clock.advance(120)
    assert await beta.ctx.federator.delivery.probe() == 0


async def test_a_success_sends_what_waited_for_the_same_partner(trio: Trio) -> None:
    """Two posts failed at different times wait out different backoffs; when the earlier
    one's retry succeeds, the other goes with it."""
    beta, net = trio.beta, trio.net
    await _two_posts_ten_seconds_apart(trio, Fault(error="connect"))
    first, second = await deliveries(beta, "Create")
    assert first["next_attempt_at"] < second["next_attempt_at"]

    del net.faults["alpha.example"]
    net.clock.advance((first["next_attempt_at"] - net.clock.now_ms()) / 1000 + 0.001)
    assert net.clock.now_ms() < second["next_attempt_at"]
    await net.settle()
    assert {r["state"] for r in await deliveries(beta, "Create")} == {"delivered"}


# --- order per inbox, and the admin's resend ---------------------------------------------------


async def test_an_edit_waits_for_its_post_to_reach_a_partner_that_asked_to_wait(
    trio: Trio,
) -> None:
    """The Create is told to come back in 10 minutes; the edit made meanwhile must not
    overtake it (a receiver drops an Update of a note it does not have, and the late Create
    would then show the old text for good)."""
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    net.faults["alpha.example"] = Fault(status=503, headers={"Retry-After": "600"}, remaining=1)
    before = _posts_to_alpha(trio)
    post = await posting.publish_post(
        beta.ctx, bob, posting.Draft("Price: draft", Visibility.FOLLOWERS)
    )
    await net.settle()
    await posting.edit_post(beta.ctx, bob, post.id, "Price: FINAL")
    await net.settle()
    assert _posts_to_alpha(trio) == before + 1  # the refused Create only: the Update waits
    (update,) = await deliveries(beta, "Update")
    assert (update["state"], update["attempts"]) == ("queued", 0)

    net.clock.advance(601)
    await net.settle()
    assert {r["state"] for r in await deliveries(beta)} == {"delivered"}
    texts = await home_texts(alpha, alice)
    assert "Price: FINAL" in texts and "Price: draft" not in texts


async def test_an_unfollow_waits_for_its_follow(trio: Trio) -> None:
    people = await cast(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    bob = await remote.find_person(alpha.ctx, "bob@beta.example")
    net.faults["beta.example"] = Fault(status=503, headers={"Retry-After": "600"}, remaining=1)
    await following.follow(alpha.ctx, people.alice, bob.id)
    await net.settle()
    await following.unfollow(alpha.ctx, people.alice, bob.id)
    await net.settle()
    assert len(net.requests_to("beta.example", "POST")) == 1  # the Undo waits

    net.clock.advance(601)
    await net.settle()
    followers = await beta.value(
        "SELECT count(*) FROM follows WHERE followee_id = ? AND state = 'accepted'",
        people.bob.id,
    )
    assert followers == 0


async def test_a_resend_goes_out_at_once_and_gets_a_horizon_of_its_own(trio: Trio) -> None:
    """The admin says the partner is back: the held delivery is tried now, not when the
    host's open circuit would have let it, and if it fails once more it is retried, not held
    again at once (the 14 days count from the resend)."""
    alice, bob = await _alice_follows_bob(trio)
    alpha, beta, net = trio.alpha, trio.beta, trio.net
    net.faults["alpha.example"] = Fault(status=503)
    await posting.publish_post(beta.ctx, bob, posting.Draft("Resent", Visibility.FOLLOWERS))
    await net.settle()
    created = await _bobs_delivery(trio)
    now = net.clock.now_ms()
    # As after a long outage: held, and the host's circuit open for hours.
    await beta.ctx.db.write(
        lambda c: (
            c.execute(
                "UPDATE deliveries SET state = 'held', created_at = ?, finished_at = ?"
                " WHERE id = ?",
                (now - 15 * int(DAY) * 1000, now, created["id"]),
            ),
            c.execute(
                "INSERT INTO host_health (host, consecutive_failures, circuit_open_until)"
                " VALUES ('alpha.example', 30, ?) ON CONFLICT (host) DO UPDATE SET"
                " consecutive_failures = 30, circuit_open_until = excluded.circuit_open_until",
                (now + 6 * 3600 * 1000,),
            ),
        )
    )
    assert await beta.ctx.db.write(fed.resend_held, "alpha.example", now) == (1, 0)
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["attempts"], row["last_status"]) == ("queued", 1, 503)

    del net.faults["alpha.example"]
    net.clock.advance(int(row["next_attempt_at"]) / 1000 - net.clock.now() + 1)
    await net.settle()
    row = await _bobs_delivery(trio)
    assert (row["state"], row["last_status"]) == ("delivered", 202)
    assert "Resent" in await home_texts(alpha, alice)


async def test_an_update_id_is_new_each_time_even_for_a_version_number_seen_before(
    trio: Trio,
) -> None:
    """A database restored from a backup numbers versions again; a partner that saw
    "#updates/2" before would drop the next edit as a duplicate."""
    _, bob = await _alice_follows_bob(trio)
    beta, net = trio.beta, trio.net
    post = await posting.publish_post(beta.ctx, bob, posting.Draft("v1", Visibility.FOLLOWERS))
    await net.settle()

    def emit_update(conn: sqlite3.Connection) -> bool:
        return federating.post_in_tx(
            conn, beta.ctx.urls, beta.host, post.id, "Update", net.clock.now_ms()
        )

    assert await beta.ctx.db.write(emit_update)
    assert await beta.ctx.db.write(emit_update)  # the same version once more, as after a restore
    ids = {r["activity_id"] for r in await deliveries(beta, "Update")}
    assert len(ids) == 2
