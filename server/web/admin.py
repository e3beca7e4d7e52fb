"""Administration: accounts (create, deactivate, reactivate)."""

from __future__ import annotations

from quart import Blueprint, flash, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue

from server.errors import SteelyardError
from server.services import accounts
from server.storage import users
from server.web.support import admin_required, ctx, require_viewer

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


@blueprint.get("/users")
@admin_required
async def user_list() -> ResponseReturnValue:
    listing = await ctx().db.read(users.select_accounts)
    return await render_template("admin_users.html", listing=listing)


@blueprint.post("/users")
@admin_required
async def create_user() -> ResponseReturnValue:
    form = await request.form
    password = form.get("password", "") or accounts.generate_password()
    try:
        actor = await accounts.create_user(
            ctx(),
            form.get("username", ""),
            password,
            display_name=form.get("display_name", ""),
            is_admin=form.get("is_admin") == "on",
            created_by=require_viewer().id,
        )
    except SteelyardError as exc:
        listing = await ctx().db.read(users.select_accounts)
        return (
            await render_template(
                "admin_users.html", listing=listing, error=exc.message, form=form
            ),
            exc.status,
        )
    shown = "" if form.get("password") else f" One-time password: {password}"
    await flash(f"Account {actor.username} created.{shown}", "success")
    return redirect(url_for("admin.user_list"), 303)


@blueprint.post("/users/<username>/active")
@admin_required
async def set_active(username: str) -> ResponseReturnValue:
    form = await request.form
    active = form.get("active") == "1"
    actor = await accounts.set_active(ctx(), username, active=active, by=require_viewer().id)
    await flash(f"{actor.username} was {'reactivated' if active else 'deactivated'}.", "success")
    return redirect(url_for("admin.user_list"), 303)
