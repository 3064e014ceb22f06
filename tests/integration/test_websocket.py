"""
The WebSocket bridge end to end on 127.0.0.1, with the C{websockets} library
as both the client and the backend: handshakes, refusals, close codes, large
and fragmented messages, flow control, limits and balancing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.support import Stack, deferLater, tlsListener
from tests.integration.wspeers import AsyncioThread, WSBackend
from twisted_proxy.frontends.wsrelay import FrameRelay
from twisted_proxy.service import ProxyService

MiB = 1024 * 1024


def config(to: str, websocket: str = "", route: str = "", balancer: str = "") -> str:
    """A proxy on any free port with one route C{/} to C{to}."""
    return f"""
[proxy]
access_log = false
[proxy.websocket]
{websocket}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "{to}"
{route}
{balancer}
"""


def balancerConfig(members: list[int], method: str = "byrequests", extra: str = ""):
    """A route to C{balancer://ws/} with one ws:// member per port, routes a, b..."""
    text = f'[balancer.ws]\nmethod = "{method}"\n{extra}\n'
    for route, port in zip("abcdefgh", members, strict=False):
        text += (
            f'[[balancer.ws.member]]\nurl = "ws://127.0.0.1:{port}"\n'
            f'route = "{route}"\n'
        )
    return config("balancer://ws/", balancer=text)


async def deadPort(peers: AsyncioThread) -> int:
    """A port on 127.0.0.1 where nothing listens any more."""
    gone = await peers.backend("gone")
    await peers.call(gone.stop())
    peers.backends.remove(gone)
    return gone.port


async def proxyTo(
    stack: Stack, backend: WSBackend, scheme: str = "ws", **kw: str
) -> ProxyService:
    """A proxy routing C{/} to C{backend}."""
    return await stack.proxy(config(f"{scheme}://127.0.0.1:{backend.port}/", **kw))


def url(proxy: ProxyService, path: str = "/chat") -> str:
    """The proxy's WebSocket URL for C{path}."""
    return f"ws://127.0.0.1:{proxy.port}{path}"


def snapshot(proxy: ProxyService) -> list[dict[str, Any]]:
    """The members of balancer C{ws} as the balancer-manager shows them."""
    return proxy.balancer.snapshot()["ws"]  # type: ignore[union-attr,no-any-return]


async def waitUntil(stack: Stack, test: Any, limit: float = 5.0) -> None:
    """Poll C{test} (cheaply, bounded) until it holds."""
    deadline = time.monotonic() + limit
    while not test():
        assert time.monotonic() < deadline, "condition not reached in time"
        await deferLater(stack.reactor, 0.01)


async def refusedStatus(peers: AsyncioThread, target: str, **options: Any) -> int:
    """The HTTP status a client's handshake to C{target} was refused with."""
    with pytest.raises(InvalidStatus) as refused:
        await peers.connect(target, **options)
    return refused.value.response.status_code


# -- handshakes --


@pytest_twisted.ensureDeferred
async def test_subprotocolChosenByBackend(stack: Stack, peers: AsyncioThread) -> None:
    """The client gets the subprotocol the backend chose from those it offered."""
    backend = await peers.backend(subprotocols=["chat.v1", "superchat"])
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy), subprotocols=["chat.v2", "chat.v1"])
    assert ws.subprotocol == "chat.v1"
    offered = backend.headers()["Sec-WebSocket-Protocol"].replace(" ", "")
    assert offered.split(",") == ["chat.v2", "chat.v1"]
    await peers.call(ws.send("hello"))
    assert await peers.call(ws.recv()) == "hello"


@pytest_twisted.ensureDeferred
async def test_noSubprotocolWhenBackendChoosesNone(
    stack: Stack, peers: AsyncioThread
) -> None:
    """
    A backend that speaks no subprotocol gives the client none, whatever it
    offered; a client that offers none sends the backend none.
    """
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend)
    offering = await peers.connect(url(proxy), subprotocols=["chat.v1"])
    assert offering.subprotocol is None
    plain = await peers.connect(url(proxy))
    assert plain.subprotocol is None
    assert "Sec-WebSocket-Protocol" not in backend.headers()
    await peers.call(plain.send("hi"))
    assert await peers.call(plain.recv()) == "hi"


