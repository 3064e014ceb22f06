"""
The balancer-manager end to end on 127.0.0.1: a real proxy in front of two
real backends, its page and JSON API asked by a real HTTP client; what the
forms change is checked in the traffic the backends then receive.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest_twisted
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import implementer

from tests.integration.support import RecordingBackend, Stack

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
{manager}
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "byrequests"
[[balancer.web.member]]
url = "http://127.0.0.1:{one}"
route = "one"
[[balancer.web.member]]
url = "http://127.0.0.1:{two}"
route = "two"
"""


class Site:
    """A proxy with the manager, in front of backends "one" and "two"."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = stack.treq()
        self.one = RecordingBackend("one")
        self.two = RecordingBackend("two")

    async def start(self, manager: str = "", configDir: str | None = None) -> Site:
        one = await self.stack.backend(self.one)
        two = await self.stack.backend(self.two)
        self.service = await self.stack.proxy(
            CONFIG, configDir=configDir, manager=manager, one=one, two=two
        )
        self.port = self.service.ports[0].getHost().port  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, bytes]:
        response = await self.http.get(self.base + path, **kw)
        return response.code, response.headers, await response.content()

    async def send(
        self, method: str, path: str, body: bytes, **kw: Any
    ) -> tuple[int, Any, bytes]:
        response = await self.http.request(
            method, self.base + path, data=body, allow_redirects=False, **kw
        )
        return response.code, response.headers, await response.content()

    async def page(self) -> tuple[str, str]:
        """The manager's page and the nonce its forms carry."""
        code, headers, body = await self.get("/balancer-manager")
        assert code == 200
        assert headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
        text = body.decode()
        [nonce] = set(re.findall(r'name="nonce" value="([^"]+)"', text))
        return text, nonce

    async def post(
        self, fields: dict[str, str], headers: dict[bytes, list[bytes]] | None = None
    ) -> tuple[int, Any, bytes]:
        form = {b"Content-Type": [b"application/x-www-form-urlencoded"]}
        form.update(headers or {})
        return await self.send(
            "POST", "/balancer-manager", urlencode(fields).encode(), headers=form
        )

    def member(self, route: str) -> dict[str, Any]:
        [member] = [
            m for m in self.service.balancer.snapshot()["web"] if m["route"] == route
        ]
        return member


def _update(nonce: str, url: str, route: str, **fields: str) -> dict[str, str]:
    """The fields of a member's form, as the page fills them in, and C{fields}."""
    values = {"nonce": nonce, "balancer": "web", "action": "update", "member": url}
    values.update(weight="1", tier="0", route=route)
    values.update(fields)
    return values


@pytest_twisted.ensureDeferred
async def test_thePageShowsEveryMember(stack: Stack) -> None:
    """The page lists each member with its URL, route, status and counters."""
    site = await Site(stack).start()
    for _ in range(4):
        code, _, _ = await site.get("/")
        assert code == 200
    text, nonce = await site.page()
    assert "balancer://web" in text
    assert "byrequests" in text
    for route in ("one", "two"):
        url = site.member(route)["name"]
        row = re.search(rf'<tr data-member="{re.escape(url)}">(.*?)</tr>', text)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[:3] == [url, route, "ok"]
        assert cells[5] == "2"
    assert len(nonce) >= 24


@pytest_twisted.ensureDeferred
async def test_drainingAMemberWithTheFormMovesTheTraffic(stack: Stack) -> None:
    """
    The form drains "one": the answer is a redirect to the page, the page
    says so, the change is logged, and new requests all go to "two".
    """
    site = await Site(stack).start()
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "twisted_proxy.admin":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        _, nonce = await site.page()
        url = site.member("one")["name"]
        code, headers, _ = await site.post(
            _update(nonce, url, "one", drain="on"),
            {b"Origin": [site.base.encode()], b"Sec-Fetch-Site": [b"same-origin"]},
        )
    finally:
        globalLogPublisher.removeObserver(observe)
    assert code == 303
    assert headers.getRawHeaders(b"location") == [b"/balancer-manager"]
    assert site.member("one")["drain"] is True
    assert lines == [
        f"balancer-manager: 127.0.0.1 changed balancer://web member {url}: "
        "drain off -> on"
    ]
    before = len(site.one.requests), len(site.two.requests)
    for _ in range(6):
        code, _, body = await site.get("/")
        assert (code, body) == (200, b"two saw GET /")
    assert (len(site.one.requests), len(site.two.requests)) == (
        before[0],
        before[1] + 6,
    )
    text, _ = await site.page()
    assert re.search(
        rf'data-member="{re.escape(url)}"><td>[^<]*</td><td>one</td>'
        r'<td class="status">drain</td>',
        text,
    )


