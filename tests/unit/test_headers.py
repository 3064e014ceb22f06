"""
Tests for L{twisted_proxy.core.headers}: hop-by-hop removal, X-Forwarded-*, Via,
Server, Host and header directives, with plain values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from twisted_proxy import __version__
from twisted_proxy.config.model import HeaderDirectives, ProxySettings, Route
from twisted_proxy.core.headers import (
    HOP_BY_HOP,
    ClientInfo,
    RequestHeaderRewriter,
    ResponseHeaderRewriter,
    formatHostPort,
    hasDuplicateHost,
    removeHopByHop,
    singleHeader,
)

Headers = list[tuple[bytes, bytes]]

CLIENT = ClientInfo(
    address="192.0.2.7", scheme="https", port=8443, host=b"api.example.test"
)
UPSTREAM = b"127.0.0.1:3000"


def settings(**kwargs: Any) -> ProxySettings:
    """Proxy settings with a known server name, overridden by C{kwargs}."""
    kwargs.setdefault("server_name", "proxy.example.test")
    return ProxySettings(**kwargs)


def trusting(*cidrs: str, **kwargs: Any) -> ProxySettings:
    """Proxy settings trusting the given networks."""
    return settings(
        trusted_proxies=tuple(ipaddress.ip_network(c) for c in cidrs), **kwargs
    )


def route(**kwargs: Any) -> Route:
    """A route on C{/api/users/}, overridden by C{kwargs}."""
    kwargs.setdefault("path", "/api/users/")
    return Route(**kwargs)


def rewriteRequest(
    headers: Headers,
    proxy: ProxySettings | None = None,
    theRoute: Route | None = None,
    client: ClientInfo = CLIENT,
    **kwargs: Any,
) -> Headers:
    """Rewrite request C{headers} with a rewriter built from the given config."""
    rewriter = RequestHeaderRewriter(
        proxy if proxy is not None else settings(),
        theRoute if theRoute is not None else route(),
        UPSTREAM,
    )
    return rewriter.rewrite(headers, client, **kwargs)


def values(headers: Headers, name: bytes) -> list[bytes]:
    """Every value of the headers called C{name}, case-insensitively, in order."""
    return [v for n, v in headers if n.lower() == name.lower()]


def names(headers: Headers) -> list[bytes]:
    """The lowercased header names, in order."""
    return [n.lower() for n, _ in headers]


# -- module helpers -----------------------------------------------------------


def test_hopByHopSet() -> None:
    """HOP_BY_HOP holds exactly the RFC hop-by-hop names, lowercase."""
    assert (
        frozenset(
            {
                b"connection",
                b"keep-alive",
                b"proxy-connection",
                b"proxy-authenticate",
                b"proxy-authorization",
                b"te",
                b"trailer",
                b"transfer-encoding",
                b"upgrade",
            }
        )
        == HOP_BY_HOP
    )


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_removeHopByHopDropsEach(name: bytes) -> None:
    """Each hop-by-hop header is dropped, whatever its case."""
    headers = [(b"Accept", b"*/*"), (name.upper(), b"x"), (name.title(), b"y")]
    assert removeHopByHop(headers) == [(b"Accept", b"*/*")]


def test_removeHopByHopConnectionNamed() -> None:
    """Headers named by Connection tokens are dropped, case-insensitively."""
    headers = [
        (b"Connection", b"close, X-Secret ,,\tx-other"),
        (b"X-SECRET", b"1"),
        (b"Accept", b"*/*"),
        (b"x-Other", b"2"),
        (b"X-Kept", b"3"),
    ]
    assert removeHopByHop(headers) == [(b"Accept", b"*/*"), (b"X-Kept", b"3")]


def test_removeHopByHopSeveralConnectionHeaders() -> None:
    """Tokens of every Connection header count, even one after the named header."""
    headers = [
        (b"X-A", b"1"),
        (b"Connection", b"x-a"),
        (b"X-B", b"2"),
        (b"connection", b"X-B"),
        (b"X-C", b"3"),
    ]
    assert removeHopByHop(headers) == [(b"X-C", b"3")]


def test_removeHopByHopKeepsContentLength() -> None:
    """A Connection token cannot remove Content-Length, which frames the body."""
    headers = [(b"Connection", b"content-length"), (b"Content-Length", b"5")]
    assert removeHopByHop(headers) == [(b"Content-Length", b"5")]


def test_removeHopByHopKeepsOrderAndRepeats() -> None:
    """Repeated end-to-end headers stay separate and in order."""
    headers = [
        (b"Set-Cookie", b"a=1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Set-Cookie", b"b=2"),
        (b"set-cookie", b"c=3"),
    ]
    assert removeHopByHop(headers) == [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"set-cookie", b"c=3"),
    ]


def test_removeHopByHopDoesNotMutate() -> None:
    """The input list is left as it was."""
    headers = [(b"Connection", b"x-a"), (b"X-A", b"1")]
    removeHopByHop(headers)
    assert headers == [(b"Connection", b"x-a"), (b"X-A", b"1")]


def test_singleHeaderFirstValue() -> None:
    """singleHeader returns the first matching value, case-insensitively."""
    headers = [(b"X-A", b"1"), (b"x-a", b"2")]
    assert singleHeader(headers, b"X-a") == b"1"


def test_singleHeaderMissing() -> None:
    """singleHeader returns None when the header is absent."""
    assert singleHeader([(b"X-A", b"1")], b"X-B") is None


def test_hasDuplicateHost() -> None:
    """Two Host headers in any case are a duplicate; one or none is not."""
    assert hasDuplicateHost([(b"Host", b"a"), (b"HOST", b"b")])
    assert hasDuplicateHost([(b"Host", b"a"), (b"X", b"1"), (b"host", b"a")])
    assert not hasDuplicateHost([(b"Host", b"a"), (b"X-Host", b"b")])
    assert not hasDuplicateHost([])


@pytest.mark.parametrize(
    ("host", "port", "scheme", "expected"),
    [
        ("backend", 80, "http", b"backend"),
        ("backend", 443, "https", b"backend"),
        ("backend", 443, "http", b"backend:443"),
        ("backend", 3000, "http", b"backend:3000"),
        ("backend", 80, "ws", b"backend"),
        ("::1", 3000, "http", b"[::1]:3000"),
        ("::1", 443, "https", b"[::1]"),
        ("[::1]", 8080, "http", b"[::1]:8080"),
    ],
)
def test_formatHostPort(host: str, port: int, scheme: str, expected: bytes) -> None:
    """formatHostPort omits default ports and brackets IPv6 literals."""
    assert formatHostPort(host, port, scheme) == expected


def test_clientInfoFrozen() -> None:
    """ClientInfo is immutable."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        CLIENT.port = 1  # type: ignore[misc]


