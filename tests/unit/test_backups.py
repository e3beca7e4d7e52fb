"""``steelyard backup`` / ``restore`` (server.services.backups): a hot copy that restores to the
same instance, and archives that try to write where they should not are refused whole."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.config import load_config
from server.errors import InstanceError, InvalidInput
from server.services import backups
from server.storage import snapshot
from tests.conftest import make_instance

NOW = dt.datetime(2026, 12, 3, 21, 30, 5, tzinfo=dt.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _instance(tmp_path: Path) -> Path:
    inst = make_instance(tmp_path / "acme", url="https://social.acme.example", name="ACME")
    conn = sqlite3.connect(inst / "steelyard.sqlite3")
    with conn:
        conn.executemany(
            "INSERT INTO audit_log (at, action) VALUES (?, ?)",
            ((i, f"entry {i}") for i in range(500)),
        )
    conn.close()
    avatars = inst / "uploads" / "avatars"
    avatars.mkdir(mode=0o700)
    (avatars / "a1.png").write_bytes(b"\x89PNG fake avatar")
    (inst / "backups" / "pre-migration-0001-1.sqlite3").write_bytes(b"not part of a backup")
    return inst


def _backup(inst: Path, dest: Path, said: list[str] | None = None) -> Path:
    result = backups.create_backup(
        load_config(inst), dest, now=NOW, say=(said.append if said is not None else print)
    )
    return result.path


def _count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute(
                "SELECT count(*) FROM audit_log WHERE action NOT LIKE 'backup.%'"
            ).fetchone()[0]
        )
    finally:
        conn.close()


def test_a_backup_restores_to_the_same_instance(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    said: list[str] = []
    archive = _backup(inst, tmp_path / "out", said)
    assert archive.name == "steelyard-backup-20261203T213005Z.tar"
    assert _mode(archive) == 0o600
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no leftovers
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names == [
        "steelyard.sqlite3",
        "config.toml",
        "secret_key",
        "uploads/avatars/a1.png",
        "manifest.json",
    ]  # no lock files, no pre-migration copies
    assert any("encrypt" in line or "Writing" in line for line in said)

    target = tmp_path / "restored"
    result = backups.restore_backup(archive, target, say=said.append)
    assert result.url == "https://social.acme.example"
    assert result.schema_version == snapshot.schema_version(inst / "steelyard.sqlite3") > 0
    assert _count(target / "steelyard.sqlite3") == 500
    for name in ("config.toml", "secret_key", "uploads/avatars/a1.png"):
        assert (target / name).read_bytes() == (inst / name).read_bytes()
        assert _mode(target / name) == 0o600
    for folder in (target, target / "uploads", target / "uploads" / "avatars", target / "backups"):
        assert _mode(folder) == 0o700
    assert list((target / "backups").iterdir()) == []
    assert load_config(target).secret_key == load_config(inst).secret_key
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging


def test_a_backup_taken_while_writes_go_on_is_a_consistent_moment(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    stop = threading.Event()
    written: list[int] = []

    def write_on() -> None:
        conn = sqlite3.connect(inst / "steelyard.sqlite3", timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        i = 0
        while not stop.is_set():
            with conn:  # two rows per transaction: a copy holds both or neither
                conn.execute("INSERT INTO audit_log (at, action) VALUES (?, 'a')", (10_000 + i,))
                conn.execute("INSERT INTO audit_log (at, action) VALUES (?, 'b')", (10_000 + i,))
            i += 1
            written.append(i)
        conn.close()

    writer = threading.Thread(target=write_on)
    writer.start()
    try:
        while len(written) < 20:
            stop.wait(0.01)
        archive = _backup(inst, tmp_path / "out", [])
    finally:
        stop.set()
        writer.join()
    backups.restore_backup(archive, tmp_path / "restored", say=lambda _: None)
    copy = tmp_path / "restored" / "steelyard.sqlite3"
    assert snapshot.quick_check(copy) == "ok"
    rows = _count(copy) - 500
    assert rows % 2 == 0 and 40 <= rows <= 2 * len(written)


def test_restore_never_overwrites_and_names_what_it_refuses(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    archive = _backup(inst, tmp_path / "out", [])
    before = (inst / "steelyard.sqlite3").read_bytes()
    with pytest.raises(InvalidInput, match="already holds an instance"):
        backups.restore_backup(archive, inst, say=lambda _: None)
    assert (inst / "steelyard.sqlite3").read_bytes() == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):
        backups.restore_backup(archive, busy, say=lambda _: None)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    backups.restore_backup(archive, empty, say=lambda _: None)  # an empty folder is fine
    assert _count(empty / "steelyard.sqlite3") == 500


def _rewrite(
    archive: Path,
    out: Path,
    *,
    change: Callable[[tarfile.TarInfo, bytes], tuple[tarfile.TarInfo, bytes] | None] = (
        lambda info, data: (info, data)
    ),
    add: list[tuple[tarfile.TarInfo, bytes]] | None = None,
    unlisted: frozenset[str] = frozenset(),
) -> Path:
    """A copy of *archive* with members changed, dropped (None) or added before the manifest,
    whose manifest no longer lists the paths in *unlisted*."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            extracted = src.extractfile(info)
            assert extracted is not None
            data = extracted.read()
            if info.name == "manifest.json":
                manifest = json.loads(data)
                manifest["files"] = [f for f in manifest["files"] if f["path"] not in unlisted]
                for extra_info, extra_data in add or []:
                    dst.addfile(extra_info, io.BytesIO(extra_data) if extra_info.isreg() else None)
                data = json.dumps(manifest).encode()
                info.size = len(data)
            else:
                changed = change(info, data)
                if changed is None:
                    continue
                info, data = changed
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else "secret_key"
    return info, data


