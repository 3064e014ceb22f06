"""What a request's head alone rules out, judged from plain values."""

from __future__ import annotations

import pytest

from twisted_proxy.core.refusal import (
    ALLOWED_METHODS,
    HeadRuling,
    Refusal,
    judgeHead,
    namesThisProxy,
    refuseHeaderCount,
    refuseTrace,
)


def _judge(
    method: bytes = b"GET",
    uri: bytes = b"/",
    hosts: list[bytes] | None = None,
    version: bytes = b"HTTP/1.1",
    length: int | None = None,
    maxBodyBytes: int = 0,
) -> HeadRuling:
    return judgeHead(
        method,
        version,
        uri,
        [b"example.com"] if hosts is None else hosts,
        length,
        maxBodyBytes,
        lambda authority: authority == b"proxy.example",
    )


def test_connectIs405WithAllow() -> None:
    """CONNECT is refused with 405 and the Allow header to add."""
    ruling = _judge(method=b"CONNECT", uri=b"example.com:443")
    assert ruling.refusal == Refusal(
        405,
        "CONNECT is not enabled on this listener",
        ((b"Allow", ALLOWED_METHODS),),
    )


@pytest.mark.parametrize(
    ("ruling", "status", "message"),
    [
        (_judge(hosts=[b"a", b"b"]), 400, "more than one Host header"),
        (_judge(hosts=[]), 400, "missing Host header"),
        (_judge(hosts=[b"a b"]), 400, "malformed Host header"),
        (_judge(uri=b"*"), 400, "the target * is only for OPTIONS"),
        (_judge(uri=b"http://elsewhere/"), 403, "this is not a forward proxy"),
        (_judge(length=11, maxBodyBytes=10), 413, "request body too large"),
    ],
)
def test_refusals(ruling: HeadRuling, status: int, message: str) -> None:
    """Each rule refuses with its status and message, adding no header."""
    assert ruling.refusal == Refusal(status, message)


def test_absoluteFormNamingThisProxy() -> None:
    """An absolute-form target naming the proxy goes on in origin-form."""
    ruling = _judge(uri=b"http://proxy.example/a/../b?q", hosts=[b"other"])
    assert ruling.refusal is None
    assert ruling.host == b"proxy.example"
    assert ruling.target is not None
    assert ruling.target.uri == b"/b?q"


def test_tooLargeKeepsTheTarget() -> None:
    """A body over the limit is refused, with the target still normalised."""
    ruling = _judge(uri=b"//x", length=2, maxBodyBytes=1)
    assert ruling.refusal is not None
    assert ruling.target is not None
    assert ruling.target.path == b"/x"


def test_optionsStarPassesWithoutTarget() -> None:
    """OPTIONS * passes, with no target: the front end answers it."""
    assert _judge(method=b"OPTIONS", uri=b"*") == HeadRuling()


def test_http10WithoutHost() -> None:
    """HTTP/1.0 may leave Host out."""
    assert _judge(hosts=[], version=b"HTTP/1.0").refusal is None


@pytest.mark.parametrize(
    ("authority", "named"),
    [
        (b"www.example.com", True),
        (b"WWW.example.com.:8080", True),
        (b"a.b.wild.test", True),
        (b"[::1]:80", True),
        (b"elsewhere.test", False),
    ],
)
def test_namesThisProxy(authority: bytes, named: bool) -> None:
    """Names, wildcard names and the local address are this proxy's."""
    names = frozenset({"www.example.com", "*.wild.test"})
    assert namesThisProxy(authority, names, lambda: "::1") is named


def test_traceAndHeaderCount() -> None:
    """TRACE where a route does not pass it is 405; too many fields are 400."""
    assert refuseTrace(b"TRACE", allowed=True) is None
    assert refuseTrace(b"GET", allowed=False) is None
    refused = refuseTrace(b"TRACE", allowed=False)
    assert refused is not None
    assert (refused.status, refused.headers) == (405, ((b"Allow", ALLOWED_METHODS),))
    assert refuseHeaderCount(100, 100) is None
    assert refuseHeaderCount(101, 100) == Refusal(400, "more than 100 header fields")
