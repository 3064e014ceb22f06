"""
Redirects between services: scenario 3 (microservices by path) as shipped, in
front of three real services that redirect to each other by their internal
URLs, by their public paths and by their own paths. Every Location and
Content-Location the client receives names the proxy, never a service.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest_twisted
import treq
from twisted.web.http_headers import Headers

from tests.integration.support import RecordingBackend, Stack
from tests.integration.test_scenarios import routeFor, shipped, startProxy, targetPort
from twisted_proxy.service import ProxyService

# The Host the client asks for: the shipped listener's public name and port.
FRONT = b"shop.example.test:8083"

# Each probe: the path the client asks for, the response header it checks,
# and the value it must receive.
EXPECTED: dict[str, tuple[bytes, bytes]] = {
    # users -> payments: its address with a port, its reverse URL without
    # one, and its public path.
    "/api/users/to-payments": (
        b"location",
        b"http://shop.example.test:8083/api/payments/pay?order=7",
    ),
    "/api/users/to-payments-by-name": (
        b"location",
        b"http://shop.example.test:8083/api/payments/receipt/7",
    ),
    "/api/users/to-payments-relative": (b"location", b"/api/payments/pay"),
    # users -> users: a path of its own moves under its prefix.
    "/api/users/to-login": (b"location", b"/api/users/login?next=/api/users/me"),
    # payments -> users, absolute and relative.
    "/api/payments/to-users": (
        b"location",
        b"http://shop.example.test:8083/api/users/42",
    ),
    "/api/payments/to-users-relative": (b"location", b"/api/users/42"),
    # payments -> payments by the prefix it is told in X-Forwarded-Prefix:
    # not prefixed a second time.
    "/api/payments/to-receipt": (b"location", b"/api/payments/receipt"),
    # users -> main and main -> users.
    "/api/users/to-main": (b"location", b"http://shop.example.test:8083/catalog"),
    "/to-users": (b"location", b"http://shop.example.test:8083/api/users/profile"),
    # main -> payments by its internal name with the default port written out.
    "/to-payments": (
        b"location",
        b"http://shop.example.test:8083/api/payments/checkout",
    ),
    # main describes a users resource.
    "/featured-user": (
        b"content-location",
        b"http://shop.example.test:8083/api/users/42",
    ),
}

# Where a client following each probe's answer lands: (service, what it saw).
LANDS: dict[str, tuple[str, bytes]] = {
    "/api/users/to-payments": ("payments", b"/pay?order=7"),
    "/api/users/to-payments-by-name": ("payments", b"/receipt/7"),
    "/api/users/to-payments-relative": ("payments", b"/pay"),
    "/api/users/to-login": ("users", b"/login?next=/api/users/me"),
    "/api/payments/to-users": ("users", b"/42"),
    "/api/payments/to-users-relative": ("users", b"/42"),
    "/api/payments/to-receipt": ("payments", b"/receipt"),
    "/api/users/to-main": ("main", b"/catalog"),
    "/to-users": ("users", b"/profile"),
    "/to-payments": ("payments", b"/checkout"),
    "/featured-user": ("users", b"/42"),
}


def service(name: str, answers: dict[bytes, tuple[int, bytes, bytes]]) -> Any:
    """
    A backend handler: a path in C{answers} gets (status, header, value);
    any other is answered 200 with what the service saw.
    """

    def handler(request: Any) -> bytes:
        request.setHeader(b"x-service", name.encode())
        answer = answers.get(request.path)
        if answer is None:
            return request.uri  # type: ignore[no-any-return]
        status, header, value = answer
        if value.startswith(b"{prefix}"):
            prefix = request.getHeader(b"x-forwarded-prefix") or b""
            value = prefix + value[len(b"{prefix}") :]
        request.setResponseCode(status)
        request.setHeader(header, value)
        return b""

    return handler


async def microservices(stack: Stack) -> ProxyService:
    """Scenario 3 as shipped, with its three services redirecting to each other."""
    config = shipped("scenario-3-microservices.toml")
    usersRoute = routeFor(config, "/api/users/")
    paymentsRoute = routeFor(config, "/api/payments/")
    mainRoute = routeFor(config, "/")
    assert usersRoute.to is not None
    assert paymentsRoute.to is not None
    assert mainRoute.to is not None
    users = usersRoute.to.url.encode()  # http://127.0.0.1:9131/
    payments = paymentsRoute.to.url.encode()
    main = mainRoute.to.url.encode()
    [paymentsByName] = paymentsRoute.reverse  # http://payments.internal/
    paymentsPort80 = paymentsByName.replace(".internal/", ".internal:80/").encode()
    found = 302
    answers = {
        "users": {
            b"/to-payments": (found, b"Location", payments + b"pay?order=7"),
            b"/to-payments-by-name": (
                found,
                b"Location",
                paymentsByName.encode() + b"receipt/7",
            ),
            b"/to-payments-relative": (found, b"Location", b"/api/payments/pay"),
            b"/to-login": (found, b"Location", b"/login?next=/api/users/me"),
            b"/to-main": (found, b"Location", main + b"catalog"),
        },
        "payments": {
            b"/to-users": (found, b"Location", users + b"42"),
            b"/to-users-relative": (found, b"Location", b"/api/users/42"),
            b"/to-receipt": (found, b"Location", b"{prefix}/receipt"),
        },
        "main": {
            b"/to-users": (found, b"Location", users + b"profile"),
            b"/to-payments": (found, b"Location", paymentsPort80 + b"checkout"),
            b"/featured-user": (200, b"Content-Location", users + b"42"),
        },
    }
    for name, route in (
        ("users", usersRoute),
        ("payments", paymentsRoute),
        ("main", mainRoute),
    ):
        backend = RecordingBackend(name, handler=service(name, answers[name]))
        await stack.backend(backend, targetPort(route))
    return await startProxy(stack, config)


async def get(stack: Stack, port: int, target: str) -> tuple[Any, bytes]:
    """GET C{target} through the proxy as a client of C{FRONT}."""
    response = await stack.agent().request(
        b"GET",
        b"http://127.0.0.1:%d%s" % (port, target.encode()),
        Headers({b"host": [FRONT]}),
    )
    return response, await treq.content(response)


@pytest_twisted.ensureDeferred
async def test_redirectsBetweenServicesNameTheProxy(stack: Stack) -> None:
    """Scenario 3: all 11 redirect probes get the public URL, none a service's."""
    proxy = await microservices(stack)
    received: dict[str, tuple[bytes, bytes]] = {}
    for path, (name, _) in EXPECTED.items():
        response, _ = await get(stack, proxy.port, path)
        [value] = response.headers.getRawHeaders(name)
        received[path] = (name, value)
    assert received == EXPECTED
    leaks = [
        value
        for _, value in received.values()
        if b":913" in value or b".internal" in value
    ]
    assert leaks == []


@pytest_twisted.ensureDeferred
async def test_followingRedirectsReachesTheService(stack: Stack) -> None:
    """Scenario 3: a client following each probe's answer reaches the service meant."""
    proxy = await microservices(stack)
    landed: dict[str, tuple[str, bytes]] = {}
    for path, (name, _) in EXPECTED.items():
        response, _ = await get(stack, proxy.port, path)
        [value] = response.headers.getRawHeaders(name)
        url = urlsplit(urljoin(f"http://{FRONT.decode()}{path}", value.decode()))
        assert url.netloc == FRONT.decode()
        target = url.path + (f"?{url.query}" if url.query else "")
        followed, body = await get(stack, proxy.port, target)
        [service] = followed.headers.getRawHeaders(b"x-service")
        landed[path] = (service.decode(), body)
    assert landed == LANDS
