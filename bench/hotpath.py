"""The proxy's own work per request, in process: ``python -m bench.hotpath``.

One HTTP/1.1 client connection and one backend connection, both in memory
(StringTransports over a MemoryReactorClock), with the throughput part's
configuration: each request goes through the real front end, router, relay,
upstream pool, response parser and traffic counting, and back,
with no socket and no reactor loop. What is left is exactly the Python work
the proxy adds per request, which the throughput part measures with the
sockets and the reactor around it.

Two figures: Python function calls per request (counted with
C{sys.setprofile}: the same on every run of the same code, so an A/B of two
trees needs no quiet machine), and CPU microseconds per request (median of
several batches; subject to the machine's noise like any timing).

Run it from two trees (``PYTHONPATH=/other/tree python -m bench.hotpath``)
to compare a change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_proxy.balancer import BalancerService
from twisted_proxy.config import loadString
from twisted_proxy.core.traffic import Traffic
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.router import RouterResource

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:8080:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:3000/"
"""

REQUEST = (
    b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"User-Agent: bench\r\nAccept: */*\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: fast\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 6\r\n\r\nhello\n"
)


def _clientChannel(
    text: str, reactor: MemoryReactorClock
) -> tuple[Any, StringTransport]:
    """
    The front end for configuration C{text}, as the service builds it (the
    router in front, traffic counted for the status page), and one client
    connection to it on a StringTransport.
    """
    config = loadString(text)
    balancer = None
    if config.balancers:
        balancer = BalancerService([b for _, b in config.balancers], reactor)
    context = ProxyContext.create(
        config.proxy, reactor, balancer, dict(config.balancers)
    )
    context.traffic = Traffic(reactor.seconds)
    factory = HTTPProxyFactory(RouterResource(config, context), config.proxy, reactor)
    factory.traffic = context.traffic
    channel = factory.buildProtocol(None)
    client = StringTransport()
    channel.makeConnection(client)
    return channel, client


class HotPath:
    """A proxy with one route, a client and a backend, all in memory."""

    def __init__(self) -> None:
        reactor = MemoryReactorClock()
        self.channel, self.client = _clientChannel(CONFIG, reactor)
        self.channel.dataReceived(REQUEST)
        _, _, backendFactory, _, _ = reactor.tcpClients[0]
        backend = backendFactory.buildProtocol(None)
        assert isinstance(backend, Protocol)
        self.wire = StringTransport()
        backend.makeConnection(self.wire)
        self.backend = backend
        self.backend.dataReceived(RESPONSE)
        self._check()

    def _check(self) -> None:
        sent = self.wire.value()
        assert sent.startswith(b"GET /index.html HTTP/1.1\r\n"), sent
        got = self.client.value()
        assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got
        assert got.endswith(b"\r\n\r\nhello\n"), got

    def one(self) -> None:
        """One request from the client and the backend's answer to it."""
        self.client.clear()
        self.wire.clear()
        self.channel.dataReceived(REQUEST)
        self.backend.dataReceived(RESPONSE)

    def run(self, count: int) -> None:
        one = self.one
        for _ in range(count):
            one()
        self._check()


BALANCED = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:8080:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
[[balancer.web.member]]
url = "http://127.0.0.1:3001"
route = "1"
[[balancer.web.member]]
url = "http://127.0.0.1:3002"
route = "2"
[[balancer.web.member]]
url = "http://127.0.0.1:3003"
route = "3"
"""


class BalancedHotPath(HotPath):
    """
    The same through a byrequests balancer of three members (the throughput
    part's lb3 row), each with a backend connection of its own. Finding
    which backend got the request adds the same few calls to every request.
    """

    def __init__(self) -> None:
        self._reactor = reactor = MemoryReactorClock()
        self.channel, self.client = _clientChannel(BALANCED, reactor)
        self.backends: list[tuple[Protocol, StringTransport]] = []
        for _ in range(3):
            self.one()
        assert len(self.backends) == 3
        self._check()

    def _check(self) -> None:
        got = self.client.value()
        assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got
        assert got.endswith(b"\r\n\r\nhello\n"), got

    def one(self) -> None:
        self.client.clear()
        self.channel.dataReceived(REQUEST)
        clients = self._reactor.tcpClients
        while len(self.backends) < len(clients):
            _, _, backendFactory, _, _ = clients[len(self.backends)]
            backend = backendFactory.buildProtocol(None)
            assert isinstance(backend, Protocol)
            wire = StringTransport()
            backend.makeConnection(wire)
            self.backends.append((backend, wire))
        for backend, wire in self.backends:
            if wire.value():
                wire.clear()
                backend.dataReceived(RESPONSE)
                return
        raise AssertionError("no backend got the request")


def callsPerRequest(path: HotPath, count: int) -> float:
    """Python function calls (and C calls) per request, counted exactly."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" or event == "c_call":
            calls += 1

    sys.setprofile(profile)
    try:
        path.run(count)
    finally:
        sys.setprofile(None)
    return calls / count


def microsecondsPerRequest(path: HotPath, count: int, batches: int) -> list[float]:
    """CPU microseconds per request, one figure per batch of C{count}."""
    figures = []
    for _ in range(batches):
        start = time.process_time()
        path.run(count)
        figures.append((time.process_time() - start) / count * 1e6)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="per batch")
    parser.add_argument("--batches", type=int, default=7)
    args = parser.parse_args(argv)
    import twisted_proxy

    print(f"twisted_proxy from {twisted_proxy.__file__}")
    for name, path in (("one backend", HotPath()), ("lb3", BalancedHotPath())):
        path.run(1000)
        calls = callsPerRequest(path, 500)
        figures = microsecondsPerRequest(path, args.requests, args.batches)
        # The least disturbed batch is the best estimate on a noisy machine.
        print(
            f"{name}: {calls:.1f} calls per request; CPU {min(figures):.1f} us at"
            f" best, {statistics.median(figures):.1f} median of {args.batches} x"
            f" {args.requests}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