@pytest.mark.parametrize("status", [403, 404, 500])
@pytest_twisted.ensureDeferred
async def test_backendRefusalReachesClient(
    stack: Stack, peers: AsyncioThread, status: int
) -> None:
    """A backend that refuses the handshake gives the client the same status."""
    backend = await peers.backend(refuse=status)
    proxy = await proxyTo(stack, backend)
    assert await refusedStatus(peers, url(proxy)) == status
    assert len(backend.requests) == 1
    assert backend.connections == []


@pytest_twisted.ensureDeferred
async def test_unreachableBackendIs502(stack: Stack, peers: AsyncioThread) -> None:
    """A backend nobody listens for answers the client's handshake with 502."""
    port = await deadPort(peers)
    proxy = await stack.proxy(config(f"ws://127.0.0.1:{port}/"))
    assert await refusedStatus(peers, url(proxy)) == 502


@pytest_twisted.ensureDeferred
async def test_backendGetsClientHeadersNotItsKey(
    stack: Stack, peers: AsyncioThread
) -> None:
    """
    The backend's handshake carries the client's Cookie, Authorization and
    Origin and X-Forwarded-For/-Proto, with a Sec-WebSocket-Key of its own.
    """
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(
        url(proxy, "/chat?room=1"),
        origin="https://app.example",
        additional_headers=[
            ("Cookie", "session=abc"),
            ("Authorization", "Bearer t0ken"),
        ],
    )
    seen = backend.headers()
    assert backend.requests[0].path == "/chat?room=1"
    assert seen["Cookie"] == "session=abc"
    assert seen["Authorization"] == "Bearer t0ken"
    assert seen["Origin"] == "https://app.example"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    keys = seen.get_all("Sec-WebSocket-Key")
    assert len(keys) == 1
    assert keys[0] != ws.request.headers["Sec-WebSocket-Key"]  # type: ignore[union-attr]


@pytest.mark.parametrize("scheme", ["ws", "http"])
@pytest_twisted.ensureDeferred
async def test_plainHTTPOnAWebSocketRoute(
    stack: Stack, peers: AsyncioThread, scheme: str
) -> None:
    """On a route that carries WebSockets, plain GETs are still proxied as HTTP."""
    backend = await peers.backend("app")
    proxy = await proxyTo(stack, backend, scheme=scheme)
    response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/page?x=1")
    assert response.code == 200
    assert await response.content() == b"app plain /page?x=1\n"
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send(b"\x00binary"))
    assert await peers.call(ws.recv()) == b"\x00binary"


@pytest_twisted.ensureDeferred
async def test_upgradeNotBridgedWhenRouteSaysNo(
    stack: Stack, peers: AsyncioThread
) -> None:
    """With C{websocket = false} an upgrade is plain HTTP: no WebSocket opens."""
    backend = await peers.backend("app")
    proxy = await proxyTo(stack, backend, scheme="http", route="websocket = false")
    assert await refusedStatus(peers, url(proxy)) == 200
    assert backend.connections == []
    assert "Upgrade" not in backend.headers()


# -- messages --


@pytest_twisted.ensureDeferred
async def test_sixteenMiBMessageBothWays(stack: Stack, peers: AsyncioThread) -> None:
    """A 16 MiB message reaches the backend and its echo the client, byte-exact."""
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    payload = random.Random(16).randbytes(16 * MiB)
    await peers.call(ws.send(payload))
    echoed = await peers.call(ws.recv())
    assert isinstance(echoed, bytes)
    assert len(echoed) == len(payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


@pytest_twisted.ensureDeferred
async def test_fragmentedMessagesFromClient(stack: Stack, peers: AsyncioThread) -> None:
    """
    A fragmented message from the client reaches the backend whole and
    byte-exact, fragment by fragment, a text one even with a UTF-8 character
    split across its frames.
    """
    seen: list[list[Any]] = []

    async def collect(ws: ServerConnection) -> None:
        for _ in range(3):
            seen.append([fragment async for fragment in ws.recv_streaming()])
        await ws.send("got them")
        await ws.wait_closed()

    backend = await peers.backend(handler=collect)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send(iter([b"one-", b"", b"two-", b"three"])))
    await peers.call(ws.send(iter([b"caf\xc3", b"\xa9 \xe2\x98", b"\x83"]), text=True))
    await peers.call(ws.send(iter([b"x" * 70000, b"y", b"z" * 100000])))
    assert await peers.call(ws.recv()) == "got them"
    # Frame by frame: every fragment with a payload crosses as it was (the
    # bridge may add or keep empty frames: websockets ends each fragmented
    # message with an empty final frame, Autobahn's streaming API likewise).
    assert [f for f in seen[0] if f] == [b"one-", b"two-", b"three"]
    assert "".join(seen[1]) == "caf\u00e9 \u2603"
    assert b"".join(seen[2]) == b"x" * 70000 + b"y" + b"z" * 100000
    assert len(seen[2]) >= 3


