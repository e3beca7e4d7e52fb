"""Shared-inbox benchmark: signed ``Create{Note}`` activities from real remote actors.

Against ``steelyard serve`` started as a child process on a free loopback port (a development
instance, so plain-http federation with loopback peers is allowed):

- three small aiohttp servers on 127.0.0.1 ports are the allowed remote hosts; they serve the
  documents of ten remote actors (``Person`` with ``publicKey``, ``application/activity+json``,
  ``id`` equal to the URL) and answer the server's signed key and actor fetches;
- the three hosts are put on the instance's allowlist before the server starts;
- every activity is a ``Create`` of a ``Note`` addressed to Public, with a unique id on its
  actor's host and about 300 bytes of HTML (a link, a mention ``h-card`` span, a hashtag),
  signed with ``federation.signatures.sign_request`` (``(request-target) host date digest
  content-type``). They are pre-signed in a warm-up phase in a process pool, so the load
  generator spends its CPU on HTTP only; the signing cost is measured and reported;
- warm-up: one activity per actor (first contact: the server fetches each key), then one per
  sender connection, then wait until the dispatcher applied them all;
- measured: ``--senders`` (50) concurrent senders, each its own keep-alive connection, loop
  without think time for ``--seconds`` (30). Figures: 202 answers per second (verified and
  committed before the answer), p50/p99/max time to 202, non-202 answers by status, pending
  rows in ``inbox_activities`` at the end (the backlog) and the "applied" rate (rows reaching
  ``done`` per second), sampled through a read-only SQLite connection;
- profile: another ``--profile-seconds`` (10) of the same load with py-spy attached (CPU
  flame graph ``bench/results/inbox.svg``; wall-clock samples of every thread, idle included,
  summarised per step and per thread); then the backlog drains (up to ``--drain`` seconds),
  with py-spy on the dispatcher alone;
- a comparison run (``--compare-seconds``, same instance and port) under
  ``steelyard serve --workers 2`` when the measured server ran as one process;
- micro-benchmarks of each step in isolation (the server stopped): signing, signature
  parsing, RSA verification, JSON parsing, ActivityStreams parsing, HTML sanitizing, one
  ``store_inbound`` SQLite transaction with ``synchronous`` FULL and NORMAL and grouped, the
  whole ``InboxReceiver.receive`` and the dispatcher in-process (FULL and NORMAL), and an
  empty Quart route under Hypercorn (and uvicorn) driven by the same
  load generator.

Run (from the repository root)::

    .venv/bin/python bench/inbox.py                 # full size, about 8 minutes
    .venv/bin/python bench/inbox.py --seconds 5 --profile-seconds 0 --drain 5 --no-micro
        --compare-seconds 0                         # (one line) a smoke run

Figures are printed as tables and written to ``bench/results/inbox.json``.
Targets (2-core machine, 50 senders): >= 1,500 accepted/s, >= 1,000 applied/s, p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import importlib.util
import itertools
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    AP_JSON,
    PYTHON,
    RESULTS,
    Server,
    add_instance_options,
    add_quiet_wait,
    check,
    free_port,
    init_instance,
    load_average,
    machine,
    machine_busy_seconds,
    open_ro,
    pct,
    print_targets,
    start_site,
    table,
    tree_cpu_seconds,
    wait_for_quiet,
)

from federation import vocab
from federation.jsonsafe import loads_activity
from federation.ports import InboundRecord
from federation.signatures import (
    KeyCache,
    generate_rsa_keypair,
    prepare_verification,
    sign_request,
    verify_signature,
)
from federation.urls import Urls
from server.bootstrap import open_context
from server.config import load_config
from server.storage import federation as fed
from server.storage.db import open_sync
from server.text import TextRenderer

PY_SPY = Path(sys.executable).parent / "py-spy"
THIS_FILE = Path(__file__).resolve()
TARGETS = {"accepted_per_s": 1500.0, "applied_per_s": 1000.0, "p99_ms": 100.0}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
SAMPLE_EVERY = 0.5
QUIET_PCT = 20.0  # other processes below this % of a core: a quiet half-second
PRESIGN_RATE = 1800  # pre-signed activities per planned second of load


# --- remote actors and their activities -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteActor:
    """One remote actor of the load generator, on one of the allowed loopback hosts."""

    username: str
    base: str  # http://127.0.0.1:PORT
    private_pem: str
    public_pem: str

    @property
    def urls(self) -> Urls:
        return Urls(self.base)

    @property
    def uri(self) -> str:
        return self.urls.actor(self.username)

    @property
    def key_id(self) -> str:
        return self.urls.key_id(self.username)

    @property
    def host(self) -> str:
        return self.base.split("://", 1)[1]


def make_actors(hosts: list[int], count: int) -> list[RemoteActor]:
    keys = [generate_rsa_keypair() for _ in range(count)]
    return [
        RemoteActor(f"sender{i:02d}", f"http://127.0.0.1:{hosts[i % len(hosts)]}", *keys[i])
        for i in range(count)
    ]


def person_document(actor: RemoteActor) -> dict[str, Any]:
    return vocab.person(
        actor.urls,
        username=actor.username,
        display_name=f"Remote {actor.username}",
        summary_html="<p>Load generator</p>",
        public_key_pem=actor.public_pem,
        manually_approves=False,
        published_iso="2024-01-01T00:00:00Z",
    )


def content_html(actor: RemoteActor, other: RemoteActor, n: int) -> str:
    """About 300 bytes: a paragraph with a link, a Mastodon-style mention and a hashtag."""
    return (
        f"<p>Shipment {n} is confirmed for Thursday; the updated schedule is "
        f'<a href="{actor.base}/docs/schedule-{n % 97}" rel="nofollow noopener" '
        f'target="_blank">here</a>. <span class="h-card"><a href="{other.uri}" '
        f'class="u-url mention">@<span>{other.username}</span></a></span> please '
        f'confirm. <a href="{actor.base}/tags/logistics" class="mention hashtag" '
        f'rel="tag">#<span>logistics</span></a></p>'
    )


def activity_body(actors: list[RemoteActor], run: str, n: int) -> tuple[RemoteActor, bytes]:
    """The ``Create{Note}`` number *n* of this run, as sent (compact JSON)."""
    actor = actors[n % len(actors)]
    other = actors[(n + 1) % len(actors)]
    urls = actor.urls
    published = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    note_id = f"{urls.actor(actor.username)}/notes/{run}-{n}"
    note = vocab.note(
        note_id=note_id,
        attributed_to=actor.uri,
        content_html=content_html(actor, other, n),
        published_iso=published,
        to=[vocab.AS_PUBLIC],
        cc=[urls.followers(actor.username), other.uri],
        mentions=[(other.uri, f"@{other.username}@{other.host}")],
        hashtags=[(f"{actor.base}/tags/logistics", "logistics")],
        url=f"{actor.base}/@{actor.username}/{run}-{n}",
    )
    activity = vocab.with_context(
        vocab.create(activity_id=f"{note_id}/activity", actor=actor.uri, obj=note)
    )
    return actor, json.dumps(activity, separators=(",", ":")).encode()


Signed = tuple[bytes, str, str, str]  # body, Date, Digest, Signature


def sign_one(actor: RemoteActor, body: bytes, target: str, keys: KeyCache) -> Signed:
    headers = sign_request(
        "POST",
        target,
        key_id=actor.key_id,
        private_key_pem=actor.private_pem,
        body=body,
        now=time.time(),
        extra_headers={"Content-Type": AP_JSON},
        keys=keys,
    )
    return body, headers["Date"], headers["Digest"], headers["Signature"]


def presign_chunk(
    actors: list[RemoteActor], target: str, run: str, start: int, count: int
) -> tuple[list[Signed], float, float]:
    """Worker: build and sign activities start..start+count; (items, build CPU s, sign CPU s)."""
    keys = KeyCache()
    build = sign = 0.0
    out: list[Signed] = []
    for n in range(start, start + count):
        t0 = time.process_time()
        actor, body = activity_body(actors, run, n)
        t1 = time.process_time()
        out.append(sign_one(actor, body, target, keys))
        build += t1 - t0
        sign += time.process_time() - t1
    return out, build, sign


def presign(actors: list[RemoteActor], target: str, run: str, count: int) -> dict[str, Any]:
    """Pre-sign *count* activities with one process per CPU; returns items and their cost."""
    workers = max(1, os.cpu_count() or 1)
    per = -(-count // workers)
    started = time.perf_counter()
    items: list[Signed] = []
    build = sign = 0.0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(presign_chunk, actors, target, run, w * per, min(per, count - w * per))
            for w in range(workers)
            if w * per < count
        ]
        for fut in futures:
            chunk, b, s = fut.result(timeout=600)
            items.extend(chunk)
            build += b
            sign += s
    return {
        "items": items,
        "count": len(items),
        "wall_s": round(time.perf_counter() - started, 2),
        "processes": workers,
        "build_ms_each": round(1000 * build / max(1, len(items)), 4),
        "sign_ms_each": round(1000 * sign / max(1, len(items)), 4),
        "avg_body_bytes": round(statistics.fmean(len(i[0]) for i in items[:1000])) if items else 0,
    }


class RequestPool:
    """Hands out pre-signed requests in order; signs on the fly once they run out."""

    def __init__(
        self,
        items: list[Signed],
        actors: list[RemoteActor],
        target: str,
        run: str,
        *,
        fixed: bool = False,
    ) -> None:
        self.items, self.actors, self.target, self.run = items, actors, target, run
        self.host = target.split("/")[2]
        self.fixed = fixed  # always the first item (for the empty route: nothing verifies)
        self.next_n = 0
        self.on_the_fly = 0
        self.keys = KeyCache()

    def take(self) -> tuple[bytes, dict[str, str]]:
        n = 0 if self.fixed else self.next_n
        self.next_n += 1
        if n < len(self.items):
            body, date, digest, signature = self.items[n]
        else:
            self.on_the_fly += 1
            actor, raw = activity_body(self.actors, self.run, n)
            body, date, digest, signature = sign_one(actor, raw, self.target, self.keys)
        return body, {
            "Content-Type": AP_JSON,
            "Host": self.host,
            "Date": date,
            "Digest": digest,
            "Signature": signature,
        }


# --- the remote hosts -------------------------------------------------------------------------


class ActorHosts:
    """The allowed remote hosts: serve actor documents, count the server's fetches."""

    def __init__(self, ports: list[int], actors: list[RemoteActor]) -> None:
        self.ports = ports
        self.docs = {a.uri: json.dumps(person_document(a)).encode() for a in actors}
        self.gets: collections.Counter[str] = collections.Counter()
        self.runners: list[web.AppRunner] = []

    async def start(self) -> None:
        for port in self.ports:
            app = web.Application()
            app.router.add_get("/users/{name}", self._actor)
            self.runners.append(await start_site(app, port))

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners = []

    async def _actor(self, request: web.Request) -> web.Response:
        uri = f"http://{request.host}{request.path}"
        signed = "Signature" in request.headers
        self.gets["signed" if signed else "unsigned"] += 1
        doc = self.docs.get(uri)
        if doc is None:
            return web.Response(status=404)
        return web.Response(body=doc, status=200, headers={"Content-Type": AP_JSON})


