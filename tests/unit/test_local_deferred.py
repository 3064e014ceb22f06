"""
A handler route whose handler answers later, with a Deferred (a worker
asks the owner process for the page): what the client sees on an HTTP/1.1
connection in memory, when the answer comes, when it fails, and when the
client has gone meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from h2.errors import ErrorCodes
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from tests.unit.test_h2_server import Peer
from twisted_proxy.config.model import ProxySettings, Route
from twisted_proxy.core.localpage import LocalRequest, LocalResponse
from twisted_proxy.frontends.http1 import HTTPProxyFactory, HTTPServerChannel
from twisted_proxy.frontends.local import LocalResource

ROUTE = Route(path="/manager", handler="balancer-manager")

PAGE = LocalResponse(
    200,
    b"<h1>balancers</h1>\n",
    ((b"Content-Type", b"text/html; charset=utf-8"), (b"X-Page", b"manager")),
)

GET = b"GET /manager/web?x=1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n"


class Connection:
    """One client connection to a route served by C{handler}, in memory."""

    def __init__(
        self,
        handler: Callable[[LocalRequest], LocalResponse | Deferred[LocalResponse]],
    ) -> None:
        self.clock = Clock()
        resource = LocalResource(ROUTE, handler)
        factory = HTTPProxyFactory(resource, ProxySettings(), self.clock)
        self.channel: HTTPServerChannel = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """The client sends C{data}."""
        self.channel.dataReceived(data)

    def written(self) -> bytes:
        """Everything the client has been sent so far."""
        sent: bytes = self.transport.value()
        return sent

    def close(self) -> None:
        """The client goes away; the connection's timers go with it."""
        self.channel.connectionLost(Failure(ConnectionDone()))
        assert self.clock.getDelayedCalls() == []


def withoutDate(response: bytes) -> tuple[list[bytes], bytes]:
    """The head's lines (but the Date, which moves with the wall clock) and body."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date:")]
    return lines, body


def direct(request: bytes = GET) -> bytes:
    """What the client gets from a handler that answers PAGE at once."""
    connection = Connection(lambda local: PAGE)
    connection.send(request)
    connection.close()
    return connection.written()


def settled(d: Deferred[LocalResponse]) -> list[object]:
    """What is left of C{d} once the resource took its answer (None: no error)."""
    left: list[object] = []
    d.addBoth(left.append)
    return left


class Later:
    """A handler whose answers are Deferreds fired by the test."""

    def __init__(self) -> None:
        self.asked: list[LocalRequest] = []
        self.answers: list[Deferred[LocalResponse]] = []

    def __call__(self, request: LocalRequest) -> Deferred[LocalResponse]:
        self.asked.append(request)
        self.answers.append(Deferred())
        return self.answers[-1]


def test_nothingIsWrittenUntilTheAnswerComes() -> None:
    """
    The handler has the request at once; the client gets nothing until the
    Deferred fires, then the same status, headers and body as a direct answer.
    """
    handler = Later()
    connection = Connection(handler)
    connection.send(GET)
    [asked] = handler.asked
    assert (asked.method, asked.path, asked.query) == (b"GET", b"/web", b"x=1")
    assert connection.written() == b""
    connection.clock.advance(1)
    assert connection.written() == b""
    handler.answers[0].callback(PAGE)
    lines, body = withoutDate(connection.written())
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"X-Page: manager" in lines
    assert b"Content-Length: 19" in lines
    assert body == b"<h1>balancers</h1>\n"
    assert (lines, body) == withoutDate(direct())
    assert not connection.transport.disconnecting
    connection.close()


def test_aHeadRequestAnsweredLaterHasNoBody() -> None:
    """HEAD answered later: the page's headers, no body, as a direct answer."""
    head = GET.replace(b"GET", b"HEAD", 1)
    handler = Later()
    connection = Connection(handler)
    connection.send(head)
    handler.answers[0].callback(PAGE)
    lines, body = withoutDate(connection.written())
    assert body == b""
    assert b"Content-Length: 19" in lines
    assert (lines, body) == withoutDate(direct(head))
    connection.close()


