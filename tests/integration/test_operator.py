"""
What an operator meets first, with the real installed programs: start-up
failures are one line and exit status 1, SIGUSR1 and SIGHUP reopen the logs
after logrotate moved them, SIGTERM exits 0 with every access-log line
written, and a daemon's access log goes to twistd's log.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.error import ProcessDone

from tests.integration.processes import (
    BOUND,
    Child,
    freePort,
    listening,
    run,
    startTwistd,
    until,
)
from tests.integration.support import RecordingBackend, Stack
from tests.tlsfiles import TestCA


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else already listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def siteConfig(tmp_path: Path, port: int, backendPort: int, extra: str = "") -> Path:
    config = tmp_path / "site.toml"
    config.write_text(
        f"""
[proxy]
{extra}
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{backendPort}/"
"""
    )
    return config


@pytest.mark.parametrize(
    "command",
    [
        ("twisted-proxy", "run", "{config}"),
        ("twisted-proxy", "run", "--config", "{config}"),
        ("twistd", "-n", "--pidfile=", "proxy", "--config", "{config}"),
    ],
    ids=["run-FILE", "run--config", "twistd-n"],
)
@pytest_twisted.ensureDeferred
async def test_portInUseIsOneLine(
    tmp_path: Path, taken: int, command: tuple[str, ...]
) -> None:
    """A port already in use: one line naming key, endpoint and reason; exit 1."""
    config = siteConfig(tmp_path, taken, 9, 'access_log = "access.log"')
    args = [a.replace("{config}", str(config)) for a in command[1:]]
    out, err, code = await run(command[0], *args, cwd=tmp_path)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    [line] = err.splitlines()
    assert line == (
        f"{config}: listen[0].endpoint: cannot listen on"
        f" tcp:{taken}:interface=127.0.0.1: Address already in use"
        " (is another server running on it?)"
    )
    assert not (tmp_path / "twistd.pid").exists()


@pytest_twisted.ensureDeferred
async def test_anApacheFilesNoticesComeOnce(tmp_path: Path, taken: int) -> None:
    """run on an Apache file: each importer notice once, then the one error."""
    config = tmp_path / "site.conf"
    config.write_text(
        "LoadModule proxy_module modules/mod_proxy.so\n"
        f"Listen 127.0.0.1:{taken}\nProxyPass / http://127.0.0.1:9/\n"
    )
    out, err, code = await run("twisted-proxy", "run", str(config), cwd=tmp_path)
    assert code == 1, out + err
    assert err.splitlines() == [
        f"notice: {config}:1: LoadModule: how httpd runs its processes: no meaning"
        " here, skipped",
        f"{config}: listen[0].endpoint: cannot listen on"
        f" tcp:{taken}:interface=127.0.0.1: Address already in use"
        " (is another server running on it?)",
    ]


@pytest_twisted.ensureDeferred
async def test_debugShowsTheTraceback(tmp_path: Path, taken: int) -> None:
    """--log-level debug shows where start-up failed."""
    config = siteConfig(tmp_path, taken, 9)
    out, err, code = await run(
        "twisted-proxy", "run", str(config), "--log-level", "debug", cwd=tmp_path
    )
    assert code == 1
    assert "Traceback" in out + err
    assert "StartupError: listen[0].endpoint: cannot listen on" in out + err


@pytest.mark.parametrize("broken", ["missing", "mismatched"])
@pytest_twisted.ensureDeferred
async def test_runNamesBadCertificate(tmp_path: Path, broken: str) -> None:
    """A missing or mismatched key: its message on stderr, exit 1, from run too."""
    ca = TestCA(tmp_path)
    ca.issue("localhost", stem="proxy")
    other = ca.issue("localhost", stem="other")
    if broken == "missing":
        os.remove(tmp_path / "proxy.key")
        expected = f"{tmp_path}/proxy.key: no such file"
    else:
        os.replace(other.key, tmp_path / "proxy.key")
        expected = (
            f"{tmp_path}/proxy.key: this key does not match the certificate"
            f" in {tmp_path}/proxy.pem"
        )
    config = tmp_path / "site.toml"
    config.write_text(
        f"""
