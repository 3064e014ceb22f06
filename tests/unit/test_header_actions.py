"""
Tests for the header directives beyond set and unset (Apache's edit, edit*,
append and add): how the loader checks them
(L{twisted_proxy.config.checker}), how a replacement reads
(L{twisted_proxy.config.headeredit}), and what the rewriters
(L{twisted_proxy.core.headers}, L{twisted_proxy.core.headeractions}) make of
plain header lists.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from twisted_proxy.config import ConfigError, loadString
from twisted_proxy.config.convert import InvalidValueError
from twisted_proxy.config.headeredit import compileEdit, parseReplacement
from twisted_proxy.config.model import HeaderDirectives, ProxySettings, Route
from twisted_proxy.core.describe import routeRow
from twisted_proxy.core.headeractions import headerActions
from twisted_proxy.core.headers import (
    ClientInfo,
    RequestHeaderRewriter,
    ResponseHeaderRewriter,
)

Headers = list[tuple[bytes, bytes]]

_ROUTE = '[[route]]\npath = "/"\nto = "http://127.0.0.1:8080/"\n'
CLIENT = ClientInfo(address="192.0.2.7", scheme="https", port=443, host=b"a.test")


def errorsOf(text: str) -> list[str]:
    """Load C{text}, expect a ConfigError, return its messages."""
    with pytest.raises(ConfigError) as info:
        loadString(text, "site.toml")
    return info.value.errors


def response(headers: Headers, **directives: Any) -> Headers:
    """C{headers} through a response rewriter with these directives."""
    proxy = ProxySettings(
        server_tokens="none", response_headers=HeaderDirectives(**directives)
    )
    return ResponseHeaderRewriter(proxy).rewrite(headers)


def upstream(headers: Headers, **directives: Any) -> Headers:
    """C{headers} through a request rewriter with these directives."""
    route = Route(path="/", request_headers=HeaderDirectives(**directives))
    rewriter = RequestHeaderRewriter(
        ProxySettings(forwarded_headers=False), route, b"backend"
    )
    return rewriter.rewrite(headers, CLIENT)


# -- loading ----------------------------------------------------------------------


def test_everyKindLoadsInTheFilesOrder() -> None:
    """add, append, edit and edit_all load as lists, each in the file's order."""
    config = loadString(
        """
        [proxy.response_headers]
        add = [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]]
        append = [["Cache-Control", "no-store"], ["Vary", ""]]
        edit = [["Set-Cookie", '^(sid=[^;]*)', '$1; Secure']]
        edit_all = [["Link", "http:", "https:"], ["Link", "a", "$0$0"]]
        """
    )
    assert config.proxy.response_headers == HeaderDirectives(
        add=(("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")),
        append=(("Cache-Control", "no-store"), ("Vary", "")),
        edit=(("Set-Cookie", "^(sid=[^;]*)", "$1; Secure"),),
        edit_all=(("Link", "http:", "https:"), ("Link", "a", "$0$0")),
    )


def test_routeRequestHeadersTakeTheSameKeys() -> None:
    """[route.request_headers] takes add, append, edit and edit_all too."""
    config = loadString(
        _ROUTE + "[route.request_headers]\n"
        'add = [["X-Tag", "1"]]\nappend = [["X-Trace", "p"]]\n'
        'edit = [["X-A", "a", "b"]]\nedit_all = [["X-B", "c", "d"]]\n'
    )
    assert config.routes[0].request_headers == HeaderDirectives(
        add=(("X-Tag", "1"),),
        append=(("X-Trace", "p"),),
        edit=(("X-A", "a", "b"),),
        edit_all=(("X-B", "c", "d"),),
    )


