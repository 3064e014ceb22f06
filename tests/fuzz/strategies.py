"""Hypothesis strategies: seed inputs mutated the way a byte-level fuzzer would."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes]) -> bytes:
    """
    One of C{seeds}, changed a few times over: C{tokens} or random bytes
    inserted, ranges deleted, duplicated or spliced in from another seed, bytes
    replaced, lines dropped, repeated or swapped. Shrinks towards the first
    seed unchanged.
    """
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        operation = draw(st.integers(0, 6))
        if operation == 6:
            data = bytearray(draw(_lineMutation(bytes(data))))
            continue
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 16)))
        if operation == 0:
            data[start:start] = draw(st.sampled_from(tokens))
        elif operation == 1:
            data[start:start] = draw(st.binary(min_size=1, max_size=8))
        elif operation == 2:
            del data[start:end]
        elif operation == 3:
            data[start:start] = data[start:end] * draw(st.integers(1, 4))
        elif operation == 4:
            other = draw(st.sampled_from(seeds))
            at = draw(st.integers(0, len(other)))
            data[start:end] = other[at : at + draw(st.integers(0, 32))]
        elif start < len(data):
            data[start] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def _lineMutation(draw: st.DrawFn, data: bytes) -> bytes:
    """C{data} with one line (LF-terminated) dropped, repeated or swapped."""
    lines = data.splitlines(keepends=True)
    if not lines:
        return data
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    how = draw(st.integers(0, 2))
    if how == 0:
        del lines[i]
    elif how == 1:
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


def fuzzedBytes(
    seeds: Sequence[bytes], tokens: Sequence[bytes]
) -> st.SearchStrategy[bytes]:
    """Mostly mutated seeds, some plain random bytes."""
    return st.one_of(mutated(seeds, tokens), st.binary(max_size=256))


@st.composite
def withCuts(
    draw: st.DrawFn, data: st.SearchStrategy[bytes]
) -> tuple[bytes, list[int]]:
    """Bytes drawn from C{data}, and points at which to cut them."""
    drawn = draw(data)
    cuts = draw(st.lists(st.integers(0, len(drawn)), max_size=8))
    return drawn, cuts