def _tampered(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    if info.name == "config.toml":
        return info, data.replace(b"ACME", b"EVIL")
    return info, data


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("parent", "not part of a backup"),
        ("absolute", "not part of a backup"),
        ("upload-escape", "not part of a backup"),
        ("hidden-upload", "not part of a backup"),
        ("symlink", "not a regular file"),
        ("hardlink", "not a regular file"),
        ("unlisted", "does not match its manifest"),
        ("tampered", "damaged"),
        ("missing", "does not match its manifest"),
        ("duplicate", "twice"),
    ],
)
def test_a_hostile_or_damaged_archive_writes_nothing(
    tmp_path: Path, case: str, message: str
) -> None:
    inst = _instance(tmp_path)
    good = _backup(inst, tmp_path / "out", [])
    bad = tmp_path / "bad.tar"
    if case == "parent":
        _rewrite(good, bad, add=[_member("../evil", b"pwned")])
    elif case == "absolute":
        _rewrite(good, bad, add=[_member(str(tmp_path / "evil"), b"pwned")])
    elif case == "upload-escape":
        _rewrite(good, bad, add=[_member("uploads/../../evil", b"pwned")])
    elif case == "hidden-upload":
        _rewrite(good, bad, add=[_member("uploads/.htaccess", b"pwned")])
    elif case == "symlink":
        _rewrite(good, bad, add=[_member("uploads/evil", kind=tarfile.SYMTYPE)])
    elif case == "hardlink":
        _rewrite(good, bad, add=[_member("uploads/evil", kind=tarfile.LNKTYPE)])
    elif case == "unlisted":
        _rewrite(good, bad, add=[_member("uploads/evil.png", b"pwned")])
    elif case == "tampered":
        _rewrite(good, bad, change=_tampered)
    elif case == "missing":
        _rewrite(good, bad, change=lambda i, d: None if i.name.startswith("uploads/") else (i, d))
    elif case == "duplicate":
        _rewrite(good, bad, add=[_member("secret_key", b"attacker's secret")])
    target = tmp_path / "restored"
    with pytest.raises(InvalidInput, match=message):
        backups.restore_backup(bad, target, say=lambda _: None)
    assert not target.exists()
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging


