"""Tests for L{twisted_proxy.core.acl.AccessList}."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from twisted_proxy.config.model import Network
from twisted_proxy.core.acl import AccessList


def nets(*cidrs: str) -> list[Network]:
    """Parse CIDRs as the config loader does."""
    return [ip_network(c) for c in cidrs]


def test_emptyListPermitsEveryone() -> None:
    """With no allow and no deny, every address (even garbage) is let in."""
    acl = AccessList([], [])
    assert acl.permits("192.0.2.1")
    assert acl.permits("::1")
    assert acl.permits("/run/proxy.sock")
    assert acl.permits("")


def test_allowOnly() -> None:
    """With an allow list, only addresses in it are let in."""
    acl = AccessList(nets("127.0.0.0/8", "::1/128"), [])
    assert acl.permits("127.0.0.1")
    assert acl.permits("127.255.0.9")
    assert acl.permits("::1")
    assert not acl.permits("192.0.2.1")
    assert not acl.permits("::2")


def test_denyOnly() -> None:
    """With only a deny list, everyone but the denied is let in."""
    acl = AccessList([], nets("192.0.2.0/24"))
    assert not acl.permits("192.0.2.55")
    assert acl.permits("198.51.100.1")
    assert acl.permits("2001:db8::1")


def test_denyWins() -> None:
    """An address both allowed and denied is refused."""
    acl = AccessList(nets("198.51.100.0/24"), nets("198.51.100.128/25"))
    assert acl.permits("198.51.100.4")
    assert not acl.permits("198.51.100.130")


def test_ipv4MappedTreatedAsIPv4() -> None:
    """The mapped address ::ffff:127.0.0.1 is checked as 127.0.0.1, both ways."""
    assert AccessList(nets("127.0.0.0/8"), []).permits("::ffff:127.0.0.1")
    assert not AccessList([], nets("127.0.0.0/8")).permits("::ffff:127.0.0.1")


def test_versionsDoNotMix() -> None:
    """An IPv4 network says nothing about IPv6 addresses and the other way round."""
    acl = AccessList(nets("0.0.0.0/0"), [])
    assert acl.permits("203.0.113.9")
    assert not acl.permits("2001:db8::1")


def test_bracketsAndScope() -> None:
    """Bracketed IPv6 and scoped link-local addresses are understood."""
    acl = AccessList(nets("::1/128", "fe80::/10"), [])
    assert acl.permits("[::1]")
    assert acl.permits("fe80::1%eth0")


@pytest.mark.parametrize("address", ["", "unix", "/run/proxy.sock", "999.1.1.1"])
def test_unparsableRefusedWhenRestricted(address: str) -> None:
    """A non-IP peer is refused by any list that restricts something."""
    assert not AccessList(nets("0.0.0.0/0", "::/0"), []).permits(address)
    assert not AccessList([], nets("192.0.2.0/24")).permits(address)
