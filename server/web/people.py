"""People: directory and search, profiles with their wall, follow, followers/following lists,
editing one's own profile and photo."""

from __future__ import annotations

import re
from typing import Any

from quart import (
    Blueprint,
    flash,
    redirect,
    request,
    send_file,
    session,
    url_for,
)
from quart.typing import ResponseReturnValue

from server.domain import Actor, FollowState, Visibility
from server.errors import InvalidInput, NotFound, SteelyardError
from server.services import accounts, following, remote
from server.storage import federation as fed
from server.storage import follows, posts, users
from server.web.support import (
    ctx,
    login_required,
    parse_cursor,
    parse_id,
    render_template,
    require_viewer,
    safe_next,
)

blueprint = Blueprint("people", __name__)
PAGE_SIZE = 20
DIRECTORY_PAGE = 30
_AVATAR_NAME = re.compile(r"^avatar-\d+-[0-9a-f]{16}\.jpg$")
_REMOTE_HANDLE = re.compile(r"^@?[^@\s]+@[^@\s]+$")


async def _person(handle: str) -> Actor:
    actor = await remote.person_by_handle(ctx(), handle)
    if actor is None:
        raise NotFound("No such person.")
    return actor


@blueprint.get("/people")
@login_required
async def directory() -> ResponseReturnValue:
    query = request.args.get("q", "")[:200]
    page_no = request.args.get("page", "1")
    page = int(page_no) if page_no.isdigit() and 0 < int(page_no) < 10_000 else 1
    remote_error: str | None = None
    if _REMOTE_HANDLE.match(query.strip()):
        # @name@partner.example: a person on a partner instance (allowed hosts only).
        try:
            found = [await remote.find_person(ctx(), query.strip().lstrip("@"))]
        except SteelyardError as exc:
            found, remote_error = [], exc.message
    else:
        found = await ctx().db.read_in_thread(
            users.search_local_people,
            query,
            limit=DIRECTORY_PAGE + 1,
            offset=(page - 1) * DIRECTORY_PAGE,
        )
    return await render_template(
        "people.html",
        query=query,
        people=found[:DIRECTORY_PAGE],
        page=page,
        has_more=len(found) > DIRECTORY_PAGE,
        remote_error=remote_error,
    )


@blueprint.get("/people/<handle>")
@login_required
async def profile(handle: str) -> ResponseReturnValue:
    person = await _person(handle)
    me = require_viewer()
    page = await ctx().db.read(
        posts.select_profile_feed,
        person.id,
        me.id,
        before=parse_cursor(request.args.get("before")),
        limit=PAGE_SIZE,
    )
    state = await ctx().db.read(follows.select_follow_state, me.id, person.id)
    counts = await ctx().db.read(follows.count_follows, person.id)
    # A partner's wall takes posts while their server is allowed; Internal never leaves here,
    # so the composer starts at Followers there (the owner is always addressed too).
    wall_open = person.id != me.id and person.deleted_at is None
    relation = None
    if person.is_local:
        wall_open = wall_open and await ctx().db.read(users.is_active_account, person.id)
    else:
        relation = await ctx().db.read(fed.select_host_relation, person.host)
        wall_open = wall_open and relation is not None
    html = await render_template(
        "profile.html",
        person=person,
        page=page,
        follow_state=state.value if state else None,
        followers_count=counts[0],
        following_count=counts[1],
        wall_open=wall_open,
        visibilities=[v for v in Visibility if person.is_local or v is not Visibility.INTERNAL],
        wall_visibility="internal" if person.is_local else "followers",
        relation=relation,
    )
    session.pop("draft", None)
    return html


@blueprint.get("/people/<handle>/followers")
@login_required
async def followers(handle: str) -> ResponseReturnValue:
    person = await _person(handle)
    page = await ctx().db.read(
        follows.select_followers,
        person.id,
        before=parse_cursor(request.args.get("before")),
        limit=DIRECTORY_PAGE,
    )
    return await render_template("people_list.html", person=person, page=page, kind="followers")


@blueprint.get("/people/<handle>/following")
@login_required
async def following_list(handle: str) -> ResponseReturnValue:
    person = await _person(handle)
    page = await ctx().db.read(
        follows.select_following,
        person.id,
        before=parse_cursor(request.args.get("before")),
        limit=DIRECTORY_PAGE,
    )
    return await render_template("people_list.html", person=person, page=page, kind="following")


