"""
The route keys C{aliases}, C{match}, C{exclude} and C{connect_timeout}, as
the loader reads them: what each loads to, and every error naming its key.
"""

from __future__ import annotations

import pytest

from twisted_proxy.config import ConfigError, Route, loadString


def errorsOf(text: str) -> list[str]:
    """Load C{text} as site.toml, expect a ConfigError, return its messages."""
    with pytest.raises(ConfigError) as info:
        loadString(text, "site.toml")
    return [e.removeprefix("site.toml: ") for e in info.value.errors]


def onlyRoute(text: str) -> Route:
    """Load C{text} and return its single route."""
    (route,) = loadString(text, "site.toml").routes
    return route


# -- aliases ------------------------------------------------------------------


def test_aliasesLoadLowerCase() -> None:
    """aliases load as host names do: lower case, in file order."""
    route = onlyRoute(
        '[[route]]\nhost = "example.test"\naliases = ["WWW.example.test",'
        ' "*.Example.org", "[::1]"]\npath = "/"\nto = "http://h/"\n'
    )
    assert route.aliases == ("www.example.test", "*.example.org", "[::1]")
    assert route.hosts == ("example.test", "www.example.test", "*.example.org", "[::1]")


def test_noAliasesNoHosts() -> None:
    """Without host a route answers no name of its own; an empty list is fine."""
    route = onlyRoute('[[route]]\npath = "/"\nto = "http://h/"\naliases = []\n')
    assert (route.aliases, route.hosts) == ((), ())


def test_aliasesNeedHost() -> None:
    """aliases without host is an error naming the key."""
    text = '[[route]]\npath = "/"\nto = "http://h/"\naliases = ["a.test"]\n'
    assert errorsOf(text) == [
        "route[0].aliases: only with host (the route's main name)"
    ]


def test_badAliases() -> None:
    """Each wrong alias is reported at its index: bad name, the host, a repeat."""
    text = (
        '[[route]]\nhost = "a.test"\npath = "/"\nto = "http://h/"\n'
        'aliases = ["b.test", "a.test", "b.test", "x y", 5]\n'
    )
    assert errorsOf(text) == [
        'route[0].aliases[1]: "a.test" is the route\'s host already',
        'route[0].aliases[2]: "b.test" is listed twice',
        'route[0].aliases[3]: expected a host name or "*.domain", got "x y"',
        'route[0].aliases[4]: expected a host name or "*.domain", got 5',
    ]


def test_aliasesNotAnArray() -> None:
    """aliases must be an array."""
    text = '[[route]]\nhost = "a.test"\npath = "/"\nto = "http://h/"\naliases = "b"\n'
    assert errorsOf(text) == [
        'route[0].aliases: expected an array of host names, got "b"'
    ]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (
            'host = "a.test"',
            'host = "b.test"\naliases = ["a.test"]',
            'route[1]: same host and path as route[0] (both answer "a.test")',
        ),
        (
            'host = "b.test"\naliases = ["*.a.test"]',
            'host = "*.a.test"',
            'route[1]: same host and path as route[0] (both answer "*.a.test")',
        ),
        (
            'host = "a.test"\naliases = ["c.test"]',
            'host = "b.test"\naliases = ["c.test"]',
            'route[1]: same host and path as route[0] (both answer "c.test")',
        ),
    ],
)
def test_duplicateThroughAlias(first: str, second: str, message: str) -> None:
    """An alias that gives two routes the same host and path is refused."""
    text = (
        f'[[route]]\n{first}\npath = "/a/"\nto = "http://h/"\n'
        f'[[route]]\n{second}\npath = "/a/"\nto = "http://i/"\n'
    )
    assert errorsOf(text) == [message]


def test_aliasOnAnotherPathIsNoDuplicate() -> None:
    """The same name on two different paths is two routes."""
    text = (
        '[[route]]\nhost = "a.test"\npath = "/a/"\nto = "http://h/"\n'
        '[[route]]\nhost = "b.test"\naliases = ["a.test"]\npath = "/"\n'
        'to = "http://i/"\n'
    )
    assert len(loadString(text).routes) == 2


# -- match --------------------------------------------------------------------


def test_matchRoute() -> None:
    """A match route keeps its pattern; its path is empty; $1 is in its to."""
    route = onlyRoute(
        '[[route]]\nmatch = "^/img/(.*\\\\.gif)$"\n'
        'to = "http://127.0.0.1:3000/static/$1"\n'
    )
    assert route.match == "^/img/(.*\\.gif)$"
    assert route.path == ""
    assert route.location == "~^/img/(.*\\.gif)$"
    assert route.to is not None
    assert route.to.path == "/static/$1"


