"""
Shared test fixtures.

pytest-twisted never checks for a dirty reactor, so every test here is checked:
a test that leaves a DelayedCall, a connection or a listening port behind fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import settings
from twisted.internet import task
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

# Property tests run the same examples on every run, and keep no database, so
# a CI failure reproduces anywhere; HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _leftovers(reactor: Any, readers0: set[Any], writers0: set[Any]) -> list[str]:
    calls = [
        repr(c)
        for c in reactor.getDelayedCalls()  # type: ignore[attr-defined]
        if c.active()
    ]
    selectables = (
        set(reactor.getReaders()) - readers0  # type: ignore[attr-defined]
    ) | (set(reactor.getWriters()) - writers0)  # type: ignore[attr-defined]
    # The reactor's own wakers (signal and thread wake-ups) come and go with it.
    return calls + [repr(s) for s in selectables if "Waker" not in type(s).__name__]


@pytest.fixture(autouse=True)
def cleanReactor() -> Iterator[None]:
    """Fail a test that leaves delayed calls, connections or ports behind."""
    from twisted.internet import reactor  # noqa: TID251 - the one global reactor

    readers0 = set(reactor.getReaders())  # type: ignore[attr-defined]
    writers0 = set(reactor.getWriters())  # type: ignore[attr-defined]
    yield
    # Closing a connection takes a few reactor turns: give them a bounded moment.
    left: list[str] = []
    for _ in range(100):
        left = _leftovers(reactor, readers0, writers0)
        if not left:
            return
        pytest_twisted.blockon(task.deferLater(reactor, 0.01, lambda: None))
    # Clean up, so that the tests after this one are judged on their own.
    for call in reactor.getDelayedCalls():  # type: ignore[attr-defined]
        if call.active():
            call.cancel()
    pytest.fail("test left the reactor dirty:\n  " + "\n  ".join(left))


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log message emitted during the test, as text."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
    yield lines
    globalLogPublisher.removeObserver(observe)  # type: ignore[arg-type]
