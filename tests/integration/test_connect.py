"""
CONNECT tunnels end to end: real clients (curl, Python's http.client,
openssl s_client) through a proxy with C{[listen.connect]} to a TLS server
on 127.0.0.1, and raw clients for the refusals, byte-exact relaying,
half-close and the idle timeout.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest_twisted
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from tests.integration.streampeers import (
    Pump,
    destination,
    heldBack,
    rawClient,
    run,
    serving,
    until,
)
from tests.integration.support import (
    RecordingBackend,
    Stack,
    accessLogLines,
    deferLater,
    theReactor,
)
from tests.tlsfiles import ServingTLS, TestCA
from twisted_proxy.config import load
from twisted_proxy.frontends.tunnel import CONNECTED
from twisted_proxy.service import ProxyService

PROXY = """
[proxy]
access_log = "{log}"
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[listen.connect]
allow_ports = [{port}]
allow_destinations = [{destinations}]
idle_timeout = {idle}
"""


async def tunnellingProxy(
    stack: Stack,
    folder: Path,
    port: int,
    destinations: str = '"127.0.0.1/32"',
    idle: float = 30.0,
) -> tuple[ProxyService, Path]:
    """A proxy that tunnels to C{port}; it and its access log's path."""
    log = folder / "access.log"
    proxy = await stack.proxy(
        PROXY, log=log, port=port, destinations=destinations, idle=idle
    )
    return proxy, log


async def tlsServer(stack: Stack, folder: Path) -> tuple[int, RecordingBackend, Path]:
    """An HTTPS server on 127.0.0.1 (a test CA's certificate): port, resource, CA."""
    ca = TestCA(folder)
    issued = ca.issue("localhost", "127.0.0.1", stem="destination")
    resource = RecordingBackend("destination")
    site = Site(resource)
    site.noisy = False
    stack.sites.append(site)
    factory = TLSMemoryBIOFactory(ServingTLS(issued), False, site)
    factory.noisy = False
    port = await stack.listen(factory)
    return port, resource, ca.certificate


async def untilLogged(proxy: ProxyService, log: Path, word: str) -> list[str]:
    """The access log's lines once one holds C{word} (at most 5 s)."""
    for _ in range(100):
        lines = accessLogLines(proxy, log)
        if any(word in line for line in lines):
            return lines
        await deferLater(theReactor(), 0.05)
    raise AssertionError(f"no access-log line with {word!r}: {lines}")


async def refusedReply(
    stack: Stack, proxyPort: int, target: bytes, after: bytes = b""
) -> bytes:
    """What a CONNECT to C{target} (C{after} sent with it) got before closing."""
    client = await rawClient(stack, proxyPort)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % target + after
    )
    await client.lost
    return bytes(client.received)


@pytest_twisted.ensureDeferred
async def test_curlThroughTunnel(stack: Stack, tmp_path: Path) -> None:
    """curl -p -x: TLS end to end through the tunnel, logged when it closes."""
    port, resource, ca = await tlsServer(stack, tmp_path)
    proxy, log = await tunnellingProxy(stack, tmp_path, port)
    done = await run(
        "curl",
        "--silent",
        "--show-error",
        "-p",
        "-x",
        f"http://127.0.0.1:{proxy.port}",
        "--cacert",
        str(ca),
        f"https://127.0.0.1:{port}/through/tunnel",
    )
    assert done.returncode == 0, done.stderr
    assert b"destination" in done.stdout
    assert resource.requests[-1].uri == b"/through/tunnel"
    lines = await untilLogged(proxy, log, "CONNECT")
    line = next(x for x in lines if "CONNECT" in x)
    assert f'"CONNECT 127.0.0.1:{port} HTTP/1.1" 200 ' in line
    sent = int(line.split('" 200 ')[1].split()[0])
    assert sent > 1000  # the server's TLS handshake and answer


@pytest_twisted.ensureDeferred
async def test_pythonSetTunnel(stack: Stack, tmp_path: Path) -> None:
    """Python's http.client.HTTPSConnection.set_tunnel, by the destination's name."""
    port, resource, ca = await tlsServer(stack, tmp_path)
    proxy, _ = await tunnellingProxy(stack, tmp_path, port, '"localhost"')

    def fetch() -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(ca))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", proxy.port, context=context, timeout=20
        )
        connection.set_tunnel("localhost", port)
        try:
            connection.request("GET", "/by/name")
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    status, body = await deferToThread(fetch)
    assert status == 200
    assert b"destination" in body
    assert resource.requests[-1].uri == b"/by/name"


