"""
What a state-changing admin request must show: the page's nonce (good once,
for a while), a same-site origin, and the route's token where it has one.
"""

from __future__ import annotations

import itertools

from twisted.internet.task import Clock

from twisted_proxy.admin.guard import Nonces, bearerProblem, crossSiteProblem
from twisted_proxy.core.localpage import LocalRequest

ORIGIN = "http://127.0.0.1:8082"


def post(*headers: tuple[bytes, bytes]) -> LocalRequest:
    return LocalRequest(b"POST", b"/", headers=headers, origin=ORIGIN)


def test_sameSiteRequestsPass() -> None:
    """The page's own POST (or a client that is not a browser) passes."""
    assert crossSiteProblem(post()) is None
    assert crossSiteProblem(post((b"Sec-Fetch-Site", b"same-origin"))) is None
    assert crossSiteProblem(post((b"Sec-Fetch-Site", b"none"))) is None
    assert crossSiteProblem(post((b"Origin", b"HTTP://127.0.0.1:8082"))) is None


def test_crossSiteRequestsAreRefused() -> None:
    """Another site, a sibling subdomain or another port of the host: refused."""
    for headers in (
        ((b"Sec-Fetch-Site", b"cross-site"),),
        ((b"Sec-Fetch-Site", b"same-site"),),
        ((b"Origin", b"http://attacker.example"),),
        ((b"Origin", b"http://127.0.0.1:8083"),),
        ((b"Origin", b"null"),),
        ((b"Sec-Fetch-Site", b"same-origin"), (b"Origin", b"https://127.0.0.1:8082")),
    ):
        assert crossSiteProblem(post(*headers)) is not None, headers


def test_bearerToken() -> None:
    """No token set: nothing asked. Set: the exact token, as a Bearer."""
    token = b"0123456789abcdef"
    assert bearerProblem(post(), None) is None
    assert bearerProblem(post(), token) == "a bearer token is required"
    assert (
        bearerProblem(post((b"Authorization", b"Bearer 0123456789abcdef")), token)
        is None
    )
    assert (
        bearerProblem(post((b"authorization", b"bearer 0123456789abcdef")), token)
        is None
    )
    for wrong in (b"Bearer 0123456789abcdeF", b"Basic 0123456789abcdef", b"Bearer"):
        assert bearerProblem(post((b"Authorization", wrong)), token) == "wrong token"


def test_aNonceIsGoodOnce() -> None:
    """A nonce given out redeems once; one never given out never does."""
    clock = Clock()
    nonces = Nonces(clock.seconds)
    first, second = nonces.issue(), nonces.issue()
    assert first != second
    assert nonces.redeem(first)
    assert not nonces.redeem(first)
    assert not nonces.redeem("made-up")
    assert not nonces.redeem("")
    assert nonces.redeem(second)


def test_aNonceGoesStale() -> None:
    """After its lifetime a nonce is refused."""
    clock = Clock()
    nonces = Nonces(clock.seconds, lifetime=60)
    nonce = nonces.issue()
    clock.advance(61)
    assert not nonces.redeem(nonce)


def test_theOldestNoncesAreDroppedBeyondTheLimit() -> None:
    """At most C{limit} are kept: a page loaded often cannot grow memory."""
    counter = itertools.count()
    nonces = Nonces(Clock().seconds, limit=3, make=lambda: str(next(counter)))
    issued = [nonces.issue() for _ in range(5)]
    assert [nonces.redeem(n) for n in issued] == [False, False, True, True, True]
