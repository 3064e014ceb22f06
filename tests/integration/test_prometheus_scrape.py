"""
The metrics page scraped by a real Prometheus server (Debian's
C{/usr/bin/prometheus}, run as a child process on 127.0.0.1): it reads the
page without a parse error, and its queries give back what a client sent
through the proxy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionRefusedError, ProcessDone

from tests.integration.processes import Child, childEnv, freePort
from tests.integration.support import (
    RecordingBackend,
    Stack,
    deferLater,
    hasReplies,
    parseReplies,
    request,
)
from tests.integration.wspeers import AsyncioThread
from twisted_proxy.config import load
from twisted_proxy.core.traffic import BUCKETS
from twisted_proxy.service import ProxyService

PROMETHEUS = Path("/usr/bin/prometheus")
JOB = "twisted-proxy"
# Every wait on Prometheus (its start, its scrapes, its exit) is bounded by this
# many seconds; it polls every POLL seconds. Prometheus 2.42 applies its targets
# on a fixed 5-second tick, so its first scrape comes about 5 s after its start.
BOUND = 20.0
POLL = 0.1

PROXY = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/metrics"
handler = "metrics"
[[route]]
path = "/chat"
to = "ws://127.0.0.1:{chat}/"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "roundrobin"
[[balancer.web.member]]
url = "http://127.0.0.1:{dead}"
[[balancer.web.member]]
url = "http://127.0.0.1:{live}"
"""

SCRAPE = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""

# A series as Prometheus stores it: name and labels (without job and instance).
Key = tuple[str, frozenset[tuple[str, str]]]