def test_an_archive_that_is_not_a_backup_is_refused_clearly(tmp_path: Path) -> None:
    plain = tmp_path / "photos.tar"
    with tarfile.open(plain, "w") as tar:
        info, data = _member("config.toml", b"[instance]\n")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InvalidInput, match="not a Steelyard backup"):
        backups.restore_backup(plain, tmp_path / "r1", say=lambda _: None)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar file at all" * 100)
    with pytest.raises(InvalidInput, match="not a readable tar archive"):
        backups.restore_backup(garbage, tmp_path / "r2", say=lambda _: None)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_a_failed_backup_leaves_no_archive_and_the_next_one_names_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = _instance(tmp_path)
    out = tmp_path / "out"

    def full_disk(data: object, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "addfile", full_disk)
    with pytest.raises(InstanceError, match="no backup was written: No space left"):
        _backup(inst, out, [])
    assert list(out.iterdir()) == []  # neither the archive, its .partial, nor the db copy
    monkeypatch.undo()
    # A kill -9 leaves a .partial behind: never taken for a backup, and named next time
    (out / "steelyard-backup-20261203T200000Z.tar.partial").write_bytes(b"half")
    said: list[str] = []
    archive = _backup(inst, out, said)
    assert "steelyard-backup-20261203T200000Z.tar.partial" in said[0]
    assert archive.name == "steelyard-backup-20261203T213005Z.tar"
    second = _backup(inst, out, [])  # the same second again: a new name, nothing replaced
    assert second.name == "steelyard-backup-20261203T213005Z-2.tar"


