"""
Defects found while splitting the listener side, each checked end to end:
real proxy and backends on 127.0.0.1, a raw client.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.integration.support import (
    RecordingBackend,
    Stack,
    hasReplies,
    parseReplies,
    request,
)

_CONFIG = """
[proxy]
access_log = false
{proxy}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
{host}
path = "/"
to = "http://127.0.0.1:{port}/"
"""


@pytest.mark.parametrize(
    ("proxy", "host", "target", "hostHeader"),
    [
        ("", 'host = "example.test"', b"http://example.test./x", b"example.test."),
        (
            'server_name = "example.test."',
            "",
            b"http://example.test./x",
            b"example.test.",
        ),
        (
            'server_name = "example.test."',
            "",
            b"http://example.test/x",
            b"example.test",
        ),
        ("", 'host = "[::1]"', b"http://[::1]/x", b"[::1]"),
    ],
    ids=["route-host", "dotted-server-name", "dotted-server-name-undotted", "ipv6"],
)
@pytest_twisted.ensureDeferred
async def test_absoluteFormNamingAServedHostIsServed(
    stack: Stack, proxy: str, host: str, target: bytes, hostHeader: bytes
) -> None:
    """
    An absolute-form target naming a host the proxy serves, however the name
    is written (a trailing dot, IPv6 brackets), reaches the backend, not 403.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    service = await stack.proxy(_CONFIG, port=port, proxy=proxy, host=host)
    client = await stack.connect(service.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", target, host=hostHeader)
    )
    [reply] = parseReplies(await client.waitFor(hasReplies(1)))
    assert reply.status == 200
    assert [r.uri for r in backend.requests] == [b"/x"]