def test_kindsMayNameTheSameHeader() -> None:
    """Unlike set and unset, the new kinds may name a header another kind names."""
    directives = loadString(
        "[proxy.response_headers]\n"
        'unset = ["Set-Cookie"]\nset = { "X-A" = "1" }\n'
        'add = [["Set-Cookie", "a=1"], ["X-A", "2"]]\n'
        'append = [["X-A", "3"]]\nedit = [["X-A", "1", "one"]]\n'
    ).proxy.response_headers
    assert directives.unset == ("Set-Cookie",)
    assert directives.add == (("Set-Cookie", "a=1"), ("X-A", "2"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'add = "X-A: 1"',
            'add: expected an array of [name, value] pairs, got "X-A: 1"',
        ),
        ('add = [["X-A"]]', 'add[0]: expected [name, value], got ["X-A"]'),
        ('add = [["X-A", 1]]', 'add[0]: expected [name, value], got ["X-A", 1]'),
        ('add = ["X-A"]', 'add[0]: expected [name, value], got "X-A"'),
        (
            'add = [["X-A", "1"], ["Bad Name", "2"]]',
            'add[1]: expected a header name, got "Bad Name"',
        ),
        (
            'add = [["X-A", "a\\r\\nX-Evil: 1"]]',
            "add[0]: expected a header value without line breaks",
        ),
        (
            'append = [["X-A", "a\\u0000"]]',
            "append[0]: expected a header value without line breaks",
        ),
        (
            'append = { "X-A" = "1" }',
            "append: expected an array of [name, value] pairs, got a table",
        ),
        (
            'edit = [["X-A", "a"]]',
            'edit[0]: expected [name, regex, replacement], got ["X-A", "a"]',
        ),
        (
            'edit = [["X A", "a", "b"]]',
            'edit[0]: expected a header name, got "X A"',
        ),
        (
            'edit = [["X-A", "(", "b"]]',
            'edit[0]: invalid regular expression "(": '
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "edit = [[\"X-A\", '(a)', '$2']]",
            "edit[0]: $2 in the replacement, but the regular expression has 1 group",
        ),
        (
            "edit_all = [[\"X-A\", 'a', '$1']]",
            "edit_all[0]: $1 in the replacement, "
            "but the regular expression has 0 groups",
        ),
        (
            'edit_all = [["X-A", "a", "b\\nc"]]',
            "edit_all[0]: expected a replacement without line breaks",
        ),
        (
            'edit_all = "X-A"',
            "edit_all: expected an array of [name, regex, replacement] triples, "
            'got "X-A"',
        ),
    ],
)
def test_errorsNameTheKeyPath(line: str, message: str) -> None:
    """Each wrong entry is reported with its key path and what was expected."""
    errors = errorsOf(f"[proxy.response_headers]\n{line}\n")
    assert errors == [f"site.toml: proxy.response_headers.{message}"]


def test_routeErrorsNameTheRoute() -> None:
    """An error in a route's request headers names the route and the entry."""
    errors = errorsOf(
        _ROUTE + "[route.request_headers]\n"
        "edit = [[\"X-A\", 'a', 'b'], [\"X-B\", '[', 'c']]\n"
    )
    assert errors == [
        "site.toml: route[0].request_headers.edit[1]: "
        'invalid regular expression "[": '
        "unterminated character set at position 0"
    ]


def test_everyWrongEntryIsReported() -> None:
    """Each wrong entry of each key is reported, not only the first."""
    errors = errorsOf(
        "[proxy.response_headers]\n"
        'add = [["X A", "1"], ["X-B", "2"], [1, 2]]\n'
        "edit = [[\"X-C\", '(', ''], [\"X-D\", 'd', '$1']]\n"
    )
    assert [e.split(": ")[1] for e in errors] == [
        "proxy.response_headers.add[0]",
        "proxy.response_headers.add[2]",
        "proxy.response_headers.edit[0]",
        "proxy.response_headers.edit[1]",
    ]


