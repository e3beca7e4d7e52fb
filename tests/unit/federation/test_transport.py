"""Transport: SSRF guard (SECURITY.md §1.3, §4), limits and timeouts (§1.6), on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from federation.aiohttp_transport import AiohttpTransport, FilteringResolver
from federation.transport import (
    DeferredTransport,
    RefusedAddressError,
    TransportError,
    is_allowed_address,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# --- is_allowed_address --------------------------------------------------------------------

REFUSED = [
    "::ffff:127.0.0.1",  # mapped loopback: is_loopback is False in 3.11
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",  # mapped addresses are refused as such (is_private)
    "224.0.0.1",  # multicast, yet is_global
    "239.255.255.250",
    "ff02::1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1, yet is_global
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1, yet is_global
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "100.64.0.1",  # carrier-grade NAT, not is_private
    "::",  # Mastodon CVE-2026-46348
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fec0::1",  # deprecated site-local, yet is_global
    "fc00::1",
    "fd12:3456::1",
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "::127.0.0.1",  # IPv4-compatible
    "192.0.0.8",  # is_global in 3.11.7
    "3fff::1",
    "5f00::1",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "240.0.0.1",
    "255.255.255.255",
    "2001:db8::1",
    "100::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_allowed_address(ip, allow_loopback=False)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_is_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_allowed_address(ip, allow_loopback=False)
    assert is_allowed_address(ip, allow_loopback=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.255.0.9", "::1"])
def test_development_allows_loopback(address: str) -> None:
    assert is_allowed_address(ipaddress.ip_address(address), allow_loopback=True)


@pytest.mark.parametrize(
    "address",
    [a for a in REFUSED if a not in ("127.0.0.1", "127.1.2.3", "::1")],
)
def test_development_allows_nothing_else(address: str) -> None:
    assert not is_allowed_address(ipaddress.ip_address(address), allow_loopback=True)


# --- the resolver ----------------------------------------------------------------------------


@dataclass
class FakeResolver(AbstractResolver):
    """Answers from a table, like a hostile DNS server would."""

    table: dict[str, list[str]]
    closed: bool = False
    asked: list[str] = field(default_factory=list)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_refused_addresses() -> None:
    inner = FakeResolver({"mixed.example": ["10.0.0.1", "8.8.8.8", "::1", "2001:4860::1"]})
    resolver = FilteringResolver(allow_loopback=False, inner=inner)
    results = await resolver.resolve("mixed.example", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["8.8.8.8", "2001:4860::1"]


@pytest.mark.parametrize("answer", [["10.0.0.1"], ["::"], ["0.0.0.0"], ["fe80::1%1"], ["junk"]])
async def test_resolver_refuses_when_nothing_is_left(answer: list[str]) -> None:
    resolver = FilteringResolver(allow_loopback=True, inner=FakeResolver({"x.example": answer}))
    with pytest.raises(RefusedAddressError):
        await resolver.resolve("x.example", 443)


@pytest.mark.parametrize("name", ["localhost", "127.1", "2130706433", "0x7f000001", "0"])
async def test_system_resolver_answers_for_loopback_spellings_are_refused(name: str) -> None:
    # getaddrinfo maps these legacy forms to 127.0.0.1 or 0.0.0.0 (SECURITY.md §4).
    resolver = FilteringResolver(allow_loopback=False)
    with pytest.raises(RefusedAddressError):
        await resolver.resolve(name, 80, socket.AF_UNSPEC)
    await resolver.close()


# --- a real server on 127.0.0.1 ----------------------------------------------------------------


@dataclass
class Server:
    port: int
    hits: dict[str, int]
    seen: list[web.Request]
    release: asyncio.Event

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    hits: dict[str, int] = {}
    seen: list[web.Request] = []
    release = asyncio.Event()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        seen.append(request)
        return await handler(request)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"hello", content_type="application/activity+json")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body.decode(),
            }
        )

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 200_000)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 10_000)
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(location="/ok")

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "10"})
        await response.prepare(request)
        await response.write(b"a")
        await asyncio.wait_for(release.wait(), 10)
        return response

    async def trickle(request: web.Request) -> web.StreamResponse:
        # A byte every 50 ms: each read is quick, only a total deadline stops this.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        while not release.is_set():
            await response.write(b"z")
            await asyncio.sleep(0.05)
        return response

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"{}"), headers={"Content-Encoding": "gzip"})

    app = web.Application(middlewares=[count])
    app.router.add_get("/ok", ok)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/big", big)
    app.router.add_get("/stream", stream)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/gzip", compressed)
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(port=port, hits=hits, seen=seen, release=release)
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def dev() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport(
        allow_loopback=True,
        user_agent="Steelyard-test/1",
        connect_timeout=1.0,
        read_timeout=1.0,
        total_timeout=1.0,
    )
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
async def prod() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport(allow_loopback=False, user_agent="Steelyard-test/1")
    try:
        yield transport
    finally:
        await transport.close()


async def expect(
    kind: str, transport: AiohttpTransport | DeferredTransport, url: str, **kwargs: object
) -> None:
    with pytest.raises(TransportError) as info:
        await transport.request("GET", url, headers={}, **kwargs)
    assert info.value.kind == kind, str(info.value)


async def test_production_refuses_loopback(server: Server, prod: AiohttpTransport) -> None:
    port = server.port
    await expect("refused-scheme", prod, server.url("/ok"))
    await expect("refused-address", prod, f"https://127.0.0.1:{port}/ok")
    await expect("refused-address", prod, f"https://127.9.9.9:{port}/ok")
    await expect("refused-address", prod, f"https://[::1]:{port}/ok")
    await expect("refused-address", prod, f"https://[::ffff:127.0.0.1]:{port}/ok")
    await expect("refused-address", prod, f"https://[::]:{port}/ok")
    await expect("refused-address", prod, f"https://0.0.0.0:{port}/ok")
    await expect("refused-address", prod, f"https://localhost:{port}/ok")
    await expect("refused-address", prod, f"https://LocalHost:{port}/ok")
    for numeric in ("2130706433", "127.1", "0x7f000001", "017700000001", "0"):
        await expect("bad-url", prod, f"https://{numeric}:{port}/ok")
    assert server.hits == {}


async def test_development_also_refuses_private_addresses(dev: AiohttpTransport) -> None:
    await expect("refused-address", dev, "http://10.0.0.1/ok")
    await expect("refused-address", dev, "http://169.254.169.254/latest/meta-data/")
    await expect("refused-address", dev, "http://[::ffff:127.0.0.1]/ok")


async def test_malformed_urls(dev: AiohttpTransport) -> None:
    for url in [
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/é",
        "http://127.0.0.1/a b",
        "http://bücher.example/",
        "/relative",
    ]:
        await expect("bad-url", dev, url)


async def test_resolved_address_is_the_one_connected(server: Server) -> None:
    # The name resolves (through our resolver) to 127.0.0.1: aiohttp connects there,
    # which is what pins the vetted address and closes the DNS-rebinding window.
    inner = FakeResolver({"partner.example": ["127.0.0.1"], "rebind.example": ["10.0.0.1"]})
    transport = AiohttpTransport(allow_loopback=True, user_agent="t", resolver=inner)
    try:
        response = await transport.request(
            "GET", f"http://partner.example:{server.port}/ok", headers={}
        )
        assert response.status == 200
        await expect("refused-address", transport, f"http://rebind.example:{server.port}/ok")
    finally:
        await transport.close()
    assert inner.closed
    assert server.hits == {"/ok": 1}


async def test_development_fetches(server: Server, dev: AiohttpTransport) -> None:
    response = await dev.request("GET", server.url("/ok"), headers={"Accept": "x/y"})
    assert response.status == 200
    assert response.body == b"hello"
    assert response.headers["content-type"] == "application/activity+json"
    assert response.header("Content-Type") == "application/activity+json"
    assert response.url == server.url("/ok")
    request = server.seen[-1]
    assert request.headers["User-Agent"] == "Steelyard-test/1"
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.headers["Accept"] == "x/y"
    response = await dev.request("GET", server.url("/ok", host="localhost"), headers={})
    assert response.status == 200


async def test_post_sends_body_and_target_verbatim(server: Server, dev: AiohttpTransport) -> None:
    response = await dev.request(
        "POST",
        server.url("/echo/b%C3%B6b/a%7Eb?x=%2F&y=1#frag"),
        headers={"Host": f"127.0.0.1:{server.port}", "Content-Type": "a/b", "User-Agent": "me"},
        body=b'{"a":1}',
    )
    assert response.status == 200
    echoed = json.loads(response.body)
    assert echoed["method"] == "POST"
    # Exactly what was signed as (request-target): no re-quoting, no fragment.
    assert echoed["raw_path"] == "/echo/b%C3%B6b/a%7Eb?x=%2F&y=1"
    assert echoed["body"] == '{"a":1}'
    assert echoed["headers"]["User-Agent"] == "me"
    assert echoed["headers"]["Content-Type"] == "a/b"


async def test_body_cap(server: Server, dev: AiohttpTransport) -> None:
    await expect("too-large", dev, server.url("/big"), max_bytes=100_000)  # Content-Length
    await expect("too-large", dev, server.url("/stream"), max_bytes=100_000)  # chunked
    with pytest.raises(TransportError) as info:
        await dev.request("GET", server.url("/big"), headers={}, max_bytes=100_000)
    assert info.value.status == 200  # the answer's status line, for a caller to weigh
    response = await dev.request("GET", server.url("/big"), headers={}, max_bytes=200_000)
    assert len(response.body) == 200_000


async def test_redirect_is_returned_not_followed(server: Server, dev: AiohttpTransport) -> None:
    for method in ("GET", "POST"):
        response = await dev.request(method, server.url("/redirect"), headers={}, body=None)
        assert response.status == 302
        assert response.header("location") == "/ok"
    assert "/ok" not in server.hits


async def test_stalled_response_hits_the_deadline(server: Server, dev: AiohttpTransport) -> None:
    started = time.monotonic()
    await expect("timeout", dev, server.url("/slow"))
    assert time.monotonic() - started < 3


async def test_trickling_response_hits_the_total_deadline(server: Server) -> None:
    transport = AiohttpTransport(
        allow_loopback=True, user_agent="t", read_timeout=0.5, total_timeout=0.8
    )
    started = time.monotonic()
    try:
        await expect("timeout", transport, server.url("/trickle"))
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_compressed_responses_are_refused(server: Server, dev: AiohttpTransport) -> None:
    await expect("protocol", dev, server.url("/gzip"))


async def test_connection_refused(dev: AiohttpTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await expect("connect", dev, f"http://127.0.0.1:{port}/")


async def test_close_and_reuse(server: Server) -> None:
    transport = AiohttpTransport(allow_loopback=True, user_agent="t")
    await transport.start()
    assert (await transport.request("GET", server.url("/ok"), headers={})).status == 200
    await transport.close()
    await transport.close()
    async with transport:
        assert (await transport.request("GET", server.url("/ok"), headers={})).status == 200


def test_construction_needs_no_event_loop() -> None:
    AiohttpTransport(allow_loopback=False, user_agent="t")


async def test_a_dropped_keep_alive_connection_is_retried_once_at_once(
    dev: AiohttpTransport,
) -> None:
    # A peer that closes the connection without answering, the first time only (as a server
    # does when it times out an idle keep-alive connection just as we reuse it).
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 1:
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    peer = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        answer = await dev.request("POST", f"http://127.0.0.1:{port}/inbox", headers={}, body=b"")
        assert answer.status == 202
        assert connections == 2
    finally:
        peer.close()
        await peer.wait_closed()


async def test_a_peer_that_always_drops_the_connection_is_a_connect_error(
    dev: AiohttpTransport,
) -> None:
    attempts = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    peer = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransportError) as info:
            await dev.request("POST", f"http://127.0.0.1:{port}/inbox", headers={}, body=b"")
        assert info.value.kind == "connect"
        assert attempts == 2  # once more, never a loop
    finally:
        peer.close()
        await peer.wait_closed()


async def test_the_deferred_transport_is_the_same_guarded_client(server: Server) -> None:
    """What the server uses: the aiohttp client made on the first request, with every guard,
    and closed (and made again) like it."""
    prod = DeferredTransport(allow_loopback=False, user_agent="t")
    await prod.close()  # nothing made yet: nothing to close
    await expect("refused-address", prod, f"https://127.0.0.1:{server.port}/ok")
    await expect("refused-scheme", prod, server.url("/ok"))
    await prod.close()
    dev = DeferredTransport(allow_loopback=True, user_agent="Steelyard-test/1")
    assert (await dev.request("GET", server.url("/ok"), headers={})).status == 200
    assert server.seen[-1].headers["User-Agent"] == "Steelyard-test/1"
    await dev.close()
    assert (await dev.request("GET", server.url("/ok"), headers={})).status == 200
    await dev.close()
    assert server.hits == {"/ok": 2}


def test_an_instance_starts_without_loading_the_http_client_or_httpsig(tmp_path: Path) -> None:
    """Cold start: aiohttp and httpsig (with the pkg_resources it pulls in) are about 0.4 s of
    imports on the 2-core machine, loaded only when the instance first federates."""
    from tests.conftest import make_instance

    inst = make_instance(tmp_path / "inst")
    probe = (
        "import sys\n"
        "from server.app import create_app\n"
        "import server.cli, server.asgi\n"
        f"create_app({str(inst)!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'aiohttp', 'httpsig', 'pkg_resources'}))\n"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
