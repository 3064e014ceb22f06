"""Tests for L{twisted_proxy.core.routing}: route matching and upstream targets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from twisted_proxy.config.model import Route
from twisted_proxy.core.requesttarget import normalizeTarget
from twisted_proxy.core.routing import (
    PathPattern,
    RouteTable,
    normalizeHost,
    upstreamTarget,
)


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


def test_trailingSlashRouteSkipsBarePath() -> None:
    """
    A route "/api/users/" does not match "/api/users": that request falls
    through to the next matching route, as with Apache's ProxyPass.
    """
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"/api/users") == 0
    assert matched(t, None, b"/api/users/") == 1
    assert matched(t, None, b"/api/usersx") == 0
    assert table(Route("/api/users/")).match(None, b"/api/users") is None


def test_prefixWithoutSlashStopsAtSegment() -> None:
    """A route "/api" matches "/api" and "/api/x" but not "/apix", as in Apache."""
    t = table(Route("/"), Route("/api"))
    assert matched(t, None, b"/api") == 1
    assert matched(t, None, b"/api/x") == 1
    assert matched(t, None, b"/apix") == 0


def test_rawBytesNotDecoded() -> None:
    """
    Matching compares bytes: "%2F" (which normalisation keeps) is not a
    slash; decoding "%61" to "a" is normalisation's job, done before.
    """
    t = table(Route("/"), Route("/api/users/"))
    assert matched(t, None, b"/api%2Fusers/x") == 0
    assert matched(t, None, b"/%61pi/users/x") == 0


def test_nonAsciiRoutePathMatchesEncodedRequest() -> None:
    """A configured non-ASCII path matches the percent-encoded form clients send."""
    t = table(Route("/"), Route("/café/"))
    assert matched(t, None, b"/caf%C3%A9/menu") == 1


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


def test_hostComesBeforePrefixLength() -> None:
    """
    The host is chosen first: a host's own "/" beats a longer host-less
    prefix for that host; other hosts get the host-less route.
    """
    t = table(Route("/", host="www.example.test"), Route("/api/"))
    assert matched(t, b"www.example.test", b"/api/x") == 0
    assert matched(t, b"www.example.test", b"/x") == 0
    assert matched(t, b"other.test", b"/api/x") == 1


def test_hostlessRoutesWhenNoHostRouteMatchesThePath() -> None:
    """
    Host-less routes (and less specific hosts) are tried only when no route
    of the more specific host matches the path.
    """
    t = table(
        Route("/app/", host="www.example.test"),
        Route("/api/", host="*.example.test"),
        Route("/api/"),
        Route("/"),
    )
    assert matched(t, b"www.example.test", b"/app/x") == 0
    assert matched(t, b"www.example.test", b"/api/x") == 1
    assert matched(t, b"www.example.test", b"/other") == 3
    assert matched(t, b"elsewhere.test", b"/api/x") == 2


def test_mostSpecificWildcardFirst() -> None:
    """Of two wildcards that cover a host, the longer one is tried first."""
    t = table(
        Route("/", host="*.example.test"),
        Route("/", host="*.apps.example.test"),
    )
    assert matched(t, b"x.apps.example.test", b"/") == 1
    assert matched(t, b"x.example.test", b"/") == 0


def test_routesInMatchingOrder() -> None:
    """The table lists its routes in the order matching tries them."""
    t = table(Route("/"), Route("/a/"), Route("/", host="h.test"))
    assert [r.index for r in t.routes] == [2, 1, 0]


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
        ("/api/users/", "/", b"/api/users/?a=1", b"/?a=1"),
        ("/api/users/", "/", b"/api/users/", b"/"),
        ("/api/users/", "/", b"/api/users/../users/x", b"/x"),
        ("/api/users/", "/v1/", b"/api;v=2/users;x/7;y?q", b"/v1/7;y?q"),
        ("/admin/", "/", b"/;x/admin/secret", b"/secret"),
        ("/api", "/v1", b"/api;p", b"/v1"),
        ("/", "/app/", b"/a?b", b"/app/a?b"),
        ("/", "/app/", b"/", b"/app/"),
        ("/", "/", b"/a%20b/c+d", b"/a%20b/c+d"),
        ("/api", "/v1", b"/api/x", b"/v1/x"),
        ("/api", "/v1", b"/api", b"/v1"),
        ("/api", "/v1/", b"/api/x", b"/v1/x"),
        ("/api/", "/v1", b"/api/x", b"/v1/x"),
        ("/api/", "/v1", b"/api/?q", b"/v1?q"),
        ("/api/", "", b"/api/x", b"/x"),
        ("/", "/app", b"/", b"/app"),
    ],
)
def test_upstreamTarget(
    routePath: str, targetPath: str, raw: bytes, expected: bytes
) -> None:
    """
    The route prefix is swapped for the target's on the normalised target,
    byte for byte, one slash between; path parameters of what follows the
    prefix are kept.
    """
    assert upstreamTarget(routePath, targetPath, normalizeTarget(raw)) == expected


def test_upstreamTargetOutsideRoute() -> None:
    """A request-target not under the route path is a programming error."""
    with pytest.raises(ValueError, match="not under"):
        upstreamTarget("/api/", "/", normalizeTarget(b"/other"))
    with pytest.raises(ValueError, match="not under"):
        upstreamTarget("/api/", "/", normalizeTarget(b"/api"))


# -- aliases, match and exclude routes --------------------------------------------


def numbered(*routes: Route) -> RouteTable:
    """Build a table of C{routes} as given, numbered in file order."""
    return RouteTable([replace(r, index=i) for i, r in enumerate(routes)])


def test_aliasMatchedAsTheHost() -> None:
    """Each alias answers as the host does; other names do not."""
    t = numbered(
        Route("/", host="example.test", aliases=("www.example.test", "*.example.org"))
    )
    for name in (b"example.test", b"WWW.example.test:8080", b"a.b.example.org"):
        assert matched(t, name, b"/x") == 0
    assert t.match(b"example.org", b"/x") is None
    assert t.match(b"mail.example.test", b"/x") is None


def test_aliasTakesItsOwnTier() -> None:
    """
    A wildcard alias sits among the wildcards: an exact host's route wins
    over it, and it wins over a shorter wildcard and over host-less routes.
    """
    t = numbered(
        Route("/", host="a.test", aliases=("*.apps.example.test",)),
        Route("/", host="x.apps.example.test"),
        Route("/", host="*.example.test"),
        Route("/api/"),
    )
    assert matched(t, b"x.apps.example.test", b"/api/1") == 1
    assert matched(t, b"y.apps.example.test", b"/api/1") == 0
    assert matched(t, b"y.example.test", b"/api/1") == 2
    assert matched(t, b"other.test", b"/api/1") == 3


def test_namesListEachAlias() -> None:
    """names gives a route once per name, in matching order; routes once."""
    t = numbered(Route("/"), Route("/", host="a.test", aliases=("*.b.test", "c.test")))
    assert [(name, r.index) for name, r in t.names] == [
        ("a.test", 1),
        ("c.test", 1),
        ("*.b.test", 1),
        (None, 0),
    ]
    assert [r.index for r in t.routes] == [1, 0]


def test_matchRouteIsSearched() -> None:
    """A pattern is searched for, not anchored unless it says so."""
    t = numbered(Route("", match="\\.gif$"), Route("", match="^/api/v[0-9]+/"))
    assert matched(t, None, b"/a/b/c.gif") == 0
    assert matched(t, None, b"/api/v2/x") == 1
    assert t.match(None, b"/x/api/v2/x") is None
    assert t.match(None, b"/c.gifs") is None


def test_matchRoutesBeforePrefixesInFileOrder() -> None:
    """In a host tier the match routes come first, in file order."""
    t = numbered(
        Route("/img/"),
        Route("", match="\\.png$"),
        Route("", match="^/img/"),
        Route("", match="^/img/.*\\.png$"),
    )
    assert matched(t, None, b"/img/a.png") == 1
    assert matched(t, None, b"/img/a.gif") == 2
    assert matched(t, None, b"/other") is None


def test_hostBeforeMatch() -> None:
    """A host's prefix route beats a host-less match route for that host."""
    t = numbered(Route("", match="^/"), Route("/app/", host="a.test"))
    assert matched(t, b"a.test", b"/app/x") == 1
    assert matched(t, b"a.test", b"/other") == 0
    assert matched(t, b"b.test", b"/app/x") == 0


