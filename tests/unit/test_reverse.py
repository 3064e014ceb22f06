"""
Tests for L{twisted_proxy.core.reverse}: ProxyPassReverse and its cookie forms,
with plain values.
"""

from __future__ import annotations

import pytest

from twisted_proxy.config import parseTarget
from twisted_proxy.config.model import Balancer, Member, Route, Target
from twisted_proxy.core.reverse import ReverseRewriter
from twisted_proxy.core.reversemap import ReverseTable, routePrefixes

FRONT = b"api.example.test"

Headers = list[tuple[bytes, bytes]]


def rewriter(*prefixes: str, front: str = "/api/users/") -> ReverseRewriter:
    """A rewriter for C{prefixes} onto C{front}."""
    return ReverseRewriter(prefixes, front)


def location(r: ReverseRewriter, value: bytes, scheme: str = "https") -> bytes:
    """Rewrite one Location value as seen by a client of C{FRONT}."""
    return r.rewriteLocation(value, scheme, FRONT)


# -- absolute URLs ---------------------------------------------------------------------


def test_locationUnderRootTarget() -> None:
    """A backend URL under the target becomes the public URL, query kept."""
    r = rewriter("http://127.0.0.1:3000/")
    assert (
        location(r, b"http://127.0.0.1:3000/login?x=1")
        == b"https://api.example.test/api/users/login?x=1"
    )


def test_locationTargetItself() -> None:
    """The target URL itself maps to the route's path."""
    r = rewriter("http://127.0.0.1:3000/")
    assert (
        location(r, b"http://127.0.0.1:3000/") == b"https://api.example.test/api/users/"
    )


def test_locationEmptyPath() -> None:
    """A URL with no path is the root path."""
    r = rewriter("http://127.0.0.1:3000/")
    assert (
        location(r, b"http://127.0.0.1:3000") == b"https://api.example.test/api/users/"
    )
    assert (
        location(r, b"http://127.0.0.1:3000?a=b")
        == b"https://api.example.test/api/users/?a=b"
    )


def test_locationFrontScheme() -> None:
    """The client's scheme, not the backend's, is used."""
    r = rewriter("https://backend/")
    assert location(r, b"https://backend/x", scheme="http") == (
        b"http://api.example.test/api/users/x"
    )


def test_locationFrontHostWithPort() -> None:
    """The front host is used as given, port included."""
    r = rewriter("http://backend/")
    assert r.rewriteLocation(b"http://backend/x", "https", b"h:8443") == (
        b"https://h:8443/api/users/x"
    )


def test_locationRestByteForByte() -> None:
    """Everything after the prefix is kept byte for byte."""
    r = rewriter("http://backend/")
    rest = b"a%2Fb/%E2%82%AC;p=1?next=http://backend/x&y=%20#frag/ment"
    assert location(r, b"http://backend/" + rest) == (
        b"https://api.example.test/api/users/" + rest
    )


@pytest.mark.parametrize(
    ("prefix", "value"),
    [
        ("http://backend:80/", b"http://backend/x"),
        ("http://backend/", b"http://backend:80/x"),
        ("https://backend:443/", b"https://backend/x"),
        ("https://backend/", b"https://backend:443/x"),
        ("http://backend:3000/", b"http://backend:3000/x"),
    ],
)
def test_locationPortNormalised(prefix: str, value: bytes) -> None:
    """Default ports match their absence, both ways."""
    assert location(rewriter(prefix), value) == b"https://api.example.test/api/users/x"


@pytest.mark.parametrize(
    ("prefix", "value"),
    [
        ("http://backend:3000/", b"http://backend:3001/x"),
        ("http://backend:3000/", b"http://backend/x"),
        ("http://backend/", b"http://backend:8080/x"),
        ("http://backend/", b"https://backend/x"),
        ("https://backend/", b"http://backend:443/x"),
        ("http://backend/", b"http://backend.other/x"),
        ("http://backend/", b"http://other/x"),
    ],
)
def test_locationOtherOriginUnchanged(prefix: str, value: bytes) -> None:
    """A different port, scheme or host is left alone."""
    assert location(rewriter(prefix), value) is value


def test_locationSchemeAndHostCaseInsensitive() -> None:
    """Scheme and host compare case-insensitively."""
    r = rewriter("HTTP://Backend.Internal/")
    assert location(r, b"http://BACKEND.internal/X") == (
        b"https://api.example.test/api/users/X"
    )


