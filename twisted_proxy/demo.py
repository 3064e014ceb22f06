"""
The demo that ``make run`` starts: small HTTP backends that answer with their
name, and the proxy in front of them.

``python -m twisted_proxy.demo 9001 9002`` serves "backend 1" on
127.0.0.1:9001 and "backend 2" on 127.0.0.1:9002 until SIGINT, SIGTERM or
SIGHUP (port 0: any free port, announced once bound). With
``--proxy etc/twisted-proxy.toml`` it then runs ``twistd -n proxy`` on
that file, or, for ports other than the ones it names, on a copy under
``build/demo/`` with one balancer member per port; when the proxy exits, for
whatever reason, the backends stop too.

Every port is bound before anything is announced or the proxy is started: a
port that cannot be had stops the demo with one line that names it and says
how to choose others.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Generic, TypeVar

from twisted.internet.defer import (
    Deferred,
    TimeoutError,
    maybeDeferred,
    race,
    succeed,
)
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError, ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import react
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

HOST = "127.0.0.1"
# The ports the shipped demo configuration (etc/twisted-proxy.toml) names.
DEFAULT_PORTS = (9001, 9002)
# Where a configuration for other ports is written.
GENERATED_CONFIG = Path("build", "demo", "twisted-proxy.toml")
# The table the demo's backends are listed in, from its first entry to the end
# of the file.
MEMBER_TABLE = "[[balancer.demo.member]]"
# The stop signals: a terminal's Ctrl-C and hang-up, and kill's default.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Asked to stop, the proxy gets SIGTERM and this long to drain its requests
# (its shutdown_grace is 30 s by default) before SIGKILL.
PROXY_KILL_AFTER = 40.0
# The proxy runs in a process group of its own: a terminal's signals reach
# only the demo, which stops the proxy with one SIGTERM. (A SIGINT that
# reached twistd before its reactor ran would end it with a traceback, and
# SIGHUP makes the proxy reload its certificates.)
_OWN_GROUP = "import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])"

_T = TypeVar("_T")


class DemoError(Exception):
    """A reason the demo cannot run, said in one line."""


def parsePorts(words: Sequence[str]) -> tuple[int, ...]:
    """
    The backend ports named by C{words} (L{DEFAULT_PORTS} for none); 0 asks
    for any free port.

    @raise DemoError: a word is not a port number, or a port is named twice.
    """
    ports: list[int] = []
    for word in words:
        if not (word.isascii() and word.isdigit() and int(word) <= 65535):
            raise DemoError(
                f"demo: {word!r} is not a port number (1-65535, or 0 for any "
                f"free one); choose ports with: {_makeRun(otherPorts(DEFAULT_PORTS))}"
            )
        port = int(word)
        if port and port in ports:
            raise DemoError(f"demo: port {port} is named twice")
        ports.append(port)
    return tuple(ports) or DEFAULT_PORTS


def otherPorts(ports: Sequence[int]) -> tuple[int, ...]:
    """Ports to suggest instead of C{ports}: each 100 further on (or back)."""
    return tuple(port + 100 if port + 100 <= 65535 else port - 100 for port in ports)


def _makeRun(ports: Sequence[int]) -> str:
    return f'make run DEMO_PORTS="{" ".join(map(str, ports))}"'


def cannotListen(failures: Sequence[tuple[int, str]], ports: Sequence[int]) -> str:
    """
    The one line that says which of C{ports} could not be listened on and why
    (C{failures}: port and reason), and how to choose others.
    """
    where = ", ".join(f"{HOST}:{port} ({reason})" for port, reason in failures)
    return (
        f"demo: cannot listen on {where}; "
        f"choose other ports with: {_makeRun(otherPorts(ports))}"
    )


def proxyConfig(template: str, ports: Sequence[int], source: str) -> str:
    """
    The demo configuration C{template} (read from C{source}) with its balancer
    members replaced by one per backend port, in order.

    @raise DemoError: C{template} has no L{MEMBER_TABLE}.
    """
    head, found, _ = template.partition(MEMBER_TABLE)
    if not found:
        raise DemoError(f"demo: {source} has no {MEMBER_TABLE} to replace")
    members = "\n".join(
        f'{MEMBER_TABLE}\nurl = "http://{HOST}:{port}"\nroute = "{number}"\n'
        for number, port in enumerate(ports, start=1)
    )
    return (
        f"# Written by `{_makeRun(ports)}` from {source}: the same demo,\n"
        "# with one balancer member per backend port.\n\n"
        f"{head}{members}"
    )


def exitStatus(exitCode: int | None, signalNumber: int | None) -> int:
    """
    The demo's exit status once the proxy ended with C{exitCode} or was
    killed by C{signalNumber}: 0 when it stopped as asked (SIGINT, SIGTERM),
    its own status when it failed, 128 plus the signal as a shell says it.
    """
    if signalNumber in (signal.SIGINT, signal.SIGTERM):
        return 0
    if signalNumber is not None:
        return 128 + signalNumber
    return exitCode or 0


def killedMessage(signalNumber: int | None) -> str | None:
    """
    What the demo says when the proxy was killed by C{signalNumber}, as it
    can say nothing itself; None when it ended on its own or stopped as asked.
    """
    if signalNumber is None or signalNumber in (signal.SIGINT, signal.SIGTERM):
        return None
    try:
        name = signal.Signals(signalNumber).name
    except ValueError:
        name = f"signal {signalNumber}"
    return f"demo: the proxy was killed by {name}; the backends are stopped"


class NamedBackend(Resource):
    """Answer every request with this backend's name and what it was asked."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-backend", self.name.encode())
        return f"{self.name}\n".encode()


