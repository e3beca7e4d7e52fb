"""``steelyard backup`` and ``steelyard restore``: the command-line side of
:mod:`server.services.backups` (argument parsing and what is printed; no logic of its own).

Both print their progress line by line on standard output, so a long run under a service
manager or cron shows in the log how far it got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
from pathlib import Path


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="write a backup of the whole instance to one tar file",
        description="Write a consistent backup of the instance, safe while the server runs:"
        " the database, config.toml, secret_key and uploads/ in one tar file with a"
        " manifest of checksums. It holds every account's private key: encrypt it before"
        " it leaves the machine. Restore it with `steelyard restore`.",
    )
    backup.add_argument(
        "--to",
        default=None,
        metavar="DIR",
        help="folder to write the backup into (default: the instance's backups/ folder)",
    )
    restore = commands.add_parser(
        "restore",
        help="restore a backup into a new instance folder",
        description="Unpack a backup written by `steelyard backup` into the folder given by"
        " --instance, which must not exist yet or be empty: an instance is never"
        " overwritten. Every file is checked against the backup's manifest and the database"
        " with SQLite's quick_check before the folder appears. Then start it with"
        " `steelyard --instance DIR serve` (a backup from an older release is migrated then)."
        " The copy is the same instance, with the same address and keys: stop the original"
        " before serving it, and never serve both.",
    )
    restore.add_argument(
        "archive",
        metavar="ARCHIVE",
        help="the backup's .tar file (also gzip-, bzip2- or xz-compressed: .tar.gz and so on)",
    )


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_backup(instance: Path, to: str | None) -> int:
    from server.config import load_config
    from server.services.backups import create_backup

    config = load_config(instance)
    dest = Path(to) if to else config.backups_dir
    result = create_backup(config, dest, now=dt.datetime.now(dt.UTC), say=_say)
    _say(
        f"Backup written: {result.path} ({result.size / 1e6:,.1f} MB, {result.files} files)"
        f" in {result.seconds:.1f} s."
    )
    _say(
        "It holds every account's private key and the instance's secret: encrypt it and"
        " keep a copy away from this machine."
    )
    return 0


def cmd_restore(instance: Path, archive: str) -> int:
    from server.services.backups import restore_backup
    from server.storage.migrate import available_migrations

    result = restore_backup(Path(archive), instance, say=_say)
    _say(
        f"Restored {result.url} ({result.files} files, {result.size / 1e6:,.1f} MB,"
        f" schema version {result.schema_version}) into {instance}."
    )
    newest = max(m.version for m in available_migrations())
    if result.schema_version > newest:
        _say(
            f"This backup was written by a newer Steelyard (schema {result.schema_version},"
            f" this release knows {newest}): upgrade Steelyard before serving it."
        )
    _say(
        f"Start it with: steelyard --instance {shlex.quote(str(result.instance))} serve"
        " (it has the original's address and keys: stop the original first, and never serve"
        " both)."
    )
    return 0
