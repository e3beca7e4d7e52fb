"""bovine-herd, a third-party ActivityPub server from PyPI, as a peer on 127.0.0.1.

Recipe and facts: shared/PEERS.md. This module runs in Steelyard's interpreter; everything
of bovine's runs in a venv of its own (:func:`ensure_venv`), created with that venv's pip in
``tests/artifacts/bovine-venv`` (git-ignored) and reused while the pins are unchanged. No
failure here is a skip: a peer that cannot be installed or started fails the test with pip's
or the server's own words.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
VENV = REPO / "tests" / "artifacts" / "bovine-venv"
# Exact pins: the project said development "will probably be discontinued" (PEERS.md).
# http-sf is not pinned: only bovine's RFC 9421 *verification* needs 1.0.7, and we sign
# with draft-cavage, which bovine verifies with its own code.
PINS = ("bovine-herd==0.5.19", "bovine-tool==0.5.6")
_STAMP = VENV / ".steelyard-pins"
PIP_TIMEOUT = 600


class PeerError(AssertionError):
    """bovine could not be installed, started or driven (fails the test, with details)."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """The bovine venv's python, creating the venv and installing the pins if needed.

    Cached between runs (a stamp file records the pins); a file lock serialises concurrent
    test processes. Raises :class:`PeerError` with pip's output when installing fails.
    """
    VENV.parent.mkdir(parents=True, exist_ok=True)
    lock_path = VENV.parent / "bovine-venv.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = "\n".join(PINS) + "\n"
        python = venv_python()
        if python.exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        _run_setup([sys.executable, "-m", "venv", str(VENV)], "creating the bovine venv")
        _run_setup(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *PINS],
            f"installing {' '.join(PINS)} from PyPI into {VENV}",
        )
        _run_setup(
            [str(python), "-c", "import bovine_herd, bovine_tool, bovine"],
            "importing bovine after installing it",
        )
        _STAMP.write_text(wanted)
        return python


def _run_setup(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(
            command,
            # Importing bovine creates its JSON-LD cache in the working directory.
            cwd=VENV if VENV.is_dir() else VENV.parent,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            env=_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"bovine peer: {what} took longer than {PIP_TIMEOUT} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise PeerError(
            f"bovine peer: {what} failed (exit {result.returncode}). The interop tests need "
            f"PyPI to install bovine; pip said:\n{output}"
        )


class BovineServer:
    """bovine-herd under Hypercorn on 127.0.0.1:PORT with a working folder of its own."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.python = venv_python()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._bovine("seed_jsonld.py")
        env = {**_env(), "PYTHONPATH": str(HERE)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "hypercorn", "app:app", "--bind", self.host],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"bovine exited at start:\n{self.log_tail()}")
            try:
                url = f"{self.base}/.well-known/nodeinfo"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise PeerError(f"bovine did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def register(self, username: str) -> BovineUser:
        """Create a user (after the server created its schema) and a C2S secret for it."""
        out = self._tool("bovine_tool.register", username, "--domain", self.base)
        name = _field(out, "Bovine name: ")
        out = self._tool("bovine_tool.manage", name, "--new_did_key")
        secret = _field(out, "Your new secret: ")
        return BovineUser(self, username, secret)

    def _tool(self, module: str, *args: str) -> str:
        return self._run([str(self.python), "-m", module, *args], module)

    def _bovine(self, script: str, *args: str) -> str:
        return self._run([str(self.python), str(HERE / script), *args], script)

    def _run(self, command: list[str], what: str, timeout: float = 60) -> str:
        try:
            result = subprocess.run(
                command,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"bovine {what} took longer than {timeout} s") from exc
        if result.returncode != 0:
            raise PeerError(
                f"bovine {what} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}\nserver log:\n{self.log_tail()}"
            )
        return result.stdout


def _field(output: str, prefix: str) -> str:
    for line in output.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise PeerError(f"bovine tool output has no {prefix!r}: {output[-1000:]}")


class BovineUser:
    """A bovine user driven through ``bovine_peer.py`` (C2S, authenticated by its secret)."""

    def __init__(self, server: BovineServer, username: str, secret: str) -> None:
        self.server = server
        self.username = username
        self._secret = secret
        self._accepted = server.workdir / f"accepted-{username}.txt"
        self.actor: dict[str, Any] = self._drive("whoami")[0]

    @property
    def id(self) -> str:
        return str(self.actor["id"])

    @property
    def handle(self) -> str:
        return f"{self.username}@{self.server.host}"

    def _drive(self, *args: str) -> list[dict[str, Any]]:
        out = self.server._run(
            [
                str(self.server.python),
                str(HERE / "bovine_peer.py"),
                self._secret,
                self.server.base,
                *args,
            ],
            f"bovine_peer.py {args[0]}",
        )
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def follow(self, target: str) -> dict[str, Any]:
        return self._drive("follow", target)[0]

    def post(self, text: str, *also_to: str) -> dict[str, Any]:
        return self._drive("post", text, *also_to)[0]

    def inbox(self) -> list[dict[str, Any]]:
        """The inbox, newest first; accepts each Follow in it once."""
        return self._drive("inbox", str(self._accepted))

    def collections(self) -> dict[str, list[Any]]:
        return {item["name"]: item["items"] for item in self._drive("collections")}


@contextlib.contextmanager
def bovine_server(workdir: Path, port: int) -> Iterator[BovineServer]:
    ensure_venv()
    server = BovineServer(workdir, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
