"""Whole-instance backups as one tar file, and restoring one into a new instance folder.

A backup holds what makes the instance: a consistent copy of the database (taken while the
server runs, see :mod:`server.storage.snapshot`), ``config.toml``, ``secret_key`` and every
file under ``uploads/``, then ``manifest.json`` with each file's size and SHA-256. Lock files
and ``backups/`` (the pre-migration copies) are not part of it. It is a plain POSIX tar, so
any tool can list or unpack it; the private keys of every account are inside, so it is
written owner-only (0600) and must be encrypted before it leaves the machine.

Invariants:
- Only a complete, fsynced archive carries the final name ``steelyard-backup-<UTC>.tar``; an
  interrupted run (even by kill -9) leaves at most files whose names contain
  ``steelyard-backup-…​.partial``, which are never taken for a backup (and the next run names
  them). Two runs in the same second never share a name: each reserves its ``.partial``
  with O_EXCL before writing.
- What a backup holds, a restore accepts, and the reverse: upload names pass the same check
  both ways (:func:`_is_upload`), so a backup that was written can be restored.
- A restore writes nothing outside a new staging folder next to the target, and renames it
  into place only once every file matched the manifest and the database passed SQLite's
  check. It never overwrites an instance, and refuses any archive member that is not one of
  the expected regular files: no links, devices, absolute paths or ``..``.
- Failures of the disk or the database reach the caller as one :class:`InstanceError` line
  naming the file, never as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from server.config import CONFIG_FILE, DB_FILE, SECRET_FILE, Config, load_config
from server.errors import InstanceError, InvalidInput
from server.services.context import Context
from server.storage import snapshot, users

# Audit log actions: every backup and restore is on the record, and the admin page reads them.
BACKUP_WRITTEN = "backup.written"
BACKUP_RESTORED = "backup.restored"
# After this long without a backup the admin page says so.
STALE_AFTER_MS = 7 * 24 * 3600 * 1000
_SHOWN = 20

ARCHIVE_FORMAT = "steelyard-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_UPLOADS = "uploads"
_CHUNK = 1024 * 1024
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# A line of progress at most this often (seconds): a few lines a minute in a service's log.
_PROGRESS_EVERY = 5.0
# One path segment of an uploaded file: no leading dot, so never "." or "..", nor hidden.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_MAX_UPLOAD_DEPTH = 5
# A restore's staging folder, next to the target: ".<target name>.restoring".
_STAGING_SUFFIX = ".restoring"

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    files: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreResult:
    instance: Path
    url: str
    schema_version: int
    files: int
    size: int


class _Progress:
    """Says "<what> N% (done of total MB)" at most once per ``_PROGRESS_EVERY`` seconds."""

    def __init__(self, say: Say, what: str, total: int) -> None:
        self._say = say
        self._what = what
        self._total = max(total, 1)
        self._every = _PROGRESS_EVERY
        self._last = time.monotonic()

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = max(total, 1)
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        share = min(100, done * 100 // self._total)
        self._say(f"  {self._what} {share}% ({_mb(done)} of {_mb(self._total)})")


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _is_upload(relative: PurePosixPath) -> bool:
    """Is *relative* (a path under ``uploads/``) a name a backup holds and a restore accepts?"""
    parts = relative.parts
    return 1 <= len(parts) <= _MAX_UPLOAD_DEPTH and all(_SEGMENT.match(p) for p in parts)


def _failure(what: str, exc: OSError | sqlite3.Error) -> InstanceError:
    """One line for a failure of the disk or the database, naming the file when known."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return InstanceError(f"{what}: {exc.strerror or exc}{where}.")
    return InstanceError(f"{what}: the database said {exc}.")


def archive_name(now: dt.datetime) -> str:
    return f"steelyard-backup-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.tar"


def create_backup(config: Config, dest_dir: Path, *, now: dt.datetime, say: Say) -> BackupResult:
    """Write a backup of *config*'s instance into *dest_dir*; return where and how big."""
    try:
        return _create_backup(config, dest_dir, now=now, say=say)
    except (OSError, sqlite3.Error) as exc:
        raise _failure("The backup failed, and no backup was written", exc) from exc


