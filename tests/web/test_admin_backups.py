"""The admin backups page: who may see it, and what it says about the backups on record (each
``steelyard backup`` and ``restore`` writes an audit entry) and in the instance's folder."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

from quart import Quart

from server.app import create_app
from server.services import backups
from server.services.context import Context
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import login

PAGE = "/admin/backups"


async def _admin_page(app: Quart) -> str:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    response = await client.get(PAGE)
    assert response.status_code == 200
    return str(await response.get_data(as_text=True))


async def _back_up(ctx: Context, dest: Path, when: dt.datetime) -> backups.BackupResult:
    return await asyncio.to_thread(
        backups.create_backup, ctx.config, dest, now=when, say=lambda _: None
    )


async def test_only_admins_see_it(app: Quart, people: People) -> None:
    anonymous = await app.test_client().get(PAGE)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    client = app.test_client()
    await login(client, "bob", PASSWORD)
    assert (await client.get(PAGE)).status_code == 403


async def test_it_says_when_there_is_no_backup_then_lists_each_one(
    app: Quart, people: People, tmp_path: Path
) -> None:
    ctx = context_of(app)
    body = await _admin_page(app)
    assert 'href="/admin/backups" aria-current="page">Backups</a>' in body
    assert 'data-backup-state="none"' in body
    where = ctx.config.instance_path.resolve()
    assert f'steelyard <span class="flag">--instance</span> {where} backup' in body
    assert "Nothing yet" in body

    # Written elsewhere (--to), under a folder name that is markup: shown as text
    dest = tmp_path / "<b>mnt</b>"
    result = await _back_up(ctx, dest, dt.datetime.now(dt.UTC))
    body = await _admin_page(app)
    assert 'data-backup-state="recent"' in body
    row = re.search(r'<tr data-backup-record="backup.written">(.*?)</tr>', body, re.S)
    assert row, body
    assert str(result.path).replace("<", "&lt;").replace(">", "&gt;") in row[1]
    assert "<b>mnt</b>" not in body
    assert f"({result.size / 1e6:,.1f} MB)" in row[1]
    assert "The folder is empty." in body  # written with --to: not in the instance's folder

    await _back_up(ctx, ctx.config.backups_dir, dt.datetime.now(dt.UTC))
    body = await _admin_page(app)
    assert len(re.findall(r'data-backup-record="backup.written"', body)) == 2
    assert re.search(r'<th scope="row" class="cell-wrap">steelyard-backup-\d{8}T\d{6}Z', body)


async def test_an_old_backup_is_called_stale(app: Quart, people: People, tmp_path: Path) -> None:
    ctx = context_of(app)
    await _back_up(ctx, tmp_path / "out", dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
    body = await _admin_page(app)
    assert 'data-backup-state="stale"' in body
    assert "more than 7 days ago" in body


async def test_a_restored_instance_says_where_it_came_from(
    app: Quart, people: People, tmp_path: Path
) -> None:
    ctx = context_of(app)
    result = await _back_up(ctx, tmp_path / "out", dt.datetime.now(dt.UTC))
    copy = tmp_path / "copy"
    await asyncio.to_thread(backups.restore_backup, result.path, copy, say=lambda _: None)
    restored = create_app(copy, overrides={"run_workers": False})
    async with restored.test_app():
        body = await _admin_page(restored)
    row = re.search(r'<tr data-backup-record="backup.restored">(.*?)</tr>', body, re.S)
    assert row, body
    assert result.path.name in row[1]
    # The archive was complete before its own backup was put on record
    assert 'data-backup-record="backup.written"' not in body
