"""
twisted-proxy as an installed program: the twistd plugin is found, a wheel
installs it without shadowing Twisted, the real ``twistd -n proxy`` serves and
stops on SIGTERM, and the ``twisted-proxy`` command checks and lists a config.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import zipfile
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import threads
from twisted.internet.error import (
    ProcessDone,
)
from twisted.internet.task import deferLater

from tests.integration.processes import (
    BOUND,
    POLL,
    ROOT,
    Child,
    freePort,
    run,
    startTwistd,
)
from tests.integration.support import RecordingBackend, Stack
from tests.tlsfiles import TestCA


@pytest_twisted.ensureDeferred
async def test_twistdHelpListsProxy(tmp_path: Path) -> None:
    """``twistd --help`` lists the ``proxy`` plugin."""
    out, err, code = await run("twistd", "--help", cwd=tmp_path)
    assert code == 0, err
    commands = [line.split() for line in out.splitlines() if line.startswith("    ")]
    assert ["proxy", "A", "reverse", "proxy"] in [c[:4] for c in commands]


def _copySource(destination: Path) -> None:
    """The project's sources as a clean checkout would have them (no build output)."""
    shutil.copytree(
        ROOT,
        destination,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "tests",
            "bench",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "dropin.cache",
            ".*_cache",
        ),
    )