def test_locationPathCaseSensitive() -> None:
    """The path compares case-sensitively."""
    r = rewriter("http://backend/app/")
    value = b"http://backend/APP/x"
    assert location(r, value) is value


def test_locationUnderTargetPath() -> None:
    """A target path prefix is replaced by the route path."""
    r = rewriter("http://backend/app/")
    assert location(r, b"http://backend/app/x/y") == (
        b"https://api.example.test/api/users/x/y"
    )


def test_locationOutsideTargetPath() -> None:
    """A backend URL outside the target's path is left alone."""
    r = rewriter("http://backend/app/")
    value = b"http://backend/other/x"
    assert location(r, value) is value


def test_locationSegmentBoundary() -> None:
    """A prefix path matches whole segments: /app does not match /apple."""
    r = rewriter("http://backend/app")
    value = b"http://backend/apple"
    assert location(r, value) is value


def test_locationPrefixWithoutSlashExact() -> None:
    """A prefix without a trailing slash matches its exact URL and below."""
    r = rewriter("http://backend/app")
    assert location(r, b"http://backend/app") == b"https://api.example.test/api/users/"
    assert location(r, b"http://backend/app/x") == (
        b"https://api.example.test/api/users/x"
    )


def test_locationHostOnlyPrefix() -> None:
    """A prefix with no path at all matches the bare URL and everything below."""
    r = rewriter("http://users.internal")
    assert location(r, b"http://users.internal") == (
        b"https://api.example.test/api/users/"
    )
    assert location(r, b"http://users.internal/a") == (
        b"https://api.example.test/api/users/a"
    )


def test_locationDirectoryWithoutSlash() -> None:
    """The target directory named without its slash maps to the route likewise."""
    r = rewriter("http://backend/app/")
    assert location(r, b"http://backend/app") == b"https://api.example.test/api/users"
    assert location(r, b"http://backend/app?q") == (
        b"https://api.example.test/api/users?q"
    )


def test_locationFrontPathWithoutSlash() -> None:
    """A route path without a trailing slash never gains or loses one."""
    r = rewriter("http://backend/", front="/api")
    assert location(r, b"http://backend/x") == b"https://api.example.test/api/x"
    assert location(r, b"http://backend/") == b"https://api.example.test/api"


def test_locationRootFront() -> None:
    """A route on / maps the target path to the root."""
    r = rewriter("http://backend/app/", front="/")
    assert location(r, b"http://backend/app/x") == b"https://api.example.test/x"
    assert location(r, b"http://backend/app") == b"https://api.example.test/"


def test_locationLongestPrefixWins() -> None:
    """Among prefixes of one origin the longest matching path wins."""
    r = ReverseRewriter(["http://backend/", "http://backend/app/"], "/front/")
    assert location(r, b"http://backend/app/x") == b"https://api.example.test/front/x"
    assert location(r, b"http://backend/other") == (
        b"https://api.example.test/front/other"
    )


def test_locationReverseList() -> None:
    """Each extra reverse URL is recognised as well as the target."""
    r = rewriter("http://127.0.0.1:3000/", "http://users.internal/", "https://u2/v/")
    assert location(r, b"http://users.internal/a") == (
        b"https://api.example.test/api/users/a"
    )
    assert location(r, b"https://u2/v/b") == b"https://api.example.test/api/users/b"
    assert location(r, b"http://127.0.0.1:3000/c") == (
        b"https://api.example.test/api/users/c"
    )


def test_locationIPv6() -> None:
    """Bracketed IPv6 hosts are compared without their brackets."""
    r = rewriter("http://[::1]:3000/")
    assert (
        location(r, b"http://[::1]:3000/x") == b"https://api.example.test/api/users/x"
    )
    value = b"http://[::2]:3000/x"
    assert location(r, value) is value


def test_locationWebSocketTarget() -> None:
    """A ws:// target also recognises http:// URLs of the same origin."""
    r = rewriter("ws://127.0.0.1:8081/ws/", front="/ws/")
    assert (
        location(r, b"http://127.0.0.1:8081/ws/x") == b"https://api.example.test/ws/x"
    )


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"login",
        b"?x=1",
        b"#top",
        b"//127.0.0.1:3000/x",
        b"http://user@127.0.0.1:3000/x",
        b"http://127.0.0.1:abc/x",
        b"http://[::1/x",
        b"ftp://127.0.0.1:3000/x",
        b"mailto:a@b",
        b"://127.0.0.1:3000/",
    ],
)
def test_locationUnrecognisedUnchanged(value: bytes) -> None:
    """Values that are not backend URLs are returned as the same object."""
    assert location(rewriter("http://127.0.0.1:3000/"), value) is value


