"""Peers for the WebSocket benchmark (L{bench.websocket}), each its own process.

``serve``
    The backend: an Autobahn server on Twisted, on 127.0.0.1 only. Any path
    echoes every message back. ``/firehose?bytes=N&size=S`` pushes N bytes as
    S-byte binary messages (the repeated L{bench.bigpeers.PATTERN}) as fast as
    the peer takes them: the sender is a streaming producer on its TCP
    transport, so the backend itself never buffers more than the transport's
    own 64 KiB. ``/__bench_stats`` answers with one text message giving the
    counters (L{Counters}) and closes. Writes its port to ``--port-file``; stops
    after ``--lifetime`` s.
``echo-load``
    The load generator: ``--connections`` clients, each keeping ``--window``
    ``--size``-byte messages in flight and sending one more for every echo,
    for ``--seconds`` once all are open. Writes messages/s, round-trip times
    and any wrong echo to ``--result-file``.
``idle``
    Opens ``--connections`` WebSockets (at most ``--concurrency`` handshakes at
    a time), keeps them idle, and rewrites ``--status-file`` every half second
    with how many are open, until stopped or ``--lifetime`` has passed.
``slow-read``
    One client fetching ``/firehose`` and reading it at no more than ``--rate``
    MB/s, checking the byte count and the CRC-32 of the payloads.

The clients speak the wire protocol themselves (RFC 6455: a handshake, masked
frames out, a small frame reader in), not through Autobahn, so that they cost
the load CPU little next to what they measure. Every process raises its soft
C{RLIMIT_NOFILE} to the hard limit: thousands of connections need as many
descriptors.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import json
import os
import resource
import socket
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTCP, IReactorTime, ITransport
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from bench._procs import busyShares, cpuSeconds, cpuTimes
from bench.bigpeers import CHUNK, PATTERN, Throttle, patternCrc

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
STATS_PATH = "/__bench_stats"
FIREHOSE_PATH = "/firehose"
_MAX_HEAD = 16 * 1024
_MAX_MESSAGE = 64 * 1024 * 1024
_STALL_TIMEOUT = 30.0


class FrameError(Exception):
    """The peer sent something that is not a WebSocket frame we accept."""


def raiseFileLimit() -> tuple[int, int]:
    """Raise the soft C{RLIMIT_NOFILE} to the hard one; the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- the wire protocol, without I/O ---------------------------------------------


