"""
HTTP/2 frames as the tests' own clients see them: GOAWAY frames taken out of
a byte stream (the h2 library stops reading after the first, the tests want
to see every one).
"""

from __future__ import annotations

_GOAWAY = 0x7


def takeGoAways(buffer: bytes) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """
    Split C{buffer}: (whole frames other than GOAWAY, the incomplete rest,
    each GOAWAY's (last stream ID, error code)).
    """
    passed = []
    goaways = []
    while len(buffer) >= 9:
        size = 9 + int.from_bytes(buffer[:3], "big")
        if len(buffer) < size:
            break
        frame, buffer = buffer[:size], buffer[size:]
        if frame[3] == _GOAWAY:
            last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
            goaways.append((last, int.from_bytes(frame[13:17], "big")))
        else:
            passed.append(frame)
    return b"".join(passed), buffer, goaways