def test_balancerPrefixIgnored() -> None:
    """A balancer:// prefix is never matched itself."""
    r = rewriter("balancer://web/")
    value = b"balancer://web/x"
    assert location(r, value) is value
    assert not r.active


# -- relative locations ---------------------------------------------------------


def test_relativeUnderRootTarget() -> None:
    """An absolute path from a backend at / moves under the route path."""
    r = rewriter("http://127.0.0.1:3000/")
    assert location(r, b"/login") == b"/api/users/login"
    assert location(r, b"/login?next=/x#f") == b"/api/users/login?next=/x#f"
    assert location(r, b"/") == b"/api/users/"


def test_relativeUnderTargetPath() -> None:
    """An absolute path under the target's path has that path swapped."""
    r = rewriter("http://backend/app/")
    assert location(r, b"/app/login") == b"/api/users/login"


def test_relativeOutsideTargetPath() -> None:
    """An absolute path outside every target path is left alone."""
    r = rewriter("http://backend/app/")
    value = b"/other/login"
    assert location(r, value) is value


def test_relativeSamePathUnchanged() -> None:
    """When target and route share the path, absolute paths are left alone."""
    r = rewriter("http://backend/api/users/")
    value = b"/api/users/login"
    assert location(r, value) is value


def test_relativeUsesReversePaths() -> None:
    """Paths of reverse URLs count too, the longest first."""
    r = rewriter("http://backend/app/", "http://users.internal/app/v2/")
    assert location(r, b"/app/v2/x") == b"/api/users/x"
    assert location(r, b"/app/y") == b"/api/users/y"


@pytest.mark.parametrize(
    "value",
    [
        b"/api/users/login",
        b"/api/users/",
        b"/api/users",
        b"/api/users/a/b?next=/api/users/#f",
    ],
)
def test_relativeAlreadyPublicNotPrefixedTwice(value: bytes) -> None:
    """A backend that writes its public path (from X-Forwarded-Prefix) keeps it."""
    assert location(rewriter("http://127.0.0.1:3000/"), value) is value


def test_relativeLongestOfBackendAndPublicPathWins() -> None:
    """Whichever covers more of the path, a backend path or the route path, wins."""
    r = rewriter("http://backend/", "http://backend/api/users/v1/", front="/api/")
    assert location(r, b"/api/users/v1/x") == b"/api/x"
    assert location(r, b"/x") == b"/api/x"
    value = b"/api/x"
    assert location(r, value) is value


# -- cookies ---------------------------------------------------------------


def cookies(
    domains: tuple[tuple[str, str], ...] = (), paths: tuple[tuple[str, str], ...] = ()
) -> ReverseRewriter:
    """A rewriter with only cookie mappings."""
    return ReverseRewriter((), "/api/users/", domains, paths)


DOMAIN = (("users.internal", "api.example.test"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a=1; Domain=users.internal", b"a=1; Domain=api.example.test"),
        (b"a=1; domain=users.internal", b"a=1; domain=api.example.test"),
        (b"a=1; DOMAIN=Users.Internal", b"a=1; DOMAIN=api.example.test"),
        (b"a=1; Domain=.users.internal", b"a=1; Domain=api.example.test"),
        (
            b"a=1;Domain = users.internal ;Secure",
            b"a=1;Domain = api.example.test ;Secure",
        ),
        (
            b"a=1; Path=/; Domain=users.internal; HttpOnly; SameSite=Lax",
            b"a=1; Path=/; Domain=api.example.test; HttpOnly; SameSite=Lax",
        ),
    ],
)
def test_cookieDomainMapped(value: bytes, expected: bytes) -> None:
    """Domain is mapped case-insensitively, dot tolerated, the rest kept."""
    assert cookies(DOMAIN).rewriteSetCookie(value) == expected


def test_cookieDomainMappingWithDot() -> None:
    """A mapping key written with a leading dot matches too."""
    r = cookies(((".users.internal", "api.example.test"),))
    assert r.rewriteSetCookie(b"a=1; Domain=users.internal") == (
        b"a=1; Domain=api.example.test"
    )


