"""
Request-smuggling and desync probes, end to end: each probe goes byte for
byte from a raw TCP client to a proxy on 127.0.0.1 in front of a raw backend,
and each test checks both what the client got and exactly what reached the
backend. A refused head reaches no backend at all; an accepted request
reaches it framed one way only (one Content-Length, or one
C{Transfer-Encoding: chunked}), with the body as the client framed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.python.failure import Failure

from tests.integration.support import (
    RawBackend,
    RawClient,
    RawServerProtocol,
    Stack,
    hasReplies,
    parseReplies,
    theReactor,
)

T = TypeVar("T")

# header_timeout is long on purpose: a head the proxy holds instead of
# refusing shows up as a missed guard (see _soon), not as a quick 408.
CONFIG = """
[proxy]
access_log = false
header_timeout = 30
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
{route}
"""

# How long anything here may take. Nothing waits for it to pass: it only
# turns a hang into a failure that names what did not come.
_PATIENCE = 5.0

_CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"
_NEXT = b"GET /two HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Forwarded:
    """One request as the backend read it off its connection."""

    requestLine: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    """The content: as sent for Content-Length, decoded for chunked."""

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header C{name} (given lowercase), in order."""
        return [v for n, v in self.headers if n.lower() == name]

    def framing(self) -> list[tuple[bytes, bytes]]:
        """Its Content-Length and Transfer-Encoding headers, names lowercased."""
        return [
            (n.lower(), v)
            for n, v in self.headers
            if n.lower() in (b"content-length", b"transfer-encoding")
        ]


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """
    A complete chunked body at the start of C{data}, decoded, and the bytes it
    took; None if it is incomplete or not chunked coding.
    """
    body = b""
    at = 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return None
        try:
            size = int(data[at:end].split(b";", 1)[0], 16)
        except ValueError:
            return None
        at = end + 2
        if size == 0:
            break
        if data[at + size : at + size + 2] != b"\r\n":
            return None
        body += data[at : at + size]
        at += size + 2
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return None
        line, at = data[at:end], end + 2
        if not line:
            return body, at


def _readRequests(data: bytes) -> tuple[list[Forwarded], bytes]:
    """The complete requests at the start of C{data}, and the bytes after them."""
    requests: list[Forwarded] = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].split(b"\r\n")
        headers = [
            (n, v.strip(b" \t"))
            for n, _, v in (line.partition(b":") for line in lines[1:])
        ]
        request = Forwarded(lines[0], headers, b"")
        rest = data[end + 4 :]
        lengths = request.values(b"content-length")
        if request.values(b"transfer-encoding"):
            decoded = _dechunk(rest)
            if decoded is None:
                break
            request.body, used = decoded
            rest = rest[used:]
        elif lengths:
            if not lengths[0].isdigit() or len(rest) < int(lengths[0]):
                break
            length = int(lengths[0])
            request.body, rest = rest[:length], rest[length:]
        requests.append(request)
        data = rest
    return requests, data


def _answering() -> RawBackend:
    """A raw backend that answers each complete request with its request line."""
    answered: dict[RawServerProtocol, int] = {}

    def onData(proto: RawServerProtocol) -> None:
        requests, _ = _readRequests(proto.received)
        for request in requests[answered.get(proto, 0) :]:
            line = request.requestLine
            proto.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line)
            )
        answered[proto] = len(requests)

    return RawBackend(onData)


def _forwarded(backend: RawBackend) -> list[Forwarded]:
    """Every request the backend read, connection by connection, nothing left over."""
    requests: list[Forwarded] = []
    for proto in backend.connections:
        complete, rest = _readRequests(proto.received)
        assert rest == b""
        requests += complete
    return requests


def _touched(backend: RawBackend) -> list[bytes]:
    """What each backend connection that received anything received."""
    return [proto.received for proto in backend.connections if proto.received]


async def _soon(d: defer.Deferred[T], what: str) -> T:
    """
    What C{d} fires with, which must come within L{_PATIENCE} seconds; the
    guard is cancelled once it has.
    """
    late = object()
    first: defer.Deferred[Any] = defer.Deferred()

    def settle(result: Any) -> Any:
        if not first.called:
            first.callback(result)
        return result

    def cancelled(failure: Failure) -> None:
        failure.trap(defer.CancelledError)

    guard = task.deferLater(theReactor(), _PATIENCE, lambda: late)
    guard.addCallbacks(settle, cancelled)
    d.addBoth(settle)
    try:
        result = await first
    finally:
        guard.cancel()
    assert result is not late, f"no {what} within {_PATIENCE} s"
    return result  # type: ignore[no-any-return]


