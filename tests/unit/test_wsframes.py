"""
WebSocket frames read from their headers: what goes on as it came, what is
held, what breaks the rules, and the frames the relay writes itself.
"""

from __future__ import annotations

import struct

import pytest

from twisted_proxy.core.wsframes import (
    OP_CLOSE,
    OP_PING,
    Control,
    FrameReader,
    closePayload,
    encodeFrame,
    readClose,
)

MASK = b"\x11\x22\x33\x44"


def frame(
    payload: bytes, opcode: int = 2, fin: bool = True, mask: bytes | None = MASK
) -> bytes:
    """A frame as a peer sends it (masked by default, as from a client)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    flag = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, flag | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, flag | 126, length)
    else:
        head = struct.pack("!BBQ", first, flag | 127, length)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def joined(out: list[bytes | Control]) -> bytes:
    """The data bytes of C{out}, checking it holds nothing else."""
    assert all(isinstance(item, bytes) for item in out)
    return b"".join(item for item in out if isinstance(item, bytes))


def test_dataFramesGoOnAsTheyCame() -> None:
    """Several whole frames in one read go on as one run of the same bytes."""
    reader = FrameReader(masked=True, limit=1 << 20)
    data = frame(b"one", 1) + frame(b"two") + frame(b"x" * 300)
    assert reader.feed(data) == [data]
    assert (reader.frames, reader.messages, reader.atBoundary) == (3, 3, True)


def test_everySplitGivesTheSameBytes() -> None:
    """Cut anywhere, the frames go on whole and in order; a cut header is held."""
    data = frame(b"a" * 200) + frame(b"b" * 70000, 1) + frame(b"", 2)
    for cut in range(1, len(data), 97):
        reader = FrameReader(masked=True, limit=1 << 20)
        first = joined(reader.feed(data[:cut]))
        second = joined(reader.feed(data[cut:]))
        assert first + second == data
        assert reader.atBoundary
        assert reader.messages == 3


def test_aCutHeaderIsHeldAndAPayloadIsNot() -> None:
    """Bytes of a header wait for the rest; a payload goes on as it comes."""
    reader = FrameReader(masked=False, limit=1 << 20)
    whole = frame(b"p" * 1000, mask=None)
    assert reader.feed(whole[:3]) == []
    assert joined(reader.feed(whole[3:10])) == whole[:10]
    assert not reader.atBoundary
    assert joined(reader.feed(whole[10:])) == whole[10:]
    assert reader.atBoundary


def test_controlFramesAreHeldWholeAndUnmasked() -> None:
    """A ping between data frames comes out on its own, payload unmasked."""
    reader = FrameReader(masked=True, limit=1 << 20)
    ping = frame(b"are you there", OP_PING)
    data = frame(b"before") + ping + frame(b"after")
    out = reader.feed(data[: len(frame(b"before")) + 5])
    assert joined(out) == frame(b"before")
    out = reader.feed(data[len(frame(b"before")) + 5 :])
    assert isinstance(out[0], Control)
    assert (out[0].opcode, out[0].payload, out[0].raw) == (
        OP_PING,
        b"are you there",
        ping,
    )
    assert out[1:] == [frame(b"after")]


def test_fragmentsCountAsOneMessage() -> None:
    """A fragmented message, a ping inside it, is one message of its sizes."""
    reader = FrameReader(masked=True, limit=10)
    data = (
        frame(b"12345", 1, fin=False)
        + frame(b"", OP_PING)
        + frame(b"6789", 0, fin=False)
        + frame(b"0", 0)
    )
    out = reader.feed(data)
    assert [type(item) for item in out] == [bytes, Control, bytes]
    assert (reader.frames, reader.messages, reader.failure) == (3, 1, None)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (frame(b"x", mask=None), "unmasked frame from a client"),
        (bytes((0xC2, 0x80)) + MASK, "reserved bits set"),
        (frame(b"", 3), "reserved opcode 3"),
        (frame(b"", 11), "reserved opcode 11"),
        (frame(b"x", 0), "continuation outside a message"),
        (frame(b"y", 2), "new message inside a message"),
        (frame(b"x" * 126, OP_PING), "control frame fragmented or too long"),
        (frame(b"", OP_PING, fin=False), "control frame fragmented or too long"),
        (
            struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + MASK,
            "frame length over 2**63",
        ),
    ],
)
def test_framesAgainstTheRulesAre1002(data: bytes, why: str) -> None:
    """A frame against RFC 6455's rules stops the relaying with 1002."""
    reader = FrameReader(masked=True, limit=1 << 20)
    # A fragment begun: only a continuation may follow it.
    good = frame(b"fine") + frame(b"x", 1, fin=False)
    if why == "continuation outside a message":
        good = frame(b"fine")
    out = reader.feed(good + data + frame(b"never"))
    assert out == [good]
    assert reader.failure == (1002, why)


def test_aServerMayNotMask() -> None:
    """From a backend, a masked frame is against the rules."""
    reader = FrameReader(masked=False, limit=100)
    assert reader.feed(frame(b"x")) == []
    assert reader.failure == (1002, "masked frame from a server")


def test_aMessageOverTheLimitIsFoundFromItsHeader() -> None:
    """The frame that takes a message over the limit is refused before its payload."""
    reader = FrameReader(masked=True, limit=8)
    first = frame(b"12345", 1, fin=False)
    big = frame(b"6789", 0)
    assert reader.feed(first + big[:6]) == [first]
    assert reader.failure == (1009, "message too big")


