"""
C{[proxy] workers = 2} with the real twistd on 127.0.0.1: two processes
serve the same port, with one view of the balancers (health checks run
once, a drain or a failed member reaches both), counters summed on the
pages, sticky sessions kept, reloads and a graceful stop across both, a
follower that dies started again, and one whose owner is gone stopping.
The access log's C{%P} says which process served each request.
"""

from __future__ import annotations

import functools
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.error import ConnectionRefusedError, ProcessDone
from twisted.internet.task import deferLater
from twisted.web.server import NOT_DONE_YET

from tests.integration.processes import BOUND, Child, freePort, startTwistd, until
from tests.integration.support import RecordingBackend, Stack

SITE = """
[proxy]
workers = 2
access_log = "{log}"
access_log_format = "%P %>s %U %{{BALANCER_WORKER_NAME}}e"
shutdown_grace = 10
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
[[route]]
path = "/metrics"
handler = "metrics"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
[balancer.web.sticky]
name = "ROUTEID"
{health}
[[balancer.web.member]]
url = "http://127.0.0.1:{one}"
route = "one"
[[balancer.web.member]]
url = "http://127.0.0.1:{two}"
route = "two"
"""

HEALTH = """
[balancer.web.health]
uri = "/health"
interval = 0.4
timeout = 0.3
"""

SERVING = re.compile(rb"worker 1 \(pid (\d+)\) serving")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def pause(stack: Stack, seconds: float) -> None:
    await deferLater(stack.reactor, seconds, lambda: None)


class Proxy:
    """The proxy under test: its port, its processes, its access log."""

    def __init__(
        self, stack: Stack, port: int, log: Path, child: Child, ports: dict[str, int]
    ) -> None:
        self.stack = stack
        self.members = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        self.port = port
        self.log = log
        self.child = child
        self.base = f"http://127.0.0.1:{port}"

    async def follower(self, after: int = 0) -> int:
        """The pid of the newest serving follower (a new one after C{after})."""

        def found() -> int:
            pids = [int(p) for p in SERVING.findall(self.child.output)]
            return pids[-1] if pids and pids[-1] != after else 0

        await until(self.stack, found, "a follower serving")
        return found()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, bytes]:
        """One request on a new connection (so either process may take it)."""
        response = await self.stack.treq().get(
            f"{self.base}{path}", headers={"Connection": "close"}, **kwargs
        )
        return response.code, await response.content()

    async def lines(self, count: int) -> list[list[str]]:
        """The access log's lines, once it has C{count} (every worker flushes)."""

        def read() -> list[list[str]]:
            if not self.log.exists():
                return []
            return [line.split() for line in self.log.read_text().splitlines()]

        await until(self.stack, lambda: len(read()) >= count, f"{count} log lines")
        return read()


async def start(
    stack: Stack,
    children: list[tuple[Child, Any]],
    tmp_path: Path,
    health: str = HEALTH,
    **backends: Any,
) -> tuple[Proxy, Any]:
    port = freePort()
    ports = {
        name: freePort() if b is None else await stack.backend(b)
        for name, b in backends.items()
    }
    log = tmp_path / "access.log"
    config = tmp_path / "site.toml"
    config.write_text(SITE.format(port=port, log=log, health=health, **ports))
    child, transport = await startTwistd(stack, children, config, port)
    proxy = Proxy(stack, port, log, child, ports)
    await proxy.follower()
    return proxy, transport


def proxied(lines: list[list[str]]) -> list[list[str]]:
    """The lines of requests that went to a member."""
    return [line for line in lines if line[2].startswith("/app")]


async def servedByBoth(
    proxy: Proxy, prefix: str, pids: set[int], **options: Any
) -> list[list[str]]:
    """
    The log lines of requests under C{prefix}, sent ten at a time until each
    of C{pids} has served some (which process accepts a connection is the
    kernel's choice: thirty in a row may all go to one).
    """

    def under() -> list[list[str]]:
        if not proxy.log.exists():
            return []
        lines = [line.split() for line in proxy.log.read_text().splitlines()]
        return [line for line in lines if line[2].startswith(prefix)]

    def logged(count: int) -> bool:
        return len(under()) >= count

    sent = 0
    while sent < 200:
        for i in range(sent, sent + 10):
            code, _ = await proxy.get(f"{prefix}{i}", **options)
            assert code == 200
        sent += 10
        await until(proxy.stack, functools.partial(logged, sent), f"{sent} lines")
        lines = under()
        if {int(line[0]) for line in lines} == pids:
            return lines
    raise AssertionError(f"{sent} requests under {prefix}, not served by all {pids}")