class _Once(Generic[_T]):
    """A value that is set once, and whoever waits for it."""

    def __init__(self) -> None:
        self._value: tuple[_T] | None = None
        self._waiters: list[Deferred[_T]] = []

    def set(self, value: _T) -> None:
        if self._value is None:
            self._value = (value,)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(value)

    def wait(self) -> Deferred[_T]:
        """Fires with the value; cancelling it stops only this wait."""
        if self._value is not None:
            return succeed(self._value[0])
        waiter: Deferred[_T] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter


class _ProxyProcess(ProcessProtocol):
    """The proxy's process; its output goes straight to the demo's own."""

    def __init__(self) -> None:
        self.ended: _Once[BaseException] = _Once()

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        assert reason.value is not None
        self.ended.set(reason.value)


def _stopRequests(reactor: Any) -> Deferred[_Once[int]]:
    """
    Once the reactor runs: L{STOP_SIGNALS} as one stop request, however many
    arrive (Twisted's own handlers stop the reactor at once, and complain
    at the second).
    """
    requested: _Once[int] = _Once()

    def onSignal(number: int, frame: FrameType | None) -> None:
        reactor.callFromThread(requested.set, number)

    def install() -> _Once[int]:
        for number in STOP_SIGNALS:
            signal.signal(number, onSignal)
        return requested

    # After the reactor's start-up, which installs its own handlers.
    running: Deferred[None] = Deferred()
    reactor.callWhenRunning(running.callback, None)
    return running.addCallback(lambda _: install())


async def _listen(reactor: Any, ports: Sequence[int]) -> list[IListeningPort]:
    """A named backend on each port (on L{HOST}): all of them, or L{DemoError}."""
    listening: list[IListeningPort] = []
    failures: list[tuple[int, str]] = []
    for number, port in enumerate(ports, start=1):
        site = Site(NamedBackend(f"backend {number}"))
        site.noisy = False
        try:
            listening.append(
                await TCP4ServerEndpoint(reactor, port, interface=HOST).listen(site)
            )
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            failures.append((port, reason))
    if failures:
        await _close(listening)
        raise DemoError(cannotListen(failures, ports))
    return listening


