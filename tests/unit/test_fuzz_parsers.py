"""
Property-based fuzzing of the request-head parser, the chunked decoder and the
response parser, from a corpus of real messages and smuggling probes.

The properties live in L{tests.fuzz.checks}, shared with the atheris harness;
the budgets keep this file to a few seconds.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz import checks
from tests.fuzz.corpus import (
    CHUNKED_BODIES,
    REQUEST_HEADS,
    RESPONSES,
    TOKENS,
)
from tests.fuzz.strategies import fuzzedBytes, withCuts
from twisted_proxy.core.http11 import HTTPError, parseRequestHead
from twisted_proxy.core.response import ResponseParseError, ResponseParser

# The bytes a field may not carry (RFC 9110 5.5): every control but HTAB.
_CONTROLS = [c for c in range(0x20) if c != 0x09] + [0x7F]
_TARGETS = [b"/", b"/a/b?q=1", b"http://example.test/p", b"*", b"/%00"]
_METHODS = st.lists(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"GET+"]), min_size=1, max_size=3
).map(tuple)


# -- request heads ------------------------------------------------------------


@pytest.mark.parametrize("head", REQUEST_HEADS)
def test_requestSeeds(head: bytes) -> None:
    """Every seed request head is refused with a 4xx/5xx or accepted soundly."""
    checks.checkRequestHead(head)


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5",
        b"POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb",
        b"GET / HTTP/1.1\nHost: h",
    ],
)
def test_smugglingProbesRefused(head: bytes) -> None:
    """The classic request-smuggling heads are all refused."""
    with pytest.raises(HTTPError) as raised:
        parseRequestHead(head)
    assert 400 <= raised.value.status <= 599


@settings(max_examples=600, deadline=None)
@given(fuzzedBytes(REQUEST_HEADS, TOKENS["request"]))
def test_requestHeadFuzz(head: bytes) -> None:
    """A mutated request head is refused with a 4xx/5xx or accepted soundly."""
    checks.checkRequestHead(head)


@settings(max_examples=50, deadline=None)
@given(
    target=st.sampled_from(_TARGETS),
    control=st.sampled_from([*_CONTROLS, 0x09]),
    at=st.integers(0, 30),
)
@example(target=b"/a", control=0x01, at=1)
@example(target=b"/a", control=0x0A, at=1)
def test_targetControlCharactersRefused(target: bytes, control: int, at: int) -> None:
    """A request target with any byte 0x00-0x1f or 0x7f in it is refused."""
    at = min(at, len(target))
    bad = target[:at] + bytes([control]) + target[at:]
    with pytest.raises(HTTPError) as raised:
        parseRequestHead(b"GET " + bad + b" HTTP/1.1\r\nHost: h")
    assert 400 <= raised.value.status <= 499


@settings(max_examples=50, deadline=None)
@given(
    name=st.sampled_from([b"X-A", b"Host", b"Transfer-Encoding", b"Content-Length"]),
    value=st.sampled_from([b"1", b"chunked", b"a b"]),
    control=st.sampled_from(_CONTROLS),
    at=st.integers(0, 8),
)
@example(name=b"X-A", value=b"ab", control=0x01, at=1)
@example(name=b"Transfer-Encoding", value=b"chunked", control=0x0B, at=7)
def test_headerValueControlCharactersRefused(
    name: bytes, value: bytes, control: int, at: int
) -> None:
    """A header value with a control byte other than HTAB in it is refused."""
    at = min(at, len(value))
    bad = value[:at] + bytes([control]) + value[at:]
    with pytest.raises(HTTPError) as raised:
        parseRequestHead(b"POST / HTTP/1.1\r\nHost: h\r\n" + name + b": " + bad)
    assert 400 <= raised.value.status <= 499


# -- chunked bodies -----------------------------------------------------------


@pytest.mark.parametrize("body", CHUNKED_BODIES)
def test_chunkedSeeds(body: bytes) -> None:
    """Every seed chunked body decodes the same however it is split."""
    checks.checkChunked(body, checks.cutPoints(body))


@settings(max_examples=500, deadline=None)
@given(withCuts(fuzzedBytes(CHUNKED_BODIES, TOKENS["chunked"])))
def test_chunkedFuzz(bodyAndCuts: tuple[bytes, list[int]]) -> None:
    """A mutated chunked body decodes the same whole, cut up and byte by byte."""
    checks.checkChunked(*bodyAndCuts)


_TOKEN = st.text("abcXYZ019-_", min_size=1, max_size=6).map(str.encode)


@st.composite
def _chunkedBodies(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """A body, its chunked coding (with extensions and trailers), what follows."""
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    coded = bytearray()
    for piece in pieces:
        size = b"%x" % len(piece)
        if draw(st.booleans()):
            size = size.upper().rjust(draw(st.integers(1, 16)), b"0")
        extensions = draw(st.lists(_TOKEN, max_size=2))
        coded += size + b"".join(b";" + e for e in extensions) + b"\r\n"
        coded += piece + b"\r\n"
    coded += b"0\r\n"
    for name in draw(st.lists(_TOKEN, max_size=2)):
        coded += name + b": " + draw(_TOKEN) + b"\r\n"
    coded += b"\r\n"
    after = draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"\r\n"]))
    return b"".join(pieces), bytes(coded), after


@settings(max_examples=200, deadline=None)
@given(_chunkedBodies(), st.lists(st.integers(0, 400), max_size=6))
def test_chunkedRoundTrip(coding: tuple[bytes, bytes, bytes], cuts: list[int]) -> None:
    """A well-formed chunked body decodes to its content, once, leaving the rest."""
    body, coded, after = coding
    outcome = checks.checkChunked(coded + after, cuts)
    assert outcome == checks.ChunkedOutcome(body, 1, after, None)


# -- responses ----------------------------------------------------------------


@pytest.mark.parametrize(("methods", "data"), RESPONSES)
def test_responseSeeds(methods: tuple[bytes, ...], data: bytes) -> None:
    """Every seed response parses the same however it is split."""
    checks.checkResponse(methods, data, checks.cutPoints(data))


@settings(max_examples=500, deadline=None)
@given(
    _METHODS,
    withCuts(fuzzedBytes([data for _, data in RESPONSES], TOKENS["response"])),
    st.booleans(),
)
def test_responseFuzz(
    methods: tuple[bytes, ...], dataAndCuts: tuple[bytes, list[int]], close: bool
) -> None:
    """A mutated response parses the same whole, cut up and byte by byte."""
    checks.checkResponse(methods, *dataAndCuts, close=close)


@st.composite
def _responses(draw: st.DrawFn) -> tuple[bytes, int, bytes, bytes, bool]:
    """A response (method, status, body, bytes, whether it needs a close)."""
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 503]))
    body = draw(st.binary(max_size=60))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 %d Reason\r\nServer: s\r\n" % status
    if framing == "length":
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        coded = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + coded + b"0\r\n\r\n"
    else:
        data = head + b"Connection: close\r\n\r\n" + body
    noBody = method == b"HEAD" or status in (204, 304)
    if noBody:
        data = data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    return method, status, b"" if noBody else body, data, framing == "close"


@settings(max_examples=200, deadline=None)
@given(_responses(), st.lists(st.integers(0, 300), max_size=6))
def test_responseRoundTrip(
    response: tuple[bytes, int, bytes, bytes, bool], cuts: list[int]
) -> None:
    """A well-formed response is read back as its status and body, ending once."""
    method, status, body, data, _ = response
    outcome = checks.checkResponse((method,), data, cuts)
    assert not outcome.error
    [(_, heads, received, ends)] = outcome.records
    assert [h[0] for h in heads] == [status]
    assert received == body
    assert ends == 1
    assert outcome.leftover == b""


@settings(max_examples=50, deadline=None)
@given(
    where=st.sampled_from(["reason", "value", "fold"]),
    control=st.sampled_from(_CONTROLS),
)
@example(where="reason", control=0x0A)
@example(where="fold", control=0x00)
def test_responseHeadControlCharactersRefused(where: str, control: int) -> None:
    """A reason phrase or header value with a control byte but HTAB is refused."""
    bad = b"a" + bytes([control]) + b"b"
    reason, value, fold = b"OK", b"1", b""
    if where == "reason":
        reason = bad
    elif where == "value":
        value = bad
    else:
        fold = b"\r\n " + bad
    data = b"HTTP/1.1 200 %s\r\nX-A: %s%s\r\nContent-Length: 0\r\n\r\n" % (
        reason,
        value,
        fold,
    )
    parser = ResponseParser(lambda *a: None, lambda data: None, lambda: None)
    parser.expect(b"GET")
    with pytest.raises(ResponseParseError):
        parser.feed(data)


# -- defects found, pinned until fixed ----------------------------------------


_LONG = b"x" * 4096


@pytest.mark.parametrize(
    ("target", "data", "before"),
    [
        pytest.param(
            "chunked",
            b"1;" + _LONG + b"\r\nA\r\n0\r\n\r\n",
            b"\r\nA",
            id="extension",
        ),
        pytest.param(
            "chunked",
            b"0\r\nX-T: " + _LONG + b"\r\n\r\n",
            b"\r\n\r\n",
            id="trailer",
        ),
        pytest.param(
            "response",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1;" + _LONG + b"\r\nA\r\n0\r\n\r\n",
            b"\r\nA",
            id="response-extension",
        ),
        pytest.param(
            "response",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\nX-T: " + _LONG + b"\r\n\r\n",
            b"\r\n\r\n",
            id="response-trailer",
        ),
        pytest.param(
            "response",
            b"HTTP/1.1 200 OK\r\nX-Big: "
            + _LONG * 16
            + b"\r\nContent-Length: 0\r\n\r\n",
            b"\r\nContent-Length",
            id="response-head",
        ),
    ],
)
def test_sizeLimitsSameWholeOrSplit(target: str, data: bytes, before: bytes) -> None:
    """A size limit refuses the same input whether it arrives whole or split."""
    # Cut just before the CRLF that ends the long line.
    cut = data.index(before, data.index(_LONG))
    if target == "chunked":
        checks.checkChunked(data, [cut])
    else:
        checks.checkResponse((b"GET",), data, [cut])