def test_theRouteTableNamesTheHeaders() -> None:
    """The route table lists, once each, the headers add, append and edits name."""
    config = loadString(
        _ROUTE + "[route.request_headers]\n"
        'add = [["X-Tag", "1"], ["X-Tag", "2"]]\nappend = [["X-Trace", "p"]]\n'
        'edit = [["X-A", "a", "b"]]\nedit_all = [["X-B", "c", "d"]]\n'
    )
    options = routeRow(config, config.routes[0])[3].split()
    assert options[-4:] == ["add=X-Tag", "append=X-Trace", "edit=X-A", "edit_all=X-B"]


# -- the replacement ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replacement", "pieces"),
    [
        ("", ()),
        ("plain", ("plain",)),
        ("$1; Secure", (1, "; Secure")),
        ("a$0b$9", ("a", 0, "b", 9)),
        ("\\$1", ("$1",)),
        ("\\\\$1", ("\\", 1)),
        ("\\x", ("x",)),
        ("end\\", ("end\\",)),
        ("$", ("$",)),
        ("$x$", ("$x$",)),
        ("$12", (1, "2")),
        ("cost: $\u0661", ("cost: $\u0661",)),
    ],
)
def test_replacementPieces(replacement: str, pieces: tuple[str | int, ...]) -> None:
    """A replacement reads as Apache's ap_pregsub reads it."""
    assert parseReplacement(replacement) == pieces


@pytest.mark.parametrize(
    ("regex", "replacement", "value", "expected"),
    [
        ("^(sid=[^;]*)", "$1; Secure", b"sid=1; Path=/", b"sid=1; Secure; Path=/"),
        ("(a)|(b)", "[$2]", b"a", b"[]"),
        ("b", "\\$0", b"abc", b"a$0c"),
        ("b", "\\\\", b"abc", b"a\\c"),
        ("b", "\\g<0>", b"abc", b"ag<0>c"),
        ("x", "y", b"abc", b"abc"),
        ("caf\u00e9", "tea", "un caf\u00e9".encode(), b"un tea"),
    ],
)
def test_compiledEditReplacesTheFirstMatch(
    regex: str, replacement: str, value: bytes, expected: bytes
) -> None:
    """A compiled edit replaces as Apache's Header edit does, on the value's bytes."""
    pattern, template = compileEdit(regex, replacement)
    assert pattern.sub(template, value, 1) == expected


@given(
    value=st.binary(max_size=40).filter(lambda v: not set(v) & {0, 10, 13}),
    regex=st.sampled_from(["", "a", "(.)", "(.*)", "^(.)(.)?", "[^;]*", "(x)|(y)"]),
    replacement=st.text(max_size=20),
    count=st.sampled_from([0, 1]),
)
def test_anEditCannotInjectALineBreak(
    value: bytes, regex: str, replacement: str, count: int
) -> None:
    """An edit that loads never puts CR, LF or NUL in a value that had none."""
    try:
        pattern, template = compileEdit(regex, replacement)
    except InvalidValueError:
        assume(False)
        return
    result = pattern.sub(template, value, count)
    assert not set(result) & {0, 10, 13}


# -- what the rewriters do ----------------------------------------------------------


def test_noNewKindsNoActions() -> None:
    """Directives with only set and unset make no extra step for the rewriters."""
    directives = HeaderDirectives(set=(("X-A", "1"),), unset=("X-B",))
    assert headerActions(directives, ((b"X-A", b"1"),), "t") is None


def test_addKeepsWhatIsThere() -> None:
    """Header add: a second Set-Cookie beside the backend's, at the end."""
    out = response(
        [(b"Set-Cookie", b"sid=1"), (b"Content-Type", b"text/html")],
        add=(("Set-Cookie", "lang=en"), ("Set-Cookie", "seen=1")),
    )
    assert out == [
        (b"Set-Cookie", b"sid=1"),
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"lang=en"),
        (b"Set-Cookie", b"seen=1"),
    ]


