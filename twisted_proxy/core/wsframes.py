"""
WebSocket frames as a relay sees them (RFC 6455 section 5), on plain bytes:
one direction's stream read frame by frame from the headers alone, so data
frames go on as the bytes they came in (still masked from a client) while
their framing, sizes and order are checked, and control frames are held
whole for the relay to decide on. Also the few frames the relay writes
itself: its pings, and closes.

Text messages are checked for UTF-8 as they pass (unmasked for the check
only, a few bytes of decoder state kept between reads), so an endpoint that
does not check its peer's text gets none that is invalid.
"""

from __future__ import annotations

import codecs
import struct

__all__ = [
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "Control",
    "FrameReader",
    "closePayload",
    "encodeFrame",
    "readClose",
]

OP_CONTINUATION = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_TOO_BIG = 1009

# Close codes a close frame may carry (RFC 6455 7.4.1 and the IANA registry);
# 1004, 1005, 1006 and 1015 never appear on the wire.
_VALID_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


_utf8 = codecs.getincrementaldecoder("utf-8")


class Control:
    """A whole control frame: opcode, payload (unmasked), its bytes as they came."""

    __slots__ = ("opcode", "payload", "raw")

    def __init__(self, opcode: int, payload: bytes, raw: bytes) -> None:
        self.opcode = opcode
        self.payload = payload
        self.raw = raw

    def __repr__(self) -> str:
        return f"Control({self.opcode}, {self.payload!r})"


# Each byte XOR k, for every k: four translations unmask a long payload.
_XOR = [bytes(i ^ k for i in range(256)) for k in range(256)]


