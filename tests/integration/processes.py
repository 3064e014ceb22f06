"""
Child processes for the tests that run the installed programs (twistd,
twisted-proxy): their output, their end, and waiting until they listen.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure

from tests.integration.support import Stack

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Every wait on a child process is bounded by this many seconds.
BOUND = 20.0
# How often to try connecting to a child that is starting up.
POLL = 0.05


def childEnv() -> dict[str, str]:
    """A small environment for child processes: the installed venv, nothing else."""
    return {
        name: os.environ[name]
        for name in ("PATH", "HOME", "LANG", "TMPDIR")
        if name in os.environ
    }


async def run(program: str, *args: str, cwd: Path) -> tuple[str, str, int]:
    """Run a program from the venv's bin; return (stdout, stderr, exit code)."""
    out, err, code = await getProcessOutputAndValue(
        str(BIN / program), args, env=childEnv(), path=str(cwd)
    )
    return out.decode(), err.decode(), code


class Child(ProcessProtocol):
    """A child process: its output, and a way to wait for its end."""

    def __init__(self) -> None:
        self.output = b""
        # The exception that says how the process ended, once it has.
        self.endedWith: BaseException | None = None
        self._endWaiters: list[defer.Deferred[BaseException]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        assert reason.value is not None
        self.endedWith = reason.value
        waiters, self._endWaiters = self._endWaiters, []
        for waiter in waiters:
            waiter.callback(reason.value)

    def whenEnded(self) -> defer.Deferred[BaseException]:
        """Fires with the exception that says how the process ended."""
        if self.endedWith is not None:
            return defer.succeed(self.endedWith)
        d: defer.Deferred[BaseException] = defer.Deferred()
        self._endWaiters.append(d)
        return d


# Ports handed out below the kernel's ephemeral range (32768 and up on
# Linux), where no client connection's source port and no port-0 listener
# can take them between the test choosing one and binding it.
_CHOSEN = range(20000, 32000)


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now, chosen at
    random below the ephemeral range (so nothing else is handed it before
    the caller binds it); one the kernel picks if none is found.
    """
    for _ in range(200):
        port = random.choice(_CHOSEN)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def listening(stack: Stack, child: Child, port: int) -> None:
    """Poll-connect to C{port} until the child listens there (bounded)."""
    for _ in range(int(BOUND / POLL)):
        assert child.endedWith is None, child.output
        try:
            await stack.connect(port)
        except ConnectionRefusedError:
            await deferLater(stack.reactor, POLL, lambda: None)
        else:
            return
    raise AssertionError(f"nothing listens on {port}:\n{child.output!r}")


async def until(stack: Stack, condition: Any, what: str) -> None:
    """Wait (bounded) until C{condition()} is true."""
    for _ in range(int(BOUND / POLL)):
        if condition():
            return
        await deferLater(stack.reactor, POLL, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


async def startTwistd(
    stack: Stack,
    children: list[tuple[Child, Any]],
    config: Path,
    port: int,
    *extra: str,
) -> tuple[Child, Any]:
    """Run the real C{twistd -n proxy --config CONFIG}; wait until it listens."""
    child = Child()
    argv = ["twistd", "-n", "--pidfile=", "proxy", "--config", str(config), *extra]
    transport = stack.reactor.spawnProcess(
        child, str(BIN / "twistd"), argv, env=childEnv(), path=str(config.parent)
    )
    children.append((child, transport))
    await listening(stack, child, port)
    return child, transport
