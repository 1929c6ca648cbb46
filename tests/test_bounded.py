"""Verifier bounds: every scorer call finishes within its bound, failures are recorded as such."""

import os
import re
import time

import pytest

from harness.execution.bounded import ScorerPool
from suites.base import ScoreResult
from suites.reasoning_gym import ReasoningGymSuite, score


def exact(response: str, answer: str) -> ScoreResult:
    return ScoreResult(float(response == answer), "correct" if response == answer else "wrong")


def python_loop(response: str, answer: str) -> ScoreResult:
    while True:
        pass


def c_level_stall(response: str, answer: str) -> ScoreResult:
    # catastrophic backtracking: the regex engine does not return to the interpreter, so SIGALRM
    # cannot interrupt it; only the parent's deadline (kill the worker) ends it
    re.match(r"(a+)+$", "a" * 64 + "b")
    return ScoreResult(1.0, "correct")


def huge_power(response: str, answer: str) -> ScoreResult:
    value = 10 ** (10 ** int(response))  # a "pathological answer" for a naive verifier
    return ScoreResult(float(value > 0), "correct")


def raises(response: str, answer: str) -> ScoreResult:
    return 1 / 0


def crashes(response: str, answer: str) -> ScoreResult:
    os._exit(13)


def not_a_result(response: str, answer: str):
    return 1.0


@pytest.fixture
def pool():
    with ScorerPool(workers=2, timeout_s=1.0) as p:
        yield p


def test_results_come_back_in_order(pool):
    calls = [(str(i), str(i if i % 3 else -1)) for i in range(300)]
    results = pool.map(exact, calls)
    assert [r.reward for r in results] == [0.0 if i % 3 == 0 else 1.0 for i in range(300)]


@pytest.mark.parametrize("fn, status", [
    (python_loop, "timeout"),
    (c_level_stall, "timeout"),
    (huge_power, "timeout"),
    (raises, "error: ZeroDivisionError"),
    (crashes, "error: worker died"),
    (not_a_result, "error: scorer returned float"),
])
def test_pathological_scorer_calls_are_bounded_and_recorded(pool, fn, status):
    start = time.monotonic()
    results = pool.map(fn, [("9", "1")])
    assert time.monotonic() - start < 1.0 + 1.0 + 5.0  # the bound, the backstop slack, process start
    assert results == [ScoreResult(0.0, status)]
    # the pool keeps serving after the failure
    assert [r.reward for r in pool.map(exact, [("a", "a"), ("a", "b")])] == [1.0, 0.0]


def test_one_bad_call_in_a_batch_spoils_only_itself(pool):
    calls = [("1", "1")] * 10
    results = pool.map(exact, calls) + pool.map(c_level_stall, [("x", "y")]) + pool.map(exact, calls)
    assert [r.status for r in results].count("timeout") == 1
    assert sum(r.reward for r in results) == 20


def test_megabyte_responses_to_the_real_scorer_return_quickly(pool):
    entry = ReasoningGymSuite([("chain_sum", {})], seed=0).items("eval", 1)[0].reference
    responses = ["7 " * 500_000, "<answer>" * 200_000, "{" * 1_000_000 + "<answer>" + entry["answer"] + "</answer>"]
    start = time.monotonic()
    results = pool.map(score, [(r, entry) for r in responses])
    assert time.monotonic() - start < 10
    assert results[0].status == "no_answer"
    # 200k unclosed tags make reasoning-gym's tag regex quadratic: bounded, and said so
    assert results[1].status in ("no_answer", "timeout") and results[1].reward == 0.0
    assert results[2].reward == 1.0


def test_evaluation_counts_timeouts(tiny_engine_and_suite):
    """A suite whose scorer hangs still evaluates, and says how many calls timed out."""
    from harness.jobs.evaluate import evaluate_suite
    from harness.rollout import SamplingParams

    engine, tokenizer, suite = tiny_engine_and_suite
    items = suite.items("eval", 3)
    with ScorerPool(workers=1, timeout_s=0.5) as p:
        result = evaluate_suite(engine, tokenizer, suite, items, 2, SamplingParams(max_new_tokens=3, seed=0), p, progress=False)
    assert result.statuses == {"timeout": 6}
    assert result.pass_at_1 == 0.0


class HangingSuite(ReasoningGymSuite):
    scorer = staticmethod(python_loop)


@pytest.fixture
def tiny_engine_and_suite(model, tokenizer):
    from harness.config import RolloutConfig
    from harness.rollout import make_engine

    return make_engine(RolloutConfig(), model, tokenizer), tokenizer, HangingSuite([("chain_sum", {})], seed=0)


def test_workers_end_when_their_parent_is_killed_with_9():
    """A parent killed with -9 leaves no scorer worker behind (each closes its copy of the parent's pipe end)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time\nfrom harness.execution.bounded import ScorerPool\np = ScorerPool(workers=2, timeout_s=5)\np.start()\n"
            "print(' '.join(str(s.proc.pid) for s in p._slots), flush=True)\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        def running(pid: int) -> bool:
            try:
                return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(running(w) for w in workers):
            time.sleep(0.1)
        alive = [w for w in workers if running(w)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        parent.kill()
        for w in workers:  # this test's own processes, should they have outlived it
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
