"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_twisted

from tests.integration.support import Stack


@pytest_twisted.async_yield_fixture
async def stack() -> AsyncIterator[Stack]:
    """Backends, proxy and clients, torn down after the test."""
    s = Stack()
    yield s
    await s.close()