@pytest_twisted.ensureDeferred
async def test_fragmentedMessagesFromBackend(
    stack: Stack, peers: AsyncioThread
) -> None:
    """A fragmented message from the backend reaches the client whole, byte-exact."""

    async def fragments(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(iter([b"\xc3", b"\xa9t\xc3", b"\xa9"]), text=True)
        await ws.send(iter([b"x" * 70000, b"y", b"z" * 100000]))
        await ws.wait_closed()

    backend = await peers.backend(handler=fragments)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("go"))
    assert await peers.call(ws.recv()) == "\u00e9t\u00e9"
    assert await peers.call(ws.recv()) == b"x" * 70000 + b"y" + b"z" * 100000


@pytest_twisted.ensureDeferred
async def test_slowReaderPausesTheBackend(stack: Stack, peers: AsyncioThread) -> None:
    """
    A client that stops reading stops the backend's sends after a few MiB,
    not after all 64; once it reads again it gets every byte, in order.
    """
    total, size = 64 * MiB, 256 * 1024
    pattern = random.Random(64).randbytes(size)
    progress: dict[str, int] = {"sent": 0}
    blocked = asyncio.Event()

    async def firehose(ws: ServerConnection) -> None:
        await ws.recv()
        for index in range(total // size):
            sending = asyncio.ensure_future(ws.send(index.to_bytes(4, "big") + pattern))
            done, _ = await asyncio.wait({sending}, timeout=0.5)
            if not done and not blocked.is_set():
                progress["blockedAt"] = progress["sent"]
                blocked.set()
            await sending
            progress["sent"] += size
        await ws.wait_closed()

    backend = await peers.backend(handler=firehose)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy), max_queue=1)
    await peers.call(ws.send("go"))
    await peers.call(blocked.wait())
    assert progress["blockedAt"] < total // 2

    async def readAll() -> int:
        received = 0
        for index in range(total // size):
            message = await ws.recv()
            assert message[:4] == index.to_bytes(4, "big")
            assert message[4:] == pattern
            received += size
        return received

    assert await peers.call(readAll(), timeout=30) == total
    assert progress["sent"] == total
    assert backend.connections[0].close_code is None


# -- closes --


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, "bye"), (1001, "leaving"), (3000, "app"), (4999, "")]
)
@pytest_twisted.ensureDeferred
async def test_clientCloseReachesBackend(
    stack: Stack, peers: AsyncioThread, code: int, reason: str
) -> None:
    """The client's close code and reason reach the backend unchanged."""
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.close(code, reason))
    assert await peers.call(backend.waitClosed()) == [(code, reason)]
    # The client's closing handshake completed (a reply came back).
    assert ws.close_code not in (None, 1006)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, "done"), (1001, "restarting"), (1011, "oops"), (3000, "x"), (4999, "y")],
)
@pytest_twisted.ensureDeferred
async def test_backendCloseReachesClient(
    stack: Stack, peers: AsyncioThread, code: int, reason: str
) -> None:
    """The backend's close code and reason reach the client unchanged."""

    async def closer(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(code, reason)

    backend = await peers.backend(handler=closer)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("close, please"))
    await peers.call(ws.wait_closed())
    assert (ws.close_code, ws.close_reason) == (code, reason)
    [(replied, _)] = await peers.call(backend.waitClosed())
    assert replied not in (None, 1006)


