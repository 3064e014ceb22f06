"""
htpasswd files and Basic credentials (C{twisted_proxy.core.htpasswd}), and
checking passwords against entries Apache's htpasswd wrote
(C{twisted_proxy.frontends.proxyauth}).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, succeed

from twisted_proxy.core.htpasswd import basicCredentials, parseHtpasswd, schemeOf
from twisted_proxy.frontends.proxyauth import HtpasswdError, ProxyUsers, checkPassword

# Written by Apache's htpasswd 2.4 (-m, -B, -s, -2, -5) for "s3cret pass".
PASSWORD = "s3cret pass"
WRITTEN = {
    "apr_md5_crypt": "$apr1$gzFbPUz9$KK.YAdG9EHQi2Z7qzVALh.",
    "bcrypt": "$2y$05$o5lKqDmifsIlBx3//KTJReYVefOvty8D3goFKF7reAKHWTx4s9/5u",
    "ldap_sha1": "{SHA}ohgYgF2kkgMlRbH1HlEDczlOc+M=",
    "sha256_crypt": "$5$T4d/ShTBOa3mz0cM$Pb17jByYR1qtbKD3RVgLtLhQPatRBw.LgpuZ7TzhR23",
    "sha512_crypt": (
        "$6$.d2ZLN8BltkT2Vb5$ERVzgqTzhkYGAoSPkj8vbdSQfPTiZ26m9WGB9P1KjcCmRJvNBd9M"
        "AphNDvFF6g5dd3/eyRNBYEmiAwKxfNzQq."
    ),
}


@pytest.mark.parametrize("scheme", sorted(WRITTEN))
def test_everyFormatHtpasswdWrites(scheme: str) -> None:
    """Each format is recognised, its password accepted, another refused."""
    hashed = WRITTEN[scheme]
    assert schemeOf(hashed) == scheme
    assert checkPassword(PASSWORD, hashed)
    assert not checkPassword("s3cret pas", hashed)
    assert not checkPassword("", hashed)


def test_brokenHashMatchesNothing() -> None:
    """A hash with a known prefix but garbage after it: no password, no crash."""
    assert not checkPassword(PASSWORD, "$2y$05$short")
    assert not checkPassword(PASSWORD, "$apr1$")
    assert not checkPassword(PASSWORD, "{SHA}not base64!")


def test_parseFile() -> None:
    """Users and hashes; comments and blank lines skipped."""
    text = (
        "# proxy users\n\n"
        f"alice:{WRITTEN['bcrypt']}\n"
        f"  bob:{WRITTEN['apr_md5_crypt']}  \r\n"
        f"carol:{WRITTEN['ldap_sha1']}"
    )
    parsed = parseHtpasswd(text)
    assert parsed.problems == ()
    assert parsed.users == {
        "alice": WRITTEN["bcrypt"],
        "bob": WRITTEN["apr_md5_crypt"],
        "carol": WRITTEN["ldap_sha1"],
    }


def test_unsupportedLinesNamed() -> None:
    """DES crypt, plain text, $1$ MD5, no colon, a user twice: each by its line."""
    text = "\n".join(
        [
            f"alice:{WRITTEN['bcrypt']}",
            "des:rl0uE9bMuR4Mc",
            "plain:secret",
            "md5:$1$abcdefgh$0123456789012345678901",
            "nocolon",
            ":nouser",
            f"alice:{WRITTEN['ldap_sha1']}",
        ]
    )
    problems = [str(p) for p in parseHtpasswd(text).problems]
    assert problems == [
        "line 2: the entry for 'des' is in a format not supported here"
        " (use htpasswd -B, -m, -2, -5 or -s)",
        "line 3: the entry for 'plain' is in a format not supported here"
        " (use htpasswd -B, -m, -2, -5 or -s)",
        "line 4: the entry for 'md5' is in a format not supported here"
        " (use htpasswd -B, -m, -2, -5 or -s)",
        "line 5: expected user:hash",
        "line 6: expected user:hash",
        "line 7: 'alice' is also on line 1",
    ]


def _basic(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_basic(b"alice:s3cret pass"), ("alice", "s3cret pass")),
        (b"basic " + base64.b64encode(b"a:b:c"), ("a", "b:c")),
        (_basic(b"alice:"), ("alice", "")),
        (_basic("j\u00f6rg:p\u00e4ss".encode()), ("j\u00f6rg", "p\u00e4ss")),
        (None, None),
        (b"", None),
        (b"Bearer abc", None),
        (b"Basic", None),
        (b"Basic !!!", None),
        (_basic(b"no colon"), None),
        (_basic(b":password"), None),
        (_basic(b"\xff\xfe:x"), None),
        (b"Basic " + b"A" * 9000, None),
    ],
)
def test_basicCredentials(value: bytes | None, expected: object) -> None:
    """RFC 7617 Basic: user and password, or None for anything else."""
    assert basicCredentials(value) == expected


def _now(password: str, hashed: str) -> Deferred[bool]:
    return succeed(checkPassword(password, hashed))


def _result(d: Deferred[str | None]) -> str | None:
    found: list[str | None] = []
    d.addCallback(found.append)
    assert len(found) == 1
    return found[0]


def test_usersChecked(tmp_path: Path) -> None:
    """The right user and password give the user; anything else None."""
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{WRITTEN['sha512_crypt']}\n")
    users = ProxyUsers(str(path), None, _now)
    assert _result(users.check(_basic(b"alice:s3cret pass"))) == "alice"
    assert _result(users.check(_basic(b"alice:wrong"))) is None
    assert _result(users.check(_basic(b"mallory:s3cret pass"))) is None
    assert _result(users.check(None)) is None


def test_fileReadAgainWhenChanged(tmp_path: Path) -> None:
    """A user added counts at once; a file broken meanwhile keeps the last good one."""
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{WRITTEN['apr_md5_crypt']}\n")
    users = ProxyUsers(str(path), None, _now)
    path.write_text(
        f"alice:{WRITTEN['apr_md5_crypt']}\nbob:{WRITTEN['sha256_crypt']}\n"
    )
    os.utime(path, ns=(1, 1))
    assert _result(users.check(_basic(b"bob:s3cret pass"))) == "bob"
    path.write_text("bob:plaintext\n")
    os.utime(path, ns=(2, 2))
    assert _result(users.check(_basic(b"bob:s3cret pass"))) == "bob"
    path.unlink()
    assert _result(users.check(_basic(b"alice:s3cret pass"))) == "alice"


def test_unusableFileAtStart(tmp_path: Path) -> None:
    """At start a bad file is an error naming the file and the line."""
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{WRITTEN['bcrypt']}\nbob:rl0uE9bMuR4Mc\n")
    with pytest.raises(HtpasswdError, match=rf"{path}: line 2: the entry for 'bob'"):
        ProxyUsers(str(path), None, _now)
    with pytest.raises(HtpasswdError, match="cannot read"):
        ProxyUsers(str(tmp_path / "missing"), None, _now)