# -- request: hop-by-hop --------------------------------------------------------


def test_requestDropsHopByHop() -> None:
    """Hop-by-hop and Connection-named request headers do not reach the backend."""
    out = rewriteRequest(
        [
            (b"Host", b"api.example.test"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"Keep-Alive", b"300"),
            (b"TE", b"trailers"),
            (b"Proxy-Authorization", b"Basic eA=="),
            (b"Upgrade", b"h2c"),
            (b"X-Private", b"secret"),
            (b"Accept", b"*/*"),
        ],
        proxy=settings(forwarded_headers=False),
    )
    assert out == [(b"Host", UPSTREAM), (b"Accept", b"*/*")]


def test_requestDropsTheClientsExpect() -> None:
    """
    The client's Expect, whatever it asks, is not passed on: this hop says
    what it expects of the next (Expect: 100-continue, when it waits).
    """
    for expect in (b"100-continue", b"something-else"):
        out = rewriteRequest(
            [(b"Host", b"api.example.test"), (b"Expect", expect), (b"A", b"1")],
            proxy=settings(forwarded_headers=False),
        )
        assert out == [(b"Host", UPSTREAM), (b"A", b"1")]


@pytest.mark.parametrize(
    "name",
    [
        b"X-Forwarded-For",
        b"X-Forwarded-Host",
        b"X-Forwarded-Server",
        b"X-Forwarded-Proto",
        b"X-Forwarded-Port",
    ],
)
def test_connectionCannotRemoveForwarded(name: bytes) -> None:
    """A client's Connection token cannot strip an X-Forwarded-* the proxy adds."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test"), (b"Connection", name), (name, b"forged")]
    )
    assert len(values(out, name)) == 1
    assert values(out, name) != [b"forged"]


def test_connectionCannotRemoveForwardedFromTrustedProxy() -> None:
    """From a trusted proxy, a Connection token drops its XFF but not ours."""
    out = rewriteRequest(
        [(b"Connection", b"X-Forwarded-For"), (b"X-Forwarded-For", b"198.51.100.1")],
        proxy=trusting("192.0.2.0/24"),
    )
    assert values(out, b"X-Forwarded-For") == [b"192.0.2.7"]


def test_connectionCannotRemoveHost() -> None:
    """A Connection token naming Host still leaves the proxy's Host."""
    out = rewriteRequest([(b"Connection", b"host"), (b"Host", b"api.example.test")])
    assert values(out, b"Host") == [UPSTREAM]


