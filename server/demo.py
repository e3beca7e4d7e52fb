"""``make demo``: two federated development instances on loopback, seeded, then served.

"ACME" on http://127.0.0.1:8001 and "Partner" on http://127.0.0.1:8002 live in
``demo/acme`` and ``demo/partner`` (git-ignored; usable with ``steelyard --instance demo/acme``).
They allow each other. The first run creates users, follows across the two instances, a
few posts, a wall post across and a boost; later runs reuse the folders. Ctrl-C stops both
servers (by the PIDs we started).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from server import cli
from server.bootstrap import open_context
from server.domain import Visibility
from server.errors import SteelyardError
from server.services import accounts, following, posting, remote
from server.storage import federation as fed
from server.storage import users

ROOT = Path("demo")
PASSWORD = "steelyard-demo-1"  # noqa: S105 - the demo's published password
SITES = {
    "acme": (
        "ACME",
        8001,
        [
            ("alice", "Alice Anders", "Head of Procurement"),
            ("carol", "Carol Chen", "Supplier Quality"),
        ],
    ),
    "partner": (
        "Partner",
        8002,
        [("bob", "Bob Berg", "Key Account Manager"), ("dave", "Dave Diaz", "Logistics")],
    ),
}


def url_of(site: str) -> str:
    return f"http://127.0.0.1:{SITES[site][1]}"


def init_sites() -> bool:
    """Create both instances if missing; True when they were just created."""
    fresh = False
    for site, (name, _port, _) in SITES.items():
        if not (ROOT / site / "config.toml").exists():
            cli.cmd_init(ROOT / site, url_of(site), name)
            fresh = True
    return fresh


async def prepare(site: str, other: str) -> None:
    async with open_context(ROOT / site) as ctx:
        other_host = f"127.0.0.1:{SITES[other][1]}"
        await ctx.db.write(
            fed.upsert_allowed_host, other_host, "partner", "demo", "demo", ctx.clock.now_ms()
        )
        ctx.federator.allowlist.changed()
        for username, display, title in [("admin", "Administrator", "IT"), *SITES[site][2]]:
            if await ctx.db.read(users.local_username_taken, username):
                continue
            actor = await accounts.create_user(
                ctx, username, PASSWORD, display_name=display, is_admin=username == "admin"
            )
            await accounts.update_profile(
                ctx,
                actor.id,
                {"display_name": display, "job_title": title, "department": SITES[site][0]},
                bio_source=None,
            )


async def seed() -> None:
    async with open_context(ROOT / "acme") as acme:
        alice = await acme.db.read(users.select_local_actor, "alice")
        carol = await acme.db.read(users.select_local_actor, "carol")
        assert alice and carol
        bob = await remote.find_person(acme, f"bob@127.0.0.1:{SITES['partner'][1]}")
        await following.follow(acme, alice, bob.id)
        await following.follow(acme, carol, alice.id)
        await posting.publish_post(
            acme, alice, posting.Draft("Kick-off for the Q3 tender next week. #tender")
        )
    async with open_context(ROOT / "partner") as partner:
        bob_local = await partner.db.read(users.select_local_actor, "bob")
        assert bob_local
        alice_remote = await remote.find_person(partner, f"alice@127.0.0.1:{SITES['acme'][1]}")
        await following.follow(partner, bob_local, alice_remote.id)
    await asyncio.sleep(3)  # let the servers deliver the follows and accepts
    async with open_context(ROOT / "acme") as acme:
        alice = await acme.db.read(users.select_local_actor, "alice")
        assert alice
        await posting.publish_post(
            acme,
            alice,
            posting.Draft(
                "Draft offer for Partner is ready for review. #tender", Visibility.FOLLOWERS
            ),
        )
    async with open_context(ROOT / "partner") as partner:
        bob_local = await partner.db.read(users.select_local_actor, "bob")
        assert bob_local
        await posting.publish_post(
            partner,
            bob_local,
            posting.Draft(
                "Thanks ACME! Our logistics team confirms the delivery dates.", Visibility.FOLLOWERS
            ),
        )
        # A wall post onto a partner's wall, and a boost that brings a post alice would not
        # otherwise see into her feed (she follows bob, not dave).
        await posting.publish_post(
            partner,
            bob_local,
            posting.Draft(
                "Congratulations on the new plant, Alice!",
                Visibility.FOLLOWERS,
                wall_owner=f"alice@127.0.0.1:{SITES['acme'][1]}",
            ),
        )
        dave_local = await partner.db.read(users.select_local_actor, "dave")
        assert dave_local
        news = await posting.publish_post(
            partner,
            dave_local,
            posting.Draft("Warehouse B takes ACME deliveries from Monday.", Visibility.PUBLIC),
        )
        await posting.boost_post(partner, bob_local, news.id, boost=True)


def start(site: str) -> subprocess.Popen[bytes]:
    log = (ROOT / f"{site}.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        [
            sys.executable,
            "-m",
            "server.cli",
            "--instance",
            str(ROOT / site),
            "serve",
            "--bind",
            f"127.0.0.1:{SITES[site][1]}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SteelyardError(f"{site} did not start; see {ROOT / site}.log")
        try:
            with urllib.request.urlopen(f"{url_of(site)}/login", timeout=1):  # noqa: S310
                return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    proc.kill()
    raise SteelyardError(f"{site} did not answer in time")


def main() -> int:
    ROOT.mkdir(exist_ok=True)
    fresh = init_sites()
    asyncio.run(prepare("acme", "partner"))
    asyncio.run(prepare("partner", "acme"))
    procs = [start("acme"), start("partner")]
    try:
        if fresh:
            print("Seeding follows and posts across the two instances...", flush=True)
            asyncio.run(seed())
        print()
        print("Steelyard demo: two federated instances")
        for site in SITES:
            people = ", ".join(u for u, _, _ in SITES[site][2])
            print(f"  {SITES[site][0]:8} {url_of(site)}   users: admin, {people}")
        print(f"  password for every demo user: {PASSWORD}")
        print("  Try: sign in to ACME as alice, look at the feed; sign in to Partner as bob.")
        print("  Ctrl-C stops both servers. Data stays in demo/ (delete it to start over).")
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
