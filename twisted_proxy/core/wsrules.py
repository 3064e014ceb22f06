"""
The WebSocket bridge's decisions, on plain values: which requests are
upgrades, which handshakes are refused before a backend is asked, what the
backend's handshake carries, and what a close on one leg becomes on the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

Pairs = Sequence[tuple[bytes, bytes]]

# Close codes an endpoint may send (RFC 6455 7.4, IANA registry): these are
# carried across as they are. 1005, 1006 and 1015 are never sent.
_SENDABLE = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

# What each leg negotiates for itself, or what is hop-by-hop: never copied
# from the client's handshake into the backend's.
_PER_LEG = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"content-length",
        b"sec-websocket-key",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"origin",
        # Autobahn's client sends its own.
        b"pragma",
        b"cache-control",
        b"user-agent",
    }
)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


def _tokens(pairs: Pairs, name: bytes) -> list[bytes]:
    found: list[bytes] = []
    for key, value in pairs:
        if key.lower() == name:
            found.extend(t.strip().lower() for t in value.split(b","))
    return found


def _last(pairs: Pairs, name: bytes) -> bytes | None:
    value = None
    for key, v in pairs:
        if key.lower() == name:
            value = v
    return value


def isUpgrade(method: bytes, pairs: Pairs) -> bool:
    """A GET asking to switch to the WebSocket protocol (RFC 6455 4.1)."""
    return (
        method == b"GET"
        and b"websocket" in _tokens(pairs, b"upgrade")
        and b"upgrade" in _tokens(pairs, b"connection")
    )


def handshakeProblem(
    pairs: Pairs,
) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
    """
    Why the client's opening handshake cannot go on, before any backend is
    asked: (status, message, extra response headers); None when it can.
    """
    versions = _tokens(pairs, b"sec-websocket-version")
    if versions != [b"13"]:
        return (
            426,
            "WebSocket version 13 required",
            [(b"Sec-WebSocket-Version", b"13")],
        )
    key = _last(pairs, b"sec-websocket-key")
    try:
        valid = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return 400, "missing or malformed Sec-WebSocket-Key", []
    return None


def offeredProtocols(pairs: Pairs) -> list[str]:
    """The subprotocols the client offers, in its order, as it spelled them."""
    found: list[str] = []
    for key, value in pairs:
        if key.lower() == b"sec-websocket-protocol":
            found.extend(
                t.strip().decode("ascii", "replace") for t in value.split(b",")
            )
    return [p for p in found if p]


def backendHandshake(
    pairs: Pairs,
) -> tuple[dict[str, str], str | None, list[str]]:
    """
    What the backend's opening handshake carries from the client's (already
    rewritten for the backend: X-Forwarded-*, configured headers): the other
    headers (repeated ones joined, cookies with C{"; "}), the Origin, and the
    offered subprotocols (case kept).
    """
    headers: dict[str, str] = {}
    names: dict[str, str] = {}
    for key, value in pairs:
        lower = key.lower()
        if lower in _PER_LEG:
            continue
        text = value.decode("latin-1")
        name = key.decode("latin-1")
        known = names.get(name.lower())
        if known is None:
            names[name.lower()] = name
            headers[name] = text
        else:
            joiner = "; " if lower == b"cookie" else ", "
            headers[known] = headers[known] + joiner + text
    origin = _last(pairs, b"origin")
    return (
        headers,
        origin.decode("latin-1") if origin is not None else None,
        offeredProtocols(pairs),
    )


_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def switchingResponse(
    pairs: Pairs,
    protocol: str | None,
    server: bytes | None,
    cookie: bytes | None,
) -> bytes:
    """
    The 101 that opens the client's WebSocket (RFC 6455 4.2.2), for a
    handshake that passed L{handshakeProblem}: the accept key for its
    Sec-WebSocket-Key, the subprotocol the backend chose, the Server
    header, and the sticky cookie when one is due. No extension is taken.
    """
    key = (_last(pairs, b"sec-websocket-key") or b"").strip()
    accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
    lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
    if server:
        lines.append(b"Server: %s\r\n" % server)
    lines.append(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
    lines.append(b"Sec-WebSocket-Accept: %s\r\n" % accept)
    if protocol:
        lines.append(b"Sec-WebSocket-Protocol: %s\r\n" % protocol.encode("latin-1"))
    if cookie:
        lines.append(b"Set-Cookie: %s\r\n" % cookie)
    lines.append(b"\r\n")
    return b"".join(lines)


def closeForPeer(
    code: int | None, reason: str | None, clean: bool, fromBackend: bool
) -> tuple[int | None, str | None]:
    """
    What the other leg is closed with when one leg closes with C{code} and
    C{reason}: the same when it may be sent; nothing when the close had no
    code; for an abnormal end (no close frame, 1006, 1015), 1011 to a
    client whose backend went away, 1001 to a backend whose client did.
    """
    if clean and code is None:
        return None, None
    if clean and code is not None and (code in _SENDABLE or 3000 <= code <= 4999):
        return code, reason
    if fromBackend:
        return CLOSE_INTERNAL_ERROR, "backend went away"
    return CLOSE_GOING_AWAY, "client went away"


__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_TOO_BIG",
    "backendHandshake",
    "closeForPeer",
    "handshakeProblem",
    "isUpgrade",
    "offeredProtocols",
    "switchingResponse",
]
