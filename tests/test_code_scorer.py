"""Code scorer: fenced-program extraction, sandboxed tests on real problems, statuses, loaders."""

import time
import warnings

import pytest

import suites.code as code_suite
from harness.execution.bounded import ScorerPool
from suites.base import ScoreResult
from suites.code import (
    CODE_INSTRUCTION,
    call_timeout_s,
    extract_code,
    format_prompt,
    load_benchmark,
    score,
)
from suites.jsonl import DatasetError, read_jsonl
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not (DATA / "code").is_dir(), reason=f"benchmark data not found at {DATA / 'code'}")

pytestmark = pytest.mark.filterwarnings("ignore:sandbox degraded:RuntimeWarning")

# Known-correct solutions to easy problems of codeforces.jsonl, by record index (statements read).
CODEFORCES_SOLUTIONS = {
    0: "t = int(input())\nfor _ in range(t):\n    x, y = map(int, input().split())\n    print(min(x, y), max(x, y))",
    78: "t = int(input())\nfor _ in range(t):\n    a, b = input().split()\n    print(b[0] + a[1:], a[0] + b[1:])",
    79: ("t = int(input())\nfor _ in range(t):\n    n = int(input())\n"
         "    print(max(range(2, n + 1), key=lambda x: x * (n // x) * (n // x + 1) // 2))"),
    147: "import sys\nfor n in map(int, sys.stdin.read().split()[1:]):\n    print(n // 4 + n % 4 // 2)",
    164: "t = int(input())\nfor _ in range(t):\n    n = input().strip()\n    print(int(n[0]) + int(n[1]))",
}
# code_contests.jsonl record 62: Alice and Bob take from either end of an array, building a strictly
# increasing sequence; whoever moves last wins. The winner follows from the parities of the
# strictly increasing runs from each end.
GAME = 62
GAME_SOLUTION = """n = int(input())
a = list(map(int, input().split()))
left = 1
while left < n and a[left] > a[left - 1]:
    left += 1
right = 1
while right < n and a[n - 1 - right] > a[n - right]:
    right += 1
print("Alice" if left % 2 or right % 2 else "Bob")"""


def fenced(program: str, tag: str = "python") -> str:
    return f"Here is my solution.\n\n```{tag}\n{program}\n```\n"


@pytest.fixture(scope="module")
def codeforces():
    return read_jsonl(DATA / "code" / "codeforces.jsonl")


@pytest.fixture(scope="module")
def game_tests():
    return read_jsonl(DATA / "code" / "code_contests.jsonl")[GAME]["tests"]


@pytest.mark.parametrize("text, code", [
    ("```python\nprint(1)\n```", "print(1)\n"),
    ("```\nprint(2)\n```", "print(2)\n"),
    ("```py\nprint(3)\n```", "print(3)\n"),
    ("```Python3\nprint(4)\n```", "print(4)\n"),
    ("```python\nprint(1)\n```\nbetter:\n```python\nprint(5)\n```\n", "print(5)\n"),
    ("```python\nprint(6)\n```\nsample:\n```text\n6\n```", "print(6)\n"),  # other languages skipped
    ("```python\nprint(7)\n```\n```python\nprint(", "print(7)\n"),  # a fence never closed is no block
    ("  ```python\n  print(8)\n  ```", "  print(8)\n"),
    ("```python\n```", None),
    ("print(9)", None),
    ("```cpp\nint main() {}\n```", None),
])
def test_extract_code(text, code):
    assert extract_code(text) == code


@needs_data
@pytest.mark.parametrize("index", sorted(CODEFORCES_SOLUTIONS))
def test_known_correct_solutions_score_one(codeforces, index):
    result = score(fenced(CODEFORCES_SOLUTIONS[index]), codeforces[index]["tests"])
    assert (result.reward, result.status) == (1.0, "correct")


