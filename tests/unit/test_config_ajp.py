"""ajp:// targets and members in the configuration: what loads, what is refused."""

from __future__ import annotations

import pytest

from tests.unit.test_config import errorsOf
from twisted_proxy.config.loader import loadString

ROUTE = """
[[route]]
path = "/app/"
to = "{to}"
{extra}
"""

BALANCER = """
[[route]]
path = "/"
to = "balancer://tc/"
{route}
[balancer.tc]
{health}
[[balancer.tc.member]]
url = "ajp://127.0.0.1:8009"
route = "node1"
secret = "s3cret"
[[balancer.tc.member]]
url = "{second}"
route = "node2"
{secondExtra}
"""


def balancer(
    second: str = "ajp://127.0.0.1:8010",
    secondExtra: str = 'secret = "s3cret"',
    health: str = "",
    route: str = "",
) -> str:
    return BALANCER.format(
        second=second, secondExtra=secondExtra, health=health, route=route
    )


def test_anAjpRouteWithItsSecret() -> None:
    """The scheme's port is 8009; the secret is kept, never shown in a repr."""
    config = loadString(
        ROUTE.format(to="ajp://tomcat.internal/app/", extra='secret = "a!b~c"')
    )
    (route,) = config.routes
    assert route.to is not None
    assert (route.to.scheme, route.to.host, route.to.port) == (
        "ajp",
        "tomcat.internal",
        8009,
    )
    assert route.secret == "a!b~c"
    assert "a!b~c" not in repr(route)
    assert route.preserve_host is True, "the client's Host, unless it says not"
    text = ROUTE.format(to="ajp://h/", extra="preserve_host = false")
    assert loadString(text).routes[0].preserve_host is False


def test_ajpMembersWithSecretsAndACpingCheck() -> None:
    """An AJP balancer's health check is CPING unless it says TCP."""
    config = loadString(balancer(health="[balancer.tc.health]\ninterval = 10"))
    ((_, tc),) = config.balancers
    assert [(m.scheme, m.port, m.secret) for m in tc.members] == [
        ("ajp", 8009, "s3cret"),
        ("ajp", 8010, "s3cret"),
    ]
    assert tc.health is not None
    assert tc.health.method == "CPING"
    assert config.routes[0].preserve_host is True
    assert "s3cret" not in repr(tc)
    config = loadString(
        balancer(health='[balancer.tc.health]\nmethod = "tcp"\ninterval = 10')
    )
    assert config.balancers[0][1].health is not None
    assert config.balancers[0][1].health.method == "TCP"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            ROUTE.format(to="http://127.0.0.1:8080/", extra='secret = "x"'),
            "route[0].secret: only for an ajp:// target",
        ),
        (
            balancer(route='secret = "x"'),
            "route[0].secret: only for an ajp:// target (a balancer's ajp:// "
            "members take one each)",
        ),
        (
            ROUTE.format(to="ajp://127.0.0.1/", extra='secret = "has space"'),
            "route[0].secret: expected a secret of 1 to 1024 printable ASCII "
            'characters, no spaces, got "has space"',
        ),
        (
            ROUTE.format(to="ajp://127.0.0.1/", extra='secret = ""'),
            "route[0].secret: expected a secret of 1 to 1024 printable ASCII "
            'characters, no spaces, got ""',
        ),
        (
            ROUTE.format(to="ajp://127.0.0.1/", extra="websocket = true"),
            "route[0].websocket: AJP carries no WebSockets",
        ),
        (
            balancer(route="websocket = true"),
            "route[0].websocket: AJP carries no WebSockets",
        ),
        (
            balancer(second="http://127.0.0.1:8080", secondExtra=""),
            "balancer.tc.member[0].url: ajp:// and other members cannot share a "
            "balancer",
        ),
        (
            balancer(second="http://127.0.0.1:8080", secondExtra='secret = "s"'),
            "balancer.tc.member[1].secret: only for ajp:// members, not http://",
        ),
        (
            balancer(health='[balancer.tc.health]\nmethod = "GET"'),
            'balancer.tc.health.method: ajp:// members are checked by "CPING" '
            '(the default) or "TCP"',
        ),
        (
            'to = "balancer://w/"\n[balancer.w.health]\nmethod = "CPING"\n'
            '[[balancer.w.member]]\nurl = "http://127.0.0.1:8080"',
            "balancer.w.health.method: CPING checks ajp:// members only",
        ),
    ],
)
def test_refused(text: str, error: str) -> None:
    if text.startswith('to = "balancer://w/"'):
        text = '[[route]]\npath = "/"\n' + text
    assert f"site.toml: {error}" in errorsOf(text)