def test_appendToOneField() -> None:
    """Header append: ", value" after the field's value, where the field was."""
    out = response(
        [(b"Cache-Control", b"no-cache"), (b"X-A", b"1")],
        append=(("cache-control", "no-store"),),
    )
    assert out == [(b"Cache-Control", b"no-cache, no-store"), (b"X-A", b"1")]


def test_appendMergesSeveralFieldsIntoOne() -> None:
    """Several fields of the appended name become one, in order, where the first was."""
    out = response(
        [(b"Vary", b"Accept"), (b"X-A", b"1"), (b"vary", b"Cookie")],
        append=(("Vary", "Origin"),),
    )
    assert out == [(b"Vary", b"Accept, Cookie, Origin"), (b"X-A", b"1")]


def test_appendWithoutTheFieldAddsIt() -> None:
    """Header append of a header that is not there adds it, as set would."""
    out = response([(b"X-A", b"1")], append=(("Cache-Control", "no-store"),))
    assert out == [(b"X-A", b"1"), (b"Cache-Control", b"no-store")]


def test_twoAppendsOfOneName() -> None:
    """Two appends of one name come after the field in the file's order."""
    out = response([(b"X-Trace", b"a")], append=(("X-Trace", "b"), ("x-trace", "c")))
    assert out == [(b"X-Trace", b"a, b, c")]
    assert response([], append=(("X-Trace", "b"), ("X-Trace", "c"))) == [
        (b"X-Trace", b"b, c")
    ]


def test_editReplacesTheFirstMatchInEachField() -> None:
    """Header edit: the first match in every field of that name, none of others."""
    out = response(
        [
            (b"Set-Cookie", b"sid=1; Path=/; Path=/x"),
            (b"X-Other", b"Path=/"),
            (b"set-cookie", b"lang=en; Path=/"),
        ],
        edit=(("Set-Cookie", "Path=/", "Path=/app/"),),
    )
    assert out == [
        (b"Set-Cookie", b"sid=1; Path=/app/; Path=/x"),
        (b"X-Other", b"Path=/"),
        (b"set-cookie", b"lang=en; Path=/app/"),
    ]


def test_editAllReplacesEveryMatch() -> None:
    """Header edit*: every match in the field."""
    out = response(
        [(b"Link", b"<http://a/1>, <http://a/2>")],
        edit_all=(("Link", "http://", "https://"),),
    )
    assert out == [(b"Link", b"<https://a/1>, <https://a/2>")]


def test_editsApplyInOrder() -> None:
    """Edits run one after another, edit's before edit_all's."""
    out = response(
        [(b"X-A", b"aaa")],
        edit=(("X-A", "a", "b"), ("X-A", "b", "c")),
        edit_all=(("X-A", "c|a", "d"),),
    )
    assert out == [(b"X-A", b"ddd")]


def test_editWithoutAMatchLeavesTheValue() -> None:
    """A field the expression does not match is left as it was."""
    out = response([(b"X-A", b"value")], edit=(("X-A", "^z", "y"),))
    assert out == [(b"X-A", b"value")]


def test_theFixedOrder() -> None:
    """edit, edit_all, unset, set, append, add: the cookie case as in Apache."""
    out = response(
        [
            (b"Set-Cookie", b"sid=1; Path=/"),
            (b"X-Gone", b"1"),
            (b"X-Set", b"backend"),
            (b"Cache-Control", b"private"),
        ],
        edit=(("Set-Cookie", "^(sid=[^;]*)", "$1; Secure"), ("X-Set", ".*", "e")),
        unset=("X-Gone",),
        set=(("X-Set", "configured"),),
        append=(("Cache-Control", "no-store"), ("X-Set", "appended")),
        add=(("Set-Cookie", "lang=en"), ("X-Gone", "again")),
    )
    assert out == [
        (b"Set-Cookie", b"sid=1; Secure; Path=/"),
        (b"Cache-Control", b"private, no-store"),
        (b"X-Set", b"configured, appended"),
        (b"Set-Cookie", b"lang=en"),
        (b"X-Gone", b"again"),
    ]


