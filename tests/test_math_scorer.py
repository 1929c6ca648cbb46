"""Math scorer: boxed-answer extraction, math-verify equivalence, the six real benchmark files."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import suites.math as math_suite
from harness.execution.bounded import ScorerPool
from suites.base import ScoreResult
from suites.jsonl import DatasetError, read_jsonl
from suites.math import (
    BENCHMARKS,
    MATH_INSTRUCTION,
    extract_boxed,
    format_prompt,
    load_benchmark,
    score,
)
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not (DATA / "math").is_dir(), reason=f"benchmark data not found at {DATA / 'math'}")

STRING_ONLY = {
    # References math-verify cannot parse into a math object: they still score 1.0 against the same
    # text boxed (string equality), but an equivalent rewriting would score 0.
    ("minerva", r"\frac{dM}{dt}=\frac{10^{5} L_{\odot}}{0.007 c^{2} M_{\odot}^{6}} M^{6}"),  # \odot subscripts
    ("minerva", "E_{1},E_{2}"),  # a list of two named quantities, not values
    ("minerva", "E_1, E_2"),
    ("olympiadbench", r"m_{\max }=n^{2}-n-1"),  # \max inside a subscript
    ("olympiadbench", "t(0,4]"),  # a stray "t" before the interval (in the source data)
}


@needs_data
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_reference_answer_scores_one_when_boxed(name):
    rows = read_jsonl(DATA / "math" / f"{name}.jsonl", required=("problem", "answer"))
    failures = []
    string_only = set()
    for row in rows:
        answer = row["answer"]
        result = score(f"Some reasoning first. So the answer is $\\boxed{{{answer}}}$.", answer)
        if result != ScoreResult(1.0, "correct", answer):
            failures.append((answer, result))
        if all(isinstance(parsed, str) for parsed in math_suite._parse_boxed(answer)):
            string_only.add((name, answer))
    assert failures == []
    assert string_only == {entry for entry in STRING_ONLY if entry[0] == name}


@pytest.mark.parametrize("predicted, reference", [
    (r"\frac{1}{2}", "0.5"), ("0.5", r"\frac{1}{2}"), ("1/2", r"\frac{1}{2}"), (r"\dfrac{1}{2}", "0.5"),
    (r"\tfrac12", "0.5"), (".50", r"\frac{1}{2}"), ("2/4", r"\dfrac{1}{2}"),
    (r"\frac{270}{7}", r"\frac{270}7\text{ degrees}"),
    ("18.9", r"\$18.90"), ("32348", r"\$32,\!348"), ("1000", "1,000"),
    ("(1, 2]", "(1,2]"), (r"x \in (1,2]", "(1,2]"),
    (r"\{2,1\}", r"\{1,2\}"), ("2, 1", r"\{1,2\}"), ("84, 69", "69,84"), (r"\{69, 84\}", "69,84"),
    (r"\sqrt{18}", r"3\sqrt{2}"), (r"\sqrt{2} \cdot 3", r"3\sqrt{2}"),
    ("10", "10 km"), (r"10\text{ km}", "10"), (r"10\,\mathrm{km}", "10 km"), (r"76^{\circ}", r"76^\circ"),
    (r"9i+6", "6+9i"), (r"\frac{x^2-3x+2}{6}", r"p(x)=\frac{(x-1)(x-2)}{6}"),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}"),
    (r"4.5 \times 10^{33}", "4.5e33"), ("4.5e33", r"4.5\times10^{33}"), ("0.00001", "1e-5"), ("10^{-5}", "1e-5"),
    (r"\text{C}", r"\text{(C)}"), ("Evelyn", r"\text{Evelyn}"),
])
def test_equivalent_forms_score_one(predicted, reference):
    result = score(f"The answer is \\boxed{{{predicted}}}.", reference)
    assert (result.reward, result.status) == (1.0, "correct")


@pytest.mark.parametrize("predicted, reference", [
    (r"\frac{1}{3}", "0.5"), ("0.6", r"\frac{1}{2}"), ("2", "1/2"),
    ("[1,2]", "(1,2]"), ("(1,2)", "(1,2]"),
    (r"\{1,3\}", r"\{1,2\}"), ("69", "69,84"), ("6984", "69,84"),
    (r"2\sqrt{3}", r"3\sqrt{2}"), ("11", "10 km"), ("77", r"76^\circ"), ("6-9i", "6+9i"),
    (r"3.3 \times 10^{13}", "3.3e12"), (r"3.61 \times 10^{-10}", "3.89e-10"), ("0.55", "0.554"),
    (r"\text{D}", r"\text{(C)}"), ("e", r"\text{east}"),
])
def test_wrong_answers_score_zero(predicted, reference):
    assert score(f"\\boxed{{{predicted}}}", reference) == ScoreResult(0.0, "wrong", predicted)


@pytest.mark.parametrize("text, boxed", [
    (r"\boxed{1} then \boxed{2}", "2"),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
    (r"\boxed{\left\{ 1, 2 \right\}}", r"\left\{ 1, 2 \right\}"),  # \{ and \} are not groups
    (r"\boxed{\text{a}\{\}}", r"\text{a}\{\}"),
    (r"$\fbox{7}$", "7"),
    (r"so $\boxed 5$.", "5"),
    (r"so \boxed 42.", "42"),
    (r"\boxed  {x}", "x"),
    ("\\boxed{1} and \\boxed{\\frac{2}{", None),  # the last box is never closed: no answer
    ("no box here", None),
    (r"\boxedx{1}", None),
    ("\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # eaten escapes: BACKSPACE + "oxed", FORM FEED + "rac"
])
def test_extract_boxed(text, boxed):
    assert extract_boxed(text) == boxed


def test_no_box_or_an_empty_box_is_no_answer():
    assert score("The answer is 5.", "5") == ScoreResult(0.0, "no_answer", None)
    assert score(r"\boxed{ }", "5") == ScoreResult(0.0, "no_answer", " ")


def test_command_line_example_prints_one():
    # The example from the brief, run by a shell: in double quotes the shell turns "\\b" into "\b",
    # which Python reads as BACKSPACE (and "\f" as FORM FEED); the scorer restores them.
    command = "from suites.math import score; print(score('so \\\\boxed{\\\\frac{1}{2}}', '0.5').reward)"
    done = subprocess.run(["bash", "-c", f'{sys.executable} -c "{command}"'], check=False, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"
    assert "Timeout is disabled" not in done.stderr  # math-verify's warning is expected here, and dropped


def test_math_verify_errors_are_recorded_not_a_silent_zero(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(math_suite, "verify", broken)
    assert score(r"\boxed{1}", "1") == ScoreResult(0.0, "error: RuntimeError", "1")


class _PoolTimeout(Exception):
    """Stands for the ScorerPool's timeout exception (an Exception, so broad handlers can eat it)."""


