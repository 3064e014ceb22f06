"""Tests for L{twisted_proxy.balancer.keys}: sticky routes and hash keys."""

from __future__ import annotations

import pytest

from twisted_proxy.balancer.keys import (
    RequestFacts,
    StickyRoutes,
    cookieValue,
    hashKeyExtractor,
    headerLookup,
)
from twisted_proxy.config.model import Sticky


def facts(
    target: bytes = b"/",
    *headers: tuple[bytes, bytes],
    clientAddress: str = "192.0.2.7",
    secure: bool = False,
) -> RequestFacts:
    """Return the facts of a request for C{target} with C{headers}."""
    return RequestFacts(
        clientAddress=clientAddress,
        target=target,
        header=headerLookup(list(headers)),
        secure=secure,
    )


def sticky(name: str = "ROUTEID", insert: bool = True) -> StickyRoutes:
    """Return the sticky routes for a balancer whose sticky name is C{name}."""
    return StickyRoutes(Sticky(name=name, insert=insert))


class CookieValueTests:
    """L{cookieValue} reads one cookie out of the Cookie headers."""

    def test_found(self) -> None:
        """A cookie among others is found by its exact name."""
        request = facts(b"/", (b"Cookie", b"a=1; ROUTEID=.2; b=3"))
        assert cookieValue(request, b"ROUTEID") == b".2"

    def test_missing(self) -> None:
        """No Cookie header, or no cookie of that name, gives None."""
        assert cookieValue(facts(), b"ROUTEID") is None
        request = facts(b"/", (b"Cookie", b"XROUTEID=.1; ROUTEIDX=.2"))
        assert cookieValue(request, b"ROUTEID") is None

    def test_caseSensitive(self) -> None:
        """Cookie names match case-sensitively, as browsers send them."""
        request = facts(b"/", (b"Cookie", b"routeid=.1"))
        assert cookieValue(request, b"ROUTEID") is None

    def test_firstWins(self) -> None:
        """Of two cookies with the name, the first one counts."""
        request = facts(b"/", (b"Cookie", b"ROUTEID=.1; ROUTEID=.2"))
        assert cookieValue(request, b"ROUTEID") == b".1"

    def test_multipleHeaders(self) -> None:
        """A cookie in a second Cookie header is found."""
        request = facts(b"/", (b"Cookie", b"a=1"), (b"cookie", b"ROUTEID=.3"))
        assert cookieValue(request, b"ROUTEID") == b".3"

    def test_spacesAndQuotes(self) -> None:
        """Spaces around the pair and quotes around the value are dropped."""
        request = facts(b"/", (b"Cookie", b'a=1;  ROUTEID = "abc.2" ;b=2'))
        assert cookieValue(request, b"ROUTEID") == b"abc.2"

    def test_valueWithEquals(self) -> None:
        """A value containing '=' is kept whole."""
        request = facts(b"/", (b"Cookie", b"t=YWJj==; x=1"))
        assert cookieValue(request, b"t") == b"YWJj=="


class StickyRouteTests:
    """L{StickyRoutes.route} finds the route the way mod_proxy_balancer does."""

    def test_cookie(self) -> None:
        """The route is what follows the '.' of the cookie's value."""
        request = facts(b"/app", (b"Cookie", b"JSESSIONID=abc123.node2"))
        assert sticky("JSESSIONID").route(request) == "node2"

    def test_insertedCookie(self) -> None:
        """The proxy's own cookie form ``.<route>`` gives the route."""
        request = facts(b"/", (b"Cookie", b"ROUTEID=.2"))
        assert sticky().route(request) == "2"

    def test_pathParameter(self) -> None:
        """A ``;jsessionid=`` path parameter names the route for JSESSIONID."""
        assert sticky("JSESSIONID").route(facts(b"/app;jsessionid=abc.node2")) == (
            "node2"
        )

    def test_pathParameterExactName(self) -> None:
        """A path parameter under the configured name itself also counts."""
        assert sticky().route(facts(b"/a;ROUTEID=.3/b?x=1")) == "3"

    def test_pathParameterBeforeQuery(self) -> None:
        """A path parameter's value stops at the query."""
        request = facts(b"/app;jsessionid=abc.node2?x=1")
        assert sticky("JSESSIONID").route(request) == "node2"

    def test_query(self) -> None:
        """A query parameter names the route."""
        assert sticky().route(facts(b"/app?ROUTEID=.2")) == "2"

    def test_queryAmongOthers(self) -> None:
        """The query parameter is found among others, and stops at the next."""
        assert sticky().route(facts(b"/app?x=1&ROUTEID=.2&y=3")) == "2"

    def test_queryNameMustBeWhole(self) -> None:
        """A parameter whose name only ends with the sticky name does not count."""
        assert sticky().route(facts(b"/app?XROUTEID=.2")) is None

    def test_pathLikeTextInQueryIgnored(self) -> None:
        """A ``;name=`` inside a query value is not a path parameter."""
        assert sticky().route(facts(b"/app?next=/a;ROUTEID=.9")) is None

    def test_urlWinsOverCookie(self) -> None:
        """Apache checks the URL first: its route beats the cookie's."""
        request = facts(b"/app?ROUTEID=.1", (b"Cookie", b"ROUTEID=.2"))
        assert sticky().route(request) == "1"

    def test_urlValueWithoutRouteWinsOverCookie(self) -> None:
        """As in Apache, a URL value without a route hides the cookie."""
        request = facts(b"/app;jsessionid=abc", (b"Cookie", b"JSESSIONID=abc.node2"))
        assert sticky("JSESSIONID").route(request) is None

    def test_emptyUrlValueIgnored(self) -> None:
        """An empty URL value does not count, so the cookie is read."""
        request = facts(b"/app?ROUTEID=&x=1", (b"Cookie", b"ROUTEID=.2"))
        assert sticky().route(request) == "2"

    def test_noDot(self) -> None:
        """A value without '.' names no route."""
        assert sticky().route(facts(b"/", (b"Cookie", b"ROUTEID=abc"))) is None

    def test_emptyAfterDot(self) -> None:
        """A value ending in '.' names no route."""
        assert sticky().route(facts(b"/", (b"Cookie", b"ROUTEID=abc."))) is None

    def test_lastDot(self) -> None:
        """The route is what follows the last '.' of the value."""
        assert sticky().route(facts(b"/?ROUTEID=a.b.node2")) == "node2"

    def test_nothing(self) -> None:
        """A request without the parameter or cookie names no route."""
        assert sticky().route(facts(b"/app?x=1", (b"Cookie", b"a=1"))) is None

    def test_cookieLowercaseNameIgnored(self) -> None:
        """Only the URL accepts the lowercase name; the cookie needs the exact one."""
        request = facts(b"/", (b"Cookie", b"jsessionid=abc.node2"))
        assert sticky("JSESSIONID").route(request) is None