@pytest_twisted.ensureDeferred
async def test_closingPeerGetsItsCodeEchoed(stack: Stack, peers: AsyncioThread) -> None:
    """
    Whoever starts the closing handshake gets its own code back, as RFC 6455
    5.5.1 says endpoints typically do (websockets does, so a direct peer would).
    """

    async def closer(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4001, "from backend")

    backend = await peers.backend(handler=closer)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("close, please"))
    await peers.call(ws.wait_closed())
    [(replied, _)] = await peers.call(backend.waitClosed())
    other = await peers.backend()
    proxy2 = await proxyTo(stack, other)
    ws2 = await peers.connect(url(proxy2))
    await peers.call(ws2.close(4002, "from client"))
    await peers.call(other.waitClosed())
    assert (replied, ws2.close_code) == (4001, 4002)


@pytest.mark.parametrize("fromClient", [True, False])
@pytest_twisted.ensureDeferred
async def test_messageOverTheLimitIs1009(
    stack: Stack, peers: AsyncioThread, fromClient: bool
) -> None:
    """A message over C{max_message_bytes}, either way, closes both with 1009."""

    async def big(ws: ServerConnection) -> None:
        await ws.send(await ws.recv())
        await ws.send(b"b" * 4096)
        await ws.wait_closed()

    backend = await peers.backend(handler=None if fromClient else big)
    proxy = await proxyTo(stack, backend, websocket="max_message_bytes = 2048")
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send(b"a" * 2048))
    assert await peers.call(ws.recv()) == b"a" * 2048
    if fromClient:
        await peers.call(ws.send(b"a" * 2049))
    with pytest.raises(ConnectionClosed):
        await peers.call(ws.recv())
    await peers.call(ws.wait_closed())
    assert ws.close_code == 1009
    [(code, _)] = await peers.call(backend.waitClosed())
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_idleTimeoutClosesBothWith1001(
    stack: Stack, peers: AsyncioThread
) -> None:
    """A WebSocket silent both ways for C{idle_timeout} is closed with 1001."""
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend, websocket="idle_timeout = 0.3")
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("still here"))
    assert await peers.call(ws.recv()) == "still here"
    await peers.call(ws.wait_closed(), timeout=5)
    assert ws.close_code == 1001
    [(code, _)] = await peers.call(backend.waitClosed())
    assert code == 1001


# -- balancing --


@pytest_twisted.ensureDeferred
async def test_balancerFailsOverToTheLiveMember(
    stack: Stack, peers: AsyncioThread
) -> None:
    """With one ws:// member down, every handshake succeeds on the other."""
    down = await deadPort(peers)
    live = await peers.backend("live")
    proxy = await stack.proxy(balancerConfig([down, live.port]))
    for n in range(4):
        ws = await peers.connect(url(proxy))
        await peers.call(ws.send(f"m{n}"))
        assert await peers.call(ws.recv()) == f"m{n}"
        await peers.call(ws.close())
    assert len(live.connections) == 4
    dead, alive = snapshot(proxy)
    assert dead["failures"] >= 1
    assert dead["last_failure"] is not None
    assert alive["failures"] == 0


@pytest_twisted.ensureDeferred
async def test_stickyCookieOnHandshake(stack: Stack, peers: AsyncioThread) -> None:
    """
    The 101 sets the sticky cookie naming its member; a client that presents
    it lands on that member every time.
    """
    a = await peers.backend("a")
    b = await peers.backend("b")
    sticky = '[balancer.ws.sticky]\nname = "ROUTEID"\ninsert = true\n'
    proxy = await stack.proxy(balancerConfig([a.port, b.port], extra=sticky))
    first = await peers.connect(url(proxy))
    cookie = first.response.headers["Set-Cookie"]  # type: ignore[union-attr]
    assert cookie.startswith("ROUTEID=.")
    route = cookie.split(";")[0].split(".", 1)[1]
    owner, other = (a, b) if route == "a" else (b, a)
    assert len(owner.connections) == 1
    for _ in range(4):
        ws = await peers.connect(
            url(proxy), additional_headers=[("Cookie", f"ROUTEID=.{route}")]
        )
        assert "Set-Cookie" not in ws.response.headers  # type: ignore[union-attr]
    assert len(owner.connections) == 5
    assert other.connections == []