@pytest.mark.parametrize(
    "value",
    [
        b"a=1; Domain=sub.users.internal",
        b"a=1; Domain=users.internal.evil",
        b"a=1; Domain=other",
        b"Domain=users.internal",
        b"a=Domain=users.internal; Secure",
        b"a=1; Secure; HttpOnly",
        b"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
    ],
)
def test_cookieDomainUnchanged(value: bytes) -> None:
    """Other domains, the cookie's own name=value, and other attributes stay."""
    assert cookies(DOMAIN).rewriteSetCookie(value) is value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a=1; Path=/", b"a=1; Path=/api/users/"),
        (b"a=1; path=/x", b"a=1; path=/api/users/x"),
        (b"a=1; Path=/x/y; Secure", b"a=1; Path=/api/users/x/y; Secure"),
    ],
)
def test_cookiePathMapped(value: bytes, expected: bytes) -> None:
    """A Path under the internal prefix is moved under the public one."""
    assert cookies(paths=(("/", "/api/users/"),)).rewriteSetCookie(value) == expected


def test_cookiePathLongestWins() -> None:
    """The longest matching internal path prefix is the one replaced."""
    r = cookies(paths=(("/", "/a/"), ("/static/", "/s/")))
    assert r.rewriteSetCookie(b"a=1; Path=/static/img") == b"a=1; Path=/s/img"
    assert r.rewriteSetCookie(b"a=1; Path=/static") == b"a=1; Path=/s"
    assert r.rewriteSetCookie(b"a=1; Path=/x") == b"a=1; Path=/a/x"


def test_cookiePathExactWithoutSlash() -> None:
    """An exact internal path maps to the exact public path, slash as written."""
    r = cookies(paths=(("/", "/api/users"),))
    assert r.rewriteSetCookie(b"a=1; Path=/") == b"a=1; Path=/api/users"
    assert r.rewriteSetCookie(b"a=1; Path=/x") == b"a=1; Path=/api/users/x"


@pytest.mark.parametrize(
    "value",
    [b"a=1; Path=/apple", b"a=1; Path=/other", b"a=1; Path=", b"Path=/app"],
)
def test_cookiePathUnchanged(value: bytes) -> None:
    """Paths outside the mapping, empty paths and cookie names stay."""
    assert cookies(paths=(("/app", "/x"),)).rewriteSetCookie(value) is value


def test_cookieDomainAndPath() -> None:
    """Domain and Path are both rewritten in one cookie."""
    r = cookies(DOMAIN, (("/", "/api/users/"),))
    assert r.rewriteSetCookie(b"sid=abc; Domain=users.internal; Path=/; Secure") == (
        b"sid=abc; Domain=api.example.test; Path=/api/users/; Secure"
    )


def test_cookieWithoutMappings() -> None:
    """With no cookie mappings Set-Cookie values are returned untouched."""
    value = b"a=1; Domain=users.internal; Path=/"
    assert rewriter("http://backend/").rewriteSetCookie(value) is value


# -- whole header lists ----------------------------------------------------------------


def fullRewriter() -> ReverseRewriter:
    """A rewriter with prefixes and both cookie mappings."""
    return ReverseRewriter(
        ["http://127.0.0.1:3000/", "http://users.internal/"],
        "/api/users/",
        DOMAIN,
        (("/", "/api/users/"),),
    )


def test_responseHeadersRewritten() -> None:
    """Location, Content-Location, URI and each Set-Cookie are rewritten in place."""
    headers = [
        (b"location", b"http://127.0.0.1:3000/a"),
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1; Path=/"),
        (b"Content-Location", b"http://users.internal/b"),
        (b"set-cookie", b"b=2; Domain=users.internal"),
        (b"URI", b"/c"),
        (b"SET-COOKIE", b"c=3"),
        (b"Link", b"<http://127.0.0.1:3000/d>"),
    ]
    out = fullRewriter().rewriteResponseHeaders(headers, "https", FRONT)
    assert out == [
        (b"location", b"https://api.example.test/api/users/a"),
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1; Path=/api/users/"),
        (b"Content-Location", b"https://api.example.test/api/users/b"),
        (b"set-cookie", b"b=2; Domain=api.example.test"),
        (b"URI", b"/api/users/c"),
        (b"SET-COOKIE", b"c=3"),
        (b"Link", b"<http://127.0.0.1:3000/d>"),
    ]
    assert headers[0] == (b"location", b"http://127.0.0.1:3000/a")


