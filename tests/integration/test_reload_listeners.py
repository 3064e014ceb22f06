"""
Listeners at reload, on 127.0.0.1 with real clients and backends: a new
[[listen]] is bound and serves; a removed one stops accepting while what it
was doing finishes (a response, a WebSocket); one whose settings changed
keeps its port; a port that cannot be bound refuses the whole reload.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory

from tests.integration.processes import freePort
from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    Stack,
    answerEach,
    hasReplies,
    parseReplies,
    request,
)
from tests.integration.wspeers import AsyncioThread
from twisted_proxy.config import load
from twisted_proxy.service import ProxyService

SITE = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
{second}
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
[[route]]
path = "/chat"
to = "ws://127.0.0.1:{ws}/chat"
[[route]]
path = "/"
to = "http://127.0.0.1:{http}/"
"""


class Site:
    """A proxy read from a file the test rewrites, and a backend it answers by."""

    def __init__(self, stack: Stack, tmp_path: Path) -> None:
        self.stack = stack
        self.file = tmp_path / "site.toml"
        self.held: list[RawServerProtocol] = []
        self.backend = RawBackend(answerEach(self._answer))
        self.ws = 1

    def _answer(self, proto: RawServerProtocol, index: int, head: bytes) -> None:
        """Answer at once, but hold C{/slow} until the test lets it go."""
        if head.startswith(b"GET /slow "):
            self.held.append(proto)
        else:
            proto.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            )

    def write(self, second: str = "") -> None:
        self.file.write_text(SITE.format(second=second, ws=self.ws, http=self.http))

    async def start(self, second: str = "") -> ProxyService:
        self.http = await self.stack.rawBackend(self.backend)
        self.write(second)
        self.service = ProxyService(load(str(self.file)), self.stack.reactor)
        self.service.startService()
        self.stack.services.append(self.service)
        return self.service

    @property
    def first(self) -> int:
        return int(self.service.ports[0].getHost().port)  # type: ignore[attr-defined]

    async def get(self, port: int, path: bytes = b"/") -> bytes:
        """One request on a new connection to C{port}: the body answered."""
        client = await self.stack.connect(port)
        client.transport.write(request(b"GET", path))  # type: ignore[union-attr]
        await client.waitFor(hasReplies(1))
        [reply] = parseReplies(client.received)
        assert reply.status == 200
        return reply.body


def listen(port: int, extra: str = "") -> str:
    return f'[[listen]]\nendpoint = "tcp:{port}:interface=127.0.0.1"\n{extra}'


@pytest_twisted.ensureDeferred
async def test_aNewListenerServesAndARemovedOneFinishesItsResponse(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A reload binds a listener the file gained: it serves at once. A reload
    that takes it out again closes its port (new connections refused) while
    the response it was streaming is finished in full, then that connection
    is closed; the first listener is untouched throughout.
    """
    site = Site(stack, tmp_path)
    service = await site.start()
    first = service.ports[0]
    port = freePort()
    site.write(listen(port))
    assert service.reload().ok
    assert await site.get(port) == b"hello"
    assert f"reload: listen[1] (tcp:{port}:interface=127.0.0.1) added" in logged

    client = await stack.connect(port)
    client.transport.write(request(b"GET", b"/slow"))  # type: ignore[union-attr]
    await site.backend.waitFor(lambda _: bool(site.held))
    site.write()
    assert service.reload().ok
    assert f"reload: listen[1] (tcp:{port}:interface=127.0.0.1) closed" in logged
    with pytest.raises(ConnectionRefusedError):
        await stack.connect(port)
    assert service.ports == [first]
    # The response under way on the closed listener is finished in full...
    site.held[0].transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"
    )
    await client.waitFor(hasReplies(1))
    [reply] = parseReplies(client.received)
    assert (reply.status, reply.body) == (200, b"slow")
    # ...and its connection closed after it, not kept alive.
    await client.lost
    assert service.listeners.retiring == []
    assert await site.get(site.first) == b"hello"


@pytest_twisted.ensureDeferred
async def test_aWebSocketOnAClosedListenerGoesOnUntilTheProxyStops(
    stack: Stack, tmp_path: Path, peers: AsyncioThread
) -> None:
    """
    A WebSocket bridged through a listener a reload closed is not cut: it
    echoes on, counts as open on the status page, and is closed with 1001
    (going away) when the proxy stops.
    """
    echo = await peers.backend("echo")
    site = Site(stack, tmp_path)
    site.ws = echo.port
    port = freePort()
    service = await site.start(listen(port))
    ws = await peers.connect(f"ws://127.0.0.1:{port}/chat")
    await peers.call(ws.send("before"))
    assert await peers.call(ws.recv()) == "before"
    site.write()
    assert service.reload().ok
    with pytest.raises(ConnectionRefusedError):
        await stack.connect(port)
    await peers.call(ws.send("after"))
    assert await peers.call(ws.recv()) == "after"
    assert len(service.listeners.retiring) == 1
    assert service.admin.view.openConnections()["websocket"] == 1
    await service.stopService()
    await peers.call(ws.wait_closed())
    assert ws.close_code == 1001
    assert service.listeners.connectionCount() == 0


@pytest_twisted.ensureDeferred
async def test_aListenerChangedInPlaceKeepsItsPort(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    The same endpoint with other settings (here: now a redirect to HTTPS)
    keeps its port open, never unbound: new connections get the new
    settings, an idle keep-alive connection from before is closed so its
    client comes back to them.
    """
    site = Site(stack, tmp_path)
    port = freePort()
    service = await site.start(listen(port))
    before = service.ports[1]
    idle = await stack.connect(port)
    idle.transport.write(request(b"GET", b"/"))  # type: ignore[union-attr]
    await idle.waitFor(hasReplies(1))
    site.write(listen(port, 'redirect_https = "https://www.example.test"\n'))
    assert service.reload().ok
    assert f"reload: listen[1] (tcp:{port}:interface=127.0.0.1) changed" in logged
    assert service.ports[1] is before
    await idle.lost
    client = await stack.connect(port)
    client.transport.write(request(b"GET", b"/a?b"))  # type: ignore[union-attr]
    await client.waitFor(hasReplies(1))
    [reply] = parseReplies(client.received)
    assert reply.status == 301
    assert reply.header(b"location") == b"https://www.example.test/a?b"
    assert await site.get(site.first) == b"hello"


@pytest_twisted.ensureDeferred
async def test_aPortThatCannotBeBoundRefusesTheWholeReload(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A new listener on a port another server holds: the reload is refused
    as a whole (422 from the API, the error naming the listener and why),
    so the route the same file added is not taken either.
    """
    site = Site(stack, tmp_path)
    service = await site.start()
    taken = await stack.listen(Factory(), 0)
    site.write(listen(taken) + '[[route]]\npath = "/new"\nto = "http://127.0.0.1:1/"\n')
    http = stack.treq()
    response = await http.post(
        f"http://127.0.0.1:{site.first}/balancer-manager/api/reload"
    )
    answer = json.loads(await response.content())
    error = (
        f"listen[1].endpoint: cannot listen on tcp:{taken}:interface=127.0.0.1:"
        " Address already in use (is another server running on it?)"
    )
    assert response.code == 422
    assert answer == {
        "reloaded": False,
        "generation": 1,
        "errors": [error],
        "notes": [],
    }
    assert f"reload refused: {error}" in logged
    assert len(service.ports) == 1
    assert [r.path for r in service.config.routes] == [
        "/balancer-manager",
        "/chat",
        "/",
    ]
    assert await site.get(site.first, b"/new") == b"hello"
