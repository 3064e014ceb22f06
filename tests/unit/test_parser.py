"""The backend response parser, fed plain bytes."""

from __future__ import annotations

import pytest

from twisted_proxy.core.response import Headers, ResponseParseError, ResponseParser


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
        self.feedInPieces(data, 1)

    def feedInPieces(self, data: bytes, size: int) -> None:
        for i in range(0, len(data), size):
            self.parser.feed(data[i : i + size])


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


def test_unrequested101IsRefused() -> None:
    """A 101 nobody asked for is a fault, never a response to relay or reuse."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^unrequested 101 Switching"):
        r.parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    assert r.heads == []
    assert r.ends == 0


def test_101AcceptedWhenAskedFor() -> None:
    """A caller that asked for an upgrade gets the 101, and no keep-alive after it."""
    r = Recorder()
    r.parser.expect(b"GET", allowUpgrade=True)
    rest = r.parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    assert rest == b""
    assert r.heads == [(101, b"Switching Protocols", [(b"Upgrade", b"x")])]
    assert r.ends == 1
    assert not r.parser.keepAlive


def test_upgradeIsAllowedForOneResponseOnly() -> None:
    """Allowing a 101 holds for the response asked for, not for the next."""
    r = Recorder()
    r.parser.expect(b"GET", allowUpgrade=True)
    r.parser.expect(b"GET")
    with pytest.raises(ResponseParseError, match=r"^unrequested 101"):
        r.parser.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x08", b"\x1b", b"\x7f"])
def test_controlCharacterInReasonRefused(byte: bytes) -> None:
    """A reason phrase with a control byte other than HTAB is refused."""
    r = Recorder()
    with pytest.raises(
        ResponseParseError, match=r"^control character in the reason phrase$"
    ):
        r.parser.feed(b"HTTP/1.1 200 O" + byte + b"K\r\nContent-Length: 0\r\n\r\n")
    assert r.heads == []


@pytest.mark.parametrize(
    ("head", "fault"),
    [
        # A bare LF in the reason would carry a header of the backend's choosing.
        (
            b"HTTP/1.1 200 OK\nSet-Cookie: session=evil\r\nContent-Length: 0",
            "control character in the reason phrase",
        ),
        (
            b"HTTP/1.1 200 OK\rSet-Cookie: session=evil\r\nContent-Length: 0",
            "control character in the reason phrase",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\nSet-Cookie: session=evil\r\n",
            "control character in the value of b'X-A'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\rSet-Cookie: session=evil\r\n",
            "control character in the value of b'X-A'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\n",
            "control character in the value of b'Content-Length'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nSet-Cookie\n: x",
            "header name is not a token: b'Set-Cookie\\n'",
        ),
    ],
)
def test_bareLineBreakInHeadRefused(head: bytes, fault: str) -> None:
    """A CR or LF that is not part of a CRLF, anywhere in the head, is refused."""
    r = Recorder()
    with pytest.raises(ResponseParseError) as caught:
        r.parser.feed(head + b"\r\n\r\n")
    assert str(caught.value) == fault
    assert r.heads == []


@pytest.mark.parametrize(
    "name",
    [
        b"X Bad",
        b"X-Bad ",
        b"X(Bad)",
        b'X"Bad',
        b"X/Bad",
        b"X@Bad",
        b"X[Bad]",
        b"X{Bad}",
        b"X=Bad",
        b"X\x00Bad",
        b"X\x7fBad",
        b"\xe9t\xe9",
        b"",
    ],
)
def test_headerNameNotATokenRefused(name: bytes) -> None:
    """A header name with a byte outside RFC 9110's tchar is refused."""
    r = Recorder()
    response = b"HTTP/1.1 200 OK\r\nX-Good: 1\r\n%s: v\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ResponseParseError):
        r.parser.feed(response % name)
    assert r.heads == []


def test_headerNameNotATokenNamesTheFault() -> None:
    """The fault names the header, in short."""
    r = Recorder()
    with pytest.raises(
        ResponseParseError, match=r"^header name is not a token: b'X Bad'$"
    ):
        r.parser.feed(b"HTTP/1.1 200 OK\r\nX Bad: 1\r\n\r\n")


