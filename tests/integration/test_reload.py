"""
Reload under load: real clients keep sending through a real proxy while its
configuration file is rewritten and reloaded twenty times (its balancer's
members changed each time), then once with a broken file. Nothing may fail
and the counters of members that stay must only grow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest_twisted
from twisted.internet import defer

from tests.integration.support import RecordingBackend, Stack, deferLater
from tests.integration.wspeers import AsyncioThread
from twisted_proxy.config import load
from twisted_proxy.service import ProxyService

HEAD = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
[[route]]
path = "/chat"
to = "ws://127.0.0.1:{ws}/chat"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "roundrobin"
"""


def _file(ports: list[int], ws: int = 1) -> str:
    members = "".join(
        f'[[balancer.web.member]]\nurl = "http://127.0.0.1:{port}"\n' for port in ports
    )
    return HEAD.replace("{ws}", str(ws)) + members


@pytest_twisted.ensureDeferred
async def test_twentyReloadsUnderLoadLoseNothing(
    stack: Stack, tmp_path: Path, peers: AsyncioThread
) -> None:
    """
    Four clients send requests without pause, and a WebSocket stays open,
    while the file changes the members twenty times (alternately by the API
    and directly), then a broken file is refused: every request is answered
    200, the WebSocket echoes after every reload and is never closed, the
    traffic follows the members, and kept members' counters never go back.
    """
    backends = [RecordingBackend(f"b{n}") for n in range(3)]
    ports = [await stack.backend(b) for b in backends]
    sets = [[ports[0], ports[1]], [ports[1], ports[2]], [ports[0], ports[2]]]
    echo = await peers.backend("echo")
    site = tmp_path / "site.toml"
    site.write_text(_file(sets[0], echo.port))
    service = ProxyService(load(str(site)), stack.reactor)
    service.startService()
    stack.services.append(service)
    base = f"http://127.0.0.1:{service.ports[0].getHost().port}"  # type: ignore[attr-defined]
    http = stack.treq()
    ws = await peers.connect(f"ws://127.0.0.1:{service.port}/chat")
    codes: list[int] = []
    running = True

    async def client() -> None:
        for _ in range(2000):  # bounded, whatever happens
            if not running:
                return
            response = await http.get(base + "/x")
            await response.content()
            codes.append(response.code)

    async def some(count: int) -> None:
        target = len(codes) + count
        for _ in range(1000):
            if len(codes) >= target:
                return
            await deferLater(stack.reactor, 0.005)

    clients = [defer.ensureDeferred(client()) for _ in range(4)]
    seen: dict[str, int] = {}
    try:
        for n in range(1, 21):
            site.write_text(_file(sets[n % 3], echo.port))
            if n % 2:
                response = await http.post(base + "/balancer-manager/api/reload")
                answer = json.loads(await response.content())
                assert response.code == 200
                assert answer["reloaded"] is True
            else:
                assert service.reload().ok
            await some(8)
            now = {m["name"]: m["requests"] for m in service.balancer.snapshot()["web"]}
            # A member in both files kept its count (and added to it).
            for name in now.keys() & seen.keys():
                assert now[name] >= seen[name], name
            seen = now
            names = sorted(m.member.port for m in service.balancer.members("web"))
            assert names == sorted(sets[n % 3])
            await peers.call(ws.send(f"after reload {n}"))
            assert await peers.call(ws.recv()) == f"after reload {n}"
        site.write_text(_file([], echo.port) + "[[balancer.web.member]]\nurl = 12\n")
        response = await http.post(base + "/balancer-manager/api/reload")
        answer = json.loads(await response.content())
        assert response.code == 422
        assert answer["reloaded"] is False
        assert answer["generation"] == 21
        assert answer["errors"] == [
            f"{site}: balancer.web.member[0].url: expected an http://, https://, "
            "ws://, wss://, ajp:// or tcp:// URL, got 12"
        ]
        await some(20)
    finally:
        running = False
        await defer.gatherResults(clients)
    assert codes
    assert set(codes) == {200}
    assert service.generation == 21
    assert sorted(m.member.port for m in service.balancer.members("web")) == sorted(
        sets[20 % 3]
    )
    assert all(len(b.requests) > 0 for b in backends)
    # The one WebSocket connection the echo backend ever saw is still open.
    assert ws.close_code is None
    assert len(echo.connections) == 1
