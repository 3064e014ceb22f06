"""
Tests for the WebSocket benchmark's pure parts: the clients' wire protocol
(handshake, frames in and out), the firehose's payload, the configuration it
writes, the figures it works out and its summary.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from bench.__main__ import _parseArgs
from bench.bigpeers import CHUNK, PATTERN
from bench.websocket import (
    DIRECT,
    FLAT_GROWTH_MB,
    TWISTED_PROXY,
    cpuFigures,
    isFlat,
    kibPerConnection,
    openFilesLimit,
    summariseWebSocket,
    twistedProxyWebSocketConfig,
    webSocketRatios,
)
from bench.wspeers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    Counters,
    FrameError,
    FrameReader,
    acceptKey,
    checkHandshake,
    clientFrame,
    closeFrame,
    firehosePath,
    handshakeRequest,
    parseWatch,
    patternAt,
    percentile,
)
from twisted_proxy.config import loadString

MASK = b"\x01\x02\x03\x04"


def _serverFrame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked frame, as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def _response(key: bytes, status: bytes = b"101 Switching Protocols") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + acceptKey(key) + b"\r\n\r\n"
    )


def test_acceptKeyRFCExample() -> None:
    """The accept key is RFC 6455's own example for its sample key."""
    assert acceptKey(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshakeRequest() -> None:
    """The client's request is a GET upgrade for version 13 with its key."""
    request = handshakeRequest(8080, "/firehose?bytes=1", b"a2V5a2V5a2V5a2V5a2V5a2==")
    lines = request.split(b"\r\n")
    assert lines[0] == b"GET /firehose?bytes=1 HTTP/1.1"
    assert b"Host: 127.0.0.1:8080" in lines
    assert b"Upgrade: websocket" in lines
    assert b"Connection: Upgrade" in lines
    assert b"Sec-WebSocket-Version: 13" in lines
    assert b"Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2==" in lines
    assert request.endswith(b"\r\n\r\n")


def test_checkHandshakeAccepts() -> None:
    """A 101 with the right accept key opens the WebSocket."""
    assert checkHandshake(_response(b"k3y=="), b"k3y==") is None


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (_response(b"k3y==", b"502 Bad Gateway"), "handshake answered"),
        (_response(b"other=="), "wrong Sec-WebSocket-Accept"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            "without Upgrade",
        ),
        (
            _response(b"k3y==")[:-2] + b"Sec-WebSocket-Extensions: x\r\n\r\n",
            "extensions",
        ),
    ],
)
def test_checkHandshakeRefuses(head: bytes, problem: str) -> None:
    """A refusal, a wrong key, no upgrade or an extension is reported."""
    found = checkHandshake(head, b"k3y==")
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_clientFrameRoundTrip(size: int) -> None:
    """A masked client frame of any length reads back as its payload."""
    payload = patternAt(size, size)
    frame = clientFrame(OP_BINARY, payload, MASK)
    assert frame[0] == 0x80 | OP_BINARY
    assert frame[1] & 0x80
    assert payload == b"" or payload not in frame
    assert FrameReader().feed(frame) == [(OP_BINARY, payload)]


def test_closeFrame() -> None:
    """A close frame carries its status code."""
    ((opcode, payload),) = FrameReader().feed(closeFrame(MASK, 1001))
    assert (opcode, payload) == (OP_CLOSE, struct.pack("!H", 1001))


def test_frameReaderByteByByte() -> None:
    """Frames split anywhere, even inside their length, come out whole."""
    data = (
        _serverFrame(OP_BINARY, b"x" * 64)
        + _serverFrame(OP_TEXT, b"y" * 300)
        + _serverFrame(OP_BINARY, b"z" * 70000)
    )
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    assert out == [(OP_BINARY, b"x" * 64), (OP_TEXT, b"y" * 300), (2, b"z" * 70000)]


def test_frameReaderFragments() -> None:
    """A fragmented message is put together; a ping in between comes first."""
    data = (
        _serverFrame(OP_BINARY, b"ab", fin=False)
        + _serverFrame(OP_PING, b"p")
        + _serverFrame(OP_CONTINUATION, b"cd", fin=False)
        + _serverFrame(OP_CONTINUATION, b"ef")
    )
    assert FrameReader().feed(data) == [(OP_PING, b"p"), (OP_BINARY, b"abcdef")]


@pytest.mark.parametrize(
    "data",
    [
        b"\xc2\x00",  # RSV1
        _serverFrame(OP_CONTINUATION, b"x"),
        _serverFrame(OP_BINARY, b"a", fin=False) + _serverFrame(OP_BINARY, b"b"),
        _serverFrame(0x3, b""),
        _serverFrame(OP_PING, b"p" * 126),
        _serverFrame(OP_CLOSE, b"", fin=False),
    ],
)
def test_frameReaderErrors(data: bytes) -> None:
    """RSV bits, stray continuations, reserved opcodes, bad control frames."""
    with pytest.raises(FrameError):
        FrameReader().feed(data)


