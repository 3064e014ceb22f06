"""
Access-log targets: a file that follows logrotate on reopen, standard output,
and twistd's log for a daemon (whose standard output is /dev/null).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import LogEvent, globalLogPublisher

from twisted_proxy.accesslog.target import PIPE_BUF, LogTarget, linePieces


def test_fileReopenFollowsRename(tmp_path: Path) -> None:
    """After the file is renamed, reopen sends the next lines to a new file."""
    path = tmp_path / "access.log"
    target = LogTarget(str(path))
    target.write("one\n")
    os.rename(path, tmp_path / "access.log.1")
    target.write("two\n")  # still the renamed file: nothing told it yet
    assert target.reopen() is True
    target.write("three\n")
    target.close()
    assert (tmp_path / "access.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"


def test_fileIsAppendedTo(tmp_path: Path) -> None:
    """A file is appended to, and what is flushed is on disk."""
    path = tmp_path / "access.log"
    path.write_text("old\n")
    target = LogTarget(str(path))
    target.write("new\n")
    target.flush()
    assert path.read_text() == "old\nnew\n"
    target.close()


def test_reopenFailureKeepsOldFile(tmp_path: Path, logged: list[LogEvent]) -> None:
    """A file that cannot be opened again keeps the old one, and says why."""
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "access.log"
    target = LogTarget(str(path))
    target.write("one\n")
    os.rename(folder, tmp_path / "moved")
    assert target.reopen() is False
    target.write("two\n")
    target.close()
    assert (tmp_path / "moved" / "access.log").read_text() == "one\ntwo\n"
    [event] = [e for e in logged if e.get("log_level") is not None and "path" in e]
    assert event["path"] == str(path)
    assert event["why"] == "No such file or directory"


def test_stdoutIsNeverClosed(capsys: pytest.CaptureFixture[str]) -> None:
    """``-`` writes to standard output; reopen and close leave it open."""
    target = LogTarget("-")
    target.write("line\n")
    assert target.reopen() is True
    target.close()
    target.flush()
    assert capsys.readouterr().out == "line\n"


def test_daemonSendsLinesToTheLog(
    capsys: pytest.CaptureFixture[str], logged: list[LogEvent]
) -> None:
    """Under a daemon, ``-`` is one log event per line, not standard output."""
    target = LogTarget("-", daemon=True)
    target.write('1.2.3.4 - - "GET / HTTP/1.1" 200 5\n5.6.7.8 - - "GET /x" 404 0\n')
    target.close()
    assert capsys.readouterr().out == ""
    lines = [e for e in logged if e.get("log_namespace") == "twisted_proxy.access"]
    assert [e["line"] for e in lines] == [
        '1.2.3.4 - - "GET / HTTP/1.1" 200 5',
        '5.6.7.8 - - "GET /x" 404 0',
    ]


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    """The log events emitted during the test."""
    events: list[LogEvent] = []
    observer = events.append
    globalLogPublisher.addObserver(observer)  # type: ignore[arg-type]
    yield events
    globalLogPublisher.removeObserver(observer)  # type: ignore[arg-type]


class _Recorder:
    """A standard output that records what reaches the OS at each flush."""

    def __init__(self) -> None:
        self.pending = ""
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.pending += text
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.writes.append(self.pending)
        self.pending = ""


def test_sharedStandardOutputGetsWholeLinesInPipeSizedWrites(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    With worker processes on one standard output, each write the OS gets
    is whole lines of at most PIPE_BUF bytes (a pipe keeps such writes whole
    against other writers); a line longer than that goes alone.
    """
    recorder = _Recorder()
    monkeypatch.setattr("sys.stdout", recorder)
    lines = [f"127.0.0.1 GET /{'é' * (i % 50)}{i}\n" for i in range(400)]
    long = "x" * 5000 + "\n"
    chunk = "".join(lines[:200]) + long + "".join(lines[200:])
    target = LogTarget("-", shared=True)
    target.write(chunk)
    assert "".join(recorder.writes) + recorder.pending == chunk
    assert recorder.pending == ""
    assert len(recorder.writes) > 5
    for write in recorder.writes:
        assert write.endswith("\n")
        assert len(write.encode()) <= PIPE_BUF or write == long
    assert long in recorder.writes


def test_unsharedStandardOutputIsOneWrite(monkeypatch: pytest.MonkeyPatch) -> None:
    """One process alone on standard output: the chunk goes as it is."""
    recorder = _Recorder()
    monkeypatch.setattr("sys.stdout", recorder)
    chunk = "".join(f"line {i}\n" for i in range(2000))
    LogTarget("-").write(chunk)
    assert recorder.writes == []
    assert recorder.pending == chunk


def test_linePiecesCountBytesNotCharacters() -> None:
    """Pieces are measured in UTF-8 bytes: 2,000 two-byte characters fill one."""
    line = "é" * 1500 + "\n"
    assert linePieces(line * 2) == [line, line]
    assert linePieces("a\nb\n", limit=4) == ["a\nb\n"]
    assert linePieces("") == []