async def stop(stack: Stack, proxy: Proxy, transport: Any, pids: set[int]) -> None:
    """SIGTERM: the owner exits 0 and no worker is left."""
    transport.signalProcess("TERM")
    ended = await proxy.child.whenEnded().addTimeout(BOUND, stack.reactor)
    assert isinstance(ended, ProcessDone), (ended, proxy.child.output)
    await until(stack, lambda: not any(alive(pid) for pid in pids), "workers gone")
    assert b"Traceback" not in proxy.child.output, proxy.child.output.decode()


@pytest_twisted.ensureDeferred
async def test_oneViewOfTheBalancersAcrossTwoWorkers(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    Both processes serve; the health checks run once; a drain made through
    the manager reaches both; a member that fails in one is in error in
    both; sticky sessions reach their member from either; the metrics add
    up both processes' requests.
    """
    one, two = RecordingBackend("one"), RecordingBackend("two")
    proxy, transport = await start(stack, children, tmp_path, one=one, two=two)
    owner = transport.pid
    follower = await proxy.follower()
    first = await servedByBoth(proxy, "/app/first/", {owner, follower})
    assert {line[3] for line in first} == set(proxy.members.values())

    # Health checks: one process checks, at its interval (0.4 s).
    before = len([r for r in one.requests if r.uri == b"/health"])
    await pause(stack, 2.0)
    checks = len([r for r in one.requests if r.uri == b"/health"]) - before
    assert 3 <= checks <= 6, checks

    # Drained through the manager's API (whichever process takes it).
    api = f"{proxy.base}/balancer-manager/api/balancers/web/members/one"
    response = await stack.treq().patch(api, json={"drain": True})
    assert response.code == 200, await response.content()
    await pause(stack, 0.3)
    drained = await servedByBoth(proxy, "/app/drained/", {owner, follower})
    assert {line[3] for line in drained} == {proxy.members["two"]}

    # A sticky session names "one": it still reaches it (drained members keep
    # their sessions), from both processes.
    sticky = await servedByBoth(
        proxy, "/app/sticky/", {owner, follower}, cookies={"ROUTEID": "x.one"}
    )
    assert {line[3] for line in sticky} == {proxy.members["one"]}

    # The metrics (answered by the owner) count both processes' requests.
    response = await stack.treq().get(f"{proxy.base}/metrics")
    text = (await response.content()).decode()
    total = sum(
        float(value)
        for value in re.findall(
            r'^twisted_proxy_member_requests_total\{balancer="web",[^}]*\} (\S+)$',
            text,
            re.MULTILINE,
        )
    )
    assert total == len(first) + len(drained) + len(sticky), text
    assert re.search(r"^twisted_proxy_worker_processes 2\.0$", text, re.M), text
    await stop(stack, proxy, transport, {owner, follower})


async def metric(proxy: Proxy, name: str) -> dict[str, float]:
    """One metric family from the owner's page: labels -> value."""
    response = await proxy.stack.treq().get(f"{proxy.base}/metrics")
    text = (await response.content()).decode()
    pattern = rf"^{name}(\{{[^}}]*\}})? (\S+)$"
    return {labels: float(value) for labels, value in re.findall(pattern, text, re.M)}


@pytest_twisted.ensureDeferred
async def test_aMemberFailingInOneWorkerIsInErrorInBoth(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    Member "two" refuses connections. The first request a worker sends it
    fails over to "one" and puts "two" in error, in both processes: the
    next 30 requests, from both, are all "one"'s, and only that first
    connection was ever tried.
    """
    proxy, transport = await start(
        stack, children, tmp_path, health="", one=RecordingBackend("one"), two=None
    )
    owner, follower = transport.pid, await proxy.follower()
    for i in range(10):
        assert (await proxy.get(f"/app/first/{i}"))[0] == 200
        if b"in error: connect failed" in proxy.child.output:
            break
    else:
        raise AssertionError("no request went to member two")
    await pause(stack, 0.3)
    then = await servedByBoth(proxy, "/app/then/", {owner, follower})
    assert {line[3] for line in then} == {proxy.members["one"]}
    events = await metric(proxy, "twisted_proxy_upstream_events_total")
    assert events['{kind="connect"}'] == 1, events
    await stop(stack, proxy, transport, {owner, follower})


class HeldBackend(RecordingBackend):
    """Answers nothing until released."""

    def __init__(self) -> None:
        super().__init__("held", handler=self._hold)
        self.held: list[Any] = []

    def _hold(self, request: Any) -> Any:
        self.held.append(request)
        return NOT_DONE_YET

    def release(self) -> None:
        for request in self.held:
            request.write(b"finished " + request.uri)
            request.finish()


@pytest_twisted.ensureDeferred
async def test_reloadThenGracefulStopAcrossWorkers(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    SIGHUP with a new route and a new listener: both processes serve them;
    SIGHUP without that listener: neither listens there. Then 20 requests
    held by their backend and SIGTERM: the port closes in both processes,
    yet every held response is delivered whole, and the owner exits 0 with
    no worker left.
    """
    held = HeldBackend()
    heldPort = await stack.backend(held)
    proxy, transport = await start(
        stack,
        children,
        tmp_path,
        one=RecordingBackend("one"),
        two=RecordingBackend("two"),
    )
    owner, follower = transport.pid, await proxy.follower()
    config = tmp_path / "site.toml"
    original = config.read_text()
    second = freePort()
    heldRoute = f"""
[[route]]
path = "/held"
to = "http://127.0.0.1:{heldPort}/"
"""
    listen = f"""
[[listen]]
endpoint = "tcp:{second}:interface=127.0.0.1"
"""
    config.write_text(original + listen + heldRoute)
    transport.signalProcess("HUP")
    await until(
        stack,
        lambda: (
            b"worker 1: reload: " in proxy.child.output
            and b"(generation 2)" in proxy.child.output
        ),
        "the follower's reload",
    )
    other = Proxy(stack, second, proxy.log, proxy.child, {})
    onSecond = await servedByBoth(other, "/app/second/", {owner, follower})

    # The listener taken away again: no process listens there any more.
    config.write_text(original + heldRoute)
    transport.signalProcess("HUP")
    await until(
        stack,
        lambda: proxy.child.output.count(b"(generation 3)") == 2,
        "both processes' second reload",
    )
    try:
        await stack.connect(second)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the removed listener still accepts")

    responses = []
    for i in range(20):
        responses.append(
            stack.treq().get(f"{proxy.base}/held/{i}", headers={"Connection": "close"})
        )
        await pause(stack, 0.02)
    await until(stack, lambda: len(held.held) == 20, "20 held requests")
    transport.signalProcess("TERM")
    await pause(stack, 0.5)
    assert proxy.child.endedWith is None
    try:
        await stack.connect(proxy.port)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the port still accepts after SIGTERM")
    held.release()
    for i, d in enumerate(responses):
        response = await d
        assert response.code == 200
        assert await response.content() == b"finished /%d" % i
    ended = await proxy.child.whenEnded().addTimeout(BOUND, stack.reactor)
    assert isinstance(ended, ProcessDone), (ended, proxy.child.output)
    await until(stack, lambda: not alive(owner) and not alive(follower), "gone")
    lines = await proxy.lines(len(onSecond) + 20)
    heldLines = [line for line in lines if line[2].startswith("/held/")]
    assert len(heldLines) == 20
    assert {int(line[0]) for line in heldLines} == {owner, follower}
    assert b"Traceback" not in proxy.child.output, proxy.child.output.decode()


@pytest_twisted.ensureDeferred
async def test_aFollowerThatDiesIsStartedAgainAndStopsWithoutItsOwner(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    SIGKILL to the follower: the owner logs it and starts another, which
    serves. SIGKILL to the owner: the follower stops on its own.
    """
    proxy, transport = await start(
        stack,
        children,
        tmp_path,
        one=RecordingBackend("one"),
        two=RecordingBackend("two"),
    )
    first = await proxy.follower()
    os.kill(first, signal.SIGKILL)
    second = await proxy.follower(after=first)
    assert b"worker 1 ended unexpectedly" in proxy.child.output
    for i in range(20):
        assert (await proxy.get(f"/app/{i}"))[0] == 200
    lines = await proxy.lines(20)
    assert second in {int(line[0]) for line in lines}
    restarts = await metric(proxy, "twisted_proxy_worker_restarts_total")
    assert restarts == {"": 1.0}, restarts
    processes = await metric(proxy, "twisted_proxy_worker_processes")
    assert processes == {"": 2.0}, processes
    transport.signalProcess("KILL")
    await until(stack, lambda: not alive(second), "the follower to stop")


@pytest_twisted.ensureDeferred
async def test_sigusr1ReopensEveryProcessAccessLog(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    logrotate's way with two processes: the log moved, SIGUSR1 to the owner;
    the next lines of both processes go to a new file, none to the old one.
    """
    proxy, transport = await start(
        stack,
        children,
        tmp_path,
        one=RecordingBackend("one"),
        two=RecordingBackend("two"),
    )
    owner, follower = transport.pid, await proxy.follower()
    for i in range(20):
        assert (await proxy.get(f"/app/before/{i}"))[0] == 200
    await proxy.lines(20)
    os.rename(proxy.log, tmp_path / "access.log.1")
    transport.signalProcess(signal.SIGUSR1)
    await until(stack, proxy.log.exists, "a new access log")
    await pause(stack, 0.3)
    after = await servedByBoth(proxy, "/app/after/", {owner, follower})
    lines = await proxy.lines(len(after))
    assert all(line[2].startswith("/app/after/") for line in lines)
    old = (tmp_path / "access.log.1").read_text().splitlines()
    assert len(old) == 20
    await stop(stack, proxy, transport, {owner, follower})
