"""
Property-based fuzzing of the config loader: arbitrary and mutated text, and
documents built from the loader's own vocabulary with wrong types and values.

Whatever it is given, C{loadString} returns a L{Config} or raises
L{ConfigError} naming the source (L{tests.fuzz.checks.checkConfig}).
"""

from __future__ import annotations

import datetime
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from tests.fuzz import checks, tomlwriter
from tests.fuzz.corpus import CONFIGS, TOKENS
from tests.fuzz.strategies import mutated
from twisted_proxy.config import ConfigError, loadString
from twisted_proxy.config.vocabulary import TABLES

_SOURCES = st.sampled_from(["<fuzz>", "/srv/proxy/fuzz.toml", "etc/x y.toml"])


# -- documents from the vocabulary --------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A table whose keys are the loader's; C{sub} says which hold tables."""

    keys: frozenset[str]
    sub: dict[str, _Shape] = field(default_factory=dict)


@dataclass(frozen=True)
class _Tables:
    """An array of tables (C{[[name]]})."""

    table: _Table


@dataclass(frozen=True)
class _Named:
    """A table of tables under names of the operator's (C{[balancer.NAME]})."""

    table: _Table


@dataclass(frozen=True)
class _Pairs:
    """A table of names (header, cookie domain) to strings."""


_Shape = _Table | _Tables | _Named | _Pairs

_HEADERS = _Table(frozenset({"set", "unset"}), {"set": _Pairs()})
_DOCUMENT = _Table(
    TABLES[""].keys,
    {
        "proxy": _Table(
            TABLES["proxy"].keys,
            {
                "websocket": _Table(TABLES["proxy.websocket"].keys),
                "response_headers": _HEADERS,
            },
        ),
        "listen": _Tables(
            _Table(
                TABLES["listen"].keys | TABLES["listen"].reserved,
                {
                    "tls": _Table(
                        TABLES["listen.tls"].keys,
                        {"sni": _Tables(_Table(TABLES["listen.tls.sni"].keys))},
                    )
                },
            )
        ),
        "route": _Tables(
            _Table(
                TABLES["route"].keys,
                {
                    "request_headers": _HEADERS,
                    "cookie_domain": _Pairs(),
                    "cookie_path": _Pairs(),
                },
            )
        ),
        "balancer": _Named(
            _Table(
                TABLES["balancer.NAME"].keys,
                {
                    "member": _Tables(_Table(TABLES["balancer.NAME.member"].keys)),
                    "sticky": _Table(TABLES["balancer.NAME.sticky"].keys),
                    "health": _Table(TABLES["balancer.NAME.health"].keys),
                },
            )
        ),
    },
)

