"""Training data of the benchmark suites at full scale: the ProRL training mix for math and code.

With `source: benchmarks` the math and code suites evaluate on the paper's public sets; their
`train` and `validation` splits come from `suites.<domain>.train_data`, read here:

- a local `.jsonl` file (one JSON object per line), a `.parquet` file, or a folder of them (the
  files directly in it, in name order; subfolders are not read);
- otherwise a Hugging Face hub id (`owner/name`), whose `train` split is loaded with `datasets`
  (UNCONFIRMED from this machine, which has no hub access).

Rows (columns beyond these are ignored):

- math: `{"problem", "answer"}`, DeepScaleR's columns (agentica-org/DeepScaleR-Preview-Dataset has
  problem, answer, solution; the solution is not used). The prompt is the benchmarks' (the problem
  and the boxing instruction), the reference the answer as text, the supervised target
  `\\boxed{answer}`.
- code: `{"problem", "tests"}`, tests in the code suite's format (the files of ../shared/data/code:
  a non-empty list of `{"input", "output"}` stdin/stdout tests or `{"test", "entry_point"}`
  function tests), a JSON string of that list, or an APPS-style `{"inputs": [...], "outputs": [...]}`.
- either domain, Eurus-2-RL (PRIME-RL/Eurus-2-RL-Data) chat-style rows: the problem is the last
  user message of `prompt` (a list of `{"role", "content"}`; PRIME's own instruction may end it,
  and the suite's instruction is appended as for every problem), the reference is
  `reward_model["ground_truth"]` (math: the answer; code: a JSON string of
  `{"inputs", "outputs"}`, mapped to stdin/stdout tests; rows with an `fn_name`, call-based tests
  the suite cannot run, are skipped and counted). Where an `ability` column exists, only rows of
  the suite's domain are kept (Eurus-2-RL's train split mixes math and code).

Deduplication: a training row whose problem is an eval problem of one of the suite's configured
benchmarks is dropped, and the drops are counted per benchmark (`TrainingData.dedup`, logged once
when the data loads). Math problems compare by `procedural.canonical_problem` (lower-cased,
whitespace collapsed, trailing . ? ! removed, and a closing arithmetic expression taken alone);
code problems by the same normalised text without the expression rule (a statement's last
example must not merge two problems). Limits: only exact copies under that normalisation are
found; a paraphrase, a different LaTeX spelling (`$\\frac12$` vs `1/2`), or a copy wrapped in other
text (an Eurus-2 code prompt carries PRIME's instruction, the local rLLM copies of the code
benchmarks do not) is not; benchmarks not listed in `suites.<domain>.benchmarks` are not checked.

Validation: `validation_items` distinct problems, those with the lowest sha256 of their key, are
the `validation` split (every copy of such a problem leaves the training rows); the choice
depends on neither the seed nor the file's order. `train` is the rest, in an order drawn from
the suite's seed (so the first `n`, a trainer's prompt pool, is a seeded sample, not the file's head).

Errors (a missing or unreadable file, an empty one, a missing column, a malformed row) are a
`DatasetError`: one line naming the file (and row) and what is wrong. `check_source` finds the
cheap ones (existence, format, the first row's columns) before anything runs; the full read
happens on first use of a training split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.config import ConfigError
from suites import code, math
from suites.base import Item, Split
from suites.item_cache import ItemCache, items_from_plain, items_to_plain
from suites.jsonl import DatasetError, parse_record, read_jsonl
from suites.procedural import canonical_problem

FORMATS = (".jsonl", ".parquet")
"""File suffixes read as training data."""

HUB_SPLIT = "train"
"""Split of a hub dataset that is read as training data."""

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "math": (("problem", "prompt"), ("answer", "reward_model")),
    "code": (("problem", "prompt"), ("tests", "reward_model")),
}
"""Per domain, the columns a row needs: one of each pair (native format first, Eurus-2-RL second)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRAILING = re.compile(r"[\s.?!]+$")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One training problem as read from its source."""

    problem: str
    reference: Any
    """The answer text (math) or the tests list (code)."""
    task: str
    """The row's `data_source` when it has one, else `train_data`."""


# ------------------------------------------------------------------------------------------------
# where the data is


