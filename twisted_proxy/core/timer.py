"""
One timer for a connection whose deadlines come one at a time: the request
head, then the body, then keep-alive idle (the client side); the TLS
handshake, the response, the upload, the pool's idle TTL (the backend side).

Arming it for a purpose replaces the deadline before, re-aiming the running
call where there is one rather than making another; when it runs out, the
owner is told which purpose it was armed for (L{None} once that purpose was
given up with L{PurposeTimer.forget}).

No Twisted here: the owner hands in its clock's C{callLater}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["PurposeTimer"]


def _closed(purpose: str | None) -> None:
    """What a closed timer calls: nothing (it never runs again)."""


class _Call(Protocol):
    """What this needs of a delayed call (Twisted's C{IDelayedCall})."""

    def active(self) -> bool: ...

    def reset(self, secondsFromNow: float) -> None: ...

    def cancel(self) -> None: ...


class PurposeTimer:
    """
    A deadline at a time, with what it is for.

    :ivar purpose: what the running deadline is for (C{None}: nothing).
    """

    __slots__ = ("_call", "_callLater", "_fired", "purpose")

    def __init__(
        self,
        callLater: Callable[[float, Callable[[], None]], _Call],
        fired: Callable[[str | None], None],
    ) -> None:
        self._callLater = callLater
        self._fired = fired
        self._call: _Call | None = None
        self.purpose: str | None = None

    def arm(self, seconds: float, purpose: str) -> None:
        """Run out C{seconds} from now, for C{purpose} (instead of any other)."""
        if self._fired is _closed:
            return
        self.purpose = purpose
        call = self._call
        # Set only while the call is pending: it is let go when it runs
        # (_ranOut) and when it is cancelled (cancel), both only here.
        if call is not None:
            call.reset(seconds)
        else:
            self._call = self._callLater(seconds, self._ranOut)

    def extend(self, seconds: float) -> None:
        """Push the running deadline (whatever it is for) to C{seconds} from now."""
        call = self._call
        if call is not None:
            call.reset(seconds)

    def forget(self) -> None:
        """Give the purpose up: a deadline still running finds nothing to do."""
        self.purpose = None

    def cancel(self) -> None:
        """Stop the deadline, if one is running."""
        self.purpose = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def close(self) -> None:
        """
        The connection is gone: stop, and never run again. The owner is let
        go of (the timer held it through C{fired}), so no reference cycle
        outlives the connection.
        """
        self.cancel()
        self._fired = _closed

    def _ranOut(self) -> None:
        self._call = None
        purpose, self.purpose = self.purpose, None
        self._fired(purpose)
