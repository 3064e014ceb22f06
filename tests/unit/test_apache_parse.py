"""
Apache httpd's configuration syntax read into a tree: lines, comments,
continuations, quoting, sections, <IfModule>, Include with globs, and the
file and line of everything, with files held in a dict rather than on disk.
"""

from __future__ import annotations

import fnmatch

import pytest

from twisted_proxy.apache.parse import (
    ApacheSyntaxError,
    Directive,
    Files,
    Section,
    parse,
    words,
)


def inMemory(tree: dict[str, str]) -> Files:
    """Files from a dict of path to text; a missing one is an OSError."""

    def read(path: str) -> str:
        if path not in tree:
            raise FileNotFoundError(2, "No such file or directory", path)
        return tree[path]

    return Files(read, lambda pattern: fnmatch.filter(list(tree), pattern))


def shape(directives: tuple[Directive, ...]) -> list[object]:
    """The tree as plain values: (name, args, line) and sections' children."""
    out: list[object] = []
    for d in directives:
        if isinstance(d, Section):
            out.append((d.name, d.args, d.line, shape(d.children)))
        else:
            out.append((d.name, d.args, d.line))
    return out


GUIDE_LIKE = """\
LoadModule proxy_module modules/mod_proxy.so
<VirtualHost *:80>
    ServerName myapp.com
    # a comment, then a blank line

    <Proxy balancer://mycluster>
        BalancerMember http://192.0.2.100:8080
        BalancerMember http://192.0.2.102:8080 status=+H
        ProxySet lbmethod=byrequests
    </Proxy>
    ProxyPass /balancer-manager !
    ProxyPass / balancer://mycluster/
    <Location "/balancer-manager">
        SetHandler balancer-manager
        Require local
    </location>
</VirtualHost>
"""


def test_aGuideBlock() -> None:
    """Sections nest, names keep their case, lines are the physical ones."""
    assert shape(parse(GUIDE_LIKE, "site.conf")) == [
        ("LoadModule", ("proxy_module", "modules/mod_proxy.so"), 1),
        (
            "VirtualHost",
            ("*:80",),
            2,
            [
                ("ServerName", ("myapp.com",), 3),
                (
                    "Proxy",
                    ("balancer://mycluster",),
                    6,
                    [
                        ("BalancerMember", ("http://192.0.2.100:8080",), 7),
                        ("BalancerMember", ("http://192.0.2.102:8080", "status=+H"), 8),
                        ("ProxySet", ("lbmethod=byrequests",), 9),
                    ],
                ),
                ("ProxyPass", ("/balancer-manager", "!"), 11),
                ("ProxyPass", ("/", "balancer://mycluster/"), 12),
                (
                    "Location",
                    ("/balancer-manager",),
                    13,
                    [
                        ("SetHandler", ("balancer-manager",), 14),
                        ("Require", ("local",), 15),
                    ],
                ),
            ],
        ),
    ]
    (vhost,) = [d for d in parse(GUIDE_LIKE, "site.conf") if isinstance(d, Section)]
    assert vhost.key == "virtualhost"
    assert vhost.where == "site.conf:2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a "b c" d', ("a", "b c", "d")),
        ("'b c'\td", ("b c", "d")),
        ('"say \\"hi\\""', ('say "hi"',)),
        ('"a\\b"', ("a\\b",)),
        ('""', ("",)),
        ('x"y z"', ('x"y', 'z"')),
        ("   ", ()),
        (
            '"%h %l %u %t \\"%r\\" %>s %b" combined',
            ('%h %l %u %t "%r" %>s %b', "combined"),
        ),
    ],
)
def test_wordsAsHttpdSplitsThem(text: str, expected: tuple[str, ...]) -> None:
    assert words(text) == expected


def test_anUnterminatedQuoteIsAnError() -> None:
    with pytest.raises(ApacheSyntaxError) as info:
        parse('Header set X "unfinished\n', "a.conf")
    assert str(info.value) == 'a.conf:1: no closing "'


def test_continuationsAndComments() -> None:
    """A trailing backslash joins lines (numbered from the first); # only leads."""
    text = (
        "ProxyPass / http://backend/ \\\n"
        "    retry=0 \\\n"
        "    timeout=5\n"
        "  # indented comment\n"
        "Header set X-Hash #notacomment\n"
        "LastLine \\"
    )
    assert shape(parse(text)) == [
        ("ProxyPass", ("/", "http://backend/", "retry=0", "timeout=5"), 1),
        ("Header", ("set", "X-Hash", "#notacomment"), 5),
        ("LastLine", (), 6),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<VirtualHost *:80>\nServerName a\n",
            "a.conf:1: <VirtualHost> is never closed",
        ),
        ("</Proxy>\n", "a.conf:1: </Proxy> without matching <Proxy> section"),
        (
            "<Proxy *>\n</Location>\n",
            "a.conf:2: </Location> closes <Proxy> (line 1)",
        ),
        ("<Location /x\n</Location>\n", "a.conf:1: '<Location /x' lacks its '>'"),
        ("<>\n", "a.conf:1: a section without a name"),
        ("<IfModule a b>\n</IfModule>\n", "a.conf:1: <IfModule> takes one name"),
        ("Include\n", "a.conf:1: Include takes one path or glob"),
    ],
)
def test_brokenSectionsNameFileAndLine(text: str, message: str) -> None:
    with pytest.raises(ApacheSyntaxError) as info:
        parse(text, "a.conf", inMemory({}))
    assert str(info.value) == message


