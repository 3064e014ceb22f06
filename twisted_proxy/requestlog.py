"""
The access log: one line per finished request, formatted by L{accesslog} and
written through a buffer (no system call per line).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted_proxy.accesslog import BufferedLogWriter, LogRecord, compileFormat
from twisted_proxy.site import StreamingRequest


class AccessLogger:
    """Turn a finished L{StreamingRequest} into a log line."""

    def __init__(
        self,
        fmt: str,
        write: Callable[[str], object],
        flush: Callable[[], object] | None,
        clock: object,
        serverName: str = "-",
    ) -> None:
        self._format = compileFormat(fmt)
        self._writer = BufferedLogWriter(write, flush)
        self._clock = clock
        self._serverName = serverName

    def logRequest(self, request: StreamingRequest) -> None:
        """Log C{request}, which has just finished."""
        now: float = self._clock.seconds()  # type: ignore[attr-defined]
        reqHeaders = request.requestHeaders
        respHeaders = request.responseHeaders

        def requestHeader(name: bytes) -> bytes | None:
            values = reqHeaders.getRawHeaders(name)
            return values[0] if values else None

        def responseHeader(name: bytes) -> bytes | None:
            values = respHeaders.getRawHeaders(name)
            return values[0] if values else None

        body = request.sentLength
        record = LogRecord(
            remoteHost=request.clientAddress() or "-",
            remoteUser=None,
            requestTime=request.startTime or now,
            method=request.method or b"-",
            target=request.uri or b"-",
            protocol=request.clientproto or b"-",
            status=request.code,
            bodyBytes=body,
            bytesOut=body + _headBytes(request),
            bytesIn=request.bytesIn,
            duration=max(0.0, now - (request.startTime or now)),
            requestHeaders=requestHeader,
            responseHeaders=responseHeader,
            env=request.logEnv,
            serverName=self._serverName,
        )
        self._writer.log(self._format(record))

    def flush(self) -> None:
        """Write out what is buffered."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and stop."""
        self._writer.close()


def _headBytes(request: StreamingRequest) -> int:
    # The status line and headers as written: counted, not re-serialised.
    size = 17
    for name, values in request.responseHeaders.getAllRawHeaders():
        for value in values:
            size += len(name) + len(value) + 4
    return size + 2
