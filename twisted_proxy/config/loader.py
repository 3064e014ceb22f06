"""
Read a TOML file into the validated L{Config}.

Validation is pure: text in, a L{Config} or a L{ConfigError} out. It never
stops at the first problem: every error is collected, each naming the file, the
key path (C{balancer.web.member[2].weight}) and what was expected, so an
operator fixes the whole file in one go.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from .model import (
    Balancer,
    BalancerMethod,
    Config,
    HeaderDirectives,
    HealthCheck,
    HealthMethod,
    Listener,
    ListenerTLS,
    LogLevel,
    Member,
    Network,
    ProxySettings,
    Route,
    ServerTokens,
    SNICertificate,
    Sticky,
    Target,
    TLSVersion,
    ViaMode,
    WebSocketSettings,
)

__all__ = ["ConfigError", "acceptedKeys", "load", "loadString", "parseTarget"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """
    The configuration is invalid; nothing built from it may start.

    C{errors} holds every problem found, one message each; C{str()} of the
    exception lists them one per line.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        return (type(self), (self.errors,))


def load(path: str) -> Config:
    """
    Read and validate the TOML file at C{path}.

    Relative file paths inside it are resolved against its folder.

    @raise ConfigError: the file cannot be read, is not TOML, or is invalid.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the file: {e.strerror or e}"]) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text: {e.reason}"]) from e
    return loadString(text, path)


def loadString(text: str, source: str = "<string>") -> Config:
    """
    Validate the TOML document C{text}, naming C{source} in error messages.

    When C{source} is a file path, relative paths in the document are resolved
    against its folder and it becomes L{Config.source}; a pseudo-name such as
    C{"<string>"} resolves them against the current directory.

    @raise ConfigError: the text is not TOML or is invalid.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([_syntaxError(source, text, str(e))]) from e
    except RecursionError:
        raise ConfigError(
            [f"{source}: invalid TOML: arrays or tables nested too deeply"]
        ) from None
    isFile = not source.startswith("<")
    folder = os.path.dirname(os.path.abspath(source)) if isFile else os.getcwd()
    checker = _Checker(source, folder)
    config = checker.document(document, source if isFile else None)
    if checker.errors:
        raise ConfigError(checker.errors)
    return config


def _syntaxError(source: str, text: str, message: str) -> str:
    """Turn a C{tomllib} message into C{FILE: line N, column M: ...}."""
    where = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if where is not None:
        line, column = where.groups()
        return (
            f"{source}: line {line}, column {column}: invalid TOML: "
            f"{message[: where.start()]}"
        )
    if message.endswith(" (at end of document)"):
        reason = message[: -len(" (at end of document)")]
        line = str(max(1, len(text.splitlines())))
        return f"{source}: line {line} (end of file): invalid TOML: {reason}"
    return f"{source}: invalid TOML: {message}"


# -- vocabulary ---------------------------------------------------------------

_TOP = frozenset({"proxy", "listen", "route", "balancer"})

_PROXY = frozenset(
    {
        "server_name",
        "server_tokens",
        "preserve_host",
        "forwarded_headers",
        "trusted_proxies",
        "via",
        "timeout",
        "connect_timeout",
        "send_timeout",
        "safe_reuse",
        "continue_timeout",
        "header_timeout",
        "idle_timeout",
        "max_header_bytes",
        "max_headers",
        "merge_slashes",
        "max_body_bytes",
        "access_log",
        "access_log_format",
        "compress",
        "compress_level",
        "response_headers",
        "keepalive",
        "pool_size",
        "pool_ttl",
        "shutdown_grace",
        "log_level",
        "websocket",
    }
)
_WEBSOCKET = frozenset({"ping_interval", "max_message_bytes", "idle_timeout"})

_LISTEN = frozenset({"endpoint", "tls", "redirect_https"})
_LISTEN_LATER = frozenset({"connect", "protocol", "to", "proxy_protocol"})
_TLS = frozenset(
    {
        "certificate",
        "key",
        "min_version",
        "alpn",
        "hsts",
        "client_ca",
        "client_cert_header",
        "ciphers",
        "sni",
    }
)
_SNI = frozenset({"hosts", "certificate", "key"})
_ALPN = ("h2", "http/1.1")
_TLS_VERSIONS: tuple[TLSVersion, ...] = ("1.2", "1.3")

_ROUTE = frozenset(
    {
        "path",
        "host",
        "to",
        "handler",
        "reverse",
        "cookie_domain",
        "cookie_path",
        "preserve_host",
        "timeout",
        "allow",
        "deny",
        "request_headers",
        "websocket",
        "tls_ca",
        "tls_verify",
        "trace",
    }
)
_HANDLERS = ("balancer-manager", "status", "metrics")

_BALANCER = frozenset(
    {
        "method",
        "member",
        "hash_key",
        "max_attempts",
        "fail_on_status",
        "retry",
        "sticky",
        "health",
    }
)
_METHODS: tuple[BalancerMethod, ...] = (
    "byrequests",
    "bytraffic",
    "bybusyness",
    "roundrobin",
    "random2",
    "hash",
)
_HASH_KEYS = ("ip", "uri", "header:NAME", "cookie:NAME")
_STICKY = frozenset({"name", "insert", "failover"})
_HEALTH = frozenset(
    {
        "method",
        "uri",
        "interval",
        "fast_interval",
        "timeout",
        "passes",
        "fails",
        "expect_status",
        "expect_body",
    }
)
_HEALTH_METHODS: tuple[HealthMethod, ...] = ("TCP", "OPTIONS", "HEAD", "GET")

