"""Fan-out benchmark: one followers-only post to 10,000 remote followers on 50 hosts.

Against ``steelyard serve`` started as a child process on a free loopback port (a development
instance, so plain-http delivery to loopback peers is allowed):

- ``--hosts`` (50) small aiohttp receivers on 127.0.0.1 ports stand for the remote instances.
  Each exposes a shared inbox (``POST /inbox``) that checks the HTTP signature (Digest, Date,
  Host, RSA with the poster's public key), waits ``--latency-ms`` (100 ms) and answers 202;
- the instance holds ``--followers`` (10,000) remote actors spread evenly over those hosts,
  each with ``shared_inbox_url`` pointing to its host's shared inbox and an accepted follow of
  the local poster, seeded directly with SQL (``server.storage.bench_seed`` and
  ``bulk.insert_bulk_follows``); the hosts are on the allowlist;
- the poster signs in over HTTP and publishes one Followers post through the web UI
  (``POST /posts``, CSRF token from the composer), so the real delivery path runs: the
  outbox row and one delivery row per shared inbox are committed with the post, and the
  server's delivery worker signs and sends them with aiohttp.

Figures: delivery rows created, HTTP deliveries received by all receivers in total (must
equal the number of hosts: shared-inbox de-duplication), how many carried a valid signature,
the time from publishing until every delivery row is ``delivered`` (target < 5 s), when the
receivers saw the requests, the highest number of deliveries in flight at once, and the
server's CPU use. Repeat with ``--posts N``.

Run (from the repository root)::

    .venv/bin/python bench/fanout.py                       # full size, about 15 s
    .venv/bin/python bench/fanout.py --followers 500 --hosts 5

Figures are printed as a table and written to ``bench/results/fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    RESULTS,
    Server,
    add_instance_options,
    add_quiet_wait,
    check,
    cpu_seconds,
    create_user,
    csrf_from,
    free_port,
    init_instance,
    load_average,
    machine,
    open_ro,
    pct,
    print_targets,
    sign_in,
    start_site,
    table,
    wait_for_quiet,
)

from federation.signatures import KeyCache, SignatureError, prepare_verification, verify_signature
from federation.urls import Urls
from server.config import load_config
from server.storage import bench_seed, bulk, users
from server.storage import federation as fed
from server.storage.db import open_sync

POSTER = "poster"
TARGET_SECONDS = 5.0
POLL_EVERY = 0.005
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


# --- the receivers ----------------------------------------------------------------------------


@dataclass(slots=True)
class Receipt:
    host: str
    at: float  # perf_counter when the request arrived
    activity_id: str
    valid: bool
    problem: str = ""


@dataclass(slots=True)
class Receivers:
    """The remote hosts: shared inboxes that verify, wait, then answer 202."""

    ports: list[int]
    latency_s: float
    key_id: str = ""
    public_pem: str = ""
    receipts: list[Receipt] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    runners: list[web.AppRunner] = field(default_factory=list)
    keys: KeyCache = field(default_factory=KeyCache)

    async def start(self) -> None:
        for port in self.ports:
            app = web.Application()
            app.router.add_post("/inbox", self._inbox)
            app.router.add_route("*", "/{tail:.*}", self._other)
            self.runners.append(await start_site(app, port))

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners = []

    async def _other(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.host}{request.path}")
        return web.Response(status=404)

    async def _inbox(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            host = f"127.0.0.1:{request.url.port}"
            valid, problem = self._verify(request, body, host)
            try:
                activity_id = str(json.loads(body).get("id", ""))
            except ValueError:
                activity_id, valid, problem = "", False, "body is not JSON"
            self.receipts.append(Receipt(host, arrived, activity_id, valid, problem))
            await asyncio.sleep(self.latency_s)
            return web.json_response({"status": "accepted"}, status=202)
        finally:
            self.in_flight -= 1

    def _verify(self, request: web.Request, body: bytes, host: str) -> tuple[bool, str]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        try:
            pending = prepare_verification(
                "POST", request.raw_path, headers, body, canonical_host=host, now=time.time()
            )
        except SignatureError as exc:
            return False, f"{exc.status} {exc.reason}"
        if pending.key_id != self.key_id:
            return False, f"signed by {pending.key_id}"
        if not verify_signature(pending, self.public_pem, keys=self.keys):
            return False, "signature does not verify"
        return True, ""


# --- seeding ----------------------------------------------------------------------------------


def seed(instance: Path, ports: list[int], followers: int) -> dict[str, Any]:
    """The poster, the remote followers spread over the hosts, the allowlist. Returns facts."""
    started = time.perf_counter()
    create_user(instance, POSTER)
    config = load_config(instance)
    now = int(time.time() * 1000)
    conn = open_sync(config.db_path, config.synchronous)
    try:
        poster = users.select_local_actor(conn, POSTER)
        assert poster is not None
        public_pem = fed.select_public_key_pem(conn, poster.id) or ""
        conn.execute("BEGIN IMMEDIATE")
        for port in ports:
            fed.upsert_allowed_host(
                conn, f"127.0.0.1:{port}", "partner", "bench/fanout.py", "bench", now
            )
        rows = []
        for i in range(followers):
            port = ports[i % len(ports)]
            urls = Urls(f"http://127.0.0.1:{port}")
            name = f"f{i:05d}"
            rows.append(
                bench_seed.SeedRemoteActor(
                    uri=urls.actor(name),
                    username=name,
                    host=f"127.0.0.1:{port}",
                    display_name=f"Follower {i}",
                    inbox_url=urls.inbox(name),
                    shared_inbox_url=urls.shared_inbox,
                    followers_url=urls.followers(name),
                    key_id=urls.key_id(name),
                )
            )
        ids = bench_seed.insert_remote_actors(conn, rows, now_ms=now)
        follows = bulk.insert_bulk_follows(
            conn, ((ids[r.uri], poster.id) for r in rows), now_ms=now
        )
        conn.execute("COMMIT")
        inboxes = fed.select_remote_follower_inboxes(conn, poster.id)
    finally:
        conn.close()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "remote_followers": len(ids),
        "accepted_follows": follows,
        "distinct_inboxes": len(inboxes),
        "poster_uri": poster.uri,
        "poster_key_id": Urls(config.url).key_id(POSTER),
        "public_pem": public_pem,
    }


# --- one post ---------------------------------------------------------------------------------


async def publish(session: aiohttp.ClientSession, base: str, text: str) -> float:
    """POST /posts as the signed-in poster; returns the seconds the request took."""
    async with session.get(f"{base}/") as resp:
        page = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"GET / answered {resp.status}")
    form = {"text": text, "visibility": "followers", "csrf_token": csrf_from(page)}
    t0 = time.perf_counter()
    async with session.post(f"{base}/posts", data=form, allow_redirects=False) as resp:
        await resp.read()
        if resp.status not in (302, 303):
            raise RuntimeError(f"POST /posts answered {resp.status}")
    return time.perf_counter() - t0


def progress(conn: sqlite3.Connection, after_id: int) -> bench_seed.FanoutProgress | None:
    conn.execute("BEGIN")
    try:
        latest = bench_seed.select_latest_outbox_id(conn, "Create")
        if latest is None or latest <= after_id:
            return None
        return bench_seed.select_fanout_progress(conn, latest)
    finally:
        conn.execute("COMMIT")


def latest_id(conn: sqlite3.Connection) -> int:
    conn.execute("BEGIN")
    try:
        return bench_seed.select_latest_outbox_id(conn, "Create") or 0
    finally:
        conn.execute("COMMIT")


async def one_post(
    n: int,
    session: aiohttp.ClientSession,
    server: Server,
    db: sqlite3.Connection,
    receivers: Receivers,
    expected: int,
    limit_s: float,
) -> dict[str, Any]:
    before = await asyncio.to_thread(latest_id, db)
    first_receipt = len(receivers.receipts)
    receivers.max_in_flight = 0
    cpu0 = server.cpu_seconds()
    wall0 = time.time()
    t0 = time.perf_counter()
    post_s = await publish(
        session,
        server.base,
        f"Fan-out benchmark post {n}: the Q3 logistics review is online. #logistics",
    )
    found: bench_seed.FanoutProgress | None = None
    all_delivered: float | None = None
    deadline = t0 + limit_s
    while time.perf_counter() < deadline:
        found = await asyncio.to_thread(progress, db, before)
        if (
            found is not None
            and sum(found.states.values()) >= expected
            and found.states.get("delivered", 0) == sum(found.states.values())
        ):
            all_delivered = time.perf_counter() - t0
            break
        if (
            found is not None
            and not found.states.get("queued")
            and sum(found.states.values()) > 0
            and found.states.get("delivered", 0) < expected
        ):
            break  # nothing left to try: some rows ended dead, held or cancelled
        await asyncio.sleep(POLL_EVERY)
    # Anything extra (a retry, a duplicate) would arrive within the next second.
    await asyncio.sleep(1.0)
    found = await asyncio.to_thread(progress, db, before)
    cpu = server.cpu_seconds() - cpu0
    got = receivers.receipts[first_receipt:]
    mine = [r for r in got if found is not None and r.activity_id == found.activity_id]
    per_host: dict[str, int] = {}
    for r in mine:
        per_host[r.host] = per_host.get(r.host, 0) + 1
    arrivals = sorted(r.at - t0 for r in mine)
    server_side = None
    if found is not None and found.last_finished_at is not None:
        # From the commit of the post (server clock, ms) to the last row finishing.
        server_side = (found.last_finished_at - found.created_at) / 1000
    return {
        "post": n,
        "activity_id": found.activity_id if found else None,
        "publish_request_s": round(post_s, 4),
        "delivery_rows": sum(found.states.values()) if found else 0,
        "delivery_states": found.states if found else {},
        "deliveries_received": len(got),
        "deliveries_received_for_this_post": len(mine),
        "hosts_reached": len(per_host),
        "hosts_with_more_than_one": sum(1 for v in per_host.values() if v > 1),
        "valid_signatures": sum(1 for r in mine if r.valid),
        "signature_problems": sorted({r.problem for r in mine if not r.valid})[:5],
        "all_delivered_s": round(all_delivered, 3) if all_delivered is not None else None,
        "server_side_commit_to_last_delivered_s": round(server_side, 3)
        if server_side is not None
        else None,
        "first_arrival_s": round(arrivals[0], 3) if arrivals else None,
        "median_arrival_s": round(pct(arrivals, 50), 3) if arrivals else None,
        "last_arrival_s": round(arrivals[-1], 3) if arrivals else None,
        "max_in_flight": receivers.max_in_flight,
        "server_cpu_s": round(cpu, 3),
        "started_at_unix": round(wall0, 3),
    }


async def run(
    args: argparse.Namespace,
    instance: Path,
    port: int,
    ports: list[int],
    receivers: Receivers,
    facts: dict[str, Any],
) -> dict[str, Any]:
    server = Server(instance, port, RESULTS / "fanout-server.log")
    session: aiohttp.ClientSession | None = None
    db: sqlite3.Connection | None = None
    posts: list[dict[str, Any]] = []
    await receivers.start()
    try:
        cold = await asyncio.to_thread(server.start)
        db = open_ro(load_config(instance).db_path)
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=REQUEST_TIMEOUT
        )
        await sign_in(session, server.base, POSTER)
        for n in range(1, args.posts + 1):
            quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_wait, [server.pid])
            posts.append(
                await one_post(n, session, server, db, receivers, len(ports), args.timeout)
            )
            posts[-1]["quiet_before"] = quiet
            print(
                f"  post {n}: all delivered in {posts[-1]['all_delivered_s']} s, "
                f"{posts[-1]['deliveries_received_for_this_post']} deliveries received",
                file=sys.stderr,
                flush=True,
            )
        return {
            "server_pid": server.pid,
            "cold_start_s": round(cold, 3),
            "posts": posts,
            "unexpected_requests": receivers.unexpected[:20],
            "server_rss_mb": round(server.rss_mb(), 1),
            "server_cpu_s_total": round(cpu_seconds(server.pid), 2),
        }
    finally:
        if session is not None:
            await session.close()
        if db is not None:
            db.close()
        await asyncio.to_thread(server.stop)
        await receivers.stop()


def report(result: dict[str, Any]) -> None:
    s = result["seed"]
    print()
    print(f"Steelyard fan-out benchmark  ({result['machine']})")
    print(
        f"  {s['remote_followers']:,} remote followers on {result['hosts']} hosts "
        f"({s['distinct_inboxes']} distinct shared inboxes), receiver latency "
        f"{result['latency_ms']} ms; seeded in {s['seconds']} s; 1-min load average before "
        f"the run {result['load_average_1min_before']}"
    )
    print()
    table(
        [
            "post",
            "rows",
            "received",
            "hosts",
            "valid sig",
            "POST /posts s",
            "first s",
            "median s",
            "last arrival s",
            "all delivered s",
            "server-side s",
            "in flight",
            "srv CPU s",
        ],
        [
            [
                p["post"],
                p["delivery_rows"],
                p["deliveries_received"],
                p["hosts_reached"],
                p["valid_signatures"],
                p["publish_request_s"],
                p["first_arrival_s"],
                p["median_arrival_s"],
                p["last_arrival_s"],
                p["all_delivered_s"],
                p["server_side_commit_to_last_delivered_s"],
                p["max_in_flight"],
                p["server_cpu_s"],
            ]
            for p in result["posts"]
        ],
    )
    for p in result["posts"]:
        if p["signature_problems"]:
            print(f"  post {p['post']} signature problems: {p['signature_problems']}")
        if p["delivery_states"].get("delivered", 0) != p["delivery_rows"]:
            print(f"  post {p['post']} delivery states: {p['delivery_states']}")
    if result["unexpected_requests"]:
        print(f"  unexpected requests at the receivers: {result['unexpected_requests']}")
    print()
    print_targets(result["targets"])
    print(f"  results: {RESULTS / 'fanout.json'}; server log: {RESULTS / 'fanout-server.log'}")


def targets(result: dict[str, Any]) -> dict[str, Any]:
    posts = result["posts"]
    hosts = result["hosts"]
    worst = max(
        (p["all_delivered_s"] if p["all_delivered_s"] is not None else float("inf")) for p in posts
    )
    exact = all(
        p["deliveries_received"] == hosts
        and p["deliveries_received_for_this_post"] == hosts
        and p["valid_signatures"] == hosts
        for p in posts
    )
    return {
        "all delivered (s), worst post": check(worst, TARGET_SECONDS, below=True),
        "HTTP deliveries per post == hosts": {
            "value": "/".join(str(p["deliveries_received"]) for p in posts),
            "target": f"== {hosts}, all signed validly",
            "met": exact,
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark fan-out: one Followers post to many remote followers on "
        "loopback hosts that verify signatures and answer 202 after a delay."
    )
    parser.add_argument(
        "--followers", type=int, default=10_000, help="remote followers (default 10000)"
    )
    parser.add_argument(
        "--hosts", type=int, default=50, help="remote hosts, each with a shared inbox (default 50)"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=100.0,
        help="receivers' delay before answering 202 (default 100)",
    )
    parser.add_argument(
        "--posts", type=int, default=1, help="posts to publish one after the other (default 1)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="give up on a post after this many seconds (default 60)",
    )
    add_quiet_wait(parser, before="before each post")
    add_instance_options(parser)
    args = parser.parse_args(argv)
    if not (
        1 <= args.hosts <= 500
        and args.hosts <= args.followers <= 1_000_000
        and 1 <= args.posts <= 100
        and 0 <= args.latency_ms <= 10_000
        and 0 < args.timeout <= 600
    ):
        parser.error(
            "need 1 <= --hosts <= 500, --hosts <= --followers <= 1000000, "
            "1 <= --posts <= 100, 0 <= --latency-ms <= 10000, 0 < --timeout <= 600"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="steelyard-bench-fanout-", dir="/tmp"))
    instance = args.instance or root / "instance"
    keep = args.keep or args.instance is not None
    try:
        load = load_average()
        port = free_port()
        ports = sorted({free_port() for _ in range(args.hosts * 2)} - {port})[: args.hosts]
        if len(ports) < args.hosts:
            raise SystemExit("could not find enough free loopback ports")
        print(
            f"Instance {instance} on 127.0.0.1:{port}; {args.hosts} receivers on "
            f"127.0.0.1:{ports[0]}..{ports[-1]}",
            file=sys.stderr,
            flush=True,
        )
        init_instance(instance, port, "Steelyard fan-out bench")
        facts = seed(instance, ports, args.followers)
        receivers = Receivers(
            ports, args.latency_ms / 1000, facts["poster_key_id"], facts.pop("public_pem")
        )
        result: dict[str, Any] = {
            "machine": machine(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "load_average_1min_before": load,
            "hosts": args.hosts,
            "followers": args.followers,
            "latency_ms": args.latency_ms,
            "seed": facts,
        }
        result.update(asyncio.run(run(args, instance, port, ports, receivers, facts)))
        result["targets"] = targets(result)
    finally:
        if keep:
            print(f"instance kept in {instance}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    (RESULTS / "fanout.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report(result)
    # A slow fan-out is a finding; a wrong number of deliveries or a lost one is a failure.
    return (
        0
        if result["targets"]["HTTP deliveries per post == hosts"]["met"]
        and all(p["all_delivered_s"] is not None for p in result["posts"])
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
