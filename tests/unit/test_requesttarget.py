"""Request-targets normalised once, and Host values checked, as plain bytes."""

from __future__ import annotations

import pytest

from twisted_proxy.core.requesttarget import (
    TargetError,
    isValidHost,
    normalizeTarget,
    splitAbsoluteForm,
)


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/", b"/", b""),
        (b"/admin/secret", b"/admin/secret", b""),
        (b"/static/app.css?v=1", b"/static/app.css", b"?v=1"),
        # Repeated slashes merged.
        (b"//admin/secret", b"/admin/secret", b""),
        (b"/a///b//", b"/a/b/", b""),
        (b"//", b"/", b""),
        # Dot segments removed (RFC 3986 5.2.4).
        (b"/a/./b", b"/a/b", b""),
        (b"/a/b/..", b"/a/", b""),
        (b"/a/b/.", b"/a/b/", b""),
        (b"/a/..", b"/", b""),
        (b"/api/users/../payments/x", b"/api/payments/x", b""),
        (b"/a/b/../../c", b"/c", b""),
        (b"/.well-known/x", b"/.well-known/x", b""),
        (b"/a/...b/..c", b"/a/...b/..c", b""),
        # Unreserved characters decoded, the rest given uppercase hex.
        (b"/%61dmin/%7e%2d%5F%2E", b"/admin/~-_.", b""),
        (b"/%2e%2e/x/..", b"", b""),
        (b"/a%2fb/%2F", b"/a%2Fb/%2F", b""),
        (b"/a%3bb/%25%3F%23", b"/a%3Bb/%25%3F%23", b""),
        (b"/x/%2e%2E/y", b"/y", b""),
        # Bytes outside ASCII percent-encoded.
        (b"/caf\xc3\xa9/", b"/caf%C3%A9/", b""),
        # The query is only checked, never rewritten.
        (b"/s?q={a}|^[b]`c&d=%zz//..", b"/s", b"?q={a}|^[b]`c&d=%zz//.."),
        (b"/s?", b"/s", b"?"),
    ],
)
def test_normalised(target: bytes, path: bytes, query: bytes) -> None:
    """The path is normalised as RFC 3986 6.2.2 says; the query is kept."""
    if not path:
        with pytest.raises(TargetError, match="climbs above the root"):
            normalizeTarget(target)
        return
    normal = normalizeTarget(target)
    assert (normal.path, normal.query, normal.match) == (path, query, path)
    assert normal.uri == path + query
    # Normalising again changes nothing.
    assert normalizeTarget(normal.uri) == normal


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (b"/../../etc/passwd", "climbs above the root"),
        (b"/..", "climbs above the root"),
        (b"/a/../..", "climbs above the root"),
        (b"/%2e%2e/%2e%2e/etc/passwd", "climbs above the root"),
        (b"/a%00b", "%00"),
        (b"/a%zzb", "invalid percent-encoding"),
        (b"/a%2", "invalid percent-encoding"),
        (b"/a%", "invalid percent-encoding"),
        (b"/a%g0", "invalid percent-encoding"),
        (b"/a#frag", "fragment"),
        (b"/a?b#frag", "fragment"),
        (b"/a b", "control character or space"),
        (b"/a\x00", "control character or space"),
        (b"/a\r", "control character or space"),
        (b"/a\n", "control character or space"),
        (b"/a\t", "control character or space"),
        (b"/a\x1b", "control character or space"),
        (b"/a\x7f", "control character or space"),
        (b"/a?x y", "control character or space"),
        (b"/a?\x01", "control character or space"),
        (b"/..;/admin/secret", "dot segment with parameters"),
        (b"/public/.;x/admin", "dot segment with parameters"),
        (b"", "not a path"),
        (b"admin", "not a path"),
        (b"*", "not a path"),
    ],
)
def test_refused(target: bytes, message: str) -> None:
    """What a server must not guess at is refused, with the reason."""
    with pytest.raises(TargetError, match=message):
        normalizeTarget(target)


