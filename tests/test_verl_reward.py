"""The verl reward module's scorer processes (harness/backends/verl/reward.py), without verl: verl's
reward actor calls `compute_score` from the threads of its event loop's executor, so these tests
call it from threads the same way."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.backends.verl import references, reward
from harness.backends.verl.data import rows
from harness.config import load_config
from harness.execution.bounded import ScoreResult
from suites import build_suite


def rendezvous(response: str, reference: dict) -> ScoreResult:
    """A scorer that enters, then waits until `parties` calls are inside at once (each marks its
    entry with a file in `folder`): reward 1 if they all were within 20 s, 0 if not. Calls
    serialised on one process would never meet. `extracted`: the pid of the scorer process."""
    Path(reference["folder"], response).touch()
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        if len(os.listdir(reference["folder"])) >= reference["parties"]:
            return ScoreResult(1.0, "correct", str(os.getpid()))
        time.sleep(0.005)
    return ScoreResult(0.0, "wrong", str(os.getpid()))


def whose(response: str, reference: dict) -> ScoreResult:
    """The pid of the scorer process the call ran in."""
    time.sleep(0.05)
    return ScoreResult(1.0, "correct", str(os.getpid()))


def call(spec: str, response: str, reference, processes: int) -> dict:
    info = {"scorer": f"{__name__}:{spec}", "scorer_kwargs": "{}", "timeout_s": 30.0}
    return reward.compute_score(data_source="test", solution_str=response, ground_truth=references.encode(reference),
                                extra_info=info, scorer_processes=processes)


def test_concurrent_calls_of_one_worker_are_inside_the_scorer_at_once(tmp_path):
    """Three threads of one worker, three scorer processes: all three calls are in their scorers at
    the same moment (each waits for the others), in three different processes."""
    reference = {"folder": str(tmp_path), "parties": 3}
    with ThreadPoolExecutor(3) as threads:
        got = list(threads.map(lambda i: call("rendezvous", f"call-{i}", reference, 3), range(3)))
    assert [g["score"] for g in got] == [1.0, 1.0, 1.0], got


def test_the_processes_are_bounded_and_reused(tmp_path):
    """Eight threads, two scorer processes: the calls share those two, never a third."""
    processes = reward.shared_processes(2)
    pids = set()

    def one(i):
        fn = reward.scorer(f"{__name__}:whose")
        pids.add(processes.score(fn, (f"r{i}", {}), 10.0).extracted)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(pids) <= 2 and processes._started <= 2, pids


def test_concurrent_scores_equal_serial_scores():
    """The tiny profile's three domains, each item's reference answer and a wrong one, scored from
    eight threads on four scorer processes: exactly the suites' own serial scores, in order."""
    cfg = load_config("tiny")
    suites = [build_suite(name, cfg.suites, cfg.seed) for name in ("math", "code", "reasoning_gym")]
    calls, expected = [], []
    for suite in suites:
        items = suite.items("train", 6)
        for item, row in zip(items, rows(cfg, [suite], "train", 6)):
            for response in (item.target, "no idea"):
                calls.append((row, response))
                expected.append(suite.score(response, item).reward)
    with ThreadPoolExecutor(8) as threads:
        got = list(threads.map(lambda c: reward.compute_score(
            data_source=c[0]["data_source"], solution_str=c[1], ground_truth=c[0]["reward_model"]["ground_truth"],
            extra_info=c[0]["extra_info"], scorer_processes=4)["score"], calls))
    assert got == expected
    assert len(calls) == 36 and 0 < sum(expected) < len(expected)


@pytest.mark.parametrize(("cpus", "per_node", "reserved", "want"), [
    (2, 1, 0, 2), (2, 2, 0, 1), (112, 1, 16, 32), (112, 4, 16, 24), (224, 7, 16, 29), (8, 8, 16, 1)])
def test_default_scorer_processes_share_the_node(cpus, per_node, reserved, want):
    assert reward.default_scorer_processes(cpus, per_node, reserved) == want


@pytest.mark.parametrize(("cpus", "reserved", "want"), [(2, 0, (1, 2)), (112, 16, (3, 32)), (224, 16, (7, 30)),
                                                        (64, 16, (2, 24)), (8, 16, (1, 1))])
def test_workers_for_a_node(cpus, reserved, want):
    assert reward.workers_for(cpus, reserved) == want


def compiled(node_cpus: int, nodes: int = 8, gpus: int = 8) -> dict[str, str]:
    from harness.backends.verl.compile import compile_arm

    cfg = load_config("prorlv2-1.5b", [f"scoring.node_cpus={node_cpus}"], recipe="brorl")
    job = compile_arm(cfg, "brorl", model="M", train_file=Path("/d/t.parquet"), val_file=Path("/d/v.parquet"),
                      reward_module=Path("/h/reward.py"), checkpoints=Path("/c"), metrics_dir=Path("/m"),
                      nodes=nodes, gpus_per_node=gpus, experiment="x")
    return dict(o.split("=", 1) for o in job.overrides)


def test_the_compiled_config_sizes_the_reward_loop_from_the_nodes_cpus():
    """112 CPUs per node, 8 GPUs (16 CPUs left to them): 3 reward actors per node (an actor has at most
    32 calls in flight), 32 scorer processes each; unstated: one actor per GPU, sized on the node."""
    stated = compiled(112)
    assert stated["reward.num_workers"] == "24"
    assert stated["+reward.custom_reward_function.reward_kwargs"] == "{scorer_processes:32,workers_per_node:3,reserved_cpus:16}"
    unstated = compiled(0, nodes=1, gpus=1)
    assert unstated["reward.num_workers"] == "1"
    assert unstated["+reward.custom_reward_function.reward_kwargs"] == "{scorer_processes:0,workers_per_node:1,reserved_cpus:2}"


def test_the_bench_samples_a_step_in_the_papers_domain_mix():
    from harness.jobs.bench_reward import STEP_RESPONSES, mix_counts

    assert STEP_RESPONSES == 65_536
    assert mix_counts(384, ["math", "code", "reasoning_gym"]) == {"math": 148, "code": 88, "reasoning_gym": 148}
    assert mix_counts(10, ["code"]) == {"code": 10}
