"""
A request the proxy answers itself (an admin page), as plain values, and
its answer: what the admin handlers take and give, so that they are pure and
the front end that serves them is the only part that meets a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LocalRequest",
    "LocalResponse",
    "htmlPage",
    "readOnlyRefusal",
    "textResponse",
]


@dataclass(frozen=True)
class LocalRequest:
    """
    One request for a handler route, its body read whole.

    :ivar path: the path below the route's own (C{b"/"} at the route),
        still percent-encoded.
    :ivar origin: how the client reached the proxy, as a browser's C{Origin}
        names it (C{"https://proxy.example.test:8443"}).
    """

    method: bytes
    path: bytes
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    client: str = ""
    origin: str = ""

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header C{name} (any case), if it was sent."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


@dataclass(frozen=True)
class LocalResponse:
    """A handler's answer: status, headers (besides the proxy's own) and body."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


def textResponse(status: int, message: str) -> LocalResponse:
    """A short plain-text answer (an error, a refusal)."""
    return LocalResponse(
        status,
        (message + "\n").encode("utf-8"),
        ((b"Content-Type", b"text/plain; charset=utf-8"),),
    )


def readOnlyRefusal(request: LocalRequest) -> LocalResponse | None:
    """
    What a read-only page answers instead of itself: 404 below its path,
    405 (with C{Allow}) for a method other than GET or HEAD; else C{None}.
    """
    if request.path.strip(b"/"):
        return textResponse(404, "no such page")
    if request.method not in (b"GET", b"HEAD"):
        return LocalResponse(
            405,
            b"method not allowed here\n",
            ((b"Allow", b"GET, HEAD"), (b"Content-Type", b"text/plain")),
        )
    return None


def htmlPage(title: str, body: str) -> LocalResponse:
    """
    A page of the proxy's own: C{body} (HTML, escaped by the caller) under
    C{title}, never cached, allowed nothing but itself (no script, no frame).
    """
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{title} - twisted-proxy</title></head><body>{body}</body></html>\n"
    )
    return LocalResponse(
        200,
        page.encode("utf-8"),
        (
            (b"Content-Type", b"text/html; charset=utf-8"),
            (b"Cache-Control", b"no-store"),
            (b"Content-Security-Policy", b"default-src 'none'"),
        ),
    )
