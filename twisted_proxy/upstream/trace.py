"""
Each upstream exchange at debug level, for ``[proxy] log_level = "debug"``
(Apache's ``LogLevel proxy:trace2``): which backend or balancer member, on a
new or reused connection (its age and how many requests it has carried),
connect, first-byte and total times, the outcome, and the bytes each way.

An exchange makes an L{UpstreamTrace} only when debug logging is on, so with
``log_level = "info"`` the request path pays a C{None} check and nothing else.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["UpstreamTrace"]

_log = Logger()

_FORMAT = (
    "{label}: {method} {path} -> {backend}{via}: {outcome}; {connection} connection"
    " (request {connectionRequests} on it, {connectionAge:.3f}s old);"
    " connect {connectTime:.3f}s, first byte {firstByte}, total {totalTime:.3f}s;"
    " {bytesIn} body bytes in, {bytesOut} bytes out"
)


class UpstreamTrace:
    """
    The times of one request's attempts at a backend, each logged when it
    ends. Times are the clock's, from asking the pool for a connection.
    """

    def __init__(
        self, clock: IReactorTime, label: str, method: bytes, path: bytes
    ) -> None:
        self._clock = clock
        self._label = label
        self._method = method.decode("latin-1")
        self._path = path.decode("latin-1")
        self._asked = 0.0
        self._sent: float | None = None
        self._firstByte: float | None = None
        self._status: int | None = None
        self._reused = False
        self._requests = 0
        self._age = 0.0

    def asking(self) -> None:
        """An attempt starts: a connection is asked of the pool."""
        self._asked = self._clock.seconds()
        self._sent = self._firstByte = self._status = None

    def connected(self, connection: Any, reused: bool) -> None:
        """The request went on C{connection} (an L{UpstreamConnection})."""
        now = self._sent = self._clock.seconds()
        self._reused = reused
        self._requests = connection.requestsSent
        self._age = max(0.0, now - connection.connectedAt)

    def responded(self, status: int) -> None:
        """A response (or an interim 1xx) began with C{status}."""
        if self._firstByte is None:
            self._firstByte = self._clock.seconds()
        if status >= 200:
            self._status = status

    def ended(
        self,
        outcome: str,
        backend: str,
        balancer: str | None,
        route: str | None,
        bytesIn: int,
        bytesOut: int,
    ) -> None:
        """
        Log the attempt: C{outcome} is C{"answered"}, C{"failed: ..."} or
        C{"abandoned: ..."}.
        """
        now = self._clock.seconds()
        sent = self._sent
        firstByte = None
        if sent is not None and self._firstByte is not None:
            firstByte = self._firstByte - sent
        via = ""
        if balancer is not None:
            via = f" ({balancer}, route {route})" if route else f" ({balancer})"
        if outcome == "answered" and self._status is not None:
            outcome = str(self._status)
        _log.debug(
            _FORMAT,
            label=self._label,
            method=self._method,
            path=self._path,
            backend=backend,
            via=via,
            balancer=balancer,
            memberRoute=route,
            outcome=outcome,
            status=self._status,
            connection="reused" if self._reused else "new",
            reused=self._reused,
            connectionRequests=self._requests,
            connectionAge=self._age,
            connectTime=(sent if sent is not None else now) - self._asked,
            firstByteTime=firstByte,
            firstByte="-" if firstByte is None else f"{firstByte:.3f}s",
            totalTime=now - self._asked,
            bytesIn=bytesIn,
            bytesOut=bytesOut,
        )