def test_ifModuleKeepsItsLinesOnlyWhenTheModuleIsThere() -> None:
    """<IfModule> holds for known modules, ! negates, nesting ands them."""
    text = """\
<IfModule mod_proxy.c>
    ProxyRequests Off
    <IfModule !ssl_module>
        Listen 80
        Include missing/*.conf
    </IfModule>
    <IfModule ssl_module>
        Listen 443
    </IfModule>
</IfModule>
<IfModule mod_php.c>
    <VirtualHost *:80>
        Include also-missing.conf
    </VirtualHost>
</IfModule>
"""
    known = {"mod_proxy.c", "ssl_module"}
    got = parse(text, "a.conf", inMemory({}), modules=lambda name: name in known)
    assert shape(got) == [
        ("ProxyRequests", ("Off",), 2),
        ("IfModule", ("!ssl_module",), 3, []),
        ("Listen", ("443",), 8),
        ("IfModule", ("mod_php.c",), 11, []),
    ]
    skipped = [d for d in got if isinstance(d, Section)]
    assert [d.children for d in skipped] == [(), ()]


def test_defineNamesWhatDollarBracesStandFor() -> None:
    """Define and the caller's variables fill ${NAME}; undefined stays."""
    text = """\
Define PORT 8080
Listen ${PORT}
CustomLog ${APACHE_LOG_DIR}/access.log combined
ErrorLog ${NOT_SET}/error.log
<IfDefine PORT>
    ServerName kept
</IfDefine>
<IfDefine !PORT>
    ServerName skipped
</IfDefine>
"""
    got = parse(text, "a.conf", variables={"APACHE_LOG_DIR": "/var/log/apache2"})
    assert shape(got) == [
        ("Define", ("PORT", "8080"), 1),
        ("Listen", ("8080",), 2),
        ("CustomLog", ("/var/log/apache2/access.log", "combined"), 3),
        ("ErrorLog", ("${NOT_SET}/error.log",), 4),
        ("ServerName", ("kept",), 6),
        ("IfDefine", ("!PORT",), 8, []),
    ]


def test_includeReadsFilesInNameOrder() -> None:
    """Globs sorted, relative paths against the server root, lines their own."""
    tree = {
        "/etc/apache2/apache2.conf": "Listen 80\nInclude sites-enabled/*.conf\n",
        "/etc/apache2/sites-enabled/20-b.conf": "ServerName b\n",
        "/etc/apache2/sites-enabled/10-a.conf": "\nServerName a\n",
        "/etc/apache2/sites-enabled/notes.txt": "Broken <<<\n",
    }
    got = parse(
        tree["/etc/apache2/apache2.conf"], "/etc/apache2/apache2.conf", inMemory(tree)
    )
    assert [(d.name, d.args, d.file, d.line) for d in got] == [
        ("Listen", ("80",), "/etc/apache2/apache2.conf", 1),
        ("ServerName", ("a",), "/etc/apache2/sites-enabled/10-a.conf", 2),
        ("ServerName", ("b",), "/etc/apache2/sites-enabled/20-b.conf", 1),
    ]


def test_includeInsideASection() -> None:
    tree = {"/c/main.conf": "", "/c/proxy.conf": "ProxyPass / http://b/\n"}
    got = parse(
        "<VirtualHost *:80>\nInclude proxy.conf\n</VirtualHost>\n",
        "/c/main.conf",
        inMemory(tree),
    )
    assert shape(got) == [
        ("VirtualHost", ("*:80",), 1, [("ProxyPass", ("/", "http://b/"), 1)])
    ]
    (vhost,) = got
    assert isinstance(vhost, Section)
    assert vhost.children[0].file == "/c/proxy.conf"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "Include nothere.conf",
            "/c/main.conf:1: Include: /c/nothere.conf: No such file or directory",
        ),
        (
            "Include none/*.conf",
            "/c/main.conf:1: Include: no file matches /c/none/*.conf",
        ),
        ("Include main.conf", "/c/main.conf:1: Include: /c/main.conf includes itself"),
    ],
)
def test_includeFaults(line: str, message: str) -> None:
    with pytest.raises(ApacheSyntaxError) as info:
        parse(line, "/c/main.conf", inMemory({"/c/main.conf": line}))
    assert str(info.value) == message


def test_includeOptionalToleratesNothing() -> None:
    got = parse(
        "IncludeOptional nothere.conf\nIncludeOptional none/*.conf\nListen 80\n",
        "/c/main.conf",
        inMemory({}),
    )
    assert shape(got) == [("Listen", ("80",), 3)]


def test_includeWithoutFilesIsAnError() -> None:
    with pytest.raises(ApacheSyntaxError, match="no files can be read here"):
        parse("Include other.conf", "a.conf")


def test_aCycleOfIncludesStops() -> None:
    tree = {"/c/a.conf": "Include b.conf\n", "/c/b.conf": "Include a.conf\n"}
    with pytest.raises(ApacheSyntaxError) as info:
        parse(tree["/c/a.conf"], "/c/a.conf", inMemory(tree))
    assert str(info.value) == "/c/b.conf:1: Include: /c/a.conf includes itself"


def test_theServerRootAnchorsRelativeIncludes() -> None:
    tree = {"/srv/conf.d/x.conf": "ServerName x\n"}
    got = parse(
        "Include conf.d/x.conf",
        "/elsewhere/main.conf",
        inMemory(tree),
        serverRoot="/srv",
    )
    assert shape(got) == [("ServerName", ("x",), 1)]
