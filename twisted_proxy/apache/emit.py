"""
An imported configuration (L{twisted_proxy.apache.convert.Imported}) as
TOML text: each table under a comment naming the Apache line it came from,
the notices as comments at the top.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted_proxy.apache.lines import Imported

__all__ = ["toml"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml(imported: Imported, source: str) -> str:
    """The TOML text of C{imported}, read from the Apache file C{source}."""
    lines = [f"# Imported from {source} by twisted-proxy import."]
    for notice in imported.notices:
        lines.append(f"# notice: {notice}")
    document = imported.document()
    for key in ("proxy", "listen", "route", "balancer"):
        value = document.get(key)
        if value is None:
            continue
        if key == "balancer":
            for name, table in value.items():
                _table(lines, f"balancer.{_key(name)}", table, imported, array=False)
        elif isinstance(value, list):
            for table in value:
                _table(lines, key, table, imported, array=True)
        else:
            _table(lines, key, value, imported, array=False)
    return "\n".join(lines) + "\n"


def _table(
    lines: list[str], path: str, table: dict[str, Any], imported: Imported, array: bool
) -> None:
    lines.append("")
    origin = imported.sources.get(id(table))
    if origin is not None:
        lines.append(f"# {origin}")
    lines.append(f"[[{path}]]" if array else f"[{path}]")
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        tables = isinstance(value, list) and value and isinstance(value[0], dict)
        if tables or (isinstance(value, dict) and not _inline(key)):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        sub = f"{path}.{_key(key)}"
        if isinstance(value, list):
            for item in value:
                _table(lines, sub, item, imported, array=True)
        else:
            _table(lines, sub, value, imported, array=False)


def _inline(key: str) -> bool:
    """Tables written inline: a header directive's ``set`` (name to value)."""
    return key == "set"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(value: str) -> str:
    # A JSON string is a TOML basic string (ensure_ascii off: TOML has no
    # surrogate pairs).
    return json.dumps(value, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"no TOML for {value!r}")
