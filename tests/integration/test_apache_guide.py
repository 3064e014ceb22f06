"""
The guide's situations, each as an Apache file of the project's own (the
guide's blocks with their placeholder hosts as loopback backends and test
certificates), run as the configuration itself through the importer, and
doing what the guide says: the reverse proxy's rewriting, path routing,
TLS termination with the forwarded headers, WebSockets, the security
headers and access rules, compression, the health check and hot standby,
route stickiness by cookie, the access log naming the backend, and the
status pages for this machine only.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from tests.integration.processes import freePort, until
from tests.integration.support import (
    RecordingBackend,
    Stack,
    accessLogLines,
    curl,
)
from tests.tlsfiles import TestCA
from twisted_proxy.service import ProxyService
from twisted_proxy.tap import loadForStart


async def runApache(stack: Stack, folder: Path, text: str) -> ProxyService:
    """Write C{text} as site.conf in C{folder} and run it as the configuration."""
    site = folder / "site.conf"
    site.write_text(text)
    proxy = ProxyService(loadForStart(str(site)), stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    return proxy


def redirecting(location: bytes) -> Any:
    def handler(request: Any) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", location)
        return b""

    return handler


@pytest_twisted.ensureDeferred
async def test_basicReverseProxyKeepsTheHostAndRewritesRedirects(
    stack: Stack, tmp_path: Path
) -> None:
    """01: the client's Host reaches the backend; its redirects name the proxy."""
    port = freePort()
    backend = RecordingBackend("app")
    app = await stack.backend(backend)
    backend.handler = redirecting(f"http://127.0.0.1:{app}/login".encode())
    await runApache(
        stack,
        tmp_path,
        f"<VirtualHost 127.0.0.1:{port}>\nServerName example.test\n"
        "ProxyPreserveHost On\n"
        f"ProxyPass / http://127.0.0.1:{app}/\n"
        f"ProxyPassReverse / http://127.0.0.1:{app}/\n"
        "ProxyPassReverse / http://example.test/\n</VirtualHost>\n",
    )
    response = await stack.treq().get(
        f"http://127.0.0.1:{port}/account",
        headers={b"Host": [b"example.test"]},
        allow_redirects=False,
    )
    await response.content()
    assert response.code == 302
    assert response.headers.getRawHeaders(b"location") == [b"http://example.test/login"]
    assert backend.requests[0].uri == b"/account"
    assert backend.requests[0].header(b"host") == b"example.test"


@pytest_twisted.ensureDeferred
async def test_microservicesByPath(stack: Stack, tmp_path: Path) -> None:
    """03: each path prefix to its service, the rest to the main application."""
    port = freePort()
    names = ("users", "payments", "main")
    backends = {name: RecordingBackend(name) for name in names}
    ports = {name: await stack.backend(b) for name, b in backends.items()}
    lines = "".join(
        f"ProxyPass {path} http://127.0.0.1:{ports[name]}/\n"
        f"ProxyPassReverse {path} http://127.0.0.1:{ports[name]}/\n"
        for path, name in (
            ("/api/users/", "users"),
            ("/api/payments/", "payments"),
            ("/", "main"),
        )
    )
    await runApache(
        stack,
        tmp_path,
        f"<VirtualHost 127.0.0.1:{port}>\nServerName api.example.test\n"
        f"{lines}</VirtualHost>\n",
    )
    http = stack.treq()
    said = []
    for path in ("/api/users/7", "/api/payments/?id=3", "/about", "/api/other"):
        response = await http.get(
            f"http://127.0.0.1:{port}{path}", headers={b"Host": [b"api.example.test"]}
        )
        said.append(await response.text())
    assert said == [
        "users saw GET /7",
        "payments saw GET /?id=3",
        "main saw GET /about",
        "main saw GET /api/other",
    ]


@pytest_twisted.ensureDeferred
async def test_tlsTerminationTellsTheBackend(stack: Stack, tmp_path: Path) -> None:
    """04: TLS ends at the proxy; the backend is told https and port 443."""
    port = freePort()
    ca = TestCA(tmp_path)
    ca.issue("secure.example.test", stem="certificate")
    backend = RecordingBackend("internal")
    internal = await stack.backend(backend)
    backend.handler = redirecting(b"https://secure.example.test/home")
    await runApache(
        stack,
        tmp_path,
        f"<VirtualHost 127.0.0.1:{port}>\nServerName secure.example.test\n"
        "SSLEngine on\nSSLCertificateFile certificate.pem\n"
        "SSLCertificateKeyFile certificate.key\nProxyPreserveHost On\n"
        f"ProxyPass / http://127.0.0.1:{internal}/\n"
        f"ProxyPassReverse / http://127.0.0.1:{internal}/\n"
        "ProxyPassReverse / https://secure.example.test/\n"
        'RequestHeader set X-Forwarded-Proto "https"\n'
        'RequestHeader set X-Forwarded-Port "443"\n</VirtualHost>\n',
    )
    out, err, code = await curl(
        "--cacert",
        str(ca.certificate),
        "--resolve",
        f"secure.example.test:{port}:127.0.0.1",
        "--include",
        f"https://secure.example.test:{port}/pay",
    )
    assert code == 0, err
    head = out.decode().lower()
    assert head.startswith("http/1.1 302")
    assert f"location: https://secure.example.test:{port}/home" in head
    received = backend.requests[0]
    assert received.header(b"x-forwarded-proto") == b"https"
    assert received.header(b"x-forwarded-port") == b"443"
    assert received.header(b"host") == f"secure.example.test:{port}".encode()