def test_pathParametersIgnoredForMatching() -> None:
    """
    Path parameters stay in the forwarded path but not in the path routes and
    access lists see: a Tomcat serves "/admin;x/secret" as "/admin/secret".
    """
    normal = normalizeTarget(b"/admin;x/secret?q=1")
    assert normal.path == b"/admin;x/secret"
    assert normal.query == b"?q=1"
    assert normal.match == b"/admin/secret"
    jsession = normalizeTarget(b"/app/page;jsessionid=ABC.node1")
    assert jsession.path == b"/app/page;jsessionid=ABC.node1"
    assert jsession.match == b"/app/page"
    empty = normalizeTarget(b"/;x/admin/secret")
    assert empty.path == b"/;x/admin/secret"
    assert empty.match == b"/admin/secret"
    trailing = normalizeTarget(b"/app/;jsessionid=ABC")
    assert trailing.match == b"/app/"


def test_mergeSlashesOff() -> None:
    """With merge_slashes off, "//" stays; dot segments still go."""
    normal = normalizeTarget(b"//a//b/./c", mergeSlashes=False)
    assert normal.path == normal.match == b"//a//b/c"
    assert normalizeTarget(b"/a//../b", mergeSlashes=False).path == b"/a/b"
    assert normalizeTarget(b"/;x//a", mergeSlashes=False).match == b"///a"


@pytest.mark.parametrize(
    ("target", "prefix", "rest"),
    [
        (b"/api/users/7", b"/api/users/", b"/7"),
        (b"/api/users/", b"/api/users/", b""),
        (b"/api/users", b"/api/users/", None),
        (b"/api", b"/api", b""),
        (b"/api/x", b"/api", b"/x"),
        (b"/apix", b"/api", None),
        (b"/x", b"/", b"/x"),
        (b"/admin;x/secret;y/z", b"/admin/", b"/secret;y/z"),
        (b"/;x/admin/secret", b"/admin/", b"/secret"),
        (b"/admin;x/secret", b"/admin/secret", b""),
        (b"/app/;jsessionid=A", b"/app/", b"/;jsessionid=A"),
        (b"/app;jsessionid=A", b"/app/", None),
    ],
)
def test_after(target: bytes, prefix: bytes, rest: bytes | None) -> None:
    """What follows a route's prefix, in the forwarded path (parameters kept)."""
    assert normalizeTarget(target).after(prefix) == rest


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"http://example.test/a/b?c", (b"example.test", b"/a/b?c")),
        (b"HTTP://example.test", (b"example.test", b"/")),
        (b"http://example.test?q=1", (b"example.test", b"/?q=1")),
        (b"https://[::1]:8443/x", (b"[::1]:8443", b"/x")),
        (b"ftp://example.test/", None),
        (b"example.test:443", None),
    ],
)
def test_splitAbsoluteForm(target: bytes, expected: tuple[bytes, bytes] | None) -> None:
    """An absolute-form target splits into its authority and origin form."""
    assert splitAbsoluteForm(target) == expected


@pytest.mark.parametrize(
    "host",
    [
        b"example.test",
        b"Example.Test:8080",
        b"example.test:",
        b"127.0.0.1",
        b"127.0.0.1:80",
        b"[::1]",
        b"[::1]:8443",
        b"[v1.fe80::a+en1]",
        b"xn--caf-dma.example",
        b"a_b.example",
        b"%41.example",
    ],
)
def test_validHosts(host: bytes) -> None:
    """RFC 3986 host[:port] values are accepted."""
    assert isValidHost(host)


@pytest.mark.parametrize(
    "host",
    [
        b"",
        b"evil.example/x?y",
        b'evil.com/"><x',
        b"user@example.test",
        b"example.test:80:80",
        b"example.test:123456",
        b"example.test:x",
        b"a b",
        b"exa\tmple",
        b"[::1",
        b"::1",
        b"example.test\\x",
        b"caf\xc3\xa9.example",
        b"%zz.example",
    ],
)
def test_invalidHosts(host: bytes) -> None:
    """Anything else is refused: a Host is routed by and copied into Location."""
    assert not isValidHost(host)
