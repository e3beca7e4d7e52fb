"""Home feed, the composer, hashtag pages."""

from __future__ import annotations

import re

from quart import Blueprint, flash, redirect, request, session, url_for
from quart.typing import ResponseReturnValue

from server.domain import Visibility
from server.errors import NotFound, SteelyardError
from server.services import accounts, posting
from server.storage import posts
from server.web.support import (
    account,
    ctx,
    login_required,
    parse_cursor,
    render_template,
    require_viewer,
    safe_next,
    viewer_id,
    wants_fragment,
)

blueprint = Blueprint("feed", __name__)
PAGE_SIZE = 20
_TAG = re.compile(r"^\w{1,100}$")


@blueprint.get("/")
@login_required
async def home() -> ResponseReturnValue:
    me = require_viewer()
    before = parse_cursor(request.args.get("before"))
    page = await ctx().db.read(posts.select_home_feed, me.id, before=before, limit=PAGE_SIZE)
    acc = account()
    setup = []
    if before is None and acc is not None:
        setup = await accounts.getting_started(ctx(), me, is_admin=acc.is_admin)
    html = await render_template(
        "home.html",
        page=page,
        visibilities=list(Visibility),
        draft_visibility="internal",
        setup=setup,
    )
    session.pop("draft", None)  # shown once in the composer, then forgotten
    return html


@blueprint.post("/posts")
@login_required
async def compose() -> ResponseReturnValue:
    me = require_viewer()
    form = await request.form
    back = safe_next(form.get("next"), url_for("feed.home"))
    in_reply_to = form.get("in_reply_to") or None
    try:
        draft = posting.Draft(
            text=form.get("text", ""),
            visibility=posting.parse_visibility(form.get("visibility")),
            in_reply_to=int(in_reply_to) if in_reply_to and in_reply_to.isdigit() else None,
            wall_owner=form.get("wall_owner") or None,
        )
        post = await posting.publish_post(ctx(), me, draft)
    except SteelyardError as exc:
        if wants_fragment():
            return {"error": exc.message}, exc.status
        await flash(exc.message, "error")
        await flash_draft(form.get("text", ""))
        return redirect(back), 303
    unknown = await posting.unknown_mentions(ctx(), post.source)
    note = _unknown_note(unknown)
    if wants_fragment():
        answer = {"id": post.id, "url": url_for("posts.thread", post_id=post.id)}
        return ({**answer, "note": note} if note else answer), 201
    await flash("Posted." + (f" {note}" if note else ""), "success")
    return redirect(back), 303


def _unknown_note(names: list[str]) -> str:
    if not names:
        return ""
    listed = ", ".join(f"@{name}" for name in names[:5]) + (" …" if len(names) > 5 else "")
    if len(names) == 1:
        return f"{listed} is not a colleague here, so nobody by that name was notified."
    return f"{listed} are not colleagues here, so nobody by those names was notified."


async def flash_draft(text: str) -> None:
    """Keep what was typed when a post is refused, so nothing is lost."""
    session["draft"] = text[: posting.MAX_POST_CHARS + 100]


@blueprint.get("/tags/<tag>")
@login_required
async def tag(tag: str) -> ResponseReturnValue:
    name = tag.lower()
    if not _TAG.match(name):
        raise NotFound("No such tag.")
    page = await ctx().db.read(
        posts.select_tag_feed,
        name,
        viewer_id(),
        before=parse_cursor(request.args.get("before")),
        limit=PAGE_SIZE,
    )
    return await render_template("tag.html", tag=name, page=page)