def test_afterAFailureOnlyTheCloseAnswerComesOut() -> None:
    """Frames after a failure are skipped by length until the peer's close."""
    reader = FrameReader(masked=True, limit=8)
    close = frame(struct.pack("!H", 1009), OP_CLOSE)
    data = frame(b"x" * 20) + frame(b"skipped") + close
    assert reader.feed(data[:30]) == []
    assert reader.failure is not None
    reader.failure = None
    out = reader.feed(data[30:])
    assert len(out) == 1
    assert isinstance(out[0], Control)
    assert (out[0].opcode, out[0].payload) == (OP_CLOSE, struct.pack("!H", 1009))
    assert reader.closed


def test_nothingAfterAClose() -> None:
    """Bytes after a close frame are dropped."""
    reader = FrameReader(masked=False, limit=100)
    close = frame(b"", OP_CLOSE, mask=None)
    out = reader.feed(close + frame(b"late", mask=None))
    assert len(out) == 1
    assert reader.closed
    assert reader.feed(frame(b"later", mask=None)) == []


@pytest.mark.parametrize(
    ("payload", "read"),
    [
        (b"", (None, None, None)),
        (struct.pack("!H", 1000) + b"bye", (1000, "bye", None)),
        (struct.pack("!H", 4001), (4001, "", None)),
        (b"\x03", (None, None, (1002, "one-byte close payload"))),
        (
            struct.pack("!H", 1005),
            (None, None, (1002, "close code 1005 may not be sent")),
        ),
        (
            struct.pack("!H", 999),
            (None, None, (1002, "close code 999 may not be sent")),
        ),
        (
            struct.pack("!H", 1000) + b"\xff",
            (None, None, (1007, "close reason is not UTF-8")),
        ),
    ],
)
def test_closePayloads(payload: bytes, read: tuple[object, ...]) -> None:
    """A close's code and reason, or why it is malformed."""
    assert readClose(payload) == read


def test_encodedFramesReadBack() -> None:
    """The relay's own frames, masked or not, of every length form."""
    for size in (0, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        plain = encodeFrame(2, payload)
        assert plain == frame(payload, mask=None)
        assert encodeFrame(2, payload, MASK) == frame(payload)


def test_aCloseReasonIsCutWhole() -> None:
    """A close payload keeps 123 bytes of reason at most, never half a character."""
    payload = closePayload(1001, "é" * 100)
    assert len(payload) == 2 + 122
    assert payload[2:].decode("utf-8") == "é" * 61
    assert closePayload(None, "ignored") == b""


def test_textIsCheckedForUTF8WhereverItIsCut() -> None:
    """Valid text, a character split across frames and reads, goes on whole."""
    text = "héllo wörld €".encode()
    data = (
        frame(text[:2], 1, fin=False)  # "h" and half of "é"
        + frame(text[2:12], 0, fin=False)
        + frame(text[12:], 0)
    )
    for cut in range(1, len(data)):
        reader = FrameReader(masked=True, limit=1 << 20)
        out = joined(reader.feed(data[:cut])) + joined(reader.feed(data[cut:]))
        assert out == data
        assert reader.failure is None


@pytest.mark.parametrize("masked", [True, False])
def test_invalidUTF8InAWholeFrameIs1007(masked: bool) -> None:
    """A text frame that is not UTF-8: 1007, and none of it goes on."""
    reader = FrameReader(masked=masked, limit=1 << 20)
    mask = MASK if masked else None
    good = frame(b"fine", 1, mask=mask)
    bad = frame(b"ab\xff", 1, mask=mask)
    assert reader.feed(good + bad) == [good]
    assert reader.failure == (1007, "text is not UTF-8")
    assert reader.atBoundary


def test_textEndingInsideACharacterIs1007() -> None:
    """A message whose last frame ends halfway through a character."""
    reader = FrameReader(masked=True, limit=1 << 20)
    first = frame("€".encode()[:2], 1, fin=False)
    assert reader.feed(first + frame(b"", 0)) == [first]
    assert reader.failure == (1007, "text is not UTF-8")
    assert reader.atBoundary


def test_invalidUTF8LaterInAFrameCutsIt() -> None:
    """Bad bytes in a later read of a frame already begun: the frame is cut."""
    reader = FrameReader(masked=True, limit=1 << 20)
    whole = frame(b"a" * 200 + b"\xc0\xaf" + b"b" * 50, 1)
    assert joined(reader.feed(whole[:100])) == whole[:100]
    assert reader.feed(whole[100:]) == []
    assert reader.failure == (1007, "text is not UTF-8")
    assert not reader.atBoundary


def test_binaryIsNotChecked() -> None:
    """A binary message goes on whatever its bytes."""
    reader = FrameReader(masked=True, limit=1 << 20)
    data = frame(b"\xff\xfe\xc0", 2)
    assert reader.feed(data) == [data]
    assert reader.failure is None


def test_aMessageOverTheLimitLeavesTheOutputAtABoundary() -> None:
    """Refused from its header, a frame spanning reads is skipped, not cut."""
    reader = FrameReader(masked=False, limit=100)
    big = frame(b"x" * 1000, 2, mask=None)
    assert reader.feed(big[:300]) == []
    assert reader.failure == (1009, "message too big")
    assert reader.atBoundary
    reader.failure = None
    close = frame(b"", OP_CLOSE, mask=None)
    out = reader.feed(big[300:] + close)
    assert [item.opcode for item in out if isinstance(item, Control)] == [OP_CLOSE]
