"""The ``twistd proxy`` plugin: one line, importing twisted_proxy lazily."""

from __future__ import annotations

from twisted.application.service import ServiceMaker

proxy = ServiceMaker(
    "twisted-proxy",
    "twisted_proxy.tap",
    "A reverse proxy and load balancer (mod_proxy's job) on Twisted.",
    "proxy",
)
