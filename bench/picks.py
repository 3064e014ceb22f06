"""The balancer's selection cost: microseconds per pick, per method and member count.

In-process, on a L{twisted.internet.task.Clock} (no reactor, no I/O): for each
method in L{POLICIES} and each member count, one L{BalancerService} with one
balancer ``b`` of that many members, and a tight loop of
C{pick("b", facts)} + C{release(member, True)} pairs, as the proxy does once per
request. The client address changes from pick to pick (1,024 of them, cycled),
so C{hash} (on C{ip}) spreads over the ring instead of hitting one point. The
same is timed for the method's own C{policy.pick(candidates)} alone, without
the service's filtering (usable, tier, standby) and bookkeeping around it.

Each cell is calibrated to run about C{seconds} in all, split into
L{REPEATS} timings of which the fastest counts (as C{timeit} does; the garbage
collector is off meanwhile). The process is pinned to CPU 0, where the proxy
runs in the throughput part, for the duration.

Run alone as ``python -m bench --picks-only`` (or ``python -m bench.picks``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import cycle, islice
from pathlib import Path
from typing import Any, cast, get_args

from twisted.internet.task import Clock

from twisted_proxy.balancer.keys import RequestFacts
from twisted_proxy.balancer.policy import POLICIES
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import MemberState
from twisted_proxy.config.model import Balancer, BalancerMethod, Member

SIZES = (10, 100, 1000)
REPEATS = 5
PICK_CPU = 0
CLIENTS = 1024
FIRST_PORT = 10_000
BALANCER = "b"


def _noHeader(name: bytes) -> bytes | None:
    """No request headers: the benchmark hashes on the client address."""
    return None


def members(count: int) -> tuple[Member, ...]:
    """C{count} members on 127.0.0.1 (never contacted), routes C{"0"}, C{"1"}..."""
    return tuple(
        Member(
            url=f"http://127.0.0.1:{port}",
            scheme="http",
            host="127.0.0.1",
            port=port,
            route=str(i),
        )
        for i, port in enumerate(range(FIRST_PORT, FIRST_PORT + count))
    )


def requestFacts(count: int = CLIENTS) -> list[RequestFacts]:
    """C{count} requests for C{/x} from as many client addresses."""
    return [
        RequestFacts(
            clientAddress=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            target=b"/x",
            header=_noHeader,
            secure=False,
        )
        for i in range(count)
    ]


def serviceLoop(method: str, count: int) -> Callable[[int], float]:
    """A timer of C{n} service C{pick} + C{release} pairs; returns seconds taken."""
    if method not in get_args(BalancerMethod):
        raise ValueError(f"{method!r} is not a method the config accepts")
    config = Balancer(
        name=BALANCER, method=cast(BalancerMethod, method), members=members(count)
    )
    service = BalancerService([config], Clock())
    allFacts = requestFacts()
    pick = service.pick
    release = service.release

    def run(n: int) -> float:
        facts = list(islice(cycle(allFacts), n))
        began = time.perf_counter()
        for f in facts:
            chosen = pick(BALANCER, f)
            if chosen is None:
                raise RuntimeError(f"{method}: no member picked of {count}")
            release(chosen, True)
        return time.perf_counter() - began

    return run


def policyLoop(method: str, count: int) -> Callable[[int], float]:
    """A timer of C{n} calls of the method's own C{pick} over every member."""
    policy = POLICIES[method]()
    candidates = [MemberState(m, i) for i, m in enumerate(members(count))]
    keys = [f.clientAddress.encode("ascii") for f in requestFacts()]
    pick = policy.pick

    def run(n: int) -> float:
        batch = list(islice(cycle(keys), n))
        began = time.perf_counter()
        for key in batch:
            pick(candidates, key)
        return time.perf_counter() - began

    return run


def timePerCall(run: Callable[[int], float], seconds: float) -> float:
    """Microseconds per call of C{run}'s loop: the fastest of L{REPEATS} timings.

    A first pass (which also builds anything built lazily, such as the hash
    ring) sizes the batches so that all the repeats take about C{seconds}.
    """
    run(1)  # builds what is built on the first pick, out of the sizing
    n = 16
    for _ in range(20):  # bounded: 16 * 2**20 calls at most
        elapsed = run(n)
        if elapsed >= 0.01:
            break
        n *= 2
    perCall = elapsed / n
    batch = max(1, int(seconds / REPEATS / perCall))
    return min(run(batch) / batch for _ in range(REPEATS)) * 1e6


@contextmanager
def pinnedTo(cpu: int) -> Iterator[str]:
    """Run this process on C{cpu} only (if it may), and give back its CPUs after."""
    before = os.sched_getaffinity(0)
    if cpu not in before:
        yield f"not pinned (CPU {cpu} is not available)"
        return
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"CPU {cpu}"
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def noGC() -> Iterator[None]:
    """Keep the cyclic garbage collector out of the timings."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def measure(
    seconds: float = 0.2,
    sizes: Sequence[int] = SIZES,
    methods: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time every method at every size; the figures in µs, as a JSON-ready dict."""
    chosen = list(POLICIES) if methods is None else list(methods)
    service: dict[str, dict[str, float]] = {}
    policy: dict[str, dict[str, float]] = {}
    with pinnedTo(PICK_CPU) as where, noGC():
        for method in chosen:
            if log is not None:
                log(f"pick cost: {method}")
            service[method] = {
                str(n): timePerCall(serviceLoop(method, n), seconds) for n in sizes
            }
            policy[method] = {
                str(n): timePerCall(policyLoop(method, n), seconds) for n in sizes
            }
    return {
        "unit": "us",
        "sizes": list(sizes),
        "seconds_per_cell": seconds,
        "repeats": REPEATS,
        "pinning": where,
        "python": sys.version.split()[0],
        "service_pick_release": service,
        "policy_pick": policy,
    }


def _us(value: float | None) -> str:
    """A per-pick figure at a precision that suits its size."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def summarise(picks: dict[str, Any]) -> str:
    """The pick-cost table: methods down, member counts across, both measures."""
    sizes = [str(n) for n in picks["sizes"]]
    service = picks["service_pick_release"]
    policy = picks["policy_pick"]
    width = 10
    head = "".join(f"{n:>{width}}" for n in sizes)
    lines = [
        f"Selection cost: µs per pick on {picks['pinning']} "
        f"(fastest of {picks['repeats']}, ~{picks['seconds_per_cell']:g} s per cell,"
        " GC off)",
        "",
        f"  {'':<12}{'service pick + release':^{width * len(sizes)}}"
        f"  {'policy.pick alone':^{width * len(sizes)}}",
        f"  {'members:':<12}{head}  {head}",
    ]
    for method in service:
        cells = "".join(f"{_us(service[method].get(n)):>{width}}" for n in sizes)
        alone = "".join(f"{_us(policy[method].get(n)):>{width}}" for n in sizes)
        lines.append(f"  {method:<12}{cells}  {alone}")
    lines.append(
        "  (service: BalancerService.pick + release, with the candidate filtering"
        "\n   and counters a request pays; policy.pick: the method over every member)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, optionally write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="per cell")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    picks = measure(args.seconds, log=lambda m: print(f"bench: {m}", flush=True))
    print(summarise(picks))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(picks, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