def requirePrometheus() -> None:
    """Fail (never skip) when the Prometheus server is not installed."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(
            f"{PROMETHEUS} is missing: `make test` installs Debian's prometheus "
            "package (apt-get install prometheus), which this test scrapes with"
        )


class Prometheus:
    """A Prometheus server run as a child process, in a directory of its own."""

    def __init__(self, stack: Stack, directory: Path) -> None:
        self.stack = stack
        self.directory = directory
        self.url = f"http://127.0.0.1:{freePort()}"
        self.http = stack.treq()
        self.child: Child | None = None
        self.transport: Any = None

    def start(self, target: int) -> None:
        """Scrape C{http://127.0.0.1:target/metrics} every second."""
        self.directory.mkdir()
        config = self.directory / "prometheus.yml"
        config.write_text(SCRAPE.format(job=JOB, port=target))
        argv = [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
            "--log.level=warn",
        ]
        self.child = Child()
        self.transport = self.stack.reactor.spawnProcess(
            self.child, argv[0], argv, env=childEnv(), path=str(self.directory)
        )

    async def api(self, path: str, **params: str) -> Any:
        """The C{data} of a successful answer from Prometheus' HTTP API."""
        response = await self.http.get(f"{self.url}/api/v1/{path}", params=params)
        answer = await response.json()
        assert answer["status"] == "success", answer
        return answer["data"]

    async def query(self, promql: str, at: float) -> dict[Key, float]:
        """An instant query at time C{at}: each series' value."""
        data = await self.api("query", query=promql, time=f"{at:.3f}")
        found = {}
        for item in data["result"]:
            labels = {
                name: value
                for name, value in item["metric"].items()
                if name not in ("__name__", "job", "instance")
            }
            key = (item["metric"].get("__name__", ""), frozenset(labels.items()))
            found[key] = float(item["value"][1])
        return found

    async def scrapeAfter(self, after: float) -> float:
        """Wait (bounded) for a good scrape later than C{after}; its time."""
        assert self.child is not None
        # The time of the last scrape (of the sample, not of the query), if up.
        up = f'up{{job="{JOB}"}}'
        promql = f"timestamp({up}) and {up} == 1"
        reactor = self.stack.reactor
        deadline = reactor.seconds() + BOUND
        while reactor.seconds() < deadline:
            assert self.child.endedWith is None, self.child.output.decode()
            try:
                data = await self.api("query", query=promql)
            except ConnectionRefusedError:
                data = {"result": []}
            for item in data["result"]:
                if float(item["value"][1]) > after:
                    return float(item["value"][1])
            await deferLater(reactor, POLL)
        try:
            targets = (await self.api("targets"))["activeTargets"]
        except ConnectionRefusedError:
            targets = "(Prometheus does not listen)"
        raise AssertionError(
            f"no good scrape in {BOUND}s; targets: {targets}\n"
            + self.child.output.decode()
        )

    async def stop(self) -> BaseException | None:
        """SIGTERM, then wait (bounded) for the exit; SIGKILL if it hangs."""
        child = self.child
        if child is None:
            return None
        if child.endedWith is None:
            self.transport.signalProcess("TERM")
            reactor = self.stack.reactor
            deadline = reactor.seconds() + BOUND
            while child.endedWith is None and reactor.seconds() < deadline:
                await deferLater(reactor, POLL)
            if child.endedWith is None:
                self.transport.signalProcess("KILL")
        return await child.whenEnded()


@pytest_twisted.async_yield_fixture
async def prometheus(stack: Stack, tmp_path: Path) -> AsyncIterator[Prometheus]:
    """A Prometheus server to start; stopped and its files removed at the end."""
    server = Prometheus(stack, tmp_path / "prometheus")
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def labelSet(**labels: str) -> frozenset[tuple[str, str]]:
    """A series' labels, as L{Prometheus.query} keys them."""
    return frozenset(labels.items())


def labelled(series: dict[Key, float], name: str) -> dict[frozenset[Any], float]:
    """The series called C{name}: {their labels: value}."""
    return {labels: value for (n, labels), value in series.items() if n == name}


def one(series: dict[Key, float], name: str, **labels: str) -> float:
    """The value of the series C{name} with exactly C{labels}."""
    key = (name, labelSet(**labels))
    assert key in series, f"Prometheus has no {name}{labels}"
    return series[key]


@pytest_twisted.ensureDeferred
async def test_prometheusScrapesWhatTheProxyServed(
    stack: Stack, peers: AsyncioThread, prometheus: Prometheus, tmp_path: Path
) -> None:
    """
    A real Prometheus scrapes the metrics page with no error, and its queries
    give back the requests, durations, bytes, failover, WebSocket messages,
    open connections, member states and reloads the proxy saw.
    """
    requirePrometheus()
    dead = freePort()
    live = await stack.backend(RecordingBackend("live"))
    chat = await peers.backend("chat")
    site = tmp_path / "proxy.toml"
    good = PROXY.format(chat=chat.port, dead=dead, live=live)
    site.write_text(good)
    service = ProxyService(load(str(site)), stack.reactor)
    started = stack.reactor.seconds()
    service.startService()
    stack.services.append(service)
    port = service.ports[0].getHost().port  # type: ignore[attr-defined]
    deadName, liveName = f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{live}"

    # One reload taken (the same file), one refused (a broken file).
    assert service.reload().ok
    site.write_text("[[route]]\npath = 3\n")
    assert not service.reload().ok
    site.write_text(good)

    # Five requests on one kept-alive connection; the first goes to the dead
    # member (round robin), fails to connect and fails over to the live one.
    sent = [
        request(b"GET", b"/item/0"),
        request(b"GET", b"/item/1"),
        request(b"GET", b"/item/2"),
        request(b"POST", b"/form", [(b"Content-Length", b"7")], b"a=1&b=2"),
        request(b"POST", b"/form", [(b"Content-Length", b"3")], b"c=3"),
    ]
    client = await stack.connect(port)
    for count, raw in enumerate(sent, 1):
        client.transport.write(raw)  # type: ignore[union-attr]
        await client.waitFor(hasReplies(count))
    replies = parseReplies(client.received)
    assert [reply.status for reply in replies] == [200] * 5
    assert replies[0].body == b"live saw GET /item/0"
    # A WebSocket, left open: three messages up, three echoed down.
    ws = await peers.connect(f"ws://127.0.0.1:{port}/chat")
    for word in ("one", "two", "three"):
        await peers.call(ws.send(word))
        assert await peers.call(ws.recv()) == word

    prometheus.start(port)
    first = await prometheus.scrapeAfter(0)
    # The second scrape also sees the first one, a request on the metrics route.
    at = await prometheus.scrapeAfter(first)
    series = await prometheus.query(f'{{job="{JOB}"}}', at)
    scrapes = await prometheus.query(f'count_over_time(up{{job="{JOB}"}}[5m])', at)
    assert list(scrapes.values()) == [2]

    [target] = (await prometheus.api("targets"))["activeTargets"]
    assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"
    assert (target["health"], target["lastError"]) == ("up", "")
    assert one(series, "up") == 1

    # Requests by route, member, method and status class: each counted once,
    # under the member that answered it; the metrics route has no member.
    assert labelled(series, "twisted_proxy_requests_total") == {
        labelSet(route="/", member=liveName, method="GET", code="2xx"): 3,
        labelSet(route="/", member=liveName, method="POST", code="2xx"): 2,
        labelSet(route="/chat", method="GET", code="1xx"): 1,
        labelSet(route="/metrics", method="GET", code="2xx"): 1,
    }

    # The duration histogram: every bucket, cumulative, +Inf equal to the count.
    for method, count in (("GET", 3), ("POST", 2)):
        buckets = {
            float(dict(labels)["le"]): value
            for labels, value in labelled(
                series, "twisted_proxy_request_duration_seconds_bucket"
            ).items()
            if dict(labels)["route"] == "/" and dict(labels)["method"] == method
        }
        assert sorted(buckets) == [*BUCKETS, float("inf")]
        values = [buckets[bound] for bound in sorted(buckets)]
        assert values == sorted(values)
        assert values[-1] == count
        labels = {"route": "/", "method": method}
        assert (
            one(series, "twisted_proxy_request_duration_seconds_count", **labels)
            == count
        )
        assert one(series, "twisted_proxy_request_duration_seconds_sum", **labels) > 0
        # Prometheus reads the buckets as a histogram: a median comes out.
        bucket = "twisted_proxy_request_duration_seconds_bucket"
        median = await prometheus.query(
            f'histogram_quantile(0.5, {bucket}{{route="/",method="{method}"}})', at
        )
        assert 0 < median[("", labelSet(**labels))] <= BUCKETS[-1]

    # Bytes each way on the route: request heads and bodies in, bodies out.
    assert one(series, "twisted_proxy_received_bytes_total", route="/") == sum(
        map(len, sent)
    )
    assert one(series, "twisted_proxy_sent_bytes_total", route="/") == sum(
        len(reply.body) for reply in replies
    )

    # The dead member cost one connect error and one failover, nothing else.
    assert labelled(series, "twisted_proxy_upstream_events_total") == {
        labelSet(kind="connect"): 1,
        labelSet(kind="failover"): 1,
    }

    # The members: picked, failed, in flight, usable, one health state each.
    def member(name: str, who: str) -> float:
        return one(series, name, balancer="web", member=who)

    assert member("twisted_proxy_member_requests_total", deadName) == 1
    assert member("twisted_proxy_member_requests_total", liveName) == 5
    assert member("twisted_proxy_member_failures_total", deadName) == 1
    assert member("twisted_proxy_member_failures_total", liveName) == 0
    assert member("twisted_proxy_member_received_bytes_total", liveName) > 0
    assert member("twisted_proxy_member_sent_bytes_total", liveName) > 0
    assert member("twisted_proxy_member_received_bytes_total", deadName) == 0
    assert member("twisted_proxy_member_response_time_seconds", liveName) > 0
    for who in (deadName, liveName):
        assert member("twisted_proxy_member_in_flight", who) == 0
        states = {
            dict(labels)["state"]: value
            for labels, value in labelled(series, "twisted_proxy_member_health").items()
            if dict(labels)["member"] == who
        }
        # No health checks are configured: neither up nor down is known.
        assert states == {"up": 0, "down": 0, "unknown": 1}
    assert member("twisted_proxy_member_usable", deadName) == 0
    assert member("twisted_proxy_member_usable", liveName) == 1

    # Open connections by protocol: the client's kept-alive connection and
    # Prometheus' own, and the WebSocket.
    assert labelled(series, "twisted_proxy_open_connections") == {
        labelSet(protocol="http/1.1"): 2,
        labelSet(protocol="h2"): 0,
        labelSet(protocol="websocket"): 1,
        labelSet(protocol="tunnel"): 0,
        labelSet(protocol="tcp"): 0,
    }
    assert labelled(series, "twisted_proxy_websocket_messages_total") == {
        labelSet(direction="up"): 3,
        labelSet(direction="down"): 3,
    }

    # The reloads, and the generation the one taken made.
    assert one(series, "twisted_proxy_config_generation") == 2
    assert one(series, "twisted_proxy_config_reloads_total", result="taken") == 1
    assert one(series, "twisted_proxy_config_reloads_total", result="refused") == 1
    uptime = one(series, "twisted_proxy_uptime_seconds")
    assert 0 < uptime <= stack.reactor.seconds() - started

    # Prometheus stops cleanly on SIGTERM.
    assert isinstance(await prometheus.stop(), ProcessDone)
