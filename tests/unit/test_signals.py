"""
The operator's signals: SIGUSR1 reopens the logs, SIGHUP reloads and reopens
them; both run in the reactor thread, and twistd's own log file is reopened
too (twistd's SIGUSR1 handler, which renames it, is replaced).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.python.logfile import LogFile

from twisted_proxy._twisted_internals import twistdLogFile
from twisted_proxy.signals import OperatorSignals


class RecordingReactor:
    """Runs nothing; records what was handed to callFromThread."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[[], object], *args: Any) -> None:
        self.calls.append(f)

    def runCalls(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


def deliver(number: int) -> None:
    """Send C{number} to this process and let its Python handler run."""
    os.kill(os.getpid(), number)
    signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put back whatever SIGHUP and SIGUSR1 did before the test."""
    saved = {n: signal.getsignal(n) for n in (signal.SIGHUP, signal.SIGUSR1)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def twistdStyleHandler(logFile: LogFile) -> Callable[[int, Any], None]:
    """A handler shaped like the one twistd installs for its log file."""

    def rotateLog(signal: int, frame: Any) -> None:
        logFile.rotate()

    return rotateLog


@pytest.mark.parametrize(
    ("number", "expected"),
    [(signal.SIGUSR1, ["reopen"]), (signal.SIGHUP, ["reload", "reopen"])],
    ids=["SIGUSR1", "SIGHUP"],
)
def test_signalDoesItsJobInReactorThread(
    handlers: None, number: int, expected: list[str]
) -> None:
    """
    SIGUSR1 reopens the logs and reloads nothing; SIGHUP reloads, then
    reopens them. Both in the reactor thread; handlers go back on stop.
    """
    done: list[str] = []
    previous = signal.getsignal(number)
    reactor = RecordingReactor()
    service = OperatorSignals(
        lambda: done.append("reload"), lambda: done.append("reopen"), reactor
    )
    service.startService()
    try:
        deliver(number)
        assert done == []  # only in the reactor thread
        reactor.runCalls()
        assert done == expected
    finally:
        service.stopService()
    assert signal.getsignal(number) is previous


def test_user1ReopensTwistdLogAfterRename(tmp_path: Path, handlers: None) -> None:
    """
    After logrotate renamed twistd's log, SIGUSR1 makes the next lines go to
    a new file by the old name; twistd's renaming handler is not called.
    """
    path = tmp_path / "twistd.log"
    logFile = LogFile("twistd.log", str(tmp_path))
    try:
        signal.signal(signal.SIGUSR1, twistdStyleHandler(logFile))
        reactor = RecordingReactor()
        service = OperatorSignals(lambda: None, lambda: None, reactor)
        service.startService()
        try:
            assert service.errorLog is logFile
            logFile.write("before\n")
            logFile.flush()
            os.rename(path, tmp_path / "twistd.log.1")
            deliver(signal.SIGUSR1)
            reactor.runCalls()
            logFile.write("after\n")
            logFile.flush()
        finally:
            service.stopService()
    finally:
        logFile.close()
    assert (tmp_path / "twistd.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"
    assert not (tmp_path / "twistd.log.2").exists()


def test_twistdLogFileOnlyFromItsHandler(tmp_path: Path) -> None:
    """Other handlers (a plain function, SIG_DFL) are not taken for twistd's."""
    logFile = LogFile("twistd.log", str(tmp_path))
    try:
        assert twistdLogFile(twistdStyleHandler(logFile)) is logFile
    finally:
        logFile.close()
    assert twistdLogFile(signal.SIG_DFL) is None
    assert twistdLogFile(lambda n, f: None) is None
    assert twistdLogFile(None) is None