def test_matchSeesTheNormalisedBytes() -> None:
    """The pattern meets the bytes routing sees: %2F is no slash."""
    t = numbered(Route("", match="^/a/b$"), Route("", match="^/a%2Fb$"))
    assert matched(t, None, b"/a%2Fb") == 1
    assert matched(t, None, b"/a/b") == 0


def test_matchOnAHostAndItsAliases() -> None:
    """A match route with a host answers that host and its aliases only."""
    t = numbered(Route("", match="^/", host="a.test", aliases=("b.test",)))
    assert matched(t, b"b.test", b"/x") == 0
    assert t.match(b"c.test", b"/x") is None


def test_excludeRouteIsMatchedLikeAnyOther() -> None:
    """The longer exclude prefix wins; what it means is the caller's."""
    t = numbered(Route("/app/", host="a.test"), Route("/app/static/", exclude=True))
    assert matched(t, None, b"/app/static/x.css") == 1
    assert matched(t, b"a.test", b"/app/static/x.css") == 0
    assert t.match(None, b"/app/x") is None


@pytest.mark.parametrize(
    ("pattern", "toPath", "raw", "expected"),
    [
        (
            "^/img/(.*\\.gif)$",
            "/static/$1",
            b"/img/a/b.gif?v=2",
            b"/static/a/b.gif?v=2",
        ),
        ("^/(a)/(b)/", "/$2/$1/$2", b"/a/b/c", b"/b/a/b"),
        ("\\.gif$", "/x$0", b"/a.gif", b"/x.gif"),
        ("^/(x)?y", "/z$1", b"/y", b"/z"),
        ("^/(.*)$", "/f/$1", b"/a%20b/c%2Fd", b"/f/a%20b/c%2Fd"),
        ("^/u/(.*)$", "/f/$1", b"/u/a;p=1/b", b"/f/a/b"),
        ("^/api/", "/", b"/api/x?q=1", b"/api/x?q=1"),
        ("^/api/", "/v2", b"/api/x", b"/v2/api/x"),
        ("^/api/", "/v2/", b"/api/x", b"/v2/api/x"),
        ("^/api/", "/v2/", b"/api/x;p=1/y?q", b"/v2/api/x;p=1/y?q"),
        ("^/(.*)$", "/caf\u00e9/$1", b"/x", b"/caf%C3%A9/x"),
    ],
)
def test_pathPattern(pattern: str, toPath: str, raw: bytes, expected: bytes) -> None:
    """
    $N is the captured bytes; without any, the request path is appended to
    the to path (one slash between); the query follows.
    """
    target = normalizeTarget(raw)
    assert PathPattern(pattern, toPath).upstreamTarget(target) == expected


def test_pathPatternRefusesADotSegment() -> None:
    """A capture that would make a dot segment is a ValueError (a 400)."""
    pattern = PathPattern("^/f/a(.*)$", "/base/$1")
    assert pattern.upstreamTarget(normalizeTarget(b"/f/a.x")) == b"/base/.x"
    with pytest.raises(ValueError, match="dot segment"):
        pattern.upstreamTarget(normalizeTarget(b"/f/a.."))


def test_pathPatternOutsideRoute() -> None:
    """A target the pattern does not match is a programming error."""
    with pytest.raises(ValueError, match="does not match"):
        PathPattern("^/a/", "/").upstreamTarget(normalizeTarget(b"/b"))
