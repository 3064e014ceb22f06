"""Tests for L{twisted_proxy.core.logformat}: formats, escaping and buffered writing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from twisted_proxy.core.logformat import (
    BufferedLogWriter,
    LogRecord,
    compileFormat,
    escapeLogItem,
)

# 10/Oct/2000:13:55:36 -0700, Apache's documentation example.
APACHE_EXAMPLE = 971211336.25


@pytest.fixture
def minusSeven() -> Iterator[None]:
    """Run the test in a fixed UTC-7 local time zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "<-07>7"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def record(**changes: object) -> LogRecord:
    """Return a typical record, with some fields changed."""
    fields: dict[str, object] = {
        "remoteHost": "127.0.0.1",
        "remoteUser": "frank",
        "requestTime": APACHE_EXAMPLE,
        "method": b"GET",
        "target": b"/apache_pb.gif?x=1",
        "protocol": b"HTTP/1.0",
        "status": 200,
        "bodyBytes": 2326,
        "bytesOut": 2500,
        "bytesIn": 120,
        "duration": 0.0123456,
        "requestHeaders": {
            b"referer": b"http://www.example.com/start.html",
            b"user-agent": b"Mozilla/4.08 [en] (Win98; I ;Nav)",
        }.get,
        "responseHeaders": {b"content-type": b"image/gif"}.get,
        "env": {"BALANCER_WORKER_NAME": "http://127.0.0.1:9001"},
    }
    fields.update(changes)
    return LogRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.usefixtures("minusSeven")
def test_common() -> None:
    """The "common" format is Apache's Common Log Format, in local time."""
    assert compileFormat("common")(record()) == (
        "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700]"
        ' "GET /apache_pb.gif?x=1 HTTP/1.0" 200 2326'
    )


@pytest.mark.usefixtures("minusSeven")
def test_combined() -> None:
    """The "combined" format adds the quoted Referer and User-agent."""
    assert compileFormat("combined")(record()) == (
        "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700]"
        ' "GET /apache_pb.gif?x=1 HTTP/1.0" 200 2326'
        ' "http://www.example.com/start.html"'
        ' "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )


def test_combinedMissingValues() -> None:
    """No user, no body and no headers show as "-", as in Apache."""
    line = compileFormat("combined")(
        record(remoteUser=None, bodyBytes=0, requestHeaders=lambda name: None)
    )
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('" 200 - "-" "-"')


@pytest.mark.usefixtures("minusSeven")
def test_json() -> None:
    """The "json" format writes one JSON object with the documented keys."""
    line = compileFormat("json")(record())
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2000-10-10T13:55:36.250-07:00",
        "remote": "127.0.0.1",
        "user": "frank",
        "request": "GET /apache_pb.gif?x=1 HTTP/1.0",
        "method": "GET",
        "uri": "/apache_pb.gif?x=1",
        "protocol": "HTTP/1.0",
        "status": 200,
        "bytes": 2326,
        "bytes_in": 120,
        "bytes_out": 2500,
        "duration_ms": 12.346,
        "referer": "http://www.example.com/start.html",
        "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        "worker": "http://127.0.0.1:9001",
        "connection_status": "+",
        "end_reason": "complete",
    }


def test_howTheResponseEnded() -> None:
    """
    %X is Apache's connection status and %{PROXY_END_REASON}e why the
    response ended; the JSON format has both.
    """
    fmt = compileFormat("%>s %b %X %{PROXY_END_REASON}e")
    assert fmt(record()) == "200 2326 + complete"
    assert fmt(record(connectionStatus="-")) == "200 2326 - complete"
    cut = record(bodyBytes=10, connectionStatus="X", endReason="backend-closed")
    assert fmt(cut) == "200 10 X backend-closed"
    parsed = json.loads(compileFormat("json")(cut))
    assert (parsed["connection_status"], parsed["end_reason"]) == (
        "X",
        "backend-closed",
    )


def test_noResponseHeadSent() -> None:
    """A request cut before any response head logs its status as - (JSON null)."""
    gone = record(
        status=0, bodyBytes=0, bytesOut=0, connectionStatus="X", endReason="x"
    )
    assert compileFormat("%s %>s %b %B %O")(gone) == "- - - 0 0"
    assert json.loads(compileFormat("json")(gone))["status"] is None