def test_a_pool_timeout_swallowed_by_math_verify_is_a_timeout(monkeypatch):
    def swallowing_verify(*args, **kwargs):  # like sympy code that catches Exception and gives up
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except Exception:
                return False
        raise AssertionError("the timer never fired")

    def alarm(signum, frame):
        raise _PoolTimeout()

    monkeypatch.setattr(math_suite, "verify", swallowing_verify)
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        result = score(r"\boxed{1}", "1")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert result == ScoreResult(0.0, "timeout", "1")


def test_scoring_through_a_bounded_pool():
    calls = [(f"\\boxed{{{i}}}", str(i if i % 3 else i + 1)) for i in range(40)]
    calls += [(r"so \boxed{\dfrac{1}{2}}", "0.5"), ("no box", "1")]
    with ScorerPool(workers=2, timeout_s=1.0) as pool:
        results = pool.map(score, calls)
        # 9^387420489 stalls in C (no SIGALRM): the pool kills the worker. Alone in its map call,
        # because a stalled batch is only detected after timeout_s per call of the batch.
        start = time.monotonic()
        assert pool.map(score, [(r"\boxed{9^{9^{9}}}", "1")]) == [ScoreResult(0.0, "timeout")]
        assert time.monotonic() - start < 1.0 + 1.0 + 5.0
    assert [r.reward for r in results[:40]] == [0.0 if i % 3 == 0 else 1.0 for i in range(40)]
    assert [r.status for r in results[40:]] == ["correct", "no_answer"]


@needs_data
def test_load_benchmark_from_a_folder_or_a_file():
    items = load_benchmark("math500", str(DATA / "math"))
    assert len(items) == 500
    first = items[0]
    assert first.id == "math/math500/0" and first.task == "math500"
    problem = read_jsonl(DATA / "math" / "math500.jsonl")[0]["problem"]
    assert first.prompt == format_prompt(problem) and first.prompt.endswith(MATH_INSTRUCTION)
    assert all(score(it.target, it.reference).reward == 1.0 for it in items[:20])
    assert [it.reference for it in load_benchmark("aime24", str(DATA / "math" / "aime24.jsonl"))][:2] == [
        row["answer"] for row in read_jsonl(DATA / "math" / "aime24.jsonl")[:2]]


def test_load_benchmark_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown math benchmark 'gsm8k'; valid: aime24, aime25, amc, math500"):
        load_benchmark("gsm8k", str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path / "aime24.jsonl")):
        load_benchmark("aime24", str(tmp_path))


def test_load_benchmark_from_the_hub_layout(monkeypatch):
    import datasets

    rows = [{"question": "Find x.", "final_answer": ["$69$,$84$"]}, {"question": "Cost?", "final_answer": [r"\$5"]}]
    asked = []

    def fake_load_dataset(name, config=None, split=None):
        asked.append((name, config, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_benchmark("olympiadbench")
    assert asked == [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")]
    assert [it.reference for it in items] == ["69,84", r"\$5"]
    assert items[0].prompt == format_prompt("Find x.") and items[0].target == r"\boxed{69,84}"