def test_a_damaged_database_is_not_backed_up(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    db = inst / "steelyard.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    raw = bytearray(db.read_bytes())
    page = 4096
    for offset in range(3 * page, len(raw) - page, page):  # scribble over b-tree pages
        raw[offset : offset + 64] = b"\xff" * 64
    db.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises((InstanceError, sqlite3.DatabaseError)):
        _backup(inst, out, [])
    assert [p for p in out.iterdir() if p.suffix == ".tar"] == []


def test_long_steps_report_their_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = _instance(tmp_path)
    monkeypatch.setattr(backups, "_PROGRESS_EVERY", 0.0)
    said: list[str] = []
    archive = _backup(inst, tmp_path / "out", said)
    assert any(line.startswith("  archive ") and "%" in line for line in said), said
    said.clear()
    backups.restore_backup(archive, tmp_path / "restored", say=said.append)
    assert any(line.startswith("  restoring ") and "%" in line for line in said), said


def test_a_copy_damaged_on_its_way_to_disk_is_not_archived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is read back and checked before it is archived: a disk that mangles what it is
    given (VACUUM INTO itself succeeded) must not yield a backup that restores to nothing."""
    inst = _instance(tmp_path)
    vacuum = snapshot._vacuum_into

    def bad_disk(conn: sqlite3.Connection, path: Path) -> None:
        vacuum(conn, path)
        raw = bytearray(path.read_bytes())
        for offset in range(2 * 4096, len(raw) - 4096, 4096):
            raw[offset : offset + 64] = b"\xff" * 64
        path.write_bytes(bytes(raw))

    monkeypatch.setattr(snapshot, "_vacuum_into", bad_disk)
    out = tmp_path / "out"
    with pytest.raises(InstanceError, match="failed SQLite's check"):
        _backup(inst, out, [])
    assert list(out.iterdir()) == []


def test_a_restored_database_must_pass_sqlites_check(tmp_path: Path) -> None:
    """Checksums prove the archive is what was written, not that what was written is sound
    (a backup made by hand, or by a release with a bug): the database is checked too."""
    inst = _instance(tmp_path)
    good = _backup(inst, tmp_path / "out", [])
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        members = {info.name: (info, src.extractfile(info)) for info in src.getmembers()}
        contents = {name: handle.read() for name, (_, handle) in members.items() if handle}
        raw = bytearray(contents["steelyard.sqlite3"])
        for offset in range(2 * 4096, len(raw) - 4096, 4096):
            raw[offset : offset + 64] = b"\xff" * 64
        contents["steelyard.sqlite3"] = bytes(raw)
        manifest = json.loads(contents["manifest.json"])
        for entry in manifest["files"]:
            entry["sha256"] = hashlib.sha256(contents[entry["path"]]).hexdigest()
        contents["manifest.json"] = json.dumps(manifest).encode()
        for name, (info, _) in members.items():
            info.size = len(contents[name])
            dst.addfile(info, io.BytesIO(contents[name]))
    with pytest.raises(InvalidInput, match="failed SQLite's check"):
        backups.restore_backup(bad, tmp_path / "restored", say=lambda _: None)
    assert not (tmp_path / "restored").exists()


_KILLED_MID_BACKUP = """
import sys, time
from server import cli
from server.storage import snapshot

check = snapshot.quick_check

def check_then_hang(path):
    verdict = check(path)
    print("copied", flush=True)
    time.sleep(60)
    return verdict

snapshot.quick_check = check_then_hang
sys.exit(cli.main(["--instance", sys.argv[1], "backup", "--to", sys.argv[2]]))
"""


def test_a_backup_killed_mid_copy_is_named_by_the_next_one(tmp_path: Path) -> None:
    """kill -9 once the database copy is complete on disk: nothing there looks like a backup,
    and the next run names every file the killed one left (the copy is as large as the
    database)."""
    inst = _instance(tmp_path)
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MID_BACKUP, str(inst), str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line or line.strip() == "copied":
                break
        assert line.strip() == "copied", "the child never reached the copy"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    left = sorted(p.name for p in out.iterdir())
    assert left and not [name for name in left if name.endswith(".tar")]
    said: list[str] = []
    archive = _backup(inst, out, said)
    for name in left:
        assert name in said[0], (name, said[0])
    assert archive.name == "steelyard-backup-20261203T213005Z.tar"
    assert [p.name for p in out.iterdir() if p.name.endswith(".tar")] == [archive.name]


def test_uploads_a_restore_would_refuse_are_never_half_backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = _instance(tmp_path)
    uploads = inst / "uploads"
    (uploads / "avatars" / ".a2.png.tmp").write_bytes(b"half an avatar")  # being written
    (uploads / "avatars" / "link.png").symlink_to(inst / "secret_key")
    (uploads / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    said: list[str] = []
    archive = _backup(inst, tmp_path / "out", said)
    with tarfile.open(archive) as tar:
        uploaded = [n for n in tar.getnames() if n.startswith("uploads/")]
    assert uploaded == ["uploads/avatars/a1.png"]
    assert any("uploads/avatars/.a2.png.tmp" in line and "hidden" in line for line in said)
    assert any("uploads/avatars/link.png" in line and "link" in line for line in said)
    assert any("uploads/elsewhere" in line and "link" in line for line in said)
    backups.restore_backup(archive, tmp_path / "restored", say=lambda _: None)
    # A name the restore would refuse stops the backup before anything is written.
    (uploads / "avatars" / "a b.png").write_bytes(b"a space")
    out = tmp_path / "out2"
    with pytest.raises(InstanceError, match=r"uploads/avatars/a b\.png has a name a restore"):
        _backup(inst, out, [])
    assert list(out.iterdir()) == []
    (uploads / "avatars" / "a b.png").unlink()
    # An upload deleted between the listing and its turn is left out, and said so.
    listed = backups._uploads

    def deleted_after_listing(folder: Path, say: backups.Say) -> list[backups._Member]:
        found = listed(folder, say)
        (folder / "avatars" / "a1.png").unlink()
        return found

    monkeypatch.setattr(backups, "_uploads", deleted_after_listing)
    said.clear()
    result = backups.create_backup(load_config(inst), tmp_path / "out3", now=NOW, say=said.append)
    assert "Skipped uploads/avatars/a1.png: deleted while the backup ran." in said
    assert result.files == 3
    backups.restore_backup(result.path, tmp_path / "restored3", say=lambda _: None)


def test_an_archive_repacked_by_tar_restores(tmp_path: Path) -> None:
    """``tar -C DIR -cf out.tar .`` names every member "./…" and adds "./" itself."""
    if shutil.which("tar") is None:
        pytest.skip("no tar here")
    inst = _instance(tmp_path)
    archive = _backup(inst, tmp_path / "out", [])
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    repacked = tmp_path / "repacked.tar.gz"
    subprocess.run(["tar", "-C", str(unpacked), "-czf", str(repacked), "."], check=True)
    with tarfile.open(repacked) as tar:
        assert "./config.toml" in tar.getnames()
    result = backups.restore_backup(repacked, tmp_path / "restored", say=lambda _: None)
    assert result.files == 4
    assert _count(tmp_path / "restored" / "steelyard.sqlite3") == 500


def test_a_restore_in_progress_or_interrupted_is_never_trampled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = _instance(tmp_path)
    archive = _backup(inst, tmp_path / "out", [])
    staging = tmp_path / ".restored.restoring"
    staging.mkdir()
    (staging / "secret_key").write_text("another restore's")
    with pytest.raises(InvalidInput, match="an interrupted restore left it"):
        backups.restore_backup(archive, tmp_path / "restored", say=lambda _: None)
    assert (staging / "secret_key").read_text() == "another restore's"
    assert not (tmp_path / "restored").exists()
    shutil.rmtree(staging)
    # A disk that fills up mid-restore: one clear line, and nothing left behind.
    real_write = backups._write_member

    def full_disk(source: object, staging_dir: Path, name: str, tick: object) -> object:
        if name.startswith("uploads/"):
            raise OSError(28, "No space left on device", str(staging_dir / name))
        return real_write(source, staging_dir, name, tick)  # type: ignore[arg-type]

    monkeypatch.setattr(backups, "_write_member", full_disk)
    with pytest.raises(InstanceError, match="nothing was written: No space left on device"):
        backups.restore_backup(archive, tmp_path / "restored", say=lambda _: None)
    assert not staging.exists() and not (tmp_path / "restored").exists()
    monkeypatch.undo()
    # A file where the target's parent folder should be: said as it is, not as a restore
    # left behind (there is no staging folder to remove).
    (tmp_path / "plainfile").write_text("not a folder")
    with pytest.raises(InstanceError, match="nothing was written: File exists"):
        backups.restore_backup(archive, tmp_path / "plainfile" / "inst", say=lambda _: None)
    # "." is a folder like any other: the staging goes next to it, not into it.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = backups.restore_backup(archive, Path("."), say=lambda _: None)
    assert result.instance == here
    assert _count(here / "steelyard.sqlite3") == 500
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_manifest_without_the_instances_files_is_refused(tmp_path: Path) -> None:
    """The archive may match its manifest and still not be an instance (no secret_key)."""
    inst = _instance(tmp_path)
    good = _backup(inst, tmp_path / "out", [])
    bad = _rewrite(
        good,
        tmp_path / "bad.tar",
        change=lambda info, data: None if info.name == "secret_key" else (info, data),
        unlisted=frozenset({"secret_key"}),
    )
    with pytest.raises(InvalidInput, match="has no secret_key"):
        backups.restore_backup(bad, tmp_path / "restored", say=lambda _: None)
    assert not (tmp_path / "restored").exists()


def test_an_unreadable_uploads_folder_fails_the_backup_instead_of_thinning_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = _instance(tmp_path)
    scandir = os.scandir

    def denied(path: str | os.PathLike[str]) -> object:
        if str(path).endswith("avatars"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)  # root reads any folder: chmod cannot show it
    out = tmp_path / "out"
    with pytest.raises(InstanceError, match="no backup was written: Permission denied"):
        _backup(inst, out, [])
    assert list(out.iterdir()) == []


def test_a_backup_that_cannot_be_put_on_record_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written but not on record: the archive stays, and the run fails (cron tells someone)
    rather than leaving the admin page to say no backup was made."""
    inst = _instance(tmp_path)

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(backups.users, "append_audit", locked)
    with pytest.raises(InstanceError, match="was written, but putting it on record failed"):
        _backup(inst, tmp_path / "out", [])
    assert [p.name for p in (tmp_path / "out").iterdir()] == [
        "steelyard-backup-20261203T213005Z.tar"
    ]