def test_responseHeadersUnchangedReturnsInput() -> None:
    """When nothing needs rewriting the same list comes back."""
    headers = [
        (b"Location", b"https://elsewhere.test/"),
        (b"Set-Cookie", b"a=1"),
        (b"Content-Type", b"text/html"),
    ]
    assert fullRewriter().rewriteResponseHeaders(headers, "https", FRONT) is headers


def test_inactiveRewriter() -> None:
    """A rewriter with nothing to map is inactive and returns its input."""
    r = ReverseRewriter((), "/api/users/")
    headers = [(b"Location", b"http://127.0.0.1:3000/")]
    assert not r.active
    assert r.rewriteResponseHeaders(headers, "https", FRONT) is headers


def test_activeRewriter() -> None:
    """A rewriter with a prefix or a cookie mapping is active."""
    assert rewriter("http://backend/").active
    assert cookies(DOMAIN).active
    assert cookies(paths=(("/", "/a/"),)).active


def test_cookieOnlyRewriterLeavesLocation() -> None:
    """A cookie-only rewriter leaves Location headers alone."""
    headers = [(b"Location", b"/login"), (b"Set-Cookie", b"a=1; Path=/")]
    out = cookies(paths=(("/", "/a/"),)).rewriteResponseHeaders(headers, "https", FRONT)
    assert out == [(b"Location", b"/login"), (b"Set-Cookie", b"a=1; Path=/a/")]


# -- every route of a host ------------------------------------------------------------


def route(path: str, to: str, host: str | None = None, **extra: object) -> Route:
    """A route from C{path} (on C{host}) to the backend URL C{to}."""
    return Route(path=path, host=host, to=parseTarget(to), **extra)  # type: ignore[arg-type]


# Scenario 3: microservices by path.
USERS = route(
    "/api/users/", "http://127.0.0.1:9131/", cookie_path=(("/", "/api/users/"),)
)
PAYMENTS = route(
    "/api/payments/",
    "http://127.0.0.1:9132/",
    reverse=("http://payments.internal/",),
    cookie_domain=(("payments.internal", "api.example.test"),),
    cookie_path=(("/", "/api/payments/"),),
)
MAIN = route("/", "http://127.0.0.1:9133/")


def tabled(
    *routes: Route, balancers: dict[str, Balancer] | None = None
) -> list[ReverseRewriter]:
    """Each route's rewriter, sharing one table of C{routes}."""
    table = ReverseTable(routes, balancers)
    return [
        ReverseRewriter.fromRoute(
            r, (balancers or {}).get(r.to.host) if r.to else None, table
        )
        for r in routes
    ]


def test_tableRedirectToAnotherRoute() -> None:
    """A backend URL of another route of the host maps to that route's path."""
    users, payments, main = tabled(USERS, PAYMENTS, MAIN)
    assert location(users, b"http://127.0.0.1:9132/pay?x=1") == (
        b"https://api.example.test/api/payments/pay?x=1"
    )
    assert location(payments, b"http://127.0.0.1:9131/42") == (
        b"https://api.example.test/api/users/42"
    )
    assert location(users, b"http://127.0.0.1:9133/") == b"https://api.example.test/"
    assert location(main, b"http://127.0.0.1:9131/me") == (
        b"https://api.example.test/api/users/me"
    )
    # Without the table (an embedded resource) only a route's own URLs count.
    value = b"http://127.0.0.1:9132/pay"
    assert location(ReverseRewriter.fromRoute(USERS), value) is value


def test_tableReverseURLsOfAnotherRoute() -> None:
    """Another route's reverse URLs are recognised too, with or without a port."""
    users, _, main = tabled(USERS, PAYMENTS, MAIN)
    assert location(users, b"http://payments.internal/receipt") == (
        b"https://api.example.test/api/payments/receipt"
    )
    assert location(main, b"http://PAYMENTS.internal:80") == (
        b"https://api.example.test/api/payments/"
    )


def test_tableBalancerMembersOfAnotherRoute() -> None:
    """A balancer route's members are recognised in another route's responses."""
    shop = Route(
        path="/shop/", to=Target("balancer://web/app/", "balancer", "web", 0, "/app/")
    )
    balancer = Balancer(
        name="web",
        members=(
            Member("http://198.51.100.1:9001", "http", "198.51.100.1", 9001),
            Member("http://198.51.100.2:9001/", "http", "198.51.100.2", 9001),
        ),
    )
    users, shopRewriter = tabled(USERS, shop, balancers={"web": balancer})
    assert location(users, b"http://198.51.100.2:9001/app/cart") == (
        b"https://api.example.test/shop/cart"
    )
    assert location(shopRewriter, b"http://127.0.0.1:9131/x") == (
        b"https://api.example.test/api/users/x"
    )


