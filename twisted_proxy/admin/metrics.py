"""
The metrics page (C{handler = "metrics"}) in Prometheus' text format,
written by C{prometheus_client}.

Every value is read when Prometheus scrapes, from the live state: the
balancer's members (their health is the state they are in now, not the last
one a hook happened to set, so a gauge never goes stale), the connections
open now, and the counters the listeners and leases keep
(L{twisted_proxy.core.traffic}). Labels come from the configuration (routes,
balancers, members) or small fixed sets, so clients cannot grow them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from twisted_proxy.admin.page import ReadOnlyPage
from twisted_proxy.admin.view import ProxyView
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import DOWN, UNKNOWN, UP
from twisted_proxy.core.localpage import (
    LocalRequest,
    LocalResponse,
)

__all__ = ["Metrics", "ProxyCollector"]

_HEALTH_STATES = (UP, DOWN, UNKNOWN)


class ProxyCollector:
    """What a scrape reads: one proxy's state and counters, as metric families."""

    def __init__(self, view: ProxyView, balancer: BalancerService) -> None:
        self._view = view
        self._balancer = balancer

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        yield from self._traffic()
        yield from self._connections()
        yield from self._members()

    def _traffic(self) -> Iterator[Metric]:
        counts = self._view.trafficCounts()
        snapshot = self._view.traffic()
        uptime = GaugeMetricFamily(
            "twisted_proxy_uptime_seconds", "Seconds since the proxy started."
        )
        uptime.add_metric([], snapshot.uptime)
        yield uptime
        generation = GaugeMetricFamily(
            "twisted_proxy_config_generation",
            "The configuration's generation: 1 at start, +1 per reload taken.",
        )
        generation.add_metric([], self._view.configGeneration())
        yield generation
        reloads = CounterMetricFamily(
            "twisted_proxy_config_reloads",
            "Configuration reloads asked for, by result (taken or refused).",
            labels=["result"],
        )
        for result, count in sorted(self._view.reloads().items()):
            reloads.add_metric([result], count)
        yield reloads
        requests = CounterMetricFamily(
            "twisted_proxy_requests",
            "Requests answered, by route, balancer member, method and status class.",
            labels=["route", "member", "method", "code"],
        )
        for (route, member, method, code), value in sorted(counts.byLabels.items()):
            requests.add_metric([route, member, method, code], value)
        yield requests
        durations = HistogramMetricFamily(
            "twisted_proxy_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response.",
            labels=["route", "method"],
        )
        for (route, method), histogram in sorted(counts.durations.items()):
            buckets = [
                ("+Inf" if math.isinf(bound) else repr(bound), float(count))
                for bound, count in histogram.cumulative()
            ]
            durations.add_metric([route, method], buckets, histogram.total)
        yield durations
        received = CounterMetricFamily(
            "twisted_proxy_received_bytes",
            "Bytes received from clients (heads and bodies), by route.",
            labels=["route"],
        )
        sent = CounterMetricFamily(
            "twisted_proxy_sent_bytes",
            "Response body bytes sent to clients, by route.",
            labels=["route"],
        )
        for route, (bytesIn, bytesOut) in sorted(counts.bytesByRoute.items()):
            received.add_metric([route], bytesIn)
            sent.add_metric([route], bytesOut)
        yield received
        yield sent
        upstream = CounterMetricFamily(
            "twisted_proxy_upstream_events",
            "Trouble reaching backends by kind (connect, timeout, reset, "
            "protocol), and requests sent again (retry, failover).",
            labels=["kind"],
        )
        for kind, value in sorted(counts.upstream.items()):
            upstream.add_metric([kind], value)
        yield upstream
        messages = CounterMetricFamily(
            "twisted_proxy_websocket_messages",
            "WebSocket messages relayed, up (to the backend) and down.",
            labels=["direction"],
        )
        for direction, value in sorted(counts.websocketMessages.items()):
            messages.add_metric([direction], value)
        yield messages

    def _connections(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "twisted_proxy_open_connections",
            "Client connections open now, by protocol.",
            labels=["protocol"],
        )
        for protocol, value in self._view.openConnections().items():
            gauge.add_metric([protocol], value)
        yield gauge
        processes = self._view.workerProcesses()
        running = GaugeMetricFamily(
            "twisted_proxy_worker_processes",
            "Processes serving the listeners now ([proxy] workers).",
        )
        running.add_metric([], processes["running"])
        yield running
        restarts = CounterMetricFamily(
            "twisted_proxy_worker_restarts",
            "Worker processes that ended unasked and were started again.",
        )
        restarts.add_metric([], processes["restarts"])
        yield restarts

    def _members(self) -> Iterator[Metric]:
        labels = ["balancer", "member"]
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "requests": CounterMetricFamily(
                "twisted_proxy_member_requests",
                "Requests sent to a balancer member.",
                labels=labels,
            ),
            "failures": CounterMetricFamily(
                "twisted_proxy_member_failures",
                "Failed exchanges with a member (each put it in error).",
                labels=labels,
            ),
            "bytes_in": CounterMetricFamily(
                "twisted_proxy_member_received_bytes",
                "Response body bytes received from a member (heads not counted).",
                labels=labels,
            ),
            "bytes_out": CounterMetricFamily(
                "twisted_proxy_member_sent_bytes",
                "Request body bytes sent to a member (heads not counted).",
                labels=labels,
            ),
            "in_flight": GaugeMetricFamily(
                "twisted_proxy_member_in_flight",
                "Requests (and WebSockets) a member is serving now.",
                labels=labels,
            ),
            "response_time": GaugeMetricFamily(
                "twisted_proxy_member_response_time_seconds",
                "A member's smoothed response time.",
                labels=labels,
            ),
        }
        health = GaugeMetricFamily(
            "twisted_proxy_member_health",
            "1 for the health state a member is in now (up, down or unknown).",
            labels=[*labels, "state"],
        )
        usable = GaugeMetricFamily(
            "twisted_proxy_member_usable",
            "1 when a member takes new requests now: not disabled, draining, "
            "in error or down.",
            labels=labels,
        )
        for balancer, members in self._balancer.snapshot().items():
            for member in members:
                key = [balancer, member["name"]]
                for field, family in families.items():
                    family.add_metric(key, member[field])
                for state in _HEALTH_STATES:
                    health.add_metric(
                        [*key, state], 1.0 if member["health"] == state else 0.0
                    )
                takes = not (
                    member["disabled"]
                    or member["drain"]
                    or member["in_error"]
                    or member["health"] == DOWN
                )
                usable.add_metric(key, 1.0 if takes else 0.0)
        yield from families.values()
        yield health
        yield usable


class Metrics(ReadOnlyPage):
    """The handler of a C{metrics} route: the registry of one proxy, scraped."""

    def __init__(self, view: ProxyView, balancer: BalancerService) -> None:
        super().__init__(view)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProxyCollector(view, balancer))  # type: ignore[arg-type]

    def render(self, request: LocalRequest) -> LocalResponse:
        return LocalResponse(
            200,
            generate_latest(self.registry),
            ((b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii")),),
        )
