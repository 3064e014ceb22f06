"""The gzip decision and encoder."""

from __future__ import annotations

import gzip

import pytest

from twisted_proxy.compress import (
    GzipStream,
    acceptsGzip,
    compressedHeaders,
    shouldCompress,
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
