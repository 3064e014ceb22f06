"""
twisted-proxy: a reverse proxy and load balancer on Twisted.

The public surface: the services and resources a Twisted program embeds.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
