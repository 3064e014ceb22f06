"""
Raw peers for the tests of byte relays (CONNECT tunnels, tcp listeners): a
destination that answers a half-close, a client that collects what it gets,
a destination that streams as fast as it is let, and small waits.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from tests.integration.support import Stack, deferLater, theReactor

_P = TypeVar("_P", bound=Protocol)


def run(*argv: str, stdin: bytes = b"") -> defer.Deferred[Any]:
    """Run a command in a thread (bounded: 30 s); its CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return deferToThread(
        subprocess.run, argv, input=stdin, capture_output=True, timeout=30, env=env
    )


@implementer(IHalfCloseableProtocol)
class Destination(Protocol):
    """A raw destination: records bytes; on the client's FIN, answers and closes."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.finSeen: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.transport.write(b"after your FIN: %d bytes" % len(self.received))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.finSeen.callback(None)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


@implementer(IHalfCloseableProtocol)
class HalfClosingClient(Protocol):
    """A raw client that collects what it gets; fires C{lost} at the end."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


async def serving(stack: Stack, kind: Callable[[], _P]) -> tuple[int, list[_P]]:
    """A server of C{kind} protocols; its port and the connections it got."""
    made: list[_P] = []

    def build() -> _P:
        made.append(kind())
        return made[-1]

    factory = Factory.forProtocol(build)
    factory.noisy = False
    return await stack.listen(factory), made


async def destination(stack: Stack) -> tuple[int, list[Destination]]:
    """A raw destination server; its port and the connections it got."""
    return await serving(stack, Destination)


async def rawClient(stack: Stack, port: int) -> HalfClosingClient:
    client = HalfClosingClient()
    factory = Factory.forProtocol(lambda: client)
    factory.noisy = False
    await TCP4ClientEndpoint(stack.reactor, "127.0.0.1", port).connect(factory)
    return client


async def until(reactor: Any, test: Any, what: str) -> None:
    for _ in range(200):
        if test():
            return
        await deferLater(reactor, 0.025)
    raise AssertionError(f"never: {what}")


@implementer(IPushProducer)
class Pump(Protocol):
    """
    A destination that sends C{total} bytes, a chunk per reactor turn, as its
    transport's producer: its first pause is the tunnel's backpressure.
    """

    total = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.sent = 0
        self.paused = False
        self.pausedOnce: defer.Deferred[int] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        theReactor().callLater(0, self._pump)

    def _pump(self) -> None:
        if self.paused or self.transport is None:
            return
        if self.sent < self.total:
            self.transport.write(b"y" * 65536)
            self.sent += 65536
            theReactor().callLater(0, self._pump)
        elif not self.pausedOnce.called:
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

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


async def heldBack(reactor: Any, pump: Pump) -> int:
    """
    Wait for C{pump} to stay paused (its socket full because the relay in
    front stopped reading it), or to have sent everything; what it had sent.
    """
    still = 0
    for _ in range(400):
        before = pump.sent
        await deferLater(reactor, 0.05)
        still = still + 1 if pump.paused and pump.sent == before else 0
        if still >= 6 or pump.sent >= Pump.total:
            break
    return pump.sent
