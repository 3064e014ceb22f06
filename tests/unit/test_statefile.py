"""
[proxy] state_file: run-time changes written out after each change and made
again at the next start, unless the configuration file changed that member.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_proxy.admin.statefile import (
    FORMAT,
    StateFile,
    StateFileError,
    readState,
    runtimeState,
)
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.model import Balancer, Member
from twisted_proxy.preflight import stateFileProblem


def member(port: int, **settings: Any) -> Member:
    return Member(f"http://127.0.0.1:{port}", "http", "127.0.0.1", port, **settings)


def balancers(*members: Member) -> list[Balancer]:
    return [Balancer("web", members=members or (member(1), member(2), member(3)))]


def started(path: Path, config: Sequence[Balancer]) -> BalancerService:
    """A balancer service as a start makes it: its state file read back."""
    service = BalancerService(config, Clock())
    StateFile(str(path), service).restore()
    return service


def view(service: BalancerService) -> dict[str, dict[str, Any]]:
    keys = ("route", "weight", "tier", "drain", "disabled", "standby")
    return {m["name"]: {k: m[k] for k in keys} for m in service.snapshot()["web"]}


def test_anUnchangedBalancerRecordsNothing() -> None:
    """With no run-time change, there is nothing to take back."""
    service = BalancerService(balancers(), Clock())
    assert runtimeState(service) == {"format": FORMAT, "balancers": {}}


def test_everyKindOfChangeComesBackAfterARestart(
    tmp_path: Path, logged: list[str]
) -> None:
    """
    Flags, weight, tier and route changed, a member added and one removed:
    each written out as it is made, and the next start from the same
    configuration file is as the last one was left, each change logged.
    """
    path = tmp_path / "state.json"
    first = started(path, balancers())
    first.setFlags("web", "http://127.0.0.1:1", drain=True, weight=3)
    first.setFlags("web", "http://127.0.0.1:2", route="two", tier=1)
    first.addMember("web", member(4, standby=True))
    first.removeMember("web", "http://127.0.0.1:3")
    assert readState(str(path)) == runtimeState(first)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    logged.clear()

    second = started(path, balancers())
    assert view(second) == view(first)
    assert list(view(second)) == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:4",
    ]
    who = f"balancer-manager: state file {path}"
    assert f"{who} changed balancer://web member http://127.0.0.1:1:" in logged[0]
    assert "drain off -> on" in logged[0]
    assert f"{who} added member http://127.0.0.1:4 to balancer://web" in logged
    assert f"{who} removed member http://127.0.0.1:3 from balancer://web" in logged


def test_theConfigurationFilesWordWinsWhereItChangedTheMember(
    tmp_path: Path, logged: list[str]
) -> None:
    """
    A member the configuration file changed since (its weight), a run-time
    member the file now names, a removed member the file changed: those
    changes are dropped, each saying why; the others come back.
    """
    path = tmp_path / "state.json"
    first = started(path, balancers())
    first.setFlags("web", "http://127.0.0.1:1", drain=True)
    first.setFlags("web", "http://127.0.0.1:2", disabled=True)
    first.addMember("web", member(4, weight=2))
    first.removeMember("web", "http://127.0.0.1:3")
    logged.clear()

    edited = balancers(member(1, weight=5), member(2), member(3, tier=1), member(4))
    second = started(path, edited)
    now = view(second)
    assert now["http://127.0.0.1:1"]["drain"] is False
    assert now["http://127.0.0.1:1"]["weight"] == 5
    assert now["http://127.0.0.1:2"]["disabled"] is True
    assert now["http://127.0.0.1:3"]["tier"] == 1
    assert now["http://127.0.0.1:4"]["weight"] == 1
    tail = "; the configuration file's word is kept"
    assert [line for line in logged if line.endswith(tail)] == [
        f"state file {path}: balancer://web member {name}: {why}{tail}"
        for name, why in [
            ("http://127.0.0.1:1", "changed in the configuration file since"),
            ("http://127.0.0.1:4", "now in the configuration file"),
            (
                "http://127.0.0.1:3",
                "changed in the configuration file since its removal",
            ),
        ]
    ]
    # What was dropped is no longer recorded.
    assert list(readState(str(path))["balancers"]["web"]["changed"]) == [  # type: ignore[index]
        "http://127.0.0.1:2"
    ]


def test_aBalancerNoLongerConfiguredIsDropped(
    tmp_path: Path, logged: list[str]
) -> None:
    """Changes to a balancer the file no longer has are dropped and said."""
    path = tmp_path / "state.json"
    started(path, balancers()).setFlags("web", "http://127.0.0.1:1", drain=True)
    service = started(path, [Balancer("api", members=(member(1),))])
    assert service.members("api")[0].drain is False
    assert (
        f"state file {path}: balancer://web is no longer in the configuration;"
        " its run-time changes are dropped"
    ) in logged


def test_aRouteAnotherMemberNowHasIsDropped(tmp_path: Path, logged: list[str]) -> None:
    """A recorded change the running balancer refuses is dropped, not forced."""
    path = tmp_path / "state.json"
    started(path, balancers()).setFlags("web", "http://127.0.0.1:1", route="a")
    edited = balancers(member(1), member(2, route="a"), member(3))
    service = started(path, edited)
    assert service.members("web")[0].member.route is None
    assert any(
        "member http://127.0.0.1:1: route a is http://127.0.0.1:2's already" in line
        for line in logged
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{nope", "is not JSON"),
        ("[]", f'is not a state file (no "format": "{FORMAT}")'),
        ('{"format": "other"}', "is not a state file"),
        (
            json.dumps({"format": FORMAT, "balancers": {"web": {"changed": []}}}),
            "balancers: not the shape this version writes",
        ),
        (b"\xff\xfe".decode("latin-1"), "codec can't decode byte 0xff"),
        ("[" * 100_000, "is not JSON this proxy reads: nested too deeply"),
    ],
)
def test_aBrokenStateFileStopsTheStartAndSaysWhy(
    tmp_path: Path, text: str, why: str
) -> None:
    """
    A state file that is not one is refused at start (and by check), naming
    it, rather than started without the changes it should have held.
    """
    path = tmp_path / "state.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(StateFileError) as refused:
        started(path, balancers())
    assert str(path) in str(refused.value)
    assert why in str(refused.value)
    problem = stateFileProblem(str(path))
    assert problem is not None
    assert str(path) in problem
    assert why in problem
    assert problem.endswith("(delete it to start from the configuration file alone)")


def test_aFolderThatCannotBeWrittenIsACheckProblem(tmp_path: Path) -> None:
    """check names a missing folder, or a directory given as the file."""
    missing = tmp_path / "nowhere" / "state.json"
    assert stateFileProblem(str(missing)) == (
        f"the folder {tmp_path / 'nowhere'} does not exist; create it or name another"
    )
    assert stateFileProblem(str(tmp_path)) == (
        f"{tmp_path} is a directory; name a file in it"
    )
    assert stateFileProblem(str(tmp_path / "state.json")) is None


def test_aWriteThatFailsIsLoggedOnceThenRecovers(
    tmp_path: Path, logged: list[str]
) -> None:
    """
    Its folder gone, the change is still made, the failure logged once (not
    at every change); once the folder is back the next change writes it.
    """
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "state.json"
    service = started(path, balancers())
    folder.rmdir()
    service.setFlags("web", "http://127.0.0.1:1", drain=True)
    service.setFlags("web", "http://127.0.0.1:2", drain=True)
    assert service.members("web")[1].drain is True
    failures = [line for line in logged if "cannot write it" in line]
    assert len(failures) == 1
    assert failures[0].startswith(f"state file {path}: cannot write it: No such file")
    folder.mkdir()
    service.setFlags("web", "http://127.0.0.1:3", drain=True)
    assert f"state file {path}: written again" in logged
    assert len(readState(str(path))["balancers"]["web"]["changed"]) == 3  # type: ignore[index]
    assert os.listdir(folder) == ["state.json"]


def test_aHandEditedValueIsCheckedAsTheAPIChecksIt(
    tmp_path: Path, logged: list[str]
) -> None:
    """
    Recorded values go through the API's own checks: a weight below 1 or a
    "now" that is no table is dropped with the reason, the rest is made.
    """
    path = tmp_path / "state.json"
    file = {
        "http://127.0.0.1:1": {"file": asdict(member(1)), "now": {"weight": 0}},
        "http://127.0.0.1:2": {"file": asdict(member(2)), "now": 5},
        "http://127.0.0.1:3": {"file": asdict(member(3)), "now": {"drain": True}},
    }
    path.write_text(
        json.dumps({"format": FORMAT, "balancers": {"web": {"changed": file}}})
    )
    service = started(path, balancers())
    assert [(m.weight, m.drain) for m in service.members("web")] == [
        (1, False),
        (1, False),
        (1, True),
    ]
    assert any(
        "member http://127.0.0.1:1: weight: expected a positive integer, got 0" in line
        for line in logged
    ), logged
    assert any(
        'member http://127.0.0.1:2: its "now" is not a table of settings' in line
        for line in logged
    )


def test_aStateFileThatIsNoRegularFileIsRefusedUnread(tmp_path: Path) -> None:
    """
    A FIFO (or a device) named as the state file is refused without being
    read: reading one would wait forever, or never end.
    """
    path = tmp_path / "state.json"
    os.mkfifo(path)
    problem = stateFileProblem(str(path))
    assert problem == (
        f"{path} is not a regular file (delete it to start from the"
        " configuration file alone)"
    )


def test_aHugeStateFileIsRefused(tmp_path: Path) -> None:
    """Past 16 MiB it is no state file this proxy wrote: refused unread."""
    path = tmp_path / "state.json"
    with path.open("wb") as f:
        f.truncate(17 * 1024 * 1024)
    with pytest.raises(StateFileError, match="is larger than 16 MiB"):
        readState(str(path))
