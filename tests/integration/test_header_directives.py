"""
The header directives beyond set and unset (Apache's Header and RequestHeader
edit, edit*, append and add), end to end on 127.0.0.1: what a raw client
reads off the wire, and what a real backend was sent.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.integration.support import (
    RecordingBackend,
    Stack,
    hasReplies,
    parseReplies,
    request,
)

CONFIG = """
[proxy]
access_log = false
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/app/"
to = "http://127.0.0.1:{port}/"
{route}
"""

# TOML literal strings ('...'): the backslashes reach the expression as written.
RESPONSE_DIRECTIVES = r"""
[proxy.response_headers]
edit = [["Set-Cookie", '^(sid=[^;]*)', '$1; Secure']]
edit_all = [["Link", 'http://', 'https://']]
append = [["Cache-Control", "no-store"]]
add = [["Set-Cookie", "lang=en; Path=/"]]
"""

REQUEST_DIRECTIVES = r"""
[route.request_headers]
edit = [["X-Tenant", '^tenant-(\d+)$', 't$1']]
edit_all = [["X-Path", '/+', '/']]
append = [["X-Trace", "proxy"]]
add = [["X-Tag", "one"], ["X-Tag", "two"]]
"""


def _send(client: Any, data: bytes) -> None:
    """Write C{data} to the proxy on C{client}'s connection."""
    client.transport.write(data)


def _pageWithCookie(request: Any) -> bytes:
    """A page with a session cookie, two Cache-Control fields and a Link."""
    headers = request.responseHeaders
    headers.addRawHeader(b"Set-Cookie", b"sid=abc; Path=/")
    headers.addRawHeader(b"Cache-Control", b"no-cache")
    headers.addRawHeader(b"Cache-Control", b"private")
    headers.addRawHeader(b"Link", b"<http://a.test/1>; rel=a, <http://a.test/2>")
    return b"page"


@pytest_twisted.ensureDeferred
async def test_responseDirectivesReachTheClient(stack: Stack) -> None:
    """Edit, edit_all, append and add shape the proxied response's header fields."""
    port = await stack.backend(RecordingBackend(handler=_pageWithCookie))
    proxy = await stack.proxy(CONFIG, port=port, proxy=RESPONSE_DIRECTIVES, route="")
    client = await stack.connect(proxy.port)
    _send(client, request(b"GET", b"/app/page"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    assert reply.body == b"page"
    assert reply.headerValues(b"set-cookie") == [
        b"sid=abc; Secure; Path=/",
        b"lang=en; Path=/",
    ]
    assert reply.headerValues(b"cache-control") == [b"no-cache, private, no-store"]
    assert reply.headerValues(b"link") == [
        b"<https://a.test/1>; rel=a, <https://a.test/2>"
    ]


@pytest_twisted.ensureDeferred
async def test_responseDirectivesOnTheProxysOwnErrors(stack: Stack) -> None:
    """The proxy's own 404 gets the added cookie and the appended Cache-Control."""
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(CONFIG, port=port, proxy=RESPONSE_DIRECTIVES, route="")
    client = await stack.connect(proxy.port)
    _send(client, request(b"GET", b"/elsewhere"))
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 404
    assert reply.headerValues(b"set-cookie") == [b"lang=en; Path=/"]
    assert reply.headerValues(b"cache-control") == [b"no-store"]


@pytest_twisted.ensureDeferred
async def test_requestDirectivesReachTheBackend(stack: Stack) -> None:
    """Edit, edit_all, append and add shape the headers the backend receives."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(CONFIG, port=port, proxy="", route=REQUEST_DIRECTIVES)
    client = await stack.connect(proxy.port)
    _send(
        client,
        request(
            b"GET",
            b"/app/h",
            [
                (b"X-Tenant", b"tenant-42"),
                (b"X-Path", b"//a///b"),
                (b"X-Trace", b"c1"),
                (b"X-Trace", b"c2"),
                (b"X-Tag", b"zero"),
            ],
        ),
    )
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    [seen] = backend.requests
    assert seen.headerValues(b"x-tenant") == [b"t42"]
    assert seen.headerValues(b"x-path") == [b"/a/b"]
    assert seen.headerValues(b"x-trace") == [b"c1, c2, proxy"]
    assert seen.headerValues(b"x-tag") == [b"zero", b"one", b"two"]


@pytest_twisted.ensureDeferred
async def test_requestAppendWithoutTheHeaderAddsIt(stack: Stack) -> None:
    """An append of a header the client did not send reaches the backend as set."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    proxy = await stack.proxy(CONFIG, port=port, proxy="", route=REQUEST_DIRECTIVES)
    client = await stack.connect(proxy.port)
    _send(client, request(b"GET", b"/app/h", [(b"X-Tenant", b"acme")]))
    await client.waitFor(hasReplies(1))
    [seen] = backend.requests
    assert seen.headerValues(b"x-trace") == [b"proxy"]
    assert seen.headerValues(b"x-tenant") == [b"acme"]
    assert seen.headerValues(b"x-tag") == [b"one", b"two"]
