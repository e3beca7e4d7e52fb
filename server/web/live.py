"""Server-Sent Events: the signed-in person's live stream of new posts and unread counts.

Events carry ids only; the browser fetches ``/posts/<id>/card``, which checks visibility.
Each stream starts with the unread count, read after subscribing.
A comment line every 20 s keeps proxies from closing an idle stream.
Before each event and keepalive the session is checked again: a stream ends when its
session is signed out, the password changes or the account is deactivated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from quart import Blueprint, make_response, session
from quart.typing import ResponseReturnValue

from server.storage import notifications, users
from server.storage.users import UNREAD_CAP
from server.web.support import ctx, login_required, require_viewer

blueprint = Blueprint("live", __name__)
KEEPALIVE_SECONDS = 20.0


@blueprint.get("/live")
@login_required
async def stream() -> ResponseReturnValue:
    me = require_viewer()
    broker = ctx().live
    db = ctx().db
    # Checked on every request by the app (uid, sid, epoch are there and valid), so here too.
    sid, epoch = str(session["sid"]), int(session["epoch"])

    async def events() -> AsyncIterator[bytes]:
        async with broker.subscribe(me.id) as queue:
            yield b"retry: 3000\n\n"
            # Read once subscribed, so nothing falls between the page (or the stream this
            # one replaces) and the first event: the badge is right on every (re)connect.
            unread = await db.read(notifications.count_unread, me.id, cap=UNREAD_CAP)
            yield f"event: notifications\ndata: {unread}\n\n".encode()
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    event = None
                if not await db.read(users.session_is_valid, me.id, sid, epoch):
                    return  # signed out, password changed or deactivated: nothing more
                if event is None:
                    yield b": keepalive\n\n"
                else:
                    yield f"event: {event.kind}\ndata: {event.data}\n\n".encode()

    response = await make_response(
        events(),
        {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
    response.timeout = None  # type: ignore[union-attr]
    return response