def test_connectionCannotRemoveProxyVia() -> None:
    """A Connection token naming Via removes the client's Via but not the proxy's."""
    out = rewriteRequest(
        [(b"Connection", b"via"), (b"Via", b"1.0 client-side")],
        proxy=settings(via="on"),
    )
    assert values(out, b"Via") == [b"1.1 proxy.example.test"]


def test_connectionCannotRemoveSetDirective() -> None:
    """A Connection token cannot remove a header a RequestHeader set adds."""
    out = rewriteRequest(
        [(b"Connection", b"X-Env")],
        theRoute=route(request_headers=HeaderDirectives(set=(("X-Env", "prod"),))),
    )
    assert values(out, b"X-Env") == [b"prod"]


# -- request: Host -------------------------------------------------------------------


def test_hostRewrittenByDefault() -> None:
    """Without preserve_host the backend gets the upstream host:port as Host."""
    out = rewriteRequest([(b"host", b"api.example.test")])
    assert values(out, b"Host") == [UPSTREAM]


def test_hostPerRequestUpstream() -> None:
    """A per-request upstreamHost (a balancer member) replaces the route's."""
    out = rewriteRequest([(b"Host", b"api.example.test")], upstreamHost=b"198.51.100.2")
    assert values(out, b"Host") == [b"198.51.100.2"]


def test_hostPreservedBySettings() -> None:
    """With preserve_host in [proxy], the client's Host is sent on."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test")], proxy=settings(preserve_host=True)
    )
    assert values(out, b"Host") == [b"api.example.test"]


def test_hostPreservedIgnoresUpstreamOverride() -> None:
    """A preserved Host wins over the per-request upstream host."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test")],
        proxy=settings(preserve_host=True),
        upstreamHost=b"198.51.100.2",
    )
    assert values(out, b"Host") == [b"api.example.test"]


def test_hostRoutePreserveOverridesSettings() -> None:
    """A route's preserve_host = true wins over the proxy default false."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test")],
        proxy=settings(preserve_host=False),
        theRoute=route(preserve_host=True),
    )
    assert values(out, b"Host") == [b"api.example.test"]


def test_hostRouteNoPreserveOverridesSettings() -> None:
    """A route's preserve_host = false wins over the proxy default true."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test")],
        proxy=settings(preserve_host=True),
        theRoute=route(preserve_host=False),
    )
    assert values(out, b"Host") == [UPSTREAM]


def test_hostPreservedButAbsent() -> None:
    """
    With preserve_host and no client Host (HTTP/1.0), the proxy's
    server_name is sent, as Apache does, never the backend's own address.
    """
    client = dataclasses.replace(CLIENT, host=None)
    out = rewriteRequest(
        [],
        proxy=settings(preserve_host=True, server_name="proxy.example.test"),
        client=client,
    )
    assert values(out, b"Host") == [b"proxy.example.test"]


def test_hostFirstAndSingle() -> None:
    """Host comes first and exactly once, however many the input had."""
    out = rewriteRequest(
        [(b"Accept", b"*/*"), (b"Host", b"a"), (b"HOST", b"b")],
        proxy=settings(forwarded_headers=False),
    )
    assert out == [(b"Host", UPSTREAM), (b"Accept", b"*/*")]


# -- request: X-Forwarded-* ------------------------------------------------------