def test_tableLongestBackendPathWins() -> None:
    """Among routes to one backend, the one with the longest backend path wins."""
    site, deep = tabled(
        route("/site/", "http://backend/"), route("/deep/", "http://backend/v2/")
    )
    for r in (site, deep):
        assert location(r, b"http://backend/v2/x") == b"https://api.example.test/deep/x"
        assert location(r, b"http://backend/v2") == b"https://api.example.test/deep"
        assert location(r, b"http://backend/v22") == (
            b"https://api.example.test/site/v22"
        )
        assert location(r, b"http://backend/x") == b"https://api.example.test/site/x"


def test_tableTieGoesToOwnRouteThenFirst() -> None:
    """Two routes to one backend URL: the answering one wins, else the first."""
    one, two, other = tabled(
        route("/one/", "http://backend/"),
        route("/two/", "http://backend/"),
        route("/other/", "http://elsewhere/"),
    )
    assert location(one, b"http://backend/x") == b"https://api.example.test/one/x"
    assert location(two, b"http://backend/x") == b"https://api.example.test/two/x"
    assert location(other, b"http://backend/x") == b"https://api.example.test/one/x"


def test_tableContentLocationAndURI() -> None:
    """Content-Location and URI are rewritten across routes as Location is."""
    users, _, _ = tabled(USERS, PAYMENTS, MAIN)
    headers = [
        (b"Location", b"http://127.0.0.1:9132/pay"),
        (b"Content-Location", b"http://payments.internal/receipt/7"),
        (b"URI", b"http://127.0.0.1:9133/catalog"),
        (b"Link", b"<http://127.0.0.1:9132/pay>"),
    ]
    assert users.rewriteResponseHeaders(headers, "http", b"shop.example.test:8083") == [
        (b"Location", b"http://shop.example.test:8083/api/payments/pay"),
        (b"Content-Location", b"http://shop.example.test:8083/api/payments/receipt/7"),
        (b"URI", b"http://shop.example.test:8083/catalog"),
        (b"Link", b"<http://127.0.0.1:9132/pay>"),
    ]


def test_tableCookiesStayPerRoute() -> None:
    """Set-Cookie goes through the answering route's cookie mappings only."""
    users, payments, _ = tabled(USERS, PAYMENTS, MAIN)
    value = b"sid=1; Domain=payments.internal; Path=/"
    assert users.rewriteSetCookie(value) == (
        b"sid=1; Domain=payments.internal; Path=/api/users/"
    )
    assert payments.rewriteSetCookie(value) == (
        b"sid=1; Domain=api.example.test; Path=/api/payments/"
    )


def test_tableRelativeStaysWithOwnBackend() -> None:
    """An absolute path is the answering backend's: other routes never map it."""
    users, payments, main = tabled(USERS, PAYMENTS, MAIN)
    assert location(users, b"/pay") == b"/api/users/pay"
    assert location(payments, b"/login") == b"/api/payments/login"
    value = b"/pay"
    assert location(main, value) is value


@pytest.mark.parametrize(
    "value", [b"/api/payments/pay", b"/api/payments", b"/api/users/42?x=/"]
)
def test_tableRelativePublicPathOfAnotherRouteKept(value: bytes) -> None:
    """An absolute path naming another route's public path is left as it is."""
    users, payments, main = tabled(USERS, PAYMENTS, MAIN)
    for r in (users, payments, main):
        assert location(r, value) is value


def test_tableHostScoping() -> None:
    """A route for one host never rewrites responses for another host."""
    a, b, anyHost = tabled(
        route("/a/", "http://a.internal/", host="a.test"),
        route("/b/", "http://b.internal/", host="b.test"),
        route("/", "http://main.internal/"),
    )
    for r in (b, anyHost):
        value = b"http://a.internal/x"
        assert r.rewriteLocation(value, "https", b"b.test") is value
        assert r.rewriteLocation(value, "https", b"other.test") is value
    assert anyHost.rewriteLocation(b"http://a.internal/x", "https", b"a.test") == (
        b"https://a.test/a/x"
    )
    assert b.rewriteLocation(b"http://main.internal/x", "https", b"b.test") == (
        b"https://b.test/x"
    )
    value = b"http://b.internal/x"
    assert a.rewriteLocation(value, "https", b"a.test") is value
    # Nor is the other host's route path taken for a public one.
    assert b.rewriteLocation(b"/a/x", "https", b"b.test") == b"/b/a/x"


