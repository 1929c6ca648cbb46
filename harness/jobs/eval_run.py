"""`harness eval` and `harness rescore`: an evaluation kept on disk as it runs, resumable, and
spread over engine replicas.

An evaluation is a fixed list of engine calls (`Batch`es: each suite's items in order,
`eval.prompts_per_call` per call, exactly the calls `evaluate_suite` makes). Call g of that list
(suites in order, then their calls) belongs to shard g mod K. Each shard is run by one replica: an
engine and its own bounded scorer pool, scoring one call while its engine generates the next
(`evaluate.run_batches`). With K = 1 and no `--address` the one replica runs in this process;
otherwise each is a Ray actor (harness/jobs/eval_ray.py). Either way the records of every call
come back here and are appended, one shard per file, to the folder (harness/jobs/eval_store.py),
and the result is merged from the files in item order.

Why the merged result is the same whatever K, and after any interruption: item i of a suite draws
its samples from (suite seed, i, j) alone (harness/rollout/base.py), and beyond that every call is
the same call (the same prompts, in the same order) whichever replica makes it, so even the
floating-point path through the engine is the same; a call cut by a kill is made again whole;
scores are pure functions of the response; the aggregation reads the records in item order.
Timings (samples_per_s) are the one field that differs.

`harness rescore EVAL_DIR` reads the kept responses, scores them again with the scorers of the
current code, writes them as a new records file and the result again; nothing is generated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from harness import provenance
from harness.config import Config, ConfigError, from_dict, to_dict
from harness.execution.bounded import ScorerPool
from harness.jobs import eval_store as store
from harness.jobs.eval_replica import Replica, Replicas, ShardProgress, check_replicas, log_to_stderr
from harness.jobs.evaluate import Batch, SuiteScore, aggregate, suite_batches, suite_seed
from harness.rollout import SamplingParams
from harness.runs import describe_folder, write_json_atomic
from suites import build_suite

# --- the plan: which calls, which shard -------------------------------------------------------------

@dataclass
class Planned:
    """One suite of an evaluation: its items and its calls."""

    items: list
    batches: list[Batch]


def plan_evaluation(cfg: Config, names: Sequence[str]) -> dict[str, Planned]:
    """Every named suite's held-out eval items and engine calls at the profile's protocol."""
    out = {}
    for name in names:
        suite = build_suite(name, cfg.suites, cfg.seed, cfg.resolved_cache_dir())
        items = suite.items("eval", getattr(cfg.suites, name).eval_items)
        if not items:
            raise ConfigError(f"suite '{name}' has no items to evaluate (suites.{name}.eval_items, its data)")
        sampling = SamplingParams(temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, max_new_tokens=cfg.eval.max_new_tokens,
                                  seed=suite_seed(cfg.seed, name))
        out[name] = Planned(items, suite_batches(suite, items, cfg.eval.k, sampling, cfg.eval.prompts_per_call))
    return out


def shard_of(position: int, shards: int) -> int:
    """The shard of the evaluation's call at `position` (suites in order, then their calls): round
    robin, so every shard gets a share of every suite."""
    return position % shards


def shard_batches(planned: dict[str, Planned], shards: int) -> list[list[Batch]]:
    """Each shard's calls, in evaluation order."""
    out: list[list[Batch]] = [[] for _ in range(shards)]
    for position, batch in enumerate(b for p in planned.values() for b in p.batches):
        out[shard_of(position, shards)].append(batch)
    return out


# --- the folder ---------------------------------------------------------------------------------------

def identity(cfg: Config, checkpoint: str, planned: dict[str, Planned]) -> dict:
    """What fixes an evaluation's samples and scores: a folder is resumed only with the same."""
    return {
        "checkpoint": checkpoint,
        "revision": cfg.base.revision if checkpoint == cfg.base.checkpoint else "",
        "seed": cfg.seed,
        "suites": list(planned),
        "eval": to_dict(cfg.eval),
        "rollout": {"engine": cfg.rollout.engine, "dtype": cfg.rollout.dtype},
        "items": {name: store.items_digest(p.items) for name, p in planned.items()},
    }