@pytest_twisted.ensureDeferred
async def test_wheelInstallsPluginWithoutShadowingTwisted(tmp_path: Path) -> None:
    """``pip install .`` ships the plugin and py.typed, and no twisted/__init__.py."""
    source = tmp_path / "src"
    _copySource(source)
    out, err, code = await run(
        "python",
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
        *("--disable-pip-version-check", "-w", str(tmp_path / "dist"), "."),
        cwd=source,
    )
    assert code == 0, (
        "building the wheel offline needs setuptools>=64 and wheel in the venv\n"
        + out
        + err
    )
    [wheel] = (tmp_path / "dist").glob("twisted_proxy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted_proxy/py.typed" in names
    # Every package of the tree is shipped (pyproject.toml lists them).
    packages = {
        str(init.parent.relative_to(source))
        for init in (source / "twisted_proxy").rglob("__init__.py")
    }
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()
    assert "twisted/plugins/twisted_proxy_plugin.py" in names
    assert not any(name.endswith("dropin.cache") for name in names)
    site = tmp_path / "site"
    _, err, code = await run(
        "python",
        *("-m", "pip", "install", "--no-deps", "--no-index"),
        *("--disable-pip-version-check", "--target", str(site), str(wheel)),
        cwd=tmp_path,
    )
    assert code == 0, err
    assert (site / "twisted" / "plugins" / "twisted_proxy_plugin.py").is_file()
    assert (site / "twisted_proxy" / "py.typed").is_file()
    assert not (site / "twisted" / "__init__.py").exists()
    assert not (site / "twisted" / "plugins" / "__init__.py").exists()


@pytest_twisted.ensureDeferred
async def test_twistdServesAndStopsOnSigterm(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """The real ``twistd -n proxy --config FILE`` serves, then shuts down on SIGTERM."""
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    port = freePort()
    config = tmp_path / "site.toml"
    config.write_text(
        f"""
[proxy]
access_log = "-"
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{backendPort}/"
"""
    )
    child, transport = await startTwistd(stack, children, config, port)
    response = await stack.treq().get(f"http://127.0.0.1:{port}/e2e?x=1")
    assert response.code == 200
    assert await response.text() == "backend saw GET /e2e?x=1"
    assert backend.requests[0].header(b"x-forwarded-for") == b"127.0.0.1"
    transport.signalProcess("TERM")
    ended = await child.whenEnded().addTimeout(BOUND, stack.reactor)
    # A stop SIGTERM asked for, done cleanly, is exit status 0.
    assert isinstance(ended, ProcessDone), (ended, child.output)
    assert ended.exitCode == 0
    assert b"Main loop terminated." in child.output
    # The buffered access log was flushed on the way out.
    assert b'"GET /e2e?x=1 HTTP/1.1" 200' in child.output
    assert b"Traceback" not in child.output


def _servedCommonName(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        peer = tls.getpeercert()
    assert peer is not None
    subject: Any = peer["subject"]
    return str(next(v for rdn in subject for k, v in rdn if k == "commonName"))


@pytest_twisted.ensureDeferred
async def test_twistdReloadsCertificatesOnSighup(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """Under twistd, SIGHUP makes new handshakes use renewed certificate files."""
    ca = TestCA(tmp_path)
    ca.issue("localhost", commonName="first.test", stem="proxy")
    port = freePort()
    config = tmp_path / "site.toml"
    config.write_text(
        f"""
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[listen.tls]
certificate = "proxy.pem"
key = "proxy.key"
"""
    )
    child, transport = await startTwistd(stack, children, config, port)
    name = await threads.deferToThread(_servedCommonName, port, ca.certificate)
    assert name == "first.test"
    renewed = ca.issue("localhost", commonName="renewed.test")
    os.replace(renewed.certificate, tmp_path / "proxy.pem")
    os.replace(renewed.key, tmp_path / "proxy.key")
    transport.signalProcess("HUP")
    for _ in range(int(BOUND / POLL)):
        if b"certificates reloaded" in child.output:
            break
        await deferLater(stack.reactor, POLL, lambda: None)
    name = await threads.deferToThread(_servedCommonName, port, ca.certificate)
    assert name == "renewed.test", child.output
    transport.signalProcess("TERM")
    await child.whenEnded().addTimeout(BOUND, stack.reactor)
    assert b"Traceback" not in child.output


BROKEN = """
[proxy]
timeout = "soon"
colour = "blue"
[[listen]]
endpoint = 8080
[[route]]
path = "/"
to = "ftp://127.0.0.1/"
[balancer.web]
method = "sometimes"
"""


@pytest_twisted.ensureDeferred
async def test_checkListsEveryErrorWithFileAndKey(tmp_path: Path) -> None:
    """``twisted-proxy check`` exits 1 naming the file and key of every error."""
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN)
    out, err, code = await run("twisted-proxy", "check", str(broken), cwd=tmp_path)
    assert code == 1
    assert "ok" not in out
    lines = err.strip().splitlines()
    for key in (
        "proxy.timeout",
        "proxy.colour",
        "listen[0].endpoint",
        "route[0].to",
        "balancer.web.method",
    ):
        matching = [line for line in lines if key in line]
        assert matching, f"{key} not reported:\n{err}"
        assert all(line.startswith(f"{broken}: ") for line in matching), err
    good = ROOT / "etc" / "scenario-3-microservices.toml"
    out, err, code = await run("twisted-proxy", "check", str(good), cwd=tmp_path)
    assert (out, err, code) == (f"{good}: ok\n", "", 0)


@pytest_twisted.ensureDeferred
async def test_routesPrintedLongestPrefixFirst(tmp_path: Path) -> None:
    """``twisted-proxy routes`` prints scenario 3's routes, longest prefix first."""
    out, err, code = await run(
        "twisted-proxy",
        "routes",
        str(ROOT / "etc" / "scenario-3-microservices.toml"),
        cwd=tmp_path,
    )
    assert code == 0, err
    header, *rows = [line.split() for line in out.strip().splitlines()]
    assert header == ["HOST", "PATH", "TARGET", "OPTIONS"]
    assert [row[1:3] for row in rows] == [
        ["/api/payments/", "http://127.0.0.1:9132/"],
        ["/api/users/", "http://127.0.0.1:9131/"],
        ["/", "http://127.0.0.1:9133/"],
    ]
    assert "timeout=45" in rows[1]
    assert "preserve_host=true" in rows[2]
