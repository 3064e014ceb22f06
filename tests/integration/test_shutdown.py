"""
Graceful shutdown on 127.0.0.1: stopping the service stops accepting at once,
lets requests in flight finish within C{shutdown_grace}, then cuts the rest.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError

from tests.integration.support import RawBackend, Stack, request

ROUTE = """
[proxy]
access_log = false
shutdown_grace = {grace}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""


T = TypeVar("T")


def watch(d: Deferred[T]) -> tuple[Deferred[T], list[Any]]:
    """C{d}, and a list that gets C{d}'s result once it has really fired."""
    results: list[Any] = []

    def record(result: Any) -> Any:
        results.append(result)
        return result

    return d.addBoth(record), results


@pytest_twisted.ensureDeferred
async def test_stopRefusesNewConnectionsButFinishesInFlight(stack: Stack) -> None:
    """After stopService new connects are refused; a request in flight gets its 200."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port, grace=30.0)
    front = proxy.port
    busy = await stack.connect(front)
    busy.transport.write(request(b"GET", b"/slow"))  # type: ignore[union-attr]
    conn = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    idle = await stack.connect(front)
    stopped, fired = watch(proxy.stopService())
    # An idle client connection is closed at once, after the listener is gone.
    await idle.lost
    assert idle.received == b""
    with pytest.raises(ConnectionRefusedError):
        await stack.connect(front)
    assert fired == []
    assert busy.received == b""
    conn.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ndone"
    )
    data = await busy.waitFor(lambda d: d.endswith(b"done"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    await stopped
    # The finished exchange's connection is closed, not kept alive.
    await busy.lost
    assert busy.received == data
    assert not proxy.running


@pytest_twisted.ensureDeferred
async def test_graceOverCutsRequestsStillInFlight(stack: Stack) -> None:
    """With shutdown_grace = 0.2, stopService fires after it and cuts the client."""
    raw = RawBackend()
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(ROUTE, port=port, grace=0.2)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/never"))  # type: ignore[union-attr]
    conn = await raw.waitFor(lambda p: p.received.endswith(b"\r\n\r\n"))
    began = stack.reactor.seconds()
    stopped, fired = watch(proxy.stopService())
    assert fired == []
    await stopped
    elapsed = stack.reactor.seconds() - began
    assert 0.2 <= elapsed < 5.0
    await client.lost
    assert client.received == b""
    # The backend's side is closed too: nothing is left waiting on it.
    await conn.lost