def test_everyTokenCharacterAccepted() -> None:
    """Every tchar of RFC 9110 is accepted in a header name."""
    name = (
        b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 204 No Content\r\n%s: v\r\n\r\n" % name)
    assert r.heads == [(204, b"No Content", [(name, b"v")])]


@pytest.mark.parametrize(
    "byte", [b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f"]
)
def test_controlCharacterInHeaderValueRefused(byte: bytes) -> None:
    """A header value with a control byte other than HTAB is refused."""
    r = Recorder()
    with pytest.raises(
        ResponseParseError, match=r"^control character in the value of b'X-Esc'$"
    ):
        r.parser.feed(b"HTTP/1.1 200 OK\r\nX-Esc: a" + byte + b"b\r\n\r\n")
    assert r.heads == []


def test_tabAndObsTextAccepted() -> None:
    """HTAB and bytes 0x80-0xff are allowed in the reason and in values."""
    obsText = bytes(range(0x80, 0x100))
    r = Recorder()
    r.parser.feed(
        b"HTTP/1.1 200 OK\tfine " + obsText + b"\r\n"
        b"X-Text: a\tb " + obsText + b"\r\nContent-Length: 0\r\n\r\n"
    )
    [(status, reason, headers)] = r.heads
    assert status == 200
    assert reason == b"OK\tfine " + obsText
    assert headers[0] == (b"X-Text", b"a\tb " + obsText)


@pytest.mark.parametrize(
    ("statusLine", "reason"),
    [
        (b"HTTP/1.1 200", b""),
        (b"HTTP/1.1 200 ", b""),
        (b"HTTP/1.0 599 Odd", b"Odd"),
        (b"HTTP/1.1 100 Continue", None),
        (b"HTTP/1.1 404 Not  Found ", b"Not  Found "),
    ],
)
def test_goodStatusLines(statusLine: bytes, reason: bytes | None) -> None:
    """Status lines with or without a reason parse, the reason kept as sent."""
    r = Recorder()
    r.parser.feed(statusLine + b"\r\nContent-Length: 0\r\n\r\n")
    if reason is None:
        assert r.heads == []
    else:
        assert r.heads[0][:2] == (int(statusLine[9:12]), reason)


@pytest.mark.parametrize(
    "code", [b"099", b"000", b"600", b"999", b"20", b"2000", b"+20", b"2 0", b"20x"]
)
def test_badStatusCodesRefused(code: bytes) -> None:
    """A status code is three digits from 100 to 599; anything else is refused."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^bad status (code|line) "):
        r.parser.feed(b"HTTP/1.1 " + code + b" OK\r\nContent-Length: 0\r\n\r\n")
    assert r.heads == []


def test_status099NamesTheFault() -> None:
    """Status 099 is refused as such, not read as 99."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^bad status code b'099'$"):
        r.parser.feed(b"HTTP/1.1 099 Odd\r\n\r\n")


@pytest.mark.parametrize(
    "statusLine",
    [
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1\t200 OK",
        b" HTTP/1.1 200 OK",
        b"HTTP/1.10 200 OK",
        b"HTTP/1. 200 OK",
        b"HTTP/1.x 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1",
        b"HTTP/1.1 ",
        b"HTTP/1.1 200OK",
        b"ICY 200 OK",
        b"",
    ],
)
def test_badStatusLinesRefused(statusLine: bytes) -> None:
    """Only HTTP/1.x SP 3DIGIT, then SP and a reason or nothing, is a status line."""
    r = Recorder()
    with pytest.raises(ResponseParseError):
        r.parser.feed(statusLine + b"\r\nContent-Length: 0\r\n\r\n")
    assert r.heads == []


def test_longFaultsAreShortenedInTheMessage() -> None:
    """A fault quotes at most ~40 of the backend's bytes, so it cannot flood a log."""
    r = Recorder()
    with pytest.raises(ResponseParseError) as caught:
        r.parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X" * 5000 + b" : v\r\n\r\n")
    assert len(str(caught.value)) < 100


def _headOf(size: int) -> bytes:
    """A 200 head of exactly C{size} bytes, the blank line included."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


def test_headAtTheLimitAccepted() -> None:
    """A head of exactly 64 KiB, blank line included, is accepted."""
    r = Recorder()
    r.parser.feed(_headOf(65536))
    assert r.ends == 1


def test_headOverTheLimitInOneReadRefused() -> None:
    """A head larger than 64 KiB is refused even when it arrives in one read."""
    r = Recorder()
    with pytest.raises(
        ResponseParseError, match=r"^response head larger than 65536 bytes$"
    ):
        r.parser.feed(_headOf(65537))
    assert r.heads == []


def test_70KBHeadWithBodyInOneReadRefused() -> None:
    """A 70 KB head followed by its body in the same read is refused."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^response head larger than"):
        r.parser.feed(_headOf(70 * 1024) + b"body")