async def allow_hosts(instance: Path, hosts: Iterable[str]) -> None:
    """Put the remote hosts on the allowlist (before the server starts)."""
    async with open_context(instance) as ctx:
        for host in hosts:
            await ctx.db.write(
                fed.upsert_allowed_host,
                host,
                "partner",
                "bench/inbox.py",
                "bench",
                ctx.clock.now_ms(),
            )


# --- load -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    name: str
    senders: int
    seconds: float = 0.0
    ok: int = 0
    late: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    on_the_fly: int = 0
    t0: float = 0.0  # the clock origin of the samples' "t"
    ok_at: list[float] = field(default_factory=list)  # when each in-window 202 completed

    def record(self, status: str, ms: float, in_window: bool, t_end: float) -> None:
        self.latencies_ms.append(ms)
        if not in_window:
            self.late += 1
            return
        self.statuses[status] += 1
        if status == "202":
            self.ok += 1
            self.ok_at.append(t_end - self.t0)

    def quiet(self, threshold_pct: float = QUIET_PCT) -> dict[str, Any]:
        """The same rates over the half-seconds when other processes used < threshold % of a
        core: the machine may be shared, and a figure from a noisy second measures others."""
        ok_at = sorted(self.ok_at)
        quiet_s = total_s = accepted = applied = 0.0
        for a, b in itertools.pairwise(self.samples):
            dt = b["t"] - a["t"]
            if dt <= 0:
                continue
            total_s += dt
            others = (
                (
                    (b["machine_cpu_s"] - a["machine_cpu_s"])
                    - (b["server_cpu_s"] - a["server_cpu_s"])
                    - (b["own_cpu_s"] - a["own_cpu_s"])
                )
                / dt
                * 100
            )
            if others >= threshold_pct:
                continue
            quiet_s += dt
            accepted += bisect.bisect_left(ok_at, b["t"]) - bisect.bisect_left(ok_at, a["t"])
            applied += b["done"] - a["done"]
        return {
            "threshold_pct_of_a_core": threshold_pct,
            "quiet_seconds": round(quiet_s, 1),
            "of_seconds": round(total_s, 1),
            "accepted_per_s": round(accepted / quiet_s, 1) if quiet_s else None,
            "applied_per_s": round(applied / quiet_s, 1) if quiet_s else None,
        }

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        secs = self.seconds or 1.0
        first = self.samples[0] if self.samples else {}
        last = self.samples[-1] if self.samples else {}
        applied = (last.get("done", 0) - first.get("done", 0)) if self.samples else 0
        stored = (last.get("total", 0) - first.get("total", 0)) if self.samples else 0
        sent = sum(self.statuses.values())
        return {
            "phase": self.name,
            "senders": self.senders,
            "seconds": round(self.seconds, 2),
            "requests": sent,
            "accepted_202": self.ok,
            "accepted_per_s": round(self.ok / secs, 1),
            "non_202": {k: v for k, v in self.statuses.items() if k != "202"},
            "completed_after_window": self.late,
            "p50_ms": round(pct(lat, 50), 2),
            "p90_ms": round(pct(lat, 90), 2),
            "p99_ms": round(pct(lat, 99), 2),
            "max_ms": round(lat[-1], 1) if lat else 0.0,
            "rows_stored": int(stored),
            "applied": int(applied),
            "applied_per_s": round(applied / secs, 1),
            "pending_at_start": int(first.get("pending", 0)),
            "pending_at_end": int(last.get("pending", 0)),
            "failed_rows_at_end": int(last.get("failed", 0)),
            "server_cpu_pct": round(100 * self.server_cpu_s / secs, 1),
            "server_cpu_ms_per_202": round(1000 * self.server_cpu_s / self.ok, 3)
            if self.ok
            else 0.0,
            "generator_cpu_pct": round(100 * self.client_cpu_s / secs, 1),
            "generator_cpu_ms_per_request": round(1000 * self.client_cpu_s / sent, 3)
            if sent
            else 0.0,
            # Everything else that ran on the machine meanwhile (py-spy, other people's jobs).
            "other_processes_cpu_pct": round(
                100 * (self.machine_cpu_s - self.server_cpu_s - self.client_cpu_s) / secs, 1
            ),
            "signed_on_the_fly": self.on_the_fly,
            "quiet_intervals": self.quiet() if len(self.samples) > 1 else None,
        }


