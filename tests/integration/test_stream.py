"""
tcp listeners end to end: raw clients and destinations on 127.0.0.1 for the
byte-exact, half-close, failover, busyness, drain and timeout cases, and a
real Redis server (Debian's redis-server, started by the test) used through
the listener with redis-cli.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from tests.integration.processes import freePort
from tests.integration.streampeers import (
    Pump,
    destination,
    heldBack,
    rawClient,
    run,
    serving,
    until,
)
from tests.integration.support import Stack, accessLogLines, deferLater
from tests.tlsfiles import ServingTLS, TestCA
from twisted_proxy.core.proxyprotocol import encodeV2, parseHeader
from twisted_proxy.service import ProxyService

BALANCED = """
[proxy]
access_log = "{log}"
access_log_format = "json"
connect_timeout = 2
shutdown_grace = {grace}
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
protocol = "tcp"
to = "balancer://pool"
idle_timeout = {idle}
[balancer.pool]
method = "{method}"
{members}
"""


def members(*ports: int) -> str:
    return "".join(
        f'[[balancer.pool.member]]\nurl = "tcp://127.0.0.1:{port}"\n' for port in ports
    )


async def streamProxy(
    stack: Stack,
    folder: Path,
    *ports: int,
    method: str = "byrequests",
    idle: float = 30,
    grace: float = 5,
) -> tuple[ProxyService, Path]:
    log = folder / "access.log"
    proxy = await stack.proxy(
        BALANCED,
        log=log,
        members=members(*ports),
        method=method,
        idle=idle,
        grace=grace,
    )
    return proxy, log


def logged(proxy: ProxyService, log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in accessLogLines(proxy, log)]


async def closedPort(stack: Stack) -> int:
    """A loopback port that refuses connections (bound, never listening)."""
    return stack.refusingPort()


@pytest_twisted.ensureDeferred
async def test_bytesExactAndHalfClose(stack: Stack, tmp_path: Path) -> None:
    """
    1 MiB arrives byte for byte; the client's FIN reaches the member as a
    FIN and its answer comes back; one log line with the bytes each way.
    """
    port, made = await destination(stack)
    proxy, log = await streamProxy(stack, tmp_path, port)
    client = await rawClient(stack, proxy.port)
    body = os.urandom(1 << 20)
    for offset in range(0, len(body), 65536):
        client.transport.write(body[offset : offset + 65536])  # type: ignore[union-attr]
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made), "the member")
    await made[0].finSeen
    assert bytes(made[0].received) == body
    await client.lost
    answer = b"after your FIN: %d bytes" % len(body)
    assert bytes(client.received) == answer
    await until(stack.reactor, lambda: bool(logged(proxy, log)), "the log line")
    [line] = logged(proxy, log)
    assert line["request"] == f"TCP tcp://127.0.0.1:{port}"
    assert (line["status"], line["bytes_in"], line["bytes"]) == (
        200,
        len(body),
        len(answer),
    )
    assert line["worker"] == f"tcp://127.0.0.1:{port}"
    assert line["end_reason"] == "complete"


@pytest_twisted.ensureDeferred
async def test_refusingMemberFailsOverBeforeTheFirstByte(
    stack: Stack, tmp_path: Path
) -> None:
    """A member that refuses: the next one serves; the refuser is in error."""
    dead = await closedPort(stack)
    port, made = await destination(stack)
    proxy, _ = await streamProxy(stack, tmp_path, dead, port)
    for _ in range(2):
        client = await rawClient(stack, proxy.port)
        client.transport.write(b"ping")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.lost
        assert bytes(client.received) == b"after your FIN: 4 bytes"
    assert len(made) == 2
    state = proxy.balancer.member("pool", f"tcp://127.0.0.1:{dead}")
    assert state.inError(stack.reactor.seconds())
    assert state.lastFailure is not None
    assert "connect" in state.lastFailure


@pytest_twisted.ensureDeferred
async def test_noMemberReachableClosesAndLogs502(stack: Stack, tmp_path: Path) -> None:
    dead = await closedPort(stack)
    proxy, log = await streamProxy(stack, tmp_path, dead)
    client = await rawClient(stack, proxy.port)
    await client.lost
    assert bytes(client.received) == b""
    await until(stack.reactor, lambda: bool(logged(proxy, log)), "the log line")
    [line] = logged(proxy, log)
    assert (line["status"], line["end_reason"]) == (502, "backend-error")


@pytest_twisted.ensureDeferred
async def test_byBusynessCountsOpenConnections(stack: Stack, tmp_path: Path) -> None:
    """
    bybusyness: two open connections go one to each member; a member
    drained keeps its open connection and gets no new one.
    """
    one, first = await destination(stack)
    two, second = await destination(stack)
    proxy, _ = await streamProxy(stack, tmp_path, one, two, method="bybusyness")
    held = [await rawClient(stack, proxy.port) for _ in range(2)]
    for client in held:
        client.transport.write(b"x")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: len(first) + len(second) == 2, "two members")
    assert (len(first), len(second)) == (1, 1)
    proxy.balancer.setFlags("pool", f"tcp://127.0.0.1:{one}", drain=True)
    later = [await rawClient(stack, proxy.port) for _ in range(2)]
    for client in later:
        client.transport.write(b"y")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: len(second) == 3, "the undrained member")
    assert len(first) == 1
    # The drained member's connection still relays.
    held[0].transport.write(b"more")  # type: ignore[union-attr]
    await until(
        stack.reactor,
        lambda: any(d.received.endswith(b"more") for d in first + second),
        "more bytes",
    )
    for client in held + later:
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost


@pytest_twisted.ensureDeferred
async def test_idleConnectionClosed(stack: Stack, tmp_path: Path) -> None:
    port, made = await destination(stack)
    proxy, log = await streamProxy(stack, tmp_path, port, idle=0.3)
    client = await rawClient(stack, proxy.port)
    client.transport.write(b"hello")  # type: ignore[union-attr]
    await client.lost
    await until(stack.reactor, lambda: bool(logged(proxy, log)), "the log line")
    assert logged(proxy, log)[0]["end_reason"] == "idle-timeout"


@pytest_twisted.ensureDeferred
async def test_gracefulStopWaitsThenCloses(stack: Stack, tmp_path: Path) -> None:
    """Stopping: open connections relay on for shutdown_grace, then are cut."""
    port, made = await destination(stack)
    proxy, log = await streamProxy(stack, tmp_path, port, grace=0.5)
    client = await rawClient(stack, proxy.port)
    client.transport.write(b"first")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made) and bool(made[0].received), "data")
    started = stack.reactor.seconds()
    stopped = proxy.stopService()
    await deferLater(stack.reactor, 0.2)
    client.transport.write(b" second")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: made[0].received == b"first second", "more")
    await stopped
    await client.lost
    assert stack.reactor.seconds() - started >= 0.45
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["end_reason"] == "shutdown-grace"


@pytest_twisted.ensureDeferred
async def test_fixedDestination(stack: Stack, tmp_path: Path) -> None:
    """to = "tcp://host:port": no balancer."""
    port, made = await destination(stack)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "tcp://127.0.0.1:{port}"
        """,
        port=port,
    )
    client = await rawClient(stack, proxy.port)
    client.transport.write(b"abc")  # type: ignore[union-attr]
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await client.lost
    assert bytes(client.received) == b"after your FIN: 3 bytes"


