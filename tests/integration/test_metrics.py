"""
The metrics page end to end: a real proxy in front of a balancer (one member
answering, one refusing connections), scraped over HTTP by a real client;
the text is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.processes import freePort
from tests.integration.support import RecordingBackend, Stack

CONFIG = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:0:interface=127.0.0.1"
[[route]]
path = "/metrics"
handler = "metrics"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
method = "roundrobin"
[[balancer.web.member]]
url = "http://127.0.0.1:{dead}"
[[balancer.web.member]]
url = "http://127.0.0.1:{live}"
"""


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def _member(samples: dict[Any, float], name: str, member: str) -> float:
    return _value(samples, name, balancer="web", member=member)


@pytest_twisted.ensureDeferred
async def test_aScrapeShowsTrafficMembersAndFailovers(stack: Stack) -> None:
    """
    Six requests: each reaches the live member (the dead one costs one
    failover); the scrape counts them by route, member and status class,
    times them, shows the dead member in error and the connect failure.
    """
    dead = freePort()
    live = await stack.backend(RecordingBackend("live"))
    service = await stack.proxy(CONFIG, dead=dead, live=live)
    base = f"http://127.0.0.1:{service.ports[0].getHost().port}"  # type: ignore[attr-defined]
    http = stack.treq()
    for n in range(6):
        response = await http.get(f"{base}/item/{n}")
        assert response.code == 200
        await response.content()
    response = await http.get(base + "/metrics")
    assert response.code == 200
    [kind] = response.headers.getRawHeaders(b"content-type")
    assert kind.startswith(b"text/plain; version=")
    samples = _samples(await response.text())
    deadName, liveName = f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{live}"
    assert (
        _value(
            samples,
            "twisted_proxy_requests_total",
            route="/",
            member=liveName,
            method="GET",
            code="2xx",
        )
        == 6
    )
    assert (
        _value(
            samples,
            "twisted_proxy_request_duration_seconds_count",
            route="/",
            method="GET",
        )
        == 6
    )
    assert (
        _value(
            samples,
            "twisted_proxy_request_duration_seconds_bucket",
            route="/",
            method="GET",
            le="+Inf",
        )
        == 6
    )
    assert _value(samples, "twisted_proxy_upstream_events_total", kind="connect") == 1
    assert _value(samples, "twisted_proxy_upstream_events_total", kind="failover") == 1
    assert (
        _value(
            samples,
            "twisted_proxy_member_requests_total",
            balancer="web",
            member=liveName,
        )
        == 6
    )
    assert (
        _value(
            samples,
            "twisted_proxy_member_failures_total",
            balancer="web",
            member=deadName,
        )
        == 1
    )
    assert _member(samples, "twisted_proxy_member_usable", deadName) == 0
    assert _member(samples, "twisted_proxy_member_usable", liveName) == 1
    assert (
        _value(
            samples,
            "twisted_proxy_member_health",
            balancer="web",
            member=liveName,
            state="unknown",
        )
        == 1
    )
    assert _value(samples, "twisted_proxy_open_connections", protocol="http/1.1") >= 1
    assert _value(samples, "twisted_proxy_config_generation") == 1
    assert _value(samples, "twisted_proxy_config_reloads_total", result="taken") == 0
    assert _value(samples, "twisted_proxy_sent_bytes_total", route="/") > 0


@pytest_twisted.ensureDeferred
async def test_memberStateIsReadAtTheScrape(stack: Stack) -> None:
    """A member drained between two scrapes shows unusable in the second."""
    dead = freePort()
    live = await stack.backend(RecordingBackend("live"))
    service = await stack.proxy(CONFIG, dead=dead, live=live)
    base = f"http://127.0.0.1:{service.ports[0].getHost().port}"  # type: ignore[attr-defined]
    http = stack.treq()
    liveName = f"http://127.0.0.1:{live}"

    async def usable() -> float:
        response = await http.get(base + "/metrics")
        samples = _samples(await response.text())
        return _member(samples, "twisted_proxy_member_usable", liveName)

    assert await usable() == 1
    service.balancer.setFlags("web", liveName, drain=True)
    assert await usable() == 0
    service.balancer.setFlags("web", liveName, drain=False)
    assert await usable() == 1