def local_files(source: str) -> list[Path] | None:
    """The files a local source names, or None when `source` is to be loaded from the hub."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in FORMATS)
        if not files:
            raise DatasetError(f"training data folder '{path}' holds no .jsonl or .parquet file (subfolders are not read)")
        return files
    if path.is_file():
        if path.suffix not in FORMATS:
            raise DatasetError(f"training data file '{path}' is neither .jsonl nor .parquet")
        return [path]
    if path.suffix in FORMATS or not _HUB_ID.match(source):
        raise DatasetError(f"training data '{source}' does not exist (give a .jsonl or .parquet file, a folder of them, "
                           "or a hub id owner/name)")
    return None


def check_source(domain: str, source: str) -> None:
    """The cheap checks of a training source, before anything runs: a local source exists, is of a
    known format, and its files' first rows have the domain's columns (a hub id is not checked:
    no hub access is assumed). The full read, with every row checked, happens on first use."""
    for path in local_files(source) or ():
        if path.suffix == ".parquet":
            _check_columns(domain, _parquet_columns(path), f"{path}")
        else:
            where, first = _first_jsonl_record(path)
            if first.get("ability", domain) == domain:  # a row of another domain is skipped, whatever its columns
                _check_columns(domain, first, where)


def _check_columns(domain: str, columns: Iterable[str], where: str) -> None:
    columns = set(columns)
    missing = [pair for pair in COLUMNS[domain] if not columns & set(pair)]
    if missing:
        need = " and ".join(p[0] for p in COLUMNS[domain])
        eurus = " and ".join(p[1] for p in COLUMNS[domain])
        raise DatasetError(f"{where}: missing column {', '.join(repr(p[0]) for p in missing)}; {domain} training rows need "
                           f"{need} (or Eurus-2-RL's {eurus})")


def _first_jsonl_record(path: Path) -> tuple[str, dict]:
    number, line = 0, ""
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):  # noqa: B007 (the first non-blank line is wanted after the loop)
                if line.strip():
                    break
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text, so not a .jsonl file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    if not line.strip():
        raise DatasetError(f"{path}: empty (no rows)")
    return f"{path}:{number}", parse_record(path, number, line)


def _parquet_columns(path: Path) -> list[str]:
    pq = _pyarrow_parquet()
    try:
        meta = pq.ParquetFile(path).metadata
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for a broken file
        raise DatasetError(f"{path}: not a readable parquet file ({_one_line(exc)})") from None
    if meta.num_rows == 0:
        raise DatasetError(f"{path}: empty (no rows)")
    return names


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq  # lazy: pyarrow (installed with datasets) takes a moment to import; only .parquet needs it
    except ImportError:
        raise DatasetError("reading .parquet training data needs pyarrow (pip install pyarrow)") from None
    return pq


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------
# reading rows


def read_rows(domain: str, source: str) -> tuple[list[Row], Counter]:
    """Every usable row of a source, and the count of rows skipped by reason (`other ability`,
    `call-based tests`). Raises DatasetError, one line, on anything malformed."""
    if domain not in COLUMNS:
        raise ValueError(f"no training data for suite '{domain}'; valid: {', '.join(COLUMNS)}")
    files = local_files(source)
    records = _hub_records(source) if files is None else ((w, r) for f in files for w, r in _file_records(domain, f))
    rows: list[Row] = []
    skipped: Counter = Counter()
    for where, record in records:
        ability = record.get("ability")
        if ability is not None and ability != domain:
            skipped["other ability"] += 1
            continue
        _check_columns(domain, record, where)
        row = _row(domain, record, where)
        if row is None:
            skipped["call-based tests"] += 1
        else:
            rows.append(row)
    return rows, skipped


def _file_records(domain: str, path: Path) -> Iterable[tuple[str, dict]]:
    if path.suffix == ".parquet":
        _check_columns(domain, _parquet_columns(path), f"{path}")
        try:
            records = _pyarrow_parquet().read_table(path).to_pylist()
        except Exception as exc:  # as in _parquet_columns
            raise DatasetError(f"{path}: not a readable parquet file ({_one_line(exc)})") from None
        label = "row"
    else:
        try:
            records = read_jsonl(path)
        except UnicodeDecodeError:
            raise DatasetError(f"{path}: not UTF-8 text, so not a .jsonl file") from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
        label = "record"
    if not records:
        raise DatasetError(f"{path}: empty (no rows)")
    for index, record in enumerate(records):
        yield f"{path}: {label} {index + 1}", record


def _hub_records(source: str) -> Iterable[tuple[str, dict]]:
    """Rows of a hub dataset's train split (layout UNCONFIRMED: no hub access from this machine)."""
    try:
        from datasets import load_dataset  # lazy: datasets takes seconds to import; only a hub source needs it

        rows = load_dataset(source, split=HUB_SPLIT)
    except Exception as exc:  # offline, unknown id, no such split: the hub client raises many types
        raise DatasetError(f"training data '{source}' is no local file or folder, and the hub gave no '{HUB_SPLIT}' split "
                           f"for it ({_one_line(exc)})") from None
    for index, record in enumerate(rows):
        yield f"{source} ({HUB_SPLIT} split): row {index + 1}", record


