"""
An Apache configuration imported (twisted-proxy import) and run: the TOML it
printed loads and serves as the Apache file says, against backends on
127.0.0.1 (a balancer with a hot standby, sticky sessions by a route cookie,
the balancer manager for this machine only, a route excluded from
proxying).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest_twisted

from tests.integration.support import RecordingBackend, Stack
from twisted_proxy.apache.importer import importFile
from twisted_proxy.config.loader import loadString
from twisted_proxy.service import ProxyService
from twisted_proxy.tap import loadForStart

SITE = """\
# Two servers and a hot standby, as the guide's balancer block has them.
LoadModule proxy_module modules/mod_proxy.so
LoadModule proxy_balancer_module modules/mod_proxy_balancer.so
<IfModule mod_proxy.c>
<VirtualHost 127.0.0.1:80>
    ServerName app.example.test
    ProxyPreserveHost On
    <Proxy balancer://mycluster>
        BalancerMember http://127.0.0.1:{one} route=1
        BalancerMember http://127.0.0.1:{two} route=2
        BalancerMember http://127.0.0.1:{spare} status=+H
        ProxySet lbmethod=byrequests stickysession=ROUTEID
    </Proxy>
    ProxyPass /balancer-manager !
    ProxyPass / balancer://mycluster/
    ProxyPassReverse / balancer://mycluster/
    <Location "/balancer-manager">
        SetHandler balancer-manager
        Require local
    </Location>
</VirtualHost>
</IfModule>
"""


async def served(
    stack: Stack, folder: Path
) -> tuple[ProxyService, dict[str, RecordingBackend]]:
    backends = {name: RecordingBackend(name) for name in ("one", "two", "spare")}
    ports = {name: await stack.backend(b) for name, b in backends.items()}
    site = folder / "site.conf"
    site.write_text(SITE.format(**ports))
    result = importFile(str(site))
    assert result.errors == []
    assert result.text is not None
    config = loadString(result.text, str(folder / "imported.toml"))
    [listener] = config.listen
    assert listener.endpoint == "tcp:80:interface=127.0.0.1"
    config = replace(
        config, listen=(replace(listener, endpoint="tcp:0:interface=127.0.0.1"),)
    )
    proxy = ProxyService(config, stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    return proxy, backends


@pytest_twisted.ensureDeferred
async def test_theHotStandbyServesOnlyWhenTheOthersAreDown(
    stack: Stack, tmp_path: Path
) -> None:
    proxy, backends = await served(stack, tmp_path)
    http = stack.treq()
    url = f"http://127.0.0.1:{proxy.port}/page"
    host = {b"Host": [b"app.example.test"]}
    names = []
    for _ in range(6):
        response = await http.get(url, headers=host)
        assert response.code == 200
        names.append((await response.text()).split()[0])
    assert sorted(set(names)) == ["one", "two"]
    assert backends["spare"].requests == []
    for name in ("one", "two"):
        for member in proxy.balancer.members("mycluster"):
            if member.member.route == ("1" if name == "one" else "2"):
                member.disabled = True
    response = await http.get(url, headers=host)
    assert await response.text() == "spare saw GET /page"
    # The client's Host reached the backend (ProxyPreserveHost On).
    assert backends["spare"].requests[0].header(b"host") == b"app.example.test"


@pytest_twisted.ensureDeferred
async def test_stickyByRouteAndTheManagerHere(stack: Stack, tmp_path: Path) -> None:
    """ROUTEID=.2 keeps a client on member 2; the manager answers this machine."""
    proxy, backends = await served(stack, tmp_path)
    http = stack.treq()
    base = f"http://127.0.0.1:{proxy.port}"
    for _ in range(5):
        response = await http.get(
            base + "/x",
            headers={b"Host": [b"app.example.test"], b"Cookie": [b"ROUTEID=.2"]},
        )
        assert await response.text() == "two saw GET /x"
    response = await http.get(
        base + "/balancer-manager", headers={b"Host": [b"app.example.test"]}
    )
    assert response.code == 200
    page = await response.text()
    assert "mycluster" in page
    assert all(b.requests == [] or b.name == "two" for b in backends.values())
    # Another host's requests match no route of this virtual host.
    response = await http.get(base + "/x", headers={b"Host": [b"other.test"]})
    assert response.code == 404
    await response.content()


@pytest_twisted.ensureDeferred
async def test_anApacheFileRunsAndReloadsAsIs(stack: Stack, tmp_path: Path) -> None:
    """
    The Apache file itself as the configuration (as run --config site.conf
    loads it): it serves, and a reload reads the edited file again.
    """
    one, two = RecordingBackend("one"), RecordingBackend("two")
    first, second = await stack.backend(one), await stack.backend(two)
    site = tmp_path / "site.conf"
    site.write_text(f"Listen 127.0.0.1:0\nProxyPass /app/ http://127.0.0.1:{first}/\n")
    config = loadForStart(str(site))
    proxy = ProxyService(config, stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{proxy.port}/app/x")
    assert await response.text() == "one saw GET /x"
    site.write_text(f"Listen 127.0.0.1:0\nProxyPass /app/ http://127.0.0.1:{second}/\n")
    assert proxy.reload().ok
    response = await http.get(f"http://127.0.0.1:{proxy.port}/app/x")
    assert await response.text() == "two saw GET /x"
    site.write_text("Listen 127.0.0.1:0\nRewriteEngine On\n")
    result = proxy.reload()
    assert not result.ok
    assert result.errors == (
        f"{site}:2: RewriteEngine: cannot be expressed in twisted-proxy's"
        " configuration",
    )
