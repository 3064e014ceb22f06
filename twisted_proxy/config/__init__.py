"""
The configuration: the TOML vocabulary, read and validated into plain values.

L{load} reads a file, L{loadString} validates text; both raise L{ConfigError}
listing every problem at once. The model classes are what the rest of
twisted-proxy reads.

The modules: C{model} (the frozen values), C{vocabulary} (which keys each
table accepts, read off the model), C{schemes} (backend URL schemes and their
default ports), C{convert} (one value in, one model value out), C{checker}
(the walk's errors), and the walkers: C{loader} (the file, C{[proxy]},
C{[[listen]]}), C{tls}, C{routes}, C{balancers}.
"""

from __future__ import annotations

from .loader import ConfigError, load, loadString, parseTarget
from .model import (
    Balancer,
    BalancerMethod,
    Config,
    HeaderDirectives,
    HealthCheck,
    HealthMethod,
    Listener,
    ListenerConnect,
    ListenerTLS,
    LogLevel,
    Member,
    Network,
    ProxySettings,
    Route,
    ServerTokens,
    SNICertificate,
    Sticky,
    Target,
    TLSVersion,
    ViaMode,
)

__all__ = [
    "Balancer",
    "BalancerMethod",
    "Config",
    "ConfigError",
    "HeaderDirectives",
    "HealthCheck",
    "HealthMethod",
    "Listener",
    "ListenerConnect",
    "ListenerTLS",
    "LogLevel",
    "Member",
    "Network",
    "ProxySettings",
    "Route",
    "SNICertificate",
    "ServerTokens",
    "Sticky",
    "TLSVersion",
    "Target",
    "ViaMode",
    "load",
    "loadString",
    "parseTarget",
]
