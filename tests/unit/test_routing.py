"""Tests for L{twisted_proxy.routing}: route matching and upstream targets."""

from __future__ import annotations

import pytest

from twisted_proxy.config.model import Route
from twisted_proxy.routing import RouteTable, normalizeHost, originForm, upstreamTarget


def table(*routes: Route) -> RouteTable:
    """Build a table, numbering the routes in file order."""
    return RouteTable(
        [
            Route(path=r.path, host=r.host, handler=r.handler, index=i)
            for i, r in enumerate(routes)
        ]
    )


def matched(t: RouteTable, host: bytes | None, path: bytes) -> int | None:
    """Return the index of the route matched, or None."""
    route = t.match(host, path)
    return None if route is None else route.index


def test_longestPrefixWins() -> None:
    """The longest matching path prefix wins, whatever the file order."""
    t = table(Route("/"), Route("/api/users/"), Route("/api/"))
    assert matched(t, None, b"/api/users/7") == 1
    assert matched(t, None, b"/api/other") == 2
    assert matched(t, None, b"/static/x.css") == 0


def test_noMatch() -> None:
    """Without a catch-all route, an unrelated path matches nothing."""
    t = table(Route("/api/"))
    assert t.match(None, b"/other") is None
    assert t.match(None, b"/ap") is None


def test_trailingSlashRouteMatchesBarePath() -> None:
    """A route "/api/users/" also matches the path "/api/users" exactly."""
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"/api/users") == 1
    assert matched(t, None, b"/api/usersx") == 0


def test_prefixWithoutSlashStopsAtSegment() -> None:
    """A route "/api" matches "/api" and "/api/x" but not "/apix", as in Apache."""
    t = table(Route("/"), Route("/api"))
    assert matched(t, None, b"/api") == 1
    assert matched(t, None, b"/api/x") == 1
    assert matched(t, None, b"/apix") == 0


def test_queryIgnored() -> None:
    """Anything from "?" on plays no part in matching."""
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"/api/users?x=/") == 1
    assert matched(t, None, b"/a?/api/users/") == 0


def test_rawBytesNotDecoded() -> None:
    """Matching is on the raw path: "%2F" is not a slash and "%61" is not "a"."""
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"/api%2Fusers/x") == 0
    assert matched(t, None, b"/%61pi/users/x") == 0


def test_nonAsciiRoutePathMatchesEncodedRequest() -> None:
    """A configured non-ASCII path matches the percent-encoded form clients send."""
    t = table(Route("/"), Route("/café/"))
    assert matched(t, None, b"/caf%C3%A9/menu") == 1


def test_emptyPathIsRoot() -> None:
    """An empty path is treated as "/"."""
    assert matched(table(Route("/")), None, b"") == 0


def test_hostRouteOnlyForItsHost() -> None:
    """A route with a host matches only requests for that host."""
    t = table(Route("/api/", host="api.example.test"))
    assert matched(t, b"api.example.test", b"/api/x") == 0
    assert t.match(b"www.example.test", b"/api/x") is None
    assert t.match(None, b"/api/x") is None


def test_hostCaseAndPortIgnored() -> None:
    """The Host header's case, port and trailing dot do not matter."""
    t = table(Route("/", host="API.Example.test"))
    assert matched(t, b"api.EXAMPLE.test:8080", b"/") == 0
    assert matched(t, b"api.example.test.", b"/") == 0


def test_ipv6Host() -> None:
    """An IPv6 Host header with brackets and port matches a route for that address."""
    t = table(Route("/", host="::1"), Route("/", host="[::2]"))
    assert matched(t, b"[::1]:8080", b"/") == 0
    assert matched(t, b"[::1]", b"/") == 0
    assert matched(t, b"[::2]:80", b"/") == 1
    assert t.match(b"[::3]:8080", b"/") is None


def test_wildcardHost() -> None:
    """The host "*.example.test" matches any subdomain, not the bare domain."""
    t = table(Route("/", host="*.example.test"))
    assert matched(t, b"a.example.test", b"/") == 0
    assert matched(t, b"a.b.example.test:443", b"/") == 0
    assert t.match(b"example.test", b"/") is None
    assert t.match(b"badexample.test", b"/") is None