@needs_data
def test_broken_programs_score_zero_with_their_status(codeforces):
    tests = codeforces[164]["tests"]
    assert score(fenced("print(42)"), tests) == ScoreResult(0.0, "wrong", "print(42)\n")
    assert score(fenced("import sys\nsys.exit(3)"), tests).status == "wrong"
    assert score("The answer is 14.", tests) == ScoreResult(0.0, "no_answer")
    assert score(fenced("for x in range(3)\n    print(x)"), tests).status == "wrong"
    start = time.monotonic()
    assert score(fenced("while True:\n    pass"), tests, timeout_s=0.5).status == "timeout"
    assert time.monotonic() - start < 0.5 + 3.0


def test_a_syntax_error_fails_every_test_without_running(monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("a program that does not compile must not reach the sandbox")

    monkeypatch.setattr(code_suite, "run", no_run)
    tests = [{"input": "1", "output": "1"}] * 5
    assert score(fenced("print(1"), tests) == ScoreResult(0.0, "wrong", "print(1\n")
    assert score(fenced("print('\0')"), tests).status == "wrong"  # compile() refuses NUL bytes


@needs_data
def test_partial_credit_on_a_multi_test_problem(game_tests):
    outputs = [t["output"].strip() for t in game_tests]
    assert score(fenced(GAME_SOLUTION), game_tests).reward == 1.0
    always_alice = score(fenced('input()\ninput()\nprint("Alice")'), game_tests)
    assert always_alice.status == "partial"
    assert always_alice.reward == pytest.approx(outputs.count("Alice") / len(outputs))
    assert 0 < always_alice.reward < 1


@needs_data
def test_a_looping_program_stops_after_two_timeouts(game_tests):
    assert len(game_tests) >= 4
    start = time.monotonic()
    result = score(fenced("while True:\n    pass"), game_tests, timeout_s=0.5)
    assert result == ScoreResult(0.0, "timeout", "while True:\n    pass\n")
    assert time.monotonic() - start < 2 * 0.5 + 3.0  # two runs, not one per test


def test_timeouts_among_passes_give_status_timeout_with_partial_reward():
    program = "n = int(input())\nwhile n == 0:\n    pass\nprint(n)"
    tests = [{"input": "1", "output": "1"}, {"input": "0", "output": "0"}, {"input": "2", "output": "2"}]
    result = score(fenced(program), tests, timeout_s=0.5)
    assert (result.reward, result.status) == (pytest.approx(2 / 3), "timeout")


FUNCTION_TEST = {
    "prompt": 'def middle(values):\n    """The median of an odd-length list of numbers."""\n',
    "test": "def check(candidate):\n    assert candidate([3, 1, 2]) == 2\n    assert candidate([5]) == 5\n",
    "entry_point": "middle",
}


@pytest.mark.parametrize("program, status", [
    ("def middle(values):\n    return sorted(values)[len(values) // 2]", "correct"),
    ("    return sorted(values)[len(values) // 2]", "correct"),  # a body: the prompt is prepended
    ("def middle(values):\n    return values[0]", "wrong"),
    ("import sys\nsys.exit(0)", "wrong"),  # leaving before the check is not a pass
    ("def middle(values):\n    return sorted(values)[len(values) // 2]\nprint('ok')\nexit()", "wrong"),
])
def test_function_style_tests(program, status):
    assert score(fenced(program), [FUNCTION_TEST]).status == status


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="at least one test"):
        score(fenced("print(1)"), [])
    with pytest.raises(ValueError, match="'input' and 'output'"):
        score(fenced("print(1)"), [{"stdin": "1"}])


def test_call_timeout_covers_every_test_running_almost_to_its_limit():
    tests = [{"input": "", "output": ""}] * 10
    assert call_timeout_s(tests, 5.0) == call_timeout_s(10, 5.0)
    assert call_timeout_s(tests, 5.0) > 10 * 5.0
    assert call_timeout_s(1, 1.0) < call_timeout_s(2, 1.0)


@needs_data
def test_scoring_through_a_bounded_pool(codeforces, game_tests):
    calls = [(fenced(CODEFORCES_SOLUTIONS[i]), codeforces[i]["tests"]) for i in sorted(CODEFORCES_SOLUTIONS)]
    calls += [(fenced('input()\ninput()\nprint("Alice")'), game_tests), ("no code", game_tests),
              (fenced("while True:\n    pass"), game_tests, 0.5)]
    with ScorerPool(workers=2, timeout_s=call_timeout_s(game_tests)) as pool:
        results = pool.map(score, calls)
    assert [r.status for r in results] == ["correct"] * 5 + ["partial", "no_answer", "timeout"]


