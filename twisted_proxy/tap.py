"""
``twistd proxy``: options in, a L{ProxyService} out.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from twisted_proxy.config import ConfigError, load


class Options(usage.Options):
    """Options for ``twistd proxy``."""

    synopsis = "--config FILE"
    longdesc = (
        "Run twisted-proxy, a reverse proxy and load balancer, from a TOML "
        "configuration file."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file."],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")


def makeService(options: Options) -> IService:
    """Build the proxy service from the configuration file named in C{options}."""
    from twisted_proxy.service import ProxyService

    try:
        config = load(options["config"])
    except ConfigError as e:
        raise SystemExit(f"twisted-proxy: configuration not valid\n{e}") from None
    except OSError as e:
        raise SystemExit(
            f"twisted-proxy: cannot read {options['config']}: {e}"
        ) from None
    return ProxyService(config)
