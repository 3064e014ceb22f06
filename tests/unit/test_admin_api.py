"""
The balancer manager's JSON API, answered in process: what a hostile body
gets (the status and the words), and that nothing changed.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from twisted_proxy.admin.api import answerAPI
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.model import Balancer, Member
from twisted_proxy.core.localpage import LocalRequest

JSON = ((b"Content-Type", b"application/json"),)


def _service() -> BalancerService:
    member = Member("http://127.0.0.1:1", "http", "127.0.0.1", 1, route="a")
    return BalancerService([Balancer("web", members=(member,))], Clock())


def _patch(body: bytes) -> tuple[int, dict[str, object]]:
    service = _service()
    request = LocalRequest(b"PATCH", b"/", headers=JSON, body=body)
    response = answerAPI(service, request, ["balancers", "web", "members", "a"], None)
    assert service.members("web")[0].drain is False
    return response.status, json.loads(response.body)


def test_aBodyNestedTooDeeplyIs400() -> None:
    """JSON nested past what the parser recurses into: 400, not a crash."""
    status, answer = _patch(b"[" * 100_000)
    assert status == 400
    assert answer == {"error": "not JSON this proxy reads: nested too deeply"}


def test_aBodyThatIsNotJSONIs400() -> None:
    """Not JSON at all: 400 saying so."""
    status, answer = _patch(b"{drain: true}")
    assert status == 400
    assert str(answer["error"]).startswith("not JSON: ")


def test_aMemberOfTheOtherKindCannotJoin() -> None:
    """tcp:// members and HTTP members never share a balancer, at run time either."""
    service = _service()
    request = LocalRequest(
        b"POST", b"/", headers=JSON, body=b'{"url": "tcp://127.0.0.1:6379"}'
    )
    response = answerAPI(service, request, ["balancers", "web", "members"], None)
    assert response.status == 409
    assert json.loads(response.body) == {
        "error": "url: balancer://web has HTTP members; tcp:// cannot join"
    }
    assert len(service.members("web")) == 1
    stream = Member("tcp://127.0.0.1:1", "tcp", "127.0.0.1", 1)
    tcp = BalancerService([Balancer("db", members=(stream,))], Clock())
    request = LocalRequest(
        b"POST", b"/", headers=JSON, body=b'{"url": "http://127.0.0.1:2"}'
    )
    response = answerAPI(tcp, request, ["balancers", "db", "members"], None)
    assert response.status == 409
    request = LocalRequest(
        b"POST", b"/", headers=JSON, body=b'{"url": "tcp://127.0.0.1:2"}'
    )
    assert answerAPI(tcp, request, ["balancers", "db", "members"], None).status == 201
    assert len(tcp.members("db")) == 2


def test_anAjpMemberJoinsWithItsFellowsSecret() -> None:
    """An AJP member added at run time takes the secret its fellows share."""
    member = Member("ajp://127.0.0.1:1", "ajp", "127.0.0.1", 1, secret="s3cret")
    service = BalancerService([Balancer("tc", members=(member,))], Clock())
    request = LocalRequest(
        b"POST", b"/", headers=JSON, body=b'{"url": "http://127.0.0.1:2"}'
    )
    response = answerAPI(service, request, ["balancers", "tc", "members"], None)
    assert response.status == 409
    assert json.loads(response.body) == {
        "error": "url: balancer://tc has ajp:// members; http:// cannot join"
    }
    request = LocalRequest(
        b"POST", b"/", headers=JSON, body=b'{"url": "ajp://127.0.0.1:2"}'
    )
    response = answerAPI(service, request, ["balancers", "tc", "members"], None)
    assert response.status == 201
    assert b"s3cret" not in response.body
    added = service.members("tc")[1].member
    assert (added.scheme, added.port, added.secret) == ("ajp", 2, "s3cret")