def test_tableHostComparedAsRoutingDoes() -> None:
    """The Host header's case, port and trailing dot are ignored; it is kept as sent."""
    _, anyHost = tabled(
        route("/a/", "http://a.internal/", host="A.Test"),
        route("/", "http://main.internal/"),
    )
    for host in (b"a.test", b"A.TEST:8443", b"a.test.", b"a.test:80"):
        assert anyHost.rewriteLocation(b"http://a.internal/x", "https", host) == (
            b"https://" + host + b"/a/x"
        )


def test_tableWildcardHosts() -> None:
    """A *.domain route's mappings apply to every name under it, exact or not."""
    exact, wild, wider, anyHost = tabled(
        route("/e/", "http://e.internal/", host="x.example.test"),
        route("/w/", "http://w.internal/", host="*.example.test"),
        route("/ww/", "http://ww.internal/", host="*.test"),
        route("/", "http://main.internal/"),
    )
    w = b"http://w.internal/1"
    ww = b"http://ww.internal/1"
    for host in (b"x.example.test", b"y.example.test", b"a.b.example.test"):
        assert anyHost.rewriteLocation(w, "http", host) == b"http://%s/w/1" % host
        assert anyHost.rewriteLocation(ww, "http", host) == b"http://%s/ww/1" % host
    assert wild.rewriteLocation(b"http://e.internal/1", "http", b"x.example.test") == (
        b"http://x.example.test/e/1"
    )
    e = b"http://e.internal/1"
    assert wild.rewriteLocation(e, "http", b"y.example.test") is e
    assert wider.rewriteLocation(w, "http", b"other.test") is w
    assert anyHost.rewriteLocation(w, "http", b"example.test") is w
    assert anyHost.rewriteLocation(ww, "http", b"example.test") == (
        b"http://example.test/ww/1"
    )
    assert exact.rewriteLocation(ww, "http", b"example.com") is ww
    assert wider.rewriteLocation(ww, "http", b"example.com") == (
        b"http://example.com/ww/1"
    )


def test_tableShadowedRouteLeftOut() -> None:
    """A route a more specific host's route covers is not reached for that host."""
    shop, _ = tabled(
        route("/", "http://shop.internal/", host="shop.test"),
        route("/api/payments/", "http://payments.internal/"),
    )
    value = b"http://payments.internal/pay"
    assert shop.rewriteLocation(value, "http", b"shop.test") is value
    assert shop.rewriteLocation(value, "http", b"other.test") == (
        b"http://other.test/api/payments/pay"
    )


def test_tablePartlyShadowedRouteKept() -> None:
    """A route only part of whose paths a more specific host answers still maps."""
    shop, _ = tabled(
        route("/api/payments/admin/", "http://admin.internal/", host="shop.test"),
        route("/api/payments/", "http://payments.internal/"),
    )
    assert shop.rewriteLocation(
        b"http://payments.internal/x", "http", b"shop.test"
    ) == (b"http://shop.test/api/payments/x")


def test_tableWithoutAbsoluteURLsInactive() -> None:
    """A table with no backend URLs leaves a cookie-less route inactive."""
    status = Route(path="/status", handler="status")
    table = ReverseTable([status])
    assert not table.active
    assert not ReverseRewriter.fromRoute(status, table=table).active


def test_tableMakesPrefixlessRouteActive() -> None:
    """A route with no URLs of its own still rewrites the other routes' URLs."""
    status = Route(path="/status", handler="status")
    table = ReverseTable([status, USERS])
    r = ReverseRewriter.fromRoute(status, table=table)
    assert r.active
    assert location(r, b"http://127.0.0.1:9131/x") == (
        b"https://api.example.test/api/users/x"
    )