class Redis:
    """A redis-server on a free loopback port, in its own folder."""

    def __init__(self, folder: Path, port: int) -> None:
        self.port = port
        folder.mkdir()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest_twisted.ensureDeferred
async def test_redisThroughATcpListener(stack: Stack, tmp_path: Path) -> None:
    """redis-cli talks to a real Redis through the listener, health-checked."""
    port = freePort()
    redis = Redis(tmp_path / "redis", port)
    try:
        for _ in range(100):
            ready = await run("redis-cli", "-p", str(port), "PING")
            if ready.stdout.strip() == b"PONG":
                break
            await deferLater(stack.reactor, 0.05)
        proxy = await stack.proxy(
            """
            [proxy]
            access_log = false
            [[listen]]
            endpoint = "tcp:0:interface=127.0.0.1"
            protocol = "tcp"
            to = "balancer://redis"
            [balancer.redis]
            method = "bybusyness"
            [balancer.redis.health]
            interval = 1
            timeout = 0.5
            [[balancer.redis.member]]
            url = "tcp://127.0.0.1:{port}"
            """,
            port=port,
        )
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(proxy.port)]
        assert (await run(*cli, "PING")).stdout.strip() == b"PONG"
        value = "v" * 100_000
        assert (await run(*cli, "SET", "key", value)).stdout.strip() == b"OK"
        got = await run(*cli, "GET", "key")
        assert got.stdout.strip() == value.encode()
        direct = await run("redis-cli", "-p", str(port), "GET", "key")
        assert direct.stdout.strip() == value.encode()
        # A pipeline of many commands in one connection.
        commands = b"".join(b"INCR counter\n" for _ in range(1000))
        piped = await run(*cli, stdin=commands)
        assert piped.stdout.split()[-1] == b"1000"
    finally:
        redis.stop()


