"""
Times for the access log, in local time: Apache's ``%t``, ISO 8601 for the
JSON format, any C{strftime} format; each rendered once per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["PerSecond", "apacheTime", "isoTimeParts", "strftimeRenderer"]

_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def _offset(tm: time.struct_time, colon: bool) -> str:
    """Return the UTC offset of a local time as ``-0700`` (or ``-07:00``)."""
    gmtoff = tm.tm_gmtoff
    sign = "-" if gmtoff < 0 else "+"
    hours, minutes = divmod(abs(gmtoff) // 60, 60)
    return (
        f"{sign}{hours:02d}:{minutes:02d}"
        if colon
        else f"{sign}{hours:02d}{minutes:02d}"
    )


class PerSecond:
    """
    Cache a time rendering per whole second.

    Lines are written when requests end, not in the order they started, so a
    few recent seconds are kept rather than just the last one.
    """

    __slots__ = ("_cache", "_render")

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._cache: dict[int, str] = {}

    def __call__(self, when: float) -> str:
        second = int(when)
        text = self._cache.get(second)
        if text is None:
            if len(self._cache) >= 64:
                self._cache.clear()
            text = self._cache[second] = self._render(second)
        return text


def _apacheTime(second: int) -> str:
    """Render a second as Apache's ``%t``: ``[10/Oct/2000:13:55:36 -0700]``."""
    tm = time.localtime(second)
    return (
        f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {_offset(tm, False)}]"
    )


def _isoTimeParts(second: int) -> str:
    """Render a second as local ISO 8601 with a ``{}`` where the milliseconds go."""
    tm = time.localtime(second)
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{{:03d}}{_offset(tm, True)}"
    )


apacheTime = PerSecond(_apacheTime)
"""A time as Apache's ``%t``, rendered once per second."""
isoTimeParts = PerSecond(_isoTimeParts)
"""A time as local ISO 8601, milliseconds left as ``{}``, rendered once per second."""


def strftimeRenderer(fmt: str) -> Callable[[int], str]:
    """Return a renderer of a second, in local time, through C{strftime}."""
    return lambda second: time.strftime(fmt, time.localtime(second))