def open_folder(folder: Path, cfg: Config, checkpoint: str, planned: dict[str, Planned]) -> None:
    """Write the manifest of a new evaluation folder, or check that an existing one holds this same
    evaluation (one line naming what differs otherwise). Call with the folder's lock held."""
    ident = identity(cfg, checkpoint, planned)
    manifest = store.read_manifest(folder)
    if manifest is None:
        if folder.exists() and any(p.name != store.LOCK for p in folder.iterdir()):
            raise ConfigError(f"--out '{folder}' is {describe_folder(folder)}, not a `harness eval` folder; give a new or empty folder")
        write_json_atomic(folder / store.MANIFEST, {
            "kind": store.KIND, "identity": ident, "config": to_dict(cfg), "profile": cfg.profile,
            "batches": {name: [[b.start, len(b.items)] for b in p.batches] for name, p in planned.items()},
            "provenance": provenance.collect(seed=cfg.seed),
        })
        return
    changed = store.differences(manifest["identity"], ident)
    if changed:
        raise ConfigError(f"--out '{folder}' holds another evaluation ({'; '.join(changed[:3])}); give a new folder, "
                          "or the same checkpoint, suites and protocol to resume it")


def merge(folder: Path, planned: dict[str, Planned]) -> dict[str, SuiteScore] | None:
    """The result from the folder's records, each suite's items in order; None while a call is missing."""
    done = store.done_batches(folder)
    if any((name, b.start) not in done for name, p in planned.items() for b in p.batches):
        return None
    return {name: aggregate(r for b in p.batches for r in done[(name, b.start)]) for name, p in planned.items()}


def write_result(folder: Path, cfg: Config, checkpoint: str, results: dict[str, SuiteScore], **extra) -> Path:
    """EVAL_DIR/eval.json: what `harness eval --out` writes (the record compare's evals/ hold)."""
    return write_json_atomic(folder / store.RESULT, {
        "checkpoint": checkpoint,
        "suites": {name: score.to_json() for name, score in results.items()},
        **extra,
        "provenance": provenance.collect(seed=cfg.seed, profile=cfg.profile, eval=vars(cfg.eval)),
    })


# --- the evaluation -------------------------------------------------------------------------------

def evaluate_to_folder(cfg: Config, checkpoint: str, names: Sequence[str], folder: Path, replicas: Replicas | None = None,
                       progress: bool = True, log: Callable[[str], None] = log_to_stderr, extra: dict | None = None) -> dict[str, SuiteScore]:
    """Evaluate `checkpoint` on the named suites into `folder` (new, or the same evaluation begun
    before: what is done there is skipped) and return the merged result, also in folder/eval.json."""
    replicas = replicas or Replicas()
    check_replicas(replicas)
    folder = Path(folder)
    planned = plan_evaluation(cfg, names)
    with store.FolderLock(folder):
        open_folder(folder, cfg, checkpoint, planned)
        done = store.done_batches(folder)
        shards = shard_batches(planned, replicas.count)
        todo = [[b for b in shard if (b.suite, b.start) not in done] for shard in shards]
        skipped = sum(len(s) for s in shards) - sum(len(s) for s in todo)
        if skipped:
            log(f"{folder}: {skipped} of {sum(len(s) for s in shards)} engine calls already done, skipped")
        run = store.next_run(folder)
        bars = [ShardProgress(r, replicas.count, todo[r], len(shards[r]) - len(todo[r]), log if progress else None)
                for r in range(replicas.count)]
        if any(todo):
            if replicas.on_ray:
                from harness.jobs.eval_ray import run_on_ray  # lazy: Ray is an optional dependency (the `ray` extra)

                run_on_ray(cfg, checkpoint, todo, [store.shard_file(folder, run, r) for r in range(replicas.count)], bars,
                           replicas, log)
            else:
                _run_here(cfg, checkpoint, todo[0], store.shard_file(folder, run, 0), bars[0])
        results = merge(folder, planned)
        if results is None:
            raise RuntimeError(f"{folder}: engine calls are missing after the run (see the messages above); run the same command again")
        write_result(folder, cfg, checkpoint, results, **(extra or {}))
    return results