@pytest.mark.parametrize("size", [1, 1000, 4096, 65535, 65536])
def test_headOverTheLimitInPiecesRefused(size: int) -> None:
    """A head larger than 64 KiB is refused whatever the sizes of the reads."""
    head = _headOf(65537)
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^response head larger than"):
        r.feedInPieces(head, size)
    assert r.heads == []


def test_headWithoutEndRefusedAtTheLimit() -> None:
    """Bytes that never end a head are refused once they pass the limit."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"x" * 65000)
    with pytest.raises(ResponseParseError, match=r"^response head larger than"):
        r.parser.feed(b"x" * 1000)


def test_obsFoldJoinedWithSpace() -> None:
    """A folded header value is joined with single spaces (RFC 9112 5.2)."""
    r = Recorder()
    r.parser.feed(
        b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\tc \r\n \r\nContent-Length: 0\r\n\r\n"
    )
    assert r.heads[0][2] == [(b"X-Long", b"a b c"), (b"Content-Length", b"0")]


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\n", b"\r"])
def test_obsFoldCannotCarryAControlCharacter(byte: bytes) -> None:
    """A continuation line is checked like the value it joins."""
    r = Recorder()
    with pytest.raises(
        ResponseParseError, match=r"^control character in the value of b'X-Long'$"
    ):
        r.parser.feed(b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b" + byte + b"c\r\n\r\n")
    assert r.heads == []


def test_obsFoldBeforeAnyHeaderRefused() -> None:
    """A continuation line right after the status line is refused."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^continuation line before any"):
        r.parser.feed(b"HTTP/1.1 200 OK\r\n X: 1\r\n\r\n")


def test_interimResponsesUpToTheCapSkipped() -> None:
    """Sixteen interim responses before the final one are skipped."""
    r = Recorder()
    r.parser.feed(
        b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" * 16
        + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert [h[0] for h in r.heads] == [200]
    assert r.ends == 1


def test_interimFloodRefused() -> None:
    """A seventeenth interim response is refused."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^more than 16 interim responses$"):
        r.parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 17)
    assert r.heads == []


def test_interimHeadsCountTowardTheLimit() -> None:
    """Interim heads and the final head share the 64 KiB limit."""
    r = Recorder()
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + b"l" * 40000 + b"\r\n\r\n"
    with pytest.raises(ResponseParseError, match=r"^response head larger than"):
        r.parser.feed(interim + _headOf(30000))
    assert r.heads == []


def test_limitsStartAfreshForEachResponse() -> None:
    """The next response on the connection has its own head budget and interim cap."""
    r = Recorder()
    for _ in range(3):
        r.parser.expect(b"GET")
        r.parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 16 + _headOf(60000))
    assert r.ends == 3


def test_wholeResponseByteByByte() -> None:
    """A head with interim responses, folding and no reason parses byte by byte."""
    r = Recorder()
    r.feedBytewise(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200\r\nX-Fold: a\r\n b\r\nX-Obs: \xff\tz\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    assert r.heads == [
        (
            200,
            b"",
            [(b"X-Fold", b"a b"), (b"X-Obs", b"\xff\tz"), (b"Content-Length", b"3")],
        )
    ]
    assert b"".join(r.body) == b"abc"
    assert r.ends == 1
    assert r.parser.keepAlive


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra",
    ],
)
def test_bytesAfterTheResponseMeanNoReuse(response: bytes) -> None:
    """A backend that sends more than its response is not asked again."""
    r = Recorder()
    assert r.parser.feed(response) != b""
    assert r.ends == 1
    assert not r.parser.keepAlive


def test_hugeContentLengthRefused() -> None:
    """A Content-Length of thousands of digits is a fault, not a crash."""
    r = Recorder()
    with pytest.raises(ResponseParseError, match=r"^bad Content-Length b'1111"):
        r.parser.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 4301 + b"\r\n\r\n"
        )
    assert r.heads == []


def test_longestContentLengthAccepted() -> None:
    """Eighteen digits of Content-Length are accepted."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n")
    assert r.heads[0][0] == 200
    assert r.ends == 0


