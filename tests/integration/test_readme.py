"""
README's embedding examples run as printed: the program that mounts
ReverseProxyResource in its own Site, and the .tac file started with
``twistd -ny``. Only the port numbers are changed, to free ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest_twisted

from tests.integration.processes import BIN, ROOT, Child, childEnv, freePort, listening
from tests.integration.support import RecordingBackend, Stack


def embeddingExamples() -> list[str]:
    """The Python code blocks of README's "Embedding it" section, in order."""
    text = (ROOT / "README.rst").read_text()
    section = text.split("\nEmbedding it\n", 1)[1].split("\n=====", 1)[0]
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", section)
    return [
        "\n".join(line[3:] for line in block.rstrip().splitlines()) + "\n"
        for block in blocks
    ]


async def spawn(
    stack: Stack, children: list[tuple[Child, Any]], cwd: Path, *argv: str
) -> Child:
    child = Child()
    program = str(BIN / argv[0])
    transport = stack.reactor.spawnProcess(
        child, program, [program, *argv[1:]], env=childEnv(), path=str(cwd)
    )
    children.append((child, transport))
    return child


@pytest_twisted.ensureDeferred
async def test_embeddedResourceProgramRuns(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """The first example, run as a program, proxies /app/ to its backend."""
    program = embeddingExamples()[0]
    assert "reactor.run()" in program
    assert program.count("3000") == 1
    assert program.count("8000") == 1
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    port = freePort()
    script = tmp_path / "embedded.py"
    script.write_text(
        program.replace("3000", str(backendPort)).replace("8000", str(port))
    )
    child = await spawn(stack, children, tmp_path, "python", str(script))
    await listening(stack, child, port)
    response = await stack.treq().get(f"http://127.0.0.1:{port}/app/x?y=1")
    assert response.code == 200
    assert await response.text() == "backend saw GET /x?y=1"


@pytest_twisted.ensureDeferred
async def test_serviceTacRunsUnderTwistd(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """The second example, saved as proxy.tac, runs with twistd -ny."""
    tac = embeddingExamples()[1]
    assert 'load("site.toml")' in tac
    backendPort = await stack.backend(RecordingBackend())
    port = freePort()
    (tmp_path / "proxy.tac").write_text(tac)
    (tmp_path / "site.toml").write_text(
        f"""
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[[route]]
path = "/"
to = "http://127.0.0.1:{backendPort}/"
"""
    )
    child = await spawn(
        stack, children, tmp_path, "twistd", "-ny", "proxy.tac", "--pidfile="
    )
    await listening(stack, child, port)
    response = await stack.treq().get(f"http://127.0.0.1:{port}/tac")
    assert response.code == 200
    assert await response.text() == "backend saw GET /tac"
