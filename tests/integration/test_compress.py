"""
Response compression end to end: curl with and without gzip through the proxy
to a real backend, Vary on both answers, and an event stream that still flows
event by event once gzipped.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RecordingBackend,
    Stack,
    curl,
    request,
)

CONFIG = """
[proxy]
access_log = false
compress = ["text/html", "text/event-stream"]
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""

# 5 MiB of HTML that is not one line repeated.
PAGE = b"".join(
    b'<li id="n%d"><a href="/item/%d">item %d</a></li>\n' % (i, i * 7919 % 100003, i)
    for i in range(120_000)
)[: 5 * 1024 * 1024]


def _page(request: Any) -> bytes:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    vary = request.getHeader(b"x-backend-vary")
    if vary:
        request.setHeader(b"vary", vary)
    return PAGE


async def _fetch(
    tmp_path: Path, url: str, *options: str
) -> tuple[dict[bytes, list[bytes]], bytes]:
    """curl C{url}: the response headers (names in lower case) and the body."""
    body = tmp_path / "body"
    out, err, code = await curl(
        *options, "--dump-header", "-", "--output", str(body), url
    )
    assert code == 0, err
    headers: dict[bytes, list[bytes]] = {}
    for line in out.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers, body.read_bytes()


@pytest_twisted.ensureDeferred
async def test_varyWithAndWithoutGzip(stack: Stack, tmp_path: Path) -> None:
    """curl with --compressed and without gets the same 5 MiB, and Vary both times."""
    port = await stack.backend(RecordingBackend(handler=_page))
    proxy = await stack.proxy(CONFIG, port=port)
    url = f"http://127.0.0.1:{proxy.port}/page"

    headers, body = await _fetch(tmp_path, url, "--compressed")
    assert headers[b"content-encoding"] == [b"gzip"]
    assert headers[b"vary"] == [b"Accept-Encoding"]
    assert body == PAGE

    headers, body = await _fetch(tmp_path, url)
    assert b"content-encoding" not in headers
    assert headers[b"vary"] == [b"Accept-Encoding"]
    assert headers[b"content-length"] == [b"%d" % len(PAGE)]
    assert body == PAGE


@pytest_twisted.ensureDeferred
async def test_gzipBodyDecodesToTheBackendsBytes(stack: Stack, tmp_path: Path) -> None:
    """The gzip bytes as sent decode to exactly the backend's 5 MiB."""
    port = await stack.backend(RecordingBackend(handler=_page))
    proxy = await stack.proxy(CONFIG, port=port)
    url = f"http://127.0.0.1:{proxy.port}/page"
    # Without --compressed, curl hands over the body as it came.
    headers, body = await _fetch(tmp_path, url, "-H", "Accept-Encoding: gzip")
    assert headers[b"content-encoding"] == [b"gzip"]
    assert len(body) < len(PAGE) // 4
    assert gzip.decompress(body) == PAGE


@pytest_twisted.ensureDeferred
async def test_varyMergedIntoTheBackendsVary(stack: Stack, tmp_path: Path) -> None:
    """A backend's Vary gets Accept-Encoding once, gzipped or not; HEAD too."""
    port = await stack.backend(RecordingBackend(handler=_page))
    proxy = await stack.proxy(CONFIG, port=port)
    url = f"http://127.0.0.1:{proxy.port}/page"
    cookie = ("-H", "X-Backend-Vary: Cookie")
    for options in (("--compressed",), (), ("--head",)):
        headers, _ = await _fetch(tmp_path, url, *cookie, *options)
        assert headers[b"vary"] == [b"Cookie, Accept-Encoding"], options
    star = ("-H", "X-Backend-Vary: *")
    headers, body = await _fetch(tmp_path, url, *star, "--compressed")
    assert headers[b"vary"] == [b"*"]
    assert body == PAGE


def _decoded(data: bytes) -> tuple[bytes, bool]:
    """The gunzipped body so far of one chunked response, and whether it ended."""
    at = data.find(b"\r\n\r\n")
    if at < 0:
        return b"", False
    at += 4
    decoder = zlib.decompressobj(zlib.MAX_WBITS + 16)
    body = b""
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return body, False
        size = int(data[at:end], 16)
        if size == 0:
            return body, decoder.eof and data.endswith(b"\r\n\r\n")
        if len(data) < end + 2 + size + 2:
            return body, False
        body += decoder.decompress(data[end + 2 : end + 2 + size])
        at = end + 2 + size + 2


def _decodedIs(expected: bytes) -> Callable[[bytes], bool]:
    """A L{RawClient.waitFor} test: the body so far gunzips to C{expected}."""
    return lambda data: _decoded(data)[0] == expected


@pytest_twisted.ensureDeferred
async def test_eventStreamFlowsThroughGzip(stack: Stack) -> None:
    """Each gzipped event decodes at the client before the backend sends the next."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/events", [(b"Accept-Encoding", b"gzip")])
    )
    backend = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    backend.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    sent = b""
    for n in range(4):
        event = b"id: %d\ndata: event %d\n\n" % (n, n)
        backend.transport.write(b"%x\r\n%s\r\n" % (len(event), event))  # type: ignore[union-attr]
        sent += event
        data = await client.waitFor(_decodedIs(sent))
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\ncontent-encoding: gzip" in head
    assert b"\r\nvary: accept-encoding" in head
    backend.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
    data = await client.waitFor(lambda d: _decoded(d)[1])
    assert _decoded(data) == (sent, True)
