"""Peers for the streaming-memory benchmark: big bodies, one slow side.

Three commands, each a separate process on 127.0.0.1 only:

``serve``
    A backend. ``GET /big`` answers with a ``--size``-byte body generated on the
    fly, sent as fast as the proxy takes it; ``POST``/``PUT`` reads the request
    body at no more than ``--rate`` MB/s (the slow backend) and answers with JSON
    giving the byte count and CRC-32 it received; anything else gets a small
    ``200``. Writes its port to ``--port-file``; stops after ``--lifetime`` s.
``upload``
    A client that sends a ``--size``-byte body with ``Content-Length`` as fast as
    the proxy accepts it, then checks the count and CRC the backend reports.
``download``
    A client that fetches ``/big`` and reads it at no more than ``--rate`` MB/s
    (the slow client), counting the bytes and checking their CRC.

The clients write one JSON object to ``--result-file`` and exit 0 only when the
receiving side saw exactly ``--size`` bytes with the right CRC. Every socket has a
stall timeout and every command an overall deadline, so nothing runs for ever.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
PATTERN = random.Random(20261128).randbytes(CHUNK)
_RECV_SIZE = 256 * 1024
_MAX_LINE = 64 * 1024
_STALL_TIMEOUT = 30.0


class PeerError(Exception):
    """The other side broke the protocol or went away too early."""


def patternChunks(size: int) -> Iterator[memoryview]:
    """The C{size}-byte body, as views onto the repeated L{PATTERN}."""
    view = memoryview(PATTERN)
    remaining = size
    while remaining > 0:
        n = min(remaining, CHUNK)
        yield view[:n]
        remaining -= n


def patternCrc(size: int) -> int:
    """The CRC-32 of the C{size}-byte body that L{patternChunks} generates."""
    crc = 0
    for chunk in patternChunks(size):
        crc = zlib.crc32(chunk, crc)
    return crc


def _pause(seconds: float) -> None:
    """Sleep: throttling a reader on purpose is what this benchmark is about."""
    time.sleep(seconds)  # noqa: TID251


class Throttle:
    """Hold a reader to C{rate} bytes per second on average."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._start = time.monotonic()
        self._total = 0

    def account(self, n: int) -> None:
        """Record C{n} bytes read, and pause if the reader is ahead of the rate."""
        self._total += n
        ahead = self._total / self._rate - (time.monotonic() - self._start)
        if ahead > 0.001:
            _pause(ahead)


class Body:
    """Count and checksum the bytes of a body as they arrive."""

    def __init__(self) -> None:
        self.count = 0
        self.crc = 0

    def __call__(self, data: memoryview) -> None:
        """Take the next piece of the body."""
        self.count += len(data)
        self.crc = zlib.crc32(data, self.crc)