# Values an operator might write for a key, right and wrong; keys not listed
# (the loader may learn new ones) get any value.
_SECONDS = [30, 2.5, 0, -1, 1e309, "10s"]
_URLS = [
    "http://127.0.0.1:9001",
    "https://[::1]:9443/",
    "ws://h/ws",
    "wss://h:0",
    "http://user@h/",
    "http://h:99999",
    "http://h/?q",
    "balancer://cluster/",
    "balancer://cluster/$1",
    "http://127.0.0.1:9001/static/$2",
    "balancer://nowhere/",
    "balancer://",
    "ajp://h:8009",
    "h2c://h",
    "http://[::1",
    "://",
]
_FILES = ["cert.pem", "/etc/ssl/key.pem", "../ca.pem", ""]
_SAMPLES: dict[str, list[Any]] = {
    "server_name": ["proxy.example.test", "a b", ""],
    "server_tokens": ["prod", "full", "none", "Prod"],
    "via": ["off", "on", "full", "block", True],
    "log_level": ["info", "debug", "trace2", "Debug"],
    "trusted_proxies": [
        ["198.51.100.0/24", "::1"],
        ["198.51.100.1/24"],
        ["300.1.1.1"],
        "::1",
    ],
    "allow": [["127.0.0.1", "::/0"], ["fe80::1%eth0"], []],
    "deny": [["0.0.0.0/0"], ["1.2.3.4/33"]],
    "timeout": _SECONDS,
    "connect_timeout": _SECONDS,
    "header_timeout": _SECONDS,
    "idle_timeout": _SECONDS,
    "pool_ttl": _SECONDS,
    "shutdown_grace": _SECONDS,
    "retry": _SECONDS,
    "interval": _SECONDS,
    "ping_interval": _SECONDS,
    "max_header_bytes": [1024, 1023, 65536, -5],
    "max_body_bytes": [0, 1, -1],
    "max_message_bytes": [1, 0, 2**63 - 1],
    "pool_size": [1, 0, 64],
    "access_log": ["-", "logs/access.log", False, True, ""],
    "access_log_format": ["combined", "common", ""],
    "compress": [["text/html"], [""], [1]],
    "endpoint": ["tcp:8080", "tcp:8080:interface=127.0.0.1", "ssl:443", "8080", ":"],
    "redirect_https": ["https://proxy.example.test:8443", "http://h", "https://h/p"],
    "certificate": _FILES,
    "key": _FILES,
    "client_ca": _FILES,
    "tls_ca": _FILES,
    "client_cert_header": ["X-Client-Cert", "bad header", ""],
    "min_version": ["1.2", "1.3", 1.2, "1.1"],
    "alpn": [["h2", "http/1.1"], ["h2", "h2"], [], ["spdy/3"]],
    "ciphers": ["ECDHE+AESGCM", ""],
    "hosts": [["api.example.test", "*.example.test"], ["*"], [], ["a..b"]],
    "hsts": [0, 31536000, -1],
    "path": ["/", "/app/", "app", "/a b", "/a?q", "/a#f", ""],
    "host": ["example.test", "*.example.test", "[::1]", "[zz]", "a_b", ""],
    "aliases": [["www.example.test", "*.example.org"], ["a b"], [], "x.test"],
    "match": ["^/(.*\\.gif)$", "\\.php$", "((", "caf\u00e9", "a{4294967296}", ""],
    "exclude": [True, False, "yes"],
    "to": _URLS,
    "url": _URLS,
    "handler": ["status", "metrics", "balancer-manager", "other"],
    "reverse": [["http://127.0.0.1:9001/"], ["ftp://h"], "http://h"],
    "unset": [["Server"], ["bad name"], "Server"],
    "method": [
        "byrequests",
        "roundrobin",
        "hash",
        "GET",
        "tcp",
        "OPTIONS",
        "fastest",
    ],
    "hash_key": ["ip", "uri", "header:X-User", "cookie:SID", "header:", "body"],
    "max_attempts": [0, 1, -1],
    "fail_on_status": [[502, 503], [99], [503, 503], "503"],
    "name": ["ROUTEID", "bad name", ""],
    "uri": ["/healthz", "/h?x=1", "/h#f", "healthz"],
    "passes": [1, 0],
    "fails": [3, -2],
    "expect_status": [["2xx", 301], ["6xx"], [], ["204"], [99]],
    "expect_body": ["^ok$", "(", "a{2,1}", ""],
    "route": ["a", "b", "a b", ""],
    "weight": [1, 0, 100],
    "max_connections": [0, 10, -1],
    "tier": [0, 1, -1],
}
_BALANCER_NAMES = ["cluster", "web", "b.2", "bad name", ""]
_HEADER_NAMES = ["X-Frame-Options", "Server", "server", "bad name", ""]


def _withOffset(moment: datetime.datetime, minutes: int | None) -> datetime.datetime:
    """TOML offsets are whole minutes (C{None}: a local date-time)."""
    if minutes is None:
        return moment
    return moment.replace(tzinfo=datetime.timezone(datetime.timedelta(minutes=minutes)))


_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=12),
    st.builds(
        _withOffset,
        st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2100, 1, 1)),
        st.none() | st.integers(-1439, 1439),
    ),
    st.dates(),
    st.times(),
)
_ANY = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


# Characters that tend to mean something inside URLs, names and patterns;
# U+FF03 and U+2100 normalise (NFKC) to "#" and "a/c".
_ODD = st.one_of(
    st.sampled_from(list("[]@:%/?#*.\\ \t\x00\uff03\u2100\u00e9")),
    st.text(max_size=3),
)


def _spliced(text: str, at: int, odd: str) -> str:
    return text[:at] + odd + text[at:]


