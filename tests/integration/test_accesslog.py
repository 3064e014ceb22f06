"""
The access log end to end: what lands in the file for real requests, in the
named formats and an Apache format string, and that writes are batched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest_twisted

from tests.integration.support import (
    RecordingBackend,
    Stack,
    hasReplies,
    parseReplies,
    request,
)
from twisted_proxy.accesslog.logger import AccessLogger

CONFIG = """
[proxy]
access_log = {log}
access_log_format = {format}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""

BALANCED = """
[proxy]
access_log = {log}
access_log_format = {format}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://pool/"
[balancer.pool]
[[balancer.pool.member]]
url = "http://127.0.0.1:{port}"
"""


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest_twisted.ensureDeferred
async def test_combinedLineWrittenOnFlush(stack: Stack, tmp_path: Path) -> None:
    """The "combined" format writes Apache's combined line for a request, on flush."""
    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(
        CONFIG, port=port, log=json.dumps(str(log)), format='"combined"'
    )
    response = await stack.treq().get(
        f"http://127.0.0.1:{proxy.port}/page?x=1",
        headers={"Referer": "http://ref.example/", "User-Agent": "probe/1.0"},
    )
    body = await response.content()
    assert body == b"backend saw GET /page?x=1"
    assert proxy.accessLog is not None
    proxy.accessLog.flush()
    [line] = _lines(log)
    pattern = (
        r"127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        r'"GET /page\?x=1 HTTP/1\.1" 200 (\d+) "http://ref\.example/" "probe/1\.0"'
    )
    match = re.fullmatch(pattern, line)
    assert match is not None, line
    assert int(match.group(1)) == len(body)


@pytest_twisted.ensureDeferred
async def test_apacheFormatThroughBalancer(stack: Stack, tmp_path: Path) -> None:
    """%h %>s %b %D, the balancer member, and request/response headers are logged."""
    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend(name="blue"))
    fmt = "%h %>s %b %D %{BALANCER_WORKER_NAME}e %{X-Test}i %{X-Backend}o"
    proxy = await stack.proxy(
        BALANCED, port=port, log=json.dumps(str(log)), format=json.dumps(fmt)
    )
    client = await stack.connect(proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/lb", [(b"X-Test", b"marker-42")])
    )
    await client.waitFor(hasReplies(1))
    assert proxy.accessLog is not None
    proxy.accessLog.flush()
    [line] = _lines(log)
    host, status, size, micros, worker, test, backend = line.split(" ")
    assert (host, status, worker, test, backend) == (
        "127.0.0.1",
        "200",
        f"http://127.0.0.1:{port}",
        "marker-42",
        "blue",
    )
    assert size == str(len(b"blue saw GET /lb"))
    assert micros.isdigit()
    assert 0 < int(micros) < 10_000_000


@pytest_twisted.ensureDeferred
async def test_jsonFormatParsesOnStop(stack: Stack, tmp_path: Path) -> None:
    """The "json" format writes one JSON object per request, flushed on stop."""
    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(
        CONFIG, port=port, log=json.dumps(str(log)), format='"json"'
    )
    http = stack.treq()
    for path in ("/one", "/two%20x?q=1"):
        response = await http.get(f"http://127.0.0.1:{proxy.port}{path}")
        await response.content()
    await proxy.stopService()
    records = [json.loads(line) for line in _lines(log)]
    assert [(r["method"], r["uri"], r["status"]) for r in records] == [
        ("GET", "/one", 200),
        ("GET", "/two%20x?q=1", 200),
    ]
    assert records[0]["remote"] == "127.0.0.1"
    assert records[0]["bytes"] == len(b"backend saw GET /one")


@pytest_twisted.ensureDeferred
async def test_linesBufferedNotWrittenPerRequest(stack: Stack) -> None:
    """Fifty requests make no write until the flush, and then a single one."""
    writes: list[str] = []
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(CONFIG, port=port, log="false", format='"common"')
    proxy.site.accessLog = AccessLogger("common", writes.append, None, stack.reactor)
    client = await stack.connect(proxy.port)
    for n in range(50):
        client.transport.write(request(b"GET", b"/n/%d" % n))  # type: ignore[union-attr]
        await client.waitFor(hasReplies(n + 1))
    assert writes == []
    proxy.site.accessLog.flush()
    assert len(writes) == 1
    lines = writes[0].splitlines()
    assert len(lines) == 50
    size = len("backend saw GET /n/49")
    assert lines[49].endswith(f'"GET /n/49 HTTP/1.1" 200 {size}')


@pytest_twisted.ensureDeferred
async def test_refusedRequestsAreLogged(stack: Stack, tmp_path: Path) -> None:
    """A malformed head (400) and an oversized one (431) each get a log line."""
    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend())
    proxy = await stack.proxy(
        CONFIG.replace("[proxy]", "[proxy]\nmax_header_bytes = 1024"),
        port=port,
        log=json.dumps(str(log)),
        format='"%h %>s"',
    )
    for data in (
        b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
        request(b"GET", b"/", [(b"X-Big", b"b" * 2048)]),
    ):
        client = await stack.connect(proxy.port)
        client.transport.write(data)  # type: ignore[union-attr]
        await client.lost
    assert proxy.accessLog is not None
    proxy.accessLog.flush()
    assert _lines(log) == ["127.0.0.1 400", "127.0.0.1 431"]


# The balancer with sticky sessions, its member on route "node1".
STICKY = (
    BALANCED.replace(
        "[balancer.pool]\n",
        '[balancer.pool]\n[balancer.pool.sticky]\nname = "ROUTEID"\ninsert = true\n',
    )
    + 'route = "node1"\n'
)


@pytest_twisted.ensureDeferred
async def test_balancerVariablesOfStickySessions(stack: Stack, tmp_path: Path) -> None:
    """
    %{BALANCER_WORKER_ROUTE}e is the serving member's route; a client without
    a route gets BALANCER_ROUTE_CHANGED, one presenting it the session's
    variables instead.
    """
    log = tmp_path / "access.log"
    port = await stack.backend(RecordingBackend())
    names = [
        "NAME",
        "WORKER_NAME",
        "WORKER_ROUTE",
        "ROUTE_CHANGED",
        "SESSION_STICKY",
        "SESSION_ROUTE",
    ]
    fmt = " ".join(f"%{{BALANCER_{name}}}e" for name in names)
    proxy = await stack.proxy(
        STICKY, port=port, log=json.dumps(str(log)), format=json.dumps(fmt)
    )
    client = await stack.connect(proxy.port)
    client.transport.write(request(b"GET", b"/new"))  # type: ignore[union-attr]
    [first] = parseReplies(await client.waitFor(hasReplies(1)))
    assert first.header(b"set-cookie") == b"ROUTEID=.node1; Path=/; HttpOnly"
    client.transport.write(  # type: ignore[union-attr]
        request(b"GET", b"/again", [(b"Cookie", b"ROUTEID=.node1")])
    )
    await client.waitFor(hasReplies(2))
    assert proxy.accessLog is not None
    proxy.accessLog.flush()
    member = f"http://127.0.0.1:{port}"
    assert _lines(log) == [
        f"balancer://pool {member} node1 1 - -",
        f"balancer://pool {member} node1 - ROUTEID node1",
    ]