async def redisReady(stack: Stack, *cli: str) -> None:
    for _ in range(200):
        ready = await run(*cli, "PING")
        if ready.stdout.strip() == b"PONG":
            return
        await deferLater(stack.reactor, 0.05)
    raise AssertionError(f"no PONG from {cli}")


@pytest_twisted.ensureDeferred
async def test_shippedRedisTLSFront(stack: Stack, tmp_path: Path) -> None:
    """
    etc/redis-tls-front.toml as shipped (listening on a free port, with a test
    CA's certificate): redis-cli --tls reaches the first Redis; with it
    stopped, the standby serves.
    """
    from dataclasses import replace

    from twisted_proxy.config import load

    etc = Path(__file__).resolve().parents[2] / "etc" / "redis-tls-front.toml"
    config = load(str(etc))
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", "127.0.0.1", stem="proxy")
    [listener] = config.listen
    assert listener.tls is not None
    tls = replace(
        listener.tls, certificate=str(issued.certificate), key=str(issued.key)
    )
    config = replace(
        config,
        listen=(replace(listener, endpoint="tcp:0:interface=127.0.0.1", tls=tls),),
    )
    first = Redis(tmp_path / "first", 16379)
    second = Redis(tmp_path / "second", 16380)
    try:
        await redisReady(stack, "redis-cli", "-p", "16379")
        await redisReady(stack, "redis-cli", "-p", "16380")
        await run("redis-cli", "-p", "16379", "SET", "who", "first")
        await run("redis-cli", "-p", "16380", "SET", "who", "second")
        proxy = ProxyService(config, stack.reactor)
        proxy.startService()
        stack.services.append(proxy)
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(proxy.port)]
        cli += ["--tls", "--cacert", str(ca.certificate)]
        got = await run(*cli, "GET", "who")
        assert got.stdout.strip() == b"first", got.stderr
        plain = await run("redis-cli", "-h", "127.0.0.1", "-p", str(proxy.port), "PING")
        assert plain.stdout.strip() != b"PONG"
        first.stop()
        got = await run(*cli, "GET", "who")
        assert got.stdout.strip() == b"second", got.stderr
    finally:
        first.stop()
        second.stop()


