"""
Long response bodies spliced from the backend's socket to the client's
(L{twisted_proxy.upstream.splice}), end to end on 127.0.0.1: every byte in
order, both connections usable afterwards, and each way it can go wrong
(the backend dying or stalling mid-body, the client leaving or taking
nothing) ending the way it does for a body relayed through Python, with
the same access-log line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    Stack,
    accessLogLines,
    answerEach,
    deferLater,
    hasReplies,
    parseReplies,
    request,
    theReactor,
)
from twisted_proxy.service import ProxyService
from twisted_proxy.upstream import splice

pytestmark = pytest.mark.skipif(not splice.available, reason="splice(2) is Linux's")

CONFIG = """
[proxy]
access_log = {log}
access_log_format = "%>s %b %X %{{PROXY_END_REASON}}e"
send_timeout = {send}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
timeout = {timeout}
"""

SIZE = 4 * 1024 * 1024


def body(size: int = SIZE) -> bytes:
    """Bytes no two offsets of which are alike within 251 (a reorder shows)."""
    block = bytes(range(251))
    return (block * (size // len(block) + 1))[:size]


BODY = body()


def head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length


@pytest.fixture
def splices(monkeypatch: pytest.MonkeyPatch) -> list[splice.BodySplice]:
    """Every splice the proxy starts (so a test knows its body took that path)."""
    started: list[splice.BodySplice] = []
    start = splice.BodySplice.start

    def recording(self: splice.BodySplice) -> bool:
        took = start(self)
        if took:
            started.append(self)
        return took

    monkeypatch.setattr(splice.BodySplice, "start", recording)
    return started


async def proxyTo(
    stack: Stack, raw: RawBackend, log: Path, send: float = 60, timeout: float = 60
) -> ProxyService:
    port = await stack.rawBackend(raw)
    return await stack.proxy(
        CONFIG,
        port=port,
        log=json.dumps(str(log)),
        send=send,
        timeout=timeout,
    )


def bigAndSmall(proto: RawServerProtocol, index: int, requestHead: bytes) -> None:
    """GET /big: the 4 MiB body; anything else: a short one."""
    assert proto.transport is not None
    if requestHead.startswith(b"GET /big "):
        proto.transport.write(head(SIZE) + BODY)
    else:
        proto.transport.write(head(5) + b"small")


@pytest_twisted.ensureDeferred
async def test_bodyByteForByteThenBothConnectionsCarryOn(
    stack: Stack, tmp_path: Path, splices: list[splice.BodySplice]
) -> None:
    """
    4 MiB spliced arrive whole and in order; the client's next request on
    the same connection is answered on the same backend connection, and
    the access log counts the body.
    """
    raw = RawBackend(answerEach(bigAndSmall))
    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, raw, log)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.waitFor(hasReplies(1))
    client.transport.write(request(b"GET", b"/small"))  # type: ignore[union-attr]
    data = await client.waitFor(hasReplies(2))
    big, small = parseReplies(data)
    assert (big.status, len(big.body)) == (200, SIZE)
    assert hashlib.sha256(big.body).digest() == hashlib.sha256(BODY).digest()
    assert small.body == b"small"
    assert len(splices) == 1
    assert len(raw.connections) == 1
    assert raw.connections[0].received.count(b"GET /") == 2
    assert accessLogLines(proxy, log) == [f"200 {SIZE} + complete", "200 5 + complete"]


@pytest_twisted.ensureDeferred
async def test_pipelinedRequestAnsweredAfterSplicedBody(
    stack: Stack, tmp_path: Path, splices: list[splice.BodySplice]
) -> None:
    """A request sent behind the big one, before its answer, is answered after it."""
    raw = RawBackend(answerEach(bigAndSmall))
    proxy = await proxyTo(stack, raw, tmp_path / "access.log")
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/big") + request(b"GET", b"/after")
    )
    big, small = parseReplies(await client.waitFor(hasReplies(2)))
    assert big.body == BODY
    assert small.body == b"small"
    assert len(splices) == 1


@pytest_twisted.ensureDeferred
async def test_backendDyingMidBody(
    stack: Stack, tmp_path: Path, logged: list[str], splices: list[splice.BodySplice]
) -> None:
    """
    A backend that closes after 1 MiB of 4: the client gets what came and
    a closed connection, the log says the backend closed, as unspliced.
    """

    def dies(proto: RawServerProtocol, index: int, requestHead: bytes) -> None:
        assert proto.transport is not None
        proto.transport.write(head(SIZE) + BODY[: 1024 * 1024])
        proto.transport.loseConnection()

    log = tmp_path / "access.log"
    proxy = await proxyTo(stack, RawBackend(answerEach(dies)), log)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.lost
    got = client.received.split(b"\r\n\r\n", 1)[1]
    assert got == BODY[: len(got)]
    assert len(got) < SIZE
    assert len(splices) == 1
    [line] = accessLogLines(proxy, log)
    assert line.startswith("200 ")
    assert line.endswith(" X backend-closed")
    assert any("backend closed the connection" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_backendStallingMidBody(
    stack: Stack, tmp_path: Path, logged: list[str], splices: list[splice.BodySplice]
) -> None:
    """A backend silent for the route's timeout mid-body is cut, the client too."""

    def stalls(proto: RawServerProtocol, index: int, requestHead: bytes) -> None:
        assert proto.transport is not None
        proto.transport.write(head(SIZE) + BODY[: 1024 * 1024])

    log = tmp_path / "access.log"
    raw = RawBackend(answerEach(stalls))
    proxy = await proxyTo(stack, raw, log, timeout=0.3)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.lost
    await raw.connections[0].lost
    assert len(splices) == 1
    [line] = accessLogLines(proxy, log)
    assert line.endswith(" X backend-timeout")
    assert any("no answer from backend within 0.3s" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_clientLeavingMidBody(
    stack: Stack, tmp_path: Path, logged: list[str], splices: list[splice.BodySplice]
) -> None:
    """
    A client that leaves mid-body: the backend's connection is dropped (the
    body unfinished), the log says the client went away.
    """

    def endless(proto: RawServerProtocol, index: int, requestHead: bytes) -> None:
        assert proto.transport is not None
        proto.transport.write(head(64 * SIZE) + BODY)

    log = tmp_path / "access.log"
    raw = RawBackend(answerEach(endless))
    proxy = await proxyTo(stack, raw, log)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.waitFor(lambda data: len(data) > 1024 * 1024)
    client.transport.abortConnection()  # type: ignore[union-attr]
    await raw.connections[0].lost
    assert len(splices) == 1
    await deferLater(theReactor(), 0.05)
    [line] = accessLogLines(proxy, log)
    assert line.startswith("200 ")
    assert " X " in line
    assert any("client went away" in line for line in logged)
    assert not any("Traceback" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_clientTakingNothingIsCutAfterSendTimeout(
    stack: Stack, tmp_path: Path, splices: list[splice.BodySplice]
) -> None:
    """
    A client that stops reading mid-body is cut after send_timeout, and
    the body bytes logged are fewer than were spliced into its socket.
    """
    sent = {"bytes": 0}

    def plenty(proto: RawServerProtocol, index: int, requestHead: bytes) -> None:
        transport: Any = proto.transport
        total = 256 * 1024 * 1024
        transport.write(head(total))
        piece = body(1024 * 1024)

        class Pump:
            def resumeProducing(self) -> None:
                self.paused = False
                while not self.paused and sent["bytes"] < total:
                    transport.write(piece)
                    sent["bytes"] += len(piece)

            def pauseProducing(self) -> None:
                self.paused = True

            def stopProducing(self) -> None:
                self.paused = True

            paused = False

        pump = Pump()
        transport.registerProducer(pump, True)
        pump.resumeProducing()

    log = tmp_path / "access.log"
    raw = RawBackend(answerEach(plenty))
    proxy = await proxyTo(stack, raw, log, send=0.3)
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/big"))  # type: ignore[union-attr]
    await client.waitFor(lambda data: len(data) > 0)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    await raw.connections[0].lost
    client.transport.resumeProducing()  # type: ignore[union-attr]
    await client.lost
    assert len(splices) == 1
    [line] = accessLogLines(proxy, log)
    status, logged, connection, reason = line.split(" ")
    assert (status, connection, reason) == ("200", "X", "send-timeout")
    assert 0 < int(logged) <= len(client.received)


@pytest.mark.parametrize("refusedCall", [1, 2])
@pytest_twisted.ensureDeferred
async def test_aSystemThatWillNotSpliceRelaysThroughPython(
    stack: Stack,
    tmp_path: Path,
    logged: list[str],
    splices: list[splice.BodySplice],
    monkeypatch: pytest.MonkeyPatch,
    refusedCall: int,
) -> None:
    """
    splice(2) refused (EINVAL, as in some sandboxes) on the first read from
    the backend, or on the first write to the client with bytes in the pipe:
    the body still arrives whole, it is said once, and later bodies are
    relayed through Python.
    """
    realSplice = os.splice
    calls = {"n": 0}

    def refusing(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == refusedCall:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return realSplice(*args, **kwargs)

    monkeypatch.setattr(os, "splice", refusing)
    monkeypatch.setattr(splice, "available", True)
    raw = RawBackend(answerEach(bigAndSmall))
    proxy = await proxyTo(stack, raw, tmp_path / "access.log")
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/big") + request(b"GET", b"/big")
    )
    first, second = parseReplies(await client.waitFor(hasReplies(2)))
    assert first.body == BODY
    assert second.body == BODY
    assert len(splices) == 1
    assert calls["n"] == refusedCall
    refusals = [line for line in logged if "splice(2) refused" in line]
    assert refusals == [
        "splice(2) refused (Invalid argument): long response bodies are relayed"
        " through Python from now on"
    ]