def test_forwardedHeadersAdded() -> None:
    """All five X-Forwarded-* headers describe the client, after its headers."""
    out = rewriteRequest([(b"Host", b"api.example.test"), (b"Accept", b"*/*")])
    assert out == [
        (b"Host", UPSTREAM),
        (b"Accept", b"*/*"),
        (b"X-Forwarded-For", b"192.0.2.7"),
        (b"X-Forwarded-Host", b"api.example.test"),
        (b"X-Forwarded-Server", b"proxy.example.test"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Port", b"8443"),
    ]


def test_forwardedHttpScheme() -> None:
    """X-Forwarded-Proto and -Port follow the client's scheme and listener port."""
    client = ClientInfo(address="192.0.2.7", scheme="http", port=8080, host=b"h")
    out = rewriteRequest([], client=client)
    assert values(out, b"X-Forwarded-Proto") == [b"http"]
    assert values(out, b"X-Forwarded-Port") == [b"8080"]


def test_forwardedHostOmittedWithoutHost() -> None:
    """No X-Forwarded-Host is sent when the client sent no Host."""
    out = rewriteRequest([], client=dataclasses.replace(CLIENT, host=None))
    assert values(out, b"X-Forwarded-Host") == []
    assert values(out, b"X-Forwarded-For") == [b"192.0.2.7"]


def test_xffReplacedForUntrustedClient() -> None:
    """An untrusted client's X-Forwarded-For is replaced, not extended."""
    out = rewriteRequest(
        [
            (b"X-Forwarded-For", b"198.51.100.99"),
            (b"x-forwarded-for", b"198.51.100.88"),
        ],
        proxy=trusting("198.51.100.0/24"),
    )
    assert values(out, b"X-Forwarded-For") == [b"192.0.2.7"]


def test_xffReplacedWithoutTrustedProxies() -> None:
    """With no trusted proxies configured every XFF is replaced."""
    out = rewriteRequest([(b"X-Forwarded-For", b"198.51.100.99")])
    assert values(out, b"X-Forwarded-For") == [b"192.0.2.7"]


def test_xffExtendedForTrustedIPv4() -> None:
    """A trusted IPv4 proxy's X-Forwarded-For is extended with its address."""
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")], proxy=trusting("192.0.2.0/24")
    )
    assert values(out, b"X-Forwarded-For") == [b"198.51.100.1, 192.0.2.7"]


def test_xffExtendedForSingleTrustedAddress() -> None:
    """A single trusted address (a /32) counts as a trusted proxy."""
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")], proxy=trusting("192.0.2.7")
    )
    assert values(out, b"X-Forwarded-For") == [b"198.51.100.1, 192.0.2.7"]


def test_xffExtendedForTrustedIPv6() -> None:
    """A trusted IPv6 proxy's X-Forwarded-For is extended with its address."""
    client = dataclasses.replace(CLIENT, address="2001:db8::5")
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")],
        proxy=trusting("2001:db8::/32"),
        client=client,
    )
    assert values(out, b"X-Forwarded-For") == [b"198.51.100.1, 2001:db8::5"]


def test_xffReplacedForUntrustedIPv6() -> None:
    """An IPv6 client outside the trusted networks gets its XFF replaced."""
    client = dataclasses.replace(CLIENT, address="2001:db9::5")
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")],
        proxy=trusting("2001:db8::/32", "192.0.2.0/24"),
        client=client,
    )
    assert values(out, b"X-Forwarded-For") == [b"2001:db9::5"]


def test_xffTrustedIPv4MappedIPv6() -> None:
    """An IPv4-mapped IPv6 peer is checked against the IPv4 networks."""
    client = dataclasses.replace(CLIENT, address="::ffff:192.0.2.7")
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")],
        proxy=trusting("192.0.2.0/24"),
        client=client,
    )
    assert values(out, b"X-Forwarded-For") == [b"198.51.100.1, ::ffff:192.0.2.7"]


def test_xffTrustedJoinsRepeatedHeaders() -> None:
    """A trusted proxy's several XFF lines are joined, in order, then extended."""
    out = rewriteRequest(
        [
            (b"X-Forwarded-For", b"198.51.100.1"),
            (b"Accept", b"*/*"),
            (b"X-Forwarded-For", b"203.0.113.4, 198.51.100.11"),
        ],
        proxy=trusting("192.0.2.0/24"),
    )
    assert values(out, b"X-Forwarded-For") == [
        b"198.51.100.1, 203.0.113.4, 198.51.100.11, 192.0.2.7"
    ]


def test_xffTrustedWithoutExisting() -> None:
    """A trusted proxy that sent no XFF gets just its own address."""
    out = rewriteRequest([], proxy=trusting("192.0.2.0/24"))
    assert values(out, b"X-Forwarded-For") == [b"192.0.2.7"]


def test_xffUnparseableAddressUntrusted() -> None:
    """A peer address that is not an IP (a UNIX socket) is never trusted."""
    client = dataclasses.replace(CLIENT, address="")
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"198.51.100.1")],
        proxy=trusting("0.0.0.0/0", "::/0"),
        client=client,
    )
    assert values(out, b"X-Forwarded-For") == [b""]


def test_trustDecisionRepeats() -> None:
    """The same rewriter gives the same answer for repeated clients."""
    rewriter = RequestHeaderRewriter(trusting("192.0.2.0/24"), route(), UPSTREAM)
    other = dataclasses.replace(CLIENT, address="203.0.113.9")
    for _ in range(3):
        trusted = rewriter.rewrite([(b"X-Forwarded-For", b"1.1.1.1")], CLIENT)
        untrusted = rewriter.rewrite([(b"X-Forwarded-For", b"1.1.1.1")], other)
        assert values(trusted, b"X-Forwarded-For") == [b"1.1.1.1, 192.0.2.7"]
        assert values(untrusted, b"X-Forwarded-For") == [b"203.0.113.9"]


