"""Training data of the benchmark suites (suites/train_data.py): formats, column mapping,
deduplication against the eval sets, the validation carve, and one-line errors. Offline: every
file is written in tmp_path (the hub is a stand-in module)."""

from __future__ import annotations

import json
import logging
import sys
import types

import pytest

from harness.config import ConfigError, UserError, load_config
from suites import build_suite
from suites.jsonl import DatasetError
from suites.train_data import read_rows
from tests.conftest import SHARED_DATA, run_cli

AIME = [{"problem": f"Find the number of ordered pairs $(a,b)$ with $a+b={n}$ and $a,b>0$.", "answer": str(n - 1)} for n in (10, 20, 30)]
CODEFORCES = [{"problem": f"Read an integer n and print n plus {k}.\n\nInput Format:\nOne integer.", "tests": [{"input": "1", "output": str(1 + k)}]}
              for k in (3, 4)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def math_rows(n, start=0):
    return [{"problem": f"What is {i} squared plus one?", "answer": str(i * i + 1), "solution": f"{i}*{i}+1"} for i in range(start, start + n)]


def code_rows(n):
    return [{"problem": f"Print the input number times {i}.", "tests": [{"input": "2", "output": str(2 * i)}, {"input": "3", "output": str(3 * i)}]}
            for i in range(n)]


@pytest.fixture
def evals(tmp_path):
    """A folder of tiny eval sets in ../shared/data's format (aime24 for math, codeforces for code)."""
    folder = tmp_path / "eval"
    folder.mkdir()
    write_jsonl(folder / "aime24.jsonl", AIME)
    write_jsonl(folder / "codeforces.jsonl", CODEFORCES)
    return folder


def suite(domain, evals, train_data, validation_items=4, seed=0, benchmarks=None):
    benchmarks = benchmarks or ("aime24" if domain == "math" else "codeforces")
    cfg = load_config("tiny", [f"suites.{domain}.source=benchmarks", f"suites.{domain}.benchmarks=[{benchmarks}]",
                               f"suites.{domain}.data_dir={evals}", f"suites.{domain}.train_data={train_data}",
                               f"suites.{domain}.validation_items={validation_items}"])
    return build_suite(domain, cfg.suites, seed)


# ------------------------------------------------------------------------------------------------
# formats and mapping


def test_math_jsonl_gives_train_and_validation_and_eval_stays_the_benchmarks(tmp_path, evals):
    s = suite("math", evals, write_jsonl(tmp_path / "train.jsonl", math_rows(20)))
    train, validation = s.items("train", 0), s.items("validation", 0)
    assert len(train) == 16 and len(validation) == 4
    assert not {it.prompt for it in train} & {it.prompt for it in validation}
    assert [it.reference for it in s.items("eval", 0)] == ["9", "19", "29"]
    item = train[0]
    problem = item.prompt.split(" Let's think")[0]
    n = int(problem.split()[2])
    assert item.prompt == f"{problem} Let's think step by step and output the final answer within \\boxed{{}}."  # as the benchmarks
    assert item.reference == str(n * n + 1) and item.target == f"\\boxed{{{n * n + 1}}}"  # the solution column is not used
    assert item.task == "train_data" and item.id == "math/train_data/train/0"
    assert s.scorer(item.target, item.reference).reward == 1.0
    assert s.items("train", 5) == train[:5] and len(s.items("train", 100)) == 16  # first n; more than there are: all
    assert s.tasks == [("train_data", None)]


def test_train_order_is_seeded_and_validation_depends_on_neither_seed_nor_file_order(tmp_path, evals):
    rows = math_rows(30)
    a = suite("math", evals, write_jsonl(tmp_path / "a.jsonl", rows), seed=0)
    again = suite("math", evals, write_jsonl(tmp_path / "a.jsonl", rows), seed=0)
    other_seed = suite("math", evals, tmp_path / "a.jsonl", seed=1)
    reversed_file = suite("math", evals, write_jsonl(tmp_path / "b.jsonl", rows[::-1]), seed=0)
    assert a.items("train", 0) == again.items("train", 0)
    assert [it.prompt for it in a.items("train", 0)] != [it.prompt for it in other_seed.items("train", 0)]
    assert {it.prompt for it in a.items("train", 0)} == {it.prompt for it in other_seed.items("train", 0)}
    assert [it.prompt for it in a.items("validation", 0)] == [it.prompt for it in other_seed.items("validation", 0)] \
        == [it.prompt for it in reversed_file.items("validation", 0)]


def test_copies_of_a_validation_problem_never_reach_train(tmp_path, evals):
    rows = math_rows(10)
    s = suite("math", evals, write_jsonl(tmp_path / "t.jsonl", rows + [dict(r, problem=r["problem"].upper()) for r in rows]))
    held = {it.prompt.lower() for it in s.items("validation", 0)}
    assert len(held) == 4 and not held & {it.prompt.lower() for it in s.items("train", 0)}
    assert len(s.items("train", 0)) == 12  # both copies of the 6 others


def test_parquet_file_and_a_folder_of_files(tmp_path, evals):
    pa = pytest.importorskip("pyarrow", reason="writing parquet needs pyarrow (installed with datasets)")
    import pyarrow.parquet as pq

    folder = tmp_path / "mix"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(math_rows(10)), folder / "part-0.parquet")
    write_jsonl(folder / "part-1.jsonl", math_rows(10, start=10))
    (folder / "README.md").write_text("not data")
    (folder / "nested").mkdir()
    write_jsonl(folder / "nested" / "more.jsonl", math_rows(10, start=50))  # subfolders are not read
    s = suite("math", evals, folder)
    assert len(s.items("train", 0)) + len(s.items("validation", 0)) == 20
    only_parquet = suite("math", evals, folder / "part-0.parquet")
    assert {it.reference for it in only_parquet.items("train", 0) + only_parquet.items("validation", 0)} == {str(i * i + 1) for i in range(10)}

    code_file = tmp_path / "code.parquet"  # tests as a list of structs: pyarrow fills each test's absent keys with None
    function_test = {"test": "def check(f):\n    assert f(1) == 2", "entry_point": "f"}
    rows = code_rows(6) + [{"problem": "Define f(x) returning x + 1.", "tests": [function_test]}]
    pq.write_table(pa.Table.from_pylist(rows), code_file)
    c = suite("code", evals, code_file, validation_items=1)
    tests = {it.prompt.split("\n\n")[0]: it.reference for it in c.items("train", 0) + c.items("validation", 0)}
    assert tests["Print the input number times 5."] == [{"input": "2", "output": "10"}, {"input": "3", "output": "15"}]
    assert tests["Define f(x) returning x + 1."] == [function_test]


