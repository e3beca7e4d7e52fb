"""``steelyard federation`` end to end: allow, list, deny, resend, hostile host spellings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fed") / "acme"
    result = run_cli("--instance", str(path), "init", "--url", "https://social.acme.example")
    assert result.returncode == 0, result.stderr
    return path


def fed(instance: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("--instance", str(instance), "federation", *args)
    return result.returncode, result.stdout, result.stderr


def list_rows(instance: Path) -> dict[str, list[str]]:
    code, out, err = fed(instance, "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["HOST", "RELATION", "STATE"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def assert_one_line_error(code: int, out: str, err: str) -> str:
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("steelyard: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["federation", "--help"],
        ["federation", "allow", "--help"],
        ["federation", "deny", "--help"],
        ["federation", "list", "--help"],
        ["federation", "resend", "--help"],
    ],
)
def test_every_federation_command_has_help(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "usage: steelyard federation" in result.stdout


def test_relations_in_cli_match_the_service() -> None:
    from server import cli
    from server.services import allowlist

    assert cli.FEDERATION_RELATIONS == allowlist.RELATIONS


def test_allow_then_list_shows_relation_and_note(instance: Path) -> None:
    code, out, err = fed(instance, "allow", "Partner.Example", "--relation", "partner")
    assert code == 0, err
    assert out.strip() == "partner.example added as partner."
    code, out, err = fed(
        instance, "allow", "supplies.example:8443", "--relation", "supplier", "--note", "Bolts"
    )
    assert code == 0, err
    rows = list_rows(instance)
    assert rows["partner.example"][1:3] == ["partner", "allowed"]
    supplier = rows["supplies.example:8443"]
    assert supplier[1:3] == ["supplier", "allowed"]
    assert supplier[-1] == "Bolts"
    assert any(cell.startswith("cli") for cell in supplier)


def test_default_https_port_is_dropped(instance: Path) -> None:
    code, out, err = fed(instance, "allow", "customer.example:443", "--relation", "customer")
    assert code == 0, err
    assert out.strip() == "customer.example added as customer."
    assert "customer.example" in list_rows(instance)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example@partner.example",
        "partner.example/x",
        "http://partner.example",
        "partner..example",
        "",
        "   ",
        "partner.example\nsecond line",
        "127.1",
    ],
)
def test_hostile_spellings_are_refused_with_one_line(instance: Path, host: str) -> None:
    line = assert_one_line_error(*fed(instance, "allow", host, "--relation", "partner"))
    assert "host name" in line
    rows = list_rows(instance)
    assert not any("evil" in name or "/" in name or "@" in name for name in rows)


def test_own_host_is_refused(instance: Path) -> None:
    line = assert_one_line_error(
        *fed(instance, "allow", "social.acme.example", "--relation", "partner")
    )
    assert "own host" in line


def test_bad_relation_exits_1(instance: Path) -> None:
    line = assert_one_line_error(*fed(instance, "allow", "x.example", "--relation", "friend"))
    assert "partner, supplier, customer" in line
    assert "x.example" not in list_rows(instance)


def test_overlong_note_exits_1(instance: Path) -> None:
    line = assert_one_line_error(
        *fed(instance, "allow", "x.example", "--relation", "partner", "--note", "n" * 501)
    )
    assert "too long" in line


def test_deny_unknown_host_exits_1(instance: Path) -> None:
    line = assert_one_line_error(*fed(instance, "deny", "stranger.example"))
    assert "stranger.example is not on the allowlist" in line


def test_deny_then_list_shows_removed(instance: Path) -> None:
    code, _, err = fed(instance, "allow", "leaving.example", "--relation", "customer")
    assert code == 0, err
    code, out, err = fed(instance, "deny", "LEAVING.example")
    assert code == 0, err
    assert out.startswith("leaving.example removed:")
    row = list_rows(instance)["leaving.example"]
    assert row[1:3] == ["customer", "removed"]
    # Removing twice says so, and resending to a removed host is refused.
    assert "already removed" in assert_one_line_error(*fed(instance, "deny", "leaving.example"))
    assert "removed" in assert_one_line_error(*fed(instance, "resend", "leaving.example"))
    # Allowing again brings it back.
    code, _, err = fed(instance, "allow", "leaving.example", "--relation", "partner")
    assert code == 0, err
    assert list_rows(instance)["leaving.example"][1:3] == ["partner", "allowed"]


def test_resend(instance: Path) -> None:
    assert fed(instance, "allow", "partner.example", "--relation", "partner")[0] == 0
    code, out, err = fed(instance, "resend")
    assert code == 0, err
    assert "all allowed hosts" in out
    code, out, err = fed(instance, "resend", "partner.example")
    assert code == 0, err
    assert "partner.example" in out
    assert_one_line_error(*fed(instance, "resend", "partner.example/x"))


def test_missing_instance_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(*fed(tmp_path / "nowhere", "list"))
