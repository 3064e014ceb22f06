"""
The access log: one line per request, finished or cut short, formatted by
L{accesslog} and written through a buffer (no system call per line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from twisted_proxy.core.logformat import (
    END_COMPLETE,
    BufferedLogWriter,
    LogRecord,
    compileFormat,
)
from twisted_proxy.frontends.request import ProxiedRequest


class AccessLogger:
    """Turn a finished L{ProxiedRequest} into a log line."""

    def __init__(
        self,
        fmt: str,
        write: Callable[[str], object],
        flush: Callable[[], object] | None,
        clock: object,
        serverName: str = "-",
    ) -> None:
        self._format = compileFormat(fmt)
        self._write = write
        self._writer = BufferedLogWriter(write, flush)
        self._clock = clock
        self._serverName = serverName

    def logRequest(self, request: ProxiedRequest) -> None:
        """
        Log C{request}, which has just finished or been cut short: the status
        sent (0 when no head went out) and the bytes that left for the client.
        """
        now: float = self._clock.seconds()  # type: ignore[attr-defined]
        reqHeaders = request.requestHeaders
        respHeaders = request.responseHeaders

        def requestHeader(name: bytes) -> bytes | None:
            values = reqHeaders.getRawHeaders(name)
            return values[0] if values else None

        def responseHeader(name: bytes) -> bytes | None:
            values = respHeaders.getRawHeaders(name)
            return values[0] if values else None

        unsent = request.unsentBytes
        body = max(0, request.sentLength - unsent)
        # Cut short before its head went out, a request was answered nothing.
        # (A WebSocket's 101 is written by the bridge, not the request.)
        sent = request.startedWriting or request.endReason is None
        record = LogRecord(
            remoteHost=request.clientAddress() or "-",
            remoteUser=getattr(request, "remoteUser", None),
            requestTime=request.startTime or now,
            method=request.method or b"-",
            target=request.uri or b"-",
            protocol=request.clientproto or b"-",
            status=request.code if sent else 0,
            bodyBytes=body,
            bytesOut=(
                max(0, request.sentLength + _headBytes(request) - unsent) if sent else 0
            ),
            bytesIn=request.bytesIn + request.headBytes,
            duration=max(0.0, now - (request.startTime or now)),
            requestHeaders=requestHeader,
            responseHeaders=responseHeader,
            env=request.logEnv,
            serverName=self._serverName,
            requestLine=request.requestLine,
            connectionStatus=request.connectionStatus(),
            endReason=request.endReason or END_COMPLETE,
        )
        self._writer.log(self._format(record))

    def logRefusal(
        self, remoteHost: str, requestLine: bytes, status: int, sent: int
    ) -> None:
        """Log a request refused before it became one (400, 408, 414, 431)."""
        now: float = self._clock.seconds()  # type: ignore[attr-defined]
        parts = requestLine.split(b" ")
        if len(parts) == 3:
            method, target, protocol = parts
        else:
            method, target, protocol = b"-", b"-", b"-"
        record = LogRecord(
            remoteHost=remoteHost or "-",
            remoteUser=None,
            requestTime=now,
            method=method,
            target=target,
            protocol=protocol,
            status=status,
            bodyBytes=sent,
            bytesOut=sent,
            bytesIn=0,
            duration=0.0,
            serverName=self._serverName,
            requestLine=requestLine or None,
            # A refusal closes the connection after it.
            connectionStatus="-",
        )
        self._writer.log(self._format(record))

    def logConnection(
        self,
        remoteHost: str,
        target: bytes,
        status: int,
        bytesOut: int,
        bytesIn: int,
        startTime: float,
        env: dict[str, str],
        endReason: str | None,
    ) -> None:
        """
        Log one connection of a tcp listener once it is over: the request
        line is C{TCP <target>} (the member, or the fixed destination), the
        status nginx's stream module gives (200 relayed, 502 no member could
        be reached, 503 none available), the bytes each way and how long.
        """
        now: float = self._clock.seconds()  # type: ignore[attr-defined]
        record = LogRecord(
            remoteHost=remoteHost or "-",
            remoteUser=None,
            requestTime=startTime,
            method=b"TCP",
            target=target,
            protocol=b"-",
            status=status,
            bodyBytes=bytesOut,
            bytesOut=bytesOut,
            bytesIn=bytesIn,
            duration=max(0.0, now - startTime),
            env=env,
            serverName=self._serverName,
            requestLine=b"TCP " + target,
            connectionStatus="-" if endReason is None else "X",
            endReason=endReason or END_COMPLETE,
        )
        self._writer.log(self._format(record))

    def flush(self) -> None:
        """Write out what is buffered."""
        self._writer.flush()

    def close(self) -> None:
        """Flush, and close the file (never standard output)."""
        self._writer.flush()
        target = getattr(self._write, "__self__", None)
        if target is not None and target not in (
            sys.stdout,
            sys.stderr,
            sys.__stdout__,
            sys.__stderr__,
        ):
            target.close()


def _headBytes(request: ProxiedRequest) -> int:
    # The status line and headers as written: counted, not re-serialised.
    size = 17
    for name, values in request.responseHeaders.getAllRawHeaders():
        for value in values:
            size += len(name) + len(value) + 4
    return size + 2
