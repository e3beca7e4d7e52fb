"""Notifications page, unread count, follow requests waiting for an answer."""

from __future__ import annotations

from quart import Blueprint, redirect, request, url_for
from quart.typing import ResponseReturnValue

from server.services import following
from server.storage import follows, notifications
from server.web.support import ctx, login_required, parse_cursor, render_template, require_viewer

blueprint = Blueprint("notifications", __name__)


@blueprint.get("/notifications")
@login_required
async def index() -> ResponseReturnValue:
    me = require_viewer()
    page = await ctx().db.read(
        notifications.select_notifications,
        me.id,
        before=parse_cursor(request.args.get("before")),
        limit=30,
    )
    requests = await ctx().db.read(follows.select_pending_requests, me.id)
    newest_unread = await ctx().db.read(notifications.newest_unread_id, me.id)
    return await render_template(
        "notifications.html", page=page, requests=requests, newest_unread=newest_unread
    )


@blueprint.post("/notifications/read")
@login_required
async def mark_read() -> ResponseReturnValue:
    form = await request.form
    upto = parse_cursor(form.get("upto"))
    await following.mark_notifications_read(ctx(), require_viewer(), upto=upto)
    return redirect(url_for("notifications.index"), 303)


@blueprint.get("/notifications/count")
@login_required
async def count() -> ResponseReturnValue:
    unread = await ctx().db.read(notifications.count_unread, require_viewer().id)
    return {"unread": unread}