async def _start(stack: Stack, route: str = "") -> tuple[RawBackend, RawClient]:
    """A proxy (with C{route} settings) in front of L{_answering}, and a client."""
    backend = _answering()
    port = await stack.rawBackend(backend)
    service = await stack.proxy(CONFIG, port=port, route=route)
    return backend, await stack.connect(service.port)


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


def _head(*lines: bytes, body: bytes = b"") -> bytes:
    """A request head from its lines (the request line first), then C{body}."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def _post(*headers: bytes, body: bytes = b"") -> bytes:
    """POST /probe with a Host and then C{headers}."""
    return _head(b"POST /probe HTTP/1.1", b"Host: 127.0.0.1", *headers, body=body)


def _get(target: bytes, *headers: bytes) -> bytes:
    """GET C{target} with a Host and then C{headers}."""
    return _head(b"GET %s HTTP/1.1" % target, b"Host: 127.0.0.1", *headers)


def _chunkedPost(value: bytes) -> bytes:
    """POST /probe with C{Transfer-Encoding: value} and a chunked body."""
    return _post(b"Transfer-Encoding: " + value, body=_CHUNKS)


_REFUSED = [
    # CL.TE and TE.CL: two framings in one request.
    pytest.param(
        _post(b"Content-Length: 6", b"Transfer-Encoding: chunked", body=_CHUNKS),
        400,
        id="cl-then-te",
    ),
    pytest.param(
        _post(b"Transfer-Encoding: chunked", b"Content-Length: 6", body=_CHUNKS),
        400,
        id="te-then-cl",
    ),
    # Transfer-Encodings another parser might read as chunked, or not.
    pytest.param(_chunkedPost(b"xchunked"), 400, id="te-xchunked"),
    pytest.param(_chunkedPost(b"chunked, identity"), 400, id="te-chunked-identity"),
    pytest.param(
        _post(b"Transfer-Encoding : chunked", body=_CHUNKS), 400, id="te-space-colon"
    ),
    pytest.param(
        _post(
            b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=_CHUNKS
        ),
        400,
        id="te-twice",
    ),
    pytest.param(
        _post(b"Transfer-Encoding:\x0bchunked", body=_CHUNKS), 400, id="te-vt"
    ),
    pytest.param(_chunkedPost(b"chunked\x00"), 400, id="te-nul"),
    pytest.param(_chunkedPost(b'"chunked"'), 400, id="te-quoted"),
    pytest.param(
        _post(b"X-A: 1", b" Transfer-Encoding: chunked", body=_CHUNKS),
        400,
        id="te-obs-fold",
    ),
    pytest.param(_chunkedPost(b"gzip, chunked"), 501, id="te-gzip-chunked"),
    pytest.param(
        _head(
            b"POST /probe HTTP/1.0",
            b"Host: 127.0.0.1",
            b"Transfer-Encoding: chunked",
            body=_CHUNKS,
        ),
        400,
        id="te-http10",
    ),
    pytest.param(_get(b"/probe", b"X-A: 1", b"  continued"), 400, id="obs-fold"),
    # Content-Lengths that two parsers could read two ways.
    pytest.param(
        _post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
        400,
        id="cl-differing",
    ),
    *(
        pytest.param(_post(b"Content-Length:" + value, body=b"hello"), 400, id=name)
        for name, value in [
            ("cl-plus", b" +5"),
            ("cl-minus", b" -5"),
            ("cl-hex", b" 0x5"),
            ("cl-list", b" 5,5"),
            ("cl-empty", b""),
            ("cl-20-digits", b" 1" + b"0" * 19),
        ]
    ),
    # Control characters.
    pytest.param(_get(b"/probe", b"X-A: a\x00b"), 400, id="value-nul"),
    pytest.param(_get(b"/probe", b"X-A: a\rb"), 400, id="value-cr"),
    pytest.param(_get(b"/probe", b"X-A: a\nb"), 400, id="value-lf"),
    *(
        pytest.param(_get(b"/a%cb" % byte), 400, id=f"target-{byte:#04x}")
        for byte in [*range(0x20), 0x7F]
    ),
    pytest.param(_get(b"/a b"), 400, id="target-space"),
    # Line endings other than CRLF, and no version at all.
    pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", 400, id="bare-lf-head"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, id="bare-lf-request-line"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http09"),
    # More header fields than max_headers (100); Host makes 102.
    pytest.param(
        _get(b"/probe", *(b"X-%d: %d" % (n, n) for n in range(101))),
        400,
        id="too-many-headers",
    ),
    # Not a forward proxy, and no Host that could name two things.
    pytest.param(_get(b"http://example.com/"), 403, id="absolute-form-other-host"),
    pytest.param(_get(b"/probe", b"Host: other.example"), 400, id="host-twice"),
    pytest.param(
        _head(b"GET /probe HTTP/1.1", b"Host: a.example/x?y"), 400, id="host-path"
    ),
    pytest.param(
        _head(b"GET /probe HTTP/1.1", b'Host: evil.com/"><x'), 400, id="host-markup"
    ),
]


@pytest.mark.parametrize(("probe", "status"), _REFUSED)
@pytest_twisted.ensureDeferred
async def test_refusedAtOnceAndNothingReachesBackend(
    stack: Stack, probe: bytes, status: int
) -> None:
    """An ambiguous or malformed head gets its status at once, then the close."""
    backend, client = await _start(stack)
    _write(client, probe)
    data = await _soon(client.waitFor(hasReplies(1)), "response")
    assert parseReplies(data)[0].status == status
    await _soon(client.lost, "close")
    [reply] = parseReplies(client.received)
    assert client.received.endswith(b"\r\n\r\n" + reply.body)
    # The proxy connects to a backend only once a head is accepted.
    assert _touched(backend) == []


_ACCEPTED = [
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Content-Length: 5",
            body=b"hello",
        ),
        (b"POST /one HTTP/1.1", [(b"content-length", b"5")], b"hello"),
        b"",
        id="content-length",
    ),
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Transfer-Encoding: chunked",
            body=b"3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n",
        ),
        (b"POST /one HTTP/1.1", [(b"transfer-encoding", b"chunked")], b"hello"),
        b"",
        id="chunked",
    ),
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Transfer-Encoding: CHUNKED",
            body=_CHUNKS,
        ),
        (b"POST /one HTTP/1.1", [(b"transfer-encoding", b"chunked")], b"hello"),
        b"",
        id="te-uppercase",
    ),
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Content-Length: 5",
            b"Content-Length: 5",
            body=b"hello",
        ),
        (b"POST /one HTTP/1.1", [(b"content-length", b"5")], b"hello"),
        b"",
        id="cl-twice-same",
    ),
    # Headers a backend might read with "_" as "-": never passed on, and
    # never framing; the real Content-Length (or none) frames the body.
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Content_Length: 5",
            b"Content-Length: 3",
            body=b"abc",
        ),
        (b"POST /one HTTP/1.1", [(b"content-length", b"3")], b"abc"),
        b"content_length",
        id="underscore-content-length",
    ),
    pytest.param(
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Transfer_Encoding: chunked",
            b"Content-Length: 5",
            body=b"hello",
        ),
        (b"POST /one HTTP/1.1", [(b"content-length", b"5")], b"hello"),
        b"transfer_encoding",
        id="underscore-transfer-encoding",
    ),
    pytest.param(
        _head(b"GET /one HTTP/1.1", b"Host: 127.0.0.1", b"X_Forwarded_For: 1.2.3.4"),
        (b"GET /one HTTP/1.1", [], b""),
        b"x_forwarded_for",
        id="underscore-x-forwarded-for",
    ),
]


@pytest.mark.parametrize(("probe", "expected", "dropped"), _ACCEPTED)
@pytest_twisted.ensureDeferred
async def test_acceptedRequestFramedOnceThenNext(
    stack: Stack,
    probe: bytes,
    expected: tuple[bytes, list[tuple[bytes, bytes]], bytes],
    dropped: bytes,
) -> None:
    """An accepted request and a GET in the same write reach the backend as two."""
    backend, client = await _start(stack)
    _write(client, probe + _NEXT)
    data = await _soon(client.waitFor(hasReplies(2)), "two responses")
    replies = parseReplies(data)
    assert [(r.status, r.body) for r in replies] == [
        (200, expected[0]),
        (200, b"GET /two HTTP/1.1"),
    ]
    forwarded = _forwarded(backend)
    assert [(r.requestLine, r.framing(), r.body) for r in forwarded] == [
        expected,
        (b"GET /two HTTP/1.1", [], b""),
    ]
    if dropped:
        assert forwarded[0].values(dropped) == []


@pytest_twisted.ensureDeferred
async def test_requestInsideBodyStaysBody(stack: Stack) -> None:
    """A request's bytes inside a body still being read are body, not a request."""
    backend, client = await _start(stack)
    body = b"hello" + _head(b"GET /smuggled HTTP/1.1", b"Host: 127.0.0.1")
    padding = b"x" * 10
    _write(
        client,
        _head(
            b"POST /one HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Content-Length: %d" % (len(body) + len(padding)),
            body=body,
        ),
    )
    conn = await _soon(backend.waitFor(lambda p: body in p.received), "body so far")
    # Half a body: no request complete at the backend yet, so no answer.
    assert _readRequests(conn.received)[0] == []
    assert client.received == b""
    _write(client, padding)
    await _soon(client.waitFor(hasReplies(1)), "response")
    _write(client, _NEXT)
    replies = parseReplies(await _soon(client.waitFor(hasReplies(2)), "responses"))
    assert [r.body for r in replies] == [b"POST /one HTTP/1.1", b"GET /two HTTP/1.1"]
    forwarded = _forwarded(backend)
    assert [(r.requestLine, r.framing(), r.body) for r in forwarded] == [
        (
            b"POST /one HTTP/1.1",
            [(b"content-length", b"%d" % len(body + padding))],
            body + padding,
        ),
        (b"GET /two HTTP/1.1", [], b""),
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"10000000000000000\r\n" + b"a" * 16, id="size-17-digits"),
        pytest.param(b"5g\r\nhello\r\n0\r\n\r\n", id="size-not-hex"),
        pytest.param(b"5\nhello\n0\n\n", id="bare-lf-lines"),
        pytest.param(b"5;a=b\nc\r\nhello\r\n0\r\n\r\n", id="bare-lf-extension"),
        pytest.param(
            b"5\r\nhello\r\n0\r\nX-T: 1\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            id="bare-lf-trailer-then-request",
        ),
        pytest.param(b"3\r\nabcdef\r\n0\r\n\r\n", id="data-longer-than-size"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_badChunkedBodyNeverCompletesAtBackend(stack: Stack, body: bytes) -> None:
    """A malformed chunked body gets 400; the backend never gets a whole body."""
    backend, client = await _start(stack)
    _write(client, _post(b"Transfer-Encoding: chunked"))
    conn = await _soon(
        backend.waitFor(lambda p: b"\r\n\r\n" in p.received), "head at the backend"
    )
    _write(client, body)
    # The backend answers only a complete request, so no response has started
    # when the proxy finds the fault: it can still answer 400.
    data = await _soon(client.waitFor(hasReplies(1)), "response")
    assert parseReplies(data)[0].status == 400
    await _soon(client.lost, "close")
    await _soon(conn.lost, "backend close")
    head, _, body = conn.received.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /probe HTTP/1.1\r\n")
    assert b"0\r\n\r\n" not in body
    assert _readRequests(conn.received) == ([], conn.received)
    for proto in backend.connections:
        assert b"/smuggled" not in proto.received


@pytest_twisted.ensureDeferred
async def test_hundredHeaderFieldsServed(stack: Stack) -> None:
    """A head of exactly 100 header fields (Host and 99 more) is served whole."""
    backend, client = await _start(stack)
    _write(client, _get(b"/probe", *(b"X-%d: %d" % (n, n) for n in range(99))))
    [reply] = parseReplies(await _soon(client.waitFor(hasReplies(1)), "response"))
    assert reply.status == 200
    [forwarded] = _forwarded(backend)
    assert (forwarded.requestLine, forwarded.framing(), forwarded.body) == (
        b"GET /probe HTTP/1.1",
        [],
        b"",
    )
    numbered = [(n, v) for n, v in forwarded.headers if n[2:].isdigit()]
    assert numbered == [(b"X-%d" % n, b"%d" % n) for n in range(99)]


@pytest_twisted.ensureDeferred
async def test_refusedRouteSendsNoContinueFirst(stack: Stack) -> None:
    """Expect: 100-continue on a route refusing the client gets 403 and no 100."""
    backend, client = await _start(stack, route='allow = ["192.0.2.0/24"]')
    _write(client, _post(b"Expect: 100-continue", b"Content-Length: 5"))
    data = await _soon(
        client.waitFor(lambda d: any(r.status >= 200 for r in parseReplies(d))),
        "final response",
    )
    assert [r.status for r in parseReplies(data)] == [403]
    assert _touched(backend) == []
