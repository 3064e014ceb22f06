"""
A long response body moved from the backend's socket to the client's inside
the kernel (Linux C{splice(2)} through a pipe), never copied into Python.

Relaying a 10 MiB body through Python costs two copies of every byte
(socket to a bytes object, bytes object to the other socket) and a pass of
the reactor for every read; spliced, the pages move between the two sockets
and the proxy only counts them: about a fifth of the CPU per GiB.

The backend connection (L{twisted_proxy.upstream.client}) takes it for a
Content-Length body of at least L{SPLICE_MIN} bytes still to come, once the
head is out and when the body leaves as it arrives: both connections plain
TCP, nothing queued on either, no compression, the request all sent. While it
runs, neither Twisted transport reads: this object is the reactor's reader
of the backend's socket and, while the client's socket is full, its writer
of the client's. What happens to the bytes is told to its L{SpliceOwner}:
each piece read (the backend is not silent), each piece written (counted
for the access log), the client's socket full or with room again (so
C{send_timeout} runs as for any slow client), the end, and trouble.

Trouble hands the connections back rather than handling them here: a
backend that closes or fails mid-body is given back to its transport, whose
next read finds the close and fails the response the ordinary way; a client
that is gone is aborted, and its channel's ordinary loss follows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["SPLICE_MIN", "BodySplice", "SpliceOwner", "available"]

#: The least body still to come that is worth a pipe and four epoll changes.
SPLICE_MIN = 256 * 1024

#: What the pipe holds: Linux's default of 64 KiB takes a reactor turn per
#: 64 KiB (0.7 CPU-seconds per GiB measured, no better than copying); 256 KiB
#: took 0.34 and 1 MiB 0.28. 256 KiB keeps what a stalled client pins in the
#: kernel small, and keeps 256 pipes within Linux's default per-user budget
#: for pipes larger than the default (pipe-user-pages-soft, 64 MiB).
_PIPE_SIZE = 256 * 1024

#: Whether this system splices (Linux, Python 3.10 or later).
available = sys.platform == "linux" and hasattr(os, "splice")

if available:
    import fcntl

    _FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    _SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
else:  # pragma: no cover - the backend connection never asks elsewhere
    _FLAGS = 0
    _SETPIPE_SZ = 0

# A peer that went away: the client is gone, not a fault of ours.
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ETIMEDOUT)
# A system that will not splice these descriptors (a sandbox, an odd kernel).
_REFUSED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)

_log = Logger()


def _refuse(error: OSError) -> None:
    """Splicing failed for want of support: relay through Python from now on."""
    global available
    if available:
        available = False
        _log.warn(
            "splice(2) refused ({why}): long response bodies are relayed"
            " through Python from now on",
            why=os.strerror(error.errno) if error.errno else str(error),
        )


class SpliceOwner(Protocol):
    """What a splice tells about the bytes it moves (the backend connection)."""

    def splicedIn(self, count: int) -> None:
        """C{count} more bytes of the body came from the backend."""

    def splicedOut(self, count: int) -> None:
        """C{count} more bytes of the body went to the client's socket."""

    def spliceClientFull(self) -> None:
        """The client's socket took no more: it is timed as a slow client."""

    def spliceClientRoom(self) -> None:
        """The client's socket has room again."""

    def spliceFinished(self) -> None:
        """The whole body is at the client's socket; both transports read again."""

    def spliceBackendEnded(self) -> None:
        """
        The backend closed or failed before the end of the body; its
        transport reads again, and will find out which.
        """

    def spliceClientGone(self, reason: str) -> None:
        """The client's socket refused the body (C{reason}); it has been aborted."""

    def spliceRefused(self, held: bytes) -> None:
        """
        The system would not splice: both transports read again, and C{held}
        (read from the backend, not yet at the client) goes the usual way.
        """


class _Socket:
    """One socket as the reactor sees it while the splice holds it."""

    def __init__(self, fd: int, ready: Any, lost: Any) -> None:
        self._fd = fd
        self.doRead = ready
        self.doWrite = ready
        self._lost = lost

    def fileno(self) -> int:
        return self._fd

    def forget(self) -> None:
        """
        Be found by the reactor by identity from now on: the socket may be
        closed (a transport aborted) and its number given to another.
        """
        self._fd = -1

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw the socket hang up (or a handler raise).
        self._lost(reason)

    def logPrefix(self) -> str:
        return "splice"


