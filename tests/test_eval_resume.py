"""An evaluation folder end to end on the smoke base, in one process: kill -9 mid-run and the same
command resumes to the result of an uninterrupted run (responses included); `harness rescore`
gives back the same scores, and mends a score that differs from what the scorer says; another
protocol on the folder is refused in one line."""

from __future__ import annotations

import gzip
import json
import os
import signal

import pytest

from harness.jobs import eval_store as store
from tests.conftest import run_cli
from tests.evalcheck import Command, assert_same_evaluation, eval_args, one_process_evaluation, result

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(smoke_base, tmp_path_factory):
    """An uninterrupted one-process evaluation: (its folder, the checkpoint, the cache)."""
    return one_process_evaluation(smoke_base, tmp_path_factory)


def test_a_killed_evaluation_resumes_to_the_same_result(reference, tmp_path):
    ref, path, cache = reference
    out = tmp_path / "G"
    first = Command(eval_args(path, out), cache)
    first.wait_for(lambda line: line.startswith("eval shard 1/1: 3/"), timeout_s=300)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=30)
    assert 0 < len(store.done_batches(out)) < 10
    done = run_cli(eval_args(path, out), cache, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "engine calls already done, skipped" in done.stderr
    assert_same_evaluation(ref, out)
    again = run_cli(eval_args(path, out), cache, timeout=600)  # all done: nothing generated, the same result
    assert again.returncode == 0 and "10 of 10 engine calls already done" in again.stderr
    assert_same_evaluation(ref, out)


def test_rescore_gives_the_same_scores_and_mends_a_wrong_one(reference, tmp_path):
    ref, _, cache = reference
    out = tmp_path / "R"
    out.mkdir()
    for name in (store.MANIFEST, store.RESULT):
        (out / name).write_bytes((ref / name).read_bytes())
    (out / store.RESPONSES).mkdir()
    for _, path in store.run_files(ref):
        (out / store.RESPONSES / path.name).write_bytes(path.read_bytes())
    done = run_cli(["rescore", str(out), "--quiet"], cache, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rescored 160 samples: 0 changed" in done.stdout
    assert result(out) == result(ref)
    # a newer copy of one call whose first sample carries a score the scorer does not give (as an older scorer's would)
    (key, records), = [(k, v) for k, v in store.done_batches(out, keep_text=True).items() if k == ("math", 0)]
    sample = records[0]["samples"][0]
    sample["reward"], sample["status"] = 1.0 - sample["reward"], "stale"
    with store.RecordWriter(store.shard_file(out, 900, 0)) as writer:
        writer.write_batch(records)
    done = run_cli(["rescore", str(out), "--quiet"], cache, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rescored 160 samples: 1 changed" in done.stdout
    assert result(out) == result(ref)
    assert [p.name for _, p in store.run_files(out)] == ["run901-rescore.jsonl.gz"]  # the older files are gone
    lines = gzip.decompress((out / store.RESPONSES / "run901-rescore.jsonl.gz").read_bytes()).decode().splitlines()
    assert len(lines) == 40 and all(json.loads(line)["samples"][0]["text"] is not None for line in lines)


def test_another_protocol_on_the_folder_is_refused_in_one_line(reference, tmp_path):
    ref, path, cache = reference
    done = run_cli(eval_args(path, ref, "eval.k=2"), cache, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "holds another evaluation (eval.k: 4 -> 2)" in lines[-1], done.stderr
    done = run_cli(["eval", str(path), "--profile", "smoke", "--out", str(tmp_path / "f.json")], cache, timeout=300)
    assert done.returncode == 2 and "--out is the evaluation's folder" in done.stderr
    done = run_cli(["rescore", str(tmp_path)], cache, timeout=300)
    assert done.returncode == 2 and "not a `harness eval` folder" in done.stderr
