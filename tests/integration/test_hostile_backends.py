"""
What a client sees and what is logged when a backend answers with something
a client would not be allowed to send: an unasked-for 101, control bytes in
the status line or the headers, names that are not tokens, a head too large,
a bad status code, a flood of interim responses. Each is a 502, and the
backend's connection is closed, never handed to the next request.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.integration.support import (
    RawBackend,
    RawServerProtocol,
    Reply,
    Stack,
    answerEach,
    hasReplies,
    parseReplies,
    request,
)

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
"""

BALANCED = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://b/"
[balancer.b]
[[balancer.b.member]]
url = "http://127.0.0.1:{port}"
"""

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"

HOSTILE = [
    pytest.param(
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "unrequested 101 Switching Protocols",
        id="unrequested-101",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\nSet-Cookie: session=evil\r\nContent-Length: 4\r\n\r\ngood",
        "control character in the reason phrase",
        id="lf-in-reason",
    ),
    pytest.param(
        b"HTTP/1.1 200 O\x1b[2JK\r\nContent-Length: 4\r\n\r\ngood",
        "control character in the reason phrase",
        id="esc-in-reason",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\x00\r\nContent-Length: 4\r\n\r\ngood",
        "control character in the reason phrase",
        id="nul-in-reason",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-A: 1\nSet-Cookie: session=evil\r\n"
        b"Content-Length: 4\r\n\r\ngood",
        "control character in the value of b'X-A'",
        id="lf-in-value",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX(Bad): 1\r\nContent-Length: 4\r\n\r\ngood",
        "header name is not a token: b'X(Bad)'",
        id="name-with-parenthesis",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 4\r\n\r\ngood",
        "header name is not a token: b'X Bad'",
        id="name-with-space",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Esc: \x1b[31mred\r\nContent-Length: 4\r\n\r\ngood",
        "control character in the value of b'X-Esc'",
        id="esc-in-value",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n \x7fb\r\nContent-Length: 4\r\n\r\ngood",
        "control character in the value of b'X-Fold'",
        id="del-in-folded-value",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Pad: "
        + b"p" * 70 * 1024
        + b"\r\nContent-Length: 4\r\n\r\ngood",
        "response head larger than 65536 bytes",
        id="70KB-head",
    ),
    pytest.param(
        b"HTTP/1.1 099 Odd\r\nContent-Length: 4\r\n\r\ngood",
        "bad status code b'099'",
        id="status-099",
    ),
    pytest.param(
        b"HTTP/1.1 600 Odd\r\nContent-Length: 4\r\n\r\ngood",
        "bad status code b'600'",
        id="status-600",
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\n\r\n" * 17 + GOOD,
        "more than 16 interim responses",
        id="interim-flood",
    ),
]


def _write(proto: Any, data: bytes) -> None:
    proto.transport.write(data)


def _logLine(lines: list[str], *words: str) -> str:
    """The one logged line that holds every word in C{words}."""
    found = [line for line in lines if all(word in line for word in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


def _firstAnswers(hostile: bytes) -> RawBackend:
    """
    A raw backend whose first connection answers its first request with
    C{hostile}; every other request, on any connection, gets GOOD.
    """

    def respond(proto: RawServerProtocol, index: int, head: bytes) -> None:
        first = proto is raw.connections[0] and index == 0
        _write(proto, hostile if first else GOOD)

    raw = RawBackend(answerEach(respond))
    return raw


async def _ask(stack: Stack, port: int, path: bytes) -> tuple[Reply, bytes]:
    """One request from a new client: its reply and every byte it got."""
    client = await stack.connect(port)
    _write(client, request(b"GET", path))
    data = await client.waitFor(hasReplies(1))
    [reply] = parseReplies(data)
    return reply, data


@pytest.mark.parametrize(("hostile", "fault"), HOSTILE)
@pytest_twisted.ensureDeferred
async def test_hostileResponseIs502AndConnectionDropped(
    stack: Stack, logged: list[str], hostile: bytes, fault: str
) -> None:
    """A faulty response head: 502, logged with its fault, the connection not reused."""
    raw = _firstAnswers(hostile)
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(CONFIG, port=port)
    reply, data = await _ask(stack, proxy.port, b"/first")
    assert (reply.status, reply.body) == (502, b"backend unavailable\n")
    assert b"evil" not in data
    assert data.count(b"HTTP/1.1 ") == 1
    await raw.connections[0].lost
    line = _logLine(logged, "bad response from backend")
    assert line == (
        f"route */ member http://127.0.0.1:{port}: bad response from backend: {fault}"
    )
    # The next client's request goes to a new connection, not the poisoned one.
    reply, _ = await _ask(stack, proxy.port, b"/second")
    assert (reply.status, reply.body) == (200, b"good")
    assert len(raw.connections) == 2
    assert b"/second" not in raw.connections[0].received
    assert raw.connections[1].received.startswith(b"GET /second HTTP/1.1\r\n")


@pytest_twisted.ensureDeferred
async def test_hostileMemberIsNamedAndCountedAsFailed(
    stack: Stack, logged: list[str]
) -> None:
    """A balancer member's header injection: 502, the member named and in error."""
    raw = _firstAnswers(
        b"HTTP/1.1 200 OK\nSet-Cookie: session=evil\r\nContent-Length: 4\r\n\r\ngood"
    )
    port = await stack.rawBackend(raw)
    proxy = await stack.proxy(BALANCED, port=port)
    reply, data = await _ask(stack, proxy.port, b"/first")
    assert (reply.status, reply.body) == (502, b"backend unavailable\n")
    assert b"evil" not in data
    await raw.connections[0].lost
    member = f"http://127.0.0.1:{port}"
    line = _logLine(logged, "bad response from backend")
    assert line == (
        f"route */ member {member}: bad response from backend: "
        "control character in the reason phrase"
    )
    state = proxy.balancer.member("b", member)
    assert state.failures == 1
    assert state.lastFailure == "protocol"


@pytest_twisted.ensureDeferred
async def test_unusualButValidResponsesPass(stack: Stack, logged: list[str]) -> None:
    """No reason, obs-text and HTAB, folding, interim responses: relayed, reused."""
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200\r\nContent-Length: 4\r\n\r\nbare",
        b"HTTP/1.1 200 Tr\xe8s\tbien\r\nX-Obs: caf\xe9\tok\r\n"
        b"Content-Length: 4\r\n\r\nobst",
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n  b\r\n\tc\r\nContent-Length: 4\r\n\r\nfold",
    ]
    raw = RawBackend(
        answerEach(lambda proto, index, head: _write(proto, answers[index]))
    )
    proxy = await stack.proxy(CONFIG, port=await stack.rawBackend(raw))
    client = await stack.connect(proxy.port)
    replies: list[Reply] = []
    for n in range(len(answers)):
        _write(client, request(b"GET", b"/%d" % n))
        replies = parseReplies(await client.waitFor(hasReplies(n + 1)))
    assert [(r.status, r.body) for r in replies] == [
        (200, b"bare"),
        (200, b"obst"),
        (200, b"fold"),
    ]
    assert replies[1].header(b"x-obs") == b"caf\xe9\tok"
    assert replies[2].header(b"x-fold") == b"a b c"
    assert b"Continue" not in client.received
    assert len(raw.connections) == 1
    assert not [line for line in logged if "bad response" in line]