@pytest_twisted.ensureDeferred
async def test_opensslProxy(stack: Stack, tmp_path: Path) -> None:
    """openssl s_client -proxy: a verified handshake and an answer."""
    port, resource, ca = await tlsServer(stack, tmp_path)
    proxy, _ = await tunnellingProxy(stack, tmp_path, port)
    done = await run(
        "openssl",
        "s_client",
        "-quiet",
        "-verify_return_error",
        "-proxy",
        f"127.0.0.1:{proxy.port}",
        "-connect",
        f"127.0.0.1:{port}",
        "-CAfile",
        str(ca),
        stdin=b"GET /from/openssl HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    )
    assert b"HTTP/1.0 200" in done.stdout or b"HTTP/1.1 200" in done.stdout, (
        done.stdout,
        done.stderr,
    )
    assert resource.requests[-1].uri == b"/from/openssl"


@pytest_twisted.ensureDeferred
async def test_bytesExactEarlyDataAndHalfClose(stack: Stack, tmp_path: Path) -> None:
    """
    Bytes sent with the CONNECT head and after it arrive exactly; the
    client's FIN reaches the destination as a FIN, whose answer still comes
    back before both close; the log has the bytes each way.
    """
    port, made = await destination(stack)
    proxy, log = await tunnellingProxy(stack, tmp_path, port)
    client = await rawClient(stack, proxy.port)
    early = b"early bytes before the 200\x00\xff"
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)
        + early
    )
    await until(stack.reactor, lambda: b"\r\n\r\n" in client.received, "200")
    assert bytes(client.received).startswith(
        b"HTTP/1.1 200 Connection established\r\n\r\n"
    )
    body = os.urandom(1 << 20)
    for offset in range(0, len(body), 65536):
        client.transport.write(body[offset : offset + 65536])  # type: ignore[union-attr]
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await made[0].finSeen
    assert bytes(made[0].received) == early + body
    await client.lost
    answer = b"after your FIN: %d bytes" % (len(early) + len(body))
    assert bytes(client.received).endswith(answer)
    lines = await untilLogged(proxy, log, "CONNECT")
    line = next(x for x in lines if "CONNECT" in x)
    assert f'"CONNECT 127.0.0.1:{port} HTTP/1.1" 200 {len(answer)} ' in line


