"""
Access-log lines of responses cut short, end to end on 127.0.0.1: a backend
dying mid-body, a client leaving, the shutdown grace period running out and
send_timeout each leave a line with the status and bytes that went out,
%X and %{PROXY_END_REASON}e (the JSON format's connection_status and
end_reason) saying how the response ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET

from tests.integration.support import (
    RawBackend,
    RawClient,
    RawServerProtocol,
    RecordingBackend,
    Stack,
    Trickle,
    accessLogLines,
    answerEach,
    hasReplies,
    request,
)
from twisted_proxy.service import ProxyService

CONFIG = """
[proxy]
access_log = {log}
access_log_format = {format}
shutdown_grace = {grace}
send_timeout = {send}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""

# Status, body bytes, all bytes out, connection status, end reason.
ENDING = "%>s %b %O %X %{PROXY_END_REASON}e"
PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"


async def proxyTo(
    stack: Stack,
    port: int,
    log: Path,
    fmt: str = ENDING,
    grace: float = 30.0,
    send: float = 60.0,
) -> ProxyService:
    """A proxy to the backend on C{port}, logging C{fmt} lines to C{log}."""
    return await stack.proxy(
        CONFIG,
        port=port,
        log=json.dumps(str(log)),
        format=json.dumps(fmt),
        grace=grace,
        send=send,
    )


def partialThenSilent(proto: RawServerProtocol, index: int, head: bytes) -> None:
    """A backend that sends the head and ten bytes of a 1000-byte body, then stalls."""
    if head.startswith(b"GET /partial "):
        proto.transport.write(PARTIAL)  # type: ignore[union-attr]


async def partialClient(stack: Stack, proxy: ProxyService) -> RawClient:
    """A client whose GET /partial has had its head and ten body bytes."""
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/partial"))  # type: ignore[union-attr]
    await client.waitFor(lambda data: data.endswith(b"0123456789"))
    return client


@pytest_twisted.ensureDeferred
async def test_completeResponsesSayIfKeptAlive(stack: Stack, tmp_path: Path) -> None:
    """A whole response logs complete, with + on a kept-alive connection, else -."""
    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, await stack.backend(RecordingBackend()), log)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/a"))  # type: ignore[union-attr]
    first = await client.waitFor(hasReplies(1))
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/b", [(b"Connection", b"close")])
    )
    await client.lost
    size = len(b"backend saw GET /a")
    assert accessLogLines(proxy, log) == [
        f"200 {size} {len(first)} + complete",
        f"200 {size} {len(client.received) - len(first)} - complete",
    ]


@pytest_twisted.ensureDeferred
async def test_backendDyingMidBody(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    A backend dying mid-body: the status sent, the ten body bytes and the
    bytes the client got, X, backend-closed.
    """
    raw = RawBackend(answerEach(partialThenSilent))
    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, await stack.rawBackend(raw), log)
    client = await partialClient(stack, proxy)
    raw.connections[0].transport.abortConnection()  # type: ignore[union-attr]
    await client.lost
    assert accessLogLines(proxy, log) == [
        f"200 10 {len(client.received)} X backend-closed"
    ]
    assert not any("client went away" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_clientLeaving(stack: Stack, tmp_path: Path, logged: list[str]) -> None:
    """
    A client leaving mid-body logs what it was sent; one leaving before any
    response logs no status and no bytes; both X, client-closed.
    """
    raw = RawBackend(answerEach(partialThenSilent))
    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, await stack.rawBackend(raw), log)
    reading = await partialClient(stack, proxy)
    reading.transport.abortConnection()  # type: ignore[union-attr]
    await raw.connections[0].lost
    waiting = await stack.connect(proxy.port)
    waiting.transport.write(request(b"GET", b"/never"))  # type: ignore[union-attr]
    backend = await raw.waitFor(lambda p: b"GET /never " in p.received)
    waiting.transport.abortConnection()  # type: ignore[union-attr]
    await backend.lost
    assert accessLogLines(proxy, log) == [
        f"200 10 {len(reading.received)} X client-closed",
        "- - 0 X client-closed",
    ]
    assert [line for line in logged if "client went away" in line] == [
        "route */: client went away before the response ended"
    ] * 2


@pytest_twisted.ensureDeferred
async def test_shutdownGraceRunningOut(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    The grace period running out: each response in flight is logged as cut
    by it (JSON: connection_status X, end_reason shutdown-grace), and the
    error log says so, not that the client went away.
    """
    raw = RawBackend(answerEach(partialThenSilent))
    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, await stack.rawBackend(raw), log, "json", grace=0.2)
    partial = await partialClient(stack, proxy)
    waiting = await stack.connect(proxy.port)
    waiting.transport.write(request(b"GET", b"/never"))  # type: ignore[union-attr]
    await raw.waitFor(lambda p: b"GET /never " in p.received)
    await proxy.stopService()
    await partial.lost
    await waiting.lost
    records = sorted(
        (json.loads(line) for line in log.read_text().splitlines()),
        key=lambda r: str(r["uri"]),
    )
    got = [
        (r["uri"], r["status"], r["bytes"], r["connection_status"], r["end_reason"])
        for r in records
    ]
    assert got == [
        ("/never", None, 0, "X", "shutdown-grace"),
        ("/partial", 200, 10, "X", "shutdown-grace"),
    ]
    assert records[0]["bytes_out"] == 0
    assert records[1]["bytes_out"] == len(partial.received)
    cut = "route */: shutdown grace period over: response cut short"
    assert [line for line in logged if line == cut] == [cut, cut]
    assert not any("client went away" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_sendTimeout(stack: Stack, tmp_path: Path) -> None:
    """
    A client that stops reading is cut after send_timeout: X, send-timeout,
    and the body bytes logged are those that left, not the many more the
    proxy had written into its socket for the client by then.
    """
    stopped: defer.Deferred[None] = defer.Deferred()

    def big(req: Any) -> Any:
        req.notifyFinish().addErrback(lambda _: stopped.callback(None))
        Trickle(req, 256 * 1024 * 1024, 65536)
        return NOT_DONE_YET

    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend(handler=big))
    proxy = await proxyTo(stack, port, log, send=0.2)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.waitFor(lambda data: len(data) > 0)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    await stopped
    client.transport.resumeProducing()  # type: ignore[union-attr,attr-defined]
    await client.lost
    [line] = accessLogLines(proxy, log)
    status, body, total, connection, reason = line.split(" ")
    assert (status, connection, reason) == ("200", "X", "send-timeout")
    # Measured: about 190 KiB reached the client, and 3.7 MiB more were
    # still in the proxy's socket to it when it was cut; only the first count.
    assert 0 < int(body) < int(total) <= len(client.received)
