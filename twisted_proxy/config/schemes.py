"""
The one table of backend URL schemes: what each speaks on the wire, its
default port, and whether it is TLS.

``ws://`` and ``wss://`` backends are reached over HTTP/1.1 (plain or TLS) for
the upgrade and for ordinary requests alike, so they map to ``http`` and
``https``; ``ajp://`` backends (servlet containers) speak AJP13. Every module
that needs a default port, a TLS decision or the wire scheme asks here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BACKEND_SCHEMES",
    "Scheme",
    "defaultPort",
    "isTLS",
    "scheme",
    "wireScheme",
]


@dataclass(frozen=True)
class Scheme:
    """One backend URL scheme."""

    name: str
    wire: str
    """What the connection speaks: ``http``, ``https`` or ``ajp``."""
    port: int
    """The port when the URL names none."""
    tls: bool
    websocket: bool

    @property
    def nameBytes(self) -> bytes:
        return self.name.encode("ascii")

    @property
    def wireBytes(self) -> bytes:
        return self.wire.encode("ascii")


BACKEND_SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("http", "http", 80, tls=False, websocket=False),
        Scheme("https", "https", 443, tls=True, websocket=False),
        Scheme("ws", "http", 80, tls=False, websocket=True),
        Scheme("wss", "https", 443, tls=True, websocket=True),
        Scheme("ajp", "ajp", 8009, tls=False, websocket=False),
    )
}


def scheme(name: str | bytes) -> Scheme:
    """
    The scheme called C{name} (case-insensitive).

    :raise KeyError: for a scheme no backend URL may have.
    """
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return BACKEND_SCHEMES[name.lower()]


def defaultPort(name: str | bytes) -> int:
    """The port a URL of scheme C{name} means when it names none."""
    return scheme(name).port


def isTLS(name: str | bytes) -> bool:
    """Whether a backend of scheme C{name} is reached over TLS."""
    return scheme(name).tls


def wireScheme(name: str | bytes) -> str:
    """What a backend of scheme C{name} speaks: ``http``, ``https`` or ``ajp``."""
    return scheme(name).wire
