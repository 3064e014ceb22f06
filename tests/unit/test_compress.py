"""The gzip decision and encoder."""

from __future__ import annotations

import gzip
import zlib

import pytest

from twisted_proxy.core.compress import (
    GzipStream,
    Headers,
    acceptsGzip,
    compressedHeaders,
    shouldCompress,
    varyHeaders,
)

HTML = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Length", b"10")]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (None, False),
        (b"", False),
        (b"gzip", True),
        (b"deflate, gzip;q=0.5", True),
        (b"gzip;q=0", False),
        (b"br, *", True),
        (b"identity", False),
    ],
)
def test_acceptsGzip(value: bytes | None, accepted: bool) -> None:
    """Accept-Encoding with q-values decides whether gzip is welcome."""
    assert acceptsGzip(value) is accepted


def test_onlyListedTypesAnd200() -> None:
    """Only a 200 of a listed type, not already encoded, is compressed."""
    types = (b"text/html",)
    assert shouldCompress(types, b"GET", 200, b"gzip", HTML)
    # HEAD is answered with the headers of the GET.
    assert shouldCompress(types, b"HEAD", 200, b"gzip", HTML)
    assert not shouldCompress(types, b"GET", 206, b"gzip", HTML)
    assert not shouldCompress(types, b"GET", 200, None, HTML)
    assert not shouldCompress((b"text/css",), b"GET", 200, b"gzip", HTML)
    encoded = [*HTML, (b"Content-Encoding", b"br")]
    assert not shouldCompress(types, b"GET", 200, b"gzip", encoded)


def test_headersAndStream() -> None:
    """Content-Length goes, gzip and Vary come; the stream decompresses whole."""
    headers = compressedHeaders(HTML)
    names = [n.lower() for n, _ in headers]
    assert b"content-length" not in names
    assert (b"Content-Encoding", b"gzip") in headers
    assert (b"Vary", b"Accept-Encoding") in headers
    stream = GzipStream()
    first = stream.compress(b"<p>hello ")
    assert first  # flushed at once: a stream is never held back
    body = first + stream.compress(b"world</p>") + stream.finish()
    assert gzip.decompress(body) == b"<p>hello world</p>"


def test_varyExtended() -> None:
    """An existing Vary gets Accept-Encoding added, once."""
    headers = compressedHeaders([*HTML, (b"Vary", b"Cookie")])
    assert (b"Vary", b"Cookie, Accept-Encoding") in headers


def test_varyStarLeftAlone() -> None:
    """A Vary: * already says everything; gzipping adds nothing to it."""
    headers = compressedHeaders([*HTML, (b"Vary", b"*")])
    assert [v for n, v in headers if n == b"Vary"] == [b"*"]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, HTML),
        # Already encoded by the backend: the proxy passes it as it is.
        (200, [*HTML, (b"Content-Encoding", b"br")]),
        # A 304 carries the Vary its 200 would have (RFC 9110, 15.4.5).
        (304, [(b"Content-Type", b"text/html")]),
    ],
)
def test_varyOnCompressibleResponses(status: int, headers: Headers) -> None:
    """A listed type gets Vary: Accept-Encoding, whatever the client accepts."""
    assert varyHeaders((b"text/html",), status, headers) == [
        *headers,
        (b"Vary", b"Accept-Encoding"),
    ]


@pytest.mark.parametrize(
    ("types", "status", "headers"),
    [
        ((), 200, HTML),
        ((b"text/css",), 200, HTML),
        ((b"text/html",), 404, HTML),
        ((b"text/html",), 206, HTML),
        ((b"text/html",), 200, [(b"Content-Length", b"3")]),
    ],
)
def test_noVaryWhenNeverCompressed(
    types: tuple[bytes, ...], status: int, headers: Headers
) -> None:
    """A response that no client would get gzipped is left as it came."""
    assert varyHeaders(types, status, headers) == headers


@pytest.mark.parametrize(
    ("vary", "merged"),
    [
        ([b"Cookie"], [b"Cookie, Accept-Encoding"]),
        ([b"Cookie", b"Origin"], [b"Cookie, Accept-Encoding", b"Origin"]),
        ([b"accept-encoding"], [b"accept-encoding"]),
        ([b"Cookie", b"Origin,  Accept-Encoding "], None),
        ([b"*"], [b"*"]),
        ([b"Cookie", b"*"], None),
        ([b""], [b"Accept-Encoding"]),
    ],
)
def test_varyMerged(vary: list[bytes], merged: list[bytes] | None) -> None:
    """Accept-Encoding joins an existing Vary once; a Vary: * stays as it is."""
    headers = [*HTML, *((b"Vary", v) for v in vary)]
    out = varyHeaders((b"text/html",), 200, headers)
    assert [v for n, v in out if n.lower() == b"vary"] == (merged or vary)


def test_varyThenCompressedHeaders() -> None:
    """Vary added before the gzip decision is not added twice by it."""
    headers = compressedHeaders(varyHeaders((b"text/html",), 200, HTML))
    assert [v for n, v in headers if n.lower() == b"vary"] == [b"Accept-Encoding"]


def test_streamFlushesEveryPieceAtAnyLevel() -> None:
    """Every level's stream hands out each piece decodable at once."""
    for level in (1, 6, 9):
        stream = GzipStream(level)
        decoder = zlib.decompressobj(zlib.MAX_WBITS + 16)
        for n in range(3):
            event = b"data: event %d\n\n" % n
            assert decoder.decompress(stream.compress(event)) == event
        assert stream.compress(b"") == b""
        assert decoder.decompress(stream.finish()) == b""
        assert decoder.eof


def test_streamLevelChangesTheOutput() -> None:
    """The level given is the level used: 9 makes a smaller body than 1."""
    body = b"".join(
        b'{"id": %d, "name": "item %d"},\n' % (i, i % 97) for i in range(5000)
    )
    sizes = {}
    for level in (1, 9):
        stream = GzipStream(level)
        data = stream.compress(body) + stream.finish()
        assert gzip.decompress(data) == body
        sizes[level] = len(data)
    assert sizes[9] < sizes[1]


def test_piecesOfOneReadFlushedOnce() -> None:
    """
    Pieces compressed without a flush (the chunks of one backend read) come
    out at the next flush, whole, and the stream still decodes exactly.
    """
    stream = GzipStream()
    held = stream.compress(b"event: a\n\n" * 50, flush=False)
    held += stream.compress(b"event: b\n\n" * 50, flush=False)
    out = held + stream.flush()
    # Everything so far can be read before the end of the stream.
    assert zlib.decompressobj(31).decompress(out) == b"event: a\n\n" * 50 + (
        b"event: b\n\n" * 50
    )
    out += stream.compress(b"tail") + stream.finish()
    assert gzip.decompress(out) == (
        b"event: a\n\n" * 50 + b"event: b\n\n" * 50 + b"tail"
    )