@pytest.mark.parametrize("named", ["common", "combined"])
def test_namedFormatsStayApaches(named: str) -> None:
    """common and combined show neither %X nor the end reason."""
    fmt = compileFormat(named)
    cut = record(connectionStatus="X", endReason="client-closed")
    assert fmt(cut) == fmt(record())
    assert "client-closed" not in fmt(cut)


def test_requestLineAsReceivedPathNormalised() -> None:
    """
    %r shows the request line as the client sent it (the evidence), %U and
    %q the normalised path and query the request was routed and forwarded by;
    the JSON format has both.
    """
    rec = record(
        target=b"/admin/secret?x=1",
        requestLine=b"GET //admin/./x/../secret?x=1 HTTP/1.1",
    )
    assert compileFormat("%r|%U|%q")(rec) == (
        "GET //admin/./x/../secret?x=1 HTTP/1.1|/admin/secret|?x=1"
    )
    parsed = json.loads(compileFormat("json")(rec))
    assert parsed["request"] == "GET //admin/./x/../secret?x=1 HTTP/1.1"
    assert parsed["uri"] == "/admin/secret?x=1"


def test_jsonOddBytes() -> None:
    """Undecodable and control bytes still give one valid JSON line."""
    line = compileFormat("json")(
        record(target=b'/a\n"\xff', requestHeaders=lambda name: None, env={})
    )
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["uri"] == '/a\n"\\xff'
    assert parsed["referer"] is None
    assert parsed["worker"] is None


def test_directives() -> None:
    """Every supported directive renders the matching field."""
    fmt = compileFormat(
        "%h|%a|%l|%u|%r|%>s|%s|%b|%B|%O|%I|%D|%T|%{ms}T|%m|%U|%q|%H|%v"
        "|%{Content-Type}o|%{USER-AGENT}i|%{BALANCER_WORKER_NAME}e|%{NOPE}e|%%"
    )
    assert fmt(record(duration=2.5, serverName="proxy.example.test")).split("|") == [
        "127.0.0.1",
        "127.0.0.1",
        "-",
        "frank",
        "GET /apache_pb.gif?x=1 HTTP/1.0",
        "200",
        "200",
        "2326",
        "2326",
        "2500",
        "120",
        "2500000",
        "2",
        "2500",
        "GET",
        "/apache_pb.gif",
        "?x=1",
        "HTTP/1.0",
        "proxy.example.test",
        "image/gif",
        "Mozilla/4.08 [en] (Win98; I ;Nav)",
        "http://127.0.0.1:9001",
        "-",
        "%",
    ]


def test_noQuery() -> None:
    """%q is empty and %U the whole target when there is no query."""
    assert compileFormat("[%U][%q]")(record(target=b"/a/b")) == "[/a/b][]"


@pytest.mark.usefixtures("minusSeven")
def test_strftimeAndEpochTime() -> None:
    """%{format}t takes a strftime format, or sec/msec/usec, at begin or end."""
    fmt = compileFormat(
        "%{%Y-%m-%d %H:%M:%S}t %{sec}t %{msec}t %{end:sec}t %{usec_frac}t"
    )
    assert fmt(record(duration=2.0)) == (
        "2000-10-10 13:55:36 971211336 971211336250 971211338 250000"
    )


def test_statusConditions() -> None:
    """%400,501{..}i shows the header only for those statuses; "!" negates."""
    fmt = compileFormat("%400,501{Referer}i %!200{Referer}i")
    assert fmt(record(status=200)) == "- -"
    assert fmt(record(status=400)) == (
        "http://www.example.com/start.html http://www.example.com/start.html"
    )


def test_bracesAreLiteral() -> None:
    """Literal braces in a format are written as they are."""
    assert compileFormat("{%s}")(record()) == "{200}"


def test_constantFormat() -> None:
    """A format without directives writes the text as is."""
    assert compileFormat("hello")(record()) == "hello"