@pytest_twisted.ensureDeferred
async def test_refusals(stack: Stack, tmp_path: Path) -> None:
    """
    Each refusal: its status, the connection closed, and nothing the client
    sent after the CONNECT head read as a request or sent anywhere.
    """
    port, made = await destination(stack)
    free, _ = await destination(stack)
    await defer.maybeDeferred(stack.ports.pop().stopListening)
    proxy, log = await tunnellingProxy(stack, tmp_path, port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    cases = [
        (b"127.0.0.1:%d" % (port + 1 if port + 1 != free else port + 2), 403),
        (b"127.0.0.2:%d" % port, 403),
        (b"198.51.100.1:%d" % port, 403),
        (b"127.1:%d" % port, 400),
        (b"127.0.0.1", 400),
        (b"http://127.0.0.1:%d/" % port, 400),
    ]
    for target, status in cases:
        reply = await refusedReply(stack, proxy.port, target, smuggled)
        assert reply.startswith(b"HTTP/1.1 %d " % status), (target, reply)
        assert reply.count(b"HTTP/1.1") == 1, (target, reply)
    assert made == []
    lines = accessLogLines(proxy, log)
    assert len(lines) == len(cases)
    assert not any("smuggled" in line for line in lines)


@pytest_twisted.ensureDeferred
async def test_wholeInternetIsNotLoopback(stack: Stack, tmp_path: Path) -> None:
    """
    0.0.0.0/0 and ::/0 reach no loopback address, by address or by a name
    that resolves to one; a name listed is let through to it.
    """
    port, made = await destination(stack)
    proxy, _ = await tunnellingProxy(
        stack, tmp_path, port, '"0.0.0.0/0", "::/0", "localhost"'
    )
    for host in (b"127.0.0.1", b"[::1]", b"0.0.0.0", b"[::ffff:127.0.0.1]"):
        reply = await refusedReply(stack, proxy.port, b"%s:%d" % (host, port))
        assert reply.startswith(b"HTTP/1.1 403 "), host
    assert made == []
    client = await rawClient(stack, proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port
    )
    await until(stack.reactor, lambda: bool(made), "the named destination")
    await until(stack.reactor, lambda: bool(client.received), "the answer")
    assert bytes(client.received).startswith(b"HTTP/1.1 200 ")
    client.transport.loseConnection()  # type: ignore[union-attr]
    await made[0].lost


@pytest_twisted.ensureDeferred
async def test_destinationRefuses(stack: Stack, tmp_path: Path) -> None:
    """A destination that refuses the connection: 502, the client closed."""
    free, _ = await destination(stack)
    await defer.maybeDeferred(stack.ports.pop().stopListening)
    proxy, _ = await tunnellingProxy(stack, tmp_path, free)
    reply = await refusedReply(stack, proxy.port, b"127.0.0.1:%d" % free)
    assert reply.startswith(b"HTTP/1.1 502 ")
    assert b"connection refused" in reply


@pytest_twisted.ensureDeferred
async def test_clientNotAllowed(stack: Stack, tmp_path: Path) -> None:
    """allow_clients without this client: 403 before anything is resolved."""
    port, made = await destination(stack)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [listen.connect]
        allow_ports = [{port}]
        allow_clients = ["192.0.2.0/24"]
        allow_destinations = ["127.0.0.1/32"]
        """,
        port=port,
    )
    reply = await refusedReply(stack, proxy.port, b"127.0.0.1:%d" % port)
    assert reply.startswith(b"HTTP/1.1 403 ")
    assert made == []


@pytest_twisted.ensureDeferred
async def test_withoutConnectTable(stack: Stack, tmp_path: Path) -> None:
    """No [listen.connect]: 405, as before."""
    port, made = await destination(stack)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        """
    )
    reply = await refusedReply(stack, proxy.port, b"127.0.0.1:%d" % port)
    assert reply.startswith(b"HTTP/1.1 405 ")
    assert made == []


@pytest_twisted.ensureDeferred
async def test_idleTunnelClosed(stack: Stack, tmp_path: Path) -> None:
    """A tunnel with no byte either way for idle_timeout: both sides closed."""
    port, made = await destination(stack)
    log = tmp_path / "access.log"
    proxy = await stack.proxy(
        PROXY.replace('"{log}"', '"{log}"\naccess_log_format = "json"'),
        log=log,
        port=port,
        destinations='"127.0.0.1/32"',
        idle=0.3,
    )
    client = await rawClient(stack, proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\nhello" % port
    )
    await until(stack.reactor, lambda: made and made[0].received, "data")
    await client.lost
    await made[0].lost
    lines = await untilLogged(proxy, log, "CONNECT")
    assert '"end_reason":"idle-timeout"' in lines[0], lines
    assert '"status":200' in lines[0], lines


@pytest_twisted.ensureDeferred
async def test_gracefulStopCutsTunnelsAfterGrace(stack: Stack, tmp_path: Path) -> None:
    """Stopping: an open tunnel runs on for shutdown_grace, then is cut."""
    port, made = await destination(stack)
    log = tmp_path / "access.log"
    proxy = await stack.proxy(
        PROXY.replace("[[listen]]", "shutdown_grace = 0.5\n[[listen]]"),
        log=log,
        port=port,
        destinations='"127.0.0.1/32"',
        idle=30,
    )
    client = await rawClient(stack, proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\nfirst" % port
    )
    await until(stack.reactor, lambda: made and made[0].received, "data")
    started = stack.reactor.seconds()
    stopped = proxy.stopService()
    await deferLater(stack.reactor, 0.2)
    client.transport.write(b" second")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: made[0].received == b"first second", "more")
    await stopped
    await client.lost
    assert stack.reactor.seconds() - started >= 0.45
    line = next(x for x in log.read_text().splitlines() if "CONNECT" in x)
    assert f'"CONNECT 127.0.0.1:{port} HTTP/1.1" 200 ' in line


