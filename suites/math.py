"""Math suite: answers in `\\boxed{}`, verified against the reference with math-verify.

The paper's math score (REFERENCE.md, "Evaluation protocol") is pass@1 on AIME24, AIME25, AMC,
MATH-500, Minerva and OlympiadBench, with the final answer boxed and checked by math-verify. The
same `score` gives the training reward, so training and evaluation cannot drift apart.

Scoring takes the content of the LAST `\\boxed{...}` (or `\\fbox{...}`) in the response; a response
without one scores 0 as `no_answer`. That content and the reference are each parsed as a boxed
LaTeX answer, so plain references ("0.5", "(1,2]", "\\{1,2\\}", "69,84", "10 km") and the forms a
model writes (\\frac, \\dfrac, decimals, intervals, sets, units) meet in one normal form.
Scientific "e" notation ("3.3e12", used by Minerva references) is first rewritten as
`3.3 \\times 10^{12}`: math-verify would read the "e" as Euler's number. Text that went through a
non-raw Python or JSON string lost the backslash of `\\a`, `\\b`, `\\f`, `\\v` commands (`\\boxed`
became BACKSPACE + "oxed", `\\frac` FORM FEED + "rac"; public copies of these benchmarks have such
broken escapes): those four control characters never occur in real text, so they are turned back
into a backslash and their letter. (Tab, newline and carriage return are left alone: they are
legitimate whitespace, so `\\times`, `\\neq` or `\\right` eaten that way stay broken.)

The signal.alarm trap: math-verify bounds its own work with `signal.alarm`, which does nothing
outside a main thread (verl once scored every MATH answer 0 that way) and, inside a
`harness.execution.bounded.ScorerPool` worker, would replace the SIGALRM interval timer the pool arms for each
call. So every math-verify call here runs with its timeout disabled (`parsing_timeout=None`,
`timeout_seconds=None`), and bounding is the ScorerPool's job: a direct in-process call of
`score` is unbounded. math-verify and sympy also catch broad exceptions, which can swallow the
pool's timeout exception and turn it into a quick "wrong"; `score` therefore checks whether the
pool's timer expired during the call and then reports `timeout`, never a silent 0. Errors that
math-verify would turn into a quiet empty parse or False are raised (`raise_on_error=True`) and
reported as `error: <ExceptionType>` (a candidate expression that fails to parse still just falls
back to the next candidate or to plain text inside math-verify, as it should).
"""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path

from suites.base import Item, ScoreResult
from suites.jsonl import read_jsonl

NAME = "math"

MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
"""Appended to every problem (the paper's protocol; DeepScaleR's evaluation prompt)."""

BENCHMARKS: dict[str, dict[str, str | None]] = {
    # Where each benchmark lives on the Hugging Face hub. UNCONFIRMED: this machine has no hub
    # access, so none of these ids, configs, splits or field names was checked here. The paper's
    # protocol uses DeepScaleR's test sets (agentica-project/deepscaler, deepscaler/data/test/),
    # which are JSON files in a GitHub repository, not hub datasets; ../shared/data/math holds
    # those copies (see its SOURCES.md) and `load_benchmark(name, path)` reads them. The hub ids
    # below are public copies of the same problem sets, chosen as the closest match:
    "aime24": {"dataset": "HuggingFaceH4/aime_2024", "config": None, "split": "train",
               "problem": "problem", "answer": "answer"},  # AIME 2024 I+II, 30 problems
    "aime25": {"dataset": "math-ai/aime25", "config": None, "split": "test",
               "problem": "problem", "answer": "answer"},  # AIME 2025 I+II, 30 problems
    "amc": {"dataset": "AI-MO/aimo-validation-amc", "config": None, "split": "train",
            "problem": "problem", "answer": "answer"},  # AMC 2022+2023, 83 problems (as DeepScaleR)
    "math500": {"dataset": "HuggingFaceH4/MATH-500", "config": None, "split": "test",
                "problem": "problem", "answer": "answer"},  # the 500-problem MATH subset
    "minerva": {"dataset": "math-ai/minervamath", "config": None, "split": "test",
                "problem": "question", "answer": "answer"},  # Minerva math, 272 problems
    "olympiadbench": {"dataset": "Hothan/OlympiadBench", "config": "OE_TO_maths_en_COMP", "split": "train",
                      "problem": "question", "answer": "final_answer"},  # 675; answer is a list
}
"""Benchmark name -> hub dataset id, config, split and the names of its problem and answer fields."""

