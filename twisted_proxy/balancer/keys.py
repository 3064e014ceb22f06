"""
What the balancer reads from a request: sticky routes and hash keys.

Pure: a L{RequestFacts} in, a route or key out; no Twisted, no I/O. This runs
for every request, so L{StickyRoutes} and L{hashKeyExtractor} do their parsing
of the configuration once, up front, and the per-request work is a couple of
substring searches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted_proxy.config.model import Sticky

__all__ = [
    "HASH_KEY_SPECS",
    "RequestFacts",
    "StickyRoutes",
    "cookieValue",
    "hashKeyExtractor",
    "headerLookup",
]

HASH_KEY_SPECS = ("ip", "uri", "header:NAME", "cookie:NAME")
"""The forms C{Balancer.hash_key} may take, for error messages."""

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What browsers and proxies put around cookie pairs.
_COOKIE_SPACE = b" \t"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """
    The parts of one request that routing decisions read.

    @ivar clientAddress: the client's IP address, as text.
    @ivar target: the raw request-target, query included
        (C{b"/app;jsessionid=abc.node2?x=1"}).
    @ivar header: lowercase header name to its first value, or C{None}; for
        C{b"cookie"}, every Cookie header's value joined with C{b"; "} (as
        L{headerLookup} does, and as RFC 9113 joins HTTP/2 cookie crumbs).
    @ivar secure: whether the client came over TLS.
    """

    clientAddress: str
    target: bytes
    header: Callable[[bytes], bytes | None]
    secure: bool


def headerLookup(
    headers: Sequence[tuple[bytes, bytes]],
) -> Callable[[bytes], bytes | None]:
    """
    Return a L{RequestFacts.header} over a header list, looking up lazily.

    Names are compared case-insensitively; the lookup name must be lowercase.
    Several Cookie headers are joined into one value with C{b"; "}.
    """

    def header(name: bytes) -> bytes | None:
        """Return the first value of C{name} (all Cookie values, joined)."""
        if name == b"cookie":
            values = [v for n, v in headers if n.lower() == b"cookie"]
            return b"; ".join(values) if values else None
        for n, v in headers:
            if n.lower() == name:
                return v
        return None

    return header


def cookieValue(facts: RequestFacts, name: bytes) -> bytes | None:
    """
    Return the value of the request's cookie C{name}, or C{None}.

    Names match exactly (case-sensitively); the first cookie of that name wins.
    Spaces around pairs and double quotes around a value are dropped.
    """
    raw = facts.header(b"cookie")
    # The cheap test first: most requests do not carry the cookie at all.
    if raw is None or name not in raw:
        return None
    for pair in raw.split(b";"):
        key, sep, value = pair.partition(b"=")
        if sep and key.strip(_COOKIE_SPACE) == name:
            value = value.strip(_COOKIE_SPACE)
            if len(value) >= 2 and value.startswith(b'"') and value.endswith(b'"'):
                value = value[1:-1]
            return value
    return None


def _routeOf(value: bytes) -> str | None:
    """Return what follows the last C{.} of a sticky value, or C{None}."""
    _, dot, route = value.rpartition(b".")
    if not dot or not route:
        return None
    return route.decode("utf-8", "replace")


class StickyRoutes:
    """
    Apache's ``stickysession``: the route a request asks for, and the cookie
    that pins a client to the member that served it.

    The sticky value is looked for in the URL first, as a path parameter
    (C{;NAME=value}) or a query parameter (C{NAME=value}), under the configured
    name or its lowercase form (Tomcat's C{JSESSIONID} cookie travels as
    C{;jsessionid=} in URLs); then in the cookie of exactly that name. As in
    Apache, a value found in the URL is the one used, even if it holds no route.
    """

    def __init__(self, sticky: Sticky) -> None:
        """Precompile the URL patterns and the cookie text for C{sticky.name}."""
        self.sticky = sticky
        self._name = sticky.name.encode("utf-8")
        names = {self._name, sticky.name.lower().encode("utf-8")}
        alternatives = b"|".join(re.escape(n) for n in sorted(names))
        # An empty value does not count (Apache skips it and looks further).
        self._pathParam = re.compile(rb";(?:" + alternatives + rb")=([^;/?&#]+)")
        self._queryParam = re.compile(rb"(?:^|&)(?:" + alternatives + rb")=([^&#]+)")
        self._cookiePrefix = self._name + b"=."
        self._cookieSuffix = b"; Path=/; HttpOnly"
        self._secureSuffix = self._cookieSuffix + b"; Secure"

    def _urlValue(self, target: bytes) -> bytes | None:
        """Return the sticky value in C{target}'s path or query, or C{None}."""
        path, _, query = target.partition(b"?")
        # Searched only where a parameter could be: most paths carry no ';'.
        if b";" in path:
            match = self._pathParam.search(path)
            if match is not None:
                return match.group(1)
        if query:
            match = self._queryParam.search(query)
            if match is not None:
                return match.group(1)
        return None

    def route(self, facts: RequestFacts) -> str | None:
        """
        Return the route the request names (C{abc123.node2} gives C{"node2"}),
        or C{None} when it names none.
        """
        value = self._urlValue(facts.target)
        if value is None:
            value = cookieValue(facts, self._name)
            if value is None:
                return None
        return _routeOf(value)

    def setCookie(self, route: str, secure: bool) -> bytes:
        """
        Return the Set-Cookie header value pinning a client to C{route}:
        C{NAME=.<route>; Path=/; HttpOnly}, plus C{; Secure} over TLS.
        """
        return (
            self._cookiePrefix
            + route.encode("utf-8")
            + (self._secureSuffix if secure else self._cookieSuffix)
        )

    def needsInsert(self, currentRoute: str | None, servedRoute: str | None) -> bool:
        """
        Return whether the response must set the sticky cookie: insertion is
        on, the serving member has a route, and the client's route (from
        L{route}) was missing or named another member.
        """
        return (
            self.sticky.insert
            and servedRoute is not None
            and currentRoute != servedRoute
        )


