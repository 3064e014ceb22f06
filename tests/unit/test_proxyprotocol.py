"""
The PROXY protocol header, both versions (C{twisted_proxy.core.proxyprotocol}),
against the examples of HAProxy's specification.
"""

from __future__ import annotations

import pytest

from twisted_proxy.core.proxyprotocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    encodeV1,
    encodeV2,
    parseHeader,
)


def test_v1() -> None:
    """Headers like the specification's examples, written and read back."""
    header = encodeV1(("198.51.100.1", 56324), ("198.51.100.11", 443))
    assert header == b"PROXY TCP4 198.51.100.1 198.51.100.11 56324 443\r\n"
    assert parseHeader(header + b"GET /") == ProxyHeader(
        ("198.51.100.1", 56324), ("198.51.100.11", 443), len(header)
    )
    six = encodeV1(("2001:db8::1", 1), ("::1", 6379))
    assert six == b"PROXY TCP6 2001:db8::1 ::1 1 6379\r\n"
    assert parseHeader(six) == ProxyHeader(("2001:db8::1", 1), ("::1", 6379), len(six))
    assert encodeV1(("-", 0), ("127.0.0.1", 1)) == b"PROXY UNKNOWN\r\n"
    assert parseHeader(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nx") == ProxyHeader(
        None, None, 31
    )


def test_v2() -> None:
    """Version 2 over IPv4 and IPv6, written and read back; LOCAL has no address."""
    header = encodeV2(("203.0.113.7", 40000), ("203.0.113.1", 5432))
    assert header[:12] == V2_SIGNATURE
    assert header[12:16] == b"\x21\x11\x00\x0c"
    assert len(header) == 28
    assert parseHeader(header + b"rest") == ProxyHeader(
        ("203.0.113.7", 40000), ("203.0.113.1", 5432), 28
    )
    six = encodeV2(("2001:db8::7", 1), ("2001:db8::1", 2))
    assert six[12:16] == b"\x21\x21\x00\x24"
    assert parseHeader(six) == ProxyHeader(("2001:db8::7", 1), ("2001:db8::1", 2), 52)
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parseHeader(local) == ProxyHeader(None, None, 16)
    assert encodeV2(("-", 0), ("203.0.113.1", 1)) == local
    # TLVs after the addresses are skipped.
    withTLV = V2_SIGNATURE + b"\x21\x11\x00\x11" + header[16:] + b"\x04\x00\x02ab"
    assert parseHeader(withTLV + b"data") == ProxyHeader(
        ("203.0.113.7", 40000), ("203.0.113.1", 5432), 33
    )


@pytest.mark.parametrize("cut", range(0, 28))
def test_v2NeedsMore(cut: int) -> None:
    """Any prefix of a valid header asks for more."""
    header = encodeV2(("203.0.113.7", 40000), ("203.0.113.1", 5432))
    assert parseHeader(header[:cut]) is None


@pytest.mark.parametrize("cut", range(0, 47))
def test_v1NeedsMore(cut: int) -> None:
    header = encodeV1(("198.51.100.1", 56324), ("198.51.100.11", 443))
    assert parseHeader(header[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"x" * 120,
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12,
        V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,
        V2_SIGNATURE + b"\x21\x11\xff\xff",
        b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x00",
    ],
)
def test_notAHeader(data: bytes) -> None:
    """Anything else is refused, never waited for."""
    with pytest.raises(ProxyProtocolError):
        parseHeader(data)
