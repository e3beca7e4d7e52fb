"""Helpers shared by the federation benchmarks (``bench/inbox.py``, ``bench/fanout.py``).

Everything here talks to 127.0.0.1 only and stops only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import html
import http.client
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
STEELYARD = ROOT / ".venv" / "bin" / "steelyard"
PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-Secret-2718"
AP_JSON = "application/activity+json"

_CSRF_INPUT = re.compile(r"<input[^>]*name=\"csrf_token\"[^>]*>")
_VALUE = re.compile(r"value=\"([^\"]*)\"")


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, speed {python_speed():.0f} M loop steps/s"
    )


def python_speed() -> float:
    """Millions of simple pure-Python loop steps per second (best of 3): the same '2 cores'
    differ from day to day (other tenants, clock), and every figure here scales with this."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return 2.0 / best


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_steelyard(instance: Path, *args: str, stdin: str | None = None) -> None:
    """Run one ``steelyard`` command on *instance*; raise with its output if it fails."""
    done = subprocess.run(
        [str(STEELYARD), "--instance", str(instance), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"steelyard {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def init_instance(instance: Path, port: int, name: str) -> None:
    """``steelyard init`` a development instance at ``http://127.0.0.1:PORT``."""
    run_steelyard(instance, "init", "--url", f"http://127.0.0.1:{port}", "--name", name)


def create_user(instance: Path, username: str, *, admin: bool = False) -> None:
    """``steelyard user create`` with the benchmark password."""
    run_steelyard(
        instance,
        "user",
        "create",
        username,
        "--display-name",
        username.capitalize(),
        *(["--admin"] if admin else []),
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of *sorted* values (0 when empty)."""
    if not values:
        return 0.0
    rank = max(1, -(-len(values) * p // 100))
    return float(values[int(rank) - 1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree(pid: int) -> list[int]:
    """*pid* and all its descendants (``steelyard serve --workers N`` forks workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of *pid* and its living descendants (a child that exited is not counted)."""
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
    return total


def open_ro(db_path: Path) -> sqlite3.Connection:
    """A read-only connection to an instance database that a server is using (WAL)."""
    conn = sqlite3.connect(
        f"file:{db_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class Server:
    """``steelyard serve`` as a child process; stopped by the PID we started, never by name."""

    def __init__(self, instance: Path, port: int, log: Path) -> None:
        self.instance, self.port, self.log = instance, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, workers: int = 1) -> float:
        """Spawn and wait for the first 200 on ``GET /login``; return the seconds it took."""
        extra = ["--workers", str(workers)] if workers != 1 else []
        return self.spawn(
            [
                str(STEELYARD),
                "--instance",
                str(self.instance),
                "serve",
                "--bind",
                f"127.0.0.1:{self.port}",
                *extra,
            ],
            "/login",
            timeout,
        )

    def spawn(self, argv: list[str], ready_path: str, timeout: float = 30.0) -> float:
        with self.log.open("wb") as log:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", ready_path)
                if conn.getresponse().status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.01)
        raise RuntimeError(f"server did not answer GET {ready_path} in time")

    def spawn_until_log(self, argv: list[str], text: str, timeout: float = 30.0) -> float:
        """Spawn a process that serves nothing; wait until its output shows *text*."""
        with self.log.open("wb") as log:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        while time.perf_counter() < started + timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited:\n{self.log.read_text()[-3000:]}")
            if text in self.log.read_text(errors="replace"):
                return time.perf_counter() - started
            time.sleep(0.02)
        raise RuntimeError(f"process did not print {text!r} in time")

    def cpu_seconds(self) -> float:
        """CPU seconds of the process and its worker processes."""
        return tree_cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return sum(rss_mb(p) for p in tree(self.pid))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def start_site(app: web.Application, port: int) -> web.AppRunner:
    """Serve an aiohttp app on 127.0.0.1:*port*; call ``runner.cleanup()`` to stop it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner


def csrf_from(page: str) -> str:
    tag = _CSRF_INPUT.search(page)
    value = _VALUE.search(tag.group(0)) if tag else None
    if value is None:
        raise RuntimeError("no csrf_token input in the page")
    return html.unescape(value[1])


async def sign_in(session: aiohttp.ClientSession, base: str, name: str) -> None:
    async with session.get(f"{base}/login") as resp:
        page = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"GET /login answered {resp.status}")
    form = {"username": name, "password": PASSWORD, "csrf_token": csrf_from(page)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as resp:
        if resp.status not in (302, 303):
            raise RuntimeError(f"sign-in of {name} answered {resp.status}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> None:
    """Print rows as a plain table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        line = "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        )
        print(indent + line.rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def check(value: float, target: float, *, below: bool) -> dict[str, Any]:
    met = value < target if below else value >= target
    return {"value": round(value, 2), "target": f"{'<' if below else '>='} {target:g}", "met": met}


def print_targets(targets: dict[str, dict[str, Any]]) -> None:
    print("  targets:")
    for name, t in targets.items():
        verdict = "ok  " if t["met"] else "MISS"
        print(f"    {verdict} {name:<34} {t['value']:>10} (target {t['target']})")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (``/proc/stat``), for noise checks."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def others_busy_pct(seconds: float, pids: Sequence[int]) -> float:
    """CPU % (of one core) used over *seconds* by processes other than us and *pids*."""

    def ours() -> float:
        return time.process_time() + sum(tree_cpu_seconds(p) for p in pids)

    all0, ours0 = machine_busy_seconds(), ours()
    time.sleep(seconds)
    return 100 * ((machine_busy_seconds() - all0) - (ours() - ours0)) / seconds


def wait_for_quiet(
    max_wait: float, pids: Sequence[int] = (), threshold_pct: float = 15.0
) -> dict[str, float]:
    """Wait (at most *max_wait* s) until other processes use < *threshold_pct* of a core.

    The machine may be shared (other people's tests): a benchmark run next to them measures
    them too. Returns how long we waited and the last reading; never raises.
    """
    started = time.perf_counter()
    reading = others_busy_pct(1.0, pids)
    announced = False
    while reading >= threshold_pct and time.perf_counter() - started < max_wait:
        if not announced:
            print(
                f"  waiting up to {max_wait:.0f} s for other processes to go quiet "
                f"(now {reading:.0f}% of a core)",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        reading = others_busy_pct(2.0, pids)
    return {
        "waited_s": round(time.perf_counter() - started, 1),
        "others_cpu_pct_before": round(reading, 1),
    }


def add_instance_options(
    parser: argparse.ArgumentParser,
    *,
    instance_to: argparse._ActionsContainer | None = None,
    create: str = "create the instance in DIR (must not exist) and keep it",
    kept: str = "the temporary instance (its path is printed)",
) -> None:
    """``--instance DIR`` (on *instance_to*, e.g. a mutually exclusive group) and ``--keep``:
    where the benchmark's instance lives and whether it outlives the run."""
    (instance_to or parser).add_argument("--instance", type=Path, metavar="DIR", help=create)
    parser.add_argument("--keep", action="store_true", help=f"keep {kept}")


def add_quiet_wait(parser: argparse.ArgumentParser, *, before: str) -> None:
    """``--quiet-wait S``: how long to wait for the machine to be quiet *before* measuring."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help=f"{before}, wait at most this many seconds for other "
        "processes to use < 15%% of a core (default 60; 0 = don't wait)",
    )
