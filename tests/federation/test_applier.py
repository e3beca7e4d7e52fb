"""The applier process: a server hands its inbound backlog to ``steelyard apply-inbound``.

Real parts: the instance folder and SQLite file of an in-process instance, the real file lock,
and the real command run as a child process.
"""

from __future__ import annotations

import asyncio
import os
import sys

from server.domain import Visibility
from server.processes import GATE_FILE, FileGate
from server.services import posting
from tests.federation.conftest import Trio
from tests.federation.support import follow_across, home_texts


async def _bob_posts_to_alice(trio: Trio, text: str) -> None:
    """Alice follows bob; bob posts; the Create sits in alpha's inbox, not yet applied."""
    alice = await trio.alpha.user("alice")
    bob = await trio.beta.user("bob")
    await follow_across(trio.net, trio.alpha, alice, "bob@beta.example")
    await posting.publish_post(trio.beta.ctx, bob, posting.Draft(text, Visibility.FOLLOWERS))
    await trio.beta.ctx.federator.delivery.run_until_idle()
    pending = await trio.alpha.value(
        "SELECT count(*) FROM inbox_activities WHERE state = 'pending'"
    )
    assert pending == 1


async def test_the_dispatcher_waits_while_another_process_holds_the_gate(trio: Trio) -> None:
    await _bob_posts_to_alice(trio, "Gated update")
    alice = trio.alpha.people["alice"]
    other = FileGate(trio.alpha.ctx.config.instance_path / GATE_FILE)
    assert other.acquire()
    try:
        assert await trio.alpha.ctx.federator.dispatcher.run_once() == 0
        assert "Gated update" not in await home_texts(trio.alpha, alice)
    finally:
        other.release()
    assert await trio.alpha.ctx.federator.dispatcher.run_once() == 1
    assert "Gated update" in await home_texts(trio.alpha, alice)


async def test_apply_inbound_process_applies_the_backlog_and_exits_when_idle(trio: Trio) -> None:
    await _bob_posts_to_alice(trio, "Applied elsewhere")
    alice = trio.alpha.people["alice"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "--instance",
        str(trio.alpha.ctx.config.instance_path),
        "apply-inbound",
        "--idle-exit",
        "0.3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()
    assert b"1 inbound activities worked" in output
    assert "Applied elsewhere" in await home_texts(trio.alpha, alice)
    state = await trio.alpha.value("SELECT state FROM inbox_activities")
    assert state == "done"
    # The process let go of the gate: this process may dispatch again.
    gate = FileGate(trio.alpha.ctx.config.instance_path / GATE_FILE)
    assert gate.acquire()
    gate.release()
