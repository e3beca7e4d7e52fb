"""ASGI entry point for serving one instance with several worker processes.

``steelyard serve --workers N`` (or ``[server] workers = N``) runs Hypercorn's multi-process
mode; each worker process imports this module and calls :func:`create_from_env`, which reads
the instance folder from ``STEELYARD_INSTANCE``. Only one process (the one holding the
instance's background lock) runs the federation workers; live updates cross processes through
``server.live.LiveRelay``. Each worker asks the kernel to end it when its parent dies, so a
``kill -9`` of ``steelyard serve`` leaves no orphan holding the port.
"""

from __future__ import annotations

import os
from pathlib import Path

from quart import Quart

from server.app import create_app
from server.bootstrap import configure_logging
from server.processes import die_with_parent


def create_from_env() -> Quart:
    die_with_parent()
    configure_logging()  # a fresh worker process has none of its parent's set-up
    instance = os.environ["STEELYARD_INSTANCE"]
    return create_app(Path(instance), overrides={"live_relay": True})
