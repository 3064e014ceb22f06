"""
The value converters: one TOML value in, one model value out, or
L{InvalidValueError} saying what was expected.

Each converter takes the value's key path and the value, so the table walkers
can hand any of them to L{twisted_proxy.config.checker.Checker.field}. None of
them needs the file or collects errors; the ones that do live on the checker.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Callable
from typing import Any, NoReturn, cast, get_args
from urllib.parse import SplitResult, urlsplit

from .model import (
    BalancerMethod,
    HealthMethod,
    LogLevel,
    ServerTokens,
    Target,
    TLSVersion,
    ViaMode,
)
from .schemes import BACKEND_SCHEMES, defaultPort

__all__ = [
    "HOST_NAME",
    "MAX_WORKERS",
    "TOKEN",
    "InvalidValueError",
    "ajpSecret",
    "array",
    "boolean",
    "choice",
    "compressLevel",
    "cookieName",
    "describe",
    "endpoint",
    "expectBody",
    "fail",
    "handler",
    "hashKey",
    "headerName",
    "healthMethod",
    "healthURI",
    "intAtLeast",
    "isInt",
    "keyPath",
    "logLevel",
    "memberURL",
    "method",
    "oneOf",
    "positiveInt",
    "redirectURL",
    "routeHost",
    "routeId",
    "routePath",
    "seconds",
    "secondsOrOff",
    "serverName",
    "serverTokens",
    "streamTarget",
    "string",
    "table",
    "target",
    "tcpAddress",
    "tlsVersion",
    "url",
    "usableCores",
    "via",
    "workerCount",
]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENDPOINT = re.compile(r"[A-Za-z][A-Za-z0-9_+.-]*:.+", re.DOTALL)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
HOST_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
"""An exact host name or C{*.domain}."""
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP token: a header, cookie or parameter name."""
_ROUTE_ID = re.compile(r"[A-Za-z0-9_-]+")
_ROUTE_PATH = re.compile(r"/[\x21-\x7e]*")

_HANDLERS = ("balancer-manager", "status", "info", "metrics")
_HASH_KEYS = ("ip", "uri", "header:NAME", "cookie:NAME")
_MEMBER_SCHEMES_LATER = ("h2", "h2c", "fcgi")


class InvalidValueError(Exception):
    """The value at hand is wrong; the message says what was expected."""


def fail(expected: str, value: object) -> NoReturn:
    """Refuse C{value}, saying what was C{expected} instead."""
    raise InvalidValueError(f"expected {expected}, got {describe(value)}")


