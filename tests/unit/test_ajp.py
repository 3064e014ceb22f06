"""
AJP13 as bytes (C{twisted_proxy.core.ajp}): requests written field by field
as the protocol reference lays them out, and the container's messages read
back from bytes built the same way, in any pieces, with every malformed
case refused.
"""

from __future__ import annotations

import struct

import pytest

from twisted_proxy.core.ajp import (
    CPING,
    END_OF_BODY,
    MAX_BODY_CHUNK,
    MAX_PACKET,
    AJPError,
    ForwardAttributes,
    bodyPacket,
    forwardRequest,
)
from twisted_proxy.core.ajpreply import (
    BodyChunk,
    CPong,
    EndResponse,
    GetBodyChunk,
    ResponseHead,
    ResponseReader,
)


def s(value: bytes) -> bytes:
    """An AJP string: 2-byte length, the bytes, a NUL."""
    return struct.pack("!H", len(value)) + value + b"\x00"


def i(value: int) -> bytes:
    return struct.pack("!H", value)


def test_forwardRequestFieldByField() -> None:
    """A GET with coded and named headers and the standard attributes."""
    packet = forwardRequest(
        b"GET",
        b"HTTP/1.1",
        b"/app/page",
        b"192.0.2.7",
        b"www.example.test",
        443,
        True,
        [
            (b"Host", b"www.example.test"),
            (b"Cookie", b"JSESSIONID=abc.node1"),
            (b"X-Custom", b"yes"),
        ],
        ForwardAttributes(
            queryString=b"a=1&b=2",
            route=b"node1",
            secret=b"s3cret",
            remotePort=50000,
            sslCipher=b"TLS_AES_128_GCM_SHA256",
            sslKeySize=128,
            sslProtocol=b"TLSv1.3",
        ),
    )
    body = (
        b"\x02\x02"
        + s(b"HTTP/1.1")
        + s(b"/app/page")
        + s(b"192.0.2.7")
        + s(b"192.0.2.7")
        + s(b"www.example.test")
        + i(443)
        + b"\x01"
        + i(3)
        + i(0xA00B)
        + s(b"www.example.test")
        + i(0xA009)
        + s(b"JSESSIONID=abc.node1")
        + s(b"X-Custom")
        + s(b"yes")
        + b"\x05"
        + s(b"a=1&b=2")
        + b"\x06"
        + s(b"node1")
        + b"\x08"
        + s(b"TLS_AES_128_GCM_SHA256")
        + b"\x0b"
        + i(128)
        + b"\x0a"
        + s(b"AJP_REMOTE_PORT")
        + s(b"50000")
        + b"\x0a"
        + s(b"AJP_SSL_PROTOCOL")
        + s(b"TLSv1.3")
        + b"\x0c"
        + s(b"s3cret")
        + b"\xff"
    )
    assert packet == b"\x12\x34" + i(len(body)) + body


def test_methodsCodedOrStored() -> None:
    """Known methods by code; another is 0xFF with the req_method attribute."""
    assert (
        forwardRequest(b"POST", b"HTTP/1.1", b"/", b"a", b"h", 80, False, [])[4:6]
        == b"\x02\x04"
    )
    odd = forwardRequest(b"PURGE", b"HTTP/1.1", b"/", b"a", b"h", 80, False, [])
    assert odd[4:6] == b"\x02\xff"
    assert odd.endswith(b"\x0d" + s(b"PURGE") + b"\xff")


def test_tooLargeOrNULRefused() -> None:
    with pytest.raises(AJPError, match="more than 8192"):
        forwardRequest(
            b"GET", b"HTTP/1.1", b"/", b"a", b"h", 80, False, [(b"X", b"v" * 9000)]
        )
    with pytest.raises(AJPError, match="NUL"):
        forwardRequest(b"GET", b"HTTP/1.1", b"/\x00", b"a", b"h", 80, False, [])


