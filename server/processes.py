"""Helper processes of a served instance: the dispatch gate, the applier launcher, and
dying with the parent. (What the applier does is in :mod:`server.applier`.)"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from federation.dispatch import idle

__all__ = ["GATE_FILE", "ApplierLauncher", "FileGate", "YieldingGate", "die_with_parent"]

_log = logging.getLogger("steelyard.applier")

GATE_FILE = ".dispatch.lock"
_PR_SET_PDEATHSIG = 1


class FileGate:
    """An exclusive ``flock`` on a file of the instance folder, taken without waiting."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    async def wait(self, stop: asyncio.Event, interval: float = 0.02) -> bool:
        """Take the gate as soon as it is free; False if *stop* was set first."""
        while not stop.is_set():
            if self.acquire():
                return True
            await idle(asyncio.Event(), stop, interval)
        return False


class ApplierLauncher:
    """Starts ``steelyard apply-inbound`` for one instance when asked, one at a time."""

    def __init__(self, instance_path: Path, *, idle_exit: float = 10.0) -> None:
        self._instance_path = instance_path
        self._idle_exit = idle_exit
        self._process: asyncio.subprocess.Process | None = None
        self._starting = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def request(self) -> None:
        """Start an applier unless one runs (called from the event loop, never waits)."""
        if self.running or self._starting:
            return
        self._starting = True
        asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server",
                "--instance",
                str(self._instance_path),
                "apply-inbound",
                "--idle-exit",
                str(self._idle_exit),
                "--parent-pid",
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
            )
            _log.info("inbound backlog: started applier process %d", self._process.pid)
        except OSError:
            _log.exception("could not start the applier process; applying in this one")
        finally:
            self._starting = False

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before we asked: nothing to do for it


class YieldingGate:
    """The server's side of the gate: no turn while an applier it started is alive.

    ``flock`` is not fair: a server that lets go between rounds and takes the lock again at
    once would keep a waiting applier out for ever; stepping aside lets it in.
    """

    def __init__(self, gate: FileGate, launcher: ApplierLauncher | None) -> None:
        self._gate = gate
        self._launcher = launcher

    def acquire(self) -> bool:
        if self._launcher is not None and self._launcher.running:
            return False
        return self._gate.acquire()

    def release(self) -> None:
        self._gate.release()
