"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest_twisted

from tests.integration.processes import Child
from tests.integration.support import Stack

if TYPE_CHECKING:
    from tests.integration.wspeers import AsyncioThread


@pytest_twisted.async_yield_fixture
async def stack() -> AsyncIterator[Stack]:
    """Backends, proxy and clients, torn down after the test."""
    s = Stack()
    yield s
    await s.close()


@pytest_twisted.async_yield_fixture
async def children() -> AsyncIterator[list[tuple[Child, Any]]]:
    """Child processes, killed at the end if a test left them running."""
    started: list[tuple[Child, Any]] = []
    yield started
    for child, transport in started:
        if child.endedWith is None:
            transport.signalProcess("KILL")
        await child.whenEnded()


@pytest_twisted.async_yield_fixture
async def peers(stack: Stack) -> AsyncIterator[AsyncioThread]:
    """An asyncio loop for the websockets peers; every peer closed at the end."""
    # Imported here: make test-oldest runs without the websockets library.
    from tests.integration.wspeers import AsyncioThread

    thread = AsyncioThread(stack.reactor)
    try:
        yield thread
        await thread.closeAll()
    finally:
        thread.stop()
