"""Helpers for federation tests between real server processes on 127.0.0.1.

- :func:`new_instance`: ``steelyard init`` a development instance (``http://127.0.0.1:PORT``),
  create users and allow peers, all through the CLI.
- :class:`Browser`: a signed-in person driving an instance's web UI over HTTP with aiohttp
  (session cookie, CSRF token from the page, the same forms a browser posts).
- :func:`rows`: read-only SQL against an instance's database while its server runs (WAL:
  readers never block the server's writer).
- :func:`wait_for`: a bounded poll; every wait in these tests has a deadline.
- :class:`Processes`: every process a test started, stopped by PID at the end, also on failure.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from tests.support.processes import ServerProcess, free_port, run_cli

PASSWORD = "federation processes password 1"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Instance:
    """A development instance folder and its (re)startable server process."""

    name: str
    path: Path
    port: int
    server: ServerProcess

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    @property
    def db(self) -> Path:
        return self.path / "steelyard.sqlite3"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = run_cli("--instance", str(self.path), *args, stdin=stdin)
        if result.returncode != 0:
            raise AssertionError(
                f"steelyard {' '.join(args)} failed on {self.name}: {result.stderr.strip()}"
            )
        return result.stdout

    def create_user(self, username: str, display_name: str = "") -> None:
        self.cli(
            "user",
            "create",
            username,
            "--display-name",
            display_name or username.capitalize(),
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )

    def allow(self, host: str, relation: str = "partner") -> None:
        self.cli("federation", "allow", host, "--relation", relation)


def new_instance(root: Path, name: str, processes: Processes, port: int | None = None) -> Instance:
    port = port or free_port()
    path = root / name
    result = run_cli(
        "--instance", str(path), "init", "--url", f"http://127.0.0.1:{port}", "--name", name
    )
    if result.returncode != 0:
        raise AssertionError(f"steelyard init failed for {name}: {result.stderr.strip()}")
    server = ServerProcess(path, port, root / f"{name}.log")
    instance = Instance(name, path, port, server)
    processes.add(server)
    return instance


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Processes:
    """Everything a test started; :meth:`stop_all` stops each by its own PID."""

    started: list[_Stoppable] = field(default_factory=list)

    def add(self, process: _Stoppable) -> None:
        self.started.append(process)

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for process in reversed(self.started):
            try:
                process.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    group = Processes()
    try:
        yield group
    finally:
        group.stop_all()


def rows(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run a read-only query against a live instance's database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(row) for row in conn.execute(sql, tuple(params)).fetchall()]
    finally:
        conn.close()


async def wait_for(
    check: Callable[[], Any],
    *,
    within: float,
    what: str,
    interval: float = 0.2,
    diagnose: Callable[[], str] | None = None,
) -> Any:
    """Poll *check* (sync or async) until it returns something truthy, and return that;
    fail after *within* seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            detail = diagnose() if diagnose else ""
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}. {detail}")
        await asyncio.sleep(interval)


class Browser:
    """One signed-in person on one instance, using the web UI's forms over HTTP."""

    def __init__(self, instance: Instance, username: str) -> None:
        self.instance = instance
        self.username = username
        # unsafe=True: aiohttp drops cookies of IP-address hosts otherwise.
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        self._csrf: str | None = None

    async def __aenter__(self) -> Browser:
        await self.sign_in()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    def _url(self, path: str) -> str:
        return self.instance.base + path

    async def get(self, path: str) -> str:
        async with self._http.get(self._url(path), allow_redirects=True) as response:
            text = await response.text()
            assert response.status == 200, f"GET {path}: {response.status} {text[:300]}"
        found = _CSRF.search(text)
        if found:
            self._csrf = html.unescape(found[1])
        return text

    async def post_form(self, path: str, data: dict[str, str]) -> str:
        """POST a form like a browser; return the Location it redirects to (303)."""
        if self._csrf is None:
            await self.get("/")
        assert self._csrf is not None
        async with self._http.post(
            self._url(path), data={**data, "csrf_token": self._csrf}, allow_redirects=False
        ) as response:
            body = await response.text()
            assert response.status in (302, 303), f"POST {path}: {response.status} {body[:500]}"
            return response.headers.get("Location", "")

    async def sign_in(self) -> None:
        await self.get("/login")
        assert self._csrf is not None
        async with self._http.post(
            self._url("/login"),
            data={"username": self.username, "password": PASSWORD, "csrf_token": self._csrf},
            allow_redirects=False,
        ) as response:
            assert response.status == 302, f"sign-in as {self.username}: {response.status}"
        self._csrf = None
        await self.get("/")  # the signed-in session's CSRF token

    async def find(self, handle: str) -> str:
        """Look up ``@name@host`` through the People search (fetches a remote person)."""
        page = await self.get("/people?q=" + quote(handle, safe=""))
        assert 'role="alert"' not in page, f"looking up {handle}: {_alert(page)}"
        return page

    async def follow(self, handle: str) -> None:
        """Follow ``name`` (a colleague) or ``name@host`` (someone on a partner instance)."""
        if "@" in handle.lstrip("@"):
            await self.find("@" + handle.lstrip("@"))
        await self.post_form(f"/people/{quote(handle.lstrip('@'), safe='@:')}/follow", {})

    async def publish(self, text: str, visibility: str) -> None:
        location = await self.post_form(
            "/posts", {"text": text, "visibility": visibility, "next": "/"}
        )
        page = await self.get(location or "/")
        assert "Posted." in page, f"posting failed: {_alert(page) or page[:300]}"

    async def home(self) -> str:
        return await self.get("/")


def _alert(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>(.*?)<', page, re.S)
    return html.unescape(found[1].strip()) if found else ""
