"""
The signals an operator sends, as nginx users know them.

- SIGUSR1 reopens the logs (the access log, and twistd's log when there is
  one) and does nothing else: what logrotate's ``postrotate`` sends. It takes
  the place of twistd's own SIGUSR1, which renames the log itself.
- SIGHUP reloads the configuration file (routes, balancers, handler pages,
  certificates) and reopens the logs too.

The handlers run in the reactor thread; the previous ones are put back when
the service stops.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.logfile import LogFile

from twisted_proxy._twisted_internals import twistdLogFile

__all__ = ["OperatorSignals"]


class OperatorSignals(Service):
    """
    SIGHUP calls C{reload} then C{reopen}; SIGUSR1 calls C{reopen}. Both
    reopen twistd's log file too when twistd set one up.
    """

    _log = Logger()

    def __init__(
        self,
        reload: Callable[[], object],
        reopen: Callable[[], object],
        reactor: Any = None,
    ) -> None:
        self._reload = reload
        self._reopen = reopen
        self._reactor = reactor
        self._previous: dict[int, Any] = {}
        self.errorLog: LogFile | None = None

    def startService(self) -> None:
        super().startService()
        if self._reactor is None:
            from twisted.internet import reactor  # noqa: TID251

            self._reactor = reactor
        handlers = {signal.SIGHUP: self._onHangup, signal.SIGUSR1: self._onUser1}
        for number, handler in handlers.items():
            self._previous[number] = signal.signal(number, handler)
        self.errorLog = twistdLogFile(self._previous[signal.SIGUSR1])

    def stopService(self) -> None:
        super().stopService()
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

    def _onHangup(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.hangup)

    def _onUser1(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.reopenLogs)

    def hangup(self) -> None:
        """What SIGHUP does: reload, then reopen the logs."""
        self._log.info("SIGHUP: reloading")
        self._reload()
        self.reopenLogs()

    def reopenLogs(self) -> None:
        """What SIGUSR1 does: reopen the access log and twistd's log."""
        self._reopen()
        if self.errorLog is not None:
            self.errorLog.reopen()
        self._log.info("logs reopened")