def test_matchToABalancer() -> None:
    """A balancer:// target takes backreferences too."""
    route = onlyRoute(
        '[[route]]\nmatch = "^/(a|b)/"\nto = "balancer://web/$1/x"\n'
        '[[balancer.web.member]]\nurl = "http://127.0.0.1:9001"\n'
    )
    assert route.to is not None
    assert route.to.path == "/$1/x"


def test_pathAndMatch() -> None:
    """A route has one of path and match, not both."""
    text = '[[route]]\npath = "/"\nmatch = "^/"\nto = "http://h/"\n'
    assert errorsOf(text) == ['route[0]: expected exactly one of "path" or "match"']


def test_neitherPathNorMatch() -> None:
    """A route with neither is missing its path, the message naming match."""
    assert errorsOf('[[route]]\nto = "http://h/"\n') == [
        'route[0].path: missing, expected a path like "/app/" (or a match)'
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '"(("',
            'expected a regular expression, got "((": missing ),'
            " unterminated subpattern at position 1",
        ),
        ('""', 'expected a regular expression like "^/(.*\\\\.gif)$", got ""'),
        ("5", 'expected a regular expression like "^/(.*\\\\.gif)$", got 5'),
        (
            '"/caf\u00e9/"',
            "expected ASCII (the normalised path has other characters"
            ' percent-encoded: %C3%A9 for \u00e9), got "/caf\u00e9/"',
        ),
    ],
)
def test_badMatch(value: str, message: str) -> None:
    """A pattern that does not compile (for bytes) names route[i].match."""
    text = f'[[route]]\nmatch = {value}\nto = "http://h/"\n'
    assert errorsOf(text) == [f"route[0].match: {message}"]


@pytest.mark.parametrize(
    "value", ['"a{4294967296}"', '"' + "(" * 1000 + ")" * 1000 + '"']
)
def test_matchTheCompilerChokesOn(value: str) -> None:
    """A huge repeat or deep nesting is an error too, not a crash."""
    text = f'[[route]]\nmatch = {value}\nto = "http://h/"\n'
    [error] = errorsOf(text)
    assert error.startswith("route[0].match: expected a regular expression, got ")


@pytest.mark.parametrize(
    ("pattern", "to", "message"),
    [
        ('"^/(a)/"', '"http://h/$2"', "$2, but the match pattern has only 1 group(s)"),
        ('"^/a/"', '"http://h/$1"', "$1, but the match pattern has no group"),
        (
            '"^/(a)/"',
            '"http://h$1:80/"',
            "a backreference ($N) may only be in the URL's path",
        ),
    ],
)
def test_badBackreference(pattern: str, to: str, message: str) -> None:
    """A $N the pattern cannot fill, or outside the path, names route[i].to."""
    text = f"[[route]]\nmatch = {pattern}\nto = {to}\n"
    assert errorsOf(text) == [f"route[0].to: {message}"]


def test_zeroIsAlwaysThere() -> None:
    """$0, the whole match, needs no group."""
    route = onlyRoute('[[route]]\nmatch = "\\\\.gif$"\nto = "http://h/x$0"\n')
    assert route.match == "\\.gif$"


def test_backreferenceOnAPathRouteIsLiteral() -> None:
    """On a path route, "$1" in to is part of the URL, as before."""
    route = onlyRoute('[[route]]\npath = "/"\nto = "http://h/$1/"\n')
    assert route.to is not None
    assert route.to.path == "/$1/"


def test_matchRefusesReverseAndHandler() -> None:
    """reverse has no prefix to map to on a match route; a handler needs a path."""
    text = (
        '[[route]]\nmatch = "^/a"\nto = "http://h/"\nreverse = ["http://i/"]\n'
        '[[route]]\nmatch = "^/s"\nhandler = "status"\n'
    )
    assert errorsOf(text) == [
        "route[0].reverse: not on a match route (it has no path prefix to map"
        " backend URLs back to): list them on a route with a path",
        'route[1].match: a handler is served at a path prefix: use "path"',
    ]


def test_matchKeepsCookieRewriting() -> None:
    """cookie_domain and cookie_path need no prefix: a match route takes them."""
    route = onlyRoute(
        '[[route]]\nmatch = "^/a"\nto = "http://h/"\n'
        'cookie_path = { "/" = "/a/" }\ncookie_domain = { "h" = "a.test" }\n'
    )
    assert route.cookie_path == (("/", "/a/"),)
    assert route.cookie_domain == (("h", "a.test"),)