def _create_backup(config: Config, dest_dir: Path, *, now: dt.datetime, say: Say) -> BackupResult:
    started = time.monotonic()
    dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    leftovers = sorted(p.name for p in dest_dir.glob("*steelyard-backup-*.partial*"))
    if leftovers:
        say(
            "Found what an interrupted backup left (not a backup; remove it when no backup"
            f" is running): {', '.join(leftovers)}."
        )
    target, fd = _reserve(dest_dir, archive_name(now))
    raw = os.fdopen(fd, "wb")
    partial = _partial(target)
    # Named after the archive's .partial, so whatever a kill leaves of it is named next time.
    db_copy = dest_dir / f".{partial.name}.{DB_FILE}"
    try:
        _copy_database(config, db_copy, say)
        members = [
            _Member(DB_FILE, db_copy),
            _Member(CONFIG_FILE, config.instance_path / CONFIG_FILE),
            _Member(SECRET_FILE, config.instance_path / SECRET_FILE),
            *_uploads(config.uploads_dir, say),
        ]
        manifest: dict[str, Any] = {
            "format": ARCHIVE_FORMAT,
            "version": FORMAT_VERSION,
            "created_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
            "instance_url": config.url,
            "instance_name": config.name,
            "schema_version": snapshot.schema_version(db_copy),
            "files": [],
        }
        _write_archive(raw, target, members, manifest, say)
        os.replace(partial, target)
        snapshot.fsync_path(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            raw.close()
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            snapshot.remove_with_companions(db_copy)
    written = len(manifest["files"])
    result = BackupResult(target, target.stat().st_size, written, time.monotonic() - started)
    try:
        users.append_audit(
            config.db_path,
            action=BACKUP_WRITTEN,
            detail=json.dumps(
                {"path": str(result.path.resolve()), "size": result.size, "files": written},
                sort_keys=True,
            ),
            now_ms=int(now.timestamp() * 1000),
        )
    except sqlite3.Error as exc:
        # The archive is complete and stays; the admin page would still call backups stale.
        raise InstanceError(
            f"The backup {target} was written, but putting it on record failed (the database"
            f" said {exc}); the admin page will not list it."
        ) from exc
    return result


def _partial(target: Path) -> Path:
    return target.with_name(target.name + snapshot.PARTIAL_SUFFIX)


def _reserve(folder: Path, name: str) -> tuple[Path, int]:
    """A free archive name in *folder* (*name*, else ``<stem>-2.tar`` …) and the open,
    owner-only ``.partial`` that reserves it.

    The ``.partial`` is created with O_EXCL *before* the final name is checked: a run that
    still writes holds its ``.partial`` until its rename, so two runs of the same second
    can never both pass, and neither replaces the other's archive."""
    counter = 1
    candidate = folder / name
    while True:
        try:
            fd = os.open(_partial(candidate), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = -1
        if fd >= 0 and not candidate.exists():
            os.fchmod(fd, 0o600)  # O_CREAT's mode is narrowed by the umask, never widened
            return candidate, fd
        if fd >= 0:
            os.close(fd)
            _partial(candidate).unlink(missing_ok=True)
        counter += 1
        candidate = folder / f"{Path(name).stem}-{counter}.tar"


def _copy_database(config: Config, db_copy: Path, say: Say) -> None:
    try:
        conn = snapshot.open_read_only(config.db_path)
    except FileNotFoundError:
        raise InstanceError(f"{config.instance_path} has no database to back up.") from None
    try:
        expected = snapshot.used_bytes(conn)
        say(f"Copying the database ({_mb(expected)}) ...")
        began = time.monotonic()
        snapshot.write_copy(conn, db_copy, progress=_Progress(say, "database", expected))
    finally:
        conn.close()
    say(f"Copied the database in {time.monotonic() - began:.1f} s. Checking the copy ...")
    began = time.monotonic()
    verdict = snapshot.quick_check(db_copy)
    if verdict != "ok":
        raise InstanceError(
            f"The copy of the database failed SQLite's check ({verdict}); no backup was"
            " written. The database itself may be damaged: run PRAGMA integrity_check on it."
        )
    say(f"The copy is sound (SQLite quick_check, {time.monotonic() - began:.1f} s).")


def _unreadable(error: OSError) -> None:
    raise error  # os.walk would skip a folder it cannot read: a backup must not


@dataclass(frozen=True, slots=True)
class _Member:
    name: str  # in the archive
    path: Path
    may_vanish: bool = False  # an upload the server may delete while the backup runs


def _uploads(folder: Path, say: Say) -> list[_Member]:
    """Every upload under *folder*, sorted. Links, hidden files (the server's half-written
    ``.tmp`` files) and anything but regular files are skipped, each with a line saying so;
    a name a restore would refuse stops the backup before anything is written."""
    found: list[_Member] = []
    if not folder.is_dir():
        return found
    for root, dirs, files in os.walk(folder, onerror=_unreadable):
        here = Path(root)
        for name in sorted(dirs):  # os.walk does not follow links; say what it leaves out
            inner = (here / name).relative_to(folder).as_posix()
            if (here / name).is_symlink():
                say(f"Skipped {_UPLOADS}/{inner}: a symbolic link, not an upload.")
                dirs.remove(name)
            elif name.startswith("."):
                say(f"Skipped {_UPLOADS}/{inner}/: a hidden folder, not uploads.")
                dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(folder)
            shown = f"{_UPLOADS}/{relative.as_posix()}"
            if name.startswith("."):
                say(f"Skipped {shown}: a hidden file (an upload still being written).")
            elif path.is_symlink():
                say(f"Skipped {shown}: a symbolic link, not an upload.")
            elif not path.is_file():
                if path.exists():
                    say(f"Skipped {shown}: not a regular file.")
            elif not _is_upload(PurePosixPath(relative.as_posix())):
                raise InstanceError(
                    f"{shown} has a name a restore would refuse (letters, digits, '.', '_'"
                    f" and '-' only, at most {_MAX_UPLOAD_DEPTH - 1} folders deep); rename or"
                    " remove it, then back up again. No backup was written."
                )
            else:
                found.append(_Member(shown, path, may_vanish=True))
    return sorted(found, key=lambda m: m.name)


class _Hashing:
    """A read-only file wrapper that hashes and counts what tarfile reads through it."""

    def __init__(self, handle: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._handle = handle
        self._on_read = on_read
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        self._on_read(len(data))
        return data


def _write_archive(
    raw: IO[bytes], target: Path, members: list[_Member], manifest: dict[str, Any], say: Say
) -> None:
    """Write *members*, then the manifest listing what was written, as a tar to *raw* (the
    open ``.partial`` of *target*), fsynced and closed."""
    total = sum(_size_or_zero(m.path) for m in members)
    say(f"Writing {target} ({len(members)} files, {_mb(total)}) ...")
    progress = _Progress(say, "archive", total)
    written = 0

    def count(n: int) -> None:
        nonlocal written
        written += n
        progress(written)

    with raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            try:
                handle = member.path.open("rb")
            except FileNotFoundError:
                if not member.may_vanish:
                    raise
                say(f"Skipped {member.name}: deleted while the backup ran.")
                continue
            with handle:
                info = _file_info(member.name, os.fstat(handle.fileno()).st_size)
                reader = _Hashing(handle, count)
                tar.addfile(info, fileobj=reader)
            if reader.size != info.size:
                raise InstanceError(f"{member.path} changed while it was backed up; try again.")
            manifest["files"].append(
                {"path": member.name, "size": info.size, "sha256": reader.digest.hexdigest()}
            )
        body = json.dumps(manifest, indent=1).encode("utf-8")
        tar.addfile(_file_info(MANIFEST, len(body)), fileobj=_BytesReader(body))
        tar.close()
        raw.flush()
        os.fsync(raw.fileno())


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    info.type = tarfile.REGTYPE
    return info


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = self._data[self._at : end]
        self._at += len(chunk)
        return chunk


# -- restore ---------------------------------------------------------------------------------


def restore_backup(
    archive: Path, instance: Path, *, say: Say, now: dt.datetime | None = None
) -> RestoreResult:
    """Unpack *archive* into the new instance folder *instance*, checked, or write nothing."""
    instance = instance.resolve()  # "." or "x/.." have no name to stage next to
    if (instance / CONFIG_FILE).exists():
        raise InvalidInput(f"{instance} already holds an instance; refusing to overwrite it.")
    if instance.exists() and (not instance.is_dir() or any(instance.iterdir())):
        raise InvalidInput(f"{instance} is not empty; restore into a new or empty folder.")
    if not archive.is_file():
        raise InvalidInput(f"{archive} is not a file.")
    staging = instance.parent / f".{instance.name}{_STAGING_SUFFIX}"
    try:
        instance.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission, a full disk
        raise _failure("The restore failed, and nothing was written", exc) from exc
    try:
        staging.mkdir(mode=0o700)
    except FileExistsError:
        raise InvalidInput(
            f"{staging} exists: an interrupted restore left it, or one is running now. It"
            " holds an instance's secrets: once no restore is running, remove it and try again."
        ) from None
    except OSError as exc:
        raise _failure("The restore failed, and nothing was written", exc) from exc
    try:
        return _restore_into(archive, staging, instance, say, now or dt.datetime.now(dt.UTC))
    except (OSError, sqlite3.Error) as exc:
        raise _failure("The restore failed, and nothing was written", exc) from exc
    finally:
        if staging.exists():  # renamed into place on success: only a failure leaves it
            shutil.rmtree(staging, ignore_errors=True)


def _restore_into(
    archive: Path, staging: Path, instance: Path, say: Say, now: dt.datetime
) -> RestoreResult:
    manifest, found = _unpack(archive, staging, say)
    files = _check_against_manifest(manifest, found)
    say("Every file matches the manifest. Checking the database ...")
    verdict = snapshot.quick_check(staging / DB_FILE)
    if verdict != "ok":
        raise InvalidInput(f"The database in {archive} failed SQLite's check ({verdict}).")
    say("The database is sound (SQLite quick_check).")
    config = load_config(staging)
    users.append_audit(
        staging / DB_FILE,
        action=BACKUP_RESTORED,
        detail=json.dumps(
            {"archive": archive.name, "written_at": str(manifest.get("created_at", ""))},
            sort_keys=True,
        ),
        now_ms=int(now.timestamp() * 1000),
    )
    (staging / "backups").mkdir(mode=0o700)
    (staging / _UPLOADS).mkdir(mode=0o700, exist_ok=True)
    snapshot.fsync_path(staging)
    if instance.exists():
        instance.rmdir()  # empty, checked above
    os.replace(staging, instance)
    snapshot.fsync_path(instance.parent)
    size = sum(entry["size"] for entry in files)
    return RestoreResult(
        instance, config.url, int(manifest.get("schema_version") or 0), len(files), size
    )


def _unpack(archive: Path, staging: Path, say: Say) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stream *archive* into *staging*; return the manifest and {name: (size, sha256)}."""
    manifest: dict[str, Any] | None = None
    found: dict[str, Any] = {}
    total = archive.stat().st_size
    progress = _Progress(say, "restoring", total)
    say(f"Reading {archive} ({_mb(total)}) ...")
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                name = _member_name(member)
                if name is None:
                    continue
                if name in found or (name == MANIFEST and manifest is not None):
                    raise InvalidInput(f"{archive} holds {name} twice; refusing it.")
                source = tar.extractfile(member)
                if source is None:
                    raise InvalidInput(f"{archive}: cannot read {name}.")
                if name == MANIFEST:
                    manifest = _read_manifest(source, member.size)
                    continue
                found[name] = _write_member(source, staging, name, lambda: progress(raw.tell()))
    except tarfile.TarError as exc:
        raise InvalidInput(f"{archive} is not a readable tar archive ({exc}).") from None
    if manifest is None:
        raise InvalidInput(f"{archive} has no {MANIFEST}: not a Steelyard backup.")
    return manifest, found


def _member_name(member: tarfile.TarInfo) -> str | None:
    """The member's checked name; None for a folder entry (skipped): the archive's root (as
    ``tar -C DIR -cf out.tar .`` writes it), ``uploads/`` or a folder under it."""
    path = PurePosixPath(member.name)  # "./config.toml" reads as "config.toml"
    parts = path.parts
    fixed = {MANIFEST, DB_FILE, CONFIG_FILE, SECRET_FILE}
    is_upload = len(parts) >= 2 and parts[0] == _UPLOADS and _is_upload(PurePosixPath(*parts[1:]))
    if member.isdir() and (path.as_posix() in (".", _UPLOADS) or is_upload):
        return None
    if not (path.as_posix() in fixed or is_upload) or path.is_absolute():
        raise InvalidInput(f"Refusing archive member {member.name!r}: not part of a backup.")
    if not member.isreg():
        raise InvalidInput(f"Refusing archive member {member.name!r}: not a regular file.")
    return path.as_posix()


def _read_manifest(source: IO[bytes], size: int) -> dict[str, Any]:
    if size > _MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{MANIFEST} is too large.")
    try:
        manifest = json.loads(source.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{MANIFEST} is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise InvalidInput("Not a Steelyard backup (its manifest names another format).")
    if manifest.get("version") != FORMAT_VERSION:
        raise InvalidInput(
            f"This backup has format version {manifest.get('version')!r}; this Steelyard"
            f" reads version {FORMAT_VERSION}. Restore it with the release that wrote it."
        )
    if not isinstance(manifest.get("files"), list):
        raise InvalidInput(f"{MANIFEST} lists no files.")
    return manifest


def _write_member(
    source: IO[bytes], staging: Path, name: str, tick: Callable[[], None]
) -> tuple[int, str]:
    path = staging
    for part in PurePosixPath(name).parts[:-1]:
        path = path / part
        path.mkdir(mode=0o700, exist_ok=True)  # one by one: parents=True ignores the mode
    path = staging / name
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in _chunks(source):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
            tick()
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


def _check_against_manifest(
    manifest: dict[str, Any], found: dict[str, tuple[int, str]]
) -> list[dict[str, Any]]:
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InvalidInput(f"{MANIFEST} has an unreadable entry.")
        listed[entry["path"]] = entry
    for required in (DB_FILE, CONFIG_FILE, SECRET_FILE):
        if required not in listed:
            raise InvalidInput(f"The backup has no {required}.")
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    if missing or extra:
        raise InvalidInput(
            "The archive does not match its manifest"
            f" (missing: {', '.join(missing) or 'none'}; unlisted: {', '.join(extra) or 'none'})."
        )
    for name, (size, sha256) in found.items():
        entry = listed[name]
        if entry.get("size") != size or entry.get("sha256") != sha256:
            raise InvalidInput(f"{name} in the archive is damaged (its checksum does not match).")
    return list(listed.values())


# -- what the admin page shows ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupRecord:
    at: int
    action: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BackupFile:
    name: str
    size: int
    modified_ms: int


@dataclass(frozen=True, slots=True)
class BackupOverview:
    records: list[BackupRecord]
    files: list[BackupFile]  # in the instance's backups/ folder, newest first
    last_written: int | None  # epoch ms of the newest backup on record
    stale: bool  # no backup on record, or the newest older than STALE_AFTER_MS


async def overview(ctx: Context) -> BackupOverview:
    entries = await ctx.db.read(users.select_audit, (BACKUP_WRITTEN, BACKUP_RESTORED), limit=_SHOWN)
    records = [BackupRecord(e.at, e.action, _detail(e.detail)) for e in entries]
    written = [r.at for r in records if r.action == BACKUP_WRITTEN]
    last = max(written) if written else None
    files = await asyncio.to_thread(_files, ctx.config.backups_dir)
    stale = last is None or ctx.clock.now_ms() - last > STALE_AFTER_MS
    return BackupOverview(records, files, last, stale)


async def has_backup(ctx: Context) -> bool:
    return bool(await ctx.db.read(users.select_audit, (BACKUP_WRITTEN,), limit=1))


def _detail(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _files(folder: Path) -> list[BackupFile]:
    """Complete backups and pre-migration copies in *folder* (not ``.partial`` leftovers)."""
    found: list[BackupFile] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        name = entry.name
        complete = name.endswith((".tar", ".sqlite3")) and name.startswith(
            ("steelyard-backup-", "pre-migration-")
        )
        if complete and entry.is_file():
            info = entry.stat()
            found.append(BackupFile(name, info.st_size, int(info.st_mtime * 1000)))
    return sorted(found, key=lambda f: f.modified_ms, reverse=True)