def eurus_row(ability, content, truth, source="taco"):
    prompt = [{"role": "system", "content": "Think first."}, {"role": "user", "content": content}]
    return {"data_source": source, "ability": ability, "prompt": prompt, "reward_model": {"style": "rule", "ground_truth": truth},
            "extra_info": {"index": 0}}


def test_eurus_chat_rows_map_to_problem_and_tests(tmp_path, evals):
    rows = [eurus_row("code", f"Print twice the input, plus {i}.", json.dumps({"inputs": ["1\n", "2\n"], "outputs": [f"{2 + i}\n", f"{4 + i}\n"]}))
            for i in range(5)]
    rows.append(eurus_row("code", "Call-based.", json.dumps({"fn_name": "solve", "inputs": [[1]], "outputs": [[2]]})))
    rows.append(eurus_row("math", "What is 1 + 1?", "2", source="numina_olympiads"))
    rows.append({"problem": "Lines as lists.", "tests": json.dumps({"inputs": [["1", "2"]], "outputs": [["3"]]})})  # APPS form, JSON text
    got, skipped = read_rows("code", str(write_jsonl(tmp_path / "eurus.jsonl", rows)))
    assert skipped == {"call-based tests": 1, "other ability": 1}
    assert got[0].problem == "Print twice the input, plus 0." and got[0].task == "taco"
    assert got[0].reference == [{"input": "1\n", "output": "2\n"}, {"input": "2\n", "output": "4\n"}]
    assert got[-1].reference == [{"input": "1\n2", "output": "3"}] and got[-1].task == "train_data"

    math_got, math_skipped = read_rows("math", str(write_jsonl(tmp_path / "eurus_only.jsonl", rows[:-1])))
    assert [(r.problem, r.reference, r.task) for r in math_got] == [("What is 1 + 1?", "2", "numina_olympiads")]
    assert math_skipped == {"other ability": 6}