@pytest_twisted.ensureDeferred
async def test_accessLogNamesTheMember(
    stack: Stack, peers: AsyncioThread, tmp_path: Path
) -> None:
    """A handshake's access-log line has its member's BALANCER_* variables."""
    a = await peers.backend("a")
    log = tmp_path / "access.log"
    fmt = "%>s %{BALANCER_NAME}e %{BALANCER_WORKER_NAME}e %{BALANCER_WORKER_ROUTE}e"
    proxy = await stack.proxy(
        balancerConfig([a.port]).replace(
            "access_log = false", "access_log = {log}\naccess_log_format = {format}"
        ),
        log=json.dumps(str(log)),
        format=json.dumps(fmt),
    )
    ws = await peers.connect(url(proxy))
    await peers.call(ws.close())
    assert proxy.accessLog is not None
    proxy.accessLog.flush()
    assert log.read_text().splitlines() == [
        f"101 balancer://ws ws://127.0.0.1:{a.port} a"
    ]


@pytest_twisted.ensureDeferred
async def test_failOnStatusRefusalPutsMemberInError(
    stack: Stack, peers: AsyncioThread, logged: list[str]
) -> None:
    """
    A handshake refused with a status in fail_on_status puts the member in
    error, logged with the balancer, member and status; the next goes elsewhere.
    """
    sick = await peers.backend("sick", refuse=503)
    well = await peers.backend("well")
    proxy = await stack.proxy(
        balancerConfig(
            [sick.port, well.port], method="roundrobin", extra="fail_on_status = [503]"
        )
    )
    assert await refusedStatus(peers, url(proxy)) == 503
    for _ in range(2):
        ws = await peers.connect(url(proxy))
        await peers.call(ws.close())
    assert len(sick.requests) == 1
    assert len(well.connections) == 2
    assert snapshot(proxy)[0]["last_failure"] == "answered 503"
    assert (
        f"member ws://127.0.0.1:{sick.port} of balancer://ws in error: answered 503"
        in logged
    )


@pytest_twisted.ensureDeferred
async def test_openWebSocketsCountAsBusy(stack: Stack, peers: AsyncioThread) -> None:
    """
    With bybusyness, an open WebSocket keeps its member busy: the next
    handshake goes to the other member, and closing frees both.
    """
    a = await peers.backend("a")
    b = await peers.backend("b")
    proxy = await stack.proxy(balancerConfig([a.port, b.port], method="bybusyness"))
    first = await peers.connect(url(proxy))
    assert [m["in_flight"] for m in snapshot(proxy)].count(1) == 1
    second = await peers.connect(url(proxy))
    assert len(a.connections) == len(b.connections) == 1
    assert [m["in_flight"] for m in snapshot(proxy)] == [1, 1]
    await peers.call(first.close())
    await peers.call(second.close())
    await waitUntil(stack, lambda: [m["in_flight"] for m in snapshot(proxy)] == [0, 0])
    assert [m["failures"] for m in snapshot(proxy)] == [0, 0]


@pytest_twisted.ensureDeferred
async def test_backendDyingMidSessionIs1011(stack: Stack, peers: AsyncioThread) -> None:
    """A backend that dies mid-session closes the client with 1011 and is failed."""

    async def crash(ws: ServerConnection) -> None:
        await ws.send(await ws.recv())
        await ws.recv()
        ws.transport.abort()

    backend = await peers.backend(handler=crash)
    proxy = await stack.proxy(balancerConfig([backend.port]))
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("one"))
    assert await peers.call(ws.recv()) == "one"
    await peers.call(ws.send("two"))
    await peers.call(ws.wait_closed())
    assert ws.close_code == 1011
    await waitUntil(stack, lambda: snapshot(proxy)[0]["in_flight"] == 0)
    [member] = snapshot(proxy)
    assert member["failures"] == 1
    assert member["last_failure"] is not None