[[listen]]
endpoint = "tcp:{freePort()}:interface=127.0.0.1"
[listen.tls]
certificate = "proxy.pem"
key = "proxy.key"
"""
    )
    for command in (
        ["twisted-proxy", "run", str(config)],
        ["twistd", "-n", "proxy", "--config", str(config)],
    ):
        out, err, code = await run(*command, cwd=tmp_path)
        assert code == 1, out + err
        assert err == f"{config}: listen[0].tls.key: {expected}\n", command
        assert "Traceback" not in out


async def get(stack: Stack, port: int, path: str) -> None:
    response = await stack.treq().get(f"http://127.0.0.1:{port}{path}")
    assert response.code == 200
    await response.content()


@pytest_twisted.ensureDeferred
async def test_rotateWithSignalsThenStopCleanly(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """
    logrotate's way: mv the access log, SIGUSR1; the proxy keeps running and
    the next lines go to a new file. SIGHUP does it too. SIGTERM then exits 0
    with the buffered lines written.
    """
    backendPort = await stack.backend(RecordingBackend())
    port = freePort()
    log = tmp_path / "access.log"
    config = siteConfig(tmp_path, port, backendPort, f'access_log = "{log}"')
    child, transport = await startTwistd(stack, children, config, port)
    await get(stack, port, "/one")
    await until(stack, lambda: b"/one" in log.read_bytes(), "the first line")
    os.rename(log, tmp_path / "access.log.1")
    transport.signalProcess(signal.SIGUSR1)
    await until(stack, lambda: log.exists(), "a new access.log")
    await get(stack, port, "/two")
    os.rename(log, tmp_path / "access.log.2")
    transport.signalProcess("HUP")
    await until(stack, lambda: log.exists(), "another new access.log")
    await get(stack, port, "/three")
    transport.signalProcess("TERM")
    ended = await child.whenEnded().addTimeout(BOUND, stack.reactor)
    assert isinstance(ended, ProcessDone), (ended, child.output)
    assert ended.exitCode == 0

    def paths(name: str) -> list[str]:
        lines = (tmp_path / name).read_text().splitlines()
        return [line.split('"')[1].split()[1] for line in lines]

    assert paths("access.log.1") == ["/one"]
    assert paths("access.log.2") == ["/two"]
    assert paths("access.log") == ["/three"]
    assert child.output.count(b"logs reopened") == 2
    assert b"Traceback" not in child.output


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_daemonLogsAccessToTwistdLogAndReopensIt(
    stack: Stack, tmp_path: Path
) -> None:
    """
    twistd as a daemon: access_log = "-" goes to twistd's log file (standard
    output is /dev/null), and SIGUSR1 after mv reopens that file.
    """
    backendPort = await stack.backend(RecordingBackend())
    port = freePort()
    config = siteConfig(tmp_path, port, backendPort, 'access_log = "-"')
    twistdLog = tmp_path / "twistd.log"
    pidfile = tmp_path / "twistd.pid"
    out, err, code = await run(
        "twistd",
        f"--logfile={twistdLog}",
        f"--pidfile={pidfile}",
        *("proxy", "--config", str(config)),
        cwd=tmp_path,
    )
    assert code == 0, out + err
    pid = int(pidfile.read_text())
    try:
        await listening(stack, Child(), port)
        await get(stack, port, "/before")
        await until(
            stack, lambda: b"GET /before" in twistdLog.read_bytes(), "the first line"
        )
        os.rename(twistdLog, tmp_path / "twistd.log.1")
        os.kill(pid, signal.SIGUSR1)
        await until(stack, lambda: twistdLog.exists(), "a new twistd.log")
        await get(stack, port, "/after")
        os.kill(pid, signal.SIGTERM)
        await until(stack, lambda: not alive(pid), "the daemon to stop")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    old = (tmp_path / "twistd.log.1").read_text()
    new = twistdLog.read_text()
    assert "[twisted_proxy.access#info] 127.0.0.1 - - [" in old
    assert '"GET /before HTTP/1.1" 200' in old
    assert '"GET /after HTTP/1.1" 200' in new
    assert "GET /after" not in old
    assert "Server Shut Down." in new
    assert not pidfile.exists()


@pytest_twisted.ensureDeferred
async def test_pythonDashM(tmp_path: Path) -> None:
    """python -m twisted_proxy is the twisted-proxy command."""
    out, err, code = await run(
        "python", "-m", "twisted_proxy", "--version", cwd=tmp_path
    )
    assert (code, err) == (0, "")
    assert out.startswith("twisted-proxy ")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    out, err, code = await run(
        "python", "-m", "twisted_proxy", "check", str(empty), cwd=tmp_path
    )
    assert code == 1
    assert err.startswith(f"{empty}: listen: no [[listen]] table")