@pytest.mark.parametrize(
    ("fmt", "named"),
    [
        ("%Z", "%Z"),
        ("%h %{x}Z", "%{x}Z"),
        ("%{x}h %y", "%y"),
        ("%i", "%i"),
        ("%{fortnights}T", "fortnights"),
        ("%h %", "'%'"),
    ],
)
def test_badFormat(fmt: str, named: str) -> None:
    """A format with an unknown or incomplete directive is refused, naming it."""
    with pytest.raises(ValueError, match=named):
        compileFormat(fmt)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"plain text", "plain text"),
        (b'say "hi"', 'say \\"hi\\"'),
        (b"back\\slash", "back\\\\slash"),
        (b"a\nb\rc\td\x08e\x0bf", "a\\nb\\rc\\td\\be\\vf"),
        (b"\x00\x1b\x7f\xff", "\\x00\\x1b\\x7f\\xff"),
        ("caf\u00e9", "caf\\xc3\\xa9"),
    ],
)
def test_escaping(raw: bytes | str, escaped: str) -> None:
    """Values are escaped as Apache's ap_escape_logitem does."""
    assert escapeLogItem(raw) == escaped


def test_requestLineEscaped() -> None:
    """A hostile request-target cannot break out of the quoted %r field."""
    line = compileFormat('"%r" %{User-agent}i')(
        record(
            target=b'/x" 200 1\nforged', requestHeaders={b"user-agent": b"\x1b[31m"}.get
        )
    )
    assert line == '"GET /x\\" 200 1\\nforged HTTP/1.0" \\x1b[31m'


def test_emptyUser() -> None:
    """An empty user name is logged as "", as Apache does."""
    assert compileFormat("%u")(record(remoteUser="")) == '""'


def test_timeCachedPerSecond(minusSeven: None) -> None:
    """Requests within one second share %t; the next second gets its own."""
    fmt = compileFormat("%t")
    assert (
        fmt(record(requestTime=APACHE_EXAMPLE + 0.5)) == "[10/Oct/2000:13:55:36 -0700]"
    )
    assert fmt(record(requestTime=APACHE_EXAMPLE + 1)) == "[10/Oct/2000:13:55:37 -0700]"
    assert fmt(record(requestTime=APACHE_EXAMPLE)) == "[10/Oct/2000:13:55:36 -0700]"


class Target:
    """A fake log target that records what it is given."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, data: str) -> None:
        """Record one write call."""
        self.writes.append(data)

    def flush(self) -> None:
        """Count a flush."""
        self.flushes += 1


@pytest.fixture
def target() -> Target:
    """Return a fresh fake log target."""
    return Target()


def test_writerBuffers(target: Target) -> None:
    """1000 log lines make only a handful of write calls, in order."""
    writer = BufferedLogWriter(target.write, target.flush, maxBytes=4096)
    lines = [f"line {i:04d} " + "x" * 80 for i in range(1000)]
    for line in lines:
        writer.log(line)
    assert 0 < len(target.writes) <= 1000 * 90 // 4096 + 1
    writer.flush()
    assert "".join(target.writes) == "".join(line + "\n" for line in lines)
    assert target.flushes == 1


def test_writerHoldsUntilFull(target: Target) -> None:
    """Lines stay in the buffer until it is full or flushed."""
    writer = BufferedLogWriter(target.write, target.flush)
    writer.log("one")
    writer.log("two")
    assert target.writes == []
    writer.flush()
    assert target.writes == ["one\ntwo\n"]


def test_writerEmptyFlush(target: Target) -> None:
    """Flushing an empty buffer writes nothing but still flushes the target."""
    writer = BufferedLogWriter(target.write, target.flush)
    writer.flush()
    assert target.writes == []
    assert target.flushes == 1


def test_writerWithoutFlush(target: Target) -> None:
    """A target without a flush function works."""
    writer = BufferedLogWriter(target.write)
    writer.log("a")
    writer.flush()
    assert target.writes == ["a\n"]


def test_writerCloseWritesThrough(target: Target) -> None:
    """close() flushes, and later lines are written at once."""
    writer = BufferedLogWriter(target.write, target.flush)
    writer.log("before")
    writer.close()
    assert target.writes == ["before\n"]
    writer.log("after")
    assert target.writes == ["before\n", "after\n"]


def test_writerFailedWriteDropsChunk() -> None:
    """A write that raises does not leave the buffer growing."""
    calls: list[str] = []

    def failing(data: str) -> None:
        calls.append(data)
        raise OSError("disk full")

    writer = BufferedLogWriter(failing, maxBytes=10)
    with pytest.raises(OSError, match="disk full"):
        writer.log("x" * 20)
    writer.log("y")
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    assert calls == ["x" * 20 + "\n", "y\n"]