def test_hostSpecificBeatsHostlessAtEqualLength() -> None:
    """Among equal prefixes: exact host, then wildcard host, then any host."""
    t = table(
        Route("/app/"),
        Route("/app/", host="*.example.test"),
        Route("/app/", host="www.example.test"),
    )
    assert matched(t, b"www.example.test", b"/app/x") == 2
    assert matched(t, b"mail.example.test", b"/app/x") == 1
    assert matched(t, b"other.test", b"/app/x") == 0


def test_longerHostlessPrefixBeatsShorterHostRoute() -> None:
    """Prefix length comes first: a longer host-less prefix beats a host route."""
    t = table(Route("/", host="www.example.test"), Route("/api/"))
    assert matched(t, b"www.example.test", b"/api/x") == 1
    assert matched(t, b"www.example.test", b"/x") == 0


def test_equalRoutesKeepFileOrder() -> None:
    """Two identical routes: the first in the file wins."""
    t = table(Route("/a/"), Route("/a/"))
    assert matched(t, None, b"/a/") == 0


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, None),
        (b"", None),
        (b"Example.Test", b"example.test"),
        (b"example.test:8080", b"example.test"),
        (b"[::1]:8080", b"::1"),
        (b"[::1]", b"::1"),
        (b"::1", b"::1"),
        (b"example.test.", b"example.test"),
    ],
)
def test_normalizeHost(host: bytes | None, expected: bytes | None) -> None:
    """Host values are reduced to the bare lowercase name."""
    assert normalizeHost(host) == expected


@pytest.mark.parametrize(
    ("routePath", "targetPath", "raw", "expected"),
    [
        ("/api/users/", "/", b"/api/users/x%2Fy?q=1+2", b"/x%2Fy?q=1+2"),
        ("/api/users/", "/", b"/api/users", b"/"),
        ("/api/users/", "/", b"/api/users?a=1", b"/?a=1"),
        ("/api/users/", "/", b"/api/users/", b"/"),
        ("/", "/app/", b"/a?b", b"/app/a?b"),
        ("/", "/app/", b"/", b"/app/"),
        ("/", "/", b"/a%20b/c+d", b"/a%20b/c+d"),
        ("/api", "/v1", b"/api/x", b"/v1/x"),
        ("/api", "/v1", b"/api", b"/v1"),
        ("/api", "/v1/", b"/api/x", b"/v1/x"),
        ("/api/", "/v1", b"/api/x", b"/v1/x"),
        ("/api/", "/v1", b"/api?q", b"/v1?q"),
        ("/api/", "", b"/api/x", b"/x"),
        ("/", "/app", b"/", b"/app"),
    ],
)
def test_upstreamTarget(
    routePath: str, targetPath: str, raw: bytes, expected: bytes
) -> None:
    """The route prefix is swapped for the target's byte for byte, one slash between."""
    assert upstreamTarget(routePath, targetPath, raw) == expected


def test_upstreamTargetOutsideRoute() -> None:
    """A request-target not under the route path is a programming error."""
    with pytest.raises(ValueError, match="not under"):
        upstreamTarget("/api/", "/", b"/other")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/a?b", b"/a?b"),
        (b"http://example.test/a/b?c", b"/a/b?c"),
        (b"http://example.test", b"/"),
        (b"http://example.test?q=1", b"/?q=1"),
        (b"https://[::1]:8443/x", b"/x"),
        (b"*", b"*"),
    ],
)
def test_originForm(target: bytes, expected: bytes) -> None:
    """An absolute-form request-target is reduced to its path and query."""
    assert originForm(target) == expected


def test_absoluteFormMatchedAndRewritten() -> None:
    """A request sent in absolute form is routed and rewritten by its path."""
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"http://example.test/api/users/7") == 1
    assert upstreamTarget("/api/users/", "/", b"http://example.test/api/users/7?x") == (
        b"/7?x"
    )