def test_duplicateMatch() -> None:
    """The same host and pattern twice is an error; other hosts are not."""
    text = (
        '[[route]]\nmatch = "^/a"\nto = "http://h/"\n'
        '[[route]]\nmatch = "^/a"\nhost = "x.test"\nto = "http://h/"\n'
        '[[route]]\nmatch = "^/a"\nto = "http://i/"\n'
        '[[route]]\npath = "/"\nto = "http://i/"\n'
    )
    assert errorsOf(text) == ["route[2]: same host and match as route[0]"]


# -- exclude ------------------------------------------------------------------


def test_excludeRoute() -> None:
    """exclude = true stands for to: the route has neither to nor handler."""
    route = onlyRoute('[[route]]\npath = "/app/static/"\nexclude = true\n')
    assert (route.exclude, route.to, route.handler) == (True, None, None)


def test_excludeMatchWithHostAndAliases() -> None:
    """An exclude route may match by pattern, on a host and its aliases."""
    route = onlyRoute(
        '[[route]]\nmatch = "\\\\.php$"\nexclude = true\nhost = "a.test"\n'
        'aliases = ["b.test"]\n'
    )
    assert (route.exclude, route.match, route.hosts) == (
        True,
        "\\.php$",
        ("a.test", "b.test"),
    )


@pytest.mark.parametrize("answer", ['to = "http://h/"', 'handler = "status"'])
def test_excludeAndAnotherAnswer(answer: str) -> None:
    """exclude = true with to or handler: exactly one is allowed."""
    text = f'[[route]]\npath = "/"\nexclude = true\n{answer}\n'
    assert errorsOf(text) == [
        'route[0]: expected exactly one of "to", "handler" or "exclude = true"'
    ]


def test_excludeFalseIsNoAnswer() -> None:
    """exclude = false alone does not answer anything."""
    text = '[[route]]\npath = "/"\nexclude = false\n'
    assert errorsOf(text) == [
        'route[0]: expected exactly one of "to", "handler" or "exclude = true"'
    ]
    assert not onlyRoute(text + 'to = "http://h/"\n').exclude


def test_excludeRefusesProxyKeys() -> None:
    """Keys that only mean something for a proxied route name themselves."""
    text = (
        '[[route]]\npath = "/x/"\nexclude = true\ntimeout = 5\n'
        "connect_timeout = 1\nwebsocket = false\nreverse = []\n"
        'allow = ["127.0.0.1"]\nsecret = "s3cret"\n'
        '[route.request_headers]\nunset = ["A"]\n'
    )
    assert errorsOf(text) == [
        f"route[0].{key}: not on an exclude route (it proxies nothing)"
        for key in (
            "timeout",
            "connect_timeout",
            "websocket",
            "reverse",
            "allow",
            "secret",
            "request_headers",
        )
    ]


def test_excludeNotABoolean() -> None:
    """exclude must be true or false."""
    text = '[[route]]\npath = "/"\nto = "http://h/"\nexclude = "yes"\n'
    assert errorsOf(text) == ['route[0].exclude: expected true or false, got "yes"']


def test_excludeDuplicatesAPath() -> None:
    """An exclude route with another route's host and path is a duplicate."""
    text = (
        '[[route]]\npath = "/a/"\nto = "http://h/"\n'
        '[[route]]\npath = "/a/"\nexclude = true\n'
    )
    assert errorsOf(text) == ["route[1]: same host and path as route[0]"]


# -- connect_timeout ------------------------------------------------------------


@pytest.mark.parametrize(("value", "loaded"), [("2.5", 2.5), ("3", 3.0)])
def test_connectTimeout(value: str, loaded: float) -> None:
    """connect_timeout loads as seconds; absent, it is None ([proxy]'s)."""
    text = '[[route]]\npath = "/"\nto = "http://h/"\n'
    assert onlyRoute(text + f"connect_timeout = {value}\n").connect_timeout == loaded
    assert onlyRoute(text).connect_timeout is None


@pytest.mark.parametrize("value", ["0", "-1", '"2s"', "true", "inf"])
def test_badConnectTimeout(value: str) -> None:
    """connect_timeout is validated as [proxy]'s: a positive number."""
    text = f'[[route]]\npath = "/"\nto = "http://h/"\nconnect_timeout = {value}\n'
    [error] = errorsOf(text)
    assert error.startswith(
        "route[0].connect_timeout: expected a positive number of seconds, got "
    )


def test_connectTimeoutNotOnAHandler() -> None:
    """A handler route connects to nothing."""
    text = '[[route]]\npath = "/s"\nhandler = "status"\nconnect_timeout = 1\n'
    assert errorsOf(text) == ['route[0].connect_timeout: only for a route with "to"']
