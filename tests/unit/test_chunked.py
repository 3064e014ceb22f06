"""One chunked decoder: a request body and a backend's response alike."""

from __future__ import annotations

import pytest

from twisted_proxy.core.chunked import MAX_LINE, ChunkedDecoder, ChunkedError
from twisted_proxy.core.http11 import ChunkedDecoder as RequestBodyDecoder
from twisted_proxy.core.http11 import HTTPError
from twisted_proxy.core.response import ResponseParseError, ResponseParser

_HOSTILE = [
    b"zz\r\n",
    b"5\r\nhelloX",
    b"5\nhello\n0\n\n",
    b"5;a\x00\r\n",
    b"5;a\rb\r\n",
    b"1;" + b"e" * (MAX_LINE - 1) + b"\r\n",
    b"0\r\nno colon\r\n\r\n",
    b"0\r\nX: \x01\r\n\r\n",
    b"0\r\n" + b"X: 1\r\n" * 20000,
]


@pytest.mark.parametrize("body", _HOSTILE)
def test_refusedAlike(body: bytes) -> None:
    """What is not chunked coding is refused from a client and a backend alike."""
    with pytest.raises(ChunkedError) as plain:
        ChunkedDecoder(lambda data: None, lambda: None).feed(body)
    with pytest.raises(HTTPError) as request:
        RequestBodyDecoder(lambda data: None, lambda: None).feed(body)
    assert (request.value.status, request.value.message) == (400, str(plain.value))
    parser = ResponseParser(lambda *a: None, lambda data: None, lambda: None)
    parser.expect(b"GET")
    with pytest.raises(ResponseParseError, match=str(plain.value)):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


def test_lineAtTheLimit() -> None:
    """A chunk line of exactly MAX_LINE bytes, extension included, is read."""
    data: list[bytes] = []
    ends: list[None] = []
    decoder = ChunkedDecoder(data.append, lambda: ends.append(None))
    line = b"1;" + b"e" * (MAX_LINE - 2)
    assert decoder.feed(line + b"\r\nA\r\n0\r\n\r\nrest") == b"rest"
    assert (data, len(ends), decoder.done) == ([b"A"], 1, True)
