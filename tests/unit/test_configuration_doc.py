"""
docs/configuration.rst, the configuration reference, stays true to the loader.

The reference has one section per table, titled with its TOML header
(C{``[proxy]``}, C{``[[balancer.NAME.member]]``}); in it, each key is a
definition-list term C{``key``} whose definition starts with the fields
C{:Type:}, C{:Default:} and C{:Apache:}. A default written as a TOML literal
(C{:Default: ``60.0``}) must load to the same configuration as leaving the
key out.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from twisted_proxy.config import Config, ConfigError, loadString
from twisted_proxy.config.vocabulary import TABLES, acceptedKeys
from twisted_proxy.core.logformat import NAMED_FORMATS, compileFormat

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.rst"

_TITLE = re.compile(r"``\[\[?([A-Za-z0-9_.]+)\]\]?``")
_UNDERLINE = re.compile(r"([=\-~^\"'`#*+])\1*")
_TERM = re.compile(r"``([a-z0-9_]+)``")
_FIELD = re.compile(r"   :(\w+): (.*)")
_FIELDS = ("Type", "Default", "Apache")
_RESERVED = "Not supported yet"


@dataclass
class _Table:
    """What the reference says about one table."""

    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)


def parseReference(text: str) -> dict[str, _Table]:
    """Return each documented table, by TOML path, with its keys' fields."""
    lines = text.splitlines()
    tables: dict[str, _Table] = {}
    table: _Table | None = None
    fields: dict[str, str] | None = None
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if (
            line.strip()
            and _UNDERLINE.fullmatch(following)
            and len(following) >= len(line)
        ):
            title = _TITLE.fullmatch(line)
            table = None if title is None else tables.setdefault(title[1], _Table())
            fields = None
        elif table is None:
            continue
        elif (term := _TERM.fullmatch(line)) and following.startswith("   "):
            if term[1] in table.keys:
                table.duplicates.append(term[1])
            fields = table.keys[term[1]] = {}
        elif fields is not None and (item := _FIELD.fullmatch(line)):
            fields.setdefault(item[1], item[2])
        elif line.startswith(_RESERVED):
            paragraph = "\n".join(lines[index:]).split("\n\n", 1)[0]
            table.reserved.update(re.findall(r"``([a-z0-9_]+)``", paragraph))
    return tables


REFERENCE = parseReference(DOC.read_text(encoding="utf-8"))
ACCEPTED = acceptedKeys()

# A small valid file around each table, {kv} standing for one more key of it,
# and where the table's value lands in the loaded Config.
_MEMBER = '[[balancer.b.member]]\nurl = "https://127.0.0.1"\nroute = "r"\n'
_LISTENER = '[[listen]]\nendpoint = "tcp:8080"\n'
_ROUTE = '[[route]]\npath = "/"\nto = "https://127.0.0.1/"\n'
_SHELLS: dict[str, tuple[str, Any]] = {
    "proxy": ("[proxy]\n{kv}\n", lambda c: c.proxy),
    "proxy.websocket": ("[proxy.websocket]\n{kv}\n", lambda c: c.proxy.websocket),
    "proxy.response_headers": (
        "[proxy.response_headers]\n{kv}\n",
        lambda c: c.proxy.response_headers,
    ),
    "listen": (_LISTENER + "{kv}\n", lambda c: c.listen[0]),
    "listen.tls": (
        _LISTENER + '[listen.tls]\ncertificate = "c.pem"\nkey = "k.pem"\n{kv}\n',
        lambda c: c.listen[0].tls,
    ),
    "listen.tls.sni": (
        _LISTENER
        + '[listen.tls]\ncertificate = "c.pem"\nkey = "k.pem"\n'
        + '[[listen.tls.sni]]\nhosts = ["a.example.test"]\n'
        + 'certificate = "a.pem"\nkey = "a.key"\n{kv}\n',
        lambda c: c.listen[0].tls.sni[0],
    ),
    "listen.connect": (
        _LISTENER + "[listen.connect]\n{kv}\n",
        lambda c: c.listen[0].connect,
    ),
    "route": (_ROUTE + "{kv}\n", lambda c: c.routes[0]),
    "route.request_headers": (
        _ROUTE + "[route.request_headers]\n{kv}\n",
        lambda c: c.routes[0].request_headers,
    ),
    "balancer.NAME": ("[balancer.b]\n{kv}\n" + _MEMBER, lambda c: c.balancer("b")),
    "balancer.NAME.member": (_MEMBER + "{kv}\n", lambda c: c.balancer("b").members[0]),
    "balancer.NAME.sticky": (
        "[balancer.b.sticky]\n{kv}\n" + _MEMBER,
        lambda c: c.balancer("b").sticky,
    ),
    "balancer.NAME.health": (
        "[balancer.b.health]\n{kv}\n" + _MEMBER,
        lambda c: c.balancer("b").health,
    ),
}
# Model fields named otherwise than their key.
_FIELD_NAMES = {("balancer.NAME", "member"): "members"}