_EATEN_ESCAPES = str.maketrans({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"})
_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_ARGUMENT = re.compile(r"[^\s$]+")
_SCIENTIFIC = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*[eE]\s*([-+]?\d+)\s*")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (nested braces kept whole; `\\{` and
    `\\}` do not count as braces), or of a brace-less `\\boxed 5` (up to whitespace or `$`).

    None when there is no box, or when the last one is never closed (a truncated response): an
    earlier box is not taken instead, since the response never committed to it as final.
    """
    text = text.translate(_EATEN_ESCAPES)
    boxes = list(_BOXED.finditer(text))
    if not boxes:
        return None
    start = boxes[-1].end()
    rest = text[start:].lstrip()
    if rest.startswith("{"):
        return _braced(text, text.index("{", start))
    bare = _BARE_ARGUMENT.match(rest)
    return bare.group(0).rstrip(".,;:") if bare else None


def _braced(text: str, open_at: int) -> str | None:
    """The text between the brace at `open_at` and its matching close, or None if unclosed."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped character (\{, \}, \\) never opens or closes a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None


def score(response: str, answer: str) -> ScoreResult:
    """1.0 `correct` if the last boxed answer of `response` equals `answer` by math-verify, 0.0
    `wrong` if not, 0.0 `no_answer` without a (non-empty) box; `error: <ExceptionType>` if
    math-verify raised, `timeout` if the ScorerPool's bound expired meanwhile. Unbounded when
    called directly: run it through harness.execution.bounded.ScorerPool."""
    extracted = extract_boxed(response)
    if extracted is None or not extracted.strip():
        return ScoreResult(reward=0.0, status="no_answer", extracted=extracted)
    armed = _pool_timer_armed()
    try:
        correct = verify(_parse_boxed(answer), _parse_boxed(extracted), timeout_seconds=None, raise_on_error=True)
        status = "correct" if correct else "wrong"
    except Exception as exc:  # recorded, never a silent zero
        correct, status = False, f"error: {type(exc).__name__}"
    if armed and not _pool_timer_armed():
        return ScoreResult(reward=0.0, status="timeout", extracted=extracted)
    return ScoreResult(reward=1.0 if correct else 0.0, status=status, extracted=extracted)


def _parse_boxed(answer: str) -> list:
    """math-verify's parse of `answer` as the content of a box (its timeout off: see the docstring)."""
    answer = answer.translate(_EATEN_ESCAPES)
    scientific = _SCIENTIFIC.fullmatch(answer)
    if scientific:
        answer = f"{scientific.group(1)} \\times 10^{{{scientific.group(2)}}}"
    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None, raise_on_error=True)


def load_verifier():
    """The math_verify module, imported on first use: importing this suite (as every command that
    imports the trainers does) needs no math-verify, only scoring does. `build_suite` calls it when
    it builds a math suite, so a missing math-verify is an error there, and the scorer pool's forked
    workers inherit the import instead of paying for it inside their first bounded call."""
    import math_verify  # lazy: only scoring needs it (`harness plan`, `bench --shape` run without it)

    return math_verify


def parse(*args, **kwargs):
    """math_verify.parse (imported on first use: `load_verifier`)."""
    return load_verifier().parse(*args, **kwargs)


def verify(*args, **kwargs):
    """math_verify.verify (imported on first use: `load_verifier`)."""
    return load_verifier().verify(*args, **kwargs)


def _pool_timer_armed() -> bool:
    """Whether a SIGALRM interval timer (a ScorerPool worker's per-call bound) is counting down."""
    return signal.getitimer(signal.ITIMER_REAL)[0] > 0


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once per process that its timeout is off; here that is by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _logger in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger).addFilter(_DropTimeoutDisabledWarning())


def format_prompt(problem: str) -> str:
    """The problem, then the instruction to box the final answer (separated by a space, as in
    DeepScaleR's evaluation prompts; the exact whitespace of the paper's prompt is UNCONFIRMED)."""
    return f"{problem} {MATH_INSTRUCTION}"


def load_benchmark(name: str, path: str | None = None) -> list[Item]:
    """The items of benchmark `name`: from a local jsonl (`{"problem", "answer"}` per line) when
    `path` is a file or a directory holding `<name>.jsonl`, else from the hub (BENCHMARKS)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown math benchmark '{name}'; valid: {', '.join(BENCHMARKS)}")
    if path is not None:
        file = Path(path) / f"{name}.jsonl" if Path(path).is_dir() else Path(path)
        rows = [(r["problem"], str(r["answer"])) for r in read_jsonl(file, required=("problem", "answer"))]
    else:
        rows = _hub_rows(name)
    return [
        Item(id=f"{NAME}/{name}/{index}", task=name, prompt=format_prompt(problem), reference=answer,
             target=f"\\boxed{{{answer}}}")
        for index, (problem, answer) in enumerate(rows)
    ]


def _hub_rows(name: str) -> list[tuple[str, str]]:
    """(problem, answer) pairs of a benchmark from the hub; list answers give their first item, and
    unescaped `$` are removed (as in ../shared/data/math/olympiadbench.jsonl)."""
    from datasets import load_dataset  # lazy: datasets takes seconds to import; only a hub download needs it

    source = BENCHMARKS[name]
    rows = load_dataset(source["dataset"], source["config"], split=source["split"])
    out = []
    for row in rows:
        answer = row[source["answer"]]
        if isinstance(answer, list):
            answer = answer[0]
        out.append((row[source["problem"]], _UNESCAPED_DOLLAR.sub("", str(answer)).strip()))
    return out
