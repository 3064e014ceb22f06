"""
The status and configuration pages end to end: a real proxy, backend and
client on 127.0.0.1; what the pages say is checked against the traffic sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted

from tests.integration.support import RecordingBackend, Stack

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/server-status"
handler = "status"
[[route]]
path = "/server-info"
handler = "info"
[[route]]
path = "/balancer-manager"
handler = "balancer-manager"
token_file = "{token}"
[[route]]
path = "/"
to = "http://127.0.0.1:{port}/"
[route.request_headers]
set = {{ "X-Backend-Secret" = "hunter2-value" }}
[[route]]
path = "/tomcat/"
to = "ajp://127.0.0.1:8009/"
secret = "ajp-route-secret"
[[route]]
path = "/tc/"
to = "balancer://tc/"
[balancer.tc]
[[balancer.tc.member]]
url = "ajp://127.0.0.1:8010"
secret = "ajp-member-secret"
"""


async def _start(stack: Stack, tmp_path: Path) -> tuple[str, RecordingBackend]:
    token = tmp_path / "manager.token"
    token.write_text("a-token-of-sixteen-chars\n")
    backend = RecordingBackend("app")
    port = await stack.backend(backend)
    service = await stack.proxy(
        CONFIG, configDir=str(tmp_path), port=port, token=str(token)
    )
    proxyPort = service.ports[0].getHost().port  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{proxyPort}", backend


@pytest_twisted.ensureDeferred
async def test_statusCountsWhatWasServed(stack: Stack, tmp_path: Path) -> None:
    """
    After five requests (one with a secret in its query), ?auto reports
    them, the open connection and its protocol; no query string is shown.
    """
    base, backend = await _start(stack, tmp_path)
    http = stack.treq()
    for n in range(4):
        response = await http.get(f"{base}/page/{n}")
        assert response.code == 200
        await response.content()
    response = await http.get(f"{base}/login?token=s3cr3t-in-query")
    await response.content()
    assert len(backend.requests) == 5
    response = await http.get(f"{base}/server-status?auto")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [
        b"text/plain; charset=utf-8"
    ]
    text = await response.text()
    facts = dict(line.split(": ", 1) for line in text.splitlines())
    assert facts["ServerVersion"].startswith("twisted-proxy/")
    assert facts["Total Accesses"] == "5"
    assert float(facts["ReqPerSec"]) > 0
    assert int(facts["ConnsTotal"]) >= 1
    assert facts["ConnsHTTP11"] == facts["ConnsTotal"]
    assert (facts["ConnsHTTP2"], facts["ConnsWebSocket"], facts["ConnsTunnel"]) == (
        "0",
        "0",
        "0",
    )
    assert int(facts["BusyWorkers"]) >= 1
    assert int(facts["BusyWorkers"]) + int(facts["IdleWorkers"]) == int(
        facts["ConnsTotal"]
    )
    response = await http.get(f"{base}/server-status")
    page = await response.text()
    assert "<h1>Server status</h1>" in page
    assert "<th>Total Accesses</th><td>6</td>" in page
    assert "s3cr3t" not in text + page


@pytest_twisted.ensureDeferred
async def test_infoShowsTheConfigurationButNoSecret(
    stack: Stack, tmp_path: Path
) -> None:
    """The info page lists listeners, routes and their targets, no secret."""
    base, _ = await _start(stack, tmp_path)
    http = stack.treq()
    response = await http.get(f"{base}/server-info")
    assert response.code == 200
    page = await response.text()
    assert "Listeners:" in page
    assert "tcp:0:interface=127.0.0.1" in page
    assert "handler:balancer-manager" in page
    assert "set=X-Backend-Secret" in page
    assert "hunter2" not in page
    assert "manager.token" not in page
    assert "a-token-of-sixteen" not in page
    assert "ajp://127.0.0.1:8009/" in page
    assert "ajp-route-secret" not in page
    assert "ajp-member-secret" not in page
    for path in ("/balancer-manager", "/balancer-manager/api/balancers/tc/members"):
        response = await http.get(
            base + path,
            headers={b"Authorization": [b"Bearer a-token-of-sixteen-chars"]},
        )
        assert response.code == 200
        text = await response.text()
        assert "ajp://127.0.0.1:8010" in text
        assert "ajp-member-secret" not in text


@pytest_twisted.ensureDeferred
async def test_thePagesAreReadOnly(stack: Stack, tmp_path: Path) -> None:
    """POST to the status or info page: 405 with Allow; under them: 404."""
    base, _ = await _start(stack, tmp_path)
    http = stack.treq()
    for path in ("/server-status", "/server-info"):
        response = await http.post(base + path, data=b"x")
        assert response.code == 405
        assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
        await response.content()
        response = await http.get(base + path + "/more")
        assert response.code == 404
        await response.content()