def test_tableAliasesReachAsTheHost() -> None:
    """A route's aliases reach its mappings (and its host's) as its host does."""
    _, anyHost = tabled(
        route(
            "/a/",
            "http://a.internal/",
            host="a.test",
            aliases=("www.a.test", "*.a.org"),
        ),
        route("/", "http://main.internal/"),
    )
    for host in (b"a.test", b"WWW.a.test:8443", b"x.a.org"):
        assert anyHost.rewriteLocation(b"http://a.internal/x", "https", host) == (
            b"https://" + host + b"/a/x"
        )
    value = b"http://a.internal/x"
    assert anyHost.rewriteLocation(value, "https", b"a.org") is value


def test_tableMatchRouteMapsNothing() -> None:
    """
    A match route's backend has no public prefix to map back to: its URLs
    are kept, unless another route lists them; its own responses still get
    the other routes' mappings.
    """
    images = Route(
        path="",
        match="^/img/(.*)$",
        to=parseTarget("http://img.internal/static/$1"),
    )
    assert routePrefixes(images) == ()
    mine, users = tabled(images, USERS)
    value = b"http://img.internal/static/x.gif"
    assert location(mine, value) is value
    assert location(users, value) is value
    assert location(mine, b"http://127.0.0.1:9131/7") == (
        b"https://api.example.test/api/users/7"
    )
    internal = ("http://img.internal/static/",)
    [_, listing] = tabled(images, route("/img/", "http://a/", reverse=internal))
    assert location(listing, value) == b"https://api.example.test/img/x.gif"


def test_tableExcludeRouteShadowsAndMapsNothing() -> None:
    """
    An exclude route maps nothing, but it answers its paths for its host:
    a host-less route it covers is not reached for that host.
    """
    closed = Route(path="/", host="closed.test", exclude=True)
    _, _, other = tabled(
        closed,
        route("/api/payments/", "http://payments.internal/"),
        route("/x/", "http://x.internal/"),
    )
    value = b"http://payments.internal/pay"
    assert other.rewriteLocation(value, "http", b"closed.test") is value
    assert other.rewriteLocation(value, "http", b"other.test") == (
        b"http://other.test/api/payments/pay"
    )


# -- building from a route -----------------------------------------------------------


def test_routePrefixesDirect() -> None:
    """A direct route's prefixes are its target URL then its reverse URLs."""
    route = Route(
        path="/api/users/",
        to=Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/"),
        reverse=("http://users.internal/",),
    )
    assert routePrefixes(route) == ("http://127.0.0.1:3000/", "http://users.internal/")


def test_routePrefixesBalancer() -> None:
    """A balancer route's prefixes are each member URL joined with the target path."""
    route = Route(
        path="/shop/",
        to=Target("balancer://web/app/", "balancer", "web", 0, "/app/"),
        reverse=("http://shop.internal/",),
    )
    balancer = Balancer(
        name="web",
        members=(
            Member("http://127.0.0.1:9001", "http", "127.0.0.1", 9001),
            Member("http://127.0.0.1:9002/", "http", "127.0.0.1", 9002),
        ),
    )
    assert routePrefixes(route, balancer) == (
        "http://127.0.0.1:9001/app/",
        "http://127.0.0.1:9002/app/",
        "http://shop.internal/",
    )
    assert routePrefixes(route) == ("http://shop.internal/",)


def test_routePrefixesHandler() -> None:
    """A handler route without a target has only its reverse URLs."""
    assert routePrefixes(Route(path="/status", handler="status")) == ()


def test_fromRoute() -> None:
    """fromRoute wires the route's path, prefixes and cookie mappings."""
    route = Route(
        path="/api/users/",
        to=Target("http://127.0.0.1:3000/", "http", "127.0.0.1", 3000, "/"),
        cookie_domain=DOMAIN,
        cookie_path=(("/", "/api/users/"),),
    )
    r = ReverseRewriter.fromRoute(route)
    assert location(r, b"http://127.0.0.1:3000/x") == (
        b"https://api.example.test/api/users/x"
    )
    assert r.rewriteSetCookie(b"a=1; Domain=users.internal; Path=/") == (
        b"a=1; Domain=api.example.test; Path=/api/users/"
    )


def test_fromRouteBalancer() -> None:
    """fromRoute on a balancer route recognises its members' URLs."""
    route = Route(
        path="/",
        to=Target("balancer://web/", "balancer", "web", 0, "/"),
    )
    balancer = Balancer(
        name="web",
        members=(Member("http://198.51.100.1:9001", "http", "198.51.100.1", 9001),),
    )
    r = ReverseRewriter.fromRoute(route, balancer)
    assert location(r, b"http://198.51.100.1:9001/x") == b"https://api.example.test/x"