def test_forwardedOthersReplacedFromUntrusted() -> None:
    """An untrusted client's X-Forwarded-Host/-Server/-Proto/-Port are replaced."""
    out = rewriteRequest(
        [
            (b"X-Forwarded-Host", b"evil.test"),
            (b"X-Forwarded-Server", b"evil"),
            (b"X-Forwarded-Proto", b"http"),
            (b"X-Forwarded-Port", b"1"),
        ]
    )
    assert values(out, b"X-Forwarded-Host") == [b"api.example.test"]
    assert values(out, b"X-Forwarded-Server") == [b"proxy.example.test"]
    assert values(out, b"X-Forwarded-Proto") == [b"https"]
    assert values(out, b"X-Forwarded-Port") == [b"8443"]


def test_forwardedOthersKeptFromTrusted() -> None:
    """A trusted proxy's X-Forwarded-Host/-Server/-Proto/-Port are kept."""
    out = rewriteRequest(
        [
            (b"X-Forwarded-Host", b"www.example.test"),
            (b"X-Forwarded-Server", b"edge"),
            (b"X-Forwarded-Proto", b"http"),
            (b"X-Forwarded-Port", b"80"),
        ],
        proxy=trusting("192.0.2.0/24"),
    )
    assert values(out, b"X-Forwarded-Host") == [b"www.example.test"]
    assert values(out, b"X-Forwarded-Server") == [b"edge"]
    assert values(out, b"X-Forwarded-Proto") == [b"http"]
    assert values(out, b"X-Forwarded-Port") == [b"80"]


def test_forwardedOthersFilledInForTrusted() -> None:
    """The proxy adds the X-Forwarded-* headers a trusted proxy left out."""
    out = rewriteRequest(
        [(b"x-forwarded-proto", b"http")], proxy=trusting("192.0.2.0/24")
    )
    assert values(out, b"X-Forwarded-Proto") == [b"http"]
    assert values(out, b"X-Forwarded-Host") == [b"api.example.test"]
    assert values(out, b"X-Forwarded-Server") == [b"proxy.example.test"]
    assert values(out, b"X-Forwarded-Port") == [b"8443"]


def test_forwardedHeadersOff() -> None:
    """With forwarded_headers off nothing is added and the client's pass through."""
    incoming = [
        (b"X-Forwarded-For", b"198.51.100.99"),
        (b"X-Forwarded-Proto", b"http"),
    ]
    out = rewriteRequest(incoming, proxy=settings(forwarded_headers=False))
    assert out == [(b"Host", UPSTREAM), *incoming]


# -- request: Via --------------------------------------------------------------------


def test_requestViaOff() -> None:
    """Via "off" leaves the client's Via alone and adds none."""
    out = rewriteRequest([(b"Via", b"1.0 fred")], proxy=settings(via="off"))
    assert values(out, b"Via") == [b"1.0 fred"]


def test_requestViaOn() -> None:
    """Via "on" appends "1.1 <server_name>" after any existing Via."""
    out = rewriteRequest([(b"Via", b"1.0 fred")], proxy=settings(via="on"))
    assert values(out, b"Via") == [b"1.0 fred", b"1.1 proxy.example.test"]


def test_requestViaOnHTTP10() -> None:
    """Via names the client's protocol version: 1.0 for an HTTP/1.0 client."""
    out = rewriteRequest([], proxy=settings(via="on"), clientVersion=b"HTTP/1.0")
    assert values(out, b"Via") == [b"1.0 proxy.example.test"]


def test_requestViaOnHTTP2() -> None:
    """Via names an HTTP/2 client's protocol as "2"."""
    out = rewriteRequest([], proxy=settings(via="on"), clientVersion=b"HTTP/2")
    assert values(out, b"Via") == [b"2 proxy.example.test"]


def test_requestViaUnknownVersion() -> None:
    """An unrecognised protocol version is named 1.1."""
    out = rewriteRequest([], proxy=settings(via="on"), clientVersion=b"HTTP/9.9")
    assert values(out, b"Via") == [b"1.1 proxy.example.test"]


