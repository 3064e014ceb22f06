"""
The version of twisted-proxy: what C{server_tokens = "full"} and C{via = "full"}
tell, and what the package face re-exports as C{__version__}.

Kept equal to pyproject.toml's C{version} (a unit test checks it).
"""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0"
