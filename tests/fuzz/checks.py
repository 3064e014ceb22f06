"""
The properties every fuzzed input must satisfy, one function per target.

Each check feeds one input to a parser (or the config loader) and raises
L{PropertyViolationError} when the outcome breaks a property, or lets an exception
the target must not raise escape. The hypothesis tests and the atheris harness
call the same checks, so both fuzzers hold the code to the same contract.

Inputs that once crashed a target are kept in L{CONFIG_REGRESSIONS} (and the
parsers' in the tests), each run as a plain test.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

from twisted_proxy.config import Config, ConfigError, loadString
from twisted_proxy.core.http11 import (
    CHUNKED,
    NO_BODY,
    ChunkedDecoder,
    HTTPError,
    RequestHead,
    parseRequestHead,
)
from twisted_proxy.core.response import Headers, ResponseParseError, ResponseParser

_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# What a field (value, reason phrase) may not carry: every control but HTAB.
_CONTROLS = frozenset([*range(0x09), *range(0x0A, 0x20), 0x7F])


class PropertyViolationError(AssertionError):
    """An input made a target break one of its properties."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PropertyViolationError(message)


def _healthRegex(pattern: str) -> str:
    return (
        f"[balancer.b]\nhealth = {{ expect_body = {pattern} }}\n"
        '[[balancer.b.member]]\nurl = "http://127.0.0.1:9001"\n'
    )


CONFIG_REGRESSIONS: tuple[tuple[str, str], ...] = (
    # urlsplit() raised ValueError on a balancer:// URL with a stray "[" (or
    # a character NFKC turns into one of /?#@:), outside the loader's checks.
    ("balancer-url-bracket", '[[route]]\npath = "/"\nto = "balancer://["\n'),
    ("balancer-url-address", '[[route]]\npath = "/"\nto = "balancer://[x]y/"\n'),
    ("balancer-url-nfkc", '[[route]]\npath = "/"\nto = "balancer://a\\uff03b/"\n'),
    # tomllib raised RecursionError on deeply nested arrays.
    ("toml-deep-nesting", "a = " + "[" * 1000 + "]" * 1000 + "\n"),
    # re.compile() raised RecursionError / OverflowError on an expect_body.
    ("health-regex-deep-nesting", _healthRegex('"' + "(" * 1000 + ")" * 1000 + '"')),
    ("health-regex-huge-repeat", _healthRegex('"a{4294967296}"')),
)
"""Config texts that once made the loader raise something other than ConfigError."""


def cutPoints(data: bytes, count: int = 6) -> list[int]:
    """
    Split points derived from C{data} alone, so that a fuzzer's crash file
    reproduces the same split.
    """
    if not data:
        return []
    state = zlib.crc32(data)
    cuts = []
    for _ in range(state % (count + 1)):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        cuts.append(state % (len(data) + 1))
    return cuts


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """C{data} cut at C{cuts} (in any order, repeats allowed)."""
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def bytewise(data: bytes) -> list[bytes]:
    """C{data} one byte at a time."""
    return [data[i : i + 1] for i in range(len(data))]


# -- request heads ------------------------------------------------------------


def _serialise(head: RequestHead) -> bytes:
    lines = [b" ".join((head.method, head.target, head.version))]
    lines.extend(name + b": " + value for name, value in head.headers)
    return b"\r\n".join(lines)


def _fields(head: RequestHead) -> tuple[object, ...]:
    return (
        head.method,
        head.target,
        head.version,
        head.headers,
        head.length,
        head.keepAlive,
        head.expectContinue,
    )


