"""The version the package reports is the one it is built and published with."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

import twisted_proxy
from twisted_proxy.core.version import VERSION

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_versionIsPyprojects() -> None:
    """core/version.py and pyproject.toml name the same version."""
    project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert project["version"] == VERSION


def test_packageFaceReExportsIt() -> None:
    """twisted_proxy.__version__ is core/version.py's."""
    assert twisted_proxy.__version__ == VERSION
