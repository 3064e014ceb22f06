"""
What a state-changing admin request must show before it is obeyed: that it
comes from the admin page itself (not from another site the operator's
browser has open), that it carries a nonce the page gave out and that no
earlier request used, and, where the route has a C{token_file}, its token.

Apache's balancer-manager checks only the C{Referer} and one nonce per
balancer for the life of the process; here a browser's C{Sec-Fetch-Site} and
C{Origin} are checked, and each page's nonce is good once.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable

from twisted_proxy.core.localpage import LocalRequest

__all__ = [
    "NONCE_LIFETIME",
    "Nonces",
    "bearerProblem",
    "crossSiteProblem",
    "readToken",
]

NONCE_LIFETIME = 3600.0
"""Seconds a page's nonce stays good."""

# Sec-Fetch-Site values a browser sends for a request from the page itself
# (or one the user typed): anything else is another site's doing.
_SAME_SITE = frozenset({b"same-origin", b"none"})


def crossSiteProblem(request: LocalRequest) -> str | None:
    """
    Why C{request} is refused as made by another site, or C{None}.

    A browser says where a request comes from in C{Sec-Fetch-Site} and, for
    a POST, C{Origin}; both must name the proxy itself when present. A
    client that sends neither (curl, a script) is not a browser that could
    be misled, and is judged by its nonce or token alone.
    """
    site = request.header(b"sec-fetch-site")
    if site is not None and site.strip().lower() not in _SAME_SITE:
        return f"Sec-Fetch-Site is {site.decode('latin-1')!r}"
    origin = request.header(b"origin")
    if origin is not None:
        named = origin.decode("latin-1").strip().lower().rstrip("/")
        if named != request.origin.lower():
            return f"Origin {named!r} is not this proxy ({request.origin})"
    return None


def bearerProblem(request: LocalRequest, token: bytes | None) -> str | None:
    """Why C{request} lacks the route's token, or C{None} (also: no token set)."""
    if token is None:
        return None
    given = request.header(b"authorization") or b""
    scheme, _, value = given.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), token):
        return "a bearer token is required" if not given else "wrong token"
    return None


def readToken(path: str) -> bytes:
    """The bearer token in C{path}: its first line (checked when loaded)."""
    with open(path, "rb") as f:
        return f.read(4097).split(b"\n", 1)[0].strip()


class Nonces:
    """
    Single-use nonces for the manager's forms: one is given out with each
    page, and is good once, for L{NONCE_LIFETIME} seconds. At most C{limit}
    are outstanding; beyond that the oldest is dropped.

    :param seconds: the clock (C{reactor.seconds}).
    """

    def __init__(
        self,
        seconds: Callable[[], float],
        lifetime: float = NONCE_LIFETIME,
        limit: int = 1000,
        make: Callable[[], str] = lambda: secrets.token_urlsafe(24),
    ) -> None:
        self._seconds = seconds
        self._lifetime = lifetime
        self._limit = limit
        self._make = make
        self._issued: OrderedDict[str, float] = OrderedDict()

    def issue(self) -> str:
        """A new nonce, for one page."""
        nonce = self._make()
        self._issued[nonce] = self._seconds() + self._lifetime
        while len(self._issued) > self._limit:
            self._issued.popitem(last=False)
        return nonce

    def redeem(self, nonce: str) -> bool:
        """Whether C{nonce} was given out, is not stale and was not used; use it."""
        until = self._issued.pop(nonce, None)
        return until is not None and until >= self._seconds()
