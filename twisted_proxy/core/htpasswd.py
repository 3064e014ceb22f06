"""
htpasswd files and Basic credentials, as pure decisions: which entries a
file holds and in which format, and what a C{Proxy-Authorization} header
says. Checking a password against an entry is the adapter's (it takes a
hashing library and time).

The formats are those Apache's C{htpasswd} writes: C{$apr1$} MD5 (its
default), bcrypt (C{-B}: C{$2y$}, also C{$2a$}/C{$2b$}), C{{SHA}} (C{-s}),
SHA-256 and SHA-512 crypt (C{-2}, C{-5}: C{$5$}, C{$6$}). An entry in any
other format (DES crypt, plain text, an MD5 crypt C{$1$}) is refused with
its line, never guessed at: Apache takes a plain password on some systems
and a DES crypt on others.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

__all__ = [
    "SCHEMES",
    "Htpasswd",
    "HtpasswdProblem",
    "basicCredentials",
    "parseHtpasswd",
    "schemeOf",
]

SCHEMES: tuple[tuple[str, str], ...] = (
    ("$apr1$", "apr_md5_crypt"),
    ("$2y$", "bcrypt"),
    ("$2b$", "bcrypt"),
    ("$2a$", "bcrypt"),
    ("{SHA}", "ldap_sha1"),
    ("$5$", "sha256_crypt"),
    ("$6$", "sha512_crypt"),
)
"""An entry's prefix, and the name of its format (as passlib names it)."""

_MAX_LINE = 4096


def schemeOf(hashed: str) -> str | None:
    """The format of an htpasswd entry's hash, or None for one not supported."""
    for prefix, scheme in SCHEMES:
        if hashed.startswith(prefix):
            return scheme
    return None


@dataclass(frozen=True)
class HtpasswdProblem:
    """One line of an htpasswd file that cannot be used."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Htpasswd:
    """An htpasswd file's users and their hashes; C{problems}, if any, bar it."""

    users: dict[str, str]
    problems: tuple[HtpasswdProblem, ...] = ()


def parseHtpasswd(text: str) -> Htpasswd:
    """
    Read an htpasswd file's text: C{user:hash} lines; blank lines and lines
    starting with C{#} are skipped. Every line that cannot be used is a
    problem: no colon, an empty user or hash, a hash in an unsupported
    format, a user given twice.
    """
    users: dict[str, str] = {}
    problems: list[HtpasswdProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > _MAX_LINE:
            problems.append(HtpasswdProblem(number, "line too long"))
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            problems.append(HtpasswdProblem(number, "expected user:hash"))
            continue
        if schemeOf(hashed) is None:
            problems.append(
                HtpasswdProblem(
                    number,
                    f"the entry for {user!r} is in a format not supported here"
                    " (use htpasswd -B, -m, -2, -5 or -s)",
                )
            )
            continue
        if user in seen:
            problems.append(
                HtpasswdProblem(number, f"{user!r} is also on line {seen[user]}")
            )
            continue
        seen[user] = number
        users[user] = hashed
    return Htpasswd(users, tuple(problems))


def basicCredentials(value: bytes | None) -> tuple[str, str] | None:
    """
    The user and password of a C{Basic} authorization header value (RFC
    7617: the scheme case-insensitive, base64 of C{user:password} in
    UTF-8), or None when it is absent or not that.
    """
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    token = token.strip()
    if not token or len(token) > 8192:
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password
