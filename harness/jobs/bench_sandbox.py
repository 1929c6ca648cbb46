"""`harness bench sandbox`: the code sandbox's throughput with each run starting its own interpreter
(the former way) and with the fork server (harness/execution/sandbox.py, "How a run works"), side
by side in one run, on trivial programs and on tiny code-suite responses scored as training scores
them; the rewards of both ways are compared.

    harness bench sandbox --profile tiny [--samples 2048] [--repeats 3]
"""

from __future__ import annotations

import os
import statistics
import time

from harness.execution import sandbox
from harness.execution.bounded import ScorerPool
from suites import build_suite


def bench_sandbox(cfg, samples: int, repeats: int, log=print) -> None:
    """The code sandbox's throughput per run start vs fork server, side by side in one process, on
    two workloads: `samples / 4` trivial
    programs (sandbox.benchmark) and `samples / 8` responses to the profile's tiny code items
    (their reference programs, every other one made wrong by an extra line), scored as training
    scores them (the suite's scorer in a ScorerPool of `scoring.workers` processes; each worker's
    first calls, which start its fork server, are not timed). Median of `repeats` rounds, the
    order of the two ways alternating; the rewards and statuses of both ways are compared."""

    ways = {"per-run start": False, "fork server": True}
    load_before = os.getloadavg()[0]
    programs = max(1, samples // 4)
    suite = build_suite("code", cfg.suites, cfg.seed) if cfg.suites.code.source == "procedural" else None
    calls = []
    if suite is not None:
        items = suite.items("train", max(2, samples // 8), unique=True)
        for i, item in enumerate(items):
            response = item.target if i % 2 == 0 else item.target[:-3] + "print(0)\n```"
            calls.append((response, item.reference))
    trivial: dict[str, list[float]] = {way: [] for way in ways}
    scored: dict[str, list[float]] = {way: [] for way in ways}
    outcomes: dict[str, list[tuple[float, str]]] = {}
    workers = 0
    previous = sandbox.use_fork_server(True)
    try:
        for round_index in range(repeats):
            order = list(ways) if round_index % 2 == 0 else list(reversed(ways))
            for way in order:
                sandbox.use_fork_server(ways[way])
                result = sandbox.benchmark(n=programs)
                workers = result["workers"]
                trivial[way].append(result["executions_per_s"])
                if not calls:
                    continue
                with ScorerPool(cfg.scoring.workers, cfg.scoring.timeout_s) as pool:
                    pool.map(suite.scorer, calls[: 2 * cfg.scoring.workers], suite.scorer_timeout_s)  # start-up, untimed
                    start = time.monotonic()
                    results = pool.map(suite.scorer, calls, suite.scorer_timeout_s)
                    scored[way].append(len(calls) / (time.monotonic() - start))
                outcomes.setdefault(way, [(r.reward, r.status) for r in results])
    finally:
        sandbox.use_fork_server(previous)
    median = {way: statistics.median(trivial[way]) for way in ways}
    seconds = programs / median["fork server"]
    log(f"sandbox: {programs} trivial programs on {workers} workers in {seconds:.1f} s: "
          f"{median['fork server']:.1f} executions/s")
    log(f"sandbox runs started per run vs by the fork server, median of {repeats} (load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs):")
    log("| workload | per-run start | fork server | fork server / per-run |")
    log("|---|---|---|---|")
    log(f"| trivial programs, executions/s ({programs} on {workers} threads) | {median['per-run start']:.1f} | "
          f"{median['fork server']:.1f} | {median['fork server'] / median['per-run start']:.2f}x |")
    if not calls:
        log("tiny code responses: not measured (the profile's code suite has no reference programs)")
        return
    rate = {way: statistics.median(scored[way]) for way in ways}
    tests = statistics.mean(len(reference) for _, reference in calls)
    one_run = "in one run" if cfg.suites.code.tests_in_one_process else "a run each"
    log(f"| tiny code responses scored/s ({len(calls)}, {tests:.0f} tests each, {one_run}; "
          f"{cfg.scoring.workers} scorer workers) | {rate['per-run start']:.1f} | {rate['fork server']:.1f} | "
          f"{rate['fork server'] / rate['per-run start']:.2f}x |")
    same = sum(a == b for a, b in zip(outcomes["per-run start"], outcomes["fork server"]))
    log(f"rewards and statuses of the {len(calls)} responses, per run vs fork server: {same} the same, "
          f"{len(calls) - same} different")