def checkRequestHead(data: bytes) -> RequestHead | None:
    """
    Parse C{data} as a request head: only L{HTTPError} (4xx or 5xx) may refuse
    it; an accepted head round-trips and has one framing, the one it was sent.
    """
    try:
        head = parseRequestHead(data)
    except HTTPError as e:
        _require(
            isinstance(e.status, int) and 400 <= e.status <= 599,
            f"HTTPError with status {e.status!r}",
        )
        return None
    lines = data.split(b"\r\n")
    parts = lines[0].split(b" ")
    _require(
        parts[:2] == [head.method, head.target],
        f"request line {lines[0]!r} read as {head.method!r} {head.target!r}",
    )
    _require(head.version in (b"HTTP/1.0", b"HTTP/1.1"), f"version {head.version!r}")
    _require(
        len(head.headers) <= len(lines) - 1,
        f"{len(lines) - 1} header lines read as {len(head.headers)} headers",
    )
    _require(head.headBytes == len(data) + 4, f"headBytes {head.headBytes}")
    _require(
        _CONTROLS.isdisjoint(head.target) and 0x09 not in head.target,
        f"target {head.target!r} accepted",
    )
    for name, value in head.headers:
        _require(
            bool(name) and _TCHAR.issuperset(name), f"header name {name!r} accepted"
        )
        _require(_CONTROLS.isdisjoint(value), f"header value {value!r} accepted")
    # Framing is judged on the lines as sent, not on what the parser kept.
    sent = [line.partition(b":") for line in lines[1:]]
    lengths = {v.strip(b" \t") for n, _, v in sent if n.lower() == b"content-length"}
    codings = [v.strip(b" \t") for n, _, v in sent if n.lower() == b"transfer-encoding"]
    _require(
        not (lengths and codings), "accepted both Content-Length and Transfer-Encoding"
    )
    if codings:
        _require(head.length == CHUNKED, f"length {head.length} from {codings!r}")
        final = b",".join(codings).split(b",")
        last = [c.strip(b" \t").lower() for c in final]
        _require(
            last[-1] == b"chunked" and last.count(b"chunked") == 1,
            f"chunked framing from {codings!r}",
        )
        _require(head.version == b"HTTP/1.1", "chunked framing in HTTP/1.0")
    elif lengths:
        _require(len(lengths) == 1, f"accepted Content-Lengths {sorted(lengths)}")
        _require(
            head.length == int(next(iter(lengths))),
            f"length {head.length} from Content-Length {lengths}",
        )
    else:
        _require(head.length == NO_BODY, f"length {head.length} with no framing")
    tokens = {
        token.strip(b" \t").lower()
        for n, _, v in sent
        if n.lower() == b"connection"
        for token in v.split(b",")
    }
    if head.version == b"HTTP/1.0":
        asked = b"keep-alive" in tokens and b"close" not in tokens
        _require(head.keepAlive == asked, "HTTP/1.0 kept alive without asking")
    else:
        _require(head.keepAlive == (b"close" not in tokens), "HTTP/1.1 persistence")
    again = parseRequestHead(_serialise(head))
    _require(
        _fields(again) == _fields(head),
        f"{head!r} re-serialised reads as {again!r}",
    )
    return head


# -- chunked bodies -----------------------------------------------------------


@dataclass
class ChunkedOutcome:
    """What a L{ChunkedDecoder} made of some bytes."""

    body: bytes
    ends: int
    leftover: bytes
    error: int | None
    """The status of the L{HTTPError} that stopped it, if one did."""


def decodeChunked(chunks: list[bytes]) -> ChunkedOutcome:
    """Feed C{chunks} to a fresh decoder, stopping at its first error."""
    body: list[bytes] = []
    ends: list[None] = []
    leftover: list[bytes] = []
    decoder = ChunkedDecoder(body.append, lambda: ends.append(None))
    error = None
    try:
        for chunk in chunks:
            leftover.append(decoder.feed(chunk))
    except HTTPError as e:
        error = e.status
        _require(isinstance(error, int) and 400 <= error <= 599, f"status {error!r}")
    _require(len(ends) <= 1, f"onEnd called {len(ends)} times")
    if error is None:
        _require(decoder.done == bool(ends), "done disagrees with onEnd")
    return ChunkedOutcome(b"".join(body), len(ends), b"".join(leftover), error)


def checkChunked(data: bytes, cuts: list[int]) -> ChunkedOutcome:
    """
    Decode C{data} whole and cut at C{cuts} (and byte by byte when short): the
    outcomes must agree, and the body must not outgrow its coding.
    """
    whole = decodeChunked([data])
    _require(
        len(whole.body) + len(whole.leftover) <= len(data),
        f"{len(whole.body)} body bytes and {len(whole.leftover)} left over "
        f"from {len(data)}",
    )
    splits = [pieces(data, cuts)]
    if len(data) <= 256:
        splits.append(bytewise(data))
    for split in splits:
        outcome = decodeChunked(split)
        _require(
            outcome == whole,
            f"fed whole: {whole!r}\nfed as {split!r}: {outcome!r}",
        )
    return whole


# -- responses ----------------------------------------------------------------


def _expect(parser: ResponseParser, method: bytes) -> None:
    """A method ending in C{+} stands for a request that asked for an upgrade."""
    if method.endswith(b"+"):
        parser.expect(method[:-1], allowUpgrade=True)
    else:
        parser.expect(method)