@pytest_twisted.ensureDeferred
async def test_forgedAndReplayedPostsAreRefused(stack: Stack) -> None:
    """
    A POST from another site (Origin or Sec-Fetch-Site), one without a
    nonce, and one replaying a used nonce: 403 each, and nothing changes.
    """
    site = await Site(stack).start()
    url = site.member("one")["name"]
    _, nonce = await site.page()
    code, _, body = await site.post(
        _update(nonce, url, "one", disabled="on"),
        {b"Origin": [b"http://attacker.example"]},
    )
    assert code == 403
    assert b"Origin" in body
    code, _, body = await site.post(
        _update(nonce, url, "one", disabled="on"),
        {b"Sec-Fetch-Site": [b"cross-site"]},
    )
    assert code == 403
    assert b"Sec-Fetch-Site" in body
    code, _, _ = await site.post({"balancer": "web", "action": "update", "member": url})
    assert code == 403
    assert site.member("one")["disabled"] is False
    code, _, _ = await site.post(_update(nonce, url, "one", weight="3"))
    assert code == 303
    assert site.member("one")["weight"] == 3
    code, _, body = await site.post(_update(nonce, url, "one", weight="5"))
    assert code == 403
    assert b"nonce" in body
    assert site.member("one")["weight"] == 3


@pytest_twisted.ensureDeferred
async def test_theFormsAddAndRemoveMembers(stack: Stack) -> None:
    """A member added with the form takes traffic; one removed takes none."""
    site = await Site(stack).start()
    three = RecordingBackend("three")
    port = await stack.backend(three)
    _, nonce = await site.page()
    fields = {"nonce": nonce, "balancer": "web", "action": "add"}
    fields.update(url=f"http://127.0.0.1:{port}", route="three", weight="1")
    code, _, _ = await site.post(fields)
    assert code == 303
    assert site.member("three")["name"] == f"http://127.0.0.1:{port}"
    for route in ("one", "two"):
        _, nonce = await site.page()
        name = site.member(route)["name"]
        fields = {"nonce": nonce, "balancer": "web", "action": "remove", "member": name}
        code, _, _ = await site.post(fields)
        assert code == 303
    for _ in range(3):
        code, _, body = await site.get("/")
        assert (code, body) == (200, b"three saw GET /")
    assert [m["route"] for m in site.service.balancer.snapshot()["web"]] == ["three"]
    _, nonce = await site.page()
    code, _, body = await site.post(
        {"nonce": nonce, "balancer": "web", "action": "add", "url": "ftp://x"}
    )
    assert code == 400
    assert body.startswith(b"url: expected")


@pytest_twisted.ensureDeferred
async def test_theJSONAPI(stack: Stack, tmp_path: Path) -> None:
    """
    GET lists, PATCH changes a member by route or by its encoded URL, DELETE
    removes, POST adds; with token_file each asks for the bearer token.
    """
    token = tmp_path / "token"
    token.write_text("0123456789abcdef-token\n")
    site = await Site(stack).start(f'token_file = "{token}"', configDir=str(tmp_path))
    auth = {b"Authorization": [b"Bearer 0123456789abcdef-token"]}
    code, headers, _ = await site.get("/balancer-manager/api")
    assert code == 401
    assert headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
    code, _, body = await site.get("/balancer-manager/api", headers=auth)
    assert code == 200
    [balancer] = json.loads(body)["balancers"]
    assert balancer["name"] == "web"
    assert [m["id"] for m in balancer["members"]] == ["one", "two"]
    patch = {b"Content-Type": [b"application/json"], **auth}
    code, _, body = await site.send(
        "PATCH",
        "/balancer-manager/api/balancers/web/members/one",
        json.dumps({"weight": 4, "standby": True}).encode(),
        headers=patch,
    )
    assert code == 200
    assert (json.loads(body)["weight"], site.member("one")["standby"]) == (4, True)
    url = site.member("two")["name"]
    code, _, body = await site.send(
        "PATCH",
        "/balancer-manager/api/balancers/web/members/" + quote(url, safe=""),
        json.dumps({"weight": 0}).encode(),
        headers=patch,
    )
    assert code == 400
    assert json.loads(body) == {"error": "weight: expected a positive integer, got 0"}
    code, _, body = await site.send(
        "DELETE",
        "/balancer-manager/api/balancers/web/members/" + quote(url, safe=""),
        b"",
        headers=auth,
    )
    assert (code, json.loads(body)) == (200, {"removed": url})
    code, _, body = await site.send(
        "POST",
        "/balancer-manager/api/balancers/web/members",
        json.dumps({"url": url, "route": "back"}).encode(),
        headers=patch,
    )
    assert code == 201
    assert json.loads(body)["id"] == "back"
    code, _, _ = await site.send(
        "PATCH",
        "/balancer-manager/api/balancers/web/members/one",
        json.dumps({"drain": True}).encode(),
        headers={**patch, b"Origin": [b"http://attacker.example"]},
    )
    assert code == 403
    assert site.member("one")["drain"] is False


@pytest_twisted.ensureDeferred
async def test_theManagerServesOnlyWhomItsAllowSays(stack: Stack) -> None:
    """A manager whose allow leaves loopback out: 403 for the page and the API."""
    site = await Site(stack).start('allow = ["192.0.2.0/24"]')
    for path in ("/balancer-manager", "/balancer-manager/api"):
        code, _, _ = await site.get(path)
        assert code == 403
