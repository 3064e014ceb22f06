"""
What a CONNECT may reach: C{twisted_proxy.core.connectrules}.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from twisted_proxy.core.connectrules import (
    AuthorityError,
    DestinationRules,
    parseAuthority,
)


@pytest.mark.parametrize(
    ("target", "host", "port", "shown"),
    [
        (b"example.test:443", "example.test", 443, "example.test:443"),
        (b"Example.TEST.:8443", "example.test", 8443, "example.test:8443"),
        (b"192.0.2.7:443", "192.0.2.7", 443, "192.0.2.7:443"),
        (b"[2001:db8::1]:443", "2001:db8::1", 443, "[2001:db8::1]:443"),
        (b"[::1]:563", "::1", 563, "[::1]:563"),
        (b"a_b.example.test:1", "a_b.example.test", 1, "a_b.example.test:1"),
    ],
)
def test_authority(target: bytes, host: str, port: int, shown: str) -> None:
    """host:port, lower-cased, an address recognised as one."""
    authority = parseAuthority(target)
    assert (authority.host, authority.port, str(authority)) == (host, port, shown)
    isAddress = host[0].isdigit() or ":" in host
    assert (authority.address is not None) == isAddress


@pytest.mark.parametrize(
    "target",
    [
        b"",
        b"example.test",
        b"example.test:",
        b":443",
        b"example.test:0",
        b"example.test:65536",
        b"example.test:+443",
        b"example.test:443/",
        b"http://example.test:443",
        b"user@example.test:443",
        b"example.test:443:443",
        b"[2001:db8::1]",
        b"[2001:db8::1]443",
        b"[not-an-address]:443",
        b"2001:db8::1:443",
        b"127.1:443",
        b"0177.0.0.1:443",
        b"exa mple.test:443",
        b"example..test:443",
        b".example.test:443",
        b"ex%61mple.test:443",
        b"\xffexample:443",
        b"a" * 300 + b":443",
    ],
)
def test_badAuthority(target: bytes) -> None:
    """Anything but host:port is refused, numeric names that are no IPv4 included."""
    with pytest.raises(AuthorityError):
        parseAuthority(target)


def rules(*entries: str) -> DestinationRules:
    names = [e for e in entries if not e[0].isdigit() and ":" not in e]
    networks = [ip_network(e, strict=False) for e in entries if e not in names]
    return DestinationRules(names, networks)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_guardedNotByTheWholeInternet(address: str) -> None:
    """0.0.0.0/0 and ::/0 never reach loopback, private or link-local addresses."""
    everything = rules("0.0.0.0/0", "::/0", "10.0.0.0/7")
    assert not everything.allows(address, ip_address(address))


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("127.0.0.1/32", "127.0.0.1"),
        ("127.0.0.0/8", "127.3.2.1"),
        ("10.0.0.0/8", "10.9.8.7"),
        ("10.20.0.0/16", "10.20.1.1"),
        ("192.168.1.0/24", "192.168.1.20"),
        ("::1/128", "::1"),
        ("fd00::/8", "fd12::1"),
        ("127.0.0.1/32", "::ffff:127.0.0.1"),
    ],
)
def test_guardedByAnEntryInside(entry: str, address: str) -> None:
    """An entry that lies inside a guarded range reaches it."""
    assert rules(entry).allows(address, ip_address(address))


def test_guardedEntryReachesOnlyItself() -> None:
    """127.0.0.1/32 does not open the rest of 127/8, or 10/8."""
    r = rules("127.0.0.1/32")
    assert not r.allows("127.0.0.2", ip_address("127.0.0.2"))
    assert not r.allows("10.0.0.1", ip_address("10.0.0.1"))


def test_publicAddresses() -> None:
    """A public address needs a network entry around it."""
    r = rules("192.0.2.0/24")
    assert r.allows("192.0.2.9", ip_address("192.0.2.9"))
    assert not r.allows("198.51.100.1", ip_address("198.51.100.1"))
    assert rules("0.0.0.0/0").allows("203.0.113.5", ip_address("203.0.113.5"))
    assert not rules().allows("203.0.113.5", ip_address("203.0.113.5"))


def test_namedDestination() -> None:
    """A listed name reaches whatever it resolves to; an unlisted one only networks."""
    r = rules("db.internal", "0.0.0.0/0")
    assert r.namesHost("db.internal")
    assert r.allows("db.internal", ip_address("10.1.1.1"))
    assert not r.allows("other.internal", ip_address("10.1.1.1"))
    assert r.allows("other.example", ip_address("203.0.113.5"))


def test_rebindingJudgedPerAddress() -> None:
    """Each address a name gave is judged: the guarded ones are split off."""
    r = rules("0.0.0.0/0")
    allowed, refused = r.judge(
        "evil.example",
        [
            ip_address("203.0.113.5"),
            ip_address("127.0.0.1"),
            ip_address("203.0.113.5"),
            ip_address("10.0.0.1"),
        ],
    )
    assert allowed == [ip_address("203.0.113.5")]
    assert refused == [ip_address("127.0.0.1"), ip_address("10.0.0.1")]


def test_nothingListedNothingAllowed() -> None:
    """The default: every destination refused."""
    allowed, refused = rules().judge("example.test", [ip_address("203.0.113.5")])
    assert (allowed, refused) == ([], [ip_address("203.0.113.5")])