def read_counts(conn: sqlite3.Connection) -> dict[str, float]:
    conn.execute("BEGIN")
    try:
        counts = fed.count_inbound(conn)
    finally:
        conn.execute("COMMIT")
    return {
        "pending": counts.get("pending", 0),
        "done": counts.get("done", 0),
        "failed": counts.get("failed", 0),
        "total": sum(counts.values()),
    }


def pids_cpu(pids: int | list[int]) -> float:
    """CPU seconds of these processes and their children (``serve --workers N``)."""
    return sum(tree_cpu_seconds(p) for p in ([pids] if isinstance(pids, int) else pids))


async def sample(conn: sqlite3.Connection, pid: int | list[int], t0: float) -> dict[str, float]:
    counts = await asyncio.to_thread(read_counts, conn)
    counts["t"] = round(time.perf_counter() - t0, 3)
    counts["server_cpu_s"] = round(pids_cpu(pid), 3)
    counts["machine_cpu_s"] = round(machine_busy_seconds(), 3)
    counts["own_cpu_s"] = round(time.process_time(), 3)
    return counts


async def open_senders(count: int) -> list[aiohttp.ClientSession]:
    return [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=REQUEST_TIMEOUT)
        for _ in range(count)
    ]


async def post_one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> str:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return str(resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def _sender(
    session: aiohttp.ClientSession, url: str, pool: RequestPool, phase: Phase, stop_at: float
) -> None:
    while time.perf_counter() < stop_at:
        body, headers = pool.take()
        t0 = time.perf_counter()
        status = await post_one(session, url, body, headers)
        t1 = time.perf_counter()
        phase.record(status, (t1 - t0) * 1000, t1 <= stop_at, t1)


async def run_phase(
    name: str,
    sessions: list[aiohttp.ClientSession],
    url: str,
    pool: RequestPool,
    seconds: float,
    db: sqlite3.Connection | None,
    server_pid: int | list[int],
    during: Callable[[], Awaitable[Any]] | None = None,
) -> Phase:
    """Load for *seconds*; samples the server's database and CPU every half second."""
    phase = Phase(name, len(sessions))
    fly0 = pool.on_the_fly
    t0 = phase.t0 = time.perf_counter()
    if db is not None:
        phase.samples.append(await sample(db, server_pid, t0))
    cpu0, own0, all0 = pids_cpu(server_pid), time.process_time(), machine_busy_seconds()
    start = time.perf_counter()
    stop_at = start + seconds

    async def sampler() -> None:
        while True:
            await asyncio.sleep(min(SAMPLE_EVERY, max(0.0, stop_at - time.perf_counter())))
            if time.perf_counter() >= stop_at:
                break
            if db is not None:
                phase.samples.append(await sample(db, server_pid, t0))

    async def end() -> None:
        await asyncio.gather(*(_sender(s, url, pool, phase, stop_at) for s in sessions), sampler())

    tasks = [end()] + ([during()] if during is not None else [])
    results = await asyncio.wait_for(
        asyncio.gather(*tasks, return_exceptions=True), timeout=seconds + 60
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    # Figures at the end of the window (the senders' last requests may finish a bit later).
    phase.seconds = time.perf_counter() - start
    phase.server_cpu_s = pids_cpu(server_pid) - cpu0
    phase.client_cpu_s = time.process_time() - own0
    phase.machine_cpu_s = machine_busy_seconds() - all0
    if db is not None:
        phase.samples.append(await sample(db, server_pid, t0))
    phase.on_the_fly = pool.on_the_fly - fly0
    return phase


async def wait_drained(
    db: sqlite3.Connection, pid: int, limit_s: float, samples: list[dict[str, float]] | None = None
) -> dict[str, float]:
    t0 = time.perf_counter()
    last = await sample(db, pid, t0)
    while last["pending"] > 0 and time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(SAMPLE_EVERY)
        last = await sample(db, pid, t0)
        if samples is not None:
            samples.append(last)
    return last


# --- py-spy -----------------------------------------------------------------------------------


async def py_spy(pid: int, seconds: float, out: Path, *, raw: bool) -> str:
    """Run ``py-spy record`` for *seconds*; raw = wall-clock stacks of every thread."""
    argv = [
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "-d",
        str(max(1, round(seconds))),
        "-r",
        "100",
        "--nonblocking",
        "-o",
        str(out),
    ]
    argv += (
        ["-f", "raw", "--idle", "--threads", "--full-filenames"] if raw else ["-f", "flamegraph"]
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "py-spy timed out"
    return output.decode(errors="replace").strip().splitlines()[-1] if output else ""


# A sample belongs to the deepest frame of one of the components below; only when none is on
# the stack does it count as event-loop overhead (or idle: the loop waiting in epoll).
_COMPONENTS: list[tuple[str, Callable[[str], bool]]] = [
    ("RSA verify (verify_signature)", lambda f: f.startswith("verify_signature (")),
    (
        "signature parse, Digest, Date (prepare_verification)",
        lambda f: f.startswith("prepare_verification ("),
    ),
    ("JSON parse (loads_activity)", lambda f: f.startswith("loads_activity (")),
    ("HTML sanitize (sanitize_remote)", lambda f: "sanitize_remote (" in f),
    ("ActivityStreams parse (vocab)", lambda f: "/federation/vocab.py" in f),
    (
        "DB hand-off, event-loop side (Database, aiosqlite)",
        lambda f: "/aiosqlite/" in f or "/server/storage/db.py" in f,
    ),
    ("inbox receiver, other (federation/inbox.py)", lambda f: "/federation/inbox.py" in f),
    ("key resolution (federation/keys.py)", lambda f: "/federation/keys.py" in f),
    ("apply handlers (server/services)", lambda f: "/server/services/" in f),
    ("dispatcher (federation/dispatch.py)", lambda f: "/federation/dispatch.py" in f),
    ("storage functions (server/storage)", lambda f: "/server/storage/" in f),
    ("inbox fast path (server/web/inbox_asgi.py)", lambda f: "/server/web/" in f),
    ("Quart/Werkzeug", lambda f: "/quart/" in f or "/werkzeug/" in f),
    ("Hypercorn + h11 (HTTP/1.1, socket I/O)", lambda f: "/hypercorn/" in f or "/h11/" in f),
    ("logging", lambda f: "/logging/" in f),
]


def _main_thread_step(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, test in _COMPONENTS:
            if test(frame):
                return name
    if frames and "select (" in frames[-1] and "selectors.py" in frames[-1]:
        return "idle (event loop waiting in epoll)"
    if any("/asyncio/" in f for f in frames):
        return "asyncio event loop (scheduling, callbacks)"
    return "other"


def summarise_raw(path: Path, seconds: float) -> dict[str, Any]:
    """Per thread: share of wall-clock samples per step (py-spy raw, idle included)."""
    threads: dict[str, collections.Counter[str]] = {}
    if not path.is_file():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        head, frames = frames[0], frames[1:]
        count = int(count_text)
        joined = ";".join(frames)
        if "aiosqlite" in joined and "_bootstrap" in joined:
            if "_in_write_tx" in joined:
                what = "write transaction (incl. fsync)"
            elif "_in_read_tx" in joined:
                what = "read transaction"
            elif frames[-1].startswith("_connection_worker_thread ("):
                what = "idle (waiting for work)"
            else:
                what = "aiosqlite other"
            name = head.split(")", 1)[0] + ") aiosqlite"
        elif "MainThread" in head:
            name = "main (event loop)"
            what = _main_thread_step(frames)
        else:
            name = head
            what = "thread"
        threads.setdefault(name, collections.Counter())[what] += count
    expected = seconds * 100
    result: dict[str, Any] = {}
    for name, counter in threads.items():
        total = sum(counter.values())
        result[name] = {
            "samples": total,
            "share_pct": {
                k: round(100 * v / max(total, expected), 1) for k, v in counter.most_common()
            },
        }
    writers = [n for n in result if "aiosqlite" in n]
    if writers:
        busiest = max(
            writers, key=lambda n: result[n]["share_pct"].get("write transaction (incl. fsync)", 0)
        )
        result["writer"] = busiest
    return result


# --- micro-benchmarks -------------------------------------------------------------------------


def _timeit(fn: Callable[[], Any], n: int) -> float:
    """Median per-call ms over 5 rounds of n/5 calls."""
    rounds = []
    per = max(1, n // 5)
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        rounds.append((time.perf_counter() - t0) * 1000 / per)
    return statistics.median(rounds)


def micro_steps(actors: list[RemoteActor], host: str) -> dict[str, float]:
    """CPU cost of each verification and parsing step on one representative activity."""
    from federation import inbox as inbox_module

    keys = KeyCache()
    target = f"http://{host}/inbox"
    actor, body = activity_body(actors, "micro", 1)
    signed = sign_one(actor, body, target, keys)
    headers = [
        ("Host", host),
        ("Content-Type", AP_JSON),
        ("Content-Length", str(len(body))),
        ("Date", signed[1]),
        ("Digest", signed[2]),
        ("Signature", signed[3]),
        ("User-Agent", "bench"),
        ("Accept-Encoding", "gzip"),
    ]
    pending = prepare_verification(
        "POST", "/inbox", headers, body, canonical_host=host, now=time.time()
    )
    assert verify_signature(pending, actor.public_pem, keys=keys)
    doc = loads_activity(body)
    note = vocab.parse_note(doc["object"])
    renderer = TextRenderer()
    renderer.sanitize_remote(note.content_html)
    parse_activity = inbox_module._parse_activity  # the receiver's own first parse
    extra: dict[str, float] = {}
    if importlib.util.find_spec("nh3") is not None:
        import nh3

        content = note.content_html
        extra["nh3.clean (Rust ammonia; comparison only, other rules)"] = _timeit(
            lambda: nh3.clean(content), 5000
        )
    return extra | {
        "build activity JSON (generator)": _timeit(lambda: activity_body(actors, "m", 2), 2000),
        "sign_request (generator)": _timeit(lambda: sign_one(actor, body, target, keys), 1000),
        "prepare_verification (parse, Host, Date, Digest)": _timeit(
            lambda: prepare_verification(
                "POST", "/inbox", headers, body, canonical_host=host, now=time.time()
            ),
            5000,
        ),
        "verify_signature (RSA-2048, cached key)": _timeit(
            lambda: verify_signature(pending, actor.public_pem, keys=keys), 5000
        ),
        "loads_activity (strict JSON)": _timeit(lambda: loads_activity(body), 5000),
        "receiver _parse_activity (JSON + ids/origins)": _timeit(
            lambda: parse_activity(body), 5000
        ),
        "vocab.parse_activity + parse_note (apply)": _timeit(
            lambda: vocab.parse_note(vocab.parse_activity(doc).object or {}), 5000
        ),
        "sanitize_remote (~300 B HTML, bleach)": _timeit(
            lambda: renderer.sanitize_remote(note.content_html), 2000
        ),
        "body bytes": float(len(body)),
        "content bytes": float(len(note.content_html)),
    }


def _record(actors: list[RemoteActor], n: int, host: str) -> InboundRecord:
    actor, body = activity_body(actors, f"sql{secrets.token_hex(4)}", n)
    doc = json.loads(body)
    headers = (
        ("Host", host),
        ("Content-Type", AP_JSON),
        ("Content-Length", str(len(body))),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("Digest", "SHA-256=" + "A" * 43 + "="),
        (
            "Signature",
            'keyId="x",algorithm="rsa-sha256",headers="(request-target) host'
            ' date digest content-type",signature="' + "B" * 342 + '=="',
        ),
    )
    return InboundRecord(
        doc["id"],
        "Create",
        actor.uri,
        actor.host,
        actor.key_id,
        "/inbox",
        headers,
        body,
        int(time.time() * 1000),
    )


def micro_sqlite(instance: Path, actors: list[RemoteActor], host: str) -> dict[str, float]:
    """One ``store_inbound`` transaction (``fed.insert_inbound``) on a plain connection."""
    config = load_config(instance)
    results: dict[str, float] = {}
    counter = iter(range(10**9))

    def run(sync: str, group: int, n: int) -> float:
        conn = open_sync(config.db_path, sync)
        records = [_record(actors, next(counter), host) for _ in range(n)]
        try:
            t0 = time.perf_counter()
            for i in range(0, n, group):
                conn.execute("BEGIN IMMEDIATE")
                for record in records[i : i + group]:
                    fed.insert_inbound(conn, record)
                conn.execute("COMMIT")
            return (time.perf_counter() - t0) * 1000 / n
        finally:
            conn.close()

    def noop_commit(sync: str, n: int) -> float:
        conn = open_sync(config.db_path, sync)
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                conn.execute("BEGIN IMMEDIATE")
                fed.reset_host(conn, actors[0].host)
                conn.execute("COMMIT")
            return (time.perf_counter() - t0) * 1000 / n
        finally:
            conn.close()

    run("FULL", 1, 100)  # warm the file
    results["store_inbound, 1 per commit, synchronous=FULL"] = run("FULL", 1, 600)
    results["store_inbound, 1 per commit, synchronous=NORMAL"] = run("NORMAL", 1, 600)
    results["store_inbound, 50 per commit, synchronous=FULL (per activity)"] = run("FULL", 50, 3000)
    results["host_spoke (no-op UPDATE) commit, synchronous=FULL"] = noop_commit("FULL", 600)
    return results


async def micro_database(instance: Path, actors: list[RemoteActor], host: str) -> dict[str, float]:
    """The same through ``Database`` (aiosqlite thread hop, writer lock), FULL and NORMAL."""
    results: dict[str, float] = {}
    for sync in ("FULL", "NORMAL"):
        from server.storage.db import Database

        db = Database(load_config(instance).db_path, synchronous=sync)
        await db.open()
        try:
            records = [_record(actors, i, host) for i in range(400)]
            t0 = time.perf_counter()
            for record in records:
                await db.write(fed.insert_inbound, record)
            results[f"Database.write(insert_inbound) sequential, {sync}"] = (
                (time.perf_counter() - t0) * 1000 / len(records)
            )
            if sync == "FULL":
                t0 = time.perf_counter()
                for _ in range(1000):
                    await db.read(fed.select_known_key, actors[0].key_id)
                results["Database.read(select_known_key) sequential"] = (
                    (time.perf_counter() - t0) * 1000 / 1000
                )
        finally:
            await db.close()
    return results


def uvicorn_available() -> bool:
    """uvicorn with httptools and uvloop importable (not a project dependency: optional)."""
    return all(importlib.util.find_spec(m) is not None for m in ("uvicorn", "uvloop", "httptools"))


def serve_asgi(app: Any, port: int, stack: str) -> None:
    """Serve *app* on 127.0.0.1:*port*: ``hypercorn`` exactly as ``steelyard serve`` does, or
    ``uvicorn`` with the httptools parser and the uvloop event loop."""
    if stack == "uvicorn":
        import uvicorn

        uvicorn.run(
            app,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
        )
        return
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HyperConfig

    hyper = HyperConfig()
    hyper.bind = [f"127.0.0.1:{port}"]
    hyper.accesslog = None
    hyper.errorlog = "-"
    hyper.graceful_timeout = 5
    hyper.keep_alive_timeout = 30
    hyper.read_timeout = 60
    asyncio.run(serve(app, hyper))


async def micro_pipeline(
    instance: Path, actors: list[RemoteActor], host: str, senders: int
) -> dict[str, Any]:
    """``InboxReceiver.receive`` and the dispatcher, in-process (no HTTP), per variant."""
    from server.app import create_app

    keys = KeyCache()
    target = f"http://{host}/inbox"
    out: dict[str, Any] = {}
    variants = [("FULL", "FULL"), ("NORMAL", "NORMAL")]
    seq, conc = 300, 3000
    for label, sync in variants:
        run = f"pipe{secrets.token_hex(4)}"
        app = create_app(instance, overrides={"run_workers": False, "synchronous": sync})
        async with app.test_app():
            ctx = app.config["STEELYARD_CONTEXT"]
            receiver, dispatcher = ctx.federator.receiver, ctx.federator.dispatcher
            signed = [
                sign_one(*activity_body(actors, run, n), target, keys)
                for n in range(len(actors) + seq + conc)
            ]

            async def receive(item: Signed, receiver: Any = receiver) -> int:
                body, date, digest, signature = item
                headers = [
                    ("Host", host),
                    ("Content-Type", AP_JSON),
                    ("Content-Length", str(len(body))),
                    ("Date", date),
                    ("Digest", digest),
                    ("Signature", signature),
                ]
                result = await receiver.receive(
                    method="POST", raw_target="/inbox", headers=headers, body=body
                )
                return int(result.status)

            # First contact (key fetches from the actor hosts), applied once (actor fetches).
            warm = [await receive(item) for item in signed[: len(actors)]]
            await dispatcher.run_until_idle()
            if set(warm) != {202}:
                raise RuntimeError(f"in-process receive answered {warm}")
            # Sequential: the latency of one activity with nothing else running.
            t0 = time.perf_counter()
            statuses = [await receive(item) for item in signed[len(actors) : len(actors) + seq]]
            seq_ms = (time.perf_counter() - t0) * 1000 / seq
            await dispatcher.run_until_idle(max_rounds=10_000)
            # Concurrent: *senders* coroutines like the HTTP senders, with the dispatcher
            # running alongside as in the server.
            queue = iter(signed[len(actors) + seq :])

            async def worker(
                receive: Callable[[Signed], Awaitable[int]] = receive, queue: Any = queue
            ) -> list[int]:
                return [await receive(item) for item in queue]

            before = await ctx.db.read(fed.count_inbound)
            stop = asyncio.Event()
            running = asyncio.ensure_future(dispatcher.run_forever(stop))
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            parts = await asyncio.gather(*(worker() for _ in range(senders)))
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            after = await ctx.db.read(fed.count_inbound)
            stop.set()
            dispatcher.wake()
            await running
            statuses += [s for part in parts for s in part]
            applied_during = after.get("done", 0) - before.get("done", 0)
            # The rest of the backlog with the dispatcher alone.
            t0, cpu0 = time.perf_counter(), time.process_time()
            applied = await dispatcher.run_until_idle(max_rounds=10_000)
            apply_ms = (time.perf_counter() - t0) * 1000 / max(1, applied)
            apply_cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, applied)
            out[label] = {
                "receive_ms_sequential": round(seq_ms, 3),
                "receive_per_s_concurrent": round(conc / wall, 1),
                "applied_per_s_during": round(applied_during / wall, 1),
                "receive_cpu_ms_each_concurrent": round(1000 * cpu / conc, 3),
                "non_202": sum(1 for s in statuses if s != 202),
                "applied_alone": applied,
                "apply_ms_each_alone": round(apply_ms, 3),
                "apply_cpu_ms_each_alone": round(apply_cpu_ms, 3),
                "apply_per_s_alone": round(1000 / apply_ms, 1) if apply_ms else 0.0,
            }
    return out


def serve_empty(port: int, stack: str) -> None:
    """``--serve-empty PORT STACK``: an empty Quart inbox route (reads the body, answers 202)."""
    from quart import Quart, Response, request

    app = Quart("empty")

    @app.get("/login")
    async def ready() -> str:
        return "ok"

    @app.post("/inbox")
    async def inbox() -> Response:
        body = bytearray()
        async for chunk in request.body:
            body.extend(chunk)
        response = Response(json.dumps({"status": "accepted"}), status=202)
        response.headers["Content-Type"] = "application/json"
        return response

    serve_asgi(app, port, stack)


async def micro_web_stack(
    pool: RequestPool, senders: int, seconds: float, stack: str
) -> dict[str, Any]:
    port = free_port()
    server = Server(Path("/nonexistent"), port, RESULTS / f"inbox-empty-{stack}.log")
    await asyncio.to_thread(
        server.spawn, [str(PYTHON), str(THIS_FILE), "--serve-empty", str(port), stack], "/login"
    )
    sessions = await open_senders(senders)
    try:
        body, headers = pool.take()
        fixed = RequestPool(
            [(body, headers["Date"], headers["Digest"], headers["Signature"])],
            pool.actors,
            pool.target,
            pool.run,
            fixed=True,
        )
        await run_phase(
            "empty-warmup", sessions, f"{server.base}/inbox", fixed, 1.0, None, server.pid
        )
        phase = await run_phase(
            "empty", sessions, f"{server.base}/inbox", fixed, seconds, None, server.pid
        )
    finally:
        for s in sessions:
            await s.close()
        await asyncio.to_thread(server.stop)
    s = phase.summary()
    return {
        k: s[k]
        for k in (
            "seconds",
            "requests",
            "accepted_per_s",
            "p50_ms",
            "p99_ms",
            "non_202",
            "server_cpu_pct",
            "server_cpu_ms_per_202",
            "generator_cpu_pct",
            "generator_cpu_ms_per_request",
        )
    }


# --- main flow --------------------------------------------------------------------------------


async def bench(
    args: argparse.Namespace,
    instance: Path,
    port: int,
    host_ports: list[int],
    actors: list[RemoteActor],
    presigned: dict[str, Any],
    run: str,
    micro_dirs: tuple[Path, Path] | None,
) -> dict[str, Any]:
    hosts = ActorHosts(host_ports, actors)
    await hosts.start()
    server = Server(instance, port, RESULTS / "inbox-server.log")
    started = [server]  # every process we start, stopped by its PID in the end
    sessions: list[aiohttp.ClientSession] = []
    result: dict[str, Any] = {}
    db: sqlite3.Connection | None = None
    try:
        await allow_hosts(instance, (f"127.0.0.1:{p}" for p in host_ports))
        await asyncio.to_thread(server.start, 30.0, args.workers)
        result["server_pid"] = server.pid
        result["workers"] = args.workers
        url = f"{server.base}/inbox"
        pool = RequestPool(presigned.pop("items"), actors, url, run)
        db = open_ro(load_config(instance).db_path)

        # Warm-up: first contact of each actor (key fetch), then open every connection.
        sessions = await open_senders(args.senders)
        first = [await post_one(sessions[0], url, *pool.take()) for _ in actors]
        if set(first) != {"202"}:
            raise RuntimeError(f"first-contact activities answered {first}; see {server.log}")
        warm = await asyncio.gather(*(post_one(s, url, *pool.take()) for s in sessions))
        drained = await wait_drained(db, server.pid, 60)
        result["warmup"] = {
            "first_contact": first,
            "per_connection": dict(collections.Counter(warm)),
            "pending_after": drained["pending"],
            "actor_fetches": dict(hosts.gets),
        }
        print(
            f"  warm-up done: {len(first) + len(warm)} activities, remote actor GETs "
            f"{dict(hosts.gets)}",
            file=sys.stderr,
            flush=True,
        )

        result["quiet_before_measured"] = await asyncio.to_thread(
            wait_for_quiet, args.quiet_wait, [server.pid]
        )
        measured = await run_phase("measured", sessions, url, pool, args.seconds, db, server.pid)
        result["measured"] = measured.summary()
        result["measured_samples"] = measured.samples
        print(
            f"  measured: {result['measured']['accepted_per_s']} accepted/s, "
            f"{result['measured']['applied_per_s']} applied/s",
            file=sys.stderr,
            flush=True,
        )

        if args.profile_seconds > 0:
            svg, raw = RESULTS / "inbox.svg", RESULTS / "inbox-load.raw.txt"

            async def spy() -> list[str]:
                await asyncio.sleep(1.0)
                return list(
                    await asyncio.gather(
                        py_spy(server.pid, args.profile_seconds, svg, raw=False),
                        py_spy(server.pid, args.profile_seconds, raw, raw=True),
                    )
                )

            profiled = await run_phase(
                "profiled (py-spy attached)",
                sessions,
                url,
                pool,
                args.profile_seconds + 3,
                db,
                server.pid,
                during=spy,
            )
            result["profiled"] = profiled.summary()
            result["profile_load"] = summarise_raw(raw, args.profile_seconds)
            result["profile_files"] = [str(svg), str(raw)]

        # Drain: the dispatcher alone (no inbound load), profiled for its first seconds.
        drain_samples: list[dict[str, float]] = []
        t0 = time.perf_counter()
        start = await sample(db, server.pid, t0)
        drain_raw = RESULTS / "inbox-drain.raw.txt"
        spy_task = None
        if args.profile_seconds > 0 and start["pending"] > 0 and args.drain > 0:
            spy_seconds = min(args.profile_seconds, args.drain)
            spy_task = asyncio.ensure_future(py_spy(server.pid, spy_seconds, drain_raw, raw=True))
        end = await wait_drained(db, server.pid, args.drain, drain_samples)
        if spy_task is not None:
            await spy_task
            result["profile_drain"] = summarise_raw(
                drain_raw, min(args.profile_seconds, args.drain)
            )
        secs = time.perf_counter() - t0
        result["drain"] = {
            "seconds": round(secs, 2),
            "pending_at_start": int(start["pending"]),
            "pending_at_end": int(end["pending"]),
            "applied": int(end["done"] - start["done"]),
            "applied_per_s": round((end["done"] - start["done"]) / secs, 1) if secs else 0.0,
            "server_cpu_pct": round(100 * (end["server_cpu_s"] - start["server_cpu_s"]) / secs, 1)
            if secs
            else 0.0,
            "failed_rows": int(end["failed"]),
        }
        result["remote_actor_gets"] = dict(hosts.gets)
        result["rss_mb_at_end"] = round(server.rss_mb(), 1)
        for session in sessions:
            await session.close()
        sessions = []
        await asyncio.to_thread(server.stop)
        db.close()
        db = None

        if args.compare_seconds > 0 and args.workers == 1:
            # The same instance and port under today's multi-process option.
            label = "as is, steelyard serve --workers 2"
            server = Server(instance, port, RESULTS / "inbox-server-workers2.log")
            started.append(server)
            await asyncio.to_thread(server.start, 30.0, 2)
            db = open_ro(load_config(instance).db_path)
            sessions = await open_senders(args.senders)
            await asyncio.gather(*(post_one(s, url, *pool.take()) for s in sessions))
            await asyncio.to_thread(wait_for_quiet, args.quiet_wait, [server.pid])
            compared = await run_phase(
                label, sessions, url, pool, args.compare_seconds, db, [server.pid]
            )
            result["compared_http"] = [compared.summary()]
            for session in sessions:
                await session.close()
            sessions = []
            for proc in reversed(started):
                await asyncio.to_thread(proc.stop)
            db.close()
            db = None
            print(
                f"  {label}: {compared.summary()['accepted_per_s']} accepted/s, "
                f"{compared.summary()['applied_per_s']} applied/s",
                file=sys.stderr,
                flush=True,
            )

        if micro_dirs is not None:
            print("  micro-benchmarks ...", file=sys.stderr, flush=True)
            result["quiet_before_micro"] = await asyncio.to_thread(wait_for_quiet, args.quiet_wait)
            pipe_dir, sql_dir = micro_dirs
            pipe_host = load_config(pipe_dir).host
            await allow_hosts(pipe_dir, (f"127.0.0.1:{p}" for p in host_ports))
            micro: dict[str, Any] = {"errors": {}}

            async def part(name: str, make: Callable[[], Awaitable[Any]]) -> None:
                # One failing micro-benchmark (say, server code mid-edit) loses only itself.
                try:
                    micro[name] = await make()
                except Exception as exc:
                    micro["errors"][name] = f"{type(exc).__name__}: {exc}"
                    print(f"  micro-benchmark {name} failed: {exc!r}", file=sys.stderr)

            await part("steps_ms", lambda: asyncio.to_thread(micro_steps, actors, pipe_host))
            await part(
                "sqlite_ms", lambda: asyncio.to_thread(micro_sqlite, sql_dir, actors, pipe_host)
            )
            await part("database_ms", lambda: micro_database(sql_dir, actors, pipe_host))
            await part(
                "pipeline_in_process",
                lambda: micro_pipeline(pipe_dir, actors, pipe_host, args.senders),
            )
            empty: dict[str, Any] = {}
            for stack in ["hypercorn"] + (["uvicorn"] if uvicorn_available() else []):
                try:
                    empty[stack] = await micro_web_stack(pool, args.senders, 5.0, stack)
                except Exception as exc:
                    micro["errors"][f"empty_quart_{stack}"] = f"{type(exc).__name__}: {exc}"
            micro["empty_quart"] = empty
            result["micro"] = micro
    finally:
        for session in sessions:
            await session.close()
        if db is not None:
            db.close()
        for proc in reversed(started):
            await asyncio.to_thread(proc.stop)
        await hosts.stop()
    return result


def targets(measured: dict[str, Any]) -> dict[str, Any]:
    return {
        "accepted (202) per second": check(
            measured["accepted_per_s"], TARGETS["accepted_per_s"], below=False
        ),
        "applied per second": check(
            measured["applied_per_s"], TARGETS["applied_per_s"], below=False
        ),
        "p99 time to 202 (ms)": check(measured["p99_ms"], TARGETS["p99_ms"], below=True),
    }


def report(result: dict[str, Any]) -> None:
    m = result["measured"]
    ps = result["presign"]
    print()
    print(f"Steelyard shared-inbox benchmark  ({result['machine']})")
    print(
        f"  {result['actors']} remote actors on {result['hosts']} allowed loopback hosts, "
        f"{m['senders']} senders, {m['seconds']:.1f} s measured; activity body "
        f"{ps['avg_body_bytes']} B"
    )
    quiet = result.get("quiet_before_measured", {})
    print(
        f"  1-min load average before the run: {result['load_average_1min_before']}; other "
        f"processes before measuring: {quiet.get('others_cpu_pct_before', '?')}% of a core "
        f"(waited {quiet.get('waited_s', 0)} s); see 'others CPU' below"
    )
    print(
        f"  pre-signed {ps['count']:,} activities in {ps['wall_s']} s on {ps['processes']} "
        f"processes: build {ps['build_ms_each']} ms + sign {ps['sign_ms_each']} ms each"
    )
    print()
    phases = (
        [m]
        + ([result["profiled"]] if "profiled" in result else [])
        + result.get("compared_http", [])
    )
    table(
        [
            "phase",
            "202/s",
            "applied/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "non-202",
            "backlog",
            "srv CPU",
            "CPU ms/202",
            "gen CPU",
            "gen ms/req",
            "others CPU",
        ],
        [
            [
                p["phase"],
                p["accepted_per_s"],
                p["applied_per_s"],
                p["p50_ms"],
                p["p90_ms"],
                p["p99_ms"],
                p["max_ms"],
                sum(p["non_202"].values()),
                p["pending_at_end"],
                f"{p['server_cpu_pct']:.0f}%",
                p["server_cpu_ms_per_202"],
                f"{p['generator_cpu_pct']:.0f}%",
                p["generator_cpu_ms_per_request"],
                f"{p['other_processes_cpu_pct']:.0f}%",
            ]
            for p in phases
        ],
    )
    print(f"  over the half-seconds when other processes used < {QUIET_PCT:.0f}% of a core:")
    table(
        ["phase", "quiet s", "202/s", "applied/s"],
        [
            [
                p["phase"],
                f"{q['quiet_seconds']} of {q['of_seconds']}",
                q["accepted_per_s"] if q["accepted_per_s"] is not None else "-",
                q["applied_per_s"] if q["applied_per_s"] is not None else "-",
            ]
            for p in phases
            if (q := p.get("quiet_intervals"))
        ],
        indent="    ",
    )
    if m["non_202"]:
        print(f"  non-202 answers by status: {m['non_202']}")
    print(
        f"  rows stored in window {m['rows_stored']:,} (202s {m['accepted_202']:,}); "
        f"signed on the fly {m['signed_on_the_fly']}; remote actor GETs "
        f"{result['remote_actor_gets']}"
    )
    d = result["drain"]
    print(
        f"  drain (no inbound load): {d['applied_per_s']} applied/s over {d['seconds']} s, "
        f"backlog {d['pending_at_start']:,} -> {d['pending_at_end']:,}, server CPU "
        f"{d['server_cpu_pct']:.0f}%, failed rows {d['failed_rows']}"
    )
    for key, title in (
        ("profile_load", "py-spy under load"),
        ("profile_drain", "py-spy while draining (dispatcher only)"),
    ):
        prof = result.get(key)
        if not prof:
            continue
        print()
        print(f"  {title}: share of wall-clock time per thread")
        writer = prof.get("writer")
        for name in ("main (event loop)", writer):
            if not name or name not in prof:
                continue
            label = "SQLite writer thread" if name == writer else name
            shares = prof[name]["share_pct"]
            print(f"    {label}:")
            for what, share in list(shares.items())[:12]:
                print(f"      {share:5.1f}%  {what}")
    micro = result.get("micro")
    if micro:
        print()
        print("  per-step cost, in isolation (ms per activity; 'alone' = the ceiling if it were")
        print("  the only cost, on one core)")
        rows = []
        for name, ms in (
            micro.get("steps_ms", {}) | micro.get("sqlite_ms", {}) | micro.get("database_ms", {})
        ).items():
            if name.endswith("bytes"):
                continue
            rows.append([name, ms, 1000 / ms if ms else 0.0])
        table(["step", "ms", "alone /s"], rows, indent="    ")
        print()
        print(
            "  whole pipeline in-process (InboxReceiver.receive, no HTTP), dispatcher alongside;"
            " then the"
        )
        print("  dispatcher alone on the rest of the backlog, with synchronous FULL and NORMAL:")
        pipe = micro.get("pipeline_in_process", {})
        table(
            [
                "variant",
                "receive ms (1 at a time)",
                f"receive/s ({m['senders']} conc.)",
                "applied/s meanwhile",
                "CPU ms/receive",
                "apply ms (alone)",
                "apply CPU ms",
                "apply/s (alone)",
            ],
            [
                [
                    label,
                    v["receive_ms_sequential"],
                    v["receive_per_s_concurrent"],
                    v["applied_per_s_during"],
                    v["receive_cpu_ms_each_concurrent"],
                    v["apply_ms_each_alone"],
                    v["apply_cpu_ms_each_alone"],
                    v["apply_per_s_alone"],
                ]
                for label, v in pipe.items()
            ],
            indent="    ",
        )
        print()
        print(
            f"  empty Quart route (reads the body, answers 202), same generator, "
            f"{m['senders']} senders:"
        )
        table(
            ["server", "req/s", "p50 ms", "p99 ms", "server CPU", "CPU ms/req", "gen ms/req"],
            [
                [
                    stack,
                    e["accepted_per_s"],
                    e["p50_ms"],
                    e["p99_ms"],
                    f"{e['server_cpu_pct']:.0f}%",
                    e["server_cpu_ms_per_202"],
                    e["generator_cpu_ms_per_request"],
                ]
                for stack, e in micro.get("empty_quart", {}).items()
            ],
            indent="    ",
        )
        for name, error in micro.get("errors", {}).items():
            print(f"  micro-benchmark {name} FAILED: {error}")
    print()
    print_targets(result["targets"])
    print(
        f"  results: {RESULTS / 'inbox.json'}; flame graph: {RESULTS / 'inbox.svg'}; "
        f"server log: {RESULTS / 'inbox-server.log'}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Steelyard's shared inbox with signed Create{Note} activities "
        "from real (loopback) remote actors."
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="measured seconds of load (default 30)"
    )
    parser.add_argument(
        "--senders",
        type=int,
        default=50,
        help="concurrent senders, one connection each (default 50)",
    )
    parser.add_argument("--hosts", type=int, default=3, help="allowed remote hosts (default 3)")
    parser.add_argument("--actors", type=int, default=10, help="remote actors (default 10)")
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="seconds of extra load profiled with py-spy, 0 for none (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="steelyard serve --workers N for the measured server (default 1;"
        " with 1, a 10 s comparison run with 2 follows the measurement)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="at most this many seconds to watch the backlog drain (default 30)",
    )
    parser.add_argument(
        "--presign",
        type=int,
        default=None,
        help=f"activities to pre-sign (default {PRESIGN_RATE} per second of "
        "load); more are signed on the fly",
    )
    parser.add_argument(
        "--no-micro", dest="micro", action="store_false", help="skip the per-step micro-benchmarks"
    )
    add_quiet_wait(parser, before="before measuring")
    add_instance_options(parser, kept="the temporary instances (their path is printed)")
    parser.add_argument(
        "--compare-seconds",
        "--what-if-seconds",
        type=float,
        default=10.0,
        dest="compare_seconds",
        help="with --workers 1: seconds of the same load against "
        "'steelyard serve --workers 2' afterwards; 0 for none "
        "(default 10)",
    )
    parser.add_argument("--serve-empty", nargs=2, metavar=("PORT", "STACK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_empty is None and (
        args.seconds <= 0
        or not 1 <= args.senders <= 1000
        or not 1 <= args.hosts <= 50
        or not 1 <= args.actors <= 1000
        or args.seconds > 3600
        or args.drain < 0
        or args.profile_seconds < 0
        or args.compare_seconds < 0
        or not 1 <= args.workers <= 16
    ):
        parser.error(
            "need 0 < --seconds <= 3600, 1 <= --senders <= 1000, "
            "1 <= --hosts <= 50, 1 <= --actors <= 1000, --drain >= 0"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_empty is not None:
        serve_empty(int(args.serve_empty[0]), args.serve_empty[1])
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="steelyard-bench-inbox-", dir="/tmp"))
    instance = args.instance or root / "instance"
    keep = args.keep or args.instance is not None
    try:
        port = free_port()
        host_ports = [free_port() for _ in range(args.hosts)]
        print(
            f"Instance {instance} on 127.0.0.1:{port}; remote hosts {host_ports}",
            file=sys.stderr,
            flush=True,
        )
        init_instance(instance, port, "Steelyard inbox bench")
        micro_dirs = None
        if args.micro:
            micro_dirs = (root / "micro-pipeline", root / "micro-sqlite")
            for d in micro_dirs:
                init_instance(d, free_port(), "Steelyard micro bench")
        actors = make_actors(host_ports, args.actors)
        run = secrets.token_hex(4)
        planned = (
            args.presign
            if args.presign is not None
            else int(
                PRESIGN_RATE * (args.seconds + args.profile_seconds + 3 + args.compare_seconds)
            )
            + 4 * args.senders
            + 2 * len(actors)
        )
        print(f"Pre-signing {planned:,} activities ...", file=sys.stderr, flush=True)
        presigned = presign(actors, f"http://127.0.0.1:{port}/inbox", run, planned)
        result: dict[str, Any] = {
            "machine": machine(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "hosts": args.hosts,
            "actors": args.actors,
            "load_average_1min_before": load_average(),
        }
        result.update(
            asyncio.run(bench(args, instance, port, host_ports, actors, presigned, run, micro_dirs))
        )
        result["presign"] = presigned
        result["targets"] = targets(result["measured"])
    finally:
        if keep:
            print(f"instances kept in {root if not args.instance else instance}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    (RESULTS / "inbox.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
