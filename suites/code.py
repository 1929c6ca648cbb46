"""Code suite: a fenced Python program run in the sandbox on tests; reward = fraction passed.

The paper's code score (REFERENCE.md, "Evaluation protocol") averages apps, codecontests,
codeforces and taco (the PRIME / Eurus-2-RL validation sets); the reward is the fraction of tests
passed (ProRL), each test with a 5 s limit, the program in triple backticks. The same `score`
gives the training reward.

A test is either stdin/stdout, `{"input", "output"}`: the program runs with that stdin and passes
when it exits normally and its stdout matches by `sandbox.outputs_match` (whitespace-separated
tokens); or function style (HumanEval), `{"test", "entry_point"}` with an optional "prompt": the
program is the prompt (only when the response's code does not define `entry_point` itself), the
code, the test's `check` function and a call `check(entry_point)`; it passes when it exits normally
and prints, last, a random marker that follows that call (so a program that calls `exit(0)` before
the check is not a pass; one that reads the marker out of its own source file is: not stopped).

Speed matters (training scores thousands of responses; the sandbox does ~70-90 runs/s on 2 threads
on the 2-core machine, results/experiments/2026-12-01-sandbox-prestart.md):
- each program is first compiled in-process; one that does not compile fails every test it would
  have run, without running them (a SyntaxError, or a source compile() refuses, such as one with
  NUL bytes). compile() is this interpreter's; the sandbox may run another Python 3 (see
  harness/execution/sandbox.py), so syntax newer than this interpreter's would be refused here;
- once a response's program has timed out on two tests, the remaining tests are not run and count
  as failed (timed out): a slow or looping program would otherwise cost 5 s per test;
- opt-in (`one_process=True`, config `suites.code.tests_in_one_process`): all stdin/stdout tests
  of a response in one sandboxed interpreter, for tiny tasks where the interpreter's start is most
  of the cost (see `_run_in_one_process` for what that gives up).

Statuses: `correct` (every test passed, reward 1), `partial` (some passed), `wrong` (none passed,
or the program does not compile), `timeout` (a test failed and every failed test timed out or was
skipped after two timeouts; the reward is still the fraction passed), `no_answer` (no fenced code
block), `error: SandboxError` (the sandbox itself failed: not the program's fault).
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.execution.sandbox import DRAIN_S, SandboxError, outputs_match, run
from suites.base import Item, ScoreResult
from suites.jsonl import DatasetError, read_jsonl

NAME = "code"

DEFAULT_TIMEOUT_S = 5.0
"""Wall-clock limit per test run (the paper's 5 s)."""

MAX_TIMEOUTS = 2
"""Timed-out tests after which a program's remaining tests are skipped (and count as failed)."""

CODE_INSTRUCTION = (
    "Write a Python 3 program that reads the input from standard input and writes the answer to "
    "standard output. Put the complete program in a single ```python code block at the end of "
    "your response."
)
"""Appended to every problem. Our own wording: the exact PRIME / Eurus-2 prompt is UNCONFIRMED."""

BENCHMARKS: dict[str, dict[str, str | None]] = {
    # Hub source, UNCONFIRMED (no hub access from this machine): the BroRL code sets are the
    # validation split of PRIME-RL/Eurus-2-RL-Data (columns data_source, prompt, ability,
    # reward_model, extra_info; 1024 of its 2048 validation rows are code). A benchmark is the rows
    # whose `ability` is "code" and whose `data_source` is the value below; the problem is the last
    # user message of `prompt` (it may already end with PRIME's own instruction, to which ours is
    # then appended); the tests are `reward_model["ground_truth"]`, a JSON string holding
    # {"inputs": [...], "outputs": [...]} (stdin and expected stdout). Rows whose ground truth names
    # a function ("fn_name": call-based APPS/TACO tests) are skipped with a warning.
    # `local` is the file in ../shared/data/code (the DeepCoder / rLLM copies, see its SOURCES.md);
    # apps and taco have no local copy.
    "apps": {"data_source": "apps", "local": None},
    "codecontests": {"data_source": "codecontests", "local": "code_contests.jsonl"},
    "codeforces": {"data_source": "codeforces", "local": "codeforces.jsonl"},
    "taco": {"data_source": "taco", "local": None},
}
"""Benchmark name -> its `data_source` in PRIME-RL/Eurus-2-RL-Data and its local file name."""

HUB_DATASET = ("PRIME-RL/Eurus-2-RL-Data", "validation")
"""Hub dataset id and split of the code benchmarks (UNCONFIRMED, see BENCHMARKS)."""

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str) -> str | None:
    """Content of the last fenced code block that is untagged or tagged as Python (```python,
    ```py, ```python3); blocks tagged as another language are skipped, and a fence that is never
    closed (a truncated response) is no block. None if there is none or it is empty."""
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _PYTHON_TAGS]
    if not blocks or not blocks[-1].strip():
        return None
    return blocks[-1]


