"""
The ``make run`` demo as a user runs it: ``python -m twisted_proxy.demo`` in
a child process, its backends and proxy on 127.0.0.1, asked for real HTTP.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from tests.integration.support import Stack, theReactor

TEMPLATE = Path(__file__).resolve().parents[2] / "etc" / "twisted-proxy.toml"
# Every wait on the demo is bounded by this many seconds.
BOUND = 20.0
# How often to try connecting to a proxy that is starting up.
POLL = 0.05
ANNOUNCED = re.compile(rb"^demo backend (\d+) on http://127\.0\.0\.1:(\d+)/$", re.M)


class Demo(ProcessProtocol):
    """The demo's process: what it wrote on each stream, and how it ended."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.endedWith: BaseException | None = None
        self._waiters: list[Deferred[None]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._wake()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._wake()

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        self.endedWith = reason.value
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def until(self, test: Callable[[], bool], within: float = BOUND) -> None:
        """Wait (at most C{within} seconds) until C{test()} holds."""
        while not test():
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            await waiter.addTimeout(within, theReactor())

    async def ended(self) -> BaseException:
        """How the process ended, once it has."""
        await self.until(lambda: self.endedWith is not None)
        assert self.endedWith is not None
        return self.endedWith

    async def backendPorts(self, count: int) -> list[int]:
        """The ports of the C{count} backends, once the demo announced them."""

        def announced() -> bool:
            assert self.endedWith is None, self.out + self.err
            return len(ANNOUNCED.findall(self.out)) == count

        await self.until(announced)
        return [int(port) for _, port in ANNOUNCED.findall(self.out)]


@pytest_twisted.async_yield_fixture
async def demos() -> AsyncIterator[Callable[..., tuple[Demo, Any]]]:
    """Start demos; each still running at the end is stopped, killed if need be."""
    started: list[tuple[Demo, Any]] = []

    def start(*args: str, cwd: Path) -> tuple[Demo, Any]:
        demo = Demo()
        argv = [sys.executable, "-m", "twisted_proxy.demo", *args]
        transport = theReactor().spawnProcess(
            demo, sys.executable, argv, env=dict(os.environ), path=str(cwd)
        )
        started.append((demo, transport))
        return demo, transport

    yield start
    for demo, transport in started:
        # SIGTERM first: the demo stops its proxy, which SIGKILL would orphan.
        for name in ("TERM", "KILL"):
            if demo.endedWith is None:
                transport.signalProcess(name)
                try:
                    await demo.ended()
                except Exception:
                    continue
        await demo.ended()


def heldPort() -> socket.socket:
    """A socket listening on a free 127.0.0.1 port, for the test to hold."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held


def portOf(held: socket.socket) -> int:
    return int(held.getsockname()[1])


def freePort() -> int:
    """A 127.0.0.1 port nothing listens on right now."""
    with heldPort() as held:
        return portOf(held)


async def refused(stack: Stack, port: int) -> bool:
    """Whether nothing listens on C{port} any more."""
    try:
        client = await stack.connect(port)
    except ConnectionRefusedError:
        return True
    assert client.transport is not None
    client.transport.loseConnection()
    return False


async def answers(stack: Stack, url: str) -> bytes:
    """The body of a GET of C{url}."""
    response = await stack.treq().get(url)
    assert response.code == 200
    body: bytes = await response.content()
    return body


def demoTemplate(tmp_path: Path, proxyPort: int) -> Path:
    """etc/twisted-proxy.toml, its proxy listening on C{proxyPort} instead."""
    text = TEMPLATE.read_text("utf-8")
    assert '"tcp:8080:interface=127.0.0.1"' in text
    template = tmp_path / "demo.toml"
    template.write_text(text.replace("tcp:8080:", f"tcp:{proxyPort}:"), "utf-8")
    return template


def exitCode(ended: BaseException) -> int | None:
    return getattr(ended, "exitCode", None)


@pytest_twisted.ensureDeferred
async def test_takenPortStopsTheDemoInOneLine(demos: Any, tmp_path: Path) -> None:
    """A port that is taken: one line naming it and DEMO_PORTS, nothing served."""
    with heldPort() as held:
        taken = portOf(held)
        demo, _ = demos("0", str(taken), cwd=tmp_path)
        ended = await demo.ended()
    assert isinstance(ended, ProcessTerminated)
    assert ended.exitCode == 1
    assert demo.out == b""
    [line] = demo.err.decode().splitlines()
    assert f"127.0.0.1:{taken} (" in line
    assert 'make run DEMO_PORTS="' in line
    assert "Traceback" not in line


@pytest_twisted.ensureDeferred
async def test_backendsAnswerUntilInterrupted(
    demos: Any, stack: Stack, tmp_path: Path
) -> None:
    """Each announced backend answers with its name; SIGINT frees the ports."""
    demo, transport = demos("0", "0", cwd=tmp_path)
    ports = await demo.backendPorts(2)
    for number, port in enumerate(ports, start=1):
        body = await answers(stack, f"http://127.0.0.1:{port}/")
        assert body == f"backend {number}\n".encode()
    transport.signalProcess("INT")
    assert exitCode(await demo.ended()) == 0
    assert demo.err == b""
    for port in ports:
        assert await refused(stack, port)


async def proxyListening(stack: Stack, demo: Demo, port: int) -> None:
    """Poll-connect to the demo's proxy until it listens (bounded)."""
    for _ in range(int(BOUND / POLL)):
        assert demo.endedWith is None, demo.out + demo.err
        if not await refused(stack, port):
            return
        await deferLater(stack.reactor, POLL, lambda: None)
    raise AssertionError(f"no proxy on {port}:\n{(demo.out + demo.err).decode()}")


@pytest.mark.parametrize("stopSignal", ["INT", "HUP"])
@pytest_twisted.ensureDeferred
async def test_proxyRoutesToTheChosenPorts(
    demos: Any, stack: Stack, tmp_path: Path, stopSignal: str
) -> None:
    """With --proxy, the proxy balances the ports the backends got; both stop."""
    proxyPort = freePort()
    template = demoTemplate(tmp_path, proxyPort)
    demo, transport = demos("--proxy", str(template), "0", "0", cwd=tmp_path)
    ports = await demo.backendPorts(2)
    await proxyListening(stack, demo, proxyPort)
    written = (tmp_path / "build" / "demo" / "twisted-proxy.toml").read_text()
    assert [f'url = "http://127.0.0.1:{port}"' in written for port in ports] == [
        True,
        True,
    ]
    bodies = [await answers(stack, f"http://127.0.0.1:{proxyPort}/") for _ in range(2)]
    assert sorted(bodies) == [b"backend 1\n", b"backend 2\n"]
    transport.signalProcess(stopSignal)
    assert exitCode(await demo.ended()) == 0
    for port in [proxyPort, *ports]:
        assert await refused(stack, port)


@pytest_twisted.ensureDeferred
async def test_proxyFailingStopsTheBackends(
    demos: Any, stack: Stack, tmp_path: Path
) -> None:
    """A proxy that cannot start ends the demo, non-zero, its backends closed."""
    with heldPort() as held:
        template = demoTemplate(tmp_path, portOf(held))
        demo, _ = demos("--proxy", str(template), "0", "0", cwd=tmp_path)
        ports = await demo.backendPorts(2)
        ended = await demo.ended()
    assert exitCode(ended) not in (0, None)
    for port in ports:
        assert await refused(stack, port)


@pytest.mark.parametrize("word", ["http", "70000"])
@pytest_twisted.ensureDeferred
async def test_notAPort(demos: Any, tmp_path: Path, word: str) -> None:
    """A word that is not a port: one line, exit status 1, nothing started."""
    demo, _ = demos(word, cwd=tmp_path)
    assert exitCode(await demo.ended()) == 1
    assert demo.out == b""
    [line] = demo.err.decode().splitlines()
    assert "is not a port number" in line