def test_frameReaderLimit() -> None:
    """A frame or a message over the limit is refused."""
    with pytest.raises(FrameError):
        FrameReader(maxMessage=100).feed(_serverFrame(OP_BINARY, b"x" * 101))
    reader = FrameReader(maxMessage=100)
    reader.feed(_serverFrame(OP_BINARY, b"x" * 60, fin=False))
    with pytest.raises(FrameError):
        reader.feed(_serverFrame(OP_CONTINUATION, b"x" * 60))


def test_patternAt() -> None:
    """The firehose's bytes repeat the pattern, across its end too."""
    twice = PATTERN + PATTERN
    assert patternAt(0, 10) == PATTERN[:10]
    assert patternAt(CHUNK - 5, 10) == twice[CHUNK - 5 : CHUNK + 5]
    assert patternAt(3 * CHUNK + 7, 100) == PATTERN[7:107]
    assert patternAt(1, 2 * CHUNK + 1) == (twice + PATTERN)[1 : 2 * CHUNK + 2]


def test_firehosePath() -> None:
    """The firehose path names the size and the message size."""
    assert firehosePath(1 << 30, 65536) == "/firehose?bytes=1073741824&size=65536"


def test_percentile() -> None:
    """Nearest-rank percentiles; nothing for no values."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_parseWatch() -> None:
    """C{NAME=PID} pairs; anything else is an error."""
    assert parseWatch(["backend=12", "proxy=34"]) == {"backend": 12, "proxy": 34}
    with pytest.raises(ValueError, match="NAME=PID"):
        parseWatch(["proxy"])


def test_countersJSON() -> None:
    """The backend's counters go out as JSON with snake_case names."""
    counters = Counters(connections=3, open=2, messages=10, firehoseBytes=5)
    assert json.loads(counters.asJSON()) == {
        "connections": 3,
        "open": 2,
        "messages": 10,
        "firehose_bytes": 5,
    }


def test_twistedProxyWebSocketConfig() -> None:
    """The proxy listens on loopback, logs nothing, and bridges / to ws://."""
    config = loadString(twistedProxyWebSocketConfig(8080, 9000))
    (listen,) = config.listen
    assert listen.endpoint == "tcp:8080:interface=127.0.0.1"
    assert not config.proxy.access_log
    (route,) = config.routes
    assert route.path == "/"
    assert route.to is not None
    assert (route.to.scheme, route.to.host, route.to.port) == ("ws", "127.0.0.1", 9000)


LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                524288               files
Max locked memory         8388608              8388608              bytes
"""


def test_openFilesLimit() -> None:
    """The descriptor limits are read from /proc/PID/limits."""
    assert openFilesLimit(LIMITS) == (20000, 524288)
    assert openFilesLimit(LIMITS.replace("20000  ", "unlimited")) == (None, 524288)
    assert openFilesLimit("Limit Soft Hard\n") == (None, None)


def test_kibPerConnection() -> None:
    """RSS growth over the connections, in KiB; unknown without figures."""
    assert kibPerConnection(50_000, 100_000, 5000) == 10.0
    assert kibPerConnection(None, 100_000, 5000) is None
    assert kibPerConnection(50_000, 100_000, 0) is None


def test_cpuFigures() -> None:
    """CPU seconds become a share of the run and microseconds per message."""
    row: dict[str, Any] = {
        "seconds": 2.0,
        "messages": 40_000,
        "backend_cpu_seconds": 0.8,
        "proxy_cpu_seconds": 1.6,
    }
    cpuFigures(row)
    assert row["backend_cpu_share"] == pytest.approx(0.4)
    assert row["proxy_cpu_share"] == pytest.approx(0.8)
    assert row["backend_cpu_us_per_message"] == pytest.approx(20.0)
    assert row["proxy_cpu_us_per_message"] == pytest.approx(40.0)


def _report() -> dict[str, Any]:
    return {
        "settings": {
            "seconds": 10.0,
            "warmup": 2.0,
            "connections": 50,
            "window": 8,
            "messageBytes": 64,
            "idleConnections": 5000,
            "transferBytes": 1 << 30,
            "frameBytes": 65536,
            "rateMB": 64.0,
            "proxied": True,
        },
        "echo": {
            DIRECT: {
                "messages_per_second": 40_000.0,
                "rtt_p50_ms": 10.0,
                "rtt_p99_ms": 12.0,
                "backend_cpu_us_per_message": 20.0,
            },
            TWISTED_PROXY: {
                "messages_per_second": 20_000.0,
                "rtt_p50_ms": 20.0,
                "rtt_p99_ms": 30.0,
                "proxy_cpu_us_per_message": 45.0,
                "backend_cpu_us_per_message": 21.0,
                "proxy_cpu_share": 0.97,
                "proxy_cpu_other_share": 0.01,
            },
        },
        "idle": {
            DIRECT: {"backend_kib_per_connection": 8.0, "seconds_to_open": 1.5},
            TWISTED_PROXY: {
                "backend_kib_per_connection": 9.0,
                "proxy_kib_per_connection": 22.0,
                "proxy_rss_before_mb": 60.0,
                "proxy_rss_after_mb": 173.0,
                "seconds_to_open": 4.0,
                "proxy_file_limit": {"soft": 20000, "hard": 20000},
            },
        },
        "slow_reader": {
            TWISTED_PROXY: {
                "received": 1 << 30,
                "size": 1 << 30,
                "bytes_ok": True,
                "crc_ok": True,
                "mb_per_s": 64.0,
                "rss_start_mb": 61.0,
                "rss_peak_mb": 62.0,
                "rss_growth_mb": 1.0,
                "in_flight_max_bytes": 3 * 1024 * 1024,
                "flat": True,
            }
        },
    }


def test_webSocketRatios() -> None:
    """Proxied over direct: msg/s, RTT, CPU per message, KiB per connection."""
    ratios = webSocketRatios(_report())
    assert ratios["messages_per_second"] == pytest.approx(0.5)
    assert ratios["rtt_p50"] == pytest.approx(2.0)
    assert ratios["cpu_per_message_proxy_over_backend"] == pytest.approx(2.25)
    assert ratios["idle_kib_proxy_over_backend"] == pytest.approx(2.75)


def test_webSocketRatiosWithoutProxy() -> None:
    """A proxied row that failed gives no ratios."""
    report = _report()
    report["echo"][TWISTED_PROXY] = {"error": "no bridge"}
    report["idle"][TWISTED_PROXY] = {"error": "no bridge"}
    ratios = webSocketRatios(report)
    assert ratios["messages_per_second"] is None
    assert ratios["idle_kib_proxy_over_backend"] is None


def test_isFlat() -> None:
    """Growth under the threshold is flat; unknown growth is no verdict."""
    assert isFlat({"rss_growth_mb": FLAT_GROWTH_MB - 1})
    assert isFlat({"rss_growth_mb": FLAT_GROWTH_MB + 1}) is False
    assert isFlat({"error": "x", "rss_growth_mb": 1.0}) is None
    assert isFlat({}) is None


def test_summary() -> None:
    """The summary shows every figure beside its direct reference and the ratios."""
    report = _report()
    report["ratios"] = webSocketRatios(report)
    text = summariseWebSocket(report)
    assert "40,000" in text
    assert "20,000" in text
    assert "msg/s 0.50x" in text
    assert "22.0 KiB" in text
    assert "8.0 KiB" in text
    assert "2.75x" in text
    assert "1,073,741,824 / 1,073,741,824 bytes ok, CRC ok" in text
    assert "growth 1.0 MB: flat" in text
    assert "at most 3.0 MiB sent by the backend and not yet read" in text
    assert "WARNING" not in text
    assert "understate" not in text


def test_summaryUnsaturated() -> None:
    """A proxy that was not kept busy is said to be understated."""
    report = _report()
    report["echo"][TWISTED_PROXY]["proxy_cpu_share"] = 0.6
    text = summariseWebSocket(report)
    assert "twisted-proxy was 60% busy: its msg/s understate it" in text


def test_summaryFailures() -> None:
    """Failed rows, contention and a missing bridge are said, not hidden."""
    report = _report()
    report["echo"][TWISTED_PROXY]["proxy_cpu_other_share"] = 0.3
    report["idle"][TWISTED_PROXY] = {"error": "twisted-proxy does not bridge"}
    report["slow_reader"][TWISTED_PROXY] = {"error": "twisted-proxy does not bridge"}
    report["no_bridge"] = "twisted-proxy does not bridge WebSockets: 404"
    report["ratios"] = webSocketRatios(report)
    text = summariseWebSocket(report)
    assert "WARNING: other processes took 30%" in text
    assert "failed: twisted-proxy does not bridge" in text
    assert "proxied rows skipped: twisted-proxy does not bridge WebSockets" in text


def test_parseArgsWebSocket() -> None:
    """--ws-only and --no-ws; 5,000 idle connections, 2,000 with --quick."""
    only = _parseArgs(["--ws-only"])
    assert only.ws
    assert only.wsOnly
    assert only.wsIdle == 5000
    assert _parseArgs(["--quick"]).wsIdle == 2000
    assert _parseArgs(["--ws-idle", "300", "--ws-rate", "8"]).wsRate == 8.0
    assert not _parseArgs(["--no-ws"]).ws


def test_parseArgsWebSocketConflicts(capsys: pytest.CaptureFixture[str]) -> None:
    """--ws-only cannot go with another part's --only flag or --no-ws."""
    for other in ("--tls-only", "--picks-only", "--no-ws"):
        with pytest.raises(SystemExit):
            _parseArgs(["--ws-only", other])
    assert "--ws-only goes with none of" in capsys.readouterr().err