def score(response: str, tests: list[dict], timeout_s: float = DEFAULT_TIMEOUT_S,
          one_process: bool = False) -> ScoreResult:
    """Fraction of `tests` the response's program passes, each run in the sandbox with at most
    `timeout_s` seconds (see the module docstring for test forms and statuses). `one_process`:
    run all stdin/stdout tests in one sandboxed interpreter (see `_run_in_one_process`)."""
    if not tests:
        raise ValueError("code score needs at least one test")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    code = extract_code(response)
    if code is None:
        return ScoreResult(reward=0.0, status="no_answer")
    try:
        if one_process and all("input" in t and "output" in t for t in tests):
            outcomes = _run_in_one_process(code, tests, timeout_s) if _compiles(code) else ["fail"] * len(tests)
        else:
            outcomes = _run_each(code, tests, timeout_s)
    except SandboxError:
        return ScoreResult(reward=0.0, status="error: SandboxError", extracted=code)
    passed, failed = outcomes.count("pass"), outcomes.count("fail")
    reward = passed / len(tests)
    if passed == len(tests):
        status = "correct"
    elif failed == 0:
        status = "timeout"
    else:
        status = "partial" if passed else "wrong"
    return ScoreResult(reward=reward, status=status, extracted=code)


def _run_each(code: str, tests: list[dict], timeout_s: float) -> list[str]:
    """`pass` / `fail` / `timeout` per test, each in its own sandboxed run; after MAX_TIMEOUTS
    timeouts the remaining tests are skipped and count as timed out."""
    outcomes: list[str] = []
    compiles: dict[str, bool] = {}
    for test in tests:
        if outcomes.count("timeout") >= MAX_TIMEOUTS:
            outcomes.append("timeout")
            continue
        outcomes.append(_run_test(code, test, timeout_s, compiles))
    return outcomes


def _run_test(code: str, test: dict, timeout_s: float, compiles: dict[str, bool]) -> str:
    """`pass`, `fail` or `timeout` for one test; `compiles` caches compile checks per program."""
    if "entry_point" in test:
        marker = f"check-passed-{secrets.token_hex(8)}"
        program = _function_program(code, test, marker)
        stdin, expected = "", None
    elif "input" in test and "output" in test:
        program, stdin, expected = code, test["input"], test["output"]
    else:
        raise ValueError(f"a test needs 'input' and 'output', or 'test' and 'entry_point'; got keys {sorted(test)}")
    if program not in compiles:
        compiles[program] = _compiles(program)
    if not compiles[program]:
        return "fail"
    execution = run(program, stdin, timeout_s)
    if execution.status == "timeout":
        return "timeout"
    if execution.status != "ok":
        return "fail"
    if expected is None:
        lines = execution.stdout.split()
        return "pass" if lines and lines[-1] == marker else "fail"
    return "pass" if outputs_match(execution.stdout, expected) else "fail"


_ONE_PROCESS_DRIVER = """\
import io as _io, sys as _sys
def _run_tests(source, inputs, marker):
    program, real_stdout = compile(source, "main.py", "exec", dont_inherit=True), _sys.stdout
    for i, stdin in enumerate(inputs):
        _sys.stdin, _sys.stdout, ok = _io.StringIO(stdin), _io.StringIO(), True
        try:
            exec(program, {"__name__": "__main__", "__builtins__": __builtins__})
        except SystemExit as stop:
            ok = stop.code in (None, 0)
        except BaseException:
            ok = False
        captured, _sys.stdout = _sys.stdout.getvalue(), real_stdout
        real_stdout.write(marker + ascii([i, ok, captured]) + "\\n")
        real_stdout.flush()
_run_tests(%r, %r, %r)
"""


def _run_in_one_process(code: str, tests: list[dict], timeout_s: float) -> list[str]:
    """`pass` / `fail` / `timeout` per stdin/stdout test, all run in ONE sandboxed interpreter.

    One interpreter start per response instead of one per test (the sandbox's start dominates a
    small program's run: ~3x faster at 3 tests). Each test runs the compiled program in a fresh
    namespace with sys.stdin / sys.stdout swapped for in-memory files, and its result is written
    after a random marker as soon as it finishes (`ascii()` of a list, read back with
    ast.literal_eval; not json, whose import alone took about a third of a small sandboxed run).
    Less faithful than a process per test, so it is
    opt-in (`suites.code.tests_in_one_process`, on for the tiny procedural tasks, off for the
    benchmarks): a program that reads file descriptor 0 or sys.stdin.buffer, writes to file
    descriptor 1, or changes interpreter state fails or leaks into later tests, and the limit is
    timeout_s x tests for the whole run: once it is hit, the tests not yet reported time out."""
    marker = f"test-result-{secrets.token_hex(8)}:"
    program = _ONE_PROCESS_DRIVER % (code, [t["input"] for t in tests], marker)
    execution = run(program, "", timeout_s * len(tests))
    results: dict[int, tuple[bool, str]] = {}
    for line in execution.stdout.splitlines():
        if line.startswith(marker):
            index, ok, captured = ast.literal_eval(line[len(marker):])
            results[index] = (ok, captured)
    missing = "timeout" if execution.status == "timeout" else "fail"
    outcomes = []
    for index, test in enumerate(tests):
        if index not in results:
            outcomes.append(missing)
        else:
            ok, captured = results[index]
            outcomes.append("pass" if ok and outputs_match(captured, test["output"]) else "fail")
    return outcomes