@pytest_twisted.ensureDeferred
async def test_websocketsAndPlainHTTPOnOneHost(
    stack: Stack, peers: Any, tmp_path: Path
) -> None:
    """05: /ws/ carries WebSockets; the rest of the host is plain HTTP."""
    port = freePort()
    ws = await peers.backend("ws")
    plain = RecordingBackend("plain")
    web = await stack.backend(plain)
    await runApache(
        stack,
        tmp_path,
        "LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so\n"
        f"<VirtualHost 127.0.0.1:{port}>\nServerName websocket.example.test\n"
        f"ProxyPass /ws/ ws://127.0.0.1:{ws.port}/ws/\n"
        f"ProxyPassReverse /ws/ ws://127.0.0.1:{ws.port}/ws/\n"
        f"ProxyPass / http://127.0.0.1:{web}/\n"
        f"ProxyPassReverse / http://127.0.0.1:{web}/\n</VirtualHost>\n",
    )
    # The URL's host is the virtual host's name; the socket goes to 127.0.0.1.
    client = await peers.connect(
        f"ws://websocket.example.test:{port}/ws/chat", host="127.0.0.1", port=port
    )
    await peers.call(client.send("hello"))
    assert await peers.call(client.recv()) == "hello"
    assert ws.requests[0].path == "/ws/chat"
    response = await stack.treq().get(
        f"http://127.0.0.1:{port}/index", headers={b"Host": [b"websocket.example.test"]}
    )
    assert await response.text() == "plain saw GET /index"


SECURITY = """\
ProxyRequests Off
ProxyVia Off
<Proxy *>
Order deny,allow
Deny from all
Allow from {allowed}
</Proxy>
ServerTokens Prod
ServerSignature Off
Header always set X-Frame-Options DENY
Header always set X-Content-Type-Options nosniff
Listen 127.0.0.1:{port}
ProxyPass / http://127.0.0.1:{app}/
"""


@pytest_twisted.ensureDeferred
async def test_securityHeadersAndWhoMayUseTheProxy(
    stack: Stack, tmp_path: Path
) -> None:
    """06: security headers on every answer; only Allow from may come in."""
    backend = RecordingBackend("app")
    app = await stack.backend(backend)
    port = freePort()
    await runApache(
        stack, tmp_path, SECURITY.format(allowed="127.0.0.0/8", port=port, app=app)
    )
    response = await stack.treq().get(f"http://127.0.0.1:{port}/x")
    assert await response.text() == "app saw GET /x"
    headers = response.headers
    assert headers.getRawHeaders(b"x-frame-options") == [b"DENY"]
    assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
    assert headers.getRawHeaders(b"via") is None
    assert headers.getRawHeaders(b"server") == [b"twisted-proxy"]
    # Another network allowed: this machine is kept out, headers still set.
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = freePort()
    await runApache(
        stack, other, SECURITY.format(allowed="192.0.2.0/24", port=elsewhere, app=app)
    )
    response = await stack.treq().get(f"http://127.0.0.1:{elsewhere}/x")
    await response.content()
    assert response.code == 403
    assert response.headers.getRawHeaders(b"x-frame-options") == [b"DENY"]
    assert len(backend.requests) == 1


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html")
        return b"<p>" + b"compressible " * 500 + b"</p>"


@pytest_twisted.ensureDeferred
async def test_compressionAndTimeouts(stack: Stack, tmp_path: Path) -> None:
    """07: <Location /> SetOutputFilter DEFLATE gzips; the timeouts are kept."""
    port = freePort()
    app = await stack.backend(Page())
    proxy = await runApache(
        stack,
        tmp_path,
        f"Listen 127.0.0.1:{port}\n"
        f"ProxyPass / http://127.0.0.1:{app}/ connectiontimeout=5 ttl=60\n"
        "ProxyTimeout 30\n"
        f"ProxyPassReverse / http://127.0.0.1:{app}/\n"
        "LoadModule deflate_module modules/mod_deflate.so\n"
        "<Location />\nSetOutputFilter DEFLATE\n</Location>\n",
    )
    # A plain Agent: treq would decode the body and drop Content-Encoding.
    response = await stack.agent().request(
        b"GET",
        f"http://127.0.0.1:{port}/".encode(),
        Headers({b"Accept-Encoding": [b"gzip"]}),
    )
    body = await treq.content(response)
    assert response.headers.getRawHeaders(b"content-encoding") == [b"gzip"]
    assert gzip.decompress(body) == b"<p>" + b"compressible " * 500 + b"</p>"
    assert len(body) < 200
    [route] = proxy.config.routes
    assert (route.connect_timeout, proxy.config.proxy.timeout) == (5.0, 30.0)
    assert proxy.config.proxy.pool_ttl == 60.0


