"""
The PROXY protocol (HAProxy's, versions 1 and 2), as pure encoding and
parsing: the header a load balancer puts before a connection's first byte
to say whose connection it is.

A tcp listener sends one to its members when asked (C{proxy_protocol =
"v1"} or C{"v2"}), so a member sees the client's address rather than the
proxy's; and reads one from the sources it trusts (C{accept_proxy_protocol}),
so the client it logs, hashes and passes on is the one the balancer in front
saw. Version 2's TLVs are skipped; a C{LOCAL} command (a health check from
the balancer itself) carries no address, and the connection's own is kept.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "encodeV1",
    "encodeV2",
    "parseHeader",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107
MAX_HEADER = 16 + 216
"""The longest header read: v2's 16 bytes and the address block of AF_UNIX,
its largest; TLVs beyond that are refused."""


class ProxyProtocolError(ValueError):
    """Bytes that are no PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """
    What a header said: the client's address and port and the address it
    reached (None for v1's C{UNKNOWN} or v2's C{LOCAL}), and its length.
    """

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int


def _family(host: str) -> int:
    return ipaddress.ip_address(host).version


def encodeV1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 1 header; C{UNKNOWN} when the two are not IPs of one family."""
    try:
        version = _family(source[0])
        same = version == _family(destination[0])
    except ValueError:
        same = False
    if not same:
        return b"PROXY UNKNOWN\r\n"
    proto = b"TCP4" if version == 4 else b"TCP6"
    return b"PROXY %s %s %s %d %d\r\n" % (
        proto,
        source[0].encode("ascii"),
        destination[0].encode("ascii"),
        source[1],
        destination[1],
    )


def encodeV2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 2 header (C{PROXY} over TCP); C{LOCAL} for non-IP addresses."""
    try:
        src = ipaddress.ip_address(source[0])
        dst = ipaddress.ip_address(destination[0])
    except ValueError:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    if src.version != dst.version:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes((0x21, family)) + struct.pack("!H", len(body)) + body


def parseHeader(data: bytes) -> ProxyHeader | None:
    """
    The header at the start of C{data}, or None when more bytes are needed.
    Raises L{ProxyProtocolError} when the bytes cannot become one.
    """
    if data[:1] == b"\r":
        if len(data) < 16:
            if not V2_SIGNATURE.startswith(data[:12]):
                raise ProxyProtocolError("not a PROXY protocol header")
            return None
        return _parseV2(data)
    if not b"PROXY"[: len(data)] == data[:5]:
        raise ProxyProtocolError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(data) >= _V1_MAX or b"\n" in data[:_V1_MAX]:
            raise ProxyProtocolError("a v1 header longer than 107 bytes")
        return None
    return _parseV1(data[:end], end + 2)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyProtocolError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"bad port {text!r}")
    return port


def _parseV1(line: bytes, length: int) -> ProxyHeader:
    parts = line.split(b" ")
    if parts[:2] == [b"PROXY", b"UNKNOWN"]:
        return ProxyHeader(None, None, length)
    if len(parts) != 6 or parts[0] != b"PROXY" or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("a malformed v1 header")
    version = 4 if parts[1] == b"TCP4" else 6
    hosts = []
    for raw in parts[2:4]:
        try:
            address = ipaddress.ip_address(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ProxyProtocolError(f"bad address {raw!r}") from None
        if address.version != version:
            raise ProxyProtocolError(f"{raw!r} is not {parts[1].decode()}")
        hosts.append(str(address))
    return ProxyHeader((hosts[0], _port(parts[4])), (hosts[1], _port(parts[5])), length)


def _parseV2(data: bytes) -> ProxyHeader | None:
    if data[:12] != V2_SIGNATURE:
        raise ProxyProtocolError("not a PROXY protocol header")
    versionCommand, family = data[12], data[13]
    (size,) = struct.unpack("!H", data[14:16])
    if versionCommand >> 4 != 2 or versionCommand & 0x0F not in (0, 1):
        raise ProxyProtocolError("an unknown v2 version or command")
    if 16 + size > MAX_HEADER:
        raise ProxyProtocolError("a v2 header too long")
    length = 16 + size
    if len(data) < length:
        return None
    if versionCommand & 0x0F == 0:
        # LOCAL: the balancer's own connection (a health check).
        return ProxyHeader(None, None, length)
    block = data[16:length]
    if family == 0x11 and size >= 12:
        src, dst = block[0:4], block[4:8]
        ports = block[8:12]
    elif family == 0x21 and size >= 36:
        src, dst = block[0:16], block[16:32]
        ports = block[32:36]
    elif family >> 4 in (0, 3) or family & 0x0F in (0, 2):
        # UNSPEC, AF_UNIX, or a datagram: no TCP address to take.
        return ProxyHeader(None, None, length)
    else:
        raise ProxyProtocolError("a v2 address block too short for its family")
    sourcePort, destinationPort = struct.unpack("!HH", ports)
    return ProxyHeader(
        (str(ipaddress.ip_address(src)), sourcePort),
        (str(ipaddress.ip_address(dst)), destinationPort),
        length,
    )
