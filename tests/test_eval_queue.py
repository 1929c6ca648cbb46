"""A comparison's evaluations beside its training (harness/jobs/eval_queue.py): with a cluster of
their own several run at once and the submitting thread goes on; without one they run in turn, as
before; a failure surfaces in the submitting thread; the guard's check runs once per evaluation,
never two at a time. Real threads, evaluations that wait on each other (no Ray here: the `ray`
tier runs a comparison's evaluations on a real cluster, tests/test_eval_replicas.py)."""

from __future__ import annotations

import threading
import time

import pytest

from harness.config import ConfigError
from harness.jobs.compare import EVALS_AT_ONCE, evals_at_once
from harness.jobs.eval_queue import EvalQueue
from harness.jobs.eval_replica import Replicas
from harness.runs import Budget


def test_evaluations_run_at_once_while_the_submitter_goes_on():
    both = threading.Barrier(2, timeout=10)  # each evaluation waits until the other runs: only concurrency passes
    trained = threading.Event()
    order, checks = [], []

    def evaluation(label):
        both.wait()
        assert trained.wait(10)
        order.append(label)

    with EvalQueue(2, after=lambda: checks.append(len(checks))) as queue:
        for label in ("baseline", "prorl-step2"):
            queue.submit(label, lambda label=label: evaluation(label))
        queue.submit("baseline", lambda: order.append("again"))  # a label runs once
        order.append("training")  # the submitter is not held up by either
        trained.set()
        queue.wait()
    assert order[0] == "training" and sorted(order[1:]) == ["baseline", "prorl-step2"]
    assert checks == [0, 1] and not queue.running()


def test_one_at_a_time_runs_each_evaluation_when_submitted():
    order = []
    with EvalQueue(1) as queue:
        queue.submit("a", lambda: order.append("a"))
        order.append("training")
        queue.submit("b", lambda: order.append("b"))
    assert order == ["a", "training", "b"] and not queue.concurrent


def test_a_failed_evaluation_stops_the_submitter_at_its_next_check():
    def broken():
        raise RuntimeError("replica failed to start")

    with pytest.raises(RuntimeError, match="replica failed to start"), EvalQueue(2) as queue:
        queue.submit("bad", broken)
        deadline = time.monotonic() + 10
        while queue.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        queue.check()  # what the comparison calls before training the next arm


def test_the_guards_check_never_runs_twice_at_once():
    inside, worst = [0], [0]
    lock = threading.Lock()

    def guard():
        with lock:
            inside[0] += 1
            worst[0] = max(worst[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1

    with EvalQueue(4, after=guard) as queue:
        for k in range(8):
            queue.submit(f"e{k}", lambda: None)
        queue.wait()
    assert worst[0] == 1


def test_evaluations_go_beside_training_only_on_a_cluster_of_their_own():
    said = []
    cluster = Replicas(count=2, address="head:6379")
    assert evals_at_once(cluster, Budget("wall_s", 10), None, said.append) == EVALS_AT_ONCE
    assert evals_at_once(cluster, Budget("samples", 10), 2, said.append) == 2 and not said
    assert evals_at_once(Replicas(count=2), Budget("wall_s", 10), 3, said.append) == 1  # a local cluster: this machine's cores
    assert evals_at_once(cluster, Budget("cpu_s", 10), 3, said.append) == 1  # the meter counts this process's threads
    assert evals_at_once(None, Budget("steps", 3), None, said.append) == 1
    assert len(said) == 2 and "without --eval-address" in said[0] and "cpu_s" in said[1]
    with pytest.raises(ConfigError, match="invalid value for --evals-at-once: 0; expected a positive integer"):
        evals_at_once(cluster, Budget("wall_s", 10), 0)