def _unmask(mask: bytes, payload: bytes) -> bytes:
    """C{payload} XOR the four bytes of C{mask}, repeated (RFC 6455 5.3)."""
    size = len(payload)
    if size <= 2048:
        if not size:
            return payload
        repeated = (mask * (size // 4 + 1))[:size]
        value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
        return value.to_bytes(size, "big")
    out = bytearray(payload)
    for i in range(4):
        out[i::4] = payload[i::4].translate(_XOR[mask[i]])
    return bytes(out)


def readClose(
    payload: bytes,
) -> tuple[int | None, str | None, tuple[int, str] | None]:
    """
    A close frame's payload (unmasked), read: C{(code, reason, None)}, with
    C{None} for a code and reason it does not have; or C{(None, None,
    (errorCode, why))} when it is malformed (one byte long, a code that may
    not be sent, a reason that is not UTF-8).
    """
    if not payload:
        return None, None, None
    if len(payload) == 1:
        return None, None, (CLOSE_PROTOCOL_ERROR, "one-byte close payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CODES and not 3000 <= code <= 4999:
        return None, None, (CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return None, None, (CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8")
    return code, reason, None


def closePayload(code: int | None, reason: str | None) -> bytes:
    """A close frame's payload: the code and up to 123 bytes of reason."""
    if code is None:
        return b""
    encoded = (reason or "").encode("utf-8")[:123]
    # Never cut a character in two.
    encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded


def encodeFrame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame, masked with the four bytes C{mask} when given."""
    length = len(payload)
    first = 0x80 | opcode
    flag = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, flag | length))
    elif length < 65536:
        head = _HEAD16.pack(first, flag | 126, length)
    else:
        head = _HEAD64.pack(first, flag | 127, length)
    if mask is None:
        return head + payload
    return head + mask + _unmask(mask, payload)


class FrameReader:
    """
    One direction of a WebSocket read frame by frame: L{feed} takes bytes as
    they arrive and returns what goes on, in order: runs of data-frame bytes
    (as they came, a frame's payload forwarded as it arrives) and whole
    L{Control} frames. A header, or a control frame, cut by a read is held
    until the rest comes, so the bytes returned always end at a frame's end
    or inside a data frame's payload (L{atBoundary} says which).

    A frame against the rules stops the relaying: L{failure} is then
    C{(code, reason)} (1002; 1007 for text that is not UTF-8, found before
    the bytes go on; 1009 for a message over C{limit} bytes, found from the
    headers before any of its payload goes on), and from then on
    frames are skipped by their lengths until a close frame, the answer to
    the close the failure calls for, which is returned. Everything after a
    close frame, even a malformed one, is dropped (L{closed}).
    """

    __slots__ = (
        "_cut",
        "_decoder",
        "_discarding",
        "_finalFrame",
        "_held",
        "_inMessage",
        "_key",
        "_left",
        "_messageBytes",
        "_offset",
        "closed",
        "failure",
        "frames",
        "limit",
        "masked",
        "messages",
    )

    def __init__(self, masked: bool, limit: int) -> None:
        # Frames from a client are masked; from a server, never.
        self.masked = masked
        self.limit = limit
        self.failure: tuple[int, str] | None = None
        self.closed = False
        # Data frames begun, and messages ended, so far.
        self.frames = 0
        self.messages = 0
        self._held = b""
        self._left = 0
        self._inMessage = False
        self._messageBytes = 0
        self._discarding = False
        # The forwarded bytes stop inside a frame that will never be whole.
        self._cut = False
        # The current text message's UTF-8 decoder (None: binary, or none);
        # the current frame's mask, payload bytes checked, and whether it
        # ends its message.
        self._decoder: codecs.IncrementalDecoder | None = None
        self._key = b""
        self._offset = 0
        self._finalFrame = False

    @property
    def atBoundary(self) -> bool:
        """Whether what went on so far ends at a frame's end."""
        if self._discarding:
            return not self._cut
        return self._left == 0

    def _text(self, payload: bytes, final: bool) -> bool:
        """Whether C{payload}, the current frame's next bytes, keeps the text UTF-8."""
        decoder = self._decoder
        assert decoder is not None
        key = self._key
        if key:
            turn = self._offset % 4
            payload = _unmask(key[turn:] + key[:turn], payload)
        self._offset += len(payload)
        try:
            decoder.decode(payload, final)
        except UnicodeDecodeError:
            return False
        if final:
            self._decoder = None
        return True

    def _fail(self, code: int, reason: str, closing: bool = False) -> None:
        self.failure = (code, reason)
        # A bad close frame is still the peer's close: nothing comes after it.
        self.closed = closing
        self._discarding = not closing
        self._inMessage = False
        self._decoder = None
        self._held = b""
        self._left = 0

    def _discard(self, data: bytes) -> list[bytes | Control]:
        """After a failure: skip frames by their lengths, up to a close."""
        data = self._held + data
        self._held = b""
        n = len(data)
        pos = self._left
        if pos >= n:
            self._left = pos - n
            return []
        self._left = 0
        while n - pos >= 2:
            second = data[pos + 1]
            length = second & 0x7F
            head = 2 + (4 if second & 0x80 else 0)
            if length == 126:
                head += 2
            elif length == 127:
                head += 8
            if n - pos < head:
                break
            if length == 126:
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            end = pos + head + length
            if data[pos] & 0x0F == OP_CLOSE and length <= 125:
                if end > n:
                    break
                payload = data[pos + head : end]
                if second & 0x80:
                    payload = _unmask(data[pos + head - 4 : pos + head], payload)
                self.closed = True
                return [Control(OP_CLOSE, payload, data[pos:end])]
            if end > n:
                self._left = end - n
                return []
            pos = end
        self._held = data[pos:]
        return []

    def feed(self, data: bytes) -> list[bytes | Control]:
        """What goes on, in order, now that C{data} came."""
        if self.closed:
            return []
        if self._discarding:
            return self._discard(data)
        out: list[bytes | Control] = []
        if self._held:
            data = self._held + data
            self._held = b""
        n = len(data)
        pos = self._left
        if pos:
            if self._decoder is not None and not self._text(
                data[:pos], self._finalFrame and pos <= n
            ):
                # Part of the frame went on already: it is cut.
                self._fail(CLOSE_INVALID_PAYLOAD, "text is not UTF-8")
                self._cut = True
                self._left = pos
                return self._discard(data)
            if pos >= n:
                self._left = pos - n
                return [data]
            self._left = 0
        start = 0
        wantMask = 0x80 if self.masked else 0
        while pos < n:
            if n - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                head = 10
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    self._fail(CLOSE_PROTOCOL_ERROR, "frame length over 2**63")
                    break
            if second & 0x80:
                head += 4
            if n - pos < head:
                break
            if second & 0x80 != wantMask:
                self._fail(
                    CLOSE_PROTOCOL_ERROR,
                    "unmasked frame from a client"
                    if self.masked
                    else "masked frame from a server",
                )
                break
            if first & 0x70:
                self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set")
                break
            opcode = first & 0x0F
            fin = first & 0x80
            if opcode >= 8:
                if opcode > OP_PONG:
                    self._fail(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
                    break
                if not fin or length > 125:
                    self._fail(
                        CLOSE_PROTOCOL_ERROR,
                        "control frame fragmented or too long",
                        closing=opcode == OP_CLOSE,
                    )
                    break
                end = pos + head + length
                if end > n:
                    break
                if start < pos:
                    out.append(data[start:pos])
                payload = data[pos + head : end]
                if second & 0x80:
                    payload = _unmask(data[pos + head - 4 : pos + head], payload)
                out.append(Control(opcode, payload, data[pos:end]))
                pos = start = end
                if opcode == OP_CLOSE:
                    self.closed = True
                    return out
                continue
            if opcode == OP_CONTINUATION:
                if not self._inMessage:
                    self._fail(CLOSE_PROTOCOL_ERROR, "continuation outside a message")
                    break
                total = self._messageBytes + length
            elif opcode <= OP_BINARY:
                if self._inMessage:
                    self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a message")
                    break
                total = length
            else:
                self._fail(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
                break
            if total > self.limit:
                self._fail(CLOSE_TOO_BIG, "message too big")
                break
            end = pos + head + length
            if opcode == OP_TEXT and fin and end <= n:
                # A whole message in one frame, here whole: checked at once.
                self._decoder = None
                payload = data[pos + head : end]
                if second & 0x80:
                    payload = _unmask(data[pos + head - 4 : pos + head], payload)
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(CLOSE_INVALID_PAYLOAD, "text is not UTF-8")
                    break
            elif opcode == OP_TEXT:
                self._decoder = _utf8()
            elif opcode == OP_BINARY:
                self._decoder = None
            if self._decoder is not None:
                self._key = data[pos + head - 4 : pos + head] if second & 0x80 else b""
                self._offset = 0
                self._finalFrame = bool(fin)
                if not self._text(data[pos + head : end], bool(fin) and end <= n):
                    # Nothing of the frame went on: skipped whole.
                    self._fail(CLOSE_INVALID_PAYLOAD, "text is not UTF-8")
                    self._left = 0
                    break
            self.frames += 1
            if fin:
                self._inMessage = False
                self._messageBytes = 0
                self.messages += 1
            else:
                self._inMessage = True
                self._messageBytes = total
            if end > n:
                self._left = end - n
                pos = n
                break
            pos = end
        if start < pos:
            out.append(data[start:pos])
        if pos < n and not self.closed:
            self._held = data[pos:]
            if self._discarding:
                # From the failed frame on, skipped; a close may follow it.
                out.extend(self._discard(b""))
        return out
