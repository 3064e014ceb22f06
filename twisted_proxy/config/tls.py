"""
The C{[listen.tls]} table and its C{[[listen.tls.sni]]} certificates.
"""

from __future__ import annotations

from typing import Any

from .checker import Checker
from .convert import (
    HOST_NAME,
    InvalidValueError,
    fail,
    headerName,
    intAtLeast,
    oneOf,
    string,
    tlsVersion,
)
from .model import ListenerTLS, SNICertificate
from .vocabulary import TABLES

__all__ = ["listenerTLS"]

_ALPN = ("h2", "http/1.1")


def listenerTLS(
    check: Checker, path: str, value: Any, stream: bool = False
) -> ListenerTLS:
    """
    C{[listen.tls]}: certificate, key and the handshake's settings. On a
    tcp listener (C{stream}) ALPN offers nothing unless asked, takes any
    protocol id, and the keys only HTTP has meaning for are errors.
    """
    tls = check.table(path, value, TABLES["listen.tls"])
    get = tls.get
    d = ListenerTLS(certificate="", key="")
    if stream:
        for key in ("hsts", "client_cert_header"):
            if key in tls:
                check.error(f"{path}.{key}", 'HTTP only: not for protocol = "tcp"')
    certificate = get("certificate", check.file, "", required="a PEM file path")
    key = get("key", check.file, "", required="a PEM file path")
    chain = get("chain", check.file, None)
    clientCA = get("client_ca", check.file, None)
    header = get("client_cert_header", headerName, None)
    if header is not None and clientCA is None and "client_ca" not in tls:
        check.error(
            f"{path}.client_cert_header",
            "needs client_ca (only verified client certificates are passed on)",
        )
    return ListenerTLS(
        certificate=certificate,
        key=key,
        chain=chain,
        min_version=get("min_version", tlsVersion, d.min_version),
        alpn=get(
            "alpn",
            (lambda p, v: _anyALPN(check, p, v))
            if stream
            else (lambda p, v: _alpn(check, p, v)),
            () if stream else d.alpn,
        ),
        hsts=get("hsts", intAtLeast(0), d.hsts),
        client_ca=clientCA,
        client_cert_header=header,
        ciphers=get("ciphers", string, d.ciphers),
        sni=get("sni", lambda p, v: _sniCertificates(check, p, v), ()),
        where=path,
    )


def _anyALPN(check: Checker, path: str, value: Any) -> tuple[str, ...]:
    """ALPN protocol ids of a stream listener (RFC 7301: 1-255 bytes each)."""
    names = check.strings(path, value)
    for name in names:
        if not name.isascii() or len(name) > 255:
            fail("ALPN protocol ids (ASCII, at most 255 characters)", name)
    if len(set(names)) != len(names):
        raise InvalidValueError("expected each protocol once")
    return names


def _alpn(check: Checker, path: str, value: Any) -> tuple[str, ...]:
    """ALPN protocol names, most preferred first."""
    names = check.strings(path, value)
    for name in names:
        if name not in _ALPN:
            fail(oneOf(_ALPN), name)
    if not names:
        raise InvalidValueError(f"expected at least {oneOf(_ALPN)}")
    if len(set(names)) != len(names):
        raise InvalidValueError("expected each protocol once")
    return names


def _sniCertificates(
    check: Checker, path: str, value: Any
) -> tuple[SNICertificate, ...]:
    """The C{[[listen.tls.sni]]} array."""
    result: list[SNICertificate] = []
    seen: dict[str, str] = {}
    for _, itemPath, item in check.tables(path, value, "listen.tls.sni"):
        get = check.table(itemPath, item, TABLES["listen.tls.sni"]).get
        noHosts: tuple[str, ...] = ()
        hosts = get(
            "hosts",
            lambda p, v: _sniHosts(check, p, v),
            noHosts,
            required='host names like ["api.example.test", "*.example.test"]',
        )
        certificate = get("certificate", check.file, "", required="a PEM file")
        key = get("key", check.file, "", required="a PEM file path")
        chain = get("chain", check.file, None)
        for host in hosts:
            if host in seen:
                check.error(f"{itemPath}.hosts", f"{host!r} is also in {seen[host]}")
            seen[host] = itemPath
        if hosts and certificate and key:
            result.append(SNICertificate(hosts, certificate, key, chain))
    return tuple(result)


def _sniHosts(check: Checker, path: str, value: Any) -> tuple[str, ...]:
    """Names a certificate answers for: exact or C{*.domain}."""
    names = check.strings(path, value)
    for name in names:
        if not HOST_NAME.fullmatch(name):
            fail('a host name like "api.example.test" or "*.example.test"', name)
    if not names:
        fail("a non-empty array of host names", value)
    return tuple(n.lower() for n in names)
