"""
C{twisted-proxy import}: an Apache file (and what it includes) read from
disk, converted, written as TOML and checked as the proxy would load it.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from twisted_proxy.apache.convert import convert
from twisted_proxy.apache.emit import toml
from twisted_proxy.apache.lines import Message
from twisted_proxy.apache.parse import ApacheSyntaxError, Files, parse
from twisted_proxy.config.loader import ConfigError, loadString
from twisted_proxy.config.model import Config

__all__ = [
    "DISK",
    "KNOWN_MODULES",
    "Result",
    "configFromText",
    "importFile",
    "isApache",
]

KNOWN_MODULES = frozenset(
    {
        "proxy",
        "proxy_http",
        "proxy_balancer",
        "proxy_wstunnel",
        "proxy_connect",
        "proxy_ajp",
        "proxy_hcheck",
        "lbmethod_byrequests",
        "lbmethod_bytraffic",
        "lbmethod_bybusyness",
        "ssl",
        "headers",
        "deflate",
        "filter",
        "log_config",
        "status",
        "info",
        "authz_core",
        "authz_host",
        "access_compat",
        "slotmem_shm",
        "socache_shmcb",
    }
)
"""The modules whose directives are understood: <IfModule> holds for these."""


def knownModule(name: str) -> bool:
    """Whether C{<IfModule name>} holds: mod_proxy.c, proxy_module and proxy alike."""
    bare = name.lower()
    if bare.startswith("mod_"):
        bare = bare[4:]
    for suffix in (".c", "_module"):
        if bare.endswith(suffix):
            bare = bare[: -len(suffix)]
    return bare in KNOWN_MODULES


DISK = Files(
    read=lambda path: Path(path).read_text(encoding="utf-8", errors="replace"),
    glob=lambda pattern: glob.glob(pattern),
)
"""Files as they are on this machine."""


@dataclass
class Result:
    """The TOML (None when the file could not be imported) and what was said."""

    text: str | None
    notices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def importFile(
    path: str,
    listen: str | None = None,
    serverRoot: str | None = None,
    files: Files = DISK,
    variables: Mapping[str, str] | None = None,
) -> Result:
    """
    Import the Apache file at C{path}: its TOML, notices and errors.
    C{${NAME}} is read from C{variables} (None: this process's environment,
    as httpd reads its own).
    """
    if variables is None:
        variables = os.environ
    try:
        text = files.read(path)
        tree = parse(text, path, files, knownModule, serverRoot, variables)
    except ApacheSyntaxError as e:
        return Result(None, errors=[str(e)])
    except OSError as e:
        return Result(None, errors=[f"{path}: {e.strerror or e}"])
    imported = convert(tree, listen)
    notices = [str(m) for m in imported.notices]
    if imported.errors:
        return Result(None, notices, [str(m) for m in _sorted(imported.errors)])
    document = toml(imported, path)
    try:
        loadString(document, f"{path} (imported)")
    except ConfigError as e:
        return Result(None, notices, list(e.errors))
    return Result(document, notices)


# An Apache line: a directive name, blanks, then anything but TOML's "=".
_DIRECTIVE = re.compile(r"(?:<|[A-Za-z][A-Za-z0-9_]*[ \t]+(?!=))")


def isApache(text: str, source: str) -> bool:
    """
    Whether C{text} (the file C{source}) is an Apache configuration: by its
    extension (.conf), else by its first line that is not blank or a
    comment (a directive or a section, where TOML has keys and tables).
    """
    if source.lower().endswith(".conf"):
        return True
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return _DIRECTIVE.match(line) is not None and not line.startswith("[")
    return False


def configFromText(
    text: str, source: str, files: Files = DISK
) -> tuple[Config, list[str]]:
    """
    The configuration in C{text} (the file C{source}): TOML as it is, an
    Apache file through the importer. Returns it and the importer's
    notices.

    :raise ConfigError: the file's errors, each naming its file and line.
    """
    if not isApache(text, source):
        return loadString(text, source), []
    try:
        tree = parse(text, source, files, knownModule, variables=os.environ)
    except ApacheSyntaxError as e:
        raise ConfigError([str(e)]) from None
    imported = convert(tree)
    if imported.errors:
        raise ConfigError([str(m) for m in _sorted(imported.errors)])
    return loadString(toml(imported, source), source), [
        str(m) for m in imported.notices
    ]


def _sorted(messages: list[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (m.file, m.line))