async def _close(listening: Sequence[IListeningPort]) -> None:
    for listener in listening:
        await maybeDeferred(listener.stopListening)


def _configFor(template: Path, ports: Sequence[int]) -> Path:
    """The configuration the proxy runs on: C{template}, or a copy for C{ports}."""
    if tuple(ports) == DEFAULT_PORTS:
        return template
    try:
        text = proxyConfig(template.read_text("utf-8"), ports, str(template))
        GENERATED_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        GENERATED_CONFIG.write_text(text, "utf-8")
    except OSError as e:
        raise DemoError(f"demo: {e.filename}: {e.strerror}") from e
    return GENERATED_CONFIG


async def _runProxy(reactor: Any, config: Path, stop: _Once[int]) -> int:
    """Run C{twistd -n proxy} on C{config} until it exits or a stop is asked."""
    twistd = Path(sys.executable).with_name("twistd")
    if not os.access(twistd, os.X_OK):
        raise DemoError(f"demo: no twistd beside {sys.executable}")
    proxy = _ProxyProcess()
    args = ["-n", "--pidfile=", "proxy", "--config", str(config)]
    print(f"demo: starting the proxy: twistd {' '.join(args)}", flush=True)
    stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        process = reactor.spawnProcess(
            proxy,
            sys.executable,
            [sys.executable, "-c", _OWN_GROUP, str(twistd), *args],
            env=os.environ,
            childFDs={0: stdin, 1: 1, 2: 2},
        )
    finally:
        os.close(stdin)
    endedOrStopped: list[Deferred[Any]] = [proxy.ended.wait(), stop.wait()]
    await race(endedOrStopped)
    # Stopped: SIGTERM, then SIGKILL. (One that has ended cannot be signalled.)
    with contextlib.suppress(ProcessExitedAlready):
        process.signalProcess("TERM")
    try:
        ended = await proxy.ended.wait().addTimeout(PROXY_KILL_AFTER, reactor)
    except TimeoutError:
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess("KILL")
        ended = await proxy.ended.wait()
    signalNumber = getattr(ended, "signal", None)
    message = killedMessage(signalNumber)
    if message is not None:
        print(message, file=sys.stderr, flush=True)
    return exitStatus(getattr(ended, "exitCode", None), signalNumber)


async def _demo(reactor: Any, ports: Sequence[int], template: Path | None) -> None:
    stop = await _stopRequests(reactor)
    try:
        listening = await _listen(reactor, ports)
    except DemoError as e:
        print(e, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    bound = [int(x.getHost().port) for x in listening]  # type: ignore[attr-defined]
    for number, port in enumerate(bound, start=1):
        print(f"demo backend {number} on http://{HOST}:{port}/", flush=True)
    code = 0
    try:
        if template is None:
            await stop.wait()
        else:
            code = await _runProxy(reactor, _configFor(template, bound), stop)
    except DemoError as e:
        print(e, file=sys.stderr, flush=True)
        code = 1
    finally:
        await _close(listening)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a named backend per port given, and the proxy with C{--proxy}."""
    parser = argparse.ArgumentParser(
        prog="python -m twisted_proxy.demo",
        description="Demo backends that answer with their name, and the proxy.",
    )
    parser.add_argument(
        "--proxy",
        metavar="CONFIG",
        type=Path,
        help="also run twistd -n proxy on this demo configuration, for these ports",
    )
    parser.add_argument("ports", nargs="*", metavar="PORT")
    options = parser.parse_args(argv)
    try:
        ports = parsePorts(options.ports)
    except DemoError as e:
        sys.exit(str(e))
    try:
        react(_demo, (ports, options.proxy))
    finally:
        # On the way out (the reactor has put back Python's own handlers): one
        # more Ctrl-C must not end it with a traceback.
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)


if __name__ == "__main__":
    main()