@pytest_twisted.ensureDeferred
async def test_healthChecksAreTCPConnects(stack: Stack, tmp_path: Path) -> None:
    """A member whose port closes is found down by TCP checks, and skipped."""
    one, first = await destination(stack)
    two, second = await destination(stack)
    log = tmp_path / "access.log"
    proxy = await stack.proxy(
        BALANCED + "[balancer.pool.health]\ninterval = 0.3\ntimeout = 0.2\n"
        "passes = 1\nfails = 1\n",
        log=log,
        members=members(one, two),
        method="byrequests",
        idle=30,
        grace=5,
    )
    state = proxy.balancer.member("pool", f"tcp://127.0.0.1:{two}")
    await until(stack.reactor, lambda: state.health == "up", "the check passing")
    await defer.maybeDeferred(stack.ports.pop().stopListening)
    await until(stack.reactor, lambda: state.health == "down", "the check failing")
    for _ in range(4):
        client = await rawClient(stack, proxy.port)
        client.transport.write(b"z")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.lost
        assert bytes(client.received) == b"after your FIN: 1 bytes"
    # (The checks' own connections carry nothing.)
    assert len([d for d in first if d.received]) == 4
    assert [d for d in second if d.received] == []
    assert state.failures == 0


@pytest_twisted.ensureDeferred
async def test_reloadLeavesConnectionsOpen(stack: Stack, tmp_path: Path) -> None:
    """A reload that changes the listener leaves an open connection relaying."""
    port, made = await destination(stack)
    site = tmp_path / "site.toml"
    text = (
        '[proxy]\naccess_log = false\n[[listen]]\nendpoint = "tcp:0:interface='
        '127.0.0.1"\nprotocol = "tcp"\nto = "tcp://127.0.0.1:{port}"\n'
        "idle_timeout = {idle}\n"
    )
    site.write_text(text.format(port=port, idle=30))
    from twisted_proxy.config import load

    proxy = ProxyService(load(str(site)), stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    client = await rawClient(stack, proxy.port)
    client.transport.write(b"before")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made) and bool(made[0].received), "data")
    site.write_text(text.format(port=port, idle=60))
    result = proxy.reload()
    assert result.ok
    client.transport.write(b" after")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: made[0].received == b"before after", "more")
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await client.lost
    assert bytes(client.received) == b"after your FIN: 12 bytes"


@pytest_twisted.ensureDeferred
async def test_proxyProtocolToMembers(stack: Stack, tmp_path: Path) -> None:
    """proxy_protocol = v1 or v2: the member reads the client's address first."""
    for version in ("v1", "v2"):
        port, made = await destination(stack)
        proxy = await stack.proxy(
            """
            [proxy]
            access_log = false
            [[listen]]
            endpoint = "tcp:0:interface=127.0.0.1"
            protocol = "tcp"
            to = "tcp://127.0.0.1:{port}"
            proxy_protocol = "{version}"
            """,
            port=port,
            version=version,
        )
        client = await rawClient(stack, proxy.port)
        here: Any = client.transport.getHost()  # type: ignore[union-attr]
        client.transport.write(b"payload")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await until(stack.reactor, lambda made=made: bool(made), "the member")
        await made[0].finSeen
        header = parseHeader(bytes(made[0].received))
        assert header is not None
        assert header.source == ("127.0.0.1", here.port)
        assert header.destination == ("127.0.0.1", proxy.port)
        assert bytes(made[0].received)[header.length :] == b"payload"
        if version == "v1":
            assert bytes(made[0].received).startswith(b"PROXY TCP4 127.0.0.1 ")
        await client.lost


