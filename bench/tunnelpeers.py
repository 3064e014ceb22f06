"""
The peers of the tunnel part of ``python -m bench`` (L{bench.tunnel}).

``serve``: a TCP destination on 127.0.0.1 (Twisted, one process). Each
connection first sends one line: C{down N} (the destination sends N bytes as
fast as its socket takes them, then closes), C{up N} (it reads N bytes, then
answers C{ok} and closes) or C{idle} (it holds the connection).

``stream``: one client moving the bytes of a C{down} or C{up}, directly or
through a proxy's CONNECT tunnel, with blocking sockets and one buffer
reused (so the client costs little); prints one JSON line: bytes, seconds.

``connections``: opens, uses (C{down 1}) and closes one connection after
another for a given time; prints one JSON line: how many, in how long.

``idle``: opens N connections (tunnels, or direct) that say C{idle}, prints
one JSON line once they are all open, and holds them until its standard
input closes (or it is stopped).
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import time
from typing import Any

CHUNK = 1 << 20


def _raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int, portFile: str | None) -> None:
    """The destination, until stopped."""
    from twisted.internet import reactor  # noqa: TID251 (entry point)
    from twisted.internet.interfaces import IPullProducer
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface import implementer

    _raiseFileLimit()
    block = b"z" * CHUNK

    @implementer(IPullProducer)
    class Down:
        def __init__(self, transport: Any, total: int) -> None:
            self.transport = transport
            self.left = total

        def resumeProducing(self) -> None:
            if self.left <= 0:
                self.transport.unregisterProducer()
                self.transport.loseConnection()
                return
            piece = block if self.left >= CHUNK else block[: self.left]
            self.left -= len(piece)
            self.transport.write(piece)

        def stopProducing(self) -> None:
            self.left = 0

    class Destination(Protocol):
        def __init__(self) -> None:
            self.line = b""
            self.expect = -1

        def dataReceived(self, data: bytes) -> None:
            if self.expect >= 0:
                self.expect -= len(data)
                if self.expect <= 0:
                    self.transport.write(b"ok\n")  # type: ignore[union-attr]
                    self.transport.loseConnection()  # type: ignore[union-attr]
                return
            self.line += data
            if b"\n" not in self.line:
                return
            line, rest = self.line.split(b"\n", 1)
            words = line.split()
            if words[:1] == [b"down"]:
                self.transport.registerProducer(  # type: ignore[union-attr]
                    Down(self.transport, int(words[1])), False
                )
            elif words[:1] == [b"up"]:
                self.expect = int(words[1])
                if rest:
                    self.dataReceived(rest)

    factory: Any = Factory.forProtocol(Destination)
    factory.noisy = False
    listening = reactor.listenTCP(  # type: ignore[attr-defined]
        port, factory, backlog=4096, interface="127.0.0.1"
    )
    if portFile:
        with open(portFile, "w") as f:
            f.write(str(listening.getHost().port))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def _open(port: int, proxy: int | None, timeout: float = 30.0) -> socket.socket:
    """A connection to the destination, through a CONNECT tunnel if C{proxy}."""
    sock = socket.create_connection(("127.0.0.1", proxy or port), timeout=timeout)
    if proxy:
        sock.sendall(
            b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
            % (port, port)
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(4096)
            if not piece:
                raise OSError(f"the proxy closed: {answer!r}")
            answer += piece
        if not answer.startswith(b"HTTP/1.1 200 "):
            raise OSError(f"the proxy answered {answer[:80]!r}")
    return sock


def stream(port: int, proxy: int | None, direction: str, total: int) -> dict[str, Any]:
    """Move C{total} bytes C{direction} ("down" or "up"); what it took."""
    sock = _open(port, proxy)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    began = time.perf_counter()
    moved = 0
    if direction == "down":
        sock.sendall(b"down %d\n" % total)
        while True:
            n = sock.recv_into(view)
            if not n:
                break
            moved += n
    else:
        sock.sendall(b"up %d\n" % total)
        while moved < total:
            n = min(CHUNK, total - moved)
            sock.sendall(view[:n])
            moved += n
        if sock.recv(16) != b"ok\n":
            raise OSError("the destination did not take every byte")
    seconds = time.perf_counter() - began
    sock.close()
    return {"direction": direction, "bytes": moved, "seconds": seconds}


def connections(port: int, seconds: float) -> dict[str, Any]:
    """New connections, one after another, each carrying one byte down."""
    began = time.perf_counter()
    done = 0
    while time.perf_counter() - began < seconds:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"down 1\n")
        while sock.recv(64):
            pass
        sock.close()
        done += 1
    return {"connections": done, "seconds": time.perf_counter() - began}


def idle(port: int, proxy: int | None, count: int) -> None:
    """Open C{count} idle connections; report, then hold them until stdin closes."""
    _raiseFileLimit()
    began = time.perf_counter()
    held = []
    for _ in range(count):
        sock = _open(port, proxy)
        sock.sendall(b"idle\n")
        held.append(sock)
    print(
        json.dumps({"opened": len(held), "seconds": time.perf_counter() - began}),
        flush=True,
    )
    sys.stdin.read()
    for sock in held:
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["serve", "stream", "idle", "connections"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--proxy", type=int, help="tunnel through this proxy port")
    parser.add_argument("--direction", choices=["down", "up"], default="down")
    parser.add_argument("--bytes", type=int, default=1 << 30)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.port_file)
    elif args.command == "stream":
        print(json.dumps(stream(args.port, args.proxy, args.direction, args.bytes)))
    elif args.command == "connections":
        print(json.dumps(connections(args.port, args.seconds)))
    else:
        idle(args.port, args.proxy, args.count)


if __name__ == "__main__":
    main()
