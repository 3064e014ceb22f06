"""
Real peers for integration tests: backends that record what they received, a
raw TCP client, and a L{Stack} that starts a proxy in front of them on
127.0.0.1 and tears every listener and connection down afterwards.
"""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from tests.tlsfiles import TestCA
from twisted_proxy.config import loadString
from twisted_proxy.service import ProxyService


def theReactor() -> Any:
    """The global reactor (integration tests only)."""
    from twisted.internet import reactor  # noqa: TID251

    return reactor


@dataclass
class Received:
    """One request as a backend saw it."""

    method: bytes
    uri: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header C{name}, or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def headerValues(self, name: bytes) -> list[bytes]:
        """Every value of header C{name}, in order."""
        return [v for n, v in self.headers if n.lower() == name.lower()]


class RecordingBackend(Resource):
    """A twisted.web backend that records each request and answers it."""

    isLeaf = True

    def __init__(
        self, name: str = "backend", handler: Callable[..., Any] | None = None
    ):
        super().__init__()
        self.name = name
        self.requests: list[Received] = []
        self.handler = handler
        self._waiters: list[defer.Deferred[Received]] = []

    def render(self, request: Any) -> Any:
        received = Received(
            request.method,
            request.uri,
            [(n, v) for n, vs in request.requestHeaders.getAllRawHeaders() for v in vs],
            request.content.read(),
        )
        self.requests.append(received)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(received)
        if self.handler is not None:
            return self.handler(request)
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"x-backend", self.name.encode())
        return b"%s saw %s %s" % (self.name.encode(), request.method, request.uri)

    def nextRequest(self) -> defer.Deferred[Received]:
        """Fires with the next request this backend receives."""
        d: defer.Deferred[Received] = defer.Deferred()
        self._waiters.append(d)
        return d