class Stream:
    """Buffered reading of HTTP/1.1 heads and bodies from a blocking socket."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._scratch = bytearray(_RECV_SIZE)
        self._view = memoryview(self._scratch)
        self.throttle: Throttle | None = None

    def _recv(self) -> memoryview:
        """Read what the socket has (empty at EOF), honouring deadline and rate."""
        if time.monotonic() > self._deadline:
            raise TimeoutError("deadline passed")
        n = self._sock.recv_into(self._scratch)
        if self.throttle is not None and n:
            self.throttle.account(n)
        return self._view[:n]

    def readLine(self) -> bytes:
        """One CRLF-terminated line, without the CRLF."""
        while True:
            index = self._buffer.find(b"\r\n")
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 2]
                return line
            if len(self._buffer) > _MAX_LINE:
                raise PeerError("line too long")
            data = self._recv()
            if not data:
                raise EOFError("connection closed")
            self._buffer += data

    def readHead(self) -> tuple[bytes, dict[bytes, bytes]]:
        """A start line and its headers (names lower-cased)."""
        start = self.readLine()
        while not start:  # tolerate a stray CRLF between messages
            start = self.readLine()
        headers: dict[bytes, bytes] = {}
        while True:
            line = self.readLine()
            if not line:
                return start, headers
            name, sep, value = line.partition(b":")
            if not sep:
                raise PeerError(f"bad header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = headers[key] + b", " + value if key in headers else value
            if len(headers) > 200:
                raise PeerError("too many headers")

    def readExactly(self, n: int, sink: Callable[[memoryview], None]) -> int:
        """Pass up to C{n} bytes to C{sink}; return how many came before EOF."""
        got = 0
        if self._buffer:
            taken = min(n, len(self._buffer))
            sink(memoryview(bytes(self._buffer[:taken])))
            del self._buffer[:taken]
            got = taken
        while got < n:
            data = self._recv()
            if not data:
                return got
            taken = min(n - got, len(data))
            sink(data[:taken])
            if taken < len(data):
                self._buffer += data[taken:]
            got += taken
        return got

    def readToEnd(self, sink: Callable[[memoryview], None]) -> int:
        """Pass everything up to EOF to C{sink}; return the count."""
        got = len(self._buffer)
        if self._buffer:
            sink(memoryview(bytes(self._buffer)))
            self._buffer.clear()
        while data := self._recv():
            sink(data)
            got += len(data)
        return got

    def readBody(
        self,
        headers: dict[bytes, bytes],
        sink: Callable[[memoryview], None],
        untilClose: bool,
    ) -> None:
        """Read a body framed by chunked coding, C{Content-Length}, or EOF."""
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            while True:
                sizeLine = self.readLine().split(b";", 1)[0].strip()
                try:
                    size = int(sizeLine, 16)
                except ValueError:
                    raise PeerError(f"bad chunk size {sizeLine[:40]!r}") from None
                if size == 0:
                    while self.readLine():
                        pass
                    return
                if self.readExactly(size, sink) < size:
                    raise PeerError("connection closed inside a chunk")
                if self.readLine():
                    raise PeerError("chunk not followed by CRLF")
        elif b"content-length" in headers:
            self.readExactly(int(headers[b"content-length"]), sink)
        elif untilClose:
            self.readToEnd(sink)


def _wantsClose(version: bytes, headers: dict[bytes, bytes]) -> bool:
    """Whether a message with this version and these headers ends the connection."""
    tokens = {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}
    if b"close" in tokens:
        return True
    return version == b"HTTP/1.0" and b"keep-alive" not in tokens


def _respond(sock: socket.socket, status: bytes, body: bytes, close: bool) -> None:
    """Send a small response with C{Content-Length}."""
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    )
    if close:
        head += b"Connection: close\r\n"
    sock.sendall(head + b"\r\n" + body)


def _handleConnection(
    sock: socket.socket, size: int, rate: float, deadline: float
) -> None:
    """Serve requests on one backend connection until it closes."""
    with sock:
        sock.settimeout(_STALL_TIMEOUT)
        stream = Stream(sock, deadline)
        try:
            while True:
                try:
                    start, headers = stream.readHead()
                except EOFError:
                    return
                parts = start.split(b" ")
                if len(parts) != 3:
                    raise PeerError(f"bad request line {start[:80]!r}")
                method, target, version = parts
                close = _wantsClose(version, headers)
                if method in (b"POST", b"PUT"):
                    body = Body()
                    began = time.monotonic()
                    stream.throttle = Throttle(rate)
                    try:
                        stream.readBody(headers, body, untilClose=False)
                    finally:
                        stream.throttle = None
                    report = {
                        "received": body.count,
                        "crc32": body.crc,
                        "seconds": time.monotonic() - began,
                    }
                    _respond(sock, b"200 OK", json.dumps(report).encode(), close)
                elif method == b"GET" and target.startswith(b"/big"):
                    stream.readBody(headers, Body(), untilClose=False)
                    head = (
                        b"HTTP/1.1 200 OK\r\n"
                        b"Content-Type: application/octet-stream\r\n"
                        b"Content-Length: " + str(size).encode() + b"\r\n"
                    )
                    if close:
                        head += b"Connection: close\r\n"
                    sock.sendall(head + b"\r\n")
                    for chunk in patternChunks(size):
                        if time.monotonic() > deadline:
                            raise TimeoutError("deadline passed")
                        sock.sendall(chunk)
                else:
                    stream.readBody(headers, Body(), untilClose=False)
                    _respond(sock, b"200 OK", b'{"ok": true}', close)
                if close:
                    return
        except (OSError, PeerError, TimeoutError) as e:
            print(f"bigpeers serve: connection ended: {e!r}", file=sys.stderr)


def serve(portFile: Path, size: int, rate: float, lifetime: float) -> int:
    """Run the backend on 127.0.0.1 until C{lifetime} seconds have passed."""
    deadline = time.monotonic() + lifetime
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        listener.settimeout(0.25)
        tmp = portFile.with_suffix(".tmp")
        tmp.write_text(str(listener.getsockname()[1]))
        tmp.replace(portFile)
        while time.monotonic() < deadline:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(
                target=_handleConnection,
                args=(sock, size, rate, deadline),
                daemon=True,
            ).start()
    return 0


def _readResponse(
    stream: Stream, sink: Callable[[memoryview], None]
) -> tuple[int, dict[bytes, bytes]]:
    """Read a response (skipping any 1xx), passing its body to C{sink}."""
    while True:
        start, headers = stream.readHead()
        parts = start.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise PeerError(f"bad status line {start[:80]!r}")
        status = int(parts[1])
        if status >= 200:
            stream.readBody(headers, sink, untilClose=True)
            return status, headers


def upload(port: int, size: int, timeout: float) -> dict[str, Any]:
    """POST a C{size}-byte body through 127.0.0.1:C{port}; report what arrived."""
    expectedCrc = patternCrc(size)
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {"direction": "up", "size": size}
    with socket.create_connection(("127.0.0.1", port), timeout=_STALL_TIMEOUT) as s:
        began = time.monotonic()
        head = (
            f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        sent = 0
        try:
            s.sendall(head)
            for chunk in patternChunks(size):
                if time.monotonic() > deadline:
                    raise TimeoutError("deadline passed")
                s.sendall(chunk)
                sent += len(chunk)
        except OSError as e:
            result["send_error"] = repr(e)
        result["sent"] = sent
        result["send_seconds"] = time.monotonic() - began
        reply = bytearray()
        try:
            status, _ = _readResponse(Stream(s, deadline), reply.extend)
        except (OSError, PeerError, EOFError, ValueError) as e:
            result["error"] = repr(e)
            status = -1
        seconds = time.monotonic() - began
    result["status"] = status
    result["seconds"] = seconds
    try:
        report = json.loads(bytes(reply))
        received = int(report["received"])
        crcOk = int(report["crc32"]) == expectedCrc
    except (ValueError, KeyError, TypeError):
        result["reply"] = bytes(reply[:200]).decode("latin-1")
        received, crcOk = -1, False
    result["received"] = received
    result["bytes_ok"] = status == 200 and received == size
    result["crc_ok"] = crcOk
    result["mb_per_s"] = received / seconds / 1e6 if received > 0 else 0.0
    return result


def download(port: int, size: int, rate: float, timeout: float) -> dict[str, Any]:
    """GET C{size} bytes through 127.0.0.1:C{port} at C{rate} B/s; report them."""
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {"direction": "down", "size": size}
    body = Body()
    with socket.create_connection(("127.0.0.1", port), timeout=_STALL_TIMEOUT) as s:
        began = time.monotonic()
        s.sendall(
            f"GET /big HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        stream = Stream(s, deadline)
        stream.throttle = Throttle(rate)
        headers: dict[bytes, bytes] = {}
        try:
            status, headers = _readResponse(stream, body)
        except (OSError, PeerError, EOFError, ValueError) as e:
            result["error"] = repr(e)
            status = -1
        seconds = time.monotonic() - began
    result["status"] = status
    result["seconds"] = seconds
    result["received"] = body.count
    result["framing"] = (
        "chunked"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        else "content-length"
        if b"content-length" in headers
        else "close"
    )
    result["bytes_ok"] = status == 200 and body.count == size
    result["crc_ok"] = body.crc == patternCrc(size)
    result["mb_per_s"] = body.count / seconds / 1e6 if seconds > 0 else 0.0
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one of the peers; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    pServe = sub.add_parser("serve", allow_abbrev=False)
    pServe.add_argument("--port-file", type=Path, required=True)
    pServe.add_argument("--size", type=int, required=True)
    pServe.add_argument("--rate", type=float, required=True, help="MB/s")
    pServe.add_argument("--lifetime", type=float, default=300.0)
    for name in ("upload", "download"):
        p = sub.add_parser(name, allow_abbrev=False)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--size", type=int, required=True)
        p.add_argument("--result-file", type=Path, required=True)
        p.add_argument("--timeout", type=float, default=120.0)
        if name == "download":
            p.add_argument("--rate", type=float, required=True, help="MB/s")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args.port_file, args.size, args.rate * 1e6, args.lifetime)
    try:
        if args.command == "upload":
            result = upload(args.port, args.size, args.timeout)
        else:
            result = download(args.port, args.size, args.rate * 1e6, args.timeout)
    except (OSError, PeerError, EOFError, ValueError) as e:
        result = {"direction": args.command, "error": repr(e), "bytes_ok": False}
    args.result_file.write_text(json.dumps(result))
    return 0 if result.get("bytes_ok") and result.get("crc_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