@pytest_twisted.ensureDeferred
async def test_noCloseTimerOutlivesTheBridge(
    stack: Stack, peers: AsyncioThread
) -> None:
    """
    Once a backend has died and the client has been closed with 1011, the
    relay keeps no timer: the client's close reply was awaited and came.
    """

    async def crash(ws: ServerConnection) -> None:
        await ws.recv()
        ws.transport.abort()

    backend = await peers.backend(handler=crash)
    proxy = await proxyTo(stack, backend)
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("die"))
    await peers.call(ws.wait_closed())
    assert ws.close_code == 1011
    # The bridge is over once both of its legs' connections are closed.
    await waitUntil(stack, lambda: not any(site.channels for site in proxy.sites))
    left = [
        call
        for call in stack.reactor.getDelayedCalls()
        if call.active()
        and isinstance(getattr(call.func, "__self__", None), FrameRelay)
    ]
    assert left == []


@pytest_twisted.ensureDeferred
async def test_drainedMemberKeepsItsOpenSockets(
    stack: Stack, peers: AsyncioThread
) -> None:
    """
    A member set to drain gets no new WebSockets, but the ones open on it
    go on carrying messages until they close.
    """

    def saying(name: str) -> Any:
        async def handler(ws: ServerConnection) -> None:
            async for message in ws:
                await ws.send(f"{name} {message!s}")

        return handler

    first = await peers.backend("first", handler=saying("first"))
    second = await peers.backend("second", handler=saying("second"))
    proxy = await stack.proxy(balancerConfig([first.port, second.port]))
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("before"))
    owner = str(await peers.call(ws.recv())).split()[0]
    drained = "a" if owner == "first" else "b"
    proxy.balancer.setFlags("ws", drained, drain=True)
    for _ in range(3):
        other = await peers.connect(url(proxy))
        await peers.call(other.send("new"))
        assert str(await peers.call(other.recv())).split()[0] != owner
        await peers.call(other.close())
    await peers.call(ws.send("after"))
    assert await peers.call(ws.recv()) == f"{owner} after"


class _PingCounter(WebSocketClientProtocol):  # type: ignore[misc]
    """A client that counts the pings it is sent (Autobahn answers them)."""

    def __init__(self) -> None:
        super().__init__()
        self.pinged: defer.Deferred[bytes] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)
        if not self.pinged.called:
            self.pinged.callback(payload)
            self.sendClose(1000)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_pingIntervalPingsTheClient(stack: Stack, peers: AsyncioThread) -> None:
    """With ping_interval, the proxy pings an idle client on its own."""
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend, websocket="ping_interval = 0.05")
    factory = WebSocketClientFactory(url(proxy))
    client = _PingCounter()
    factory.protocol = lambda: client  # type: ignore[assignment]
    endpoint = TCP4ClientEndpoint(stack.reactor, "127.0.0.1", proxy.port)
    await endpoint.connect(factory)
    await client.pinged.addTimeout(5, stack.reactor)
    await client.closed.addTimeout(5, stack.reactor)


@pytest_twisted.ensureDeferred
async def test_aWebSocketOutlivesAReloadThatRemovesItsMember(
    stack: Stack, peers: AsyncioThread, tmp_path: Path
) -> None:
    """
    A reload that takes the open WebSocket's member out of the balancer
    leaves that WebSocket open and echoing; new ones go to the new member.
    """
    first = await peers.backend("first")
    second = await peers.backend("second")
    (tmp_path / "test.toml").write_text(balancerConfig([second.port]))
    proxy = await stack.proxy(balancerConfig([first.port]), configDir=str(tmp_path))
    ws = await peers.connect(url(proxy))
    await peers.call(ws.send("before"))
    assert await peers.call(ws.recv()) == "before"
    result = proxy.reload()
    assert result.ok
    assert [m["name"] for m in snapshot(proxy)] == [f"ws://127.0.0.1:{second.port}"]
    await peers.call(ws.send("after"))
    assert await peers.call(ws.recv()) == "after"
    other = await peers.connect(url(proxy))
    await peers.call(other.send("new"))
    assert await peers.call(other.recv()) == "new"
    assert (len(first.connections), len(second.connections)) == (1, 1)
    await peers.call(ws.close())
    await peers.call(other.close())