class RawServerProtocol(Protocol):
    """A backend connection that records raw bytes and lets the test answer."""

    def connectionMade(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.factory._fire("connected", self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.factory._fire("data", self)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason
        self.lost.callback(None)


class RawBackend(Factory):
    """A TCP backend whose replies the test writes by hand."""

    protocol = RawServerProtocol

    def __init__(self, onData: Callable[[RawServerProtocol], object] | None = None):
        self.connections: list[RawServerProtocol] = []
        self.onData = onData
        self._waiters: list[
            tuple[
                Callable[[RawServerProtocol], bool], defer.Deferred[RawServerProtocol]
            ]
        ] = []

    def _fire(self, event: str, proto: RawServerProtocol) -> None:
        if event == "data" and self.onData is not None:
            self.onData(proto)
        still = []
        for test, d in self._waiters:
            if test(proto):
                d.callback(proto)
            else:
                still.append((test, d))
        self._waiters = still

    def waitFor(
        self, test: Callable[[RawServerProtocol], bool]
    ) -> defer.Deferred[RawServerProtocol]:
        """Fires with the first connection for which C{test} holds."""
        for proto in self.connections:
            if test(proto):
                return defer.succeed(proto)
        d: defer.Deferred[RawServerProtocol] = defer.Deferred()
        self._waiters.append((test, d))
        return d


class RawClient(Protocol):
    """A client that sends bytes by hand and collects everything it gets."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[Callable[[bytes], bool], defer.Deferred[bytes]]] = []

    @property
    def received(self) -> bytes:
        """Everything received so far."""
        return bytes(self.buffer)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        still = []
        for test, d in self._waiters:
            if test(self.buffer):  # type: ignore[arg-type]
                d.callback(self.received)
            else:
                still.append((test, d))
        self._waiters = still

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason
        self.lost.callback(None)

    def waitFor(self, test: Callable[[bytes], bool]) -> defer.Deferred[bytes]:
        """Fires once what was received satisfies C{test}."""
        if test(self.buffer):  # type: ignore[arg-type]
            return defer.succeed(self.received)
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiters.append((test, d))
        return d


class ServedConnection(ProtocolWrapper):
    """A backend's connection; C{lost} fires once it is closed."""

    def __init__(self, factory: Any, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self.lost.callback(None)


class Served(WrappingFactory):
    """A backend's factory that keeps its open connections, to cut them at will."""

    protocol = ServedConnection
    noisy = False

    async def cutAll(self) -> None:
        """Abort every open connection; return once each is closed."""
        for connection in list(self.protocols):
            transport: Any = connection.transport
            if transport is not None and transport.connected:
                transport.abortConnection()
            await connection.lost  # type: ignore[attr-defined]


@dataclass
class Stack:
    """Backends, a proxy and clients on 127.0.0.1, all closed at the end."""

    reactor: Any = field(default_factory=theReactor)
    ports: list[IListeningPort] = field(default_factory=list)
    services: list[ProxyService] = field(default_factory=list)
    clients: list[RawClient] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    rawBackends: list[RawBackend] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    pool: HTTPConnectionPool | None = None
    held: list[socket.socket] = field(default_factory=list)

    async def listen(self, factory: Any, port: int = 0) -> int:
        """Listen on 127.0.0.1 (port 0: any free port); return the port."""
        endpoint = TCP4ServerEndpoint(self.reactor, port, interface="127.0.0.1")
        listening = await endpoint.listen(factory)
        self.ports.append(listening)
        return int(listening.getHost().port)

    async def backend(self, resource: Resource, port: int = 0) -> int:
        """Serve a twisted.web resource; return its port."""
        site = Site(resource)
        site.noisy = False
        self.sites.append(site)
        served = Served(site)
        self.served.append(served)
        return await self.listen(served, port)

    def refusingPort(self) -> int:
        """
        A loopback port that refuses connections until the end of the test:
        bound and never listening, so no other listener can be handed it.
        """
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        self.held.append(held)
        return int(held.getsockname()[1])

    async def rawBackend(self, backend: RawBackend, port: int = 0) -> int:
        """Serve a hand-driven TCP backend; return its port."""
        backend.noisy = False
        self.rawBackends.append(backend)
        return await self.listen(backend, port)

    async def proxy(
        self, toml: str, configDir: str | None = None, **values: Any
    ) -> ProxyService:
        """Start a proxy from TOML text, C{{name}} placeholders filled in."""
        text = textwrap.dedent(toml).format(**values)
        source = os.path.join(configDir or os.getcwd(), "test.toml")
        service = ProxyService(loadString(text, source), self.reactor)
        service.startService()
        self.services.append(service)
        return service

    async def connect(self, port: int) -> RawClient:
        """Open a raw TCP connection to C{port}."""
        client = RawClient()
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", port)
        factory = Factory.forProtocol(lambda: client)
        factory.noisy = False
        await endpoint.connect(factory)
        self.clients.append(client)
        return client

    def agent(self) -> Agent:
        """A twisted.web Agent whose connections are closed at the end."""
        if self.pool is None:
            self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        return Agent(self.reactor, pool=self.pool)

    def treq(self) -> Any:
        """A treq client (its own pool, closed at the end)."""
        from treq.client import HTTPClient

        return HTTPClient(self.agent())

    async def close(self) -> None:
        """Stop everything this stack started."""
        for held in self.held:
            held.close()
        for client in self.clients:
            if client.transport is not None and client.transport.connected:  # type: ignore[attr-defined]
                client.transport.abortConnection()  # type: ignore[attr-defined]
            await client.lost
        if self.pool is not None:
            await self.pool.closeCachedConnections()
        for service in self.services:
            if service.running:
                await service.stopService()
        for port in self.ports:
            await defer.maybeDeferred(port.stopListening)
        for backend in self.rawBackends:
            for proto in backend.connections:
                if proto.transport is not None and proto.transport.connected:  # type: ignore[attr-defined]
                    proto.transport.abortConnection()  # type: ignore[attr-defined]
                await proto.lost
        # twisted.web backends: every server-side connection closed.
        for served in self.served:
            await served.cutAll()


def deferLater(reactor: Any, delay: float) -> defer.Deferred[None]:
    """A Deferred that fires after C{delay} seconds (for bounded polling)."""
    from twisted.internet.task import deferLater as _deferLater

    return _deferLater(reactor, delay, lambda: None)


async def curl(*args: str) -> tuple[bytes, bytes, int]:
    """Run curl with C{args}; return (stdout, stderr, exit code)."""
    out, err, code = await getProcessOutputAndValue(
        "curl", ("--silent", "--show-error", "--noproxy", "*", *args), env=os.environ
    )
    return out, err, code


def request(
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    host: bytes = b"127.0.0.1",
) -> bytes:
    """Serialise an HTTP/1.1 request by hand."""
    lines = [b"%s %s HTTP/1.1" % (method, target), b"Host: " + host]
    lines += [b"%s: %s" % (n, v) for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def responseComplete(data: bytes) -> bool:
    """Whether C{data} holds at least one full response head."""
    return b"\r\n\r\n" in data


@dataclass
class Reply:
    """One response as a client read it off the wire."""

    version: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header C{name}, or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def headerValues(self, name: bytes) -> list[bytes]:
        """Every value of header C{name}, in order."""
        return [v for n, v in self.headers if n.lower() == name.lower()]


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """Decode a chunked body at the start of C{data}: (body, bytes used) or None."""
    body = b""
    at = 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(data[at:end].split(b";", 1)[0], 16)
        at = end + 2
        if size == 0:
            trailerEnd = data.find(b"\r\n\r\n", at - 2)
            return (body, trailerEnd + 4) if trailerEnd >= 0 else None
        if len(data) < at + size + 2:
            return None
        body += data[at : at + size]
        at += size + 2


def parseReplies(
    data: bytes, heads: Sequence[bool] = (), closed: bool = False
) -> list[Reply]:
    """
    The complete responses at the start of C{data}, in order.

    C{heads[i]} says the i-th answers a HEAD (so it has no body whatever its
    headers say); a body with neither length nor chunking counts only once the
    connection is C{closed}.
    """
    replies: list[Reply] = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].split(b"\r\n")
        version, code = lines[0].split(b" ", 2)[:2]
        headers = [
            (n.strip(), v.strip())
            for n, _, v in (line.partition(b":") for line in lines[1:])
        ]
        reply = Reply(version, int(code), headers, b"")
        rest = data[end + 4 :]
        index = len(replies)
        isHead = index < len(heads) and heads[index]
        length = reply.header(b"content-length")
        if isHead or reply.status in (204, 304) or 100 <= reply.status < 200:
            pass
        elif (reply.header(b"transfer-encoding") or b"").lower() == b"chunked":
            decoded = _dechunk(rest)
            if decoded is None:
                break
            reply.body, used = decoded
            reply.chunked = True
            rest = rest[used:]
        elif length is not None:
            if len(rest) < int(length):
                break
            reply.body, rest = rest[: int(length)], rest[int(length) :]
        elif closed:
            reply.body, rest = rest, b""
        else:
            break
        replies.append(reply)
        data = rest
    return replies


def hasReplies(count: int, heads: Sequence[bool] = ()) -> Callable[[bytes], bool]:
    """A L{RawClient.waitFor} test: C{count} complete responses have arrived."""
    return lambda data: len(parseReplies(data, heads)) >= count


def answerEach(
    respond: Callable[[RawServerProtocol, int, bytes], object],
) -> Callable[[RawServerProtocol], object]:
    """
    A L{RawBackend} C{onData} that calls C{respond(connection, index, head)}
    once for each request head (bodies are not expected) on a connection.
    """

    def onData(proto: RawServerProtocol) -> None:
        heads = proto.received.split(b"\r\n\r\n")[:-1]
        answered: int = getattr(proto, "answered", 0)
        while answered < len(heads):
            head = heads[answered]
            answered += 1
            proto.answered = answered  # type: ignore[attr-defined]
            respond(proto, answered - 1, head)

    return onData


@implementer(IPushProducer)
class Trickle:
    """
    A backend's response body, one chunk per reactor turn: its socket keeps
    up unless the proxy stops reading, so its first pause is backpressure.
    """

    def __init__(self, request: Any, total: int, chunk: int = 16384) -> None:
        self.request = request
        self.total = total
        self.sent = 0
        self.chunk = b"x" * chunk
        self.paused = False
        self.pausedOnce: defer.Deferred[int] = defer.Deferred()
        request.registerProducer(self, True)
        theReactor().callLater(0, self._pump)

    def _pump(self) -> None:
        if self.paused:
            return
        if self.sent < self.total:
            self.request.write(self.chunk)
            self.sent += len(self.chunk)
            theReactor().callLater(0, self._pump)
        else:
            self.request.unregisterProducer()
            self.request.finish()
            if not self.pausedOnce.called:
                # Never paused: all of it went into the proxy.
                self.pausedOnce.callback(self.sent)

    def pauseProducing(self) -> None:
        self.paused = True
        if not self.pausedOnce.called:
            self.pausedOnce.callback(self.sent)

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            theReactor().callLater(0, self._pump)

    def stopProducing(self) -> None:
        self.paused = True
        self.sent = self.total


def accessLogLines(proxy: ProxyService, log: Path) -> list[str]:
    """The lines of C{proxy}'s access log file C{log} so far (flushed first)."""
    if proxy.accessLog is not None:
        proxy.accessLog.flush()
    return log.read_text(encoding="utf-8").splitlines()


async def tlsListener(stack: Stack, folder: Path, extra: str = "") -> tuple[int, Path]:
    """
    A proxy with one TLS listener on any free port, its certificate for
    localhost and 127.0.0.1 issued by a test CA in C{folder}; C{extra} is
    TOML added after the [listen.tls] table. Its port, and the CA's file.
    """
    ca = TestCA(folder)
    ca.issue("localhost", "127.0.0.1", stem="proxy")
    service = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [listen.tls]
        certificate = "proxy.pem"
        key = "proxy.key"
        {extra}
        """,
        configDir=str(folder),
        extra=extra,
    )
    return service.port, ca.certificate
