"""One post: thread view, live partial, edit, history, delete, like."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from quart import Blueprint, flash, redirect, request, url_for
from quart.typing import ResponseReturnValue

from server.domain import Post
from server.errors import Forbidden, NotFound, SteelyardError
from server.services import posting
from server.storage import posts, replies
from server.web.support import (
    ask_to_confirm,
    ctx,
    is_confirmed,
    login_required,
    parse_id,
    render_template,
    require_viewer,
    safe_next,
    viewer_id,
    wants_fragment,
)

_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, within SQLite's integer range

blueprint = Blueprint("posts", __name__)


async def _visible_post(post_id: str) -> Post:
    post = await ctx().db.read(posts.select_post, parse_id(post_id), viewer_id())
    if post is None:
        raise NotFound("This post does not exist, or you are not allowed to see it.")
    return post


@blueprint.get("/posts/<post_id>")
async def thread(post_id: str) -> ResponseReturnValue:
    post = await _visible_post(post_id)
    thread_posts = await ctx().db.read(posts.select_thread, post.thread_root_id, viewer_id())
    return await render_template(
        "thread.html",
        post=post,
        thread=thread_posts,
        thread_ids=frozenset(p.id for p in thread_posts),
        visibilities=posting.reply_visibilities(post.visibility),
    )


@blueprint.get("/posts/<post_id>/card")
@login_required
async def card(post_id: str) -> ResponseReturnValue:
    """The post as a feed item, for live insertion (visibility checked like the page);
    ``?via=<actor id>``: as boosted by that person, if they did boost it."""
    post = await _visible_post(post_id)
    (post,) = await ctx().db.read(replies.with_reply_targets, [post], viewer_id())
    via = request.args.get("via", "")
    if _ID.fullmatch(via):
        if await ctx().db.read(posts.is_in_own_feed, post.id, require_viewer().id):
            # The feed holds it at its own place already, never as a boost: nothing to insert.
            return "", 204
        booster = await ctx().db.read(posts.select_booster, post.id, int(via))
        if booster is not None:
            post = dataclasses.replace(post, boosted_by=booster)
    return await render_template("partials/post_card_page.html", post=post)


@blueprint.get("/posts/<post_id>/edit")
@login_required
async def edit(post_id: str) -> ResponseReturnValue:
    post = await _visible_post(post_id)
    if post.author.id != require_viewer().id:
        raise Forbidden("Only the author can edit a post.")
    return await render_template("edit.html", post=post)


@blueprint.post("/posts/<post_id>/edit")
@login_required
async def edit_post(post_id: str) -> ResponseReturnValue:
    form = await request.form
    try:
        post = await posting.edit_post(
            ctx(), require_viewer(), parse_id(post_id), form.get("text", "")
        )
    except (NotFound, Forbidden):
        raise
    except SteelyardError as exc:
        original = await _visible_post(post_id)
        return (
            await render_template(
                "edit.html", post=original, error=exc.message, text=form.get("text", "")
            ),
            exc.status,
        )
    await flash("Your post was updated; the previous version is kept in its history.", "success")
    return redirect(url_for("posts.thread", post_id=post.id), 303)


@blueprint.get("/posts/<post_id>/history")
@login_required
async def history(post_id: str) -> ResponseReturnValue:
    post = await _visible_post(post_id)
    versions = await ctx().db.read(posts.select_versions, post.id)
    return await render_template("history.html", post=post, versions=versions)


def _came_from() -> str | None:
    """The page (path and query) of this site the form was sent from, if the browser said."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != ctx().config.host or not referrer.path.startswith("/"):
        return None
    return referrer.path + (f"?{referrer.query}" if referrer.query else "")


@blueprint.post("/posts/<post_id>/delete")
@login_required
async def delete(post_id: str) -> ResponseReturnValue:
    form = await request.form
    me = require_viewer()
    if not is_confirmed(form):
        post = await posting.removable_post(ctx(), me, parse_id(post_id))
        own = post.author.id == me.id
        return await ask_to_confirm(
            "Delete this post?" if own else "Remove this post from your wall?",
            detail="It disappears for everyone. This cannot be undone."
            if own
            else f"It disappears from your wall for everyone; {post.author.name} is told.",
            excerpt=ctx().text.plain_text(post.content_html, max_len=280),
            button="Delete" if own else "Remove",
            cancel=f"{_came_from() or url_for('posts.thread', post_id=post.id)}#post-{post.id}",
            keep={"next": form.get("next", "")},
        )
    post = await posting.delete_post(ctx(), me, parse_id(post_id))
    if wants_fragment():
        return {"deleted": post.id}
    await flash("The post was removed.", "success")
    return redirect(safe_next(form.get("next"), url_for("feed.home")), 303)


@blueprint.post("/posts/<post_id>/like")
@login_required
async def like(post_id: str) -> ResponseReturnValue:
    form = await request.form
    want = form.get("action", "like") != "unlike"
    post = await posting.like_post(ctx(), require_viewer(), parse_id(post_id), like=want)
    if wants_fragment():
        return {"liked": post.liked_by_viewer, "count": post.like_count}
    return redirect(safe_next(form.get("next"), url_for("posts.thread", post_id=post.id)), 303)


@blueprint.post("/posts/<post_id>/boost")
@login_required
async def boost(post_id: str) -> ResponseReturnValue:
    form = await request.form
    want = form.get("action", "boost") != "unboost"
    post = await posting.boost_post(ctx(), require_viewer(), parse_id(post_id), boost=want)
    if wants_fragment():
        return {"boosted": post.boosted_by_viewer, "count": post.boost_count}
    await flash("Boosted to your followers." if want else "Boost taken back.", "success")
    return redirect(safe_next(form.get("next"), url_for("posts.thread", post_id=post.id)), 303)