def acceptKey(key: bytes) -> bytes:
    """The C{Sec-WebSocket-Accept} a server must answer C{key} with."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def newKey() -> bytes:
    """A fresh C{Sec-WebSocket-Key}."""
    return base64.b64encode(os.urandom(16))


def handshakeRequest(port: int, path: str, key: bytes) -> bytes:
    """The opening handshake of a client for C{ws://127.0.0.1:port/path}."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode('ascii')}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def checkHandshake(head: bytes, key: bytes) -> str | None:
    """Why the response head C{head} does not open a WebSocket (C{None}: it does).

    C{head} is everything up to and including the blank line.
    """
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        return f"handshake answered {lines[0][:80].decode('latin-1')!r}"
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get(b"upgrade", b"").lower() != b"websocket":
        return "101 without Upgrade: websocket"
    if headers.get(b"sec-websocket-accept") != acceptKey(key):
        return "101 with a wrong Sec-WebSocket-Accept"
    if headers.get(b"sec-websocket-extensions"):
        return "101 with extensions we did not offer"
    return None


def _xor(payload: bytes, mask: bytes) -> bytes:
    """C{payload} masked (or unmasked) with the 4-byte C{mask}."""
    n = len(payload)
    if not n:
        return b""
    keys = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")
    return value.to_bytes(n, "big")


def clientFrame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final frame from a client: masked with the 4-byte C{mask}."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + _xor(payload, mask)


def closeFrame(mask: bytes, code: int = 1000) -> bytes:
    """A client's close frame with status C{code}."""
    return clientFrame(OP_CLOSE, struct.pack("!H", code), mask)


class FrameReader:
    """Bytes in, whole messages and control frames out (RFC 6455 framing).

    Fragmented messages are put back together; masked frames (which a server
    should not send) are unmasked. Extensions are not supported: a frame with an
    RSV bit set is an error.
    """

    def __init__(self, maxMessage: int = _MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragmentsLength = 0
        self._fragmentsOpcode = 0
        self._maxMessage = maxMessage

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The messages and control frames that C{data} completes, in order."""
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, bytes]] = []
        available = len(buffer)
        position = 0
        while available - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if available - position < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, position + 2)
                head = 4
            elif length == 127:
                if available - position < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, position + 2)
                head = 10
            if first & 0x70:
                raise FrameError("RSV bits set")
            if length > self._maxMessage:
                raise FrameError(f"frame of {length} bytes")
            masked = second & 0x80
            if masked:
                head += 4
            end = position + head + length
            if end > available:
                break
            payload = bytes(buffer[position + head : end])
            if masked:
                key = bytes(buffer[position + head - 4 : position + head])
                payload = _xor(payload, key)
            position = end
            self._frame(first & 0x80, first & 0x0F, payload, out)
        if position:
            del buffer[:position]
        return out

    def _frame(
        self, fin: int, opcode: int, payload: bytes, out: list[tuple[int, bytes]]
    ) -> None:
        """Take one whole frame."""
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise FrameError("bad control frame")
            out.append((opcode, payload))
            return
        if opcode == OP_CONTINUATION:
            if not self._fragments:
                raise FrameError("continuation without a message")
        elif self._fragments:
            raise FrameError("new message inside a fragmented one")
        elif opcode not in (OP_TEXT, OP_BINARY):
            raise FrameError(f"reserved opcode {opcode}")
        elif fin:
            out.append((opcode, payload))
            return
        else:
            self._fragmentsOpcode = opcode
        self._fragments.append(payload)
        self._fragmentsLength += len(payload)
        if self._fragmentsLength > self._maxMessage:
            raise FrameError(f"message over {self._maxMessage} bytes")
        if fin:
            out.append((self._fragmentsOpcode, b"".join(self._fragments)))
            self._fragments = []
            self._fragmentsLength = 0


def firehosePath(size: int, messageSize: int) -> str:
    """The path that asks the backend for C{size} bytes in C{messageSize} pieces."""
    return f"{FIREHOSE_PATH}?{urlencode({'bytes': size, 'size': messageSize})}"


def patternAt(offset: int, n: int) -> bytes:
    """C{n} bytes of the endless repetition of L{PATTERN}, from C{offset}."""
    start = offset % CHUNK
    if start + n <= CHUNK:
        return PATTERN[start : start + n]
    pieces = [PATTERN[start:]]
    left = n - (CHUNK - start)
    while left > 0:
        pieces.append(PATTERN[: min(left, CHUNK)])
        left -= CHUNK
    return b"".join(pieces)


def parseWatch(values: list[str]) -> dict[str, int]:
    """C{NAME=PID} arguments as a dict."""
    watch: dict[str, int] = {}
    for value in values:
        name, sep, pid = value.partition("=")
        if not sep or not name or not pid.isdigit():
            raise ValueError(f"expected NAME=PID, got {value!r}")
        watch[name] = int(pid)
    return watch


def percentile(sortedValues: list[float], fraction: float) -> float | None:
    """The value below which C{fraction} of the sorted values lie (nearest rank)."""
    if not sortedValues:
        return None
    index = min(len(sortedValues) - 1, max(0, round(fraction * len(sortedValues)) - 1))
    return sortedValues[index]


# -- the backend ----------------------------------------------------------------


@dataclass
class Counters:
    """What the backend has done so far, for the benchmark to read back."""

    connections: int = 0
    open: int = 0
    messages: int = 0
    firehoseBytes: int = 0

    def asJSON(self) -> str:
        """The counters as a JSON object."""
        return json.dumps(
            {
                "connections": self.connections,
                "open": self.open,
                "messages": self.messages,
                "firehose_bytes": self.firehoseBytes,
            }
        )


def _backendClasses() -> tuple[type[Any], type[Any]]:
    """The Autobahn protocol and factory, imported only in the backend process."""
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from twisted.internet.interfaces import IPushProducer

    @implementer(IPushProducer)
    class Firehose:
        """Send the firehose's messages while the transport wants more."""

        def __init__(self, protocol: Any, size: int, messageSize: int) -> None:
            self._protocol = protocol
            self._left = size
            self._messageSize = messageSize
            self._offset = 0
            self._paused = False
            self._messages: dict[int, bytes] = {}

        def _message(self, n: int) -> bytes:
            start = self._offset % CHUNK
            if n == self._messageSize and CHUNK % n == 0:
                cached = self._messages.get(start)
                if cached is None:
                    cached = self._messages[start] = patternAt(start, n)
                return cached
            return patternAt(start, n)

        def pauseProducing(self) -> None:
            self._paused = True

        def resumeProducing(self) -> None:
            self._paused = False
            protocol = self._protocol
            counters: Counters = protocol.factory.counters
            # The transport pauses us from inside write() once its buffer is full.
            while not self._paused and self._left > 0:
                n = min(self._messageSize, self._left)
                protocol.sendMessage(self._message(n), isBinary=True)
                self._offset += n
                self._left -= n
                counters.firehoseBytes += n
            if self._left <= 0 and not self._paused:
                self.stopProducing()
                protocol.unregisterProducer()
                protocol.sendClose(1000)

        def stopProducing(self) -> None:
            self._left = 0
            self._paused = True

    class BenchServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
        """Echo, firehose or stats, chosen by the path of the handshake."""

        _mode = "echo"
        _counted = False
        _firehose: Firehose | None = None

        def onConnect(self, request: Any) -> None:
            params = request.params
            if request.path == STATS_PATH:
                self._mode = "stats"
            elif request.path == FIREHOSE_PATH:
                self._mode = "firehose"
                self._size = int(params.get("bytes", ["0"])[0])
                self._messageSize = int(params.get("size", ["65536"])[0])
            return None

        def onOpen(self) -> None:
            counters: Counters = self.factory.counters
            if self._mode == "stats":
                self.sendMessage(counters.asJSON().encode(), isBinary=False)
                self.sendClose(1000)
                return
            self._counted = True
            counters.connections += 1
            counters.open += 1
            if self._mode == "firehose":
                self._firehose = Firehose(self, self._size, self._messageSize)
                self.registerProducer(self._firehose, True)
                self._firehose.resumeProducing()

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if self._mode == "echo":
                self.factory.counters.messages += 1
                self.sendMessage(payload, isBinary)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if self._firehose is not None:
                self._firehose.stopProducing()
            if self._counted:
                self._counted = False
                self.factory.counters.open -= 1

    class BenchServerFactory(WebSocketServerFactory):  # type: ignore[misc]
        """Autobahn's factory with the counters, quiet, without pings."""

        protocol = BenchServerProtocol
        noisy = False

        def __init__(self) -> None:
            super().__init__()
            self.counters = Counters()
            self.setProtocolOptions(
                autoPingInterval=0,
                openHandshakeTimeout=30,
                maxMessagePayloadSize=_MAX_MESSAGE,
                maxFramePayloadSize=_MAX_MESSAGE,
            )

    return BenchServerProtocol, BenchServerFactory


def serve(
    tcp: IReactorTCP,
    clock: IReactorTime,
    stop: Callable[[], None],
    portFile: Path | None,
    lifetime: float,
) -> None:
    """Listen on 127.0.0.1, write the port to C{portFile}, stop in time."""
    _, factoryClass = _backendClasses()
    listening = tcp.listenTCP(0, factoryClass(), backlog=4096, interface="127.0.0.1")
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    print(f"bench.wspeers serve on 127.0.0.1:{address.port}", flush=True)
    if portFile is not None:
        tmp = portFile.with_suffix(".tmp")
        tmp.write_text(str(address.port))
        tmp.replace(portFile)
    clock.callLater(lifetime, stop)


# -- the Twisted clients: echo load and idle connections ------------------------


class _ClientBase(Protocol):
    """A client connection: the handshake, then frames; pings are answered."""

    _transport: ITransport

    def __init__(self, port: int, path: str) -> None:
        self._port = port
        self._path = path
        self._key = newKey()
        self._mask = os.urandom(4)
        self._head = b""
        self._handshaking = True
        self.open = False
        self._reader = FrameReader()

    def connectionMade(self) -> None:
        self._transport = self.transport  # type: ignore[assignment]
        # As Autobahn does: small messages go out at once, not after an ACK.
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self._transport.write(handshakeRequest(self._port, self._path, self._key))

    def dataReceived(self, data: bytes) -> None:
        if self._handshaking:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    self.failed("handshake head too long")
                return
            problem = checkHandshake(self._head[: end + 4], self._key)
            if problem:
                self.failed(problem)
                return
            data = self._head[end + 4 :]
            self._head = b""
            self._handshaking = False
            self.open = True
            self.opened()
            if not data:
                return
        try:
            frames = self._reader.feed(data)
        except FrameError as e:
            self.failed(str(e))
            return
        count = 0
        for opcode, payload in frames:
            if opcode in (OP_BINARY, OP_TEXT):
                if self.open:
                    count += 1
                    self.message(payload)
            elif opcode == OP_PING:
                self._transport.write(clientFrame(OP_PONG, payload, self._mask))
            elif opcode == OP_CLOSE:
                if self.open:
                    self.failed("closed by the server")
                else:
                    self._transport.loseConnection()
                return
        if count:
            self.messages(count)

    def failed(self, why: str) -> None:
        """The connection cannot be used: say why, and drop it."""
        self.open = False
        self.transport.abortConnection()  # type: ignore[union-attr]

    def close(self) -> None:
        """Close the WebSocket cleanly (the server closes TCP after its reply)."""
        if self.open:
            self.open = False
            self._transport.write(closeFrame(self._mask))

    def opened(self) -> None:
        """The handshake is done."""

    def message(self, payload: bytes) -> None:
        """One data message arrived."""

    def messages(self, count: int) -> None:
        """C{count} data messages arrived in one read (after L{message} for each)."""


class _Factory(ClientFactory):
    """Make clients with a callable; report failed connection attempts."""

    noisy = False

    def __init__(
        self,
        build: Callable[[], Protocol],
        connectFailed: Callable[[str], None],
    ) -> None:
        self._build = build
        self._connectFailed = connectFailed

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol = self._build()
        protocol.factory = self
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._connectFailed(reason.getErrorMessage())


class EchoRun:
    """The echo load: open every connection, keep the windows full, measure."""

    def __init__(
        self,
        reactor: Any,
        port: int,
        connections: int,
        window: int,
        size: int,
        seconds: float,
        resultFile: Path,
        timeout: float,
        watch: dict[str, int] | None = None,
    ) -> None:
        self._reactor = reactor
        self._watch = watch or {}
        self._cpuStart: dict[str, float | None] = {}
        self._systemStart: dict[int, tuple[float, float]] = {}
        self._port = port
        self._connections = connections
        self._window = window
        self._seconds = seconds
        self._resultFile = resultFile
        self._timeout = timeout
        self.message = patternAt(0, size)
        self.clients: list[EchoClient] = []
        self.opened = 0
        self.received = 0
        self.bad = 0
        self.failures = 0
        self.errors: list[str] = []
        self.sending = False
        self.measuring = False
        self.rtts: list[float] = []
        self._startCount = 0
        self._startTime = 0.0
        self._result: dict[str, Any] = {
            "connections": connections,
            "window": window,
            "message_bytes": size,
        }
        self._finished = False

    def start(self) -> None:
        """Connect every client; give up after the timeout."""
        factory = _Factory(lambda: EchoClient(self), self.fail)
        for _ in range(self._connections):
            self._reactor.connectTCP("127.0.0.1", self._port, factory, timeout=10)
        self._reactor.callLater(self._timeout, self._timedOut)

    def _timedOut(self) -> None:
        if len(self.errors) < 20:
            self.errors.append("timed out")
        self._finish()

    def clientOpened(self, client: EchoClient) -> None:
        """One more client is open; start when all are."""
        self.clients.append(client)
        self.opened += 1
        if self.opened == self._connections:
            self.sending = True
            self._startCount = self.received
            self._cpuStart = {n: cpuSeconds(pid) for n, pid in self._watch.items()}
            self._systemStart = cpuTimes()
            self._startTime = time.monotonic()
            self.measuring = True
            for c in self.clients:
                c.fill()
            self._reactor.callLater(self._seconds, self._end)

    def _end(self) -> None:
        """The measured time is over: count, stop sending, close everything."""
        elapsed = time.monotonic() - self._startTime
        messages = self.received - self._startCount
        cpu = {n: cpuSeconds(pid) for n, pid in self._watch.items()}
        busy = busyShares(self._systemStart, cpuTimes())
        self._result["cpu_busy"] = {str(c): share for c, share in busy.items()}
        for name, after in cpu.items():
            before = self._cpuStart.get(name)
            if before is not None and after is not None:
                self._result[f"{name}_cpu_seconds"] = after - before
        self.measuring = False
        self.sending = False
        self.rtts.sort()
        p50, p99 = percentile(self.rtts, 0.5), percentile(self.rtts, 0.99)
        self._result.update(
            messages=messages,
            seconds=elapsed,
            messages_per_second=messages / elapsed if elapsed > 0 else 0.0,
            rtt_p50_ms=None if p50 is None else p50 * 1e3,
            rtt_p99_ms=None if p99 is None else p99 * 1e3,
        )
        for c in self.clients:
            c.close()
        self._reactor.callLater(1.0, self._finish)

    def fail(self, why: str) -> None:
        """A client could not connect or broke: note it (the run goes on)."""
        self.failures += 1
        if len(self.errors) < 20:
            self.errors.append(why)
        if not self.sending and self.opened + self.failures >= self._connections:
            # Some never opened: the measurement cannot start.
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._result.update(opened=self.opened, bad_echoes=self.bad, errors=self.errors)
        self._result["ok"] = bool(
            self._result.get("messages") and not self.bad and not self.errors
        )
        self._resultFile.write_text(json.dumps(self._result))
        for c in self.clients:
            if c.transport is not None:
                c.transport.abortConnection()  # type: ignore[attr-defined]
        if self._reactor.running:
            self._reactor.stop()


class EchoClient(_ClientBase):
    """Keep C{window} messages in flight; check every echo; time round trips."""

    def __init__(self, run: EchoRun) -> None:
        super().__init__(run._port, "/")
        self._run = run
        self._frame = clientFrame(OP_BINARY, run.message, self._mask)
        self._sent: collections.deque[float] = collections.deque()

    def opened(self) -> None:
        self._run.clientOpened(self)

    def fill(self) -> None:
        """Put the whole window in flight."""
        self._send(self._run._window - len(self._sent))

    def _send(self, count: int) -> None:
        if count > 0:
            self._transport.write(self._frame * count)
            now = time.perf_counter()
            self._sent.extend([now] * count)

    def message(self, payload: bytes) -> None:
        if payload != self._run.message:
            self._run.bad += 1

    def messages(self, count: int) -> None:
        run = self._run
        run.received += count
        now = time.perf_counter()
        sent = self._sent
        if run.measuring:
            for _ in range(min(count, len(sent))):
                run.rtts.append(now - sent.popleft())
        else:
            for _ in range(min(count, len(sent))):
                sent.popleft()
        if run.sending:
            self._send(count)

    def failed(self, why: str) -> None:
        if self.open or not self._run.sending:
            self._run.fail(why)
        super().failed(why)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._run.sending:
            self._run.fail("connection lost while measuring")


class IdleRun:
    """Open connections a batch at a time, then hold them, reporting progress."""

    def __init__(
        self,
        reactor: Any,
        port: int,
        connections: int,
        concurrency: int,
        statusFile: Path,
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._target = connections
        self._concurrency = concurrency
        self._statusFile = statusFile
        self._factory = _Factory(lambda: IdleClient(self), self._connectFailed)
        self.started = 0
        self.pending = 0
        self.open = 0
        self.failures = 0
        self.closed = 0
        self.errors: list[str] = []
        self._began = time.monotonic()
        self._openedIn: float | None = None

    def start(self) -> None:
        """Start the first batch and the status reports."""
        self._more()
        self._report()

    def _more(self) -> None:
        while self.pending < self._concurrency and self.started < self._target:
            self.started += 1
            self.pending += 1
            self._reactor.connectTCP("127.0.0.1", self._port, self._factory, timeout=30)

    def _connectFailed(self, why: str) -> None:
        self.pending -= 1
        self._failure(why)

    def _failure(self, why: str) -> None:
        self.failures += 1
        if len(self.errors) < 20:
            self.errors.append(why)
        self._more()

    def handshakeDone(self) -> None:
        """One more connection is open."""
        self.pending -= 1
        self.open += 1
        if self.open == self._target:
            self._openedIn = time.monotonic() - self._began
            self._writeStatus()
        self._more()

    def handshakeFailed(self, why: str) -> None:
        """A connection was refused or answered wrong."""
        self.pending -= 1
        self._failure(why)

    def lost(self) -> None:
        """An open connection was closed."""
        self.open -= 1
        self.closed += 1

    def _report(self) -> None:
        self._writeStatus()
        self._reactor.callLater(0.5, self._report)

    def _writeStatus(self) -> None:
        status = {
            "target": self._target,
            "started": self.started,
            "open": self.open,
            "failed": self.failures,
            "closed": self.closed,
            "seconds_to_open": self._openedIn,
            "errors": self.errors,
            "done": self.open + self.failures + self.closed >= self._target
            and not self.pending,
        }
        tmp = self._statusFile.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self._statusFile)


class IdleClient(_ClientBase):
    """A WebSocket that opens and then says nothing."""

    def __init__(self, run: IdleRun) -> None:
        super().__init__(run._port, "/")
        self._run = run
        self._state = "connecting"

    def opened(self) -> None:
        self._state = "open"
        self._run.handshakeDone()

    def failed(self, why: str) -> None:
        if self._state == "connecting":
            self._state = "failed"
            self._run.handshakeFailed(why)
        super().failed(why)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._state == "connecting":
            self._state = "failed"
            self._run.handshakeFailed(f"closed in the handshake: {reason.value!r}")
        elif self._state == "open":
            self._state = "closed"
            self._run.lost()


# -- the slow reader (blocking) -------------------------------------------------


def _readHead(sock: socket.socket) -> tuple[bytes, bytes]:
    """The handshake answer up to the blank line, and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise FrameError(f"closed in the handshake after {data[:80]!r}")
        data += chunk
        if len(data) > _MAX_HEAD:
            raise FrameError("handshake head too long")
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def openBlocking(port: int, path: str, timeout: float) -> tuple[socket.socket, bytes]:
    """A connected, handshaken WebSocket; the bytes already read past the head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        key = newKey()
        sock.sendall(handshakeRequest(port, path, key))
        head, rest = _readHead(sock)
        problem = checkHandshake(head, key)
        if problem:
            raise FrameError(problem)
    except BaseException:
        sock.close()
        raise
    return sock, rest


def fetchStats(port: int, timeout: float = 5.0) -> dict[str, int] | None:
    """The backend's L{Counters}, read over a WebSocket of its own."""
    try:
        sock, rest = openBlocking(port, STATS_PATH, timeout)
    except (OSError, FrameError):
        return None
    reader = FrameReader()
    with sock:
        data = rest
        while True:
            for opcode, payload in reader.feed(data):
                if opcode == OP_TEXT:
                    with contextlib.suppress(OSError):
                        sock.sendall(closeFrame(os.urandom(4)))
                    stats: dict[str, int] = json.loads(payload)
                    return stats
            try:
                data = sock.recv(4096)
            except OSError:
                return None
            if not data:
                return None


def echoOnce(port: int, timeout: float = 10.0) -> str | None:
    """One message there and back through C{port}; C{None} if its echo came back."""
    message = patternAt(0, 64)
    mask = os.urandom(4)
    try:
        sock, rest = openBlocking(port, "/", timeout)
    except (OSError, FrameError) as e:
        return f"no WebSocket: {e}"
    reader = FrameReader()
    with sock:
        try:
            sock.sendall(clientFrame(OP_BINARY, message, mask))
            data = rest
            while True:
                for opcode, payload in reader.feed(data):
                    if opcode == OP_PING:
                        sock.sendall(clientFrame(OP_PONG, payload, mask))
                    elif opcode == OP_CLOSE:
                        return "closed instead of echoing"
                    elif payload != message:
                        return f"wrong echo {payload[:40]!r}"
                    else:
                        sock.sendall(closeFrame(mask))
                        return None
                data = sock.recv(65536)
                if not data:
                    return "closed instead of echoing"
        except (OSError, FrameError) as e:
            return f"echo failed: {e!r}"


def slowRead(
    port: int,
    size: int,
    messageSize: int,
    rate: float,
    timeout: float,
    statsPort: int | None = None,
) -> dict[str, Any]:
    """Read C{size} bytes of firehose through C{port} at C{rate} B/s; report them.

    With C{statsPort} (the backend's own port), the backend's count of bytes
    sent is read every second: what it has sent and we have not read is in
    flight, in socket buffers and in whatever sits between us. Its largest
    value is reported; a relay without flow control lets it grow towards
    C{size}.
    """
    result: dict[str, Any] = {"size": size, "message_bytes": messageSize}
    inFlight: list[int] = []
    nextSample = time.monotonic() + 1.0
    sentBefore = 0
    if statsPort is not None:
        stats = fetchStats(statsPort)
        sentBefore = 0 if stats is None else int(stats["firehose_bytes"])
    deadline = time.monotonic() + timeout
    began = time.monotonic()
    mask = os.urandom(4)
    received = 0
    messages = 0
    crc = 0
    closedBy = None
    try:
        sock, rest = openBlocking(port, firehosePath(size, messageSize), _STALL_TIMEOUT)
    except (OSError, FrameError) as e:
        return {**result, "error": f"no WebSocket: {e}", "bytes_ok": False}
    reader = FrameReader()
    throttle = Throttle(rate)
    scratch = bytearray(64 * 1024)
    with sock:
        data = rest
        try:
            while closedBy is None:
                for opcode, payload in reader.feed(data):
                    if opcode in (OP_BINARY, OP_TEXT):
                        received += len(payload)
                        messages += 1
                        crc = zlib.crc32(payload, crc)
                    elif opcode == OP_PING:
                        sock.sendall(clientFrame(OP_PONG, payload, mask))
                    elif opcode == OP_CLOSE:
                        closedBy = "server"
                if closedBy is not None or received >= size:
                    # Our close frame: the reply to the server's, or the first.
                    closedBy = closedBy or "client"
                    with contextlib.suppress(OSError):
                        sock.sendall(closeFrame(mask))
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("deadline passed")
                n = sock.recv_into(scratch)
                if not n:
                    closedBy = "eof"
                    break
                throttle.account(n)
                data = bytes(scratch[:n])
                if statsPort is not None and time.monotonic() >= nextSample:
                    nextSample = time.monotonic() + 1.0
                    stats = fetchStats(statsPort)
                    if stats is not None:
                        sent = int(stats["firehose_bytes"]) - sentBefore
                        inFlight.append(sent - received)
        except (OSError, FrameError, TimeoutError) as e:
            result["error"] = repr(e)
    seconds = time.monotonic() - began
    result.update(
        received=received,
        messages=messages,
        seconds=seconds,
        mb_per_s=received / seconds / 1e6 if seconds > 0 else 0.0,
        closed_by=closedBy,
        in_flight_max_bytes=max(inFlight) if inFlight else None,
        in_flight_samples=len(inFlight),
        bytes_ok=received == size,
        crc_ok=crc == patternCrc(size),
    )
    return result


# -- entry point ----------------------------------------------------------------


def _runReactor(setup: Callable[[Any], None]) -> None:
    """Install the epoll reactor, call C{setup} with it, and run it."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor  # noqa: TID251 (entry point)

    setup(reactor)
    reactor.run()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Run one of the peers; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", allow_abbrev=False)
    p.add_argument("--port-file", type=Path, required=True)
    p.add_argument("--lifetime", type=float, default=600.0)
    p = sub.add_parser("echo-load", allow_abbrev=False)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--result-file", type=Path, required=True)
    p.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="report the CPU time this process used while measured",
    )
    p = sub.add_parser("idle", allow_abbrev=False)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--status-file", type=Path, required=True)
    p.add_argument("--lifetime", type=float, default=300.0)
    p = sub.add_parser("slow-read", allow_abbrev=False)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--message-size", type=int, default=65536)
    p.add_argument("--rate", type=float, required=True, help="MB/s")
    p.add_argument("--result-file", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--stats-port", type=int, help="the backend's port, for counters")
    args = parser.parse_args(argv)
    raiseFileLimit()

    if args.command == "serve":
        _runReactor(
            lambda r: serve(r, r, r.stop, args.port_file, args.lifetime),
        )
        return 0
    if args.command == "echo-load":
        echo = EchoRun(
            None,
            args.port,
            args.connections,
            args.window,
            args.size,
            args.seconds,
            args.result_file,
            timeout=args.seconds + 30,
            watch=parseWatch(args.watch),
        )

        def startEcho(reactor: Any) -> None:
            echo._reactor = reactor
            reactor.callWhenRunning(echo.start)

        _runReactor(startEcho)
        return 0 if json.loads(args.result_file.read_text()).get("ok") else 1
    if args.command == "idle":

        def startIdle(reactor: Any) -> None:
            idle = IdleRun(
                reactor, args.port, args.connections, args.concurrency, args.status_file
            )
            reactor.callWhenRunning(idle.start)
            reactor.callLater(args.lifetime, reactor.stop)

        _runReactor(startIdle)
        return 0
    result = slowRead(
        args.port,
        args.size,
        args.message_size,
        args.rate * 1e6,
        args.timeout,
        args.stats_port,
    )
    args.result_file.write_text(json.dumps(result))
    return 0 if result.get("bytes_ok") and result.get("crc_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
