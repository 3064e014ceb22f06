"""
[proxy] state_file end to end on 127.0.0.1: changes made through the
manager's JSON API outlive a restart of the proxy, and traffic follows them;
a reload that changes the member in the file takes the file's word.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest_twisted

from tests.integration.support import RecordingBackend, Stack
from twisted_proxy.config import load
from twisted_proxy.service import ProxyService

SITE = """
[proxy]
access_log = false
state_file = "state/members.json"
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
[[balancer.web.member]]
url = "http://127.0.0.1:{one}"
route = "one"
weight = {weight}
[[balancer.web.member]]
url = "http://127.0.0.1:{two}"
route = "two"
"""


@pytest_twisted.ensureDeferred
async def test_runTimeChangesOutliveARestart(
    stack: Stack, tmp_path: Path, logged: list[str]
) -> None:
    """
    Member "one" drained and a member "three" added through the API; the
    proxy stopped and started again from the same files: "one" is still
    drained (no request reaches it), "three" still serves. A reload whose
    file changes "one" gives it the file's settings and forgets its drain.
    """
    backends = {name: RecordingBackend(name) for name in ("one", "two", "three")}
    ports = {name: await stack.backend(b) for name, b in backends.items()}
    (tmp_path / "state").mkdir()
    site = tmp_path / "site.toml"
    site.write_text(SITE.format(weight=1, **ports))
    http = stack.treq()

    async def start() -> str:
        service = ProxyService(load(str(site)), stack.reactor)
        service.startService()
        stack.services.append(service)
        return f"http://127.0.0.1:{service.port}"

    base = await start()
    api = f"{base}/balancer-manager/api/balancers/web/members"
    response = await http.patch(f"{api}/one", json={"drain": True})
    assert response.code == 200, await response.content()
    response = await http.post(
        api, json={"url": f"http://127.0.0.1:{ports['three']}", "route": "three"}
    )
    assert response.code == 201, await response.content()
    await stack.services.pop().stopService()

    logged.clear()
    base = await start()
    api = f"{base}/balancer-manager/api/balancers/web/members"
    response = await http.get(f"{api}/one")
    assert (await response.json())["drain"] is True
    for _ in range(6):
        response = await http.get(f"{base}/page")
        assert response.code == 200
        await response.content()
    assert [len(b.requests) for b in backends.values()] == [0, 3, 3]
    state = str(tmp_path / "state" / "members.json")
    assert any(
        line.startswith(f"balancer-manager: state file {state} changed")
        and "drain off -> on" in line
        for line in logged
    )

    site.write_text(SITE.format(weight=2, **ports))
    response = await http.post(f"{base}/balancer-manager/api/reload")
    assert response.code == 200
    one = await (await http.get(f"{api}/one")).json()
    assert (one["drain"], one["weight"]) == (False, 2)
    recorded = json.loads((tmp_path / "state" / "members.json").read_text())
    web = recorded["balancers"]["web"]
    assert (web["changed"], list(web["added"])) == (
        {},
        [f"http://127.0.0.1:{ports['three']}"],
    )
