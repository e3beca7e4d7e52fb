"""One ``steelyard serve`` per instance, and no upgrade under a running server: a second
server would run without the federation workers (and never take them over), and a command
of a newer version would change the schema under the old server's queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import cli
from server.bootstrap import ServeLock, open_context, server_running
from server.config import load_config
from server.errors import SteelyardError
from server.storage import migrate
from tests.conftest import make_instance


def _with_one_more_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate.available_migrations()
    extra = migrate.Migration(len(real) + 1, "extra", "CREATE TABLE extra_table (x INTEGER);")
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, extra])


def test_a_second_server_is_refused_with_the_first_ones_pid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(make_instance(tmp_path / "instance"))
    first = ServeLock(config)
    first.acquire()
    try:
        assert server_running(config) is not None
        with pytest.raises(SteelyardError, match=r"another steelyard serve \(pid \d+\)"):
            ServeLock(config).acquire()
        # the command says so in one line and starts nothing
        served: list[object] = []
        monkeypatch.setattr(cli, "_serve", lambda *args: served.append(args) or 0)
        code = cli.main(["--instance", str(config.instance_path), "serve"])
        assert code == 1 and served == []
        assert "another steelyard serve" in capsys.readouterr().err
    finally:
        first.release()
    assert server_running(config) is None
    again = ServeLock(config)
    again.acquire()  # free once the first one is gone
    again.release()


async def test_a_command_does_not_upgrade_the_database_under_a_running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(make_instance(tmp_path / "instance"))
    _with_one_more_migration(monkeypatch)
    server = ServeLock(config)
    server.acquire()
    try:
        with pytest.raises(SteelyardError, match="restart it"):
            async with open_context(config.instance_path):
                pass
    finally:
        server.release()
    async with open_context(config.instance_path) as ctx:  # no server: it upgrades
        assert await ctx.db.read(
            lambda c: c.execute("SELECT count(*) FROM extra_table").fetchone()[0] == 0
        )


async def test_a_command_without_upgrade_runs_beside_the_server(tmp_path: Path) -> None:
    config = load_config(make_instance(tmp_path / "instance"))
    server = ServeLock(config)
    server.acquire()
    try:
        async with open_context(config.instance_path) as ctx:
            assert await ctx.db.read(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
    finally:
        server.release()
