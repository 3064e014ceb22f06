"""The backend response parser, fed plain bytes."""

from __future__ import annotations

import pytest

from twisted_proxy.upstream.parser import Headers, ResponseParseError, ResponseParser


class Recorder:
    """Collects what the parser reports."""

    def __init__(self, method: bytes = b"GET") -> None:
        self.heads: list[tuple[int, bytes, Headers]] = []
        self.body: list[bytes] = []
        self.ends = 0
        self.parser = ResponseParser(self.onHead, self.body.append, self.onEnd)
        self.parser.expect(method)

    def onHead(self, status: int, reason: bytes, headers: Headers) -> None:
        self.heads.append((status, reason, headers))

    def onEnd(self) -> None:
        self.ends += 1

    def feedBytewise(self, data: bytes) -> None:
        for i in range(len(data)):
            self.parser.feed(data[i : i + 1])


def test_contentLengthBody() -> None:
    """A Content-Length body is delivered and ends the response."""
    r = Recorder()
    rest = r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert rest == b""
    assert r.heads == [(200, b"OK", [(b"Content-Length", b"5")])]
    assert b"".join(r.body) == b"hello"
    assert r.ends == 1
    assert r.parser.complete
    assert r.parser.keepAlive


def test_chunkedBodyByteByByte() -> None:
    """Chunked coding is decoded even when every byte arrives alone."""
    r = Recorder()
    r.feedBytewise(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    assert b"".join(r.body) == b"hello world"
    assert r.ends == 1
    assert r.parser.keepAlive


def test_headEndsAtHeaders() -> None:
    """A HEAD response ends with its head despite a Content-Length."""
    r = Recorder(b"HEAD")
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert r.ends == 1
    assert r.body == []


@pytest.mark.parametrize("status", [204, 304])
def test_noBodyStatuses(status: int) -> None:
    """204 and 304 have no body."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 %d X\r\n\r\n" % status)
    assert r.ends == 1
    assert r.heads[0][0] == status


def test_interimResponsesSkipped() -> None:
    """100 Continue and 103 Early Hints are not the response."""
    r = Recorder()
    r.parser.feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    assert [h[0] for h in r.heads] == [201]
    assert r.ends == 1


def test_closeDelimitedBody() -> None:
    """No length: the body runs until the connection closes, and is not reused."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    r.parser.feed(b" more")
    assert r.ends == 0
    assert r.parser.closeDelimited
    assert not r.parser.keepAlive
    assert r.parser.noMoreData() is True
    assert b"".join(r.body) == b"some more"
    assert r.ends == 1


def test_truncatedBodyIsNotClean() -> None:
    """A Content-Length body cut short is reported as such."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert r.parser.noMoreData() is False
    assert r.ends == 0


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"HTTP/1.1", b"", True),
        (b"HTTP/1.1", b"Connection: close\r\n", False),
        (b"HTTP/1.0", b"", False),
        (b"HTTP/1.0", b"Connection: keep-alive\r\n", True),
    ],
)
def test_keepAlive(version: bytes, connection: bytes, keep: bool) -> None:
    """Persistence follows the version and the Connection header."""
    r = Recorder()
    r.parser.feed(b"%s 200 OK\r\n%sContent-Length: 0\r\n\r\n" % (version, connection))
    assert r.parser.keepAlive is keep


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformedResponses(response: bytes) -> None:
    """What is not HTTP/1.1 raises ResponseParseError."""
    r = Recorder()
    with pytest.raises(ResponseParseError):
        r.parser.feed(response)


def test_bytesAfterTheResponseAreReturned() -> None:
    """Anything after the end of the response is handed back, not parsed."""
    r = Recorder()
    rest = r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA")
    assert rest == b"EXTRA"


def test_chunkedWithLengthIsNotReused() -> None:
    """Chunked plus Content-Length: chunked wins and the connection is not reused."""
    r = Recorder()
    r.parser.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n"
    )
    assert b"".join(r.body) == b"x"
    assert not r.parser.keepAlive
