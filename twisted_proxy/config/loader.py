"""
Read a TOML file into the validated L{Config}.

Validation is pure: text in, a L{Config} or a L{ConfigError} out. It never
stops at the first problem: every error is collected, each naming the file, the
key path (C{balancer.web.member[2].weight}) and what was expected, so an
operator fixes the whole file in one go.

This module reads the file and walks the document, the C{[proxy]} table and
the C{[[listen]]} array; L{twisted_proxy.config.tls}, L{routes
<twisted_proxy.config.routes>} and L{balancers
<twisted_proxy.config.balancers>} walk the others. Which keys each table
accepts is read off the model (L{twisted_proxy.config.vocabulary}); the values
are converted by L{twisted_proxy.config.convert}.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from .balancers import ajpChecks, balancers
from .checker import Checker
from .convert import (
    InvalidValueError,
    boolean,
    compressLevel,
    intAtLeast,
    logLevel,
    positiveInt,
    seconds,
    secondsOrOff,
    serverName,
    serverTokens,
    string,
    target,
    via,
    workerCount,
)
from .listeners import listeners, streamChecks
from .model import (
    Balancer,
    Config,
    Listener,
    ProxySettings,
    Route,
    Target,
    WebSocketSettings,
)
from .routes import routes
from .vocabulary import TABLES

__all__ = ["ConfigError", "load", "loadString", "parseTarget", "readConfig"]


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
    return loadString(readConfig(path), path)


def readConfig(path: str) -> str:
    """
    The text of the configuration file at C{path}.

    @raise ConfigError: the file cannot be read or is not UTF-8.
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
    return text


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
    check = Checker(source, folder)
    config = _document(check, document, source if isFile else None)
    if check.errors:
        raise ConfigError(check.errors)
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


def parseTarget(url: str) -> Target:
    """
    Parse one backend URL (C{http://host:port/path}, ``ws(s)://``) as a route's
    C{to} would be; raise C{ValueError} saying what is wrong with it.
    """
    try:
        return target(url, frozenset())
    except InvalidValueError as e:
        raise ValueError(f"{url!r}: {e}") from None


def _document(check: Checker, document: dict[str, Any], source: str | None) -> Config:
    """The whole file."""
    get = check.table("", document, TABLES[""]).get
    balancerNames: frozenset[str] = frozenset()
    if isinstance(document.get("balancer"), dict):
        balancerNames = frozenset(document["balancer"])
    noListeners: tuple[Listener, ...] = ()
    noRoutes: tuple[Route, ...] = ()
    noBalancers: tuple[tuple[str, Balancer], ...] = ()
    proxy = get("proxy", lambda p, v: _proxy(check, p, v), ProxySettings())
    listen = get(
        "listen", lambda p, v: listeners(check, p, v, balancerNames), noListeners
    )
    routeList = get(
        "route",
        lambda p, v: routes(check, p, v, balancerNames),
        noRoutes,
    )
    balancerList = get("balancer", lambda p, v: balancers(check, p, v), noBalancers)
    balancerList = streamChecks(check, listen, routeList, balancerList, document)
    routeList, balancerList = ajpChecks(check, routeList, balancerList, document)
    return Config(
        proxy=proxy,
        listen=listen,
        routes=routeList,
        balancers=balancerList,
        source=source,
    )


def _proxy(check: Checker, path: str, value: Any) -> ProxySettings:
    """The C{[proxy]} table."""
    converters: dict[str, Callable[[str, Any], object]] = {
        "server_name": serverName,
        "server_tokens": serverTokens,
        "preserve_host": boolean,
        "forwarded_headers": boolean,
        "trusted_proxies": check.networks,
        "via": via,
        "timeout": seconds,
        "connect_timeout": seconds,
        "send_timeout": seconds,
        "safe_reuse": secondsOrOff,
        "continue_timeout": secondsOrOff,
        "header_timeout": seconds,
        "idle_timeout": seconds,
        "max_header_bytes": intAtLeast(1024),
        "max_headers": intAtLeast(1),
        "merge_slashes": boolean,
        "max_body_bytes": intAtLeast(0),
        "access_log": check.accessLog,
        "access_log_format": string,
        "compress": check.strings,
        "compress_level": compressLevel,
        "response_headers": check.headerDirectives,
        "keepalive": boolean,
        "pool_size": positiveInt,
        "pool_ttl": seconds,
        "shutdown_grace": seconds,
        "log_level": logLevel,
        "state_file": check.file,
        "workers": workerCount,
        "websocket": lambda p, v: _websocket(check, p, v),
    }
    return ProxySettings(**check.values(path, value, TABLES["proxy"], converters))


def _websocket(check: Checker, path: str, value: Any) -> WebSocketSettings:
    """The C{[proxy.websocket]} table."""
    converters: dict[str, Callable[[str, Any], object]] = {
        "ping_interval": secondsOrOff,
        "max_message_bytes": positiveInt,
        "idle_timeout": secondsOrOff,
    }
    settings = check.values(path, value, TABLES["proxy.websocket"], converters)
    return WebSocketSettings(**settings)