@pytest_twisted.ensureDeferred
async def test_acceptProxyProtocolFromTrustedSources(
    stack: Stack, tmp_path: Path
) -> None:
    """
    From a trusted source the client named in its PROXY header is the one
    logged and passed on; without a header its connection is closed; from
    another source a header is only data.
    """
    port, made = await destination(stack)
    log = tmp_path / "access.log"
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = "{log}"
        access_log_format = "json"
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "tcp://127.0.0.1:{port}"
        proxy_protocol = "v1"
        accept_proxy_protocol = ["127.0.0.0/8"]
        [[listen]]
        endpoint = "tcp:port=0:interface=127.0.0.1"
        protocol = "tcp"
        to = "tcp://127.0.0.1:{port}"
        accept_proxy_protocol = ["192.0.2.0/24"]
        """,
        log=log,
        port=port,
    )
    client = await rawClient(stack, proxy.port)
    front = encodeV2(("203.0.113.9", 5555), ("198.51.100.1", 6379))
    client.transport.write(front + b"data")  # type: ignore[union-attr]
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await client.lost
    assert bytes(made[0].received) == (
        b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 6379\r\ndata"
    )
    bare = await rawClient(stack, proxy.port)
    bare.transport.write(b"GET / HTTP/1.0\r\n\r\n")  # type: ignore[union-attr]
    await bare.lost
    assert len(made) == 1
    second: Any = proxy.ports[1].getHost()
    untrusted = await rawClient(stack, second.port)
    untrusted.transport.write(front + b"x")  # type: ignore[union-attr]
    untrusted.transport.loseWriteConnection()  # type: ignore[union-attr]
    await untrusted.lost
    assert bytes(made[1].received) == front + b"x"
    await until(stack.reactor, lambda: len(logged(proxy, log)) == 3, "three lines")
    lines = logged(proxy, log)
    byStatus = {line["status"]: line for line in lines}
    assert byStatus[400]["remote"] == "127.0.0.1"
    assert sorted(line["remote"] for line in lines if line["status"] == 200) == [
        "127.0.0.1",
        "203.0.113.9",
    ]


class Echo(Protocol):
    """Echoes what it gets."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_tlsToMembersVerified(stack: Stack, tmp_path: Path) -> None:
    """
    tls = true: the member is reached over TLS and its certificate checked;
    one the proxy cannot verify is put in error and the next one serves.
    """
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", "127.0.0.1", stem="member")
    factory = TLSMemoryBIOFactory(ServingTLS(issued), False, Factory.forProtocol(Echo))
    factory.noisy = False
    good = await stack.listen(factory)
    (tmp_path / "other").mkdir()
    other = TLSMemoryBIOFactory(
        ServingTLS(TestCA(tmp_path / "other").issue("127.0.0.1", stem="other")),
        False,
        Factory.forProtocol(Echo),
    )
    other.noisy = False
    untrusted = await stack.listen(other)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "balancer://secure"
        [balancer.secure]
        method = "byrequests"
        [[balancer.secure.member]]
        url = "tcp://127.0.0.1:{untrusted}"
        tls = true
        tls_ca = "{ca}"
        [[balancer.secure.member]]
        url = "tcp://127.0.0.1:{good}"
        tls = true
        tls_ca = "{ca}"
        """,
        untrusted=untrusted,
        good=good,
        ca=ca.certificate,
    )
    for _ in range(2):
        client = await rawClient(stack, proxy.port)
        client.transport.write(b"over tls")  # type: ignore[union-attr]
        await until(stack.reactor, lambda c=client: c.received == b"over tls", "echo")
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost
    state = proxy.balancer.member("secure", f"tcp://127.0.0.1:{untrusted}")
    # Unverified, it would have echoed like the other: it was refused instead.
    assert state.inError(stack.reactor.seconds())
    assert state.lastFailure == "connect"


@pytest_twisted.ensureDeferred
async def test_sniChoosesTheCertificate(stack: Stack, tmp_path: Path) -> None:
    """A TLS tcp listener: SNI picks the certificate, as on HTTP listeners."""
    port, made = await destination(stack)
    ca = TestCA(tmp_path)
    ca.issue("localhost", "127.0.0.1", stem="main")
    ca.issue("db.example.test", stem="db")
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "tcp://127.0.0.1:{port}"
        [listen.tls]
        certificate = "main.pem"
        key = "main.key"
        [[listen.tls.sni]]
        hosts = ["db.example.test"]
        certificate = "db.pem"
        key = "db.key"
        """,
        configDir=str(tmp_path),
        port=port,
    )
    for name in ("db.example.test", "localhost"):
        done = await run(
            "openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}",
            "-servername", name, "-CAfile", str(ca.certificate),
            "-verify_hostname", name, "-verify_return_error", "-brief",
            stdin=b"hello",
        )  # fmt: skip
        assert b"Verification: OK" in done.stderr, (name, done.stderr)
    await until(stack.reactor, lambda: len(made) == 2, "both relayed")


