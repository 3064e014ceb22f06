"""
What the Apache converter's parts share (L{twisted_proxy.apache.convert}):
the converted document (L{Imported}), the messages about the file's lines,
what one virtual host says so far (L{Host}), and the base of the parts that
read each family of directives (L{Lines}).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted_proxy.apache.parse import Directive, Section

__all__ = [
    "BadValueError",
    "Host",
    "Imported",
    "Lines",
    "Message",
    "count",
    "mergedHeaders",
    "onOff",
    "origin",
    "seconds",
]


@dataclass(frozen=True)
class Message:
    """A notice or an error about one line of the Apache file."""

    file: str
    line: int
    directive: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.directive}: {self.text}"


@dataclass
class Imported:
    """
    The converted document: its tables (TOML-ready values), the Apache
    line each table came from (by table, for the comment above it), and
    what was said about the file.
    """

    proxy: dict[str, Any] = field(default_factory=dict)
    listen: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    balancers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    """Each table's Apache origin ("file:line Directive args"), by id()."""
    notices: list[Message] = field(default_factory=list)
    errors: list[Message] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The configuration as a TOML document (a dict)."""
        doc: dict[str, Any] = {}
        if self.proxy:
            doc["proxy"] = self.proxy
        if self.listen:
            doc["listen"] = self.listen
        if self.routes:
            doc["route"] = self.routes
        if self.balancers:
            doc["balancer"] = self.balancers
        return doc


def origin(d: Directive) -> str:
    words = " ".join([d.name, *d.args])
    return f"{d.where} {words}"


@dataclass
class Host:
    """What one <VirtualHost> (or the main server) says so far."""

    names: list[str] = field(default_factory=list)
    preserveHost: bool | None = None
    routes: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, Directive] = field(default_factory=dict)
    seen: dict[str, Directive] = field(default_factory=dict)
    # The listener tables this host is served on, and its TLS and request
    # header directives.
    listeners: list[dict[str, Any]] = field(default_factory=list)
    tls: dict[str, Any] = field(default_factory=dict)
    tlsOn: Directive | None = None
    requestHeaders: dict[str, Any] = field(default_factory=dict)
    # Each <Location>'s RequestHeader lines: its path, the directives.
    locationHeaders: list[tuple[str, dict[str, Any], Section]] = field(
        default_factory=list
    )


class Lines:
    """
    The converter's state and voice, as each family of directives uses
    them: the document made so far and the messages about the file.
    """

    out: Imported
    tables: dict[str, dict[str, Any]]
    declared: dict[str, Directive]
    access: dict[str, list[str]]
    accessAt: Directive | None
    insertCookie: tuple[str, Directive] | None
    formats: dict[str, str]
    formatLines: list[tuple[str, Directive]]
    usedFormats: set[str]
    inlineLog: Directive | None
    serverTimeout: float | None
    healthExpressions: dict[str, tuple[str, Directive]]
    memberTimeouts: dict[tuple[str, str], list[tuple[float, Directive]]]
    traceOn: Directive | None

    def notice(self, d: Directive, text: str) -> None:
        self.out.notices.append(Message(d.file, d.line, d.name, text))

    def error(self, d: Directive, text: str) -> None:
        self.out.errors.append(Message(d.file, d.line, d.name, text))

    def reading(self, d: Directive, read: Callable[[], object]) -> None:
        """Run C{read} for C{d}; a value it cannot take is an error naming C{d}."""
        try:
            read()
        except BadValueError as e:
            self.error(d, str(e))

    def mark(self, table: dict[str, Any], d: Directive) -> dict[str, Any]:
        """Remember that C{table} came from C{d} (for its comment)."""
        self.out.sources[id(table)] = origin(d)
        return table


def onOff(converter: Lines, d: Directive) -> bool:
    value = (d.args or ("",))[0].lower()
    if value not in ("on", "off"):
        converter.error(d, "expected On or Off")
    return value == "on"


class BadValueError(ValueError):
    """A directive's value that is not what the directive takes."""


# Apache's time units (ap_timeout_parameter_parse), in seconds.
_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "mi": 60.0, "h": 3600.0}


def seconds(value: str) -> float:
    """A time as Apache writes it: 30, 1.5, 500ms, 2mi, 1h.

    :raise BadValueError: when it is not one."""
    number = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|mi|h)?", value.strip())
    if number is None:
        raise BadValueError(f"{value!r}: expected a time like 30, 500ms or 2mi")
    return float(number.group(1)) * _UNITS[number.group(2) or ""]


def count(value: str) -> int:
    """A whole number of at least 0.

    :raise BadValueError: when it is not one."""
    if not value.strip().isdigit():
        raise BadValueError(f"{value!r}: expected a whole number")
    return int(value)


def mergedHeaders(*tables: dict[str, Any]) -> dict[str, Any]:
    """
    Header-directive tables as one, a copy: later tables' C{set} names win,
    their lists (C{unset}, C{add}, ...) come after the earlier ones'.
    """
    merged: dict[str, Any] = {}
    for directives in tables:
        for kind, value in directives.items():
            if isinstance(value, dict):
                merged.setdefault(kind, {}).update(value)
            else:
                merged.setdefault(kind, []).extend(value)
    return merged
