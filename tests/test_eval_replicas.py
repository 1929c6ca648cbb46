"""Evaluation replicas on a local Ray cluster (two `hf` replicas on the CPU, the smoke base): the
merged result equals a one-process evaluation item for item (responses included); a replica killed
with -9 is started again and the result is the same; a driver killed with -9 resumes to the same.
Marked `ray` (tox -e ray) and slow; skipped without Ray. Every wait is bounded, and what a killed
command left running is ended by pid."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.conftest import run_cli
from tests.evalcheck import (
    SMALL,
    Command,
    assert_same_evaluation,
    descendants,
    end_processes,
    eval_args,
    one_process_evaluation,
    ray_cluster,
)

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def reference(smoke_base, tmp_path_factory):
    """A one-process evaluation: (its folder, the checkpoint, the cache)."""
    return one_process_evaluation(smoke_base, tmp_path_factory)


def test_two_replicas_give_the_one_process_result(reference, tmp_path):
    ref, path, cache = reference
    out = tmp_path / "E"
    done = run_cli(eval_args(path, out, "--replicas", "2"), cache, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 replicas on Ray (local cluster)" in done.stderr
    assert sorted(p.name for p in (out / "responses").iterdir()) == ["run001-shard0.jsonl.gz", "run001-shard1.jsonl.gz"]
    assert re.search(r"eval shard 2/2: 5/5 calls, 20/20 items this run, [\d.]+ items/s, ETA 0:00:00", done.stderr)
    assert_same_evaluation(ref, out)


def test_a_replica_killed_with_9_is_started_again_and_the_result_is_the_same(reference, tmp_path):
    ref, path, cache = reference
    out = tmp_path / "K"
    cmd = Command(eval_args(path, out, "--replicas", "2"), cache)
    try:
        pid = int(re.search(r"replica pid (\d+)", cmd.wait_for(lambda line: line.startswith("shard 2: replica pid"), 300)).group(1))
        cmd.wait_for(lambda line: line.startswith("eval shard 2/2: 1/5"), 300)
        os.kill(pid, signal.SIGKILL)
        assert cmd.finish(600) == 0, "\n".join(cmd.seen)
    finally:
        end_processes(descendants(cmd.proc.pid))
        cmd.proc.kill()
    assert any(line.startswith("shard 2: replica died") for line in cmd.seen), "\n".join(cmd.seen)
    assert_same_evaluation(ref, out)


def test_a_driver_killed_with_9_resumes_to_the_same_result(reference, tmp_path):
    ref, path, cache = reference
    out = tmp_path / "D"
    cmd = Command(eval_args(path, out, "--replicas", "2"), cache)
    started: list[int] = []
    try:
        cmd.wait_for(lambda line: line.startswith("eval shard"), 300)
        started = descendants(cmd.proc.pid)  # the local cluster's processes and the replicas
        os.kill(cmd.proc.pid, signal.SIGKILL)
        cmd.proc.wait(timeout=30)
    finally:
        end_processes(started + descendants(cmd.proc.pid))
    done = run_cli(eval_args(path, out, "--replicas", "2"), cache, timeout=600)
    assert done.returncode == 0, done.stderr
    assert re.search(r"[1-9] of 10 engine calls already done, skipped", done.stderr), done.stderr
    assert_same_evaluation(ref, out)


@pytest.fixture
def eval_cluster(monkeypatch, reference):
    """A Ray cluster for evaluation replicas (2 CPUs, no GPU) whose workers see this test's harness
    cache; its address, as a comparison's --eval-address joins it."""
    monkeypatch.setenv("HARNESS_CACHE", str(reference[2]))
    with ray_cluster(2) as address:
        yield address


def test_a_comparison_evaluates_on_its_cluster_beside_its_training(reference, eval_cluster, tmp_path):
    """--replicas 1 --eval-address: the baseline is evaluated while prorl trains, the arms' points at
    once (two CPUs: two replicas at a time), and the baseline's result is the one-process one."""
    ref, path, cache = reference
    out = tmp_path / "C"
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(out), "--quiet", "--replicas", "1",
                    "--eval-address", eval_cluster, *SMALL, "compare.budget=1024", "compare.eval_points=[1.0]"],
                   cache, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()

    def at(text):
        return next(k for k, line in enumerate(lines) if text in line)

    assert at("evaluating baseline-rl4") < at("training prorl") < at("evaluated baseline-rl4"), done.stderr
    assert_same_evaluation(ref, out / "evals" / "baseline-rl4")
    evals = sorted(p.name for p in (out / "evals").glob("*.json"))
    assert "baseline-rl4.json" in evals and any(name.startswith("prorl-seed0-") for name in evals), evals
    assert (out / "summary.json").is_file()
