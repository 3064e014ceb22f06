"""
twisted-proxy inside someone else's Twisted program: the resource mounted in a
plain twisted.web Site (buffered and streaming), and the service under their
own Application.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.application.service import Application, IService
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.support import (
    RawBackend,
    RecordingBackend,
    Stack,
    request,
)
from twisted_proxy.config import loadString
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.frontends.request import StreamingRequest
from twisted_proxy.service import ProxyService


@pytest_twisted.async_yield_fixture
async def resources() -> AsyncIterator[list[ReverseProxyResource]]:
    """Embedded proxy resources whose own upstream pools are closed at the end."""
    made: list[ReverseProxyResource] = []
    yield made
    for resource in made:
        await resource.context.pool.closeAll()


class _Hello(Resource):
    """The user's own page, beside the proxy."""

    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"my own page"


async def userSite(
    stack: Stack,
    resources: list[ReverseProxyResource],
    backendPort: int,
    requestFactory: type | None = None,
) -> int:
    """A user's Site with the proxy at /proxy and a page at /hello; its port."""
    proxy = ReverseProxyResource(
        f"http://127.0.0.1:{backendPort}/app/", reactor=stack.reactor
    )
    resources.append(proxy)
    root = Resource()
    root.putChild(b"proxy", proxy)
    root.putChild(b"hello", _Hello())
    site = Site(root, requestFactory=requestFactory)
    site.noisy = False
    return await stack.listen(site)


@pytest_twisted.ensureDeferred
async def test_mountedInPlainSiteRelaysPathAndQuery(
    stack: Stack, resources: list[ReverseProxyResource]
) -> None:
    """In a plain Site, GET /proxy/x?y=1 reaches the backend as /app/x?y=1."""
    backend = RecordingBackend()
    port = await userSite(stack, resources, await stack.backend(backend))
    http = stack.treq()
    response = await http.get(f"http://127.0.0.1:{port}/proxy/x?y=1")
    assert response.code == 200
    assert await response.text() == "backend saw GET /app/x?y=1"
    mine = await http.get(f"http://127.0.0.1:{port}/hello")
    assert await mine.text() == "my own page"
    assert [r.uri for r in backend.requests] == [b"/app/x?y=1"]


@pytest_twisted.ensureDeferred
async def test_mountedInPlainSitePostsBufferedBody(
    stack: Stack, resources: list[ReverseProxyResource]
) -> None:
    """In a plain twisted.web Site, a POST body arrives whole at the backend."""
    backend = RecordingBackend()
    port = await userSite(stack, resources, await stack.backend(backend))
    body = b"name=ada&" + b"x" * 100_000
    response = await stack.treq().post(f"http://127.0.0.1:{port}/proxy/form", data=body)
    assert response.code == 200
    assert await response.text() == "backend saw POST /app/form"
    seen = backend.requests[0]
    assert seen.body == body
    assert seen.header(b"content-length") == b"%d" % len(body)


@pytest_twisted.ensureDeferred
async def test_mountedWithStreamingRequestStreamsUpload(
    stack: Stack, resources: list[ReverseProxyResource]
) -> None:
    """With StreamingRequest as the Site's factory, upload bytes flow before the end."""
    raw = RawBackend()
    port = await userSite(
        stack, resources, await stack.rawBackend(raw), StreamingRequest
    )
    client = await stack.connect(port)
    client.transport.write(  # type: ignore[union-attr]
        request(b"PUT", b"/proxy/up", [(b"Content-Length", b"12")], b"first-")
    )
    conn = await raw.waitFor(lambda p: p.received.endswith(b"first-"))
    assert conn.received.startswith(b"PUT /app/up HTTP/1.1\r\n")
    assert b"second" not in conn.received
    client.transport.write(b"second")  # type: ignore[union-attr]
    await raw.waitFor(lambda p: p.received.endswith(b"first-second"))
    conn.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    data = await client.waitFor(lambda d: d.endswith(b"ok"))
    assert data.startswith(b"HTTP/1.1 201 Created\r\n")
    # The user's own resources still render in the streaming Site.
    client.transport.write(request(b"GET", b"/hello"))  # type: ignore[union-attr]
    await client.waitFor(lambda d: d.endswith(b"my own page"))


SERVICE = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""


@pytest_twisted.ensureDeferred
async def test_serviceUnderUsersApplication(stack: Stack) -> None:
    """ProxyService under a user's Application starts with it, serves, and stops."""
    backend = RecordingBackend()
    port = await stack.backend(backend)
    application = Application("my-program")
    proxy = ProxyService(loadString(SERVICE.format(port=port)), stack.reactor)
    proxy.setServiceParent(application)
    top = IService(application)
    top.startService()
    try:
        assert proxy.running
        response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/hi")
        assert response.code == 200
        assert await response.text() == "backend saw GET /hi"
        listening = proxy.port
    finally:
        await top.stopService()
    assert not proxy.running
    endpoint = TCP4ClientEndpoint(stack.reactor, "127.0.0.1", listening)
    with pytest.raises(ConnectionRefusedError):
        await endpoint.connect(Factory.forProtocol(Protocol))


@pytest_twisted.ensureDeferred
async def test_embeddedServiceIsOneProcessWhateverWorkersSays(
    stack: Stack, logged: list[str]
) -> None:
    """
    [proxy] workers = 4 in an embedded ProxyService: it serves in this
    process alone, says so in the log, and starts no other process.
    """
    backend = RecordingBackend()
    port = await stack.backend(backend)
    text = SERVICE.format(port=port).replace("[proxy]\n", "[proxy]\nworkers = 4\n")
    config = loadString(text)
    proxy = ProxyService(config, stack.reactor)
    proxy.startService()
    stack.services.append(proxy)
    response = await stack.treq().get(f"http://127.0.0.1:{proxy.port}/hi")
    assert await response.text() == "backend saw GET /hi"
    assert proxy.role is None
    assert followersOf(os.getpid()) == []
    assert any(
        "this ProxyService, embedded in a program, is one process" in line
        for line in logged
    ), logged


def followersOf(pid: int) -> list[int]:
    """The worker processes C{pid} started (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"twisted_proxy.workers.follower" in command:
            found.append(int(entry))
    return found