@needs_data
def test_load_benchmark_from_the_local_files():
    codeforces = load_benchmark("codeforces", str(DATA / "code"))
    contests = load_benchmark("codecontests", str(DATA / "code"))
    assert (len(codeforces), len(contests)) == (200, 123)
    item = contests[GAME]
    assert item.id == f"code/codecontests/{GAME}" and item.task == "codecontests" and item.target == ""
    assert item.prompt.endswith(CODE_INSTRUCTION) and item.reference[0].keys() == {"input", "output"}
    assert len(load_benchmark("codeforces", str(DATA / "code" / "codeforces.jsonl"))) == 200


def test_load_benchmark_errors(tmp_path):
    valid = "valid: apps, codecontests, codeforces, taco"
    with pytest.raises(ValueError, match=f"unknown code benchmark 'leetcode'; {valid}"):
        load_benchmark("leetcode", str(tmp_path))
    with pytest.raises(DatasetError, match="'taco' has no local copy"):
        load_benchmark("taco", str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path / "codeforces.jsonl")):
        load_benchmark("codeforces", str(tmp_path))
    bad = tmp_path / "codeforces.jsonl"
    bad.write_text('{"problem": "p", "tests": []}\n')
    with pytest.raises(DatasetError, match="record 1: 'tests' must be a non-empty list"):
        load_benchmark("codeforces", str(tmp_path))


def test_load_benchmark_from_the_hub_layout(monkeypatch):
    import datasets

    def row(source, ability, truth, problem="Print the sum."):
        return {"data_source": source, "ability": ability, "reward_model": {"ground_truth": truth},
                "prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": problem}]}

    rows = [
        row("taco", "code", '{"inputs": ["1 2\\n"], "outputs": ["3\\n"]}'),
        row("apps", "code", '{"inputs": ["1"], "outputs": ["1"]}'),
        row("taco", "math", "3"),
        row("taco", "code", '{"fn_name": "f", "inputs": [[1]], "outputs": [[1]]}'),
    ]
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None: rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = load_benchmark("taco")
    assert [it.reference for it in items] == [[{"input": "1 2\n", "output": "3\n"}]]
    assert items[0].prompt == format_prompt("Print the sum.")
    assert any("skipped 1 call-based" in str(w.message) for w in caught)


ONE_PROCESS_CASES = [
    "n = int(input())\nprint(2 * n)",  # correct
    "n = int(input())\nprint(n + 3)",  # right on one test only
    "import sys\nn = int(sys.stdin.readline())\nif n == 0:\n    sys.exit(1)\nprint(2 * n)",  # fails one by exit code
    "import sys\nprint(2 * int(input()))\nsys.exit(0)",  # exit 0 is a normal end
    "print(1 / 0)",  # raises every time
    "print(6",  # does not compile
    "x = int(input())\nif x == 5:\n    while True:\n        pass\nprint(2 * x)",  # loops on the second test
]


@pytest.mark.parametrize("program", ONE_PROCESS_CASES)
def test_one_process_scores_like_one_run_per_test(program):
    tests = [{"input": "3\n", "output": "6\n"}, {"input": "5\n", "output": "10\n"}, {"input": "0\n", "output": "0"}]
    each = score(fenced(program), tests, timeout_s=1.0)
    one = score(fenced(program), tests, timeout_s=1.0, one_process=True)
    if "while True" in program:  # the whole run's limit: the test after the loop is not reached
        assert (each.reward, one.reward, one.status) == (pytest.approx(2 / 3), pytest.approx(1 / 3), "timeout")
    else:
        assert one == each


def test_one_process_tests_do_not_share_state():
    program = "import sys\nseen = globals().setdefault('seen', [])\nseen.append(1)\nprint(len(seen), input())"
    tests = [{"input": "a", "output": "1 a"}, {"input": "b", "output": "1 b"}]
    assert score(fenced(program), tests, one_process=True).reward == 1.0
