"""The ``steelyard`` command end to end: init, users, errors, serve, sign in over HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from federation.signatures import generate_rsa_keypair, sign_request
from tests.support.processes import ServerProcess, free_port, run_cli

pytestmark = pytest.mark.slow
PASSWORD = "a long enough secret 42"


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["init", "--help"],
        ["serve", "--help"],
        ["user", "--help"],
        ["user", "create", "--help"],
        ["user", "list", "--help"],
        ["user", "deactivate", "--help"],
        ["backup", "--help"],
        ["restore", "--help"],
    ):
        result = run_cli(*args)
        assert result.returncode == 0, args
        assert "usage:" in result.stdout


def test_init_creates_private_instance_and_refuses_overwrite(tmp_path: Path) -> None:
    inst = tmp_path / "acme"
    result = run_cli(
        "--instance", str(inst), "init", "--url", "https://social.acme.example", "--name", "ACME"
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(inst.stat().st_mode) == 0o700
    for name in ("config.toml", "secret_key", "steelyard.sqlite3"):
        assert stat.S_IMODE((inst / name).stat().st_mode) == 0o600, name
    assert (inst / "uploads").is_dir() and (inst / "backups").is_dir()
    config = (inst / "config.toml").read_text()
    again = run_cli("--instance", str(inst), "init", "--url", "https://other.example")
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr
    assert (inst / "config.toml").read_text() == config


@pytest.mark.parametrize(
    "url",
    [
        "ftp://acme.example",
        "http://acme.example",
        "https://",
        "not a url",
        "https://user:pw@acme.example",
        "https://acme.example/sub",
    ],
)
def test_init_with_bad_url_writes_nothing(tmp_path: Path, url: str) -> None:
    inst = tmp_path / "bad"
    result = run_cli("--instance", str(inst), "init", "--url", url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("steelyard: ")
    assert not inst.exists()


def test_commands_on_missing_instance_fail_clearly(tmp_path: Path) -> None:
    result = run_cli("--instance", str(tmp_path / "nope"), "user", "list")
    assert result.returncode == 1
    assert "steelyard init" in result.stderr


def test_user_commands(tmp_path: Path) -> None:
    inst = str(tmp_path / "inst")
    assert run_cli("--instance", inst, "init", "--url", "http://127.0.0.1:8000").returncode == 0
    made = run_cli(
        "--instance", inst, "user", "create", "root1", "--admin", "--display-name", "Root One"
    )
    assert made.returncode == 0, made.stderr
    assert re.search(r"One-time password for root1: \S{12,}", made.stdout)
    taken = run_cli(
        "--instance", inst, "user", "create", "ROOT1", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert taken.returncode == 1 and "already taken" in taken.stderr
    weak = run_cli(
        "--instance", inst, "user", "create", "dave", "--password-stdin", stdin="short\n"
    )
    assert weak.returncode == 1 and "at least 10" in weak.stderr
    bad_name = run_cli(
        "--instance", inst, "user", "create", "bad name", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert bad_name.returncode == 1
    listing = run_cli("--instance", inst, "user", "list")
    assert "root1\tRoot One\tadmin" in listing.stdout
    assert "dave" not in listing.stdout
    off = run_cli("--instance", inst, "user", "deactivate", "root1")
    assert off.returncode == 0
    assert "deactivated" in run_cli("--instance", inst, "user", "list").stdout
    missing = run_cli("--instance", inst, "user", "deactivate", "ghost")
    assert missing.returncode == 1 and "No user named" in missing.stderr


def test_a_generated_password_is_for_one_sign_in(tmp_path: Path) -> None:
    """Printed on a console, it must be replaced at the first sign-in; a password typed by
    the operator on standard input is theirs to keep."""
    inst = str(tmp_path / "inst")
    assert run_cli("--instance", inst, "init", "--url", "http://127.0.0.1:8000").returncode == 0
    assert run_cli("--instance", inst, "user", "create", "gen").returncode == 0
    typed = run_cli(
        "--instance", inst, "user", "create", "own", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert typed.returncode == 0

    def must_change() -> dict[str, int]:
        with sqlite3.connect(f"file:{inst}/steelyard.sqlite3?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT a.username, ac.must_change_password FROM accounts ac"
                " JOIN actors a ON a.id = ac.actor_id"
            ).fetchall()
        return {str(name): int(flag) for name, flag in rows}

    assert must_change() == {"gen": 1, "own": 0}
    assert run_cli("--instance", inst, "user", "password", "own").returncode == 0
    assert must_change()["own"] == 1
    again = run_cli(
        "--instance", inst, "user", "password", "own", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert again.returncode == 0 and must_change()["own"] == 0


async def test_serve_and_sign_in_over_http(tmp_path: Path) -> None:
    inst = tmp_path / "live"
    port = free_port()
    assert (
        run_cli("--instance", str(inst), "init", "--url", f"http://127.0.0.1:{port}").returncode
        == 0
    )
    assert (
        run_cli(
            "--instance",
            str(inst),
            "user",
            "create",
            "erin",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        ).returncode
        == 0
    )
    partner = f"127.0.0.1:{free_port()}"  # allowed, and down
    allowed = run_cli(
        "--instance", str(inst), "federation", "allow", partner, "--relation", "partner"
    )
    assert allowed.returncode == 0, allowed.stderr
    server = ServerProcess(inst, port, tmp_path / "server.log")
    server.start()
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        # unsafe=True: aiohttp drops cookies of IP-address hosts otherwise.
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as http:
            async with http.get(f"{server.base}/login") as page:
                html = await page.text()
            match = re.search(r'name="csrf_token" value="([^"]+)"', html)
            assert match
            async with http.post(
                f"{server.base}/login",
                data={"username": "erin", "password": PASSWORD, "csrf_token": match[1]},
                allow_redirects=False,
            ) as signed_in:
                assert signed_in.status == 302
                cookie = signed_in.headers.get("Set-Cookie", "")
                assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
            async with http.get(f"{server.base}/") as home:
                assert home.status == 200
                assert "What are you working on?" in await home.text()
            # The server's own log lines reach its output (a service manager's journal):
            # here, why a partner's request was refused.
            body = json.dumps(
                {
                    "@context": "https://www.w3.org/ns/activitystreams",
                    "id": f"http://{partner}/activities/1",
                    "type": "Follow",
                    "actor": f"http://{partner}/users/pat",
                    "object": f"{server.base}/users/erin",
                }
            ).encode()
            private_pem, _ = generate_rsa_keypair()
            key_id = f"http://{partner}/users/pat#main-key"
            headers = sign_request(
                "POST",
                f"{server.base}/inbox",
                key_id=key_id,
                private_key_pem=private_pem,
                body=body,
                now=time.time(),
                extra_headers={"Content-Type": "application/activity+json"},
            )
            async with http.post(f"{server.base}/inbox", data=body, headers=headers) as refused:
                assert refused.status == 401
    finally:
        server.stop()
    logged = (tmp_path / "server.log").read_text()
    assert f"INFO federation.inbox: key {key_id} could not be resolved" in logged, logged


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_serve_with_two_workers_and_kill_9_leaves_no_orphans(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    inst = tmp_path / "multi"
    port = free_port()
    assert (
        run_cli("--instance", str(inst), "init", "--url", f"http://127.0.0.1:{port}").returncode
        == 0
    )
    assert (
        run_cli(
            "--instance",
            str(inst),
            "user",
            "create",
            "erin",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        ).returncode
        == 0
    )
    with (tmp_path / "multi.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on by polling
            [
                sys.executable,
                "-m",
                "server.cli",
                "--instance",
                str(inst),
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(100):
            if _port_open(port):
                break
            await asyncio.sleep(0.1)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10), cookie_jar=jar
        ) as http:
            for _ in range(50):  # both processes may answer; all must work
                async with http.get(f"http://127.0.0.1:{port}/login") as page:
                    assert page.status == 200
                    html = await page.text()
            token = re.search(r'name="csrf_token" value="([^"]+)"', html)
            assert token
            async with http.post(
                f"http://127.0.0.1:{port}/login",
                data={"username": "erin", "password": PASSWORD, "csrf_token": token[1]},
                allow_redirects=False,
            ) as signed_in:
                assert signed_in.status == 302
            for _ in range(10):
                async with http.get(f"http://127.0.0.1:{port}/") as home:
                    assert home.status == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # The workers die with their parent: nothing is left holding the port.
    for _ in range(50):
        if not _port_open(port):
            break
        await asyncio.sleep(0.1)
    assert not _port_open(port)


async def _sign_in(http: aiohttp.ClientSession, base: str, username: str) -> str:
    """Signs in; returns the CSRF token of the home page."""
    async with http.get(f"{base}/login") as page:
        match = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert match
    async with http.post(
        f"{base}/login",
        data={"username": username, "password": PASSWORD, "csrf_token": match[1]},
        allow_redirects=False,
    ) as signed_in:
        assert signed_in.status == 302
    async with http.get(f"{base}/") as home:
        found = re.search(r'name="csrf_token" value="([^"]+)"', await home.text())
    assert found
    return found[1]


async def test_backup_while_serving_restores_to_a_working_instance(tmp_path: Path) -> None:
    """The admin's drill: back up the running instance, restore it elsewhere, serve the copy and
    find what was posted before the backup (and not what came after)."""
    inst = tmp_path / "live"
    port = free_port()
    assert (
        run_cli("--instance", str(inst), "init", "--url", f"http://127.0.0.1:{port}").returncode
        == 0
    )
    created = run_cli(
        "--instance", str(inst), "user", "create", "erin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    server = ServerProcess(inst, port, tmp_path / "server.log")
    server.start()
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            csrf = await _sign_in(http, server.base, "erin")
            for text in ("Before the backup: quarterly numbers", "Second before the backup"):
                async with http.post(
                    f"{server.base}/posts",
                    data={"text": text, "visibility": "internal", "csrf_token": csrf},
                    allow_redirects=False,
                ) as posted:
                    assert posted.status == 303, await posted.text()
            backup = run_cli("--instance", str(inst), "backup", "--to", str(tmp_path / "out"))
            assert backup.returncode == 0, backup.stderr
            async with http.post(
                f"{server.base}/posts",
                data={"text": "After the backup", "visibility": "internal", "csrf_token": csrf},
                allow_redirects=False,
            ) as posted:
                assert posted.status == 303
    finally:
        server.stop()
    assert "Backup written:" in backup.stdout and "encrypt" in backup.stdout
    [archive] = (tmp_path / "out").glob("steelyard-backup-*.tar")
    copy = tmp_path / "copy"
    restored = run_cli("--instance", str(copy), "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert f"Restored http://127.0.0.1:{port}" in restored.stdout
    again = run_cli("--instance", str(copy), "restore", str(archive))
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"steelyard: {copy} already holds an instance; refusing to overwrite it."
    )
    # The copy answers at the instance's own URL (its identity), so it is served on that port.
    server = ServerProcess(copy, port, tmp_path / "copy.log")
    server.start()
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            await _sign_in(http, server.base, "erin")
            async with http.get(f"{server.base}/") as home:
                page = await home.text()
    finally:
        server.stop()
    assert "Before the backup: quarterly numbers" in page
    assert "Second before the backup" in page
    assert "After the backup" not in page