class BodySplice:
    """
    Move C{length} bytes from C{source}'s socket to C{sink}'s (two Twisted
    TCP transports with nothing queued), telling C{owner}. L{start} takes the
    sockets from their transports; the end, or L{cancel}, gives them back.
    """

    def __init__(
        self,
        source: Any,
        sink: Any,
        length: int,
        owner: SpliceOwner,
        resumeSinkReading: bool = True,
    ) -> None:
        self._source = source
        self._sink = sink
        self._remaining = length
        self._owner = owner
        self._resumeSinkReading = resumeSinkReading
        self._reactor: IReactorFDSet = source.reactor
        self._reader = _Socket(source.fileno(), self._readable, self._sourceLost)
        self._writer = _Socket(sink.fileno(), self._writable, self._sinkLost)
        self._pipe: tuple[int, int] | None = None
        self._inPipe = 0
        self._waitingForRoom = False
        self.done = False

    @property
    def remaining(self) -> int:
        """Bytes of the body not yet read from the backend."""
        return self._remaining

    def start(self) -> bool:
        """
        Take both sockets over; False (and nothing changed) when no pipe
        could be had (out of descriptors, say): the body is relayed as usual.
        """
        try:
            read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        # Over /proc/sys/fs/pipe-max-size for this user: the default will do.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write, _SETPIPE_SZ, _PIPE_SIZE)
        self._pipe = (read, write)
        self._source.stopReading()
        self._sink.stopReading()
        self._reactor.addReader(self._reader)  # type: ignore[arg-type]
        return True

    def cancel(self) -> None:
        """Stop moving bytes (a side is being aborted); the transports stay idle."""
        if self.done:
            return
        self.done = True
        self._reader.forget()
        self._writer.forget()
        self._reactor.removeReader(self._reader)  # type: ignore[arg-type]
        self._reactor.removeWriter(self._writer)  # type: ignore[arg-type]
        self._closePipe()

    # -- the reactor's calls --

    def _readable(self) -> None:
        if self.done or self._pipe is None:
            return
        try:
            count = os.splice(
                self._source.fileno(),
                self._pipe[1],
                min(self._remaining, _PIPE_SIZE),
                flags=_FLAGS,
            )
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno in _REFUSED:
                self._refused(e)
            else:
                self._backendEnded()
            return
        if count == 0:
            self._backendEnded()
            return
        self._remaining -= count
        self._inPipe += count
        self._owner.splicedIn(count)
        self._drain()

    def _writable(self) -> None:
        if not self.done:
            self._drain()

    def _sourceLost(self, reason: Failure) -> None:
        if not self.done:
            self._backendEnded()

    def _sinkLost(self, reason: Failure) -> None:
        if not self.done:
            self._clientGone(OSError(errno.ECONNRESET, "the client hung up"))

    def _drain(self) -> None:
        """Send what the pipe holds on to the client, as far as it takes it."""
        assert self._pipe is not None
        while self._inPipe:
            try:
                count = os.splice(
                    self._pipe[0], self._sink.fileno(), self._inPipe, flags=_FLAGS
                )
            except BlockingIOError:
                count = 0
            except OSError as e:
                if e.errno in _REFUSED:
                    self._refused(e)
                else:
                    self._clientGone(e)
                return
            if count == 0:
                self._waitForRoom()
                return
            self._inPipe -= count
            self._owner.splicedOut(count)
            if self.done:
                # The owner let go meanwhile.
                return
        if self._waitingForRoom:
            self._waitingForRoom = False
            self._reactor.removeWriter(self._writer)  # type: ignore[arg-type]
            if self._remaining:
                self._reactor.addReader(self._reader)  # type: ignore[arg-type]
            self._owner.spliceClientRoom()
            if self.done:
                return
        if not self._remaining:
            self._finish()

    def _waitForRoom(self) -> None:
        if self._waitingForRoom:
            return
        self._waitingForRoom = True
        self._reactor.removeReader(self._reader)  # type: ignore[arg-type]
        self._reactor.addWriter(self._writer)  # type: ignore[arg-type]
        self._owner.spliceClientFull()

    # -- the ends --

    def _finish(self) -> None:
        self._handBack()
        self._owner.spliceFinished()

    def _backendEnded(self) -> None:
        self._handBack()
        self._owner.spliceBackendEnded()

    def _refused(self, error: OSError) -> None:
        _refuse(error)
        held = []
        assert self._pipe is not None
        while self._inPipe:
            piece = os.read(self._pipe[0], self._inPipe)
            held.append(piece)
            self._inPipe -= len(piece)
        waiting, self._waitingForRoom = self._waitingForRoom, False
        self._handBack()
        if waiting:
            # The client's transport does its own pausing from here on.
            self._owner.spliceClientRoom()
        self._owner.spliceRefused(b"".join(held))

    def _clientGone(self, error: OSError) -> None:
        self.cancel()
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno not in _GONE:
            reason = f"splice to the client failed: {reason}"
        self._sink.abortConnection()
        self._owner.spliceClientGone(reason)

    def _handBack(self) -> None:
        """Both transports read their sockets again."""
        self.cancel()
        self._source.startReading()
        if self._resumeSinkReading:
            self._sink.startReading()

    def _closePipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            os.close(pipe[0])
            os.close(pipe[1])
