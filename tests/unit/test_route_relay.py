"""
The route keys C{aliases}, C{match}, C{exclude} and C{connect_timeout} in
the relay, in memory: a client on a StringTransport talks to the front end
the service builds (the router in front), whose backend connections are made
on a MemoryReactorClock and played by hand. What the client got, what the
backend was asked for and the timeout each connection was made with are
checked.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_proxy.balancer import BalancerService
from twisted_proxy.config import loadString
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.router import RouterResource

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Front:
    """The proxy's front end for a configuration, and one client connection."""

    def __init__(self, text: str) -> None:
        self.reactor = MemoryReactorClock()
        config = loadString(text)
        balancer = None
        if config.balancers:
            balancer = BalancerService([b for _, b in config.balancers], self.reactor)
        context = ProxyContext.create(
            config.proxy, self.reactor, balancer, dict(config.balancers)
        )
        factory = HTTPProxyFactory(
            RouterResource(config, context), config.proxy, self.reactor
        )
        self.channel: Any = factory.buildProtocol(None)
        self.client = StringTransport()
        self.channel.makeConnection(self.client)
        self.connections: list[tuple[int, float, Protocol, StringTransport]] = []

    def ask(self, target: bytes, host: bytes = b"proxy.test") -> None:
        """The client sends a GET for C{target} on C{host}."""
        self.client.clear()
        self.channel.dataReceived(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host)
        )

    def backend(self) -> tuple[int, float, bytes]:
        """
        The backend connection the last request went out on (a new one
        accepted, or a pooled one) answered: the port and timeout it was
        made with, and the request line the backend read.
        """
        clients = self.reactor.tcpClients
        while len(self.connections) < len(clients):
            _, port, factory, timeout, _ = clients[len(self.connections)]
            protocol = factory.buildProtocol(None)
            assert isinstance(protocol, Protocol)
            wire = StringTransport()
            protocol.makeConnection(wire)
            self.connections.append((port, timeout, protocol, wire))
        for made in self.connections:
            wire = made[3]
            if wire.value():
                line = wire.value().split(b"\r\n", 1)[0]
                wire.clear()
                made[2].dataReceived(ANSWER)
                return made[0], made[1], line
        raise AssertionError("no backend connection got the request")

    def answer(self) -> tuple[bytes, bytes]:
        """The client's status line and body."""
        head, _, body = self.client.value().partition(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0], body


IMAGES = """
[[route]]
match = "^/img/(.*\\\\.gif)$"
to = "http://127.0.0.1:3000/static/$1"
[[route]]
match = "^/api/v[0-9]+/"
to = "http://127.0.0.1:3001/base/"
[[route]]
path = "/"
to = "http://127.0.0.1:3002/"
"""


def test_matchRouteAsksForTheCapturedPath() -> None:
    """$1 is the captured text; the query follows it."""
    front = Front(IMAGES)
    front.ask(b"/img/a/b%20c.gif?v=2")
    assert front.backend() == (3000, 5.0, b"GET /static/a/b%20c.gif?v=2 HTTP/1.1")
    assert front.answer() == (b"HTTP/1.1 200 OK", b"ok")


def test_matchRouteWithoutBackreferenceAppendsThePath() -> None:
    """A to without $N has the whole request path appended to its path."""
    front = Front(IMAGES)
    front.ask(b"/api/v2/users?id=7")
    assert front.backend()[::2] == (3001, b"GET /base/api/v2/users?id=7 HTTP/1.1")


def test_otherPathsFallToThePrefixRoute() -> None:
    """What no pattern matches goes to the prefix routes, as before."""
    front = Front(IMAGES)
    front.ask(b"/img/a.png")
    assert front.backend()[::2] == (3002, b"GET /img/a.png HTTP/1.1")


def test_aCaptureMakingADotSegmentIs400() -> None:
    """A backreference may not make the backend climb out of its path."""
    front = Front(
        '[[route]]\nmatch = "^/f/a(.*)$"\nto = "http://127.0.0.1:3000/base/$1"\n'
    )
    front.ask(b"/f/a..")
    status, body = front.answer()
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"dot segment" in body
    assert front.reactor.tcpClients == []


EXCLUDED = """
[[route]]
path = "/app/"
to = "http://127.0.0.1:3000/"
[[route]]
path = "/app/static/"
exclude = true
[[route]]
match = "\\\\.php$"
exclude = true
"""


def test_excludedPathIs404() -> None:
    """An exclude route's requests get 404 and reach no backend."""
    front = Front(EXCLUDED)
    for target in (b"/app/static/x.css", b"/app/static/", b"/app/x.php?a=1"):
        front.ask(target)
        assert front.answer() == (b"HTTP/1.1 404 Not Found", b"not proxied\n")
    assert front.reactor.tcpClients == []
    front.ask(b"/app/x.css")
    assert front.backend()[::2] == (3000, b"GET /x.css HTTP/1.1")


def test_aliasesReachTheRoute() -> None:
    """A request for an alias is routed as one for the host; others are not."""
    front = Front(
        '[[route]]\nhost = "a.test"\naliases = ["www.a.test", "*.a.org"]\n'
        'path = "/"\nto = "http://127.0.0.1:3000/"\n'
    )
    for host in (b"a.test", b"WWW.a.test:8080", b"x.a.org"):
        front.ask(b"/x", host)
        assert front.backend()[::2] == (3000, b"GET /x HTTP/1.1")
    front.ask(b"/x", b"b.test")
    assert front.answer() == (b"HTTP/1.1 404 Not Found", b"no route for this request\n")


def test_connectTimeoutPerRoute() -> None:
    """
    Each connection is made in its route's connect_timeout, to a backend or
    a balancer member; a route without one takes [proxy]'s.
    """
    front = Front(
        "[proxy]\nconnect_timeout = 7\n"
        '[[route]]\npath = "/quick/"\nto = "http://127.0.0.1:3000/"\n'
        "connect_timeout = 0.5\n"
        '[[route]]\npath = "/pool/"\nto = "balancer://web/"\nconnect_timeout = 1.5\n'
        '[[route]]\npath = "/"\nto = "http://127.0.0.1:3002/"\n'
        '[[balancer.web.member]]\nurl = "http://127.0.0.1:3001"\n'
    )
    front.ask(b"/quick/x")
    assert front.backend() == (3000, 0.5, b"GET /x HTTP/1.1")
    front.ask(b"/pool/x")
    assert front.backend() == (3001, 1.5, b"GET /x HTTP/1.1")
    front.ask(b"/x")
    assert front.backend() == (3002, 7.0, b"GET /x HTTP/1.1")


def test_routesShareTheBackendsPool() -> None:
    """
    A kept-alive connection one route opened serves another route to the
    same backend, whatever its connect_timeout: the timeout is only for
    connecting.
    """
    front = Front(
        '[[route]]\npath = "/quick/"\nto = "http://127.0.0.1:3000/"\n'
        "connect_timeout = 0.5\n"
        '[[route]]\npath = "/"\nto = "http://127.0.0.1:3000/"\n'
    )
    front.ask(b"/quick/x")
    assert front.backend() == (3000, 0.5, b"GET /x HTTP/1.1")
    front.ask(b"/y")
    assert front.backend() == (3000, 0.5, b"GET /y HTTP/1.1")
    assert len(front.reactor.tcpClients) == 1