def _value(key: str) -> st.SearchStrategy[Any]:
    samples = _SAMPLES.get(key)
    if samples is None:
        return _ANY
    choices = [st.sampled_from(samples), _ANY]
    texts = [s for s in samples if isinstance(s, str) and s]
    if texts:
        # A right value gone slightly wrong: an odd character spliced in.
        choices.append(
            st.builds(_spliced, st.sampled_from(texts), st.integers(0, 40), _ODD)
        )
    return st.one_of(choices)


def _shape(shape: _Shape) -> st.SearchStrategy[Any]:
    if isinstance(shape, _Table):
        return _table(shape)
    if isinstance(shape, _Tables):
        return st.lists(_table(shape.table), max_size=3)
    if isinstance(shape, _Named):
        return st.dictionaries(
            st.sampled_from(_BALANCER_NAMES) | st.text(max_size=6),
            _table(shape.table),
            max_size=2,
        )
    return st.dictionaries(
        st.sampled_from(_HEADER_NAMES) | st.text(max_size=6),
        st.text(max_size=12) | _ANY,
        max_size=3,
    )


@st.composite
def _table(draw: st.DrawFn, shape: _Table) -> dict[str, Any]:
    keys = draw(
        st.lists(
            st.sampled_from(sorted(shape.keys)) | st.text(min_size=1, max_size=8),
            unique=True,
            max_size=6,
        )
    )
    table = {}
    for key in keys:
        sub = shape.sub.get(key)
        if sub is None:
            table[key] = draw(_value(key))
        else:
            # Mostly the right shape, sometimes any value in its place.
            table[key] = draw(st.one_of(_shape(sub), _shape(sub), _ANY))
    return table


def _sameValues(value: Any) -> Any:
    """C{value} with NaN replaced by something equal to itself."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_sameValues(v) for v in value]
    if isinstance(value, dict):
        return {k: _sameValues(v) for k, v in value.items()}
    return value


_VALID = {
    "listen": [{"endpoint": "tcp:8080"}],
    "route": [{"path": "/", "to": "balancer://cluster/"}],
    "balancer": {
        "cluster": {
            "method": "roundrobin",
            "member": [{"url": "http://127.0.0.1:9001", "route": "a"}],
            "health": {"interval": 10, "timeout": 2},
        }
    },
}


@settings(max_examples=300, deadline=None)
@given(_table(_DOCUMENT), _SOURCES)
@example(_VALID, "<fuzz>")
def test_configStructuredFuzz(document: dict[str, Any], source: str) -> None:
    """A document of the loader's keys with any values loads or is a ConfigError."""
    text = tomlwriter.dumps(document)
    # The writer is right, so what the loader sees is this document.
    assert _sameValues(tomllib.loads(text)) == _sameValues(document)
    checks.checkConfig(text, source)


def test_validDocumentLoads() -> None:
    """The structured fuzzer's valid example really is valid."""
    config = loadString(tomlwriter.dumps(_VALID), "<fuzz>")
    assert [name for name, _ in config.balancers] == ["cluster"]


# -- text ---------------------------------------------------------------------


@pytest.mark.parametrize("text", CONFIGS)
def test_configSeeds(text: str) -> None:
    """Every seed config loads or is a ConfigError naming the source."""
    checks.checkConfig(text, "etc/seed.toml")


def _decoded(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        mutated([t.encode() for t in CONFIGS], TOKENS["config"]).map(_decoded),
        st.text(max_size=200),
    ),
    _SOURCES,
)
def test_configTextFuzz(text: str, source: str) -> None:
    """Any text loads or is a ConfigError naming the source."""
    checks.checkConfig(text, source)


# -- defects found, pinned until fixed ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [text for _, text in checks.CONFIG_REGRESSIONS],
    ids=[name for name, _ in checks.CONFIG_REGRESSIONS],
)
def test_configRegressions(text: str) -> None:
    """An input that once crashed the loader is now a ConfigError naming the file."""
    with pytest.raises(ConfigError) as caught:
        loadString(text, "<fuzz>")
    assert all(m.startswith("<fuzz>: ") for m in caught.value.errors)
