"""
What the proxy has served, for its status and metrics pages: requests and
bytes since it started, the requests of each of the last sixty seconds (a
ring of per-second counts, from which the rate over the last minute comes);
and, for the metrics, requests by route, member, method and status class,
their durations in histogram buckets, what went wrong reaching backends, and
WebSocket messages.

Pure: the clock is handed in; counting a request is a few dictionary and
integer updates. Label values come from the configuration (routes, members)
or a fixed set (methods, status classes), so their number stays bounded
whatever clients send.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUCKETS", "METHODS", "WINDOW", "Histogram", "Traffic", "TrafficSnapshot"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the request-duration histogram's buckets."""

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"}
)
"""Methods counted by name; any other is counted as C{"other"}."""


@dataclass
class Histogram:
    """Observations counted per bucket (each bucket its own count), and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at most that), +Inf last, as Prometheus has it."""
        running = 0
        result = []
        for bound, count in zip((*BUCKETS, math.inf), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result


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
        self.byLabels: dict[tuple[str, str, str, str], int] = {}
        """Requests by (route, member, method, status class)."""
        self.durations: dict[tuple[str, str], Histogram] = {}
        """Request durations by (route, method)."""
        self.bytesByRoute: dict[str, list[int]] = {}
        """[bytes in, bytes out] by route."""
        self.upstream: dict[str, int] = {}
        """Backend trouble by kind (connect, timeout, reset, protocol, retry...)."""
        self.websocketMessages: dict[str, int] = {"up": 0, "down": 0}
        """WebSocket messages relayed, client to backend ("up") and back."""

    def count(
        self,
        bytesIn: int,
        bytesOut: int,
        route: str = "",
        member: str = "",
        method: str = "GET",
        status: int = 0,
        seconds: float | None = None,
    ) -> None:
        """
        One request answered (or cut), with the bytes it took each way, the
        route and member that served it, its method, the status sent (0:
        none) and how long it took.
        """
        self.requests += 1
        self.bytesIn += bytesIn
        self.bytesOut += bytesOut
        if method not in METHODS:
            method = "other"
        statusClass = f"{status // 100}xx" if 100 <= status < 600 else "none"
        key = (route, member, method, statusClass)
        self.byLabels[key] = self.byLabels.get(key, 0) + 1
        if seconds is not None:
            histogram = self.durations.get((route, method))
            if histogram is None:
                histogram = self.durations[route, method] = Histogram()
            histogram.observe(seconds)
        pair = self.bytesByRoute.get(route)
        if pair is None:
            pair = self.bytesByRoute[route] = [0, 0]
        pair[0] += bytesIn
        pair[1] += bytesOut
        second = int(self._seconds())
        slot = second % WINDOW
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += 1

    def upstreamEvent(self, kind: str) -> None:
        """Something went wrong reaching a backend (or a request was sent again)."""
        self.upstream[kind] = self.upstream.get(kind, 0) + 1

    def websocketMessage(self, direction: str, count: int = 1) -> None:
        """WebSocket messages relayed, C{"up"} (to the backend) or C{"down"}."""
        self.websocketMessages[direction] += count

    def document(self) -> dict[str, Any]:
        """The counts as JSON values, for another process to L{add}."""
        return {
            "requests": self.requests,
            "bytesIn": self.bytesIn,
            "bytesOut": self.bytesOut,
            "recent": [self._counts, self._stamps],
            "byLabels": [[*key, value] for key, value in self.byLabels.items()],
            "durations": [
                [route, method, h.counts, h.total]
                for (route, method), h in self.durations.items()
            ],
            "bytesByRoute": self.bytesByRoute,
            "upstream": self.upstream,
            "websocketMessages": self.websocketMessages,
        }

    def add(self, document: Mapping[str, Any]) -> None:
        """Add another process's counts (its L{document}) into these."""
        self.requests += document["requests"]
        self.bytesIn += document["bytesIn"]
        self.bytesOut += document["bytesOut"]
        counts, stamps = document["recent"]
        for slot, (count, stamp) in enumerate(zip(counts, stamps, strict=True)):
            if stamp == self._stamps[slot]:
                self._counts[slot] += count
            elif stamp > self._stamps[slot]:
                self._stamps[slot], self._counts[slot] = stamp, count
        for route, member, method, code, value in document["byLabels"]:
            key = (route, member, method, code)
            self.byLabels[key] = self.byLabels.get(key, 0) + value
        for route, method, buckets, total in document["durations"]:
            histogram = self.durations.get((route, method))
            if histogram is None:
                histogram = self.durations[route, method] = Histogram()
            histogram.counts = [
                a + b for a, b in zip(histogram.counts, buckets, strict=True)
            ]
            histogram.total += total
        for route, (bytesIn, bytesOut) in document["bytesByRoute"].items():
            pair = self.bytesByRoute.setdefault(route, [0, 0])
            pair[0] += bytesIn
            pair[1] += bytesOut
        for kind, value in document["upstream"].items():
            self.upstream[kind] = self.upstream.get(kind, 0) + value
        for direction, value in document["websocketMessages"].items():
            self.websocketMessages[direction] = (
                self.websocketMessages.get(direction, 0) + value
            )

    def merged(self, documents: Iterable[Mapping[str, Any]]) -> Traffic:
        """New counts: these plus other processes' (their L{document}s)."""
        total = Traffic(self._seconds)
        total.started = self.started
        for document in (self.document(), *documents):
            total.add(document)
        return total

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
