"""ASGI entry point for serving one instance with several worker processes.

``steelyard serve --workers N`` (or ``[server] workers = N``) runs Hypercorn's multi-process
mode; each worker process imports this module and calls :func:`create_from_env`, which reads
the instance folder from ``STEELYARD_INSTANCE``. Only one process (the one holding the
instance's background lock) runs the federation workers; live updates cross processes through
``server.live.LiveRelay``. Each worker asks the kernel to end it when its parent dies, so a
``kill -9`` of ``steelyard serve`` leaves no orphan holding the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from pathlib import Path

from quart import Quart

from server.app import create_app

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def create_from_env() -> Quart:
    _die_with_parent()
    instance = os.environ["STEELYARD_INSTANCE"]
    return create_app(Path(instance), overrides={"live_relay": True})
