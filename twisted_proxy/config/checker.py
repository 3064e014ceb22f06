"""
The walk's state: the file being checked and every error found so far.

L{Checker} reports keys a table does not accept, converts each key with a
converter from L{twisted_proxy.config.convert}, and holds the converters
that need the file's folder or report one error per wrong item of an array.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from .convert import (
    TOKEN,
    InvalidValueError,
    array,
    describe,
    fail,
    headerName,
    keyPath,
    string,
    table,
)
from .headeredit import compileEdit
from .model import HeaderDirectives, Network
from .schemes import BACKEND_SCHEMES
from .vocabulary import HEADER_DIRECTIVES, TableKeys

__all__ = ["Checker", "Table"]

_T = TypeVar("_T")


class Table:
    """One TOML table as it is read: its keys converted one by one."""

    def __init__(self, check: Checker, path: str, values: dict[str, Any]) -> None:
        self.check = check
        self.path = path
        self.values = values

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(
        self,
        key: str,
        convert: Callable[[str, Any], _T],
        default: _T,
        required: str | None = None,
    ) -> _T:
        """C{convert} the value of C{key}, as L{Checker.field} does."""
        return self.check.field(self.values, self.path, key, convert, default, required)


class Checker:
    """Walks a parsed document, building model values and collecting errors."""

    def __init__(self, source: str, folder: str) -> None:
        self.source = source
        self.folder = folder
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        """Record one problem at C{path}."""
        self.errors.append(f"{self.source}: {path}: {message}")

    # -- structure --

    def keys(self, table: Mapping[str, Any], path: str, known: TableKeys) -> None:
        """Report every key of C{table} that is not one of C{known}'s."""
        accepted = known.keys
        for key in table:
            if key not in accepted:
                later = key in known.reserved
                self.error(
                    keyPath(path, key), "not supported yet" if later else "unknown key"
                )

    def table(self, path: str, value: Any, known: TableKeys) -> Table:
        """
        The table C{value}, with every key C{known} does not accept reported.

        @raise InvalidValueError: C{value} is not a table.
        """
        values = table(path, value)
        self.keys(values, path, known)
        return Table(self, path, values)

    def values(
        self,
        path: str,
        value: Any,
        known: TableKeys,
        converters: Mapping[str, Callable[[str, Any], object]],
    ) -> dict[str, Any]:
        """
        Convert every key of the table C{value} with its converter, in the
        order of C{converters}: the arguments for C{known.model}, whose default
        stands for a key that is absent or wrong.

        @raise InvalidValueError: C{value} is not a table.
        """
        assert set(converters) == known.keys, "a converter for every key"
        get = self.table(path, value, known).get
        default = known.model()
        return {
            key: get(key, convert, getattr(default, key))
            for key, convert in converters.items()
        }

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
        where = keyPath(path, key)
        if key not in table:
            if required is not None:
                self.error(where, f"missing, expected {required}")
            return default
        try:
            return convert(where, table[key])
        except InvalidValueError as e:
            self.error(where, str(e))
            return default

    def tables(
        self, path: str, value: Any, header: str
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """
        An array of tables (C{[[header]]}): yield each with its index and path.

        Entries that are not tables are reported and skipped, so the indexes
        still match the file.
        """
        if not isinstance(value, list):
            fail(f"an array of tables ([[{header}]])", value)
        for index, item in enumerate(value):
            itemPath = f"{path}[{index}]"
            if isinstance(item, dict):
                yield index, itemPath, item
            else:
                self.error(itemPath, f"expected a table, got {describe(item)}")

    # -- values reported item by item --

    def strings(self, path: str, value: Any) -> tuple[str, ...]:
        """An array of non-empty strings."""
        result = []
        for index, item in enumerate(array(path, value, "strings")):
            if isinstance(item, str) and item:
                result.append(item)
            else:
                self.error(
                    f"{path}[{index}]",
                    f"expected a non-empty string, got {describe(item)}",
                )
        return tuple(result)

    def stringPairs(self, path: str, value: Any) -> tuple[tuple[str, str], ...]:
        """A table of non-empty names to strings, in file order."""
        result = []
        for key, item in table(path, value).items():
            if not key:
                self.error(keyPath(path, key), "expected a non-empty name")
            elif not isinstance(item, str):
                self.error(
                    keyPath(path, key), f"expected a string, got {describe(item)}"
                )
            else:
                result.append((key, item))
        return tuple(result)

    def networks(self, path: str, value: Any) -> tuple[Network, ...]:
        """An array of CIDR networks or single addresses."""
        result: list[Network] = []
        for index, item in enumerate(array(path, value, "CIDR networks or addresses")):
            if isinstance(item, str):
                try:
                    result.append(ipaddress.ip_network(item, strict=False))
                    continue
                except ValueError:
                    pass
            self.error(
                f"{path}[{index}]",
                f"expected a CIDR network or an address, got {describe(item)}",
            )
        return tuple(result)

    def headerDirectives(self, path: str, value: Any) -> HeaderDirectives:
        """
        A header-directive table (C{[proxy.response_headers]},
        C{[route.request_headers]}): C{set} a table, the other keys arrays.
        """
        directives = self.table(path, value, HEADER_DIRECTIVES).values
        setPath = keyPath(path, "set")
        toSet: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        if "set" in directives:
            try:
                pairs = table(setPath, directives["set"])
            except InvalidValueError as e:
                self.error(setPath, str(e))
                pairs = {}
            for name, headerValue in pairs.items():
                namePath = keyPath(setPath, name)
                if not TOKEN.fullmatch(name):
                    self.error(namePath, "expected a header name (an HTTP token)")
                elif name.lower() in seen:
                    self.error(
                        namePath, f"same header as {json.dumps(seen[name.lower()])}"
                    )
                elif not isinstance(headerValue, str):
                    self.error(
                        namePath, f"expected a string, got {describe(headerValue)}"
                    )
                elif any(c in headerValue for c in "\r\n\0"):
                    self.error(namePath, "expected a header value without line breaks")
                else:
                    seen[name.lower()] = name
                    toSet.append((name, headerValue))
        unset: list[str] = []
        if "unset" in directives:
            unsetPath = keyPath(path, "unset")
            try:
                names = array(unsetPath, directives["unset"], "header names")
            except InvalidValueError as e:
                self.error(unsetPath, str(e))
                names = []
            for index, name in enumerate(names):
                itemPath = f"{unsetPath}[{index}]"
                try:
                    name = headerName(itemPath, name)
                except InvalidValueError as e:
                    self.error(itemPath, str(e))
                    continue
                if name.lower() in seen:
                    self.error(itemPath, f"{json.dumps(name)} is also in set")
                else:
                    unset.append(name)
        return HeaderDirectives(
            set=tuple(toSet),
            unset=tuple(unset),
            add=self._headerPairs(path, "add", directives),
            append=self._headerPairs(path, "append", directives),
            edit=self._headerEdits(path, "edit", directives),
            edit_all=self._headerEdits(path, "edit_all", directives),
        )

    def _headerPairs(
        self, path: str, key: str, directives: Mapping[str, Any]
    ) -> tuple[tuple[str, str], ...]:
        """C{add} or C{append}: an array of [name, value] pairs, in order."""
        result: list[tuple[str, str]] = []
        for itemPath, item in self._items(
            keyPath(path, key), directives.get(key, []), "[name, value]", "pairs"
        ):
            try:
                name = headerName(itemPath, item[0])
            except InvalidValueError as e:
                self.error(itemPath, str(e))
                continue
            if any(c in item[1] for c in "\r\n\0"):
                self.error(itemPath, "expected a header value without line breaks")
            else:
                result.append((name, item[1]))
        return tuple(result)

    def _headerEdits(
        self, path: str, key: str, directives: Mapping[str, Any]
    ) -> tuple[tuple[str, str, str], ...]:
        """C{edit} or C{edit_all}: an array of [name, regex, replacement]."""
        result: list[tuple[str, str, str]] = []
        for itemPath, item in self._items(
            keyPath(path, key),
            directives.get(key, []),
            "[name, regex, replacement]",
            "triples",
        ):
            try:
                name = headerName(itemPath, item[0])
                compileEdit(item[1], item[2])
            except InvalidValueError as e:
                self.error(itemPath, str(e))
                continue
            result.append((name, item[1], item[2]))
        return tuple(result)

    def _items(
        self, path: str, value: Any, shape: str, plural: str
    ) -> Iterator[tuple[str, list[str]]]:
        """
        The key path and value of each item of the array C{value} that is an
        array of strings of C{shape} (C{"[name, value]"}); the others, and a
        C{value} that is no array, reported.
        """
        size = shape.count(",") + 1
        try:
            items = array(path, value, f"{shape} {plural}")
        except InvalidValueError as e:
            self.error(path, str(e))
            return
        for index, item in enumerate(items):
            itemPath = f"{path}[{index}]"
            if (
                isinstance(item, list)
                and len(item) == size
                and all(isinstance(part, str) for part in item)
            ):
                yield itemPath, item
            else:
                got = (
                    json.dumps(item, ensure_ascii=False, default=str)
                    if isinstance(item, list)
                    else describe(item)
                )
                self.error(itemPath, f"expected {shape}, got {got}")

    # -- values relative to the file --

    def filePath(self, path: str, value: str) -> str:
        """Resolve a path from the file against the file's folder."""
        return os.path.normpath(os.path.join(self.folder, value))

    def file(self, path: str, value: Any) -> str:
        """A file path (relative to the config file's folder)."""
        return self.filePath(path, string(path, value))

    def tokenFile(self, path: str, value: Any) -> str:
        """
        A file holding a bearer token (its first line, at least 16
        characters): read now, so a missing or empty one stops start-up.
        """
        name = self.file(path, value)
        try:
            with open(name, "rb") as f:
                first = f.read(4097).split(b"\n", 1)[0].strip()
        except OSError as e:
            raise InvalidValueError(f"cannot read {name}: {e.strerror}") from None
        if len(first) < 16 or len(first) > 4096 or not first.isascii():
            raise InvalidValueError(
                f"{name}: its first line must be a token of 16 to 4096 ASCII characters"
            )
        return name

    def accessLog(self, path: str, value: Any) -> str | None:
        """C{"-"} (stdout), a file path, or C{false} (no access log)."""
        if value is False:
            return None
        if not isinstance(value, str) or not value:
            fail('"-", a file path or false', value)
        return value if value == "-" else self.filePath(path, value)

    # -- rules across keys --

    def backendTLS(
        self, path: str, table: Mapping[str, Any], scheme: str | None
    ) -> None:
        """
        C{tls_ca}/C{tls_verify} only where the backend speaks TLS (C{tcps}:
        a C{tcp://} member with C{tls = true}).
        """
        if scheme in (None, "tcps") or (
            scheme in BACKEND_SCHEMES and BACKEND_SCHEMES[scheme].tls
        ):
            return
        for key in ("tls_ca", "tls_verify"):
            if key in table:
                where = {
                    "balancer": "set it on the balancer's https:// members",
                    "tcp": "only with tls = true on a tcp:// member",
                }.get(scheme, "only for https:// and wss:// backends")
                self.error(keyPath(path, key), f"{where}, not {scheme}://")