class _RawClient(Protocol):
    """A client that writes frames by hand and keeps every byte it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.gone: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.gone.callback(None)


class _OneProtocol(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


def _maskedText(text: bytes) -> bytes:
    key = b"\x0f\x1e\x2d\x3c"
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(text))
    return bytes((0x81, 0x80 | len(text))) + key + payload


def _framesAfterHead(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked short frame after the 101's head."""
    head, _, data = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    found = []
    while len(data) >= 2:
        length = data[1] & 0x7F
        found.append((data[0] & 0x0F, data[2 : 2 + length]))
        data = data[2 + length :]
    return found


async def _upgraded(stack: Stack, proxy: ProxyService) -> _RawClient:
    """A raw client through its 101 from C{proxy}, frames to be written by hand."""
    client = _RawClient()
    endpoint = TCP4ClientEndpoint(stack.reactor, "127.0.0.1", proxy.port)
    await endpoint.connect(_OneProtocol(client))
    transport: Any = client.transport
    transport.write(
        b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await waitUntil(stack, lambda: b"\r\n\r\n" in client.received)
    return client


@pytest_twisted.ensureDeferred
async def test_aFrameAgainstTheRulesIs1002(stack: Stack, peers: AsyncioThread) -> None:
    """
    An unmasked frame from a client (after a good message, echoed): the
    client gets 1002, the backend 1001, and the bad frame never reaches it.
    """
    backend = await peers.backend()
    proxy = await proxyTo(stack, backend)
    client = await _upgraded(stack, proxy)
    transport: Any = client.transport
    transport.write(_maskedText(b"hello"))
    await waitUntil(stack, lambda: len(_framesAfterHead(client.received)) == 1)
    transport.write(b"\x81\x03bad")
    await waitUntil(stack, lambda: len(_framesAfterHead(client.received)) == 2)
    # The client's answer to the close: the proxy then closes the connection.
    transport.write(b"\x88\x80\x00\x00\x00\x00")
    await client.gone
    echo, closing = _framesAfterHead(client.received)
    assert echo == (1, b"hello")
    assert closing[0] == 8
    assert closing[1][:2] == (1002).to_bytes(2, "big")
    [(code, _)] = await peers.call(backend.waitClosed())
    assert code == 1001


@pytest_twisted.ensureDeferred
async def test_aWebSocketOverTLS(
    stack: Stack, peers: AsyncioThread, tmp_path: Path
) -> None:
    """
    wss:// to a TLS listener: messages both ways whole (one of 1 MiB, in
    many TLS records), and the client's close reaches the backend.
    """
    backend = await peers.backend()
    route = f'[[route]]\npath = "/"\nto = "ws://127.0.0.1:{backend.port}/"'
    port, caFile = await tlsListener(stack, tmp_path, route)
    trust = ssl.create_default_context(cafile=str(caFile))
    ws = await peers.connect(f"wss://localhost:{port}/chat", ssl=trust)
    big = random.randbytes(MiB)
    await peers.call(ws.send(big))
    assert await peers.call(ws.recv()) == big
    await peers.call(ws.send("small"))
    assert await peers.call(ws.recv()) == "small"
    started = time.monotonic()
    await peers.call(ws.close(4000, "over TLS"))
    # The proxy closed the connection after the closing handshake: the
    # client did not wait out its close_timeout (5 s) for it.
    assert time.monotonic() - started < 2
    assert await peers.call(backend.waitClosed()) == [(4000, "over TLS")]
    assert ws.close_code == 4000


@pytest_twisted.ensureDeferred
async def test_textThatIsNotUTF8Is1007(stack: Stack, peers: AsyncioThread) -> None:
    """A client's text that is not UTF-8 never reaches the backend: 1007."""
    got: list[Any] = []

    async def record(ws: ServerConnection) -> None:
        async for message in ws:
            got.append(message)

    backend = await peers.backend(handler=record)
    proxy = await proxyTo(stack, backend)
    client = await _upgraded(stack, proxy)
    transport: Any = client.transport
    transport.write(_maskedText(b"caf\xe9"))
    await waitUntil(stack, lambda: len(_framesAfterHead(client.received)) == 1)
    transport.write(b"\x88\x80\x00\x00\x00\x00")
    await client.gone
    [(opcode, payload)] = _framesAfterHead(client.received)
    assert (opcode, payload[:2]) == (8, (1007).to_bytes(2, "big"))
    [(code, _)] = await peers.call(backend.waitClosed())
    assert code == 1001
    assert got == []