def test_aPostedBodyReachesAHandlerThatAnswersLater() -> None:
    """The body read whole is the handler's; its late answer is written."""
    handler = Later()
    connection = Connection(handler)
    connection.send(
        b"POST /manager/ HTTP/1.1\r\nHost: proxy.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 11\r\n\r\ndrain=1&w=2"
    )
    [asked] = handler.asked
    assert (asked.method, asked.body) == (b"POST", b"drain=1&w=2")
    handler.answers[0].callback(LocalResponse(303, b"", ((b"Location", b"/m/"),)))
    lines, body = withoutDate(connection.written())
    assert lines[0] == b"HTTP/1.1 303 See Other"
    assert b"Location: /m/" in lines
    assert body == b""
    connection.close()


def test_theNextRequestWaitsForTheLateAnswer() -> None:
    """
    Two requests on one connection: the second is answered after the first's
    late answer, each with its own page, in order.
    """
    handler = Later()
    connection = Connection(handler)
    connection.send(GET + GET.replace(b"/web", b"/api"))
    handler.answers[0].callback(PAGE)
    assert [r.path for r in handler.asked] == [b"/web", b"/api"]
    handler.answers[1].callback(LocalResponse(404, b"no such page\n"))
    first, _, rest = connection.written().partition(b"<h1>balancers</h1>\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert rest.endswith(b"\r\n\r\nno such page\n")
    connection.close()


def test_aClientGoneBeforeTheAnswerGetsNothing() -> None:
    """
    The client went away while the handler worked: its answer is dropped,
    nothing written, and nothing is logged as a failure.
    """
    handler = Later()
    connection = Connection(handler)
    connection.send(GET)
    connection.close()
    with capturedLogs() as events:
        handler.answers[0].callback(PAGE)
    assert connection.written() == b""
    assert [e for e in events if "log_failure" in e] == []
    assert settled(handler.answers[0]) == [None]


def test_aFailedAnswerIs503AndLogged() -> None:
    """
    The handler's Deferred fails (the owner could not be asked): the client
    gets 503 with a short text, the connection stays usable, and the failure
    is logged with the route.
    """
    handler = Later()
    connection = Connection(handler)
    connection.send(GET)
    with capturedLogs() as events:
        handler.answers[0].errback(RuntimeError("the owner is gone"))
    lines, body = withoutDate(connection.written())
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert body == b"the page is not available now (logged)\n"
    assert not connection.transport.disconnecting
    [event] = [e for e in events if "log_failure" in e]
    assert event["log_failure"].check(RuntimeError)
    assert event["log_failure"].getErrorMessage() == "the owner is gone"
    # Consumed: no "Unhandled error in Deferred" later.
    assert settled(handler.answers[0]) == [None]
    assert event["label"] == "route /manager (balancer-manager)"
    connection.close()


def test_aFailedAnswerForAClientGoneIsLoggedOnly() -> None:
    """The handler failed after the client left: logged, nothing written."""
    handler = Later()
    connection = Connection(handler)
    connection.send(GET)
    connection.close()
    with capturedLogs() as events:
        handler.answers[0].errback(RuntimeError("the owner is gone"))
    assert connection.written() == b""
    [event] = [e for e in events if "log_failure" in e]
    assert event["log_failure"].check(RuntimeError)
    assert settled(handler.answers[0]) == [None]


def h2Peer(handler: Later) -> Peer:
    """An HTTP/2 client connected to the route served by C{handler}."""
    clock = Clock()
    site = HTTPProxyFactory(LocalResource(ROUTE, handler), ProxySettings(), clock)
    return Peer(site, clock)


def test_aStreamResetBeforeTheAnswerGetsNothing() -> None:
    """
    HTTP/2: a client that cancels its stream while the handler works gets
    nothing on it, nothing is logged as a failure, and the connection's
    other streams are answered.
    """
    handler = Later()
    peer = h2Peer(handler)
    peer.request(1, path=b"/manager/web")
    peer.request(3, path=b"/manager/api")
    peer.client.reset_stream(1, ErrorCodes.CANCEL)
    peer.flush()
    with capturedLogs() as events:
        handler.answers[0].callback(PAGE)
        handler.answers[1].callback(PAGE)
        peer.flush()
    assert [e for e in events if "log_failure" in e] == []
    assert [settled(d) for d in handler.answers] == [[None], [None]]
    assert peer.response(1) == ({}, b"", False)
    headers, body, ended = peer.response(3)
    assert (headers[b":status"], body, ended) == (b"200", PAGE.body, True)
    assert headers[b"x-page"] == b"manager"
    peer.server.connectionLost(Failure(ConnectionDone()))
    assert peer.clock.getDelayedCalls() == []