class StickyCookieTests:
    """L{StickyRoutes.setCookie} and L{StickyRoutes.needsInsert}."""

    def test_setCookie(self) -> None:
        """The inserted cookie is ``NAME=.<route>; Path=/; HttpOnly``."""
        assert sticky().setCookie("2", secure=False) == (
            b"ROUTEID=.2; Path=/; HttpOnly"
        )

    def test_setCookieSecure(self) -> None:
        """Over TLS the inserted cookie is also Secure."""
        assert sticky().setCookie("node2", secure=True) == (
            b"ROUTEID=.node2; Path=/; HttpOnly; Secure"
        )

    def test_setCookieRoundTrip(self) -> None:
        """The inserted cookie, sent back, names the same route."""
        routes = sticky()
        value = routes.setCookie("node7", secure=False).split(b";")[0]
        assert routes.route(facts(b"/", (b"Cookie", value))) == "node7"

    def test_needsInsertWithoutRoute(self) -> None:
        """A client without a route gets the cookie."""
        assert sticky().needsInsert(None, "2")

    def test_needsInsertOtherRoute(self) -> None:
        """A client whose route names another member gets a new cookie."""
        assert sticky().needsInsert("1", "2")

    def test_noInsertSameRoute(self) -> None:
        """A client already on the serving member's route gets no cookie."""
        assert not sticky().needsInsert("2", "2")

    def test_noInsertWithoutServedRoute(self) -> None:
        """A member without a route cannot be pinned to."""
        assert not sticky().needsInsert(None, None)

    def test_noInsertWhenOff(self) -> None:
        """With insert = false the proxy never sets the cookie."""
        assert not sticky(insert=False).needsInsert(None, "2")


class HashKeyTests:
    """L{hashKeyExtractor} turns C{Balancer.hash_key} into a key function."""

    def test_ip(self) -> None:
        """``ip`` hashes the client address."""
        key = hashKeyExtractor("ip")
        assert key(facts(clientAddress="2001:db8::1")) == b"2001:db8::1"

    def test_uri(self) -> None:
        """``uri`` hashes the path without its query."""
        assert hashKeyExtractor("uri")(facts(b"/a/b?x=1&y=2")) == b"/a/b"
        assert hashKeyExtractor("uri")(facts(b"/a/b")) == b"/a/b"

    def test_header(self) -> None:
        """``header:NAME`` hashes that header's value, whatever its case."""
        key = hashKeyExtractor("header:X-Tenant")
        assert key(facts(b"/", (b"x-tenant", b"acme"))) == b"acme"

    def test_headerMissing(self) -> None:
        """A missing header hashes as the empty key."""
        assert hashKeyExtractor("header:X-Tenant")(facts()) == b""

    def test_cookie(self) -> None:
        """``cookie:NAME`` hashes that cookie's value."""
        key = hashKeyExtractor("cookie:session")
        assert key(facts(b"/", (b"Cookie", b"a=1; session=xyz"))) == b"xyz"

    def test_cookieMissing(self) -> None:
        """A missing cookie hashes as the empty key."""
        key = hashKeyExtractor("cookie:session")
        assert key(facts(b"/", (b"Cookie", b"a=1"))) == b""

    @pytest.mark.parametrize(
        "spec",
        ["", "IP", "url", "header:", "cookie:", "header:a b", "cookie:a;b", "body:x"],
    )
    def test_unknown(self, spec: str) -> None:
        """Anything else is a ValueError naming the spec and the valid forms."""
        with pytest.raises(ValueError, match="unknown hash key") as raised:
            hashKeyExtractor(spec)
        assert repr(spec) in str(raised.value)
        assert "cookie:NAME" in str(raised.value)
