"""An evaluation folder's records (harness/jobs/eval_store.py) and its shards (harness/jobs/eval_run.py),
without a model: a file cut at any byte reads as the calls flushed before the cut; a call counts
only when whole; the newest run's copy of a call wins; the shards partition the calls."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import time
from pathlib import Path

from harness.config import ConfigError
from harness.jobs import eval_store as store
from harness.jobs.eval_run import Planned, shard_batches
from harness.jobs.evaluate import Batch, aggregate
from harness.rollout import SamplingParams
from suites.base import Item, ScoreResult


def records(suite: str, start: int, n: int, reward: float = 1.0, text: str = "x") -> list[dict]:
    return [{"suite": suite, "batch": start, "batch_items": n, "index": start + i, "id": f"{suite}/t/{start + i}", "task": "t",
             "gen_s": 0.1, "samples": [{"text": text * (i + 1), "tokens": 3, "finish": "stop", "reward": reward, "status": "correct",
                                        "extracted": None}]} for i in range(n)]


def test_a_file_cut_anywhere_reads_as_the_calls_flushed_before_the_cut(tmp_path):
    path = store.shard_file(tmp_path, 1, 0)
    sizes = []
    with store.RecordWriter(path) as writer:
        for start in (0, 4, 8):
            writer.write_batch(records("math", start, 4, text="response " * 50))
            sizes.append(path.stat().st_size)  # flushed: this many bytes hold the calls so far
    whole = path.read_bytes()
    assert gzip.decompress(whole).count(b"\n") == 12  # a valid gzip file once closed
    cut = tmp_path / "cut" / store.RESPONSES / path.name
    cut.parent.mkdir(parents=True)
    for size in range(0, len(whole) + 1, 7):
        cut.write_bytes(whole[:size])
        done = store.done_batches(tmp_path / "cut")
        flushed = sum(size >= s for s in sizes)  # calls whose flush ended before the cut: all read
        assert flushed <= len(done) <= flushed + 1  # the next may decode whole before its flush marker
        assert sorted(done) == [("math", start) for start in (0, 4, 8)[:len(done)]]
        for key, recs in done.items():
            assert [r["index"] for r in recs] == list(range(key[1], key[1] + 4))


def test_a_torn_call_does_not_count_and_the_newest_copy_wins(tmp_path):
    with store.RecordWriter(store.shard_file(tmp_path, 1, 0)) as w:
        w.write_batch(records("code", 0, 3, reward=0.0))
        w.write_batch(records("code", 3, 3, reward=0.0)[:2])  # the writer died inside this call
    with store.RecordWriter(store.shard_file(tmp_path, 2, 1)) as w:
        w.write_batch(records("code", 0, 3, reward=1.0))
    done = store.done_batches(tmp_path)
    assert list(done) == [("code", 0)]
    assert {s["reward"] for r in done[("code", 0)] for s in r["samples"]} == {1.0}  # run 2's copy
    assert "text" not in done[("code", 0)][0]["samples"][0]
    assert store.done_batches(tmp_path, keep_text=True)[("code", 0)][1]["samples"][0]["text"] == "xx"
    assert store.next_run(tmp_path) == 3


def test_aggregate_reads_records_as_evaluate_suite_counts_them():
    recs = records("rg", 0, 2, reward=1.0) + records("rg", 2, 2, reward=0.0)
    score = aggregate(recs)
    assert score.n_items == 4 and score.k == 1 and score.pass_at_1 == 0.5
    assert score.item_scores == {"rg/t/0": 1.0, "rg/t/1": 1.0, "rg/t/2": 0.0, "rg/t/3": 0.0}
    assert score.statuses == {"correct": 4} and score.finish_reasons == {"stop": 4} and score.mean_output_tokens == 3


def _score(response, reference) -> ScoreResult:
    return ScoreResult(1.0, "correct")


def test_shards_partition_the_calls_round_robin_over_every_suite():
    def planned(name, n_batches):
        items = [Item(f"{name}/t/{i}", "t", "p", "r", "t") for i in range(n_batches)]
        return Planned(items, [Batch(name, i, (items[i],), 2, SamplingParams(), _score, None) for i in range(n_batches)])

    plan = {"math": planned("math", 3), "code": planned("code", 2), "reasoning_gym": planned("reasoning_gym", 4)}
    everything = [(b.suite, b.start) for p in plan.values() for b in p.batches]
    for k in (1, 2, 3, 9, 12):
        shards = shard_batches(plan, k)
        assert len(shards) == k
        got = [(b.suite, b.start) for s in shards for b in s]
        assert sorted(got) == sorted(everything)  # every call once
        assert shard_batches(plan, k) == shards  # a fixed rule
    two = shard_batches(plan, 2)
    assert {b.suite for b in two[1]} == {"math", "code", "reasoning_gym"}


def _try_lock(folder: str):
    try:
        with store.FolderLock(Path(folder)):
            return "locked"
    except ConfigError as exc:
        return str(exc)


def test_a_second_writer_on_a_folder_is_refused_and_forked_children_do_not_hold_the_lock(tmp_path):
    fork = multiprocessing.get_context("fork")
    with store.FolderLock(tmp_path):
        with fork.Pool(1) as other:  # another process (forked while the lock is held, as scorer workers are)
            assert "being written by another harness command" in other.apply(_try_lock, (str(tmp_path),))
            child = fork.Process(target=time.sleep, args=(30,))
            child.start()
    try:
        with fork.Pool(1) as other:  # released by its holder, though a process forked under it still lives
            assert other.apply(_try_lock, (str(tmp_path),)) == "locked"
    finally:
        child.kill()
        child.join(10)


def test_manifest_differences_name_the_key():
    old = {"eval": {"k": 16, "top_p": 0.95}, "checkpoint": "a"}
    new = json.loads(json.dumps(old))
    new["eval"]["k"] = 4
    assert store.differences(old, new) == ["eval.k: 16 -> 4"]