@pytest_twisted.ensureDeferred
async def test_aClientThatStopsReadingPausesTheMember(
    stack: Stack, tmp_path: Path
) -> None:
    """Flow control through a tcp listener: the member is paused, then all arrives."""
    port, made = await serving(stack, Pump)
    proxy, _ = await streamProxy(stack, tmp_path, port)
    client = await rawClient(stack, proxy.port)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made), "the member")
    pump = made[0]
    assert await heldBack(stack.reactor, pump) < Pump.total // 2
    client.transport.resumeProducing()  # type: ignore[union-attr]
    await until(stack.reactor, lambda: len(client.received) >= Pump.total, "all of it")
    assert len(client.received) == Pump.total
    client.transport.loseConnection()  # type: ignore[union-attr]
    await pump.lost


@pytest_twisted.ensureDeferred
async def test_memberSilentInItsHandshake(stack: Stack, tmp_path: Path) -> None:
    """
    A tls = true member that never answers the handshake: past
    connect_timeout it is put in error and the next member serves; a client
    that leaves during such a handshake has that connection closed too.
    """
    silent, heard = await destination(stack)
    port, made = await destination(stack)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        connect_timeout = 0.5
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        protocol = "tcp"
        to = "balancer://pool"
        [[balancer.pool.member]]
        url = "tcp://127.0.0.1:{silent}"
        tls = true
        [[balancer.pool.member]]
        url = "tcp://127.0.0.1:{port}"
        """,
        silent=silent,
        port=port,
    )
    client = await rawClient(stack, proxy.port)
    client.transport.write(b"abc")  # type: ignore[union-attr]
    client.transport.loseWriteConnection()  # type: ignore[union-attr]
    await client.lost
    assert bytes(client.received) == b"after your FIN: 3 bytes"
    assert heard
    assert heard[0].received.startswith(b"\x16\x03")
    await heard[0].lost
    state = proxy.balancer.member("pool", f"tcp://127.0.0.1:{silent}")
    assert state.inError(stack.reactor.seconds())
    # Back in service, then a client that leaves mid-handshake.
    proxy.balancer.setFlags("pool", f"tcp://127.0.0.1:{port}", disabled=True)
    state.errorUntil = 0.0
    leaving = await rawClient(stack, proxy.port)
    await until(stack.reactor, lambda: len(heard) == 2, "the second handshake")
    leaving.transport.abortConnection()  # type: ignore[union-attr]
    await heard[1].lost


@pytest_twisted.ensureDeferred
async def test_statusPageCountsTcpConnections(stack: Stack, tmp_path: Path) -> None:
    """server-status?auto counts a tcp listener's open connections (ConnsTCP)."""
    port, made = await destination(stack)
    proxy = await stack.proxy(
        """
        [proxy]
        access_log = false
        [[listen]]
        endpoint = "tcp:0:interface=127.0.0.1"
        [[listen]]
        endpoint = "tcp:port=0:interface=127.0.0.1"
        protocol = "tcp"
        to = "tcp://127.0.0.1:{port}"
        [[route]]
        path = "/server-status"
        handler = "status"
        """,
        port=port,
    )
    web: Any = proxy.ports[0].getHost()
    stream: Any = proxy.ports[1].getHost()
    client = await rawClient(stack, stream.port)
    client.transport.write(b"x")  # type: ignore[union-attr]
    await until(stack.reactor, lambda: bool(made) and bool(made[0].received), "data")
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{web.port}/server-status?auto")
    assert response.code == 200
    facts = dict(line.split(": ", 1) for line in (await response.text()).splitlines())
    assert facts["ConnsTCP"] == "1"
    client.transport.loseConnection()  # type: ignore[union-attr]
    await client.lost