def test_eurus_parquet_with_math_and_code_rows(tmp_path, evals):
    pa = pytest.importorskip("pyarrow", reason="writing parquet needs pyarrow (installed with datasets)")
    import pyarrow.parquet as pq

    rows = [eurus_row("math", f"What is {i} + 1?", str(i + 1), source="numina") for i in range(3)]  # first: another domain's
    rows += [eurus_row("code", f"Print the input plus {i}.", json.dumps({"inputs": ["1"], "outputs": [str(1 + i)]})) for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eurus.parquet")
    s = suite("code", evals, tmp_path / "eurus.parquet", validation_items=1)
    assert len(s.items("train", 0)) == 3 and s.training.skipped == {"other ability": 3}
    assert all(it.task == "taco" and it.reference[0]["input"] == "1" for it in s.items("train", 0))
    path = write_jsonl(tmp_path / "eurus.jsonl", rows[:1] + [{"problem": f"P{i}", "tests": [{"input": "1", "output": "1"}]} for i in range(3)])
    assert len(suite("code", evals, path, validation_items=1).items("train", 0)) == 2  # a first row of math is no column error


def test_hub_id_loads_its_train_split(monkeypatch, tmp_path, evals):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        if name != "agentica-org/DeepScaleR-Preview-Dataset":
            raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore detail")
        return math_rows(12)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    s = suite("math", evals, "agentica-org/DeepScaleR-Preview-Dataset")
    assert calls == [] and len(s.items("train", 0)) == 8 and calls == [("agentica-org/DeepScaleR-Preview-Dataset", "train")]  # lazily
    with pytest.raises(DatasetError) as err:
        suite("math", evals, "someone/missing-set").items("train", 1)
    assert "someone/missing-set" in str(err.value) and "ConnectionError" in str(err.value) and "\n" not in str(err.value)


def test_code_scorer_bound_covers_the_training_item_with_most_tests(tmp_path, evals):
    many = [{"problem": "Echo.", "tests": [{"input": str(i), "output": str(i)} for i in range(40)]}]
    s = suite("code", evals, write_jsonl(tmp_path / "c.jsonl", code_rows(4) + many), validation_items=1)
    before = s.scorer_timeout_s
    s.items("train", 0)
    s.items("validation", 0)
    assert s.scorer_timeout_s > before and s.scorer_timeout_s >= 40 * 5.0


# ------------------------------------------------------------------------------------------------
# deduplication against the eval sets


def test_copies_of_eval_problems_are_dropped_counted_and_logged_once(tmp_path, evals, caplog):
    copy = dict(AIME[1], problem="  " + AIME[1]["problem"].upper().replace(" ", "   \n") + " ")  # case and whitespace differ
    path = write_jsonl(tmp_path / "t.jsonl", math_rows(10) + [copy, AIME[2]])
    s = suite("math", evals, path)
    with caplog.at_level(logging.WARNING, logger="suites.train_data"):
        assert s.dedup == 2 and s.training.dedup_by_benchmark == {"aime24": 2}
        kept = {it.prompt.lower() for it in s.items("train", 0) + s.items("validation", 0)}
        s.items("train", 3)
    assert len(kept) == 10 and not kept & {it.prompt.lower() for it in s.items("eval", 0)}
    logged = [r.getMessage() for r in caplog.records if "training data" in r.getMessage()]
    assert len(logged) == 1 and "dropped 2 as copies of eval problems (aime24 2)" in logged[0]


def test_code_dedup_uses_normalised_text(tmp_path, evals):
    copy = {"problem": CODEFORCES[0]["problem"].replace("\n", " ").lower() + ".", "tests": [{"input": "5", "output": "8"}]}
    s = suite("code", evals, write_jsonl(tmp_path / "c.jsonl", code_rows(6) + [copy]), validation_items=1)
    assert s.dedup == 1 and len(s.items("train", 0)) == 5


def test_no_training_data_is_still_eval_only(evals):
    cfg = load_config("tiny", ["suites.math.source=benchmarks", "suites.math.benchmarks=[aime24]", f"suites.math.data_dir={evals}"])
    s = build_suite("math", cfg.suites, cfg.seed)
    assert s.dedup is None and s.tasks == []
    with pytest.raises(ConfigError, match="only an eval split.*suites.math.train_data"):
        s.items("train", 1)


@pytest.mark.skipif(not (SHARED_DATA / "math").is_dir(), reason=f"real eval sets not found at {SHARED_DATA}")
def test_a_copy_of_a_real_aime24_problem_is_dropped(tmp_path):
    real = json.loads((SHARED_DATA / "math" / "aime24.jsonl").read_text().splitlines()[7])
    path = write_jsonl(tmp_path / "t.jsonl", math_rows(8) + [{"problem": real["problem"] + "\n", "answer": real["answer"]}])
    s = suite("math", SHARED_DATA / "math", path)
    assert s.dedup == 1 and len(s.items("train", 0)) + len(s.items("validation", 0)) == 8


# ------------------------------------------------------------------------------------------------
# errors: one line naming the file


def one_line_error(fn, *needles, kind=DatasetError):
    with pytest.raises(kind) as err:
        fn()
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def bad_files(tmp_path):
    """(file, what the message must say) for files the cheap check before a run refuses."""
    no_answer = write_jsonl(tmp_path / "no_answer.jsonl", [{"problem": "1+1?", "solution": "2"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    not_json = tmp_path / "not_json.jsonl"
    not_json.write_text('{"problem": "1+1?", "answer": \n')
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    broken_parquet = tmp_path / "broken.parquet"
    broken_parquet.write_bytes(b"PAR1 this is not parquet")
    csv = tmp_path / "rows.csv"
    csv.write_text("problem,answer\n1+1?,2\n")
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    return [
        (no_answer, "missing column 'answer'"),
        (empty, "empty (no rows)"),
        (not_json, "not valid JSON"),
        (binary, "not UTF-8"),
        (broken_parquet, "not a readable parquet file"),
        (csv, "neither .jsonl nor .parquet"),
        (empty_dir, "holds no .jsonl or .parquet file"),
        (tmp_path / "missing.jsonl", "does not exist"),
    ]


def test_bad_files_are_refused_in_one_line_when_the_suite_is_built(tmp_path, evals):
    for path, what in bad_files(tmp_path):
        one_line_error(lambda path=path: suite("math", evals, path), str(path), what)


def test_bad_rows_past_the_first_are_refused_in_one_line_on_first_use(tmp_path, evals):
    path = write_jsonl(tmp_path / "later.jsonl", math_rows(5) + [{"problem": "No answer here."}])
    s = suite("math", evals, path)  # the cheap check reads the first row only
    one_line_error(lambda: s.items("train", 1), f"{path}: record 6", "missing column 'answer'")
    for rows, what in [
        ([{"problem": "P", "tests": []}], "'tests' must be a non-empty list"),
        ([{"problem": "P", "tests": [{"stdin": "1", "stdout": "2"}]}], "test 1 needs 'input' and 'output'"),
        ([{"problem": "P", "tests": "[{"}], "not JSON"),
        ([{"problem": "", "tests": [{"input": "1", "output": "1"}]}], "the problem is empty"),
        ([eurus_row("code", "P", json.dumps({"inputs": ["1"], "outputs": []}))], "1 inputs but 0 outputs"),
    ]:
        path = write_jsonl(tmp_path / "code_bad.jsonl", rows)
        one_line_error(lambda path=path: read_rows("code", str(path)), str(path), what)


def test_too_few_problems_for_the_validation_split(tmp_path, evals):
    path = write_jsonl(tmp_path / "small.jsonl", math_rows(3) + AIME)
    one_line_error(lambda: suite("math", evals, path, validation_items=3).items("train", 1),
                   "leaves 3 distinct math problems", "3 dropped as eval copies", "suites.math.validation_items=3")


def test_train_data_with_a_procedural_suite_is_a_config_error(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", math_rows(3))
    cfg = load_config("tiny", [f"suites.math.train_data={path}"])
    one_line_error(lambda: build_suite("math", cfg.suites, cfg.seed), "suites.math.train_data", "source=benchmarks", kind=ConfigError)


@pytest.mark.skipif(not (SHARED_DATA / "math").is_dir(), reason=f"real eval sets not found at {SHARED_DATA}")
def test_cli_train_with_a_bad_training_file_exits_2_in_one_line_before_writing(tmp_path):
    """One CLI run (each costs seconds of imports); the other bad files take the same path, `check_suites`,
    which the test above calls through build_suite."""
    path, what = bad_files(tmp_path)[0]
    out = tmp_path / "run"
    done = run_cli(["train", "prorl", "--profile", "smoke", "--out", str(out), "suites.math.source=benchmarks",
                    "suites.math.benchmarks=[aime24]", f"suites.math.data_dir={SHARED_DATA / 'math'}",
                    f"suites.math.train_data={path}"], tmp_path / "cache", timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and str(path) in lines[0] and what in lines[0], lines
    assert not out.exists() and not (tmp_path / "cache").exists()
