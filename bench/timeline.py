"""Home-feed benchmark: latency, throughput, memory and cold start of the real server.

What it measures, against ``steelyard serve`` started as a child process on a free loopback port:

- cold start: from spawning the process until the first 200 answer to ``GET /login``;
- idle RSS (``VmRSS`` of the server process one second after that answer) and loaded RSS
  (the peak sampled while under load);
- home-feed pages (``GET /`` signed in): p50/p99 latency and pages per second with 4 and 50
  concurrent clients, each a distinct signed-in person with its own aiohttp session and
  keep-alive connection, looping without think time. Of every four requests one is the first
  page, two follow the "Older posts" link of the previous page and one jumps deep into the
  past (a cursor between one month and two years old), so paging depth is exercised.

The instance is made with ``steelyard init`` in a temporary folder and seeded through
``server.storage.bulk``: by default 1,000 people each following 100 others and 1,000,000
posts spread over two years (one shared key pair and password hash: they are not measured).

Run (from the repository root)::

    .venv/bin/python bench/timeline.py                      # full size, about 5 minutes
    .venv/bin/python bench/timeline.py --reuse /tmp/sy-bench # keep the seeded instance, reuse it
    .venv/bin/python bench/timeline.py --users 50 --follows 10 --posts 20000 --seconds 3

Figures are printed as a table and written to ``bench/results/timeline.json``.
Targets (2-core machine): p99 < 50 ms at 4 clients, >= 400 pages/s at 50 clients,
idle RSS < 100 MB, cold start < 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    PASSWORD,
    Server,
    add_instance_options,
    free_port,
    init_instance,
    machine,
    machine_busy_seconds,
    pct,
    sign_in,
)

from federation.urls import Urls
from server.config import load_config
from server.passwords import hash_password
from server.storage import bulk, posts, users
from server.storage.db import open_sync

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MARKER = "bench-seed.json"
DAY_MS = 86_400_000
SPAN_MS = 730 * DAY_MS  # posts are spread over the last two years
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
TARGETS = {
    "p99_ms_at_4": 50.0,
    "pages_per_s_at_50": 400.0,
    "idle_rss_mb": 100.0,
    "cold_start_s": 1.5,
}

_WORD_TEXT = (
    "the team quarterly review roadmap customer release meeting update budget plan launch"
    " design draft feedback office project deadline sprint report sales marketing support"
    " engineering finance legal hiring onboarding welcome thanks great work please note"
    " tomorrow today friday monday next week agenda slides notes minutes decision owner"
    " status risk issue fix deploy server database latency backlog priority goal metric"
    " R&D Q3 Q4 <draft> partner vendor contract invoice training workshop lunch coffee"
    " kitchen parking badge security policy holiday schedule remote hybrid floor desk"
    " we our new all for with on in at to of and is are will be has have from about"
)
_WORDS = _WORD_TEXT.split()
_FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Tim",
)
_LAST = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Perlman",
)
_CURSOR = re.compile(r"[?&](?:amp;)?before=(\d+)")


# --- instance and seeding -------------------------------------------------------------------


@dataclass(slots=True)
class Seed:
    users: int
    follows: int
    posts: int
    seconds: float = 0.0
    reused: bool = False


def username(i: int) -> str:
    return f"user{i:05d}"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _text(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(24, 40))
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."


def _posts(
    rng: random.Random, urls: Urls, authors: list[tuple[int, str]], count: int, now_ms: int
) -> Iterator[bulk.BulkPost]:
    times = sorted(rng.randrange(now_ms - SPAN_MS, now_ms) for _ in range(count))
    last_id = 0
    visibilities = ("internal",) * 17 + ("followers",) * 2 + ("public",)
    for created in times:
        post_id = max(created << 12, last_id + 1)
        last_id = post_id
        author_id, name = rng.choice(authors)
        text = _text(rng)
        yield bulk.BulkPost(
            id=post_id,
            uri=urls.note(name, post_id),
            url=urls.post_page(post_id),
            author_id=author_id,
            visibility=rng.choice(visibilities),
            source=text,
            content_html=f"<p>{html.escape(text, quote=False)}</p>",
            created_at=created,
        )


def _keypair() -> tuple[str, str]:
    try:
        from federation.signatures import generate_rsa_keypair
    except ImportError:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        public = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )
        return private, public
    return generate_rsa_keypair()


def seed(instance: Path, want: Seed) -> None:
    """Fill a fresh instance: people, follows, posts, then ANALYZE."""
    config = load_config(instance)
    urls = Urls(config.url)
    rng = random.Random(20240601)  # repeatable data
    now = int(time.time() * 1000)
    started = time.perf_counter()
    private_pem, public_pem = _keypair()
    password_hash = hash_password(PASSWORD)
    conn = open_sync(config.db_path, config.synchronous)
    try:
        # Seeding only (synchronous=OFF, 1 GB cache): a crash here just means seeding again.
        bulk.use_for_bulk_load(conn, cache_mb=1000)
        people = [
            bulk.BulkUser(
                uri=urls.actor(username(i)),
                username=username(i),
                host=config.host,
                display_name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {i}",
                password_hash=password_hash,
                private_key_pem=private_pem,
                public_key_pem=public_pem,
                created_at=now - SPAN_MS - DAY_MS,
            )
            for i in range(1, want.users + 1)
        ]
        conn.execute("BEGIN IMMEDIATE")
        ids = bulk.insert_bulk_users(conn, people)
        everyone = [ids[p.username] for p in people]
        per_person = min(want.follows, want.users - 1)
        pairs = (
            (me, other)
            for me in everyone
            for other in rng.sample([x for x in everyone if x != me], per_person)
        )
        bulk.insert_bulk_follows(conn, pairs, now_ms=now - SPAN_MS)
        conn.execute("COMMIT")
        authors = [(ids[p.username], p.username) for p in people]
        rows = _posts(rng, urls, authors, want.posts, now)
        done = 0
        while done < want.posts:
            batch = min(250_000, want.posts - done)
            conn.execute("BEGIN IMMEDIATE")
            done += bulk.insert_bulk_posts(conn, (next(rows) for _ in range(batch)))
            conn.execute("COMMIT")
            print(
                f"  seeded {done:,} posts ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        bulk.finish_bulk_load(conn)
    finally:
        conn.close()
    want.seconds = time.perf_counter() - started
    (instance / MARKER).write_text(json.dumps(asdict(want)), encoding="utf-8")


def prepare(args: argparse.Namespace) -> tuple[Path, Seed, bool]:
    """The instance folder, what it holds, and whether to delete it at the end."""
    want = Seed(args.users, args.follows, args.posts)
    if args.reuse and (args.reuse / MARKER).is_file():
        held = json.loads((args.reuse / MARKER).read_text(encoding="utf-8"))
        found = Seed(held["users"], held["follows"], held["posts"], held["seconds"], True)
        if (found.users, found.follows, found.posts) != (want.users, want.follows, want.posts):
            print(
                f"note: reusing {args.reuse} as seeded ({found.users} users, "
                f"{found.follows} follows each, {found.posts} posts)",
                file=sys.stderr,
            )
        return args.reuse, found, False
    if args.reuse and args.reuse.exists() and any(args.reuse.iterdir()):
        raise SystemExit(f"{args.reuse} exists but was not seeded by this benchmark")
    if args.reuse or args.instance:
        instance, temporary = (args.reuse or args.instance), False
    else:
        instance = Path(tempfile.mkdtemp(prefix="steelyard-bench-", dir="/tmp")) / "instance"
        temporary = not args.keep
    print(
        f"Seeding {instance}: {want.users:,} users x {want.follows} follows, {want.posts:,} posts",
        file=sys.stderr,
        flush=True,
    )
    try:
        init_instance(instance, free_port(), "Steelyard bench")
        seed(instance, want)
    except BaseException:
        if temporary:
            shutil.rmtree(instance.parent, ignore_errors=True)
        raise
    return instance, want, temporary


# --- database facts -------------------------------------------------------------------------


@dataclass(slots=True)
class DbFacts:
    size_mb: float
    counts: dict[str, int]
    deep_cursors: list[int]
    plan_first_page: list[str]
    plan_deep_page: list[str]
    query_ms_first_page: float
    query_ms_deep_page: float


def db_facts(instance: Path) -> DbFacts:
    config = load_config(instance)
    conn = open_sync(config.db_path, config.synchronous)
    try:
        rng = random.Random(7)
        now = int(time.time() * 1000)
        cursors = [
            c
            for c in (
                bulk.select_post_id_before(conn, now - rng.randrange(30 * DAY_MS, SPAN_MS))
                for _ in range(64)
            )
            if c is not None
        ]
        conn.execute("BEGIN")
        first = users.select_local_actor(conn, username(1))
        conn.execute("COMMIT")
        if first is None:
            raise SystemExit(f"{instance} has no {username(1)}: not seeded by this benchmark")
        viewer = first.id
        deep = cursors[0] if cursors else None
        timings = []
        for before in (None, deep):
            runs = []
            for _ in range(30):
                t0 = time.perf_counter()
                conn.execute("BEGIN")
                posts.select_home_feed(conn, viewer, before=before, limit=20)
                conn.execute("COMMIT")
                runs.append((time.perf_counter() - t0) * 1000)
            timings.append(statistics.median(runs))
        size = sum(p.stat().st_size for p in config.db_path.parent.glob(config.db_path.name + "*"))
        return DbFacts(
            size_mb=size / 1e6,
            counts=bulk.count_rows(conn),
            deep_cursors=cursors,
            plan_first_page=bulk.explain_home_feed(conn, viewer, None),
            plan_deep_page=bulk.explain_home_feed(conn, viewer, deep),
            query_ms_first_page=timings[0],
            query_ms_deep_page=timings[1],
        )
    finally:
        conn.close()


# --- the server process ---------------------------------------------------------------------


# --- load -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Level:
    clients: int
    seconds: float = 0.0
    pages: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "pages": self.pages,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "pages_per_s": round(self.pages / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(pct(lat, 50), 2),
            "p90_ms": round(pct(lat, 90), 2),
            "p99_ms": round(pct(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "server_cpu_pct": round(100 * self.server_cpu_s / self.seconds, 1)
            if self.seconds
            else 0.0,
            "server_cpu_ms_per_page": round(1000 * self.server_cpu_s / self.pages, 2)
            if self.pages
            else 0.0,
            "load_generator_cpu_pct": round(100 * self.client_cpu_s / self.seconds, 1)
            if self.seconds
            else 0.0,
            # Everything else running on the machine meanwhile (other jobs skew the figures).
            "other_processes_cpu_pct": round(
                100 * (self.machine_cpu_s - self.server_cpu_s - self.client_cpu_s) / self.seconds, 1
            )
            if self.seconds
            else 0.0,
        }


async def open_clients(base: str, count: int, people: int) -> list[aiohttp.ClientSession]:
    sessions = []
    for i in range(count):
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
            timeout=REQUEST_TIMEOUT,
        )
        sessions.append(session)
        await sign_in(session, base, username(i % people + 1))
    return sessions


async def _client(
    session: aiohttp.ClientSession,
    base: str,
    cursors: list[int],
    rng: random.Random,
    level: Level,
    record_from: float,
    stop_at: float,
) -> None:
    older: int | None = None
    step = 0
    while time.perf_counter() < stop_at:
        phase = step % 4
        if phase in (1, 2) and older is not None:
            path = f"/?before={older}"
        elif phase == 3 and cursors:
            path = f"/?before={rng.choice(cursors)}"
        else:
            path = "/"
        step += 1
        started = time.perf_counter()
        status, body, problem = 0, "", ""
        try:
            async with session.get(base + path, allow_redirects=False) as resp:
                status = resp.status
                body = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = f"{path}: {type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not problem and (status != 200 or "<article" not in body):
            problem = f"{path}: status {status}, {'no <article' if status == 200 else ''}"
        match = _CURSOR.search(body) if not problem else None
        older = int(match[1]) if match else None
        if started < record_from:
            continue
        if problem:
            level.errors += 1
            if len(level.error_samples) < 5:
                level.error_samples.append(problem)
        else:
            level.pages += 1
            level.latencies_ms.append(elapsed_ms)


async def run_level(
    server: Server,
    sessions: list[aiohttp.ClientSession],
    cursors: list[int],
    seconds: float,
    warmup: float,
) -> Level:
    level = Level(clients=len(sessions))
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + seconds
    clients = [
        _client(s, server.base, cursors, random.Random(i), level, record_from, stop_at)
        for i, s in enumerate(sessions)
    ]

    async def sample() -> None:
        await asyncio.sleep(max(0.0, record_from - time.perf_counter()))
        cpu0, own0, all0 = server.cpu_seconds(), time.process_time(), machine_busy_seconds()
        t0 = time.perf_counter()
        while time.perf_counter() < stop_at:
            level.peak_rss_mb = max(level.peak_rss_mb, server.rss_mb())
            await asyncio.sleep(0.2)
        level.server_cpu_s = server.cpu_seconds() - cpu0
        level.client_cpu_s = time.process_time() - own0
        level.machine_cpu_s = machine_busy_seconds() - all0
        level.seconds = time.perf_counter() - t0

    await asyncio.wait_for(asyncio.gather(sample(), *clients), timeout=warmup + seconds + 30)
    return level


async def measure(
    server: Server, args: argparse.Namespace, people: int, cursors: list[int]
) -> list[Level]:
    sessions = await open_clients(server.base, max(args.levels), people)
    try:
        return [
            await run_level(server, sessions[:n], cursors, args.seconds, args.warmup)
            for n in args.levels
        ]
    finally:
        for session in sessions:
            await session.close()


# --- report ---------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    seed_info, db, srv = result["seed"], result["database"], result["server"]
    print()
    print(f"Steelyard home-feed benchmark  ({result['machine']})")
    print(
        f"  data: {seed_info['users']:,} users x {seed_info['follows']} follows, "
        f"{seed_info['posts']:,} posts; SQLite {db['size_mb']:.0f} MB; seeding "
        f"{seed_info['seconds']:.1f} s{' (reused instance)' if seed_info['reused'] else ''}"
    )
    print(
        f"  query only, in-process: first page {db['query_ms_first_page']:.2f} ms, "
        f"deep page {db['query_ms_deep_page']:.2f} ms"
    )
    print()
    print(
        f"  {'clients':>7} {'pages/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'errors':>6} {'srv CPU':>8} {'CPU ms/pg':>9} {'peak RSS':>9} "
        f"{'load CPU':>8} {'others':>6}"
    )
    for lv in result["levels"]:
        print(
            f"  {lv['clients']:>7} {lv['pages_per_s']:>8.1f} {lv['p50_ms']:>8.2f} "
            f"{lv['p90_ms']:>8.2f} {lv['p99_ms']:>8.2f} {lv['max_ms']:>8.1f} "
            f"{lv['errors']:>6} {lv['server_cpu_pct']:>7.0f}% "
            f"{lv['server_cpu_ms_per_page']:>9.2f} {lv['peak_rss_mb']:>6.1f} MB "
            f"{lv['load_generator_cpu_pct']:>7.0f}% {lv['other_processes_cpu_pct']:>5.0f}%"
        )
    print()
    print(
        f"  cold start {srv['cold_start_s']:.3f} s; idle RSS {srv['idle_rss_mb']:.1f} MB; "
        f"loaded RSS (peak) {srv['loaded_rss_mb']:.1f} MB"
    )
    print()
    print("  targets:")
    for name, check in result["targets"].items():
        verdict = "ok  " if check["met"] else "MISS"
        print(f"    {verdict} {name:<20} {check['value']:>9} (target {check['target']})")
    for lv in result["levels"]:
        for sample in lv["error_samples"]:
            print(f"  error sample ({lv['clients']} clients): {sample}")
    print()
    print("  EXPLAIN QUERY PLAN, home feed (first page):")
    for line in db["plan_first_page"]:
        print(f"    {line}")
    print(f"  results: {RESULTS / 'timeline.json'}")


def _targets(levels: list[dict[str, Any]], cold: float, idle: float) -> dict[str, Any]:
    by = {lv["clients"]: lv for lv in levels}
    checks: dict[str, Any] = {}
    if 4 in by:
        value = by[4]["p99_ms"]
        checks["p99 @4 clients (ms)"] = {
            "value": value,
            "target": "< 50",
            "met": value < TARGETS["p99_ms_at_4"],
        }
    if 50 in by:
        value = by[50]["pages_per_s"]
        checks["pages/s @50 clients"] = {
            "value": value,
            "target": ">= 400",
            "met": value >= TARGETS["pages_per_s_at_50"],
        }
    checks["idle RSS (MB)"] = {
        "value": round(idle, 1),
        "target": "< 100",
        "met": idle < TARGETS["idle_rss_mb"],
    }
    checks["cold start (s)"] = {
        "value": round(cold, 3),
        "target": "< 1.5",
        "met": cold < TARGETS["cold_start_s"],
    }
    return checks


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the home feed of a seeded Steelyard served by `steelyard serve`."
    )
    parser.add_argument("--users", type=int, default=1000, help="people (default 1000)")
    parser.add_argument(
        "--follows", type=int, default=100, help="people each person follows (default 100)"
    )
    parser.add_argument("--posts", type=int, default=1_000_000, help="posts (default 1000000)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="measured seconds per concurrency level (default 20)",
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each level (default 3)"
    )
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[4, 50],
        help="concurrent clients, comma separated (default 4,50)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="use the instance seeded in DIR, or seed one there and keep it",
    )
    add_instance_options(
        parser, instance_to=where, create="seed a new instance in DIR (must not exist) and keep it"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes (steelyard serve --workers; RSS and CPU are summed)",
    )
    args = parser.parse_args(argv)
    if args.users < 2 or args.posts < 1 or args.follows < 1 or args.seconds <= 0:
        parser.error("need --users >= 2, --follows >= 1, --posts >= 1, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    instance, seeded, temporary = prepare(args)
    server: Server | None = None
    try:
        db = db_facts(instance)
        people = db.counts["accounts"]
        config = load_config(instance)
        wanted_port = int(config.url.rsplit(":", 1)[1])
        port = wanted_port if port_is_free(wanted_port) else free_port()
        server = Server(instance, port, RESULTS / "timeline-server.log")
        cold = server.start(workers=args.workers)
        time.sleep(1.0)
        idle = server.rss_mb()
        levels = asyncio.run(measure(server, args, people, db.deep_cursors))
        loaded = max([server.rss_mb()] + [lv.peak_rss_mb for lv in levels])
        summaries = [lv.summary() for lv in levels]
        result = {
            "machine": machine(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "seed": asdict(seeded),
            "database": {k: v for k, v in asdict(db).items() if k != "deep_cursors"},
            "server": {
                "cold_start_s": round(cold, 3),
                "idle_rss_mb": round(idle, 1),
                "loaded_rss_mb": round(loaded, 1),
                "pid": server.pid,
            },
            "levels": summaries,
            "targets": _targets(summaries, cold, idle),
        }
    finally:
        if server is not None:
            server.stop()
        if temporary:
            shutil.rmtree(instance.parent, ignore_errors=True)
        elif not args.reuse:
            print(f"instance kept in {instance}", file=sys.stderr)
    (RESULTS / "timeline.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report(result)
    return 1 if any(lv["errors"] for lv in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
