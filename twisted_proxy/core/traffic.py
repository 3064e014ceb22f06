"""
What the proxy has served, for its status page: requests and bytes since it
started, and the requests of each of the last sixty seconds (a ring of
per-second counts), from which the rate over the last minute comes.

Pure: the clock is handed in; counting a request is a few integer additions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WINDOW", "Traffic", "TrafficSnapshot"]

WINDOW = 60
"""Seconds the recent rate is taken over."""


@dataclass(frozen=True)
class TrafficSnapshot:
    """The counts at one moment."""

    started: float
    """When counting began (the proxy's start), in the clock's seconds."""
    uptime: float
    requests: int
    bytesIn: int
    bytesOut: int
    recentRequests: int
    """Requests answered in the last L{WINDOW} seconds (or since the start)."""
    recentSeconds: float
    """The seconds C{recentRequests} were counted over."""

    @property
    def requestsPerSecond(self) -> float:
        """Requests per second over the last minute."""
        return self.recentRequests / self.recentSeconds if self.recentSeconds else 0.0


class Traffic:
    """Counts of what was served, overall and per recent second."""

    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        self.started = seconds()
        self.requests = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self._counts = [0] * WINDOW
        self._stamps = [-1] * WINDOW

    def count(self, bytesIn: int, bytesOut: int) -> None:
        """One request answered (or cut), with the bytes it took each way."""
        self.requests += 1
        self.bytesIn += bytesIn
        self.bytesOut += bytesOut
        second = int(self._seconds())
        slot = second % WINDOW
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += 1

    def snapshot(self) -> TrafficSnapshot:
        """The counts now."""
        now = self._seconds()
        second = int(now)
        recent = sum(
            count
            for count, stamp in zip(self._counts, self._stamps, strict=True)
            if second - WINDOW < stamp <= second
        )
        return TrafficSnapshot(
            started=self.started,
            uptime=now - self.started,
            requests=self.requests,
            bytesIn=self.bytesIn,
            bytesOut=self.bytesOut,
            recentRequests=recent,
            recentSeconds=min(float(WINDOW), now - self.started),
        )