def test_bodyPackets() -> None:
    """Each body packet: the chunk's length, then the chunk; an empty one ends."""
    assert bodyPacket(b"hello") == b"\x12\x34\x00\x07\x00\x05hello"
    full = bodyPacket(b"x" * MAX_BODY_CHUNK)
    assert len(full) == MAX_PACKET
    with pytest.raises(AJPError):
        bodyPacket(b"x" * (MAX_BODY_CHUNK + 1))
    with pytest.raises(AJPError):
        bodyPacket(b"")
    assert END_OF_BODY == b"\x12\x34\x00\x00"
    assert CPING == b"\x12\x34\x00\x01\x0a"


def packet(body: bytes) -> bytes:
    return b"AB" + i(len(body)) + body


HEAD = packet(
    b"\x04"
    + i(200)
    + s(b"OK")
    + i(3)
    + i(0xA001)
    + s(b"text/plain")
    + i(0xA007)
    + s(b"JSESSIONID=abc.node1; Path=/")
    + s(b"X-Powered-By")
    + s(b"JSP")
)
CHUNK = packet(b"\x03" + i(5) + b"hello" + b"\x00")
END = packet(b"\x05\x01")


def test_aResponseRead() -> None:
    """Head, a chunk (with Tomcat's trailing NUL), the end with reuse."""
    reader = ResponseReader()
    assert reader.feed(HEAD + CHUNK + END) == [
        ResponseHead(
            200,
            b"OK",
            [
                (b"Content-Type", b"text/plain"),
                (b"Set-Cookie", b"JSESSIONID=abc.node1; Path=/"),
                (b"X-Powered-By", b"JSP"),
            ],
        ),
        BodyChunk(b"hello"),
        EndResponse(True),
    ]
    assert reader.pending == 0


@pytest.mark.parametrize("cut", range(1, len(HEAD + CHUNK + END)))
def test_anySplit(cut: int) -> None:
    """The same messages whatever the pieces."""
    data = HEAD + CHUNK + END
    reader = ResponseReader()
    messages = reader.feed(data[:cut]) + reader.feed(data[cut:])
    assert [type(m) for m in messages] == [ResponseHead, BodyChunk, EndResponse]


def test_getBodyChunkAndCPong() -> None:
    reader = ResponseReader()
    assert reader.feed(packet(b"\x06" + i(8186)) + packet(b"\x09")) == [
        GetBodyChunk(8186),
        CPong(),
    ]
    assert reader.feed(packet(b"\x05\x00")) == [EndResponse(False)]


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x34\x00\x01\x09",
        b"AB\x00\x00",
        b"AB\x20\x00",
        packet(b"\x07"),
        packet(b"\x05\x02"),
        packet(b"\x05\x01\x00"),
        packet(b"\x06" + i(1) + b"x"),
        packet(b"\x03" + i(10) + b"short"),
        packet(b"\x03" + i(2) + b"ab" + b"\x01"),
        packet(b"\x03" + i(2) + b"ab" + b"\x00\x00"),
        packet(b"\x04" + i(200) + i(2) + b"OK"),
        packet(b"\x04" + i(99) + s(b"X") + i(0)),
        packet(b"\x04" + i(200) + s(b"OK") + i(1) + i(0xA0FF) + s(b"v")),
        packet(b"\x04" + i(200) + s(b"OK") + i(1) + s(b"") + s(b"v")),
        packet(b"\x04" + i(200) + s(b"OK") + i(1) + s(b"X") + b"\xff\xff"),
        packet(b"\x04" + i(200) + s(b"OK") + i(2) + s(b"X") + s(b"v")),
        packet(b"\x04" + i(200) + s(b"OK") + i(0) + b"extra"),
    ],
)
def test_malformedRefused(data: bytes) -> None:
    """Wrong magic, sizes, codes, strings or leftovers: an error, never a guess."""
    with pytest.raises(AJPError):
        ResponseReader().feed(data)