def test_requestViaFull() -> None:
    """Via "full" adds the product version as a comment."""
    out = rewriteRequest([], proxy=settings(via="full"))
    expected = b"1.1 proxy.example.test (twisted-proxy/%s)" % __version__.encode()
    assert values(out, b"Via") == [expected]


def test_requestViaBlock() -> None:
    """Via "block" removes every Via, whatever its case, and adds none."""
    out = rewriteRequest(
        [(b"Via", b"1.0 a"), (b"VIA", b"1.1 b"), (b"Accept", b"*/*")],
        proxy=settings(via="block", forwarded_headers=False),
    )
    assert out == [(b"Host", UPSTREAM), (b"Accept", b"*/*")]


# -- request: directives ---------------------------------------------------------


def test_requestUnsetRemovesClientHeader() -> None:
    """RequestHeader unset removes the client's header in every case."""
    out = rewriteRequest(
        [(b"X-Debug", b"1"), (b"x-debug", b"2"), (b"Accept", b"*/*")],
        proxy=settings(forwarded_headers=False),
        theRoute=route(request_headers=HeaderDirectives(unset=("X-Debug",))),
    )
    assert out == [(b"Host", UPSTREAM), (b"Accept", b"*/*")]


def test_requestUnsetRemovesProxyHeader() -> None:
    """RequestHeader unset also removes a header the proxy would add."""
    out = rewriteRequest(
        [],
        theRoute=route(request_headers=HeaderDirectives(unset=("x-forwarded-for",))),
    )
    assert values(out, b"X-Forwarded-For") == []
    assert values(out, b"X-Forwarded-Host") == [b"api.example.test"]


def test_requestUnsetXFFFromTrustedProxy() -> None:
    """Unsetting X-Forwarded-For drops a trusted proxy's chain too."""
    out = rewriteRequest(
        [(b"X-Forwarded-For", b"1.1.1.1")],
        proxy=trusting("192.0.2.0/24"),
        theRoute=route(request_headers=HeaderDirectives(unset=("X-Forwarded-For",))),
    )
    assert values(out, b"X-Forwarded-For") == []


def test_requestSetReplacesClientHeader() -> None:
    """RequestHeader set replaces every client copy with one value, at the end."""
    out = rewriteRequest(
        [(b"X-Env", b"a"), (b"Accept", b"*/*"), (b"x-env", b"b")],
        proxy=settings(forwarded_headers=False),
        theRoute=route(request_headers=HeaderDirectives(set=(("X-Env", "prod"),))),
    )
    assert out == [(b"Host", UPSTREAM), (b"Accept", b"*/*"), (b"X-Env", b"prod")]


def test_requestSetWinsOverProxyHeader() -> None:
    """RequestHeader set X-Forwarded-Proto wins over the proxy's own."""
    out = rewriteRequest(
        [(b"X-Forwarded-Proto", b"gopher")],
        client=dataclasses.replace(CLIENT, scheme="http"),
        theRoute=route(
            request_headers=HeaderDirectives(set=(("X-Forwarded-Proto", "https"),))
        ),
    )
    assert values(out, b"X-Forwarded-Proto") == [b"https"]


def test_requestSetHost() -> None:
    """RequestHeader set Host wins over both the preserved and upstream Host."""
    out = rewriteRequest(
        [(b"Host", b"api.example.test")],
        proxy=settings(preserve_host=True),
        theRoute=route(request_headers=HeaderDirectives(set=(("Host", "internal"),))),
    )
    assert values(out, b"Host") == [b"internal"]


def test_requestSetVia() -> None:
    """RequestHeader set Via replaces both the client's and the proxy's Via."""
    out = rewriteRequest(
        [(b"Via", b"1.0 a")],
        proxy=settings(via="on"),
        theRoute=route(request_headers=HeaderDirectives(set=(("Via", "hidden"),))),
    )
    assert values(out, b"Via") == [b"hidden"]


def test_requestSetLastWins() -> None:
    """Two sets of one name leave the later value."""
    out = rewriteRequest(
        [],
        theRoute=route(
            request_headers=HeaderDirectives(set=(("X-A", "1"), ("x-a", "2")))
        ),
    )
    assert values(out, b"X-A") == [b"2"]


def test_requestSetAndUnsetTogether() -> None:
    """Set and unset of different names both apply."""
    out = rewriteRequest(
        [(b"X-Debug", b"1"), (b"X-Env", b"a")],
        proxy=settings(forwarded_headers=False),
        theRoute=route(
            request_headers=HeaderDirectives(
                set=(("X-Env", "prod"),), unset=("X-Debug",)
            )
        ),
    )
    assert out == [(b"Host", UPSTREAM), (b"X-Env", b"prod")]


@pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\x00b"])
def test_requestSetRejectsControlCharacters(bad: str) -> None:
    """A configured value with CR, LF or NUL is refused when the rewriter is built."""
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        RequestHeaderRewriter(
            settings(),
            route(request_headers=HeaderDirectives(set=(("X-A", bad),))),
            UPSTREAM,
        )


def test_requestFullOrder() -> None:
    """Output order: Host, client headers, X-Forwarded-*, Via, set directives."""
    out = rewriteRequest(
        [(b"Accept", b"*/*"), (b"Host", b"api.example.test"), (b"Via", b"1.0 a")],
        proxy=settings(via="on"),
        theRoute=route(request_headers=HeaderDirectives(set=(("X-Env", "prod"),))),
    )
    assert names(out) == [
        b"host",
        b"accept",
        b"via",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-server",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"via",
        b"x-env",
    ]


def test_requestKeepsRepeatedHeaders() -> None:
    """Repeated end-to-end request headers stay separate and ordered."""
    out = rewriteRequest(
        [(b"Cookie", b"a=1"), (b"X-Y", b"z"), (b"Cookie", b"b=2")],
        proxy=settings(forwarded_headers=False),
    )
    assert out == [
        (b"Host", UPSTREAM),
        (b"Cookie", b"a=1"),
        (b"X-Y", b"z"),
        (b"Cookie", b"b=2"),
    ]


def test_requestDoesNotMutate() -> None:
    """The request rewriter leaves its input list unchanged."""
    headers = [(b"Host", b"h"), (b"Connection", b"x-a"), (b"X-A", b"1")]
    before = list(headers)
    rewriteRequest(headers)
    assert headers == before


# -- response --------------------------------------------------------------------------


def rewriteResponse(
    headers: Headers, proxy: ProxySettings | None = None, **kwargs: Any
) -> Headers:
    """Rewrite response C{headers} with a rewriter for C{proxy}."""
    twistedVersion = kwargs.pop("twistedVersion", None)
    rewriter = ResponseHeaderRewriter(
        proxy if proxy is not None else settings(), twistedVersion=twistedVersion
    )
    return rewriter.rewrite(headers, **kwargs)