@blueprint.post("/people/<handle>/follow")
@login_required
async def follow(handle: str) -> ResponseReturnValue:
    person = await _person(handle)
    form = await request.form
    me = require_viewer()
    if form.get("action") == "unfollow":
        await following.unfollow(ctx(), me, person.id)
        await flash(f"You no longer follow {person.name}.", "success")
    else:
        state = await following.follow(ctx(), me, person.id)
        message = (
            f"You now follow {person.name}."
            if state is FollowState.ACCEPTED
            else f"Follow request sent to {person.name}."
        )
        await flash(message, "success")
    return redirect(safe_next(form.get("next"), url_for("people.profile", handle=handle)), 303)


@blueprint.post("/follow-requests/<follower_id>")
@login_required
async def answer_request(follower_id: str) -> ResponseReturnValue:
    form = await request.form
    accept = form.get("action") == "accept"
    await following.answer_request(ctx(), require_viewer(), parse_id(follower_id), accept=accept)
    await flash("Request accepted." if accept else "Request declined.", "success")
    return redirect(safe_next(form.get("next"), url_for("notifications.index")), 303)


@blueprint.get("/settings/profile")
@login_required
async def edit_profile() -> ResponseReturnValue:
    return await _profile_settings(require_viewer())


async def _profile_settings(me: Actor, **extra: Any) -> str:
    """The profile form; the CV / bio shows as the plain text it was typed in, if it was."""
    bio = accounts.editable_bio(ctx(), me)
    return await render_template(
        "settings_profile.html",
        person=me,
        bio_source=bio,
        max_photo_bytes=ctx().config.max_upload_bytes,
        photo_mb=_photo_mb(),
        photo_too_large=_photo_limit_message(),
        **extra,
    )


def _photo_mb() -> str:
    return f"{ctx().config.max_upload_bytes / (1024 * 1024):g}"


def _photo_limit_message() -> str:
    """Said beside the field, by the server (413) and by app.js before uploading alike."""
    return f"The photo is larger than {_photo_mb()} MB. Choose a smaller one, or make it smaller."


async def photo_too_large() -> ResponseReturnValue:
    """The answer to a photo upload over the request size cap (refused before it is read)."""
    me = require_viewer()
    return await _profile_settings(me, error=_photo_limit_message(), error_field="photo"), 413


@blueprint.post("/settings/profile")
@login_required
async def edit_profile_post() -> ResponseReturnValue:
    me = require_viewer()
    form = await request.form
    fields = {key: form.get(key, "") for key in accounts.PROFILE_LIMITS}
    try:
        await accounts.update_profile(
            ctx(),
            me.id,
            fields,
            bio_source=form.get("bio", ""),
            manually_approves=form.get("manually_approves") == "on",
        )
    except SteelyardError as exc:
        return (
            await _profile_settings(me, error=exc.message, error_field=exc.field, form=form),
            exc.status,
        )
    await flash("Your profile was saved.", "success")
    return redirect(url_for("people.edit_profile"), 303)


@blueprint.post("/settings/photo")
@login_required
async def upload_photo() -> ResponseReturnValue:
    me = require_viewer()
    files = await request.files
    upload = files.get("photo")
    try:
        if upload is None or not upload.filename:
            raise InvalidInput("Choose a photo to upload.")
        data = upload.read(ctx().config.max_upload_bytes + 1)
        await accounts.set_avatar(ctx(), me.id, data)
    except SteelyardError as exc:
        return (
            await _profile_settings(me, error=exc.message, error_field="photo"),
            exc.status,
        )
    await flash("Your photo was updated.", "success")
    return redirect(url_for("people.edit_profile"), 303)


@blueprint.get("/media/avatars/<name>")
@login_required
async def avatar(name: str) -> ResponseReturnValue:
    # Server-made names only: nothing from the request reaches the filesystem path otherwise.
    if not _AVATAR_NAME.match(name):
        raise NotFound("No such file.")
    path = ctx().config.uploads_dir / name
    if not path.is_file():
        raise NotFound("No such file.")
    response = await send_file(path, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    response.headers["Content-Disposition"] = "inline"
    return response
