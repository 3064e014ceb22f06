"""``python -m twisted_proxy``: the ``twisted-proxy`` command."""

from __future__ import annotations

import sys

from twisted_proxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
