"""
Where access-log lines go, and reopening it after logrotate moved it.

``access_log = "/path"`` is a file opened for appending, which L{LogTarget.reopen}
opens again by name (SIGUSR1 and SIGHUP do it, as with nginx); ``"-"`` is
standard output, or twistd's own log when twistd runs as a daemon (its
standard output is ``/dev/null`` there). Worker processes share standard
output: each writes it in whole lines of at most L{PIPE_BUF} bytes at a time,
which a pipe never interleaves with another process's writes.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import Logger, LoggingFile

__all__ = ["PIPE_BUF", "LogTarget", "linePieces"]

# Under a daemon's twistd, access-log lines are events of this namespace.
_accessLines = Logger(namespace="twisted_proxy.access")

# Lines are buffered by the access logger; the file gets large writes.
_FILE_BUFFER = 1 << 16

PIPE_BUF = 4096
"""The largest write a pipe keeps whole against other writers (POSIX's least)."""


def linePieces(chunk: str, limit: int = PIPE_BUF) -> list[str]:
    """
    C{chunk} (whole lines) cut at line ends into pieces of at most C{limit}
    bytes as UTF-8; a longer line is a piece of its own.
    """
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in chunk.splitlines(keepends=True):
        length = len(line.encode("utf-8", "backslashreplace"))
        if current and size + length > limit:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        pieces.append("".join(current))
    return pieces


def _openFile(path: str) -> IO[str]:
    # Held for the life of the target.
    return open(
        path, "a", buffering=_FILE_BUFFER, encoding="utf-8", errors="backslashreplace"
    )


class LogTarget:
    """
    One access-log destination: L{write} and L{flush} take the logger's
    chunks, L{reopen} follows a rotated file, L{close} lets go of it.
    """

    _log = Logger()

    def __init__(self, path: str, daemon: bool = False, shared: bool = False) -> None:
        """
        Open C{path} (``"-"``: standard output; with C{daemon}, twistd's log).
        C{shared}: other processes write to the same standard output.

        :raise OSError: when the file cannot be opened.
        """
        self.path = path
        self._piecewise = shared and path == "-"
        self._toLog = path == "-" and daemon
        self._stream: IO[str] | None = None
        self._owned = path != "-"
        if self._toLog:
            return
        if path == "-":
            stream = sys.stdout
            # twistd -n points sys.stdout into its log; the lines go to the
            # real standard output.
            if isinstance(stream, LoggingFile) and sys.__stdout__ is not None:
                stream = sys.__stdout__
            self._stream = stream
        else:
            self._stream = _openFile(path)

    def write(self, chunk: str) -> None:
        """Write C{chunk}: whole lines, each ending in a newline."""
        if self._stream is not None:
            if not self._piecewise:
                self._stream.write(chunk)
                return
            for piece in linePieces(chunk):
                self._stream.write(piece)
                self._stream.flush()
            return
        if self._toLog:
            for line in chunk.splitlines():
                _accessLines.info("{line}", line=line)

    def flush(self) -> None:
        """Hand what was written to the operating system."""
        if self._stream is not None:
            self._stream.flush()

    def reopen(self) -> bool:
        """
        Open the file by its name again: after logrotate renamed it, lines go
        to the new file. If it cannot be opened the old one is kept, and the
        reason logged. Standard output and twistd's log are left alone.
        """
        if not self._owned or self._stream is None:
            return True
        try:
            fresh = _openFile(self.path)
        except OSError as e:
            self._log.error(
                "cannot reopen the access log {path}: {why}; still writing to"
                " the file it had open",
                path=self.path,
                why=e.strerror or str(e),
            )
            return False
        old, self._stream = self._stream, fresh
        old.close()
        return True

    def close(self) -> None:
        """Flush, and close the file (never standard output)."""
        if self._stream is None:
            return
        self._stream.flush()
        if self._owned:
            self._stream.close()
            self._stream = None
