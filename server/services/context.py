"""What every service needs, wired once by ``create_app`` (no globals).

Services are plain async functions taking a :class:`Context` first, like GoToSocial's
``State``: the web layer, the CLI, the workers and the tests all call the same functions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from federation.urls import Urls
from server.clock import Clock
from server.config import Config
from server.federator import Federator
from server.live import LiveBroker
from server.storage.db import Database
from server.text import TextRenderer


@dataclass(frozen=True, slots=True)
class Context:
    config: Config
    db: Database
    clock: Clock
    text: TextRenderer
    live: LiveBroker
    urls: Urls
    federator: Federator
    # Decoding an upload needs memory in proportion to its pixels (up to ~100 MB): one at a
    # time, so a few concurrent uploads cannot exhaust the server's memory.
    image_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
