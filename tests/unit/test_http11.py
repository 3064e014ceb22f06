"""Request heads and chunked bodies, parsed from plain bytes."""

from __future__ import annotations

import pytest

from twisted_proxy.http11 import (
    CHUNKED,
    NO_BODY,
    ChunkedDecoder,
    HTTPError,
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
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-Continue"
    )
    assert chunked.length == CHUNKED
    assert chunked.expectContinue


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"HTTP/1.1", b"", True),
        (b"HTTP/1.1", b"\r\nConnection: keep-alive, close", False),
        (b"HTTP/1.0", b"", False),
        (b"HTTP/1.0", b"\r\nConnection: keep-alive", False),
    ],
)
def test_persistence(version: bytes, connection: bytes, keep: bool) -> None:
    """HTTP/1.1 stays open unless told to close; HTTP/1.0 always closes."""
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
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
    ],
)
def test_refusedHeads(head: bytes, status: int) -> None:
    """Heads that could be read two ways, or not at all, are refused."""
    with pytest.raises(HTTPError) as caught:
        parseRequestHead(head)
    assert caught.value.status == status


def test_sameContentLengthTwiceIsAccepted() -> None:
    """Repeated identical Content-Lengths mean one length (RFC 9110 8.6)."""
    head = parseRequestHead(
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3"
    )
    assert head.length == 3


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
    [b"zz\r\n", b"5\r\nhelloXX\r\n", b"-1\r\n", b"\r\n", b"1" * 5000],
)
def test_malformedChunks(body: bytes) -> None:
    """A bad size, a missing CRLF or an endless size line is a 400."""
    with pytest.raises(HTTPError) as caught:
        Collect().decoder.feed(body)
    assert caught.value.status == 400