@dataclass
class ResponseRecord:
    """What the parser reported for one expected response."""

    method: bytes
    heads: list[tuple[int, bytes, Headers]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    ends: int = 0


@dataclass
class ResponseOutcome:
    """What a L{ResponseParser} made of some bytes, response by response."""

    records: list[tuple[bytes, list[tuple[int, bytes, Headers]], bytes, int]]
    leftover: bytes
    error: bool
    closedCleanly: bool | None
    """What C{noMoreData()} said once the bytes were in; C{None}: not asked."""


def parseResponses(
    methods: tuple[bytes, ...], chunks: list[bytes], close: bool
) -> ResponseOutcome:
    """
    Feed C{chunks} to one parser, expecting the next response (for the next
    method) as soon as one completes, then tell it the connection closed.
    """
    records = [ResponseRecord(methods[0])]

    def onHead(status: int, reason: bytes, headers: Headers) -> None:
        records[-1].heads.append((status, reason, headers))

    def onEnd() -> None:
        records[-1].ends += 1

    parser = ResponseParser(onHead, lambda data: records[-1].body.append(data), onEnd)
    _expect(parser, methods[0])
    leftover: list[bytes] = []
    error = False
    try:
        for chunk in chunks:
            data = chunk
            while True:
                rest = parser.feed(data)
                if parser.complete and len(records) < len(methods):
                    records.append(ResponseRecord(methods[len(records)]))
                    _expect(parser, records[-1].method)
                    data = rest
                    continue
                leftover.append(rest)
                break
    except ResponseParseError:
        error = True
    closedCleanly = parser.noMoreData() if close and not error else None
    if closedCleanly:
        _require(parser.complete, "noMoreData() ended an incomplete response")
    return ResponseOutcome(
        [(r.method, r.heads, b"".join(r.body), r.ends) for r in records],
        b"".join(leftover),
        error,
        closedCleanly,
    )


def _checkRecord(
    method: bytes, heads: list[tuple[int, bytes, Headers]], body: bytes, ends: int
) -> None:
    _require(len(heads) <= 1, f"onHead called {len(heads)} times for one response")
    _require(ends <= 1, f"onEnd called {ends} times for one response")
    _require(not ends or bool(heads), "onEnd before onHead")
    _require(not body or bool(heads), "body before the head")
    if not heads:
        return
    status, reason, headers = heads[0]
    _require(200 <= status <= 599 or status == 101, f"status {status} handed on")
    _require(status != 101 or method.endswith(b"+"), "an unrequested 101 handed on")
    _require(_CONTROLS.isdisjoint(reason), f"reason {reason!r} handed on")
    for name, value in headers:
        _require(bool(name) and _TCHAR.issuperset(name), f"header name {name!r}")
        _require(_CONTROLS.isdisjoint(value), f"header value {value!r} handed on")
    if not ends:
        return
    names = [name.lower() for name, _ in headers]
    # Accepted, so every Content-Length is digits.
    lengths = {int(v) for n, v in headers if n.lower() == b"content-length"}
    if method.rstrip(b"+") == b"HEAD" or status in (101, 204, 304):
        _require(not body, f"a body for {method!r} {status}")
    elif b"transfer-encoding" not in names and len(lengths) == 1:
        # Content-Length framing: the body is exactly that long.
        _require(len(body) in lengths, f"{len(body)} body bytes for {lengths}")


def checkResponse(
    methods: tuple[bytes, ...], data: bytes, cuts: list[int], close: bool = True
) -> ResponseOutcome:
    """
    Parse C{data} as the responses to C{methods}, whole and cut at C{cuts}
    (and byte by byte when short): the outcomes must agree, each response ends
    at most once, and no more body comes out than went in.
    """
    whole = parseResponses(methods, [data], close)
    bodyBytes = sum(len(body) for _, _, body, _ in whole.records)
    _require(
        bodyBytes + len(whole.leftover) <= len(data),
        f"{bodyBytes} body bytes and {len(whole.leftover)} left over from {len(data)}",
    )
    for record in whole.records:
        _checkRecord(*record)
    splits = [pieces(data, cuts)]
    if len(data) <= 256:
        splits.append(bytewise(data))
    for split in splits:
        outcome = parseResponses(methods, split, close)
        _require(
            outcome == whole,
            f"fed whole: {whole!r}\nfed as {split!r}: {outcome!r}",
        )
    return whole


# -- config -------------------------------------------------------------------


def checkConfig(text: str, source: str = "<fuzz>") -> Config | None:
    """
    Load C{text}: it is a L{Config}, or a L{ConfigError} each of whose
    messages names C{source}; nothing else may come out of the loader.
    """
    try:
        config = loadString(text, source)
    except ConfigError as e:
        _require(bool(e.errors), "ConfigError without a message")
        for message in e.errors:
            _require(
                message.startswith(f"{source}: "),
                f"message {message!r} does not name {source!r}",
            )
        return None
    _require(isinstance(config, Config), f"loadString returned {config!r}")
    return config
