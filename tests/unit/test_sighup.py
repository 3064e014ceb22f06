"""
SIGHUP under twistd: the certificates are read again, in the reactor thread.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from twisted_proxy.tap import SighupReload


class RecordingReactor:
    """Runs nothing; records what was handed to callFromThread."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[[], object], *args: Any) -> None:
        self.calls.append(f)


def test_sighupReloadsWhileRunning() -> None:
    """SIGHUP while the service runs asks the reactor to reload; not after stop."""
    reloads: list[str] = []

    def reload() -> None:
        reloads.append("reload")

    previous = signal.getsignal(signal.SIGHUP)
    reactor = RecordingReactor()
    service = SighupReload(reload, reactor)
    service.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # let the handler run
        assert reactor.calls == [reload]
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) is previous
    reactor.calls[0]()
    assert reloads == ["reload"]