class Health(Resource):
    """/health answering 200, or 503 once switched off; the rest named."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.healthy = True

    def render_GET(self, request: Any) -> bytes:
        if request.path == b"/health":
            request.setResponseCode(200 if self.healthy else 503)
            return b"ok" if self.healthy else b"down"
        return self.name.encode()


@pytest_twisted.ensureDeferred
async def test_theHealthCheckPutsTheHotStandbyInService(
    stack: Stack, tmp_path: Path
) -> None:
    """
    08 and 10: hcmethod/hcuri on ProxySet check /health, a failed member
    gives way to the hot standby; the process-model lines are only noticed.
    """
    port = freePort()
    spare, main = Health("server1"), Health("server2")
    one, two = await stack.backend(spare), await stack.backend(main)
    proxy = await runApache(
        stack,
        tmp_path,
        "ServerLimit 16\nMaxRequestWorkers 400\nThreadsPerChild 25\n"
        f"Listen 127.0.0.1:{port}\n<Proxy balancer://backend>\n"
        f"BalancerMember http://127.0.0.1:{one} status=+H\n"
        f"BalancerMember http://127.0.0.1:{two} hcinterval=0.2\n"
        "ProxySet hcmethod=GET\nProxySet hcuri=/health\n</Proxy>\n"
        "ProxyPass / balancer://backend/ keepalive=On\n"
        "ProxyPassReverse / balancer://backend/\n",
    )
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{port}/")
    assert await response.text() == "server2"
    main.healthy = False
    members = proxy.balancer.members("backend")
    await until(stack, lambda: members[1].health == "down", "server2 checked down")
    response = await http.get(f"http://127.0.0.1:{port}/")
    assert await response.text() == "server1"


@pytest_twisted.ensureDeferred
async def test_theRouteCookieKeepsAClient(stack: Stack, tmp_path: Path) -> None:
    """09: the proxy hands out ROUTEID=.N and the client stays on member N."""
    port = freePort()
    backends = [RecordingBackend("server1"), RecordingBackend("server2")]
    one, two = [await stack.backend(b) for b in backends]
    await runApache(
        stack,
        tmp_path,
        f"Listen 127.0.0.1:{port}\n"
        'Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/"\n'
        f"<Proxy balancer://backend>\nBalancerMember http://127.0.0.1:{one} route=1\n"
        f"BalancerMember http://127.0.0.1:{two} route=2\n"
        "ProxySet stickysession=ROUTEID\n</Proxy>\n"
        "ProxyPass / balancer://backend/\n",
    )
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{port}/first")
    first = await response.text()
    [cookie] = response.headers.getRawHeaders(b"set-cookie")
    route = cookie.split(b";")[0]
    assert route == (b"ROUTEID=.1" if first.startswith("server1") else b"ROUTEID=.2")
    for _ in range(4):
        response = await http.get(
            f"http://127.0.0.1:{port}/again", headers={b"Cookie": [route]}
        )
        assert (await response.text()).split()[0] == first.split()[0]


@pytest_twisted.ensureDeferred
async def test_monitoringLogsTheBackendAndServesStatusHere(
    stack: Stack, tmp_path: Path
) -> None:
    """11: the access log names the backend; status and info answer locally."""
    port = freePort()
    backend = RecordingBackend("app")
    app = await stack.backend(backend)
    (tmp_path / "logs").mkdir()
    proxy = await runApache(
        stack,
        tmp_path,
        f"Listen 127.0.0.1:{port}\nLogLevel proxy:trace2\n"
        'CustomLog logs/proxy_access.log "%h %l %u %t \\"%r\\" %>s %O'
        ' \\"%{Referer}i\\" \\"%{User-Agent}i\\" %D"\n'
        "# Log backend server responses\n"
        'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\"'
        ' \\"%{User-Agent}i\\" backend:%{BALANCER_WORKER_NAME}e time:%D" proxy\n'
        '<Location "/server-status">\nSetHandler server-status\nRequire local\n'
        '</Location>\n<Location "/server-info">\nSetHandler server-info\n'
        "Require local\n</Location>\n"
        f"<Proxy balancer://app>\nBalancerMember http://127.0.0.1:{app}\n</Proxy>\n"
        "ProxyPass / balancer://app/\n",
    )
    assert proxy.config.proxy.log_level == "debug"
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{port}/orders")
    assert await response.text() == "app saw GET /orders"
    [line] = accessLogLines(proxy, tmp_path / "logs" / "proxy_access.log")
    assert '"GET /orders HTTP/1.1" 200' in line
    assert f" backend:http://127.0.0.1:{app} time:" in line
    response = await http.get(f"http://127.0.0.1:{port}/server-status?auto")
    assert response.code == 200
    assert "Total Accesses: " in await response.text()
    response = await http.get(f"http://127.0.0.1:{port}/server-info")
    assert response.code == 200
    assert "the configuration it runs on" in await response.text()
    pages = [r for r in proxy.config.routes if r.handler in ("status", "info")]
    assert [{str(net) for net in r.allow} for r in pages] == [
        {"127.0.0.0/8", "::1/128"}
    ] * 2