def _row(domain: str, record: dict, where: str) -> Row | None:
    problem = _problem(record, where)
    if domain == "math":
        reference = _answer(record, where)
    else:
        reference = _tests(record["tests"] if "tests" in record else _ground_truth(record, where), where)
        if reference is None:
            return None
    task = record.get("data_source")
    return Row(problem=problem, reference=reference, task=task if isinstance(task, str) and task else "train_data")


def _problem(record: dict, where: str) -> str:
    if "problem" in record:
        problem = record["problem"]
    else:
        prompt = record["prompt"]
        if isinstance(prompt, str):
            problem = prompt
        else:
            users = [m.get("content") for m in prompt or () if isinstance(m, dict) and m.get("role") == "user"]
            if not users:
                raise DatasetError(f"{where}: 'prompt' has no user message")
            problem = users[-1]
    if not isinstance(problem, str) or not problem.strip():
        raise DatasetError(f"{where}: the problem is empty or not text")
    return problem


def _ground_truth(record: dict, where: str) -> Any:
    reward_model = record["reward_model"]
    if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
        raise DatasetError(f"{where}: 'reward_model' has no 'ground_truth'")
    return reward_model["ground_truth"]


def _answer(record: dict, where: str) -> str:
    answer = record["answer"] if "answer" in record else _ground_truth(record, where)
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if answer is None or isinstance(answer, (dict, list)) or not str(answer).strip():
        raise DatasetError(f"{where}: the answer is empty or not text")
    return str(answer).strip()


def _tests(value: Any, where: str) -> list[dict] | None:
    """The code suite's tests list from any of the accepted forms; None for call-based tests."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: the tests are text but not JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(value, dict) and "inputs" in value:
        if value.get("fn_name"):
            return None
        inputs, outputs = value.get("inputs") or [], value.get("outputs") or []
        if len(inputs) != len(outputs):
            raise DatasetError(f"{where}: the tests have {len(inputs)} inputs but {len(outputs)} outputs")
        value = [{"input": _text(i), "output": _text(o)} for i, o in zip(inputs, outputs)]
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: 'tests' must be a non-empty list of tests")
    tests = []
    for number, test in enumerate(value, start=1):
        test = {k: v for k, v in test.items() if v is not None} if isinstance(test, dict) else test  # parquet structs fill absent keys
        if not isinstance(test, dict) or not ({"input", "output"} <= test.keys() or {"test", "entry_point"} <= test.keys()):
            raise DatasetError(f"{where}: test {number} needs 'input' and 'output', or 'test' and 'entry_point'")
        tests.append(test)
    return tests


def _text(value) -> str:
    """A test's stdin or stdout as text (some sources store a list of lines), as code.py reads the hub."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


# ------------------------------------------------------------------------------------------------
# keys, items, splits


def problem_key(domain: str, problem: str) -> str:
    """What two problems must share to count as one (see the module docstring)."""
    if domain == "math":
        return canonical_problem(problem)
    return _TRAILING.sub("", " ".join(problem.lower().split()))


_FORMAT: dict[str, Callable[[str], str]] = {"math": math.format_prompt, "code": code.format_prompt}


def eval_problem(domain: str, prompt: str) -> str:
    """The problem of a benchmark item's prompt (the prompt without the suite's instruction)."""
    suffix = _FORMAT[domain]("")
    return prompt[: -len(suffix)] if suffix and prompt.endswith(suffix) else prompt


def _item(domain: str, row: Row, split: str, index: int) -> Item:
    prompt = _FORMAT[domain](row.problem)
    target = f"\\boxed{{{row.reference}}}" if domain == "math" else ""
    return Item(id=f"{domain}/{row.task}/{split}/{index}", task=row.task, prompt=prompt, reference=row.reference, target=target)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rank(key: str, salt: str = "") -> bytes:
    return hashlib.sha256(f"{salt}{key}".encode("utf-8")).digest()


