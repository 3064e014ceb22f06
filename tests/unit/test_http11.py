"""Request heads and chunked bodies, parsed from plain bytes."""

from __future__ import annotations

import pytest

from twisted_proxy.core.http11 import (
    CHUNKED,
    NO_BODY,
    ChunkedDecoder,
    HTTPError,
    checkHeadStart,
    parseRequestHead,
)


def test_simpleGet() -> None:
    """Method, target, version and headers come out as sent, in order."""
    head = parseRequestHead(b"GET /a%2Fb?q=1+2 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2")
    assert (head.method, head.target, head.version) == (
        b"GET",
        b"/a%2Fb?q=1+2",
        b"HTTP/1.1",
    )
    assert head.headers == [(b"Host", b"h"), (b"X-A", b"1"), (b"x-a", b"2")]
    assert head.length == NO_BODY
    assert head.keepAlive
    assert not head.expectContinue


def test_lengthChunkedAndExpect() -> None:
    """Content-Length, chunked coding and 100-continue are recognised."""
    assert parseRequestHead(b"POST / HTTP/1.1\r\nContent-Length: 12").length == 12
    chunked = parseRequestHead(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-Continue"
    )
    assert chunked.length == CHUNKED
    assert chunked.expectContinue


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"HTTP/1.1", b"", True),
        (b"HTTP/1.1", b"\r\nConnection: keep-alive, close", False),
        (b"HTTP/1.0", b"", False),
        (b"HTTP/1.0", b"\r\nConnection: Keep-Alive", True),
        (b"HTTP/1.0", b"\r\nConnection: keep-alive, close", False),
    ],
)
def test_persistence(version: bytes, connection: bytes, keep: bool) -> None:
    """HTTP/1.1 stays open unless told to close; HTTP/1.0 only if it asks."""
    head = parseRequestHead(b"GET / " + version + b"\r\nHost: h" + connection)
    assert head.keepAlive is keep


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /", 400),
        (b"GET  / HTTP/1.1", 400),
        (b"G(T / HTTP/1.1", 400),
        (b"GET / HTTP/2.0", 505),
        (b"GET / FTP/1.0", 400),
        (b"GET / HTTP/1.1\r\nNo colon", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x", 400),
        (b"GET / HTTP/1.1\r\nName : x", 400),
        (b"GET / HTTP/1.1\r\nA: 1\r\n folded", 400),
        (b"GET / HTTP/1.1\r\nA: 1\x002", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked", 400),
        (b"POST / HTTP/1.1" + b"\r\nTransfer-Encoding: chunked" * 2, 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked", 400),
        (b'POST / HTTP/1.1\r\nTransfer-Encoding: "chunked"', 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity,chunked", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
        # Control bytes: in the target, in a value, alone or as bare CR/LF.
        (b"GET /a\x01b HTTP/1.1", 400),
        (b"GET /a\x7fb HTTP/1.1", 400),
        (b"GET /a\rb HTTP/1.1", 400),
        (b"GET /a\x00 HTTP/1.1", 400),
        (b"GET /\tx HTTP/1.1", 400),
        (b"GET / HTTP/1.1\r\nA: 1\x1b2", 400),
        (b"GET / HTTP/1.1\r\nA: 1\x7f", 400),
        (b"GET / HTTP/1.1\r\nA: 1\r2", 400),
        (b"GET / HTTP/1.1\nHost: h", 400),
        (b"GET / HTTP/1.1\r\nHost: h\nX: y", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding:\x0bchunked", 400),
        # Versions: other majors, odd spellings.
        (b"GET / HTTP/3.0", 505),
        (b"GET / HTTP/0.9", 505),
        (b"GET / http/1.1", 400),
        (b"GET / HTTP/1.10", 400),
        (b"GET / HTTP/1", 400),
    ],
)
def test_refusedHeads(head: bytes, status: int) -> None:
    """Heads that could be read two ways, or not at all, are refused."""
    with pytest.raises(HTTPError) as caught:
        parseRequestHead(head)
    assert caught.value.status == status


def test_sameContentLengthTwiceIsAccepted() -> None:
    """
    Repeated identical Content-Lengths mean one length (RFC 9110 8.6), and
    only one of them is kept to be forwarded.
    """
    head = parseRequestHead(
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nX: 1\r\nContent-Length: 3"
    )
    assert head.length == 3
    assert head.headers == [(b"Content-Length", b"3"), (b"X", b"1")]


@pytest.mark.parametrize("minor", [b"2", b"9"])
def test_laterMinorVersionIsHTTP11(minor: bytes) -> None:
    """HTTP/1.2 and later minors are answered as HTTP/1.1 (RFC 9110 6.2)."""
    head = parseRequestHead(b"GET / HTTP/1." + minor + b"\r\nHost: h")
    assert head.version == b"HTTP/1.1"
    assert head.keepAlive
    assert head.requestLine == b"GET / HTTP/1." + minor


def test_requestLineKept() -> None:
    """The request line is kept as received, for the access log."""
    head = parseRequestHead(b"GET //a/../b?q HTTP/1.1\r\nHost: h")
    assert head.requestLine == b"GET //a/../b?q HTTP/1.1"
    assert head.target == b"//a/../b?q"


def test_browserQueryCharactersAccepted() -> None:
    """Characters browsers leave unencoded in queries are accepted."""
    head = parseRequestHead(b"GET /s?q={a}|^[b]`c HTTP/1.1\r\nHost: h")
    assert head.target == b"/s?q={a}|^[b]`c"


def test_headerFieldLimit() -> None:
    """More header fields than max_headers is a 400; exactly as many is fine."""
    fields = b"".join(b"\r\nX-%d: 1" % i for i in range(100))
    assert len(parseRequestHead(b"GET / HTTP/1.1" + fields).headers) == 100
    with pytest.raises(HTTPError) as caught:
        parseRequestHead(b"GET / HTTP/1.1" + fields + b"\r\nX: 1")
    assert caught.value.status == 400
    assert "more than 100 header fields" in caught.value.message
    with pytest.raises(HTTPError):
        parseRequestHead(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2", maxHeaders=1)


@pytest.mark.parametrize(
    ("partial", "message"),
    [
        (b"GET / HTTP/1.1\nHost: h\n", "bare LF"),
        (b"GET / HTTP/1.1\n", "bare LF"),
        (b"GET /\r\n", "HTTP/0.9"),
        (b"GET / HTTP/2.0\r\nHost", "version"),
        (b"GET /a\x01 HTTP/1.1\r\n", "control character"),
    ],
)
def test_incompleteHeadRefusedEarly(partial: bytes, message: str) -> None:
    """
    A head that cannot become valid is refused before its blank line: a
    client ending lines with bare LF, or an HTTP/0.9 request, never sends one.
    """
    with pytest.raises(HTTPError) as caught:
        checkHeadStart(partial)
    assert message in caught.value.message


@pytest.mark.parametrize(
    "partial",
    [b"", b"GE", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"GET / HTTP/1.1\r\nHo"],
)
def test_incompleteHeadWaits(partial: bytes) -> None:
    """The start of a good head is not refused."""
    checkHeadStart(partial)


class Collect:
    """Collects what a decoder reports."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.ends = 0
        self.decoder = ChunkedDecoder(self.data.append, self.end)

    def end(self) -> None:
        self.ends += 1


def test_chunkedBodyWholeAndByteByByte() -> None:
    """The body decodes the same whether it arrives whole or a byte at a time."""
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    whole = Collect()
    assert whole.decoder.feed(body) == b"NEXT"
    assert b"".join(whole.data) == b"hello world"
    assert whole.ends == 1
    assert whole.decoder.done
    bytewise = Collect()
    rest = b""
    for i in range(len(body)):
        rest += bytewise.decoder.feed(body[i : i + 1])
    assert b"".join(bytewise.data) == b"hello world"
    assert rest == b"NEXT"
    assert bytewise.ends == 1


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",
        b"5\r\nhelloXX\r\n",
        b"5\r\nhelloX",
        b"-1\r\n",
        b"\r\n",
        b"1" * 5000,
        b"10000000000000000\r\n",
        b"5\nhello\n0\n\n",
        b"5\r\nhello\n",
        b"5;a=b\nc\r\n",
        b"5;a\rb\r\n",
        b"5;a\x00\r\n",
        b"0\r\nX-T: 1\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        b"0\r\nno colon\r\n\r\n",
        b"0\r\nX: \x01\r\n\r\n",
        b"0\r\n" + b"X: 1\r\n" * 20000,
    ],
)
def test_malformedChunks(body: bytes) -> None:
    """
    A bad size, a missing CRLF, a bare LF or control byte in a chunk line or
    trailer, an endless size line or endless trailers: a 400.
    """
    with pytest.raises(HTTPError) as caught:
        Collect().decoder.feed(body)
    assert caught.value.status == 400