_MEMBER = frozenset(
    {
        "url",
        "route",
        "weight",
        "standby",
        "disabled",
        "max_connections",
        "drain",
        "tier",
        "ignore_errors",
        "tls_ca",
        "tls_verify",
    }
)
_MEMBER_SCHEMES_LATER = ("tcp", "ajp", "h2", "h2c", "fcgi")
_HEADER_DIRECTIVES = frozenset({"set", "unset"})

_TARGET_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENDPOINT = re.compile(r"[A-Za-z][A-Za-z0-9_+.-]*:.+", re.DOTALL)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BALANCER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ROUTE_ID = re.compile(r"[A-Za-z0-9_-]+")
_ROUTE_PATH = re.compile(r"/[\x21-\x7e]*")
_STATUS_CLASS = re.compile(r"[1-5]xx")
_STATUS_CODE = re.compile(r"[1-5][0-9][0-9]")


# -- helpers ------------------------------------------------------------------


class _InvalidValueError(Exception):
    """The value at hand is wrong; the message says what was expected."""


def _fail(expected: str, value: object) -> NoReturn:
    raise _InvalidValueError(f"expected {expected}, got {_describe(value)}")


def _describe(value: object) -> str:
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


def _quote(name: str) -> str:
    """Quote C{name} as TOML would for a key path, when it needs quoting."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _join(path: str, key: str) -> str:
    return f"{path}.{_quote(key)}" if path else _quote(key)


def _isInt(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _isNumber(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _oneOf(options: tuple[str, ...]) -> str:
    return "one of " + ", ".join(json.dumps(o) for o in options)


def acceptedKeys() -> dict[str, frozenset[str]]:
    """
    The keys each table accepts, by its TOML path (C{balancer.NAME} stands
    for every balancer), as docs/configuration.rst documents them; keys
    refused as "not supported yet" are not among them.
    """
    return {
        "proxy": _PROXY,
        "proxy.websocket": _WEBSOCKET,
        "proxy.response_headers": _HEADER_DIRECTIVES,
        "listen": _LISTEN,
        "listen.tls": _TLS,
        "listen.tls.sni": _SNI,
        "route": _ROUTE,
        "route.request_headers": _HEADER_DIRECTIVES,
        "balancer.NAME": _BALANCER,
        "balancer.NAME.member": _MEMBER,
        "balancer.NAME.sticky": _STICKY,
        "balancer.NAME.health": _HEALTH,
    }


def parseTarget(url: str) -> Target:
    """
    Parse one backend URL (C{http://host:port/path}, ``ws(s)://``) as a route's
    C{to} would be; raise C{ValueError} saying what is wrong with it.
    """
    try:
        return _Checker("<url>", os.getcwd()).target("to", url, frozenset())
    except _InvalidValueError as e:
        raise ValueError(f"{url!r}: {e}") from None


class _Checker:
    """Walks a parsed document, building model values and collecting errors."""

    def __init__(self, source: str, folder: str) -> None:
        self.source = source
        self.folder = folder
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        """Record one problem at C{path}."""
        self.errors.append(f"{self.source}: {path}: {message}")

    # -- structure --

    def keys(
        self,
        table: Mapping[str, Any],
        path: str,
        known: frozenset[str],
        later: frozenset[str] = frozenset(),
    ) -> None:
        """Report every key of C{table} that is not in C{known}."""
        for key in table:
            if key not in known:
                message = "not supported yet" if key in later else "unknown key"
                self.error(_join(path, key), message)

    def field(
        self,
        table: Mapping[str, Any],
        path: str,
        key: str,
        convert: Callable[[str, Any], _T],
        default: _T,
        required: str | None = None,
    ) -> _T:
        """
        Convert C{table[key]}, or return C{default} when it is absent or wrong.

        When C{required} is given the key must be present; C{required} then
        says what was expected.
        """
        keyPath = _join(path, key)
        if key not in table:
            if required is not None:
                self.error(keyPath, f"missing, expected {required}")
            return default
        try:
            return convert(keyPath, table[key])
        except _InvalidValueError as e:
            self.error(keyPath, str(e))
            return default

    def table(self, path: str, value: Any) -> dict[str, Any]:
        """A TOML table."""
        if not isinstance(value, dict):
            _fail("a table", value)
        return value

    def tables(
        self, path: str, value: Any, header: str
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """
        An array of tables (C{[[header]]}): yield each with its index and path.

        Entries that are not tables are reported and skipped, so the indexes
        still match the file.
        """
        if not isinstance(value, list):
            _fail(f"an array of tables ([[{header}]])", value)
        for index, item in enumerate(value):
            itemPath = f"{path}[{index}]"
            if isinstance(item, dict):
                yield index, itemPath, item
            else:
                self.error(itemPath, f"expected a table, got {_describe(item)}")

    def array(self, path: str, value: Any, of: str) -> list[Any]:
        """A TOML array, any item type; C{of} names the items for the message."""
        if not isinstance(value, list):
            _fail(f"an array of {of}", value)
        return value

    # -- scalars --

    def string(self, path: str, value: Any) -> str:
        """A non-empty string."""
        if not isinstance(value, str) or not value:
            _fail("a non-empty string", value)
        return value

    def boolean(self, path: str, value: Any) -> bool:
        """C{true} or C{false}."""
        if not isinstance(value, bool):
            _fail("true or false", value)
        return value

    def positiveInt(self, path: str, value: Any) -> int:
        """An integer of at least 1."""
        if not _isInt(value) or value < 1:
            _fail("a positive integer", value)
        return cast(int, value)

    def intAtLeast(self, minimum: int) -> Callable[[str, Any], int]:
        """An integer of at least C{minimum}."""

        def convert(path: str, value: Any) -> int:
            if not _isInt(value) or value < minimum:
                _fail(f"an integer >= {minimum}", value)
            return cast(int, value)

        return convert

    def seconds(self, path: str, value: Any) -> float:
        """A duration: a positive number of seconds (integers accepted)."""
        if not _isNumber(value) or value <= 0:
            _fail("a positive number of seconds", value)
        return float(value)

    def choice(self, options: tuple[str, ...]) -> Callable[[str, Any], str]:
        """One of C{options}."""

        def convert(path: str, value: Any) -> str:
            if value not in options or not isinstance(value, str):
                _fail(_oneOf(options), value)
            return value

        return convert

    # -- compound values --

    def strings(self, path: str, value: Any) -> tuple[str, ...]:
        """An array of non-empty strings."""
        result = []
        for index, item in enumerate(self.array(path, value, "strings")):
            if isinstance(item, str) and item:
                result.append(item)
            else:
                self.error(
                    f"{path}[{index}]",
                    f"expected a non-empty string, got {_describe(item)}",
                )
        return tuple(result)

    def stringPairs(self, path: str, value: Any) -> tuple[tuple[str, str], ...]:
        """A table of non-empty names to strings, in file order."""
        result = []
        for key, item in self.table(path, value).items():
            if not key:
                self.error(_join(path, key), "expected a non-empty name")
            elif not isinstance(item, str):
                self.error(
                    _join(path, key), f"expected a string, got {_describe(item)}"
                )
            else:
                result.append((key, item))
        return tuple(result)

    def networks(self, path: str, value: Any) -> tuple[Network, ...]:
        """An array of CIDR networks or single addresses."""
        result: list[Network] = []
        for index, item in enumerate(
            self.array(path, value, "CIDR networks or addresses")
        ):
            if isinstance(item, str):
                try:
                    result.append(ipaddress.ip_network(item, strict=False))
                    continue
                except ValueError:
                    pass
            self.error(
                f"{path}[{index}]",
                f"expected a CIDR network or an address, got {_describe(item)}",
            )
        return tuple(result)

    def headerName(self, path: str, value: Any) -> str:
        """An HTTP header name (a token)."""
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            _fail("a header name", value)
        return value

    def headerDirectives(self, path: str, value: Any) -> HeaderDirectives:
        """A C{set}/C{unset} header table."""
        table = self.table(path, value)
        self.keys(table, path, _HEADER_DIRECTIVES)
        setPath = _join(path, "set")
        toSet: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        if "set" in table:
            try:
                pairs = self.table(setPath, table["set"])
            except _InvalidValueError as e:
                self.error(setPath, str(e))
                pairs = {}
            for name, headerValue in pairs.items():
                namePath = _join(setPath, name)
                if not _TOKEN.fullmatch(name):
                    self.error(namePath, "expected a header name (an HTTP token)")
                elif name.lower() in seen:
                    self.error(
                        namePath, f"same header as {json.dumps(seen[name.lower()])}"
                    )
                elif not isinstance(headerValue, str):
                    self.error(
                        namePath, f"expected a string, got {_describe(headerValue)}"
                    )
                elif any(c in headerValue for c in "\r\n\0"):
                    self.error(namePath, "expected a header value without line breaks")
                else:
                    seen[name.lower()] = name
                    toSet.append((name, headerValue))
        unset: list[str] = []
        if "unset" in table:
            unsetPath = _join(path, "unset")
            try:
                names = self.array(unsetPath, table["unset"], "header names")
            except _InvalidValueError as e:
                self.error(unsetPath, str(e))
                names = []
            for index, name in enumerate(names):
                itemPath = f"{unsetPath}[{index}]"
                try:
                    name = self.headerName(itemPath, name)
                except _InvalidValueError as e:
                    self.error(itemPath, str(e))
                    continue
                if name.lower() in seen:
                    self.error(itemPath, f"{json.dumps(name)} is also in set")
                else:
                    unset.append(name)
        return HeaderDirectives(set=tuple(toSet), unset=tuple(unset))

    def filePath(self, path: str, value: str) -> str:
        """Resolve a path from the file against the file's folder."""
        return os.path.normpath(os.path.join(self.folder, value))

    def accessLog(self, path: str, value: Any) -> str | None:
        """C{"-"} (stdout), a file path, or C{false} (no access log)."""
        if value is False:
            return None
        if not isinstance(value, str) or not value:
            _fail('"-", a file path or false', value)
        return value if value == "-" else self.filePath(path, value)

    def serverName(self, path: str, value: Any) -> str:
        """A host name to put in Via and X-Forwarded-Server."""
        if not isinstance(value, str) or not re.fullmatch(r"[\x21-\x7e]+", value):
            _fail("a host name", value)
        return value

    def serverTokens(self, path: str, value: Any) -> ServerTokens:
        """How much the Server header says."""
        return cast(ServerTokens, self.choice(("prod", "full", "none"))(path, value))

    def via(self, path: str, value: Any) -> ViaMode:
        """What to do with the Via header."""
        return cast(ViaMode, self.choice(("off", "on", "full", "block"))(path, value))

    def logLevel(self, path: str, value: Any) -> LogLevel:
        """How much the error log says about upstream exchanges."""
        return cast(LogLevel, self.choice(("info", "debug"))(path, value))

    # -- sections --

    def document(self, document: dict[str, Any], source: str | None) -> Config:
        """The whole file."""
        self.keys(document, "", _TOP)
        balancerNames: frozenset[str] = frozenset()
        if isinstance(document.get("balancer"), dict):
            balancerNames = frozenset(document["balancer"])
        noListeners: tuple[Listener, ...] = ()
        noRoutes: tuple[Route, ...] = ()
        noBalancers: tuple[tuple[str, Balancer], ...] = ()
        proxy = self.field(document, "", "proxy", self.proxy, ProxySettings())
        listen = self.field(document, "", "listen", self.listeners, noListeners)
        routes = self.field(
            document,
            "",
            "route",
            lambda path, value: self.routes(path, value, balancerNames),
            noRoutes,
        )
        balancers = self.field(document, "", "balancer", self.balancers, noBalancers)
        return Config(
            proxy=proxy,
            listen=listen,
            routes=routes,
            balancers=balancers,
            source=source,
        )

    def proxy(self, path: str, value: Any) -> ProxySettings:
        """The C{[proxy]} table."""
        table = self.table(path, value)
        self.keys(table, path, _PROXY)
        d = ProxySettings()

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        return ProxySettings(
            server_name=get("server_name", self.serverName, d.server_name),
            server_tokens=get("server_tokens", self.serverTokens, d.server_tokens),
            preserve_host=get("preserve_host", self.boolean, d.preserve_host),
            forwarded_headers=get(
                "forwarded_headers", self.boolean, d.forwarded_headers
            ),
            trusted_proxies=get("trusted_proxies", self.networks, d.trusted_proxies),
            via=get("via", self.via, d.via),
            timeout=get("timeout", self.seconds, d.timeout),
            connect_timeout=get("connect_timeout", self.seconds, d.connect_timeout),
            send_timeout=get("send_timeout", self.seconds, d.send_timeout),
            safe_reuse=get("safe_reuse", self.secondsOrOff, d.safe_reuse),
            continue_timeout=get(
                "continue_timeout", self.secondsOrOff, d.continue_timeout
            ),
            header_timeout=get("header_timeout", self.seconds, d.header_timeout),
            idle_timeout=get("idle_timeout", self.seconds, d.idle_timeout),
            max_header_bytes=get(
                "max_header_bytes", self.intAtLeast(1024), d.max_header_bytes
            ),
            max_headers=get("max_headers", self.intAtLeast(1), d.max_headers),
            merge_slashes=get("merge_slashes", self.boolean, d.merge_slashes),
            max_body_bytes=get("max_body_bytes", self.intAtLeast(0), d.max_body_bytes),
            access_log=get("access_log", self.accessLog, d.access_log),
            access_log_format=get(
                "access_log_format", self.string, d.access_log_format
            ),
            compress=get("compress", self.strings, d.compress),
            compress_level=get("compress_level", self.compressLevel, d.compress_level),
            response_headers=get(
                "response_headers", self.headerDirectives, d.response_headers
            ),
            keepalive=get("keepalive", self.boolean, d.keepalive),
            pool_size=get("pool_size", self.positiveInt, d.pool_size),
            pool_ttl=get("pool_ttl", self.seconds, d.pool_ttl),
            shutdown_grace=get("shutdown_grace", self.seconds, d.shutdown_grace),
            log_level=get("log_level", self.logLevel, d.log_level),
            websocket=get("websocket", self.websocketSettings, d.websocket),
        )

    def websocketSettings(self, path: str, value: Any) -> WebSocketSettings:
        """The C{[proxy.websocket]} table."""
        table = self.table(path, value)
        self.keys(table, path, _WEBSOCKET)
        d = WebSocketSettings()

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        return WebSocketSettings(
            ping_interval=get("ping_interval", self.secondsOrOff, d.ping_interval),
            max_message_bytes=get(
                "max_message_bytes", self.positiveInt, d.max_message_bytes
            ),
            idle_timeout=get("idle_timeout", self.secondsOrOff, d.idle_timeout),
        )

    def compressLevel(self, path: str, value: Any) -> int:
        """A gzip level, 1 to 9."""
        if not _isInt(value) or not 1 <= value <= 9:
            _fail("a gzip level from 1 to 9", value)
        return int(value)

    def secondsOrOff(self, path: str, value: Any) -> float:
        """A duration in seconds, or 0 for off."""
        if not _isNumber(value) or value < 0:
            _fail("a number of seconds (0: off)", value)
        return float(value)

    def listeners(self, path: str, value: Any) -> tuple[Listener, ...]:
        """The C{[[listen]]} array."""
        result = []
        seen: dict[str, str] = {}
        for index, itemPath, table in self.tables(path, value, "listen"):
            self.keys(table, itemPath, _LISTEN, _LISTEN_LATER)
            endpoint = self.field(
                table,
                itemPath,
                "endpoint",
                self.endpoint,
                None,
                required='a Twisted endpoint string like "tcp:8080"',
            )
            tls = self.field(table, itemPath, "tls", self.listenerTLS, None)
            redirect = self.field(
                table, itemPath, "redirect_https", self.redirectURL, None
            )
            if endpoint is None:
                continue
            if endpoint in seen:
                self.error(f"{itemPath}.endpoint", f"same endpoint as {seen[endpoint]}")
                continue
            seen[endpoint] = itemPath
            result.append(
                Listener(
                    endpoint=endpoint, tls=tls, redirect_https=redirect, index=index
                )
            )
        return tuple(result)

    def listenerTLS(self, path: str, value: Any) -> ListenerTLS:
        """C{[listen.tls]}: certificate, key and the handshake's settings."""
        table = self.table(path, value)
        self.keys(table, path, _TLS)

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        d = ListenerTLS(certificate="", key="")
        certificate = self.field(
            table, path, "certificate", self.file, "", required="a PEM file path"
        )
        key = self.field(table, path, "key", self.file, "", required="a PEM file path")
        clientCA = get("client_ca", self.file, None)
        header = get("client_cert_header", self.headerName, None)
        if header is not None and clientCA is None and "client_ca" not in table:
            self.error(
                f"{path}.client_cert_header",
                "needs client_ca (only verified client certificates are passed on)",
            )
        return ListenerTLS(
            certificate=certificate,
            key=key,
            min_version=get("min_version", self.tlsVersion, d.min_version),
            alpn=get("alpn", self.alpn, d.alpn),
            hsts=get("hsts", self.intAtLeast(0), d.hsts),
            client_ca=clientCA,
            client_cert_header=header,
            ciphers=get("ciphers", self.string, d.ciphers),
            sni=get("sni", self.sniCertificates, ()),
            where=path,
        )

    def tlsVersion(self, path: str, value: Any) -> TLSVersion:
        """The oldest TLS version accepted."""
        return cast(TLSVersion, self.choice(_TLS_VERSIONS)(path, value))

    def file(self, path: str, value: Any) -> str:
        """A file path (relative to the config file's folder)."""
        return self.filePath(path, self.string(path, value))

    def alpn(self, path: str, value: Any) -> tuple[str, ...]:
        """ALPN protocol names, most preferred first."""
        names = self.strings(path, value)
        for name in names:
            if name not in _ALPN:
                _fail(_oneOf(_ALPN), name)
        if not names:
            raise _InvalidValueError(f"expected at least {_oneOf(_ALPN)}")
        if len(set(names)) != len(names):
            raise _InvalidValueError("expected each protocol once")
        return names

    def sniCertificates(self, path: str, value: Any) -> tuple[SNICertificate, ...]:
        """The C{[[listen.tls.sni]]} array."""
        result: list[SNICertificate] = []
        seen: dict[str, str] = {}
        for _, itemPath, table in self.tables(path, value, "listen.tls.sni"):
            self.keys(table, itemPath, _SNI)
            noHosts: tuple[str, ...] = ()
            hosts = self.field(
                table,
                itemPath,
                "hosts",
                self.sniHosts,
                noHosts,
                required='host names like ["api.example.test", "*.example.test"]',
            )
            certificate = self.field(
                table, itemPath, "certificate", self.file, "", required="a PEM file"
            )
            key = self.field(
                table, itemPath, "key", self.file, "", required="a PEM file path"
            )
            for host in hosts:
                if host in seen:
                    self.error(f"{itemPath}.hosts", f"{host!r} is also in {seen[host]}")
                seen[host] = itemPath
            if hosts and certificate and key:
                result.append(SNICertificate(hosts, certificate, key))
        return tuple(result)

    def sniHosts(self, path: str, value: Any) -> tuple[str, ...]:
        """Names a certificate answers for: exact or C{*.domain}."""
        names = self.strings(path, value)
        for name in names:
            if not _HOST_NAME.fullmatch(name):
                _fail('a host name like "api.example.test" or "*.example.test"', name)
        if not names:
            _fail("a non-empty array of host names", value)
        return tuple(n.lower() for n in names)

    def redirectURL(self, path: str, value: Any) -> str:
        """Where a C{redirect_https} listener sends clients: C{https://host[:port]}."""
        expected = 'an https:// URL like "https://proxy.example.test:8443"'
        parts = self.url(value, expected)
        if parts.scheme.lower() != "https" or parts.path not in ("", "/"):
            _fail(expected, value)
        return f"https://{parts.netloc}"

    def endpoint(self, path: str, value: Any) -> str:
        """A Twisted server endpoint string: C{type:arguments}."""
        if not isinstance(value, str) or not _ENDPOINT.fullmatch(value):
            _fail(
                'a Twisted endpoint string like "tcp:8080:interface=127.0.0.1"', value
            )
        return value

    def routes(
        self, path: str, value: Any, balancerNames: frozenset[str]
    ) -> tuple[Route, ...]:
        """The C{[[route]]} array."""
        result = []
        seen: dict[tuple[str | None, str], str] = {}
        for index, itemPath, table in self.tables(path, value, "route"):
            route = self.route(itemPath, table, index, balancerNames)
            if route is None:
                continue
            key = (route.host, route.path)
            if key in seen:
                self.error(itemPath, f"same host and path as {seen[key]}")
                continue
            seen[key] = itemPath
            result.append(route)
        return tuple(result)

    def route(
        self,
        path: str,
        table: dict[str, Any],
        index: int,
        balancerNames: frozenset[str],
    ) -> Route | None:
        """One C{[[route]]}; C{None} when it has no usable path."""
        self.keys(table, path, _ROUTE)
        routePath = self.field(
            table, path, "path", self.routePath, None, required='a path like "/app/"'
        )
        host = self.field(table, path, "host", self.routeHost, None)
        if ("to" in table) == ("handler" in table):
            self.error(path, 'expected exactly one of "to" or "handler"')
        to = self.field(
            table,
            path,
            "to",
            lambda keyPath, value: self.target(keyPath, value, balancerNames),
            None,
        )
        handler = self.field(table, path, "handler", self.handler, None)
        websocket = self.field(table, path, "websocket", self.boolean, True)
        if to is not None and to.scheme in ("ws", "wss") and not websocket:
            self.error(
                f"{path}.websocket",
                f"a {to.scheme}:// route always carries WebSockets, got false",
            )
        route = Route(
            path=routePath or "/",
            host=host,
            to=to,
            handler=handler,
            reverse=self.field(table, path, "reverse", self.reverseURLs, ()),
            cookie_domain=self.field(
                table, path, "cookie_domain", self.stringPairs, ()
            ),
            cookie_path=self.field(table, path, "cookie_path", self.stringPairs, ()),
            preserve_host=self.field(table, path, "preserve_host", self.boolean, None),
            timeout=self.field(table, path, "timeout", self.seconds, None),
            allow=self.field(table, path, "allow", self.networks, ()),
            deny=self.field(table, path, "deny", self.networks, ()),
            request_headers=self.field(
                table,
                path,
                "request_headers",
                self.headerDirectives,
                HeaderDirectives(),
            ),
            index=index,
            websocket=websocket,
            tls_ca=self.field(table, path, "tls_ca", self.file, None),
            tls_verify=self.field(table, path, "tls_verify", self.boolean, True),
            trace=self.field(table, path, "trace", self.boolean, False),
        )
        self.backendTLS(path, table, to.scheme if to is not None else None)
        return None if routePath is None else route

    def routePath(self, path: str, value: Any) -> str:
        """A URL path prefix: starts with C{/}, no spaces, query or fragment."""
        if (
            not isinstance(value, str)
            or not _ROUTE_PATH.fullmatch(value)
            or "?" in value
            or "#" in value
        ):
            _fail('a path starting with "/"', value)
        return value

    def routeHost(self, path: str, value: Any) -> str:
        """A virtual host: an exact name, C{*.domain} or an address."""
        if isinstance(value, str):
            if _HOST_NAME.fullmatch(value):
                return value.lower()
            if value.startswith("[") and value.endswith("]"):
                try:
                    return f"[{ipaddress.IPv6Address(value[1:-1]).compressed}]"
                except ValueError:
                    pass
        _fail('a host name or "*.domain"', value)

    def handler(self, path: str, value: Any) -> str:
        """A built-in handler name; none is available yet."""
        if value in _HANDLERS and isinstance(value, str):
            raise _InvalidValueError(
                f"handler {json.dumps(value)} is not supported yet"
            )
        _fail(_oneOf(_HANDLERS), value)

    def url(self, value: Any, expected: str) -> SplitResult:
        """Split an absolute URL with a host, no credentials, query or fragment."""
        if not isinstance(value, str) or not value:
            _fail(expected, value)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            _fail(expected, value)
        if not parts.hostname or parts.username is not None or parts.port == 0:
            _fail(expected, value)
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise _InvalidValueError(
                f"expected a URL without query or fragment, got {_describe(value)}"
            )
        return parts

    def target(self, path: str, value: Any, balancerNames: frozenset[str]) -> Target:
        """A C{to =} URL: a direct backend or C{balancer://NAME/}."""
        expected = "an http://, https://, ws://, wss:// or balancer:// URL"
        if isinstance(value, str) and value.lower().startswith("balancer://"):
            try:
                parts = urlsplit(value)
            except ValueError:
                _fail('a URL like "balancer://NAME/"', value)
            name = parts.netloc
            if not name or parts.query or parts.fragment or "?" in value:
                _fail('a URL like "balancer://NAME/"', value)
            if name not in balancerNames:
                raise _InvalidValueError(f"unknown balancer {json.dumps(name)}")
            return Target(
                url=value, scheme="balancer", host=name, port=0, path=parts.path or "/"
            )
        parts = self.url(value, expected)
        scheme = parts.scheme.lower()
        if scheme not in _TARGET_PORTS:
            _fail(expected, value)
        assert parts.hostname is not None
        return Target(
            url=value,
            scheme=scheme,
            host=parts.hostname,
            port=parts.port or _TARGET_PORTS[scheme],
            path=parts.path or "/",
        )

    def reverseURLs(self, path: str, value: Any) -> tuple[str, ...]:
        """C{ProxyPassReverse} URLs: http(s) URLs."""
        result = []
        for index, item in enumerate(self.array(path, value, "URLs")):
            itemPath = f"{path}[{index}]"
            try:
                parts = self.url(item, "an http:// or https:// URL")
                if parts.scheme.lower() not in ("http", "https"):
                    _fail("an http:// or https:// URL", item)
            except _InvalidValueError as e:
                self.error(itemPath, str(e))
            else:
                result.append(item)
        return tuple(result)

    def balancers(self, path: str, value: Any) -> tuple[tuple[str, Balancer], ...]:
        """The C{[balancer.NAME]} tables."""
        result = []
        for name, item in self.table(path, value).items():
            itemPath = _join(path, name)
            if not _BALANCER_NAME.fullmatch(name):
                self.error(
                    itemPath,
                    'expected a balancer name of letters, digits, "-", "_" and "."',
                )
                continue
            try:
                balancer = self.balancer(itemPath, name, item)
            except _InvalidValueError as e:
                self.error(itemPath, str(e))
                continue
            result.append((name, balancer))
        return tuple(result)

    def balancer(self, path: str, name: str, value: Any) -> Balancer:
        """One C{[balancer.NAME]}."""
        table = self.table(path, value)
        self.keys(table, path, _BALANCER)
        d = Balancer(name=name)

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        balancer = Balancer(
            name=name,
            method=get("method", self.method, d.method),
            hash_key=get("hash_key", self.hashKey, d.hash_key),
            max_attempts=get("max_attempts", self.intAtLeast(0), d.max_attempts),
            fail_on_status=get("fail_on_status", self.statuses, d.fail_on_status),
            retry=get("retry", self.seconds, d.retry),
            sticky=get("sticky", self.sticky, d.sticky),
            health=get("health", self.health, d.health),
            members=get(
                "member",
                lambda keyPath, v: self.members(keyPath, v, f"{path}.member"),
                d.members,
            ),
        )
        if table.get("member", []) == []:
            self.error(path, f"expected at least one [[{path}.member]]")
        if balancer.sticky is not None and balancer.sticky.insert:
            self.stickyRoutes(path, table.get("member"))
        return balancer

    def method(self, path: str, value: Any) -> BalancerMethod:
        """A balancing method."""
        return cast(BalancerMethod, self.choice(_METHODS)(path, value))

    def hashKey(self, path: str, value: Any) -> str:
        """What C{method = "hash"} hashes: ip, uri, header:NAME or cookie:NAME."""
        if value in ("ip", "uri") and isinstance(value, str):
            return value
        if isinstance(value, str):
            kind, sep, name = value.partition(":")
            if sep and kind in ("header", "cookie"):
                if not _TOKEN.fullmatch(name):
                    _fail(
                        f'"{kind}:NAME" with NAME a {kind} name (an HTTP token)', value
                    )
                return value
        _fail(_oneOf(_HASH_KEYS), value)

    def statuses(self, path: str, value: Any) -> tuple[int, ...]:
        """An array of HTTP status codes (100-599), each once."""
        result: list[int] = []
        for index, item in enumerate(self.array(path, value, "status codes")):
            itemPath = f"{path}[{index}]"
            if not _isInt(item) or not 100 <= item <= 599:
                self.error(
                    itemPath,
                    f"expected a status code from 100 to 599, got {_describe(item)}",
                )
            elif item in result:
                self.error(itemPath, f"duplicate status {item}")
            else:
                result.append(item)
        return tuple(result)

    def stickyRoutes(self, path: str, members: Any) -> None:
        """Report every member without a route, which an inserted cookie needs."""
        if not isinstance(members, list):
            return
        for index, item in enumerate(members):
            if isinstance(item, dict) and "route" not in item:
                self.error(
                    f"{path}.member[{index}].route",
                    "missing, expected a route id for the sticky cookie "
                    f"([{path}.sticky] has insert = true)",
                )

    def sticky(self, path: str, value: Any) -> Sticky:
        """C{[balancer.NAME.sticky]}: Apache's stickysession."""
        table = self.table(path, value)
        self.keys(table, path, _STICKY)
        d = Sticky()
        return Sticky(
            name=self.field(table, path, "name", self.cookieName, d.name),
            insert=self.field(table, path, "insert", self.boolean, d.insert),
            failover=self.field(table, path, "failover", self.boolean, d.failover),
        )

    def cookieName(self, path: str, value: Any) -> str:
        """A cookie or URL parameter name (an HTTP token)."""
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            _fail("a cookie name (an HTTP token)", value)
        return value

    def health(self, path: str, value: Any) -> HealthCheck:
        """C{[balancer.NAME.health]}: active health checks."""
        table = self.table(path, value)
        self.keys(table, path, _HEALTH)
        d = HealthCheck()

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        # None: absent or already reported, so no comparison is made with it.
        interval = get("interval", self.seconds, None)
        timeout = get("timeout", self.seconds, None)
        check = HealthCheck(
            method=get("method", self.healthMethod, d.method),
            uri=get("uri", self.healthURI, d.uri),
            interval=d.interval if interval is None else interval,
            fast_interval=get("fast_interval", self.seconds, d.fast_interval),
            timeout=d.timeout if timeout is None else timeout,
            passes=get("passes", self.positiveInt, d.passes),
            fails=get("fails", self.positiveInt, d.fails),
            expect_status=get("expect_status", self.expectStatus, d.expect_status),
            expect_body=get("expect_body", self.expectBody, d.expect_body),
        )
        intervalKnown = interval is not None or "interval" not in table
        timeoutKnown = timeout is not None or "timeout" not in table
        fast = check.fast_interval
        written = "" if "timeout" in table else " (the default)"
        if intervalKnown and timeoutKnown and check.timeout >= check.interval:
            self.error(
                _join(path, "timeout"),
                "timeout must be shorter than interval, got timeout "
                f"{check.timeout:g}{written} and interval {check.interval:g}",
            )
        elif timeoutKnown and fast is not None and check.timeout >= fast:
            # A check must be over before the next one is due, fast or not.
            self.error(
                _join(path, "timeout"),
                "timeout must be shorter than fast_interval, got timeout "
                f"{check.timeout:g}{written} and fast_interval {fast:g}",
            )
        if intervalKnown and fast is not None and fast > check.interval:
            written = "" if "interval" in table else " (the default)"
            self.error(
                _join(path, "fast_interval"),
                "fast_interval must not exceed interval, got fast_interval "
                f"{fast:g} and interval {check.interval:g}{written}",
            )
        return check

    def healthMethod(self, path: str, value: Any) -> HealthMethod:
        """How a member is checked: TCP, OPTIONS, HEAD or GET (any case)."""
        if isinstance(value, str) and value.upper() in _HEALTH_METHODS:
            return cast(HealthMethod, value.upper())
        _fail(_oneOf(_HEALTH_METHODS), value)

    def healthURI(self, path: str, value: Any) -> str:
        """The request-target of an HTTP check: a path, optionally a query."""
        if (
            not isinstance(value, str)
            or not _ROUTE_PATH.fullmatch(value)
            or "#" in value
        ):
            _fail('a path starting with "/"', value)
        return value

    def expectStatus(self, path: str, value: Any) -> tuple[str, ...]:
        """Status classes (C{"2xx"}) or codes (C{"204"}) a passing check answers."""
        result: list[str] = []
        expected = 'a status class like "2xx" or a code like "204"'
        for index, item in enumerate(self.array(path, value, "statuses")):
            itemPath = f"{path}[{index}]"
            if isinstance(item, str) and _STATUS_CLASS.fullmatch(item.lower()):
                result.append(item.lower())
            elif _isInt(item) and 100 <= item <= 599:
                result.append(str(item))
            elif isinstance(item, str) and _STATUS_CODE.fullmatch(item):
                result.append(item)
            else:
                self.error(itemPath, f"expected {expected}, got {_describe(item)}")
        if not value:
            raise _InvalidValueError(
                "expected at least one status class or code, got an empty array"
            )
        return tuple(result)

    def expectBody(self, path: str, value: Any) -> str:
        """A regular expression the body of a passing check must contain."""
        pattern = self.string(path, value)
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as e:
            raise _InvalidValueError(
                f"expected a regular expression, got {_describe(pattern)}: {e}"
            ) from None
        return pattern

    def members(self, path: str, value: Any, header: str) -> tuple[Member, ...]:
        """The C{[[balancer.NAME.member]]} array."""
        result = []
        routes: dict[str, str] = {}
        names: dict[str, str] = {}
        for index, itemPath, table in self.tables(path, value, header):
            member = self.member(itemPath, table)
            if member is None:
                continue
            short = f"member[{index}]"
            if member.route is not None:
                if member.route in routes:
                    self.error(
                        f"{itemPath}.route",
                        f"duplicate route {json.dumps(member.route)} "
                        f"(also {routes[member.route]})",
                    )
                    continue
                routes[member.route] = short
            if member.name in names:
                self.error(
                    f"{itemPath}.url",
                    f"duplicate member {json.dumps(member.name)} "
                    f"(also {names[member.name]})",
                )
                continue
            names[member.name] = short
            result.append(member)
        return tuple(result)

    def member(self, path: str, table: dict[str, Any]) -> Member | None:
        """One member; C{None} when its URL is missing or wrong."""
        self.keys(table, path, _MEMBER)
        url = self.field(
            table,
            path,
            "url",
            self.memberURL,
            None,
            required='a URL like "http://127.0.0.1:9001"',
        )

        def get(key: str, convert: Callable[[str, Any], _T], default: _T) -> _T:
            return self.field(table, path, key, convert, default)

        d = Member(url="", scheme="http", host="", port=0)
        route = get("route", self.routeId, d.route)
        weight = get("weight", self.positiveInt, d.weight)
        standby = get("standby", self.boolean, d.standby)
        disabled = get("disabled", self.boolean, d.disabled)
        maxConnections = get("max_connections", self.intAtLeast(0), d.max_connections)
        drain = get("drain", self.boolean, d.drain)
        tier = get("tier", self.intAtLeast(0), d.tier)
        ignoreErrors = get("ignore_errors", self.boolean, d.ignore_errors)
        tlsCA = get("tls_ca", self.file, d.tls_ca)
        tlsVerify = get("tls_verify", self.boolean, d.tls_verify)
        if url is None:
            return None
        self.backendTLS(path, table, url[1])
        raw, scheme, host, port = url
        return Member(
            url=raw,
            scheme=scheme,
            host=host,
            port=port,
            route=route,
            weight=weight,
            standby=standby,
            disabled=disabled,
            max_connections=maxConnections,
            drain=drain,
            tier=tier,
            ignore_errors=ignoreErrors,
            tls_ca=tlsCA,
            tls_verify=tlsVerify,
        )

    def backendTLS(
        self, path: str, table: Mapping[str, Any], scheme: str | None
    ) -> None:
        """C{tls_ca}/C{tls_verify} only where the backend speaks TLS."""
        if scheme is None or scheme in ("https", "wss"):
            return
        for key in ("tls_ca", "tls_verify"):
            if key in table:
                where = (
                    "set it on the balancer's https:// members"
                    if scheme == "balancer"
                    else "only for https:// and wss:// backends"
                )
                self.error(_join(path, key), f"{where}, not {scheme}://")

    def memberURL(self, path: str, value: Any) -> tuple[str, str, str, int]:
        """An http(s) or ws(s) member URL: (url, scheme, host, port)."""
        expected = "an http://, https://, ws:// or wss:// URL"
        if isinstance(value, str):
            scheme = value.partition("://")[0].lower()
            if scheme in _MEMBER_SCHEMES_LATER:
                raise _InvalidValueError(f"{scheme}:// members are not supported yet")
        parts = self.url(value, expected)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            _fail(expected, value)
        if parts.path not in ("", "/"):
            raise _InvalidValueError("a path on a member URL is not supported yet")
        assert parts.hostname is not None
        return (value, scheme, parts.hostname, parts.port or _TARGET_PORTS[scheme])

    def routeId(self, path: str, value: Any) -> str:
        """A member's route id, as carried in a sticky cookie."""
        if not isinstance(value, str) or not _ROUTE_ID.fullmatch(value):
            _fail('a route id of letters, digits, "-" and "_"', value)
        return value