class TrainingData:
    """The train and validation splits of a benchmark suite, read from `source` on first use,
    without the problems of `benchmarks` (the suite's eval items by benchmark)."""

    def __init__(self, domain: str, source: str, benchmarks: dict[str, list[Item]], seed: int, validation_items: int,
                 cache: ItemCache | None = None):
        self.cache = cache
        """Where the splits are kept once built (a local source only: a hub dataset's content is not
        known before it is read); None: read and split on every load."""
        self.domain = domain
        self.source = source
        self.benchmarks = benchmarks
        self.seed = seed
        self.validation_items = validation_items
        self._splits: dict[str, list[Item]] | None = None
        self.dedup_by_benchmark: dict[str, int] = {}
        """Training rows dropped as copies of each benchmark's eval problems (after loading)."""
        self.skipped: dict[str, int] = {}
        """Rows left out by reason: `other ability`, `call-based tests` (after loading)."""
        self.summary = ""
        """The line logged when the data loads: rows, skips, eval copies dropped, split sizes (after loading)."""

    @property
    def dedup(self) -> int:
        """How many training rows were dropped as copies of eval problems (loads the data)."""
        self.load()
        return sum(self.dedup_by_benchmark.values())

    def items(self, split: Split, n: int) -> list[Item]:
        """The first `n` items of `train` or `validation` (0, or more than there are: all)."""
        if split not in ("train", "validation"):
            raise ValueError(f"training data has the train and validation splits, not '{split}'")
        if split == "validation" and not self.validation_items:
            raise ConfigError(f"suite '{self.domain}' has no validation split: suites.{self.domain}.validation_items is 0")
        items = self.load()[split]
        return items[:n] if n else items

    def load(self) -> dict[str, list[Item]]:
        if self._splits is None:
            key = self.cache_key() if self.cache is not None else None
            if key is None:
                self._splits = self._build()
            else:
                self._splits = self.cache.get(f"{self.domain} training data", key, self._build, self._dump, self._restore,
                                              lambda splits: sum(len(v) for v in splits.values()))
        return self._splits

    def cache_key(self) -> dict | None:
        """What determines the splits, for the item cache: each file's sha256 (content, not name or
        time), the eval problems deduplicated against, the seed, the validation size. None for a hub
        source (not cached)."""
        files = local_files(self.source)
        if files is None:
            return None
        evals = hashlib.sha256()
        for benchmark, items in self.benchmarks.items():
            for it in items:
                evals.update(f"{benchmark}\0{it.prompt}\0".encode("utf-8"))
        return {"training_data": self.domain, "source": self.source, "seed": self.seed, "validation_items": self.validation_items,
                "files": [[path.name, _file_sha256(path)] for path in files], "eval_problems": evals.hexdigest()}

    def _dump(self, splits: dict[str, list[Item]]) -> dict:
        return {"splits": {k: items_to_plain(v) for k, v in splits.items()},
                "dedup_by_benchmark": self.dedup_by_benchmark, "skipped": self.skipped, "summary": self.summary}

    def _restore(self, payload: dict) -> dict[str, list[Item]]:
        splits = {k: items_from_plain(v) for k, v in payload["splits"].items()}
        self.dedup_by_benchmark = dict(payload["dedup_by_benchmark"])
        self.skipped = dict(payload["skipped"])
        self.summary = payload["summary"]
        logger.warning(f"{self.summary} (from the item cache)")
        return splits

    def _build(self) -> dict[str, list[Item]]:
        rows, skipped = read_rows(self.domain, self.source)
        eval_keys: dict[str, str] = {}
        for benchmark, items in self.benchmarks.items():
            for it in items:
                eval_keys.setdefault(problem_key(self.domain, eval_problem(self.domain, it.prompt)), benchmark)
        dropped: Counter = Counter()
        kept: list[tuple[str, Row]] = []
        for row in rows:
            key = problem_key(self.domain, row.problem)
            if key in eval_keys:
                dropped[eval_keys[key]] += 1
            else:
                kept.append((key, row))
        self.dedup_by_benchmark = {b: dropped[b] for b in self.benchmarks}
        self.skipped = dict(skipped)
        distinct = sorted({key for key, _ in kept}, key=_rank)
        if not kept or len(distinct) <= self.validation_items:
            raise DatasetError(
                f"training data '{self.source}' leaves {len(distinct)} distinct {self.domain} problems for training and "
                f"validation ({len(rows)} rows, {sum(dropped.values())} dropped as eval copies, {sum(skipped.values())} skipped); "
                f"suites.{self.domain}.validation_items={self.validation_items} needs more")
        held = set(distinct[: self.validation_items])
        first: dict[str, Row] = {}
        train_rows: list[tuple[int, str, Row]] = []
        for index, (key, row) in enumerate(kept):
            if key in held:
                first.setdefault(key, row)
            else:
                train_rows.append((index, key, row))
        train_rows.sort(key=lambda r: _rank(f"{r[0]}:{r[1]}", salt=f"{self.seed}:"))
        splits = {
            "validation": [_item(self.domain, first[key], "validation", i) for i, key in enumerate(k for k in distinct if k in held)],
            "train": [_item(self.domain, row, "train", i) for i, (_, _, row) in enumerate(train_rows)],
        }
        per = ", ".join(f"{b} {c}" for b, c in self.dedup_by_benchmark.items() if c)
        skips = "".join(f", skipped {c} ({why})" for why, c in sorted(skipped.items()))
        self.summary = (f"{self.domain} training data {self.source}: {len(rows)} rows{skips}; dropped {sum(dropped.values())} "
                        f"as copies of eval problems{f' ({per})' if per else ''}; {len(splits['validation'])} problems for "
                        f"validation, {len(splits['train'])} rows for training")
        logger.warning(self.summary)
        return splits
