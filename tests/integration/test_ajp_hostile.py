"""
ajp:// backends that misbehave, played by a fake container on 127.0.0.1
that reads the proxy's packets and answers by script: headers an HTTP
backend could not send, a body past its Content-Length, a container that
vanishes mid-body or stays silent, bytes after the end of an answer, and
one asking for more body than a packet holds. What the client sees, what is
logged, and that a broken connection never carries the next request.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    Stack,
    curl,
    deferLater,
    hasReplies,
    parseReplies,
    request,
)

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "ajp://127.0.0.1:{port}/"
timeout = {timeout}
"""


def s(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value + b"\x00"


def i(value: int) -> bytes:
    return struct.pack("!H", value)


def packet(body: bytes) -> bytes:
    return b"AB" + i(len(body)) + body


def headers(*pairs: tuple[bytes, bytes], status: int = 200) -> bytes:
    fields = b"".join(s(name) + s(value) for name, value in pairs)
    return packet(b"\x04" + i(status) + s(b"OK") + i(len(pairs)) + fields)


def chunk(data: bytes) -> bytes:
    return packet(b"\x03" + i(len(data)) + data + b"\x00")


END = packet(b"\x05\x01")
GOOD = headers((b"Content-Length", b"4")) + chunk(b"good") + END


def packets(data: bytes) -> list[bytes]:
    """The proxy's packets in C{data} (each with its 0x1234 head), whole ones."""
    found = []
    while len(data) >= 4:
        assert data[:2] == b"\x12\x34", data[:16]
        size = struct.unpack("!H", data[2:4])[0]
        if len(data) < 4 + size:
            break
        found.append(data[: 4 + size])
        data = data[4 + size :]
    return found


def container(
    answer: Callable[[RawServerProtocol, int, list[bytes]], object],
) -> RawBackend:
    """
    A fake container: C{answer(connection, index, packets)} once for each
    FORWARD_REQUEST on a connection (the packets received so far).
    """

    def onData(proto: RawServerProtocol) -> None:
        got = packets(proto.received)
        forwards = [p for p in got if p[4:5] == b"\x02"]
        answered: int = getattr(proto, "answered", 0)
        while answered < len(forwards):
            answered += 1
            proto.answered = answered  # type: ignore[attr-defined]
            answer(proto, answered - 1, got)

    return RawBackend(onData)


def firstAnswers(hostile: bytes) -> RawBackend:
    """The first connection's first request gets C{hostile}, others GOOD."""

    def answer(proto: RawServerProtocol, index: int, got: list[bytes]) -> None:
        first = proto is raw.connections[0] and index == 0
        proto.transport.write(hostile if first else GOOD)  # type: ignore[union-attr]

    raw = container(answer)
    return raw


async def ask(stack: Stack, port: int, path: bytes) -> tuple[Any, bytes]:
    client = await stack.connect(port)
    client.transport.write(request(b"GET", path))  # type: ignore[union-attr]
    data = await client.waitFor(hasReplies(1))
    [reply] = parseReplies(data)
    return reply, data


def logLine(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(word in line for word in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


@pytest.mark.parametrize(
    ("hostile", "fault"),
    [
        pytest.param(
            headers((b"X-A", b"1\r\nSet-Cookie: session=evil")),
            "a control byte in the value of X-A",
            id="crlf-in-value",
        ),
        pytest.param(
            headers((b"Set-Cookie: session", b"evil")),
            "a header name that is not a token: b'Set-Cookie: session'",
            id="colon-in-name",
        ),
        pytest.param(
            headers((b"Content-Length", b"4"), (b"Content-Length", b"5")),
            "conflicting Content-Length headers",
            id="two-lengths",
        ),
        pytest.param(
            headers(status=101), "status 101 as a final response", id="status-101"
        ),
        pytest.param(chunk(b"evil") + END, "SEND_BODY_CHUNK before SEND_HEADERS"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\nevil", "a packet that does not start with AB"
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_aBadHeadIs502AndTheConnectionDropped(
    stack: Stack, logged: list[str], hostile: bytes, fault: str
) -> None:
    raw = firstAnswers(hostile)
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, timeout=5)
    reply, data = await ask(stack, proxy.port, b"/first")
    assert (reply.status, reply.body) == (502, b"backend unavailable\n")
    assert b"evil" not in data
    await raw.connections[0].lost
    line = logLine(logged, "bad AJP from backend")
    assert line == (
        f"route */ member ajp://127.0.0.1:{port}: bad AJP from backend: {fault}"
    )
    reply, _ = await ask(stack, proxy.port, b"/second")
    assert (reply.status, reply.body) == (200, b"good")
    assert len(raw.connections) == 2


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            headers((b"Content-Length", b"100")) + chunk(b"x" * 10),
            "backend closed the connection",
            id="vanishes-mid-body",
        ),
        pytest.param(
            headers((b"Content-Length", b"3")) + chunk(b"abcdef") + END,
            "a body longer than its Content-Length",
            id="longer-than-length",
        ),
        pytest.param(
            headers((b"Content-Length", b"10")) + chunk(b"abc") + END,
            "a body 7 bytes short of its Content-Length",
            id="shorter-than-length",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_aBodyCutOrOverlongCutsTheClient(
    stack: Stack, logged: list[str], answer: bytes, words: str
) -> None:
    """The head went out: the client's connection is cut, never a clean end."""

    def respond(proto: RawServerProtocol, index: int, got: list[bytes]) -> None:
        proto.transport.write(answer)  # type: ignore[union-attr]
        if words == "backend closed the connection":
            proto.transport.loseConnection()  # type: ignore[union-attr]

    raw = container(respond)
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, timeout=5)
    out, err, code = await curl("-i", f"http://127.0.0.1:{proxy.port}/page")
    # curl: 18, transfer closed with data left; 56, the connection reset.
    assert code in (18, 56), (code, err)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"abcdef" not in out
    logLine(logged, words)


@pytest_twisted.ensureDeferred
async def test_aSilentContainerIs504(stack: Stack, logged: list[str]) -> None:
    raw = container(lambda proto, index, got: None)
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, timeout=0.3)
    reply, _ = await ask(stack, proxy.port, b"/slow")
    assert reply.status == 504
    logLine(logged, "no answer from backend within 0.3s")
    await raw.connections[0].lost


@pytest_twisted.ensureDeferred
async def test_bytesAfterTheEndDropTheConnection(
    stack: Stack, logged: list[str]
) -> None:
    """An answer followed by more bytes: answered, and the connection not reused."""
    raw = firstAnswers(GOOD + chunk(b"evil"))
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, timeout=5)
    reply, data = await ask(stack, proxy.port, b"/first")
    assert (reply.status, reply.body) == (200, b"good")
    assert b"evil" not in data
    await raw.connections[0].lost
    reply, _ = await ask(stack, proxy.port, b"/second")
    assert (reply.status, reply.body) == (200, b"good")
    assert len(raw.connections) == 2


@pytest_twisted.ensureDeferred
async def test_aGreedyAskGetsOnePacketAtATime(stack: Stack) -> None:
    """
    A container asking for 65,535 bytes at a time gets at most 8,186 per
    packet, only after each ask, and the body's end as an empty packet.
    """
    body = bytes(range(256)) * 160  # 40,960 bytes
    asks = 0

    def onData(proto: RawServerProtocol) -> None:
        nonlocal asks
        got = packets(proto.received)
        if not got:
            return
        bodies = got[1:]
        if bodies and bodies[-1] == b"\x12\x34\x00\x00":
            proto.transport.write(GOOD)  # type: ignore[union-attr]
            return
        if len(bodies) > asks:
            asks += 1
            proto.transport.write(packet(b"\x06" + i(65535)))  # type: ignore[union-attr]

    raw = RawBackend(onData)
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port, timeout=5)
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"POST", b"/up", [(b"Content-Length", b"%d" % len(body))], body)
    )
    data = await client.waitFor(hasReplies(1))
    [reply] = parseReplies(data)
    assert (reply.status, reply.body) == (200, b"good")
    got = packets(raw.connections[0].received)
    forward, *bodies, end = got
    assert end == b"\x12\x34\x00\x00"
    assert [len(p) for p in bodies] == [8192] * 5 + [4 + 2 + 40960 - 5 * 8186]
    assert b"".join(p[6:] for p in bodies) == body
    assert asks == len(bodies)
    await deferLater(stack.reactor, 0)