def shell(table: str, kv: str = "") -> Config:
    """Load the small file around C{table} with C{kv} added to it."""
    text, _ = _SHELLS[table]
    return loadString(text.format(kv=kv), "site.toml")


def literalDefault(text: str) -> Any:
    """The TOML value a C{:Default:} field starts with, or None if it is words."""
    match = re.match(r"``(.+?)``", text)
    if match is None:
        return None
    try:
        return tomllib.loads(f"v = {match[1]}")["v"]
    except tomllib.TOMLDecodeError:
        return None


def documentedDefaults() -> list[tuple[str, str, str]]:
    """(table, key, literal) for every default the reference writes as TOML."""
    result = []
    for table, documented in REFERENCE.items():
        for key, fields in documented.keys.items():
            default = fields.get("Default", "")
            if literalDefault(default) is not None:
                literal = re.match(r"``(.+?)``", default)
                assert literal is not None
                result.append((table, key, literal[1]))
    return result


def test_referenceParsed() -> None:
    """The convention is followed: tables and keys are found in the reference."""
    assert len(REFERENCE) >= 10
    assert sum(len(table.keys) for table in REFERENCE.values()) >= 80


def test_everyTableDocumented() -> None:
    """Each table the loader reads has a section, and each section is a table."""
    assert sorted(REFERENCE) == sorted(ACCEPTED)


@pytest.mark.parametrize("table", sorted(ACCEPTED))
def test_keysDocumented(table: str) -> None:
    """A table's section documents every key the loader accepts, and no other."""
    documented = set(REFERENCE.get(table, _Table()).keys)
    missing = sorted(ACCEPTED[table] - documented)
    unknown = sorted(documented - ACCEPTED[table])
    assert (missing, unknown) == ([], []), (
        f"[{table}] in {DOC.name}: undocumented keys {missing}, "
        f"documented keys the loader refuses {unknown}"
    )


@pytest.mark.parametrize("table", sorted(ACCEPTED))
def test_keysDescribed(table: str) -> None:
    """Each key is documented once, with its type, default and Apache equivalent."""
    documented = REFERENCE.get(table, _Table())
    assert documented.duplicates == []
    incomplete = {
        key: [name for name in _FIELDS if not fields.get(name)]
        for key, fields in documented.keys.items()
        if not all(fields.get(name) for name in _FIELDS)
    }
    assert incomplete == {}


@pytest.mark.parametrize(
    ("table", "key", "literal"),
    documentedDefaults(),
    ids=[f"{t}.{k}" for t, k, _ in documentedDefaults()],
)
def test_defaultsTrue(table: str, key: str, literal: str) -> None:
    """Writing a key's documented default changes nothing in the configuration."""
    assert shell(table, f"{key} = {literal}") == shell(table)


@pytest.mark.parametrize("table", sorted(ACCEPTED))
def test_scalarDefaultsDocumented(table: str) -> None:
    """A key whose default is a number, string or boolean shows it as a literal."""
    _, where = _SHELLS[table]
    value = where(shell(table))
    defaults = {f.name: f for f in dataclasses.fields(value)}
    undocumented = []
    for key in sorted(ACCEPTED[table]):
        spec = defaults[_FIELD_NAMES.get((table, key), key)]
        if spec.default is dataclasses.MISSING:
            continue  # required, or a table of its own
        fields = REFERENCE.get(table, _Table()).keys.get(key, {})
        isScalar = isinstance(spec.default, (bool, int, float, str))
        if isScalar and literalDefault(fields.get("Default", "")) is None:
            undocumented.append(key)
    assert undocumented == []


def test_reservedKeysRefused() -> None:
    """The keys documented as not supported yet are refused as such."""
    reserved = {t: table.reserved for t, table in REFERENCE.items() if table.reserved}
    declared = {t: set(k.reserved) for t, k in TABLES.items() if k.reserved}
    assert reserved == declared
    where = {"balancer.NAME.member": "balancer.b.member[0]"}
    for table, keys in sorted(reserved.items()):
        for key in sorted(keys):
            with pytest.raises(ConfigError) as info:
                shell(table, f'{key} = "x"')
            path = where.get(table, table.replace("listen", "listen[0]"))
            assert info.value.errors == [f"site.toml: {path}.{key}: not supported yet"]


def test_namedLogFormats() -> None:
    """The named access-log formats are documented as they are defined."""
    text = DOC.read_text(encoding="utf-8")
    for name, fmt in NAMED_FORMATS.items():
        assert f'``"{name}"``\n   ``{fmt}``\n' in text


def test_logDirectivesCompile() -> None:
    """Every access-log directive the reference lists is one the proxy knows."""
    text = DOC.read_text(encoding="utf-8").split("Access-log formats\n", 1)[1]
    table = text.split("Signals\n", 1)[0]
    # The directives fill the first column of the table, up to its gap.
    firstColumn = "\n".join(re.split(r"\s{2,}", line)[0] for line in table.splitlines())
    directives = re.findall(r"``(%[^`]*)``", firstColumn)
    assert len(directives) >= 25
    for directive in directives:
        compileFormat(directive.replace("FORMAT", "%Y").replace("UNIT", "ms"))