def describe(value: object) -> str:
    """Show a TOML value the way the operator wrote it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def keyPath(path: str, key: str) -> str:
    """The key path of C{key} in the table at C{path}, quoted as TOML would."""
    if not _BARE_KEY.fullmatch(key):
        key = json.dumps(key, ensure_ascii=False)
    return f"{path}.{key}" if path else key


def isInt(value: object) -> bool:
    """A TOML integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _isNumber(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def oneOf(options: tuple[str, ...]) -> str:
    """Name the choices C{options} for a message."""
    return "one of " + ", ".join(json.dumps(o) for o in options)


# -- structure ----------------------------------------------------------------


def table(path: str, value: Any) -> dict[str, Any]:
    """A TOML table."""
    if not isinstance(value, dict):
        fail("a table", value)
    return value


def array(path: str, value: Any, of: str) -> list[Any]:
    """A TOML array, any item type; C{of} names the items for the message."""
    if not isinstance(value, list):
        fail(f"an array of {of}", value)
    return value


# -- scalars ------------------------------------------------------------------


def string(path: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        fail("a non-empty string", value)
    return value


def ajpSecret(path: str, value: Any) -> str:
    """An AJP connector's secret: printable ASCII, no spaces, 1 to 1024 long."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 1024
        or not all("!" <= c <= "~" for c in value)
    ):
        fail("a secret of 1 to 1024 printable ASCII characters, no spaces", value)
    return value


def boolean(path: str, value: Any) -> bool:
    """C{true} or C{false}."""
    if not isinstance(value, bool):
        fail("true or false", value)
    return value


def positiveInt(path: str, value: Any) -> int:
    """An integer of at least 1."""
    if not isInt(value) or value < 1:
        fail("a positive integer", value)
    return cast(int, value)


MAX_WORKERS = 256
"""The most processes C{[proxy] workers} may ask for."""


def workerCount(path: str, value: Any) -> int:
    """
    A number of worker processes, 1 to L{MAX_WORKERS}, or C{"auto"}: the
    cores this process may run on.
    """
    if value == "auto":
        return min(MAX_WORKERS, usableCores())
    if not isInt(value) or not 1 <= value <= MAX_WORKERS:
        fail(f'an integer from 1 to {MAX_WORKERS} or "auto"', value)
    return cast(int, value)


def usableCores() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def intAtLeast(minimum: int) -> Callable[[str, Any], int]:
    """An integer of at least C{minimum}."""

    def convert(path: str, value: Any) -> int:
        if not isInt(value) or value < minimum:
            fail(f"an integer >= {minimum}", value)
        return cast(int, value)

    return convert


def compressLevel(path: str, value: Any) -> int:
    """A gzip level, 1 to 9."""
    if not isInt(value) or not 1 <= value <= 9:
        fail("a gzip level from 1 to 9", value)
    return int(value)


def seconds(path: str, value: Any) -> float:
    """A duration: a positive number of seconds (integers accepted)."""
    if not _isNumber(value) or value <= 0:
        fail("a positive number of seconds", value)
    return float(value)


def secondsOrOff(path: str, value: Any) -> float:
    """A duration in seconds, or 0 for off."""
    if not _isNumber(value) or value < 0:
        fail("a number of seconds (0: off)", value)
    return float(value)


def choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    """One of C{options} (the model's C{Literal} types name them in order)."""

    def convert(path: str, value: Any) -> str:
        if value not in options or not isinstance(value, str):
            fail(oneOf(options), value)
        return value

    return convert


def serverName(path: str, value: Any) -> str:
    """A host name to put in Via and X-Forwarded-Server."""
    if not isinstance(value, str) or not re.fullmatch(r"[\x21-\x7e]+", value):
        fail("a host name", value)
    return value


def serverTokens(path: str, value: Any) -> ServerTokens:
    """How much the Server header says."""
    return cast(ServerTokens, choice(get_args(ServerTokens))(path, value))


def via(path: str, value: Any) -> ViaMode:
    """What to do with the Via header."""
    return cast(ViaMode, choice(get_args(ViaMode))(path, value))


def logLevel(path: str, value: Any) -> LogLevel:
    """How much the error log says about upstream exchanges."""
    return cast(LogLevel, choice(get_args(LogLevel))(path, value))


def tlsVersion(path: str, value: Any) -> TLSVersion:
    """
    The oldest TLS version accepted; below "1.2" it is honoured with a
    warning (twisted_proxy.tls.profile).
    """
    return cast(TLSVersion, choice(get_args(TLSVersion))(path, value))


def headerName(path: str, value: Any) -> str:
    """An HTTP header name (a token)."""
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        fail("a header name", value)
    return value


def cookieName(path: str, value: Any) -> str:
    """A cookie or URL parameter name (an HTTP token)."""
    if not isinstance(value, str) or not TOKEN.fullmatch(value):
        fail("a cookie name (an HTTP token)", value)
    return value


def endpoint(path: str, value: Any) -> str:
    """A Twisted server endpoint string: C{type:arguments}."""
    if not isinstance(value, str) or not _ENDPOINT.fullmatch(value):
        fail('a Twisted endpoint string like "tcp:8080:interface=127.0.0.1"', value)
    return value


# -- routes -------------------------------------------------------------------


def routePath(path: str, value: Any) -> str:
    """A URL path prefix: starts with C{/}, no spaces, query or fragment."""
    if (
        not isinstance(value, str)
        or not _ROUTE_PATH.fullmatch(value)
        or "?" in value
        or "#" in value
    ):
        fail('a path starting with "/"', value)
    return value


def routeHost(path: str, value: Any) -> str:
    """A virtual host: an exact name, C{*.domain} or an address."""
    if isinstance(value, str):
        if HOST_NAME.fullmatch(value):
            return value.lower()
        if value.startswith("[") and value.endswith("]"):
            try:
                return f"[{ipaddress.IPv6Address(value[1:-1]).compressed}]"
            except ValueError:
                pass
    fail('a host name or "*.domain"', value)


def handler(path: str, value: Any) -> str:
    """A built-in handler name."""
    if value in _HANDLERS and isinstance(value, str):
        return value
    fail(oneOf(_HANDLERS), value)


# -- URLs ---------------------------------------------------------------------


def url(value: Any, expected: str) -> SplitResult:
    """Split an absolute URL with a host, no credentials, query or fragment."""
    if not isinstance(value, str) or not value:
        fail(expected, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        fail(expected, value)
    if not parts.hostname or parts.username is not None or parts.port == 0:
        fail(expected, value)
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise InvalidValueError(
            f"expected a URL without query or fragment, got {describe(value)}"
        )
    return parts


def redirectURL(path: str, value: Any) -> str:
    """Where a C{redirect_https} listener sends clients: C{https://host[:port]}."""
    expected = 'an https:// URL like "https://proxy.example.test:8443"'
    parts = url(value, expected)
    if parts.scheme.lower() != "https" or parts.path not in ("", "/"):
        fail(expected, value)
    return f"https://{parts.netloc}"


def tcpAddress(value: Any) -> tuple[str, int]:
    """A C{tcp://host:port} URL's host and port (the port is required)."""
    expected = 'a URL like "tcp://127.0.0.1:6379"'
    parts = url(value, expected)
    if parts.scheme.lower() != "tcp" or parts.path not in ("", "/"):
        fail(expected, value)
    if parts.port is None:
        raise InvalidValueError(f"a tcp:// URL needs a port, got {describe(value)}")
    assert parts.hostname is not None
    return parts.hostname, parts.port


def streamTarget(value: Any, balancerNames: frozenset[str]) -> Target:
    """A tcp listener's C{to}: C{tcp://host:port} or C{balancer://NAME}."""
    if isinstance(value, str) and value.lower().startswith("tcp://"):
        host, port = tcpAddress(value)
        return Target(url=value, scheme="tcp", host=host, port=port, path="")
    if isinstance(value, str) and value.lower().startswith("balancer://"):
        found = target(value, balancerNames)
        if found.path not in ("", "/"):
            fail('a URL like "balancer://NAME"', value)
        return found
    fail('a URL like "tcp://127.0.0.1:6379" or "balancer://NAME"', value)


def target(value: Any, balancerNames: frozenset[str]) -> Target:
    """A C{to =} URL: a direct backend or C{balancer://NAME/}."""
    expected = "an http://, https://, ws://, wss:// or balancer:// URL"
    if isinstance(value, str) and value.lower().startswith("balancer://"):
        try:
            parts = urlsplit(value)
        except ValueError:
            fail('a URL like "balancer://NAME/"', value)
        name = parts.netloc
        if not name or parts.query or parts.fragment or "?" in value:
            fail('a URL like "balancer://NAME/"', value)
        if name not in balancerNames:
            raise InvalidValueError(f"unknown balancer {json.dumps(name)}")
        return Target(
            url=value, scheme="balancer", host=name, port=0, path=parts.path or "/"
        )
    parts = url(value, expected)
    scheme = parts.scheme.lower()
    if scheme not in BACKEND_SCHEMES:
        fail(expected, value)
    assert parts.hostname is not None
    return Target(
        url=value,
        scheme=scheme,
        host=parts.hostname,
        port=parts.port or defaultPort(scheme),
        path=parts.path or "/",
    )


def memberURL(path: str, value: Any) -> tuple[str, str, str, int]:
    """An http(s), ws(s), ajp or tcp member URL: (url, scheme, host, port)."""
    expected = "an http://, https://, ws://, wss://, ajp:// or tcp:// URL"
    if isinstance(value, str):
        scheme = value.partition("://")[0].lower()
        if scheme in _MEMBER_SCHEMES_LATER:
            raise InvalidValueError(f"{scheme}:// members are not supported yet")
        if scheme == "tcp":
            host, port = tcpAddress(value)
            return value, "tcp", host, port
    parts = url(value, expected)
    scheme = parts.scheme.lower()
    if scheme not in BACKEND_SCHEMES:
        fail(expected, value)
    if parts.path not in ("", "/"):
        raise InvalidValueError("a path on a member URL is not supported yet")
    assert parts.hostname is not None
    return (value, scheme, parts.hostname, parts.port or defaultPort(scheme))


# -- balancers ----------------------------------------------------------------


def method(path: str, value: Any) -> BalancerMethod:
    """A balancing method."""
    return cast(BalancerMethod, choice(get_args(BalancerMethod))(path, value))


def hashKey(path: str, value: Any) -> str:
    """What C{method = "hash"} hashes: ip, uri, header:NAME or cookie:NAME."""
    if value in ("ip", "uri") and isinstance(value, str):
        return value
    if isinstance(value, str):
        kind, sep, name = value.partition(":")
        if sep and kind in ("header", "cookie"):
            if not TOKEN.fullmatch(name):
                fail(f'"{kind}:NAME" with NAME a {kind} name (an HTTP token)', value)
            return value
    fail(oneOf(_HASH_KEYS), value)


def routeId(path: str, value: Any) -> str:
    """A member's route id, as carried in a sticky cookie."""
    if not isinstance(value, str) or not _ROUTE_ID.fullmatch(value):
        fail('a route id of letters, digits, "-" and "_"', value)
    return value


def healthMethod(path: str, value: Any) -> HealthMethod:
    """How a member is checked: TCP, CPING, OPTIONS, HEAD or GET (any case)."""
    if isinstance(value, str) and value.upper() in get_args(HealthMethod):
        return cast(HealthMethod, value.upper())
    fail(oneOf(get_args(HealthMethod)), value)


def healthURI(path: str, value: Any) -> str:
    """The request-target of an HTTP check: a path, optionally a query."""
    if not isinstance(value, str) or not _ROUTE_PATH.fullmatch(value) or "#" in value:
        fail('a path starting with "/"', value)
    return value


def expectBody(path: str, value: Any) -> str:
    """A regular expression the body of a passing check must contain."""
    pattern = string(path, value)
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise InvalidValueError(
            f"expected a regular expression, got {describe(pattern)}: {e}"
        ) from None
    return pattern