@pytest_twisted.ensureDeferred
async def test_shippedConnectEdge(stack: Stack, tmp_path: Path) -> None:
    """
    etc/connect-edge.toml as shipped (listening on a free port): curl
    reaches the TLS server on localhost:9443 by its name, not by its address.
    """
    from dataclasses import replace

    etc = Path(__file__).resolve().parents[2] / "etc" / "connect-edge.toml"
    config = load(str(etc))
    config = replace(
        config,
        listen=(replace(config.listen[0], endpoint="tcp:0:interface=127.0.0.1"),),
    )
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", stem="destination")
    resource = RecordingBackend("destination")
    site = Site(resource)
    site.noisy = False
    stack.sites.append(site)
    factory = TLSMemoryBIOFactory(ServingTLS(issued), False, site)
    factory.noisy = False
    await stack.listen(factory, 9443)
    proxy = ProxyService(config, stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    proxyURL = f"http://127.0.0.1:{proxy.port}"
    byName = await run(
        "curl", "-sS", "-p", "-x", proxyURL, "--cacert", str(ca.certificate),
        "https://localhost:9443/edge",
    )  # fmt: skip
    assert byName.returncode == 0, byName.stderr
    assert resource.requests[-1].uri == b"/edge"
    byAddress = await run(
        "curl", "-sS", "-p", "-x", proxyURL, "-k", "https://127.0.0.1:9443/",
    )  # fmt: skip
    assert byAddress.returncode != 0
    assert b"403" in byAddress.stderr
    assert len(resource.requests) == 1


@pytest_twisted.ensureDeferred
async def test_reloadLeavesTunnelsOpen(stack: Stack, tmp_path: Path) -> None:
    """
    A reload that changes the listener (a new site takes its port) leaves
    an open tunnel relaying both ways; new CONNECTs follow the new table.
    """
    port, made = await destination(stack)
    other, _ = await destination(stack)
    site = tmp_path / "site.toml"
    text = textwrap.dedent(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [listen.connect]
        allow_ports = [{port}]
        allow_destinations = ["127.0.0.1/32"]
        """
    )
    site.write_text(text.format(port=port))
    proxy = ProxyService(load(str(site)), stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    client = await rawClient(stack, proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\nbefore" % port
    )
    await until(stack.reactor, lambda: made and made[0].received, "data")
    site.write_text(text.format(port=other))
    assert proxy.reload().ok
    client.transport.write(b" after")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: made[0].received == b"before after", "more")
    made[0].transport.write(b"still here")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: client.received.endswith(b"still here"), "down")
    reply = await refusedReply(stack, proxy.port, b"127.0.0.1:%d" % port)
    assert reply.startswith(b"HTTP/1.1 403 ")
    client.transport.loseConnection()  # type: ignore[union-attr]
    await made[0].lost


def htpasswd(path: Path, user: str, password: str, flag: str) -> None:
    """Add C{user} to the htpasswd file at C{path} with Apache's own htpasswd."""
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        ["htpasswd", "-b", *create, flag, str(path), user, password],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest_twisted.ensureDeferred
async def test_proxyUsersEveryHtpasswdFormat(stack: Stack, tmp_path: Path) -> None:
    """
    Users written by Apache's htpasswd in each of its formats tunnel with
    curl --proxy-user; a wrong password or none gets 407 and reaches nothing.
    """
    port, resource, ca = await tlsServer(stack, tmp_path)
    users = tmp_path / "htpasswd"
    flags = {"md5": "-m", "bcrypt": "-B", "sha1": "-s", "sha256": "-2", "sha512": "-5"}
    for name, flag in flags.items():
        htpasswd(users, name, f"pw-{name} \u00e9", flag)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = "{log}"
        access_log_format = "%u %r %>s"
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [listen.connect]
        allow_ports = [{port}]
        allow_destinations = ["127.0.0.1/32"]
        users = "{users}"
        """,
        log=tmp_path / "access.log",
        port=port,
        users=users,
    )
    base = ["curl", "-sS", "-p", "-x", f"http://127.0.0.1:{proxy.port}"]
    target = ["--cacert", str(ca), f"https://127.0.0.1:{port}/authed"]
    for name in flags:
        done = await run(*base, "--proxy-user", f"{name}:pw-{name} \u00e9", *target)
        assert done.returncode == 0, (name, done.stderr)
    assert len(resource.requests) == len(flags)
    for credentials in (["--proxy-user", "md5:wrong"], []):
        done = await run(*base, *credentials, *target)
        assert done.returncode != 0
        assert b"407" in done.stderr
    assert len(resource.requests) == len(flags)
    lines = await untilLogged(proxy, tmp_path / "access.log", "sha512 CONNECT")
    assert sorted(line.split()[0] for line in lines) == sorted([*flags, "-", "-"]), (
        lines
    )
    assert sum(line.endswith(" 407") for line in lines) == 2


@pytest_twisted.ensureDeferred
async def test_proxyUsersPythonAndFileChange(stack: Stack, tmp_path: Path) -> None:
    """
    Python's set_tunnel with a Proxy-Authorization header; a user added to
    the file while the proxy runs can tunnel at once.
    """
    port, resource, ca = await tlsServer(stack, tmp_path)
    users = tmp_path / "htpasswd"
    htpasswd(users, "alice", "alice pw", "-B")
    proxy = await stack.proxy(
        PROXY + 'users = "{users}"\n',
        log=tmp_path / "access2.log",
        port=port,
        destinations='"127.0.0.1/32"',
        idle=30,
        users=users,
    )

    def fetch(user: str, password: str) -> int:
        import base64

        context = ssl.create_default_context(cafile=str(ca))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", proxy.port, context=context, timeout=20
        )
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        connection.set_tunnel(
            "127.0.0.1", port, headers={"Proxy-Authorization": f"Basic {token}"}
        )
        try:
            connection.request("GET", f"/as/{user}")
            return connection.getresponse().status
        except OSError as e:
            return 407 if "407" in str(e) else -1
        finally:
            connection.close()

    assert await deferToThread(fetch, "alice", "alice pw") == 200
    assert await deferToThread(fetch, "bob", "bob pw") == 407
    htpasswd(users, "bob", "bob pw", "-m")
    assert await deferToThread(fetch, "bob", "bob pw") == 200
    assert [r.uri for r in resource.requests] == [b"/as/alice", b"/as/bob"]


def test_checkNamesTheBadLine(tmp_path: Path) -> None:
    """twisted-proxy check: an htpasswd line in another format, by file and line."""
    users = tmp_path / "htpasswd"
    htpasswd(users, "alice", "pw", "-B")
    htpasswd(users, "old", "pw", "-d")  # DES crypt: not taken
    site = tmp_path / "site.toml"
    site.write_text(
        '[[listen]]\nendpoint = "tcp:3128:interface=127.0.0.1"\n'
        '[listen.connect]\nusers = "htpasswd"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "twisted_proxy", "check", str(site)],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        f"listen[0].connect.users: {users}: line 2: the entry for 'old'"
        in done.stderr.decode()
    ), done.stderr


@pytest_twisted.ensureDeferred
async def test_aClientThatStopsReadingPausesTheDestination(
    stack: Stack, tmp_path: Path
) -> None:
    """
    Flow control: with the client not reading, the destination is paused
    after socket buffers' worth, not the whole stream; then every byte
    arrives.
    """
    port, made = await serving(stack, Pump)
    proxy, _ = await tunnellingProxy(stack, tmp_path, port)
    client = await rawClient(stack, proxy.port)
    client.transport.write(  # type: ignore[union-attr]
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port
    )
    await until(stack.reactor, lambda: bool(client.received), "the 200")
    client.transport.pauseProducing()  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made), "the destination")
    pump = made[0]
    sentWhenPaused = await heldBack(stack.reactor, pump)
    # Paused before the end, the rest of what was sent in the kernel's socket
    # buffers: what the proxy holds itself is its transport's buffer (Twisted
    # pauses the producer past 64 KiB), plus a read or two.
    assert sentWhenPaused < Pump.total // 2
    [tunnel] = [
        c for c in proxy.listeners.sites[0].connections if c.protocolName == "tunnel"
    ]
    transport = tunnel.client.transport
    held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert held < 1024 * 1024
    client.transport.resumeProducing()  # type: ignore[union-attr]
    head = len(CONNECTED)
    await until(
        stack.reactor, lambda: len(client.received) >= head + Pump.total, "it all"
    )
    assert len(client.received) == head + Pump.total
    client.transport.loseConnection()  # type: ignore[union-attr]
    await made[0].lost