def _function_program(code: str, test: dict, marker: str) -> str:
    """Prompt (unless the code defines the entry point) + code + check function + the check call."""
    entry = test["entry_point"]
    defines = re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry)}[ \t]*\(", code, re.MULTILINE)
    prefix = "" if defines else test.get("prompt", "")
    return f"{prefix}{code}\n\n{test['test']}\n\ncheck({entry})\nprint({marker!r})\n"


def _compiles(program: str) -> bool:
    """Whether this interpreter compiles `program` (what the sandbox would fail on at once). Its
    SyntaxWarnings (`1.x`, `"a"(1)`: common in a small model's programs) are not printed: they would
    flood the training log, and the sandboxed run reports what matters."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            compile(program, "main.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def call_timeout_s(tests: Sequence[dict] | int, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Wall-clock bound for one `score` call on `tests` (or on that many tests): every test may
    legitimately run for almost `timeout_s` (only timeouts stop a program early), plus the
    sandbox's start and output drain per run. Use it as the suite's `scorer_timeout_s`, so the
    ScorerPool does not kill a long but legitimate call."""
    count = tests if isinstance(tests, int) else len(tests)
    return count * (timeout_s + DRAIN_S + 1.0) + 5.0


def format_prompt(problem: str) -> str:
    """The problem, then the instruction to answer with a stdin -> stdout program in a code block."""
    return f"{problem}\n\n{CODE_INSTRUCTION}"


def load_benchmark(name: str, path: str | None = None) -> list[Item]:
    """The items of benchmark `name`: from a local jsonl (`{"problem", "tests"}` per line, the
    format of ../shared/data/code) when `path` is a file or a directory holding the benchmark's
    file (BENCHMARKS `local`), else from the hub. The reference is the tests list; there is no
    reference solution, so the target is empty."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown code benchmark '{name}'; valid: {', '.join(BENCHMARKS)}")
    if path is not None:
        rows = _local_rows(name, Path(path))
    else:
        rows = _hub_rows(name)
    return [
        Item(id=f"{NAME}/{name}/{index}", task=name, prompt=format_prompt(problem), reference=tests, target="")
        for index, (problem, tests) in enumerate(rows)
    ]


def _local_rows(name: str, path: Path) -> list[tuple[str, list[dict]]]:
    if path.is_dir():
        local = BENCHMARKS[name]["local"]
        if local is None:
            raise DatasetError(f"code benchmark '{name}' has no local copy (none in {path}); load it from the hub "
                               f"({HUB_DATASET[0]}) with no data folder")
        path = path / local
    rows = []
    for index, record in enumerate(read_jsonl(path, required=("problem", "tests"))):
        tests = record["tests"]
        if not isinstance(tests, list) or not tests:
            raise DatasetError(f"{path}: record {index + 1}: 'tests' must be a non-empty list")
        rows.append((record["problem"], tests))
    return rows


def _hub_rows(name: str) -> list[tuple[str, list[dict]]]:
    """(problem, tests) of a benchmark from PRIME-RL/Eurus-2-RL-Data (layout UNCONFIRMED)."""
    from datasets import load_dataset  # lazy: datasets takes seconds to import; only a hub download needs it

    dataset, split = HUB_DATASET
    source = BENCHMARKS[name]["data_source"]
    rows, call_based = [], 0
    for row in load_dataset(dataset, split=split):
        if row["ability"] != "code" or row["data_source"] != source:
            continue
        truth = row["reward_model"]["ground_truth"]
        truth = json.loads(truth) if isinstance(truth, str) else truth
        if truth.get("fn_name"):
            call_based += 1
            continue
        problem = [m["content"] for m in row["prompt"] if m["role"] == "user"][-1]
        tests = [{"input": _text(i), "output": _text(o)} for i, o in zip(truth["inputs"], truth["outputs"])]
        rows.append((problem, tests))
    if call_based:
        warnings.warn(f"code benchmark '{name}': skipped {call_based} call-based problems (fn_name tests)",
                      RuntimeWarning, stacklevel=3)
    return rows


def _text(value) -> str:
    """A test's stdin or stdout as text (some sources store a list of lines)."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)