def _clientAddress(facts: RequestFacts) -> bytes:
    """Return the client's address as the hash key."""
    return facts.clientAddress.encode("utf-8")


def _path(facts: RequestFacts) -> bytes:
    """Return the request path without its query as the hash key."""
    return facts.target.partition(b"?")[0]


def hashKeyExtractor(spec: str) -> Callable[[RequestFacts], bytes]:
    """
    Return the function giving a request's hash key for C{Balancer.hash_key}.

    C{"ip"}: the client address; C{"uri"}: the request-target without
    its query (as HAProxy's C{balance uri}); C{"header:NAME"}: that
    header's first value (for Cookie, every Cookie header joined);
    C{"cookie:NAME"}: that cookie's value. A missing header or cookie gives
    C{b""}.

    :raise ValueError: for any other C{spec}, or a NAME that is not an HTTP
        token. The config loader checks the same forms on its own, so the
        balancer never meets one.
    """
    if spec == "ip":
        return _clientAddress
    if spec == "uri":
        return _path
    kind, sep, name = spec.partition(":")
    encoded = name.encode("utf-8")
    if sep and kind == "header" and _TOKEN.fullmatch(encoded):
        lowered = encoded.lower()

        def headerKey(facts: RequestFacts) -> bytes:
            """Return the header's first value, or C{b""}."""
            return facts.header(lowered) or b""

        return headerKey
    if sep and kind == "cookie" and _TOKEN.fullmatch(encoded):

        def cookieKey(facts: RequestFacts) -> bytes:
            """Return the cookie's value, or C{b""}."""
            return cookieValue(facts, encoded) or b""

        return cookieKey
    raise ValueError(
        f"unknown hash key {spec!r}: expected one of {', '.join(HASH_KEY_SPECS)}"
        " (NAME a header or cookie name)"
    )
