"""
The WebSocket bridge's decisions on plain values: upgrades, refused
handshakes, the backend's handshake headers, closes carried across.
"""

from __future__ import annotations

import pytest

from twisted_proxy.core.wsrules import (
    backendHandshake,
    closeForPeer,
    handshakeProblem,
    isUpgrade,
    offeredProtocols,
    switchingResponse,
)

KEY = (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")
VERSION = (b"Sec-WebSocket-Version", b"13")
UPGRADE = [(b"Upgrade", b"websocket"), (b"Connection", b"keep-alive, Upgrade")]


def test_upgradeNeedsGetUpgradeAndConnection() -> None:
    """Only a GET with Upgrade: websocket and Connection: upgrade is one."""
    assert isUpgrade(b"GET", UPGRADE)
    assert isUpgrade(b"GET", [(b"UPGRADE", b"WebSocket"), (b"connection", b"upgrade")])
    assert not isUpgrade(b"POST", UPGRADE)
    assert not isUpgrade(b"GET", UPGRADE[:1])
    assert not isUpgrade(b"GET", [(b"Upgrade", b"h2c"), (b"Connection", b"Upgrade")])


def test_goodHandshakeHasNoProblem() -> None:
    """Version 13 and a 16-byte base64 key: go on."""
    assert handshakeProblem([*UPGRADE, KEY, VERSION]) is None


@pytest.mark.parametrize(
    ("pairs", "status"),
    [
        ([KEY], 426),
        ([KEY, (b"Sec-WebSocket-Version", b"8")], 426),
        ([KEY, VERSION, VERSION], 426),
        ([VERSION], 400),
        ([VERSION, (b"Sec-WebSocket-Key", b"short")], 400),
        ([VERSION, (b"Sec-WebSocket-Key", b"!!!notbase64!!!!!!!!!!==")], 400),
    ],
)
def test_badHandshakeRefused(pairs: list[tuple[bytes, bytes]], status: int) -> None:
    """A wrong version gets 426 naming version 13; a bad key gets 400."""
    problem = handshakeProblem(pairs)
    assert problem is not None
    assert problem[0] == status
    if status == 426:
        assert problem[2] == [(b"Sec-WebSocket-Version", b"13")]


def test_offeredProtocolsKeepOrderAndCase() -> None:
    """Subprotocols as the client listed them, across repeated headers."""
    pairs = [
        (b"Sec-WebSocket-Protocol", b"v2.Chat, v1.chat"),
        (b"sec-websocket-protocol", b"mqtt"),
    ]
    assert offeredProtocols(pairs) == ["v2.Chat", "v1.chat", "mqtt"]


def test_backendHandshakeCarriesTheClientsHeaders() -> None:
    """Cookies joined, auth and forwarded headers kept; per-leg ones dropped."""
    pairs = [
        (b"Host", b"proxy.test"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        KEY,
        VERSION,
        (b"Sec-WebSocket-Extensions", b"permessage-deflate"),
        (b"Sec-WebSocket-Protocol", b"chat"),
        (b"Origin", b"https://app.test"),
        (b"Cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"Authorization", b"Bearer t"),
        (b"X-Forwarded-For", b"192.0.2.1"),
        (b"X-Forwarded-For", b"127.0.0.1"),
        (b"User-Agent", b"browser"),
    ]
    headers, origin, protocols = backendHandshake(pairs)
    assert headers == {
        "Cookie": "a=1; b=2",
        "Authorization": "Bearer t",
        "X-Forwarded-For": "192.0.2.1, 127.0.0.1",
    }
    assert origin == "https://app.test"
    assert protocols == ["chat"]


@pytest.mark.parametrize(
    ("code", "reason", "clean", "fromBackend", "expected"),
    [
        (1000, "done", True, True, (1000, "done")),
        (1001, "bye", True, False, (1001, "bye")),
        (1011, "oops", True, True, (1011, "oops")),
        (3000, "app", True, False, (3000, "app")),
        (4999, "", True, True, (4999, "")),
        (None, None, True, False, (None, None)),
        # Never sent as codes: an abnormal end becomes 1011 or 1001.
        (1006, None, False, True, (1011, "backend went away")),
        (None, None, False, False, (1001, "client went away")),
        (1015, None, True, True, (1011, "backend went away")),
        (1005, None, True, False, (1001, "client went away")),
        (2999, "x", True, True, (1011, "backend went away")),
    ],
)
def test_closeCarriedAcross(
    code: int | None,
    reason: str | None,
    clean: bool,
    fromBackend: bool,
    expected: tuple[int | None, str | None],
) -> None:
    """Sendable codes cross as they are; abnormal ends never do."""
    assert closeForPeer(code, reason, clean, fromBackend) == expected


def test_switchingResponseAcceptsTheKey() -> None:
    """The 101: RFC 6455's accept key for the client's key, and what is due."""
    head = switchingResponse(
        [KEY, VERSION, *UPGRADE], "chat.v2", b"twisted-proxy", b"ROUTEID=.a; Path=/"
    )
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert b"Sec-WebSocket-Protocol: chat.v2" in lines
    assert b"Server: twisted-proxy" in lines
    assert b"Set-Cookie: ROUTEID=.a; Path=/" in lines
    assert head.endswith(b"\r\n\r\n")
    bare = switchingResponse([KEY, VERSION, *UPGRADE], None, None, None)
    assert b"Sec-WebSocket-Protocol" not in bare
    assert b"Server" not in bare
    assert b"Set-Cookie" not in bare
