"""
Basic proxy authentication for CONNECT tunnels: a listener's htpasswd file
(C{[listen.connect] users}) and the check of a C{Proxy-Authorization}
header against it.

The file is read at start-up (an entry in an unsupported format stops it,
with the line: L{twisted_proxy.core.htpasswd}) and read again whenever it
changes on disk (looked at on each CONNECT, as Apache's mod_authn_file reads
its file per request): users added with C{htpasswd} count at once, and a
file broken meanwhile is logged and the last good one kept. Hashes are
checked by libpass (passlib's maintained line: every format Apache's
C{htpasswd} writes, bcrypt through pyca's C{bcrypt}), in the reactor's
thread pool, since a bcrypt check takes milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from passlib.context import CryptContext
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from twisted_proxy.core.htpasswd import SCHEMES, basicCredentials, parseHtpasswd

__all__ = ["HtpasswdError", "ProxyUsers", "checkPassword", "readUsers"]

_log = Logger()

_CONTEXT = CryptContext(schemes=list(dict.fromkeys(scheme for _, scheme in SCHEMES)))


class HtpasswdError(Exception):
    """An htpasswd file that cannot be used: unreadable, or lines refused."""


def readUsers(path: str) -> dict[str, str]:
    """The users of the htpasswd file at C{path}; L{HtpasswdError} if unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(16 * 1024 * 1024 + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise HtpasswdError(f"cannot read {path}: {e}") from None
    if len(text) > 16 * 1024 * 1024:
        raise HtpasswdError(f"{path} is larger than 16 MiB")
    parsed = parseHtpasswd(text)
    if parsed.problems:
        raise HtpasswdError("; ".join(f"{path}: {p}" for p in parsed.problems))
    return parsed.users


def checkPassword(password: str, hashed: str) -> bool:
    """Whether C{password} matches the htpasswd entry's C{hashed} (blocking)."""
    try:
        return bool(_CONTEXT.verify(password, hashed))
    except (ValueError, TypeError):
        # A hash with the right prefix but broken: no password matches it.
        return False


def _inThreads(reactor: Any) -> Callable[[str, str], Deferred[bool]]:
    def verify(password: str, hashed: str) -> Deferred[bool]:
        return deferToThreadPool(
            reactor, reactor.getThreadPool(), checkPassword, password, hashed
        )

    return verify


class ProxyUsers:
    """
    The users of one htpasswd file. C{verify} checks a password against a
    hash, eventually (the reactor's thread pool by default).
    """

    def __init__(
        self,
        path: str,
        reactor: Any,
        verify: Callable[[str, str], Deferred[bool]] | None = None,
    ) -> None:
        self.path = path
        self._verify = verify or _inThreads(reactor)
        self._stamp = self._stat()
        self._users = readUsers(path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def users(self) -> dict[str, str]:
        """The users now: the file read again if it changed and is usable."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._users = readUsers(self.path)
            except HtpasswdError as e:
                _log.error(
                    "proxy users: {why}; keeping the users read before", why=str(e)
                )
        return self._users

    def check(self, header: bytes | None) -> Deferred[str | None]:
        """
        The user a C{Proxy-Authorization} header value proves to be, or None
        (no header, not Basic, unknown user, wrong password).
        """
        credentials = basicCredentials(header)
        if credentials is None:
            return succeed(None)
        user, password = credentials
        hashed = self.users().get(user)
        if hashed is None:
            return succeed(None)
        d = self._verify(password, hashed)
        return d.addCallback(lambda ok: user if ok else None)