def test_responseDropsHopByHop() -> None:
    """Hop-by-hop and Connection-named response headers do not reach the client."""
    out = rewriteResponse(
        [
            (b"Connection", b"Keep-Alive, X-Backend-Only"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Trailer", b"X-Sum"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"X-Backend-Only", b"1"),
            (b"Content-Type", b"text/plain"),
        ],
        proxy=settings(server_tokens="none"),
    )
    assert out == [(b"Content-Type", b"text/plain")]


def test_responseConnectionKeepsContentLength() -> None:
    """A backend's Connection token cannot remove Content-Length."""
    out = rewriteResponse(
        [(b"Connection", b"Content-Length"), (b"Content-Length", b"3")],
        proxy=settings(server_tokens="none"),
    )
    assert out == [(b"Content-Length", b"3")]


def test_serverTokensProd() -> None:
    """server_tokens "prod" replaces the backend's Server with "twisted-proxy"."""
    out = rewriteResponse([(b"server", b"gunicorn"), (b"SERVER", b"again")])
    assert values(out, b"Server") == [b"twisted-proxy"]


def test_serverTokensFull() -> None:
    """server_tokens "full" names the proxy and Twisted versions."""
    out = rewriteResponse(
        [(b"Server", b"gunicorn")],
        proxy=settings(server_tokens="full"),
        twistedVersion="24.7.0",
    )
    assert values(out, b"Server") == [
        b"twisted-proxy/%s Twisted/24.7.0" % __version__.encode()
    ]


def test_serverTokensFullWithoutTwisted() -> None:
    """server_tokens "full" without a Twisted version names only the proxy."""
    out = rewriteResponse([], proxy=settings(server_tokens="full"))
    assert values(out, b"Server") == [b"twisted-proxy/%s" % __version__.encode()]


def test_serverTokensNone() -> None:
    """server_tokens "none" sends no Server header at all."""
    out = rewriteResponse(
        [(b"Server", b"gunicorn"), (b"Content-Length", b"0")],
        proxy=settings(server_tokens="none"),
    )
    assert out == [(b"Content-Length", b"0")]


def test_responseViaOff() -> None:
    """Via "off" leaves the backend's Via alone and adds none."""
    out = rewriteResponse([(b"Via", b"1.1 inner")], proxy=settings(via="off"))
    assert values(out, b"Via") == [b"1.1 inner"]


def test_responseViaOn() -> None:
    """Via "on" appends the proxy after the backend's Via."""
    out = rewriteResponse([(b"Via", b"1.1 inner")], proxy=settings(via="on"))
    assert values(out, b"Via") == [b"1.1 inner", b"1.1 proxy.example.test"]


def test_responseViaOnHTTP10() -> None:
    """Via on a response names the given protocol version."""
    out = rewriteResponse([], proxy=settings(via="on"), clientVersion=b"HTTP/1.0")
    assert values(out, b"Via") == [b"1.0 proxy.example.test"]


def test_responseViaFull() -> None:
    """Via "full" on a response carries the product comment."""
    out = rewriteResponse([], proxy=settings(via="full"))
    assert values(out, b"Via") == [
        b"1.1 proxy.example.test (twisted-proxy/%s)" % __version__.encode()
    ]


def test_responseViaBlock() -> None:
    """Via "block" removes every Via from the response."""
    out = rewriteResponse(
        [(b"Via", b"1.1 inner"), (b"via", b"1.0 x")], proxy=settings(via="block")
    )
    assert values(out, b"Via") == []


def test_responseUnset() -> None:
    """Header unset removes every copy of the named header."""
    out = rewriteResponse(
        [(b"X-Powered-By", b"PHP"), (b"x-powered-by", b"again"), (b"A", b"1")],
        proxy=settings(
            server_tokens="none",
            response_headers=HeaderDirectives(unset=("X-Powered-By",)),
        ),
    )
    assert out == [(b"A", b"1")]


def test_responseSetReplaces() -> None:
    """Header set replaces every backend copy with one value."""
    out = rewriteResponse(
        [(b"X-Content-Type-Options", b"sniff"), (b"A", b"1")],
        proxy=settings(
            server_tokens="none",
            response_headers=HeaderDirectives(
                set=(("X-Content-Type-Options", "nosniff"),)
            ),
        ),
    )
    assert out == [(b"A", b"1"), (b"X-Content-Type-Options", b"nosniff")]


def test_responseSetAdds() -> None:
    """Header set adds the header when the backend sent none."""
    out = rewriteResponse(
        [],
        proxy=settings(response_headers=HeaderDirectives(set=(("X-Frame", "DENY"),))),
    )
    assert values(out, b"X-Frame") == [b"DENY"]


def test_responseUnsetServer() -> None:
    """Header unset Server removes the proxy's Server too."""
    out = rewriteResponse(
        [(b"Server", b"gunicorn")],
        proxy=settings(response_headers=HeaderDirectives(unset=("Server",))),
    )
    assert values(out, b"Server") == []


def test_responseSetServer() -> None:
    """Header set Server wins over server_tokens."""
    out = rewriteResponse(
        [(b"Server", b"gunicorn")],
        proxy=settings(
            server_tokens="full",
            response_headers=HeaderDirectives(set=(("Server", "mine"),)),
        ),
    )
    assert values(out, b"Server") == [b"mine"]


def test_responseSetRejectsControlCharacters() -> None:
    """A configured response value with CR/LF is refused at construction."""
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        ResponseHeaderRewriter(
            settings(response_headers=HeaderDirectives(set=(("X", "a\r\nb"),)))
        )


def test_responseSetCookieUnmerged() -> None:
    """Repeated Set-Cookie headers stay separate, in order, with their own case."""
    cookies = [
        (b"Set-Cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2, c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
        (b"SET-COOKIE", b"d=4"),
    ]
    out = rewriteResponse(
        [cookies[0], (b"Content-Type", b"text/html"), cookies[1], cookies[2]],
        proxy=settings(server_tokens="none"),
    )
    assert out == [cookies[0], (b"Content-Type", b"text/html"), cookies[1], cookies[2]]


def test_responseOrder() -> None:
    """Output order: backend headers, Server, Via, set directives."""
    out = rewriteResponse(
        [(b"Content-Type", b"text/html"), (b"Server", b"x"), (b"Via", b"1.1 in")],
        proxy=settings(
            via="on", response_headers=HeaderDirectives(set=(("X-A", "1"),))
        ),
    )
    assert names(out) == [b"content-type", b"via", b"server", b"via", b"x-a"]


def test_responseDoesNotMutate() -> None:
    """The response rewriter leaves its input list unchanged."""
    headers = [(b"Server", b"x"), (b"Connection", b"close")]
    rewriteResponse(headers)
    assert headers == [(b"Server", b"x"), (b"Connection", b"close")]
