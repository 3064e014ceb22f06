"""
Property-based fuzzing of the Apache importer: the project's Apache files
mutated, and documents built from the directives it reads with hostile
arguments. Whatever it is given, an Apache file read as the configuration
gives a L{Config} or a L{ConfigError} whose every line names the file (and
nothing else escapes: no crash, no hang).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import mutated
from twisted_proxy.apache.importer import configFromText
from twisted_proxy.apache.parse import Files
from twisted_proxy.config import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "apache_corpus"
SEEDS = [
    (CORPUS / "tomcat" / "tomcat-front.conf").read_bytes(),
    (CORPUS / "includes" / "httpd.conf").read_bytes(),
    (CORPUS / "debian" / "sites-enabled" / "default-ssl.conf").read_bytes(),
    (Path(__file__).resolve().parents[2] / "etc" / "apache-cluster.conf").read_bytes(),
]
TOKENS = [
    b"<VirtualHost *:80>",
    b"</VirtualHost>",
    b"<Proxy balancer://b>",
    b"</Proxy>",
    b"<Location />",
    b"</Location>",
    b"<IfModule !x>",
    b"</IfModule>",
    b"ProxyPass / balancer://b/",
    b"ProxyPassMatch ^/(.*)$ http://127.0.0.1:1/$9",
    b"BalancerMember ajp://127.0.0.1:8009 secret=",
    b"Header edit X (( $1",
    b"${UNDEFINED}",
    b"\\\n",
    b'"',
    b"=",
    b"\x00",
    b"\xff",
]
DIRECTIVES = [
    "Listen",
    "ServerName",
    "ServerAlias",
    "ProxyPass",
    "ProxyPassMatch",
    "ProxyPassReverse",
    "ProxyPassReverseCookiePath",
    "ProxyTimeout",
    "Timeout",
    "Header",
    "RequestHeader",
    "SSLEngine",
    "SSLProtocol",
    "SSLCipherSuite",
    "LogFormat",
    "CustomLog",
    "ProxyHCExpr",
    "RequestReadTimeout",
    "Require",
    "Define",
    "Include",
]
WORDS = st.one_of(
    st.sampled_from(
        [
            "/",
            "/a/",
            "!",
            "http://127.0.0.1:1/",
            "balancer://b/",
            "ajp://127.0.0.1:8009/",
            "timeout=x",
            "connectiontimeout=-1",
            "status=+Z",
            "hcexpr=e",
            "set",
            "add",
            "edit*",
            "always",
            "on",
            "all",
            "-all",
            "+TLSv1",
            "{%{REQUEST_STATUS} =~ /(/}",
            "*:80",
            "[::1]:0",
            "header=5-x",
            "%{X}e",
        ]
    ),
    st.text(max_size=12),
)
READ: list[str] = []


def _read(path: str) -> str:
    READ.append(path)
    return "Listen 1\n"


# Every file an Include names holds one Listen line.
FILES = Files(read=_read, glob=lambda pattern: [])


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Lines of the directives the importer reads, with arguments that may hurt."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        name = draw(st.sampled_from(DIRECTIVES))
        args = draw(st.lists(WORDS, max_size=4))
        line = " ".join([name, *args])
        if draw(st.booleans()):
            section = draw(st.sampled_from(["VirtualHost *:80", "Location /x"]))
            tag = section.split()[0]
            line = f"<{section}>\n{line}\n</{tag}>"
        lines.append(line)
    return "\n".join(lines) + "\n"


def loads(text: str) -> None:
    """The file loads, or each of its errors names it or a file it includes."""
    READ.clear()
    try:
        configFromText(text, "fuzz.conf", FILES)
    except ConfigError as e:
        errors = list(e.errors)
    else:
        return
    assert errors
    named = ("fuzz.conf", *READ)
    assert [e for e in errors if not e.startswith(named)] == []


@settings(max_examples=300, deadline=None)
@given(mutated(SEEDS, TOKENS))
def test_mutatedFilesLoadOrSayWhy(data: bytes) -> None:
    """A mutated Apache file gives a config or errors naming the file."""
    loads(data.decode("utf-8", errors="replace"))


@settings(max_examples=300, deadline=None)
@given(documents())
def test_hostileArgumentsLoadOrSayWhy(text: str) -> None:
    """Directives with hostile arguments give a config or errors naming the file."""
    loads(text)