def evaluate_beside(target: Path, cfg: Config, checkpoint: str, replicas: Replicas | None = None,
                    progress: bool = True) -> dict[str, SuiteScore]:
    """What `compare` and `sweep` evaluate a checkpoint with: every enabled suite through
    `evaluate_to_folder`, in the folder beside their record `target` (evals/<label>.json keeps its
    responses in evals/<label>/), so an interrupted comparison resumes inside an evaluation too."""
    return evaluate_to_folder(cfg, checkpoint, cfg.suites.enabled, Path(target).with_suffix(""), replicas, progress=progress)


def _run_here(cfg: Config, checkpoint: str, batches: list[Batch], path: Path, bar: ShardProgress) -> None:
    replica = Replica(cfg, checkpoint)
    try:
        with store.RecordWriter(path) as writer:
            for _, _, records in replica.run(batches):
                writer.write_batch(records)
                bar.update(len(records))
    finally:
        replica.close()


def rescore_folder(folder: Path, progress: bool = True, log: Callable[[str], None] = log_to_stderr) -> tuple[dict[str, SuiteScore], int, int]:
    """Score the kept responses of a finished evaluation again with the current scorers; write them
    as the folder's newest records file and eval.json again. Returns (result, samples whose reward
    or status changed, samples rescored)."""
    folder = Path(folder)
    manifest = store.read_manifest(folder)
    if manifest is None:
        raise ConfigError(f"'{folder}' is {describe_folder(folder)}, not a `harness eval` folder (no {store.MANIFEST} of one)")
    cfg = from_dict(Config, manifest["config"])
    ident = manifest["identity"]
    planned = plan_evaluation(cfg, ident["suites"])
    now = {name: store.items_digest(p.items) for name, p in planned.items()}
    if now != ident["items"]:
        raise ConfigError(f"'{folder}': the suites' items are no longer those it evaluated (digests {ident['items']} -> {now}); "
                          "rescoring needs the same items")
    by_key = {(name, b.start): b for name, p in planned.items() for b in p.batches}
    with store.FolderLock(folder):
        if merge(folder, planned) is None:
            raise ConfigError(f"'{folder}' is an unfinished evaluation; finish it first (run the same `harness eval` again)")
        run = store.next_run(folder)
        target = store.rescore_file(folder, run)
        partial = target.with_name(target.name + ".tmp")
        partial.unlink(missing_ok=True)
        changed = total = 0
        seen: set = set()
        pool = ScorerPool(cfg.scoring.workers, cfg.scoring.timeout_s)
        try:
            with store.RecordWriter(partial) as writer:
                for _, path in store.run_files(folder):
                    for key, records in store.file_batches(path):
                        if key in seen or key not in by_key:
                            continue
                        seen.add(key)
                        batch = by_key[key]
                        changed += _rescore_batch(pool, batch, records)
                        total += sum(len(r["samples"]) for r in records)
                        writer.write_batch(records)
                        if progress:
                            log(f"rescored {len(seen)}/{len(by_key)} calls")
        finally:
            pool.close()
        os.replace(partial, target)
        for _, path in store.run_files(folder):
            if path != target:
                path.unlink()
        results = merge(folder, planned)
        write_result(folder, cfg, ident["checkpoint"], results)
    return results, changed, total


def _rescore_batch(pool: ScorerPool, batch: Batch, records: list[dict]) -> int:
    """Score one call's kept responses again, in place; the number of samples whose score changed."""
    for record, item in zip(records, batch.items):
        if record["id"] != item.id:
            raise ConfigError(f"record of item {record['index']} of {batch.suite} is {record['id']!r}, the suite's item is {item.id!r}")
    calls = [(s["text"], item.reference) for record, item in zip(records, batch.items) for s in record["samples"]]
    scores = iter(pool.map(batch.scorer, calls, batch.scorer_timeout_s))
    changed = 0
    for record in records:
        for sample in record["samples"]:
            new = next(scores)
            changed += (new.reward, new.status) != (sample["reward"], sample["status"])
            sample.update(reward=new.reward, status=new.status, extracted=new.extracted)
    return changed