def test_editsSeeTheProxysOwnResponseHeaders() -> None:
    """Edits apply to Server and Via as the proxy sends them."""
    proxy = ProxySettings(
        server_tokens="prod",
        via="on",
        server_name="edge",
        response_headers=HeaderDirectives(edit=(("Server", "twisted-", "t-"),)),
    )
    out = ResponseHeaderRewriter(proxy).rewrite([])
    assert (b"Server", b"t-proxy") in out


def test_hopByHopFieldsAreGoneBeforeTheDirectives() -> None:
    """As for set, a backend's hop-by-hop fields are removed before any directive."""
    out = response(
        [(b"Connection", b"x-secret"), (b"X-Secret", b"1"), (b"Keep-Alive", b"5")],
        append=(("X-Secret", "2"),),
        edit=(("Keep-Alive", ".*", "9"),),
    )
    assert out == [(b"X-Secret", b"2")]


def test_requestDirectives() -> None:
    """RequestHeader edit, edit*, append and add shape what the backend is sent."""
    out = upstream(
        [
            (b"X-Tenant", b"tenant-42"),
            (b"X-Trace", b"c1"),
            (b"Accept", b"*/*"),
            (b"X-Trace", b"c2"),
        ],
        edit=(("X-Tenant", r"^tenant-(\d+)$", "t$1"),),
        edit_all=(("Accept", r"\*", "any"),),
        append=(("X-Trace", "proxy"),),
        add=(("X-Tag", "one"), ("X-Tag", "two")),
    )
    assert out == [
        (b"Host", b"backend"),
        (b"X-Tenant", b"t42"),
        (b"X-Trace", b"c1, c2, proxy"),
        (b"Accept", b"any/any"),
        (b"X-Tag", b"one"),
        (b"X-Tag", b"two"),
    ]


def test_requestEditsSeeTheProxysHost() -> None:
    """A RequestHeader edit sees the Host the proxy sends, not the client's."""
    out = upstream([(b"Host", b"a.test")], edit=(("Host", "^back", "front"),))
    assert out == [(b"Host", b"frontend")]


def test_requestAddIsNotRemovedByAConnectionToken() -> None:
    """A client's Connection token cannot remove what add or append puts in."""
    out = upstream(
        [(b"Connection", b"X-Tag, X-Trace")],
        add=(("X-Tag", "1"),),
        append=(("X-Trace", "p"),),
    )
    assert out == [(b"Host", b"backend"), (b"X-Trace", b"p"), (b"X-Tag", b"1")]


def test_inputIsNotChanged() -> None:
    """The rewriters leave the caller's list as it was, edits included."""
    headers = [(b"X-A", b"a"), (b"X-B", b"b")]
    before = list(headers)
    response(headers, edit=(("X-A", "a", "z"),), append=(("X-B", "c"),))
    upstream(headers, edit=(("X-A", "a", "z"),), append=(("X-B", "c"),))
    assert headers == before


@pytest.mark.parametrize(
    ("directives", "where"),
    [
        ({"add": (("X-A", "a\r\nX-Evil: 1"),)}, "route[3].request_headers.add[0]"),
        (
            {"append": (("X-A", "ok"), ("X-B", "\0"))},
            "route[3].request_headers.append[1]",
        ),
        ({"edit": (("X-A", "a", "\n"),)}, "route[3].request_headers.edit[0]"),
        ({"edit_all": (("X-A", "(", ""),)}, "route[3].request_headers.edit_all[0]"),
    ],
)
def test_directivesTheLoaderRefusesAreRefusedInCode(
    directives: dict[str, Any], where: str
) -> None:
    """Directives built in code that the loader would refuse fail the rewriter."""
    route = Route(path="/", index=3, request_headers=HeaderDirectives(**directives))
    with pytest.raises(ValueError, match=where.replace("[", r"\[")):
        RequestHeaderRewriter(ProxySettings(), route, b"backend")
