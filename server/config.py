"""Settings of one instance: ``<instance>/config.toml`` plus ``STEELYARD_*`` environment, frozen.

The instance folder holds everything the company owns: ``config.toml``, ``secret_key`` (0600),
``steelyard.sqlite3`` (with its WAL), ``uploads/`` and ``backups/``. Loading validates every value
and raises :class:`InstanceError` with one clear sentence; nothing here has side effects.

A *development instance* is one whose URL is plain ``http://`` on a loopback address: only there
may federation use plain http with loopback peers (federation refuses both otherwise).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.errors import InstanceError, InvalidInput

CONFIG_FILE = "config.toml"
SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
DB_FILE = "steelyard.sqlite3"


@dataclass(frozen=True, slots=True)
class Config:
    instance_path: Path
    url: str  # canonical base URL, no trailing slash
    name: str
    secret_key: str
    bind: str = "127.0.0.1:8000"
    # FULL: a commit is fsynced before we answer; see README "Durability" for the measurement.
    synchronous: str = "FULL"
    max_upload_bytes: int = 5 * 1024 * 1024
    max_form_bytes: int = 256 * 1024
    # Reverse proxies in front that each append the client's address to X-Forwarded-For; 0
    # (the default) trusts no such header, since anyone can send one.
    proxy_hops: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """Host as it appears in URLs and the Host header: lowercase, with a non-default port."""
        return urlsplit(self.url).netloc.lower()

    @property
    def hostname(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def is_development(self) -> bool:
        return self.scheme == "http" and _is_loopback_name(self.hostname)

    @property
    def db_path(self) -> Path:
        return self.instance_path / DB_FILE

    @property
    def uploads_dir(self) -> Path:
        return self.instance_path / "uploads"

    @property
    def backups_dir(self) -> Path:
        return self.instance_path / "backups"


def _is_loopback_name(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_url(url: str) -> str:
    """Check an instance base URL and return it without a trailing slash.

    https is required, except for plain http on a loopback address (a development instance).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"Invalid URL {url!r}: {exc}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"Invalid URL {url!r}: expected https://host[:port].")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(f"Invalid URL {url!r}: no user, query or fragment allowed.")
    if parts.path not in ("", "/"):
        raise InvalidInput(f"Invalid URL {url!r}: the instance must be served at the root path.")
    if parts.scheme == "http" and not _is_loopback_name(parts.hostname):
        raise InvalidInput(
            f"Invalid URL {url!r}: plain http is only allowed on loopback; use https."
        )
    if port == 0:
        raise InvalidInput(f"Invalid URL {url!r}: port 0.")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def load_config(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate the instance's configuration."""
    instance_path = instance_path.resolve()
    config_file = instance_path / CONFIG_FILE
    if not config_file.is_file():
        raise InstanceError(
            f"No instance at {instance_path}: run 'steelyard init --url URL' first."
        )
    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InstanceError(f"Cannot read {config_file}: {exc}.") from None
    try:
        secret_key = (instance_path / SECRET_FILE).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InstanceError(f"Cannot read the instance secret key: {exc}.") from None
    if len(secret_key) < 32:
        raise InstanceError("The instance secret key is too short.")
    section = data.get("instance", {})
    server = data.get("server", {})
    values: dict[str, Any] = {
        "url": section.get("url", ""),
        "name": section.get("name", "Steelyard"),
        "bind": os.environ.get("STEELYARD_BIND", server.get("bind", "127.0.0.1:8000")),
        "synchronous": server.get("synchronous", "FULL"),
        "proxy_hops": server.get("proxy_hops", 0),
        "workers": server.get("workers", 1),
        # Start an applier process when the inbox backs up (server/applier.py).
        "applier": bool(server.get("applier", True)),
    }
    values.update(overrides or {})
    try:
        url = validate_url(str(values["url"]))
    except InvalidInput as exc:
        raise InstanceError(f"{config_file}: {exc.message}") from None
    synchronous = str(values["synchronous"]).upper()
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise InstanceError(f"{config_file}: synchronous must be FULL, EXTRA or NORMAL.")
    hops = values["proxy_hops"]
    if not isinstance(hops, int) or isinstance(hops, bool) or not 0 <= hops <= 5:
        raise InstanceError(f"{config_file}: proxy_hops must be a whole number from 0 to 5.")
    known = {"url", "name", "bind", "synchronous", "proxy_hops"}
    return Config(
        instance_path=instance_path,
        url=url,
        name=str(values["name"]),
        secret_key=secret_key,
        bind=str(values["bind"]),
        synchronous=synchronous,
        proxy_hops=hops,
        extra={k: v for k, v in values.items() if k not in known},
    )


def render_config_toml(url: str, name: str) -> str:
    """The config file written by ``steelyard init``."""
    return (
        "# Steelyard instance configuration. See config.example.toml for every setting.\n"
        "[instance]\n"
        f"url = {_toml_str(url)}\n"
        f"name = {_toml_str(name)}\n\n"
        "[server]\n"
        'bind = "127.0.0.1:8000"\n'
        'synchronous = "FULL"\n'
    )


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