_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("size", [1, 100, 8192])
def test_longChunkLineRefusedWhateverTheReads(size: int) -> None:
    """A chunk line over 4096 bytes is refused, whole or split."""
    r = Recorder()
    r.parser.feed(_CHUNKED_HEAD)
    with pytest.raises(ResponseParseError, match=r"^chunk line longer than 4096"):
        r.feedInPieces(b"1;" + b"e" * 4095 + b"\r\nA\r\n0\r\n\r\n", size)
    assert r.body == []


def test_chunkLineAtTheLimitAccepted() -> None:
    """A chunk line of exactly 4096 bytes, extension included, is accepted."""
    r = Recorder()
    r.parser.feed(_CHUNKED_HEAD + b"1;" + b"e" * 4094 + b"\r\nA\r\n0\r\n\r\n")
    assert r.body == [b"A"]
    assert r.ends == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\n",
        b"HTTP/1.1 200 OK\n",
    ],
)
def test_bareLFHeadRefusedBeforeItEnds(head: bytes) -> None:
    """
    A head whose lines end in bare LF (which never ends in CRLF CRLF) is a
    fault as soon as the LF arrives, not a response waited for until timeout.
    """
    parser = ResponseParser(lambda *a: None, lambda d: None, lambda: None)
    parser.expect(b"GET")
    with pytest.raises(ResponseParseError, match="bare LF in the response head"):
        parser.feed(head)


def test_lengthLeftIsTheContentLengthBodyStillToCome() -> None:
    """Only a Content-Length body in progress, with nothing buffered, has bytes left."""
    r = Recorder()
    assert r.parser.lengthLeft == 0
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert r.parser.lengthLeft == 7
    chunked = Recorder()
    chunked.parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")
    assert chunked.parser.lengthLeft == 0
    closing = Recorder()
    closing.parser.feed(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert closing.parser.lengthLeft == 0


def test_movedBytesCountAndTheLastEndTheResponse() -> None:
    """
    Bytes moved past the parser (spliced) are counted as received, are not
    delivered as body, and end the response when they are the last.
    """
    r = Recorder()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    r.parser.feed(head + b"abc")
    r.parser.moved(4)
    assert (r.parser.lengthLeft, r.ends, r.parser.bytesReceived) == (
        3,
        0,
        len(head) + 7,
    )
    r.parser.moved(3)
    assert r.ends == 1
    assert r.parser.complete
    assert r.parser.keepAlive
    assert b"".join(r.body) == b"abc"


def test_movingMoreThanTheBodyIsRefused() -> None:
    """More bytes than are left cannot have been moved: a fault, not a new response."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    with pytest.raises(ValueError, match="11 bytes moved, 10 expected"):
        r.parser.moved(11)
    assert r.ends == 0


def test_aCutAfterMovedBytesIsNotClean() -> None:
    """A close before the moved bytes reach the length still cuts the response."""
    r = Recorder()
    r.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    r.parser.moved(9)
    assert not r.parser.noMoreData()
    assert r.ends == 0
