"""The ``steelyard`` command: init, serve, users, the federation allowlist, backup and restore.

Every command has ``--help``; every failure prints one clear line to stderr and exits non-zero.
``--instance DIR`` (or ``STEELYARD_INSTANCE``) names the instance folder, ``./instance`` by
default. ``init`` writes nothing unless it can write everything.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from server import cli_backups
from server.clock import SystemClock
from server.config import (
    CONFIG_FILE,
    SECRET_FILE,
    Config,
    load_config,
    render_config_toml,
    validate_url,
)
from server.errors import SteelyardError

# Kept in step with server.services.allowlist.RELATIONS (which validates); not imported from
# there so that ``steelyard --help`` stays fast.
FEDERATION_RELATIONS = ("partner", "supplier", "customer")


def _instance_default() -> str:
    return os.environ.get("STEELYARD_INSTANCE", "instance")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steelyard",
        description="Steelyard: a self-hosted, federated enterprise social network.",
    )
    parser.add_argument(
        "--instance",
        default=_instance_default(),
        metavar="DIR",
        help="instance folder (default: $STEELYARD_INSTANCE or ./instance)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="create a new instance folder")
    init.add_argument(
        "--url", required=True, help="public base URL, e.g. https://social.acme.example"
    )
    init.add_argument(
        "--name", default=None, help="the instance's display name (default: the host)"
    )

    serve = commands.add_parser("serve", help="serve the instance with Hypercorn")
    serve.add_argument(
        "--bind",
        default=None,
        metavar="HOST:PORT",
        help="address to listen on (default: from config, 127.0.0.1:8000)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: [server] workers in config.toml, else 1); one per"
        " core uses every core; live updates and background work are coordinated",
    )

    user = commands.add_parser("user", help="manage accounts")
    user_cmds = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    create = user_cmds.add_parser("create", help="create an account")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make the account an administrator")
    create.add_argument("--display-name", default="", help="the person's full name")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (otherwise a one-time password is printed)",
    )
    user_cmds.add_parser("list", help="list accounts")
    deactivate = user_cmds.add_parser("deactivate", help="deactivate an account (posts are kept)")
    deactivate.add_argument("username")
    activate = user_cmds.add_parser("activate", help="reactivate a deactivated account")
    activate.add_argument("username")
    delete = user_cmds.add_parser(
        "delete",
        help="delete an account for good (partner servers are told; the archive keeps it)",
        description="Delete an account: sign-in refused, the person leaves the directory and"
        " federation, and partner servers that follow or are followed by them receive a"
        " Delete. Posts and profile versions stay in the compliance archive. This cannot be"
        " undone; to suspend someone, use `user deactivate`.",
    )
    delete.add_argument("username")
    delete.add_argument(
        "--yes", action="store_true", help="confirm (required: the deletion is final)"
    )
    password = user_cmds.add_parser("password", help="set a new password for an account")
    password.add_argument("username")
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    _add_federation_parser(commands)
    cli_backups.add_parsers(commands)
    apply = commands.add_parser(
        "apply-inbound",
        help="apply received federation activities in a process of its own",
        description="Apply the activities partner servers sent to this instance's inboxes, in"
        " a process of its own, taking turns with the server through a lock in the instance"
        " folder. `serve` starts one by itself when its inbox backs up; run this by hand to"
        " keep one running. Stops on SIGTERM or Ctrl-C.",
    )
    apply.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this many seconds with nothing to apply (default: run until stopped)",
    )
    apply.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def _add_federation_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``steelyard federation …``: the allowlist of hosts we federate with."""
    federation = commands.add_parser(
        "federation",
        help="manage the allowlist of hosts this instance federates with",
        description="Only hosts on the allowlist can exchange posts, follows and messages"
        " with this instance. Removing a host cancels its queued deliveries (they are kept"
        " for the record) and freezes follows; adding it again thaws them.",
    )
    actions = federation.add_subparsers(dest="federation_command", metavar="ACTION", required=True)
    allow = actions.add_parser(
        "allow",
        help="allow a host (or change its relation or note)",
        description="Allow a host. Give only the host, with a port if it is not the default:"
        " partner.example or partner.example:8443.",
    )
    allow.add_argument("host", metavar="HOST[:PORT]")
    allow.add_argument(
        "--relation",
        required=True,
        metavar="{" + ",".join(FEDERATION_RELATIONS) + "}",
        help="how the organization on that host relates to yours",
    )
    allow.add_argument("--note", default="", metavar="TEXT", help="a note for other admins")
    deny = actions.add_parser(
        "deny",
        help="remove a host from the allowlist",
        description="Remove a host. Queued deliveries to it are cancelled and kept for the"
        " record; follows with its people are frozen. Nothing is deleted.",
    )
    deny.add_argument("host", metavar="HOST[:PORT]")
    actions.add_parser(
        "list",
        help="list allowed and removed hosts with delivery health",
        description="Allowed and removed hosts, who added them and when (UTC), and the state"
        " of deliveries to each.",
    )
    resend = actions.add_parser(
        "resend",
        help="the partner is back: send held and waiting deliveries now",
        description="Put held and dead deliveries back in the queue, lift the host's retry"
        " pause and make its queued deliveries due now, for one host or for every allowed"
        " host. A running server picks them up within its next poll.",
    )
    resend.add_argument(
        "host", nargs="?", default=None, metavar="HOST[:PORT]", help="only this host"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    instance = Path(args.instance)
    try:
        if args.command == "init":
            return cmd_init(instance, args.url, args.name)
        if args.command == "serve":
            return cmd_serve(instance, args.bind, args.workers)
        if args.command == "user":
            return asyncio.run(cmd_user(instance, args))
        if args.command == "federation":
            return asyncio.run(cmd_federation(instance, args))
        if args.command == "backup":
            return cli_backups.cmd_backup(instance, args.to)
        if args.command == "restore":
            return cli_backups.cmd_restore(instance, args.archive)
        if args.command == "apply-inbound":
            return cmd_apply_inbound(instance, args.idle_exit, args.parent_pid)
    except SteelyardError as exc:
        print(f"steelyard: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error("unknown command")
    return 2


def cmd_init(instance: Path, url: str, name: str | None) -> int:
    from server.bootstrap import prepare_database

    base = validate_url(url)
    if (instance / CONFIG_FILE).exists():
        raise SteelyardError(f"{instance} already holds an instance; refusing to overwrite it.")
    created_dir = not instance.exists()
    written: list[Path] = []
    try:
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        instance.chmod(0o700)
        for sub in ("uploads", "backups"):
            folder = instance / sub
            folder.mkdir(mode=0o700, exist_ok=True)
            written.append(folder)
        secret = instance / SECRET_FILE
        _write_private(secret, secrets.token_urlsafe(48) + "\n")
        written.append(secret)
        # The config goes in last: its presence is what makes the folder an instance, and
        # on any failure below everything written here is removed again.
        display = name or base.split("://", 1)[1]
        config_file = instance / CONFIG_FILE
        _write_private(config_file, render_config_toml(base, display))
        written.append(config_file)
        config = load_config(instance)
        written.extend(
            config.db_path.with_name(config.db_path.name + suffix)
            for suffix in ("", "-wal", "-shm")
        )
        prepare_database(config, SystemClock())
        config.db_path.chmod(0o600)
    except BaseException:
        for path in reversed(written):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if created_dir:
            shutil.rmtree(instance, ignore_errors=True)
        raise
    print(f"Created instance {base} in {instance.resolve()}")
    print(f"Next: steelyard --instance {instance} user create NAME --admin")
    return 0


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def cmd_serve(instance: Path, bind: str | None, workers: int | None = None) -> int:
    from server.bootstrap import ServeLock

    config = load_config(instance)
    count = workers if workers is not None else int(config.extra.get("workers", 1))
    if not 1 <= count <= 16:
        raise SteelyardError("--workers must be between 1 and 16.")
    serve_lock = ServeLock(config)
    serve_lock.acquire()  # before migrating: a second server must not touch the schema
    try:
        return _serve(config, bind, count)
    finally:
        serve_lock.release()


def _serve(config: Config, bind: str | None, count: int) -> int:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HyperConfig

    # Migrate before Hypercorn starts: its startup step may take only startup_timeout (60 s by
    # default), and the backup before an upgrade of a large instance can take longer.
    from server.bootstrap import configure_logging, prepare_database

    configure_logging()
    prepare_database(config, SystemClock())
    hyper = HyperConfig()
    hyper.startup_timeout = 600  # a worker may still wait for another process's migration
    hyper.bind = [bind or config.bind]
    hyper.accesslog = None
    # Through our logging set-up (one format, one stream), not a second handler of its own.
    hyper.errorlog = logging.getLogger("hypercorn.error")
    hyper.graceful_timeout = 5
    hyper.keep_alive_timeout = 30
    hyper.read_timeout = 60
    print(
        f"Serving {config.name} ({config.url}) on http://{hyper.bind[0]}"
        f" ({count} process{'es' if count > 1 else ''})",
        flush=True,
    )
    if count == 1:
        from server.app import create_app

        asyncio.run(serve(create_app(config.instance_path), hyper))
        return 0
    from hypercorn.run import run

    # Several processes share the socket; each builds the app from the environment.
    os.environ["STEELYARD_INSTANCE"] = str(config.instance_path.resolve())
    hyper.application_path = "server.asgi:create_from_env()"
    hyper.workers = count
    return run(hyper)


def cmd_apply_inbound(instance: Path, idle_exit: float | None, parent_pid: int | None) -> int:
    from server.applier import run_applier
    from server.bootstrap import configure_logging
    from server.processes import die_with_parent

    if parent_pid is not None:
        die_with_parent(parent_pid)
    load_config(instance)  # a missing or broken instance is reported before anything starts
    configure_logging()
    asyncio.run(run_applier(instance, idle_exit=idle_exit))
    return 0


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password and whether it was generated (and must be shown once)."""
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise SteelyardError("No password on standard input.")
        return value, False
    from server.services.accounts import generate_password

    return generate_password(), True


async def cmd_user(instance: Path, args: argparse.Namespace) -> int:
    from server.bootstrap import open_context
    from server.services import accounts
    from server.storage import users

    async with open_context(instance) as ctx:
        if args.user_command == "create":
            password, generated = _read_password(args.password_stdin)
            actor = await accounts.create_user(
                ctx,
                args.username,
                password,
                display_name=args.display_name,
                is_admin=args.admin,
                one_time=generated,
            )
            role = "administrator" if args.admin else "user"
            print(f"Created {role} {actor.username} ({actor.uri})")
            if generated:
                print(f"One-time password for {actor.username}: {password}")
                print("The first sign-in asks to choose a new one.")
        elif args.user_command == "list":
            for entry in await ctx.db.read_in_thread(users.select_accounts):
                flags = ",".join(
                    f
                    for f, on in (
                        ("admin", entry.account.is_admin),
                        ("deactivated", not entry.account.is_active),
                    )
                    if on
                )
                print(f"{entry.actor.username}\t{entry.actor.display_name}\t{flags}")
        elif args.user_command in ("deactivate", "activate"):
            active = args.user_command == "activate"
            actor = await accounts.set_active(ctx, args.username, active=active, by=None)
            print(f"{actor.username} {'reactivated' if active else 'deactivated'}")
        elif args.user_command == "delete":
            if not args.yes:
                raise SteelyardError(
                    f"Deleting {args.username} is final; run again with --yes to confirm."
                )
            actor = await accounts.delete_user(ctx, args.username, by=None)
            print(
                f"{actor.username} deleted; the running server tells partner servers"
                " (queued deliveries go out on its next poll)"
            )
        elif args.user_command == "password":
            password, generated = _read_password(args.password_stdin)
            actor_row = await ctx.db.read(users.select_local_actor, args.username)
            if actor_row is None:
                raise SteelyardError(f"No user named {args.username!r}.")
            from server import passwords

            passwords.check_policy(password, username=actor_row.username)
            await accounts.set_password(ctx, actor_row.id, password, one_time=generated)
            print(f"Password changed for {actor_row.username}")
            if generated:
                print(f"One-time password for {actor_row.username}: {password}")
    return 0


def _cli_actor() -> str:
    """Who the allowlist records as having made a change from the command line."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no $USER and no passwd entry (some containers)
        return "cli"
    return f"cli:{user}" if user else "cli"


def _utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


async def cmd_federation(instance: Path, args: argparse.Namespace) -> int:
    from server.bootstrap import open_context
    from server.services import allowlist

    by = _cli_actor()
    async with open_context(instance) as ctx:
        if args.federation_command == "allow":
            host = await allowlist.allow(
                ctx, args.host, relation=args.relation, note=args.note, by=by
            )
            print(allowlist.added_message(host, args.relation))
        elif args.federation_command == "deny":
            host = allowlist.canonical_host(ctx, args.host)
            cancelled = await allowlist.deny(ctx, host, by=by)
            print(allowlist.removed_message(host, cancelled))
        elif args.federation_command == "resend":
            only = allowlist.canonical_host(ctx, args.host) if args.host else None
            count, hurried = await allowlist.resend(ctx, only, by=by)
            print(allowlist.resent_message(only, count, hurried))
        elif args.federation_command == "list":
            entries = await allowlist.listing(ctx)
            if not entries:
                print(
                    "No hosts on the allowlist. Add one with:"
                    " steelyard federation allow HOST --relation partner"
                )
                return 0
            header = (
                "HOST",
                "RELATION",
                "STATE",
                "ADDED (UTC)",
                "BY",
                "REMOVED (UTC)",
                "QUEUED",
                "FAILING",
                "HELD",
                "DEAD",
                "LAST SUCCESS (UTC)",
                "NOTE",
            )
            rows = [
                (
                    e.host,
                    e.relation,
                    e.state,
                    _utc(e.added_at),
                    e.added_by,
                    f"{_utc(e.removed_at)} by {e.removed_by}" if e.removed_at else "-",
                    str(e.queued),
                    str(e.failing),
                    str(e.held),
                    str(e.dead),
                    _utc(e.last_success_at),
                    e.note or "-",
                )
                for e in entries
            ]
            _print_table(header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
