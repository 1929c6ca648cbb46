"""Evaluation: pass@1 averaged over k samples per item, and mean output tokens, per suite.

pass@1 here is the paper's protocol: draw k samples per item (temperature 0.6, top_p 0.95 by
default), score each with the suite's scorer, average the k rewards of an item, average over a
task's (benchmark's) items, then take the unweighted mean over tasks: the paper's domain score
(math = mean of six benchmarks). For continuous rewards (reasoning gym) that is the mean verifier
reward. The standard error is over items (the k samples of one item are not independent evidence
about the suite).
"""

from __future__ import annotations

import zlib
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from harness.checkpoint import load_policy, render_prompts
from harness.execution.bounded import Scorer, ScorerPool, shared_pool
from harness.rollout import RolloutEngine, RolloutResult, SamplingParams, make_engine
from harness.stats import task_mean_and_stderr
from suites import build_suite
from suites.base import Item, Suite


@dataclass
class SuiteScore:
    """One suite's evaluation result."""

    pass_at_1: float
    """Unweighted mean over tasks (benchmarks) of the mean over their items of the mean reward over
    k samples (the paper's domain score; with equal items per task, the plain mean over items)."""
    k: int
    """Samples per item."""
    n_items: int
    """Items evaluated."""
    mean_output_tokens: float
    """Mean generated tokens per response (stop token included)."""
    stderr: float
    """Standard error of pass_at_1 (items within a task as independent draws)."""
    ci95: tuple[float, float]
    """Normal-approximation 95% interval for pass_at_1."""
    per_task: dict[str, float] = field(default_factory=dict)
    """pass@1 per task/benchmark within the suite."""
    statuses: dict[str, int] = field(default_factory=dict)
    """How many responses the scorer labelled correct / wrong / no_answer / ..."""
    finish_reasons: dict[str, int] = field(default_factory=dict)
    """How many responses stopped at EOS (`stop`) or hit max_new_tokens (`length`)."""
    samples_per_s: float = 0.0
    """Generation throughput during this evaluation."""
    item_scores: dict[str, float] = field(default_factory=dict)
    """Mean reward per item id (for paired comparisons between checkpoints)."""

    def to_json(self) -> dict:
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        return out


@dataclass(frozen=True)
class Batch:
    """One engine call of an evaluation: a run of consecutive items of one suite and how to sample
    and score them. The unit of work a replica takes and of what a resumed evaluation skips."""

    suite: str
    """The suite's name."""
    start: int
    """Index of the first item in the suite's item list (its samples' randomness is keyed from it)."""
    items: tuple[Item, ...]
    """The items, consecutive from `start`."""
    k: int
    """Samples per item."""
    sampling: SamplingParams
    """The suite's sampling; `first_prompt_index` is set to `start` by `generate_batch`."""
    scorer: Scorer
    """The suite's scorer (module-level, picklable: it runs in a bounded worker process)."""
    scorer_timeout_s: float | None
    """Bound per scorer call, None for the pool's."""


def suite_batches(suite: Suite, items: Sequence[Item], k: int, sampling: SamplingParams, prompts_per_call: int) -> list[Batch]:
    """The engine calls of one suite's evaluation: items in order, `prompts_per_call` per call. A
    single-process evaluation and every replica of a sharded one make exactly these calls, so each
    call's inputs, and so its samples, are the same whoever makes it."""
    return [Batch(suite.name, start, tuple(items[start:start + prompts_per_call]), k, sampling, suite.scorer, suite.scorer_timeout_s)
            for start in range(0, len(items), prompts_per_call)]


def generate_batch(engine: RolloutEngine, tokenizer, batch: Batch) -> RolloutResult:
    """`batch.k` samples for each item of the batch; item i's samples are drawn from (seed, start + i, j)."""
    sampling = SamplingParams(**{**asdict(batch.sampling), "first_prompt_index": batch.sampling.first_prompt_index + batch.start})
    return engine.generate(render_prompts(tokenizer, [it.prompt for it in batch.items]), batch.k, sampling)


def score_batch(pool: ScorerPool, batch: Batch, result: RolloutResult) -> list[dict]:
    """Score every sample of a generated batch (bounded, in `pool`'s workers); one record per item:
    what is kept on disk (harness/jobs/eval_store.py) and what `aggregate` reads."""
    calls = [(s.text, item.reference) for item, g in zip(batch.items, result.groups) for s in g.samples]
    scores = iter(pool.map(batch.scorer, calls, batch.scorer_timeout_s))
    share = result.generation_s / len(batch.items)
    records = []
    for offset, (item, group) in enumerate(zip(batch.items, result.groups)):
        samples = []
        for sample in group.samples:
            scored = next(scores)
            samples.append({"text": sample.text, "tokens": sample.num_tokens, "finish": sample.finish_reason,
                            "reward": scored.reward, "status": scored.status, "extracted": scored.extracted})
        records.append({"suite": batch.suite, "batch": batch.start, "batch_items": len(batch.items), "index": batch.start + offset,
                        "id": item.id, "task": item.task, "gen_s": share, "samples": samples})
    return records


def run_batches(engine: RolloutEngine, tokenizer, pool: ScorerPool, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[dict]]]:
    """(batch, its records) for each batch, in order: batch t is scored in a thread (its calls run
    in the pool's processes) while the engine generates batch t+1, so neither waits for the other.
    The pool is only ever used from that one thread; its workers start here, before the thread."""
    pool.start()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring") as scoring:
        pending: tuple[Batch, Future] | None = None
        for batch in batches:
            result = generate_batch(engine, tokenizer, batch)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (batch, scoring.submit(score_batch, pool, batch, result))
        if pending is not None:
            yield pending[0], pending[1].result()


def aggregate(records: Iterable[dict]) -> SuiteScore:
    """The suite score of one suite's item records, given in item order (one per item, each with
    its k samples' rewards): the same numbers whichever process generated which record."""
    item_scores: dict[str, float] = {}
    by_task: dict[str, list[float]] = {}
    statuses: Counter = Counter()
    reasons: Counter = Counter()
    tokens = samples = 0
    gen_s = 0.0
    k = 0
    for record in records:
        rewards = []
        for sample in record["samples"]:
            rewards.append(sample["reward"])
            statuses[sample["status"]] += 1
            reasons[sample["finish"]] += 1
            tokens += sample["tokens"]
        mean = sum(rewards) / len(rewards)
        item_scores[record["id"]] = mean
        by_task.setdefault(record["task"], []).append(mean)
        samples += len(rewards)
        k = max(k, len(rewards))
        gen_s += record["gen_s"]
    if not item_scores:
        raise ValueError("no item records to aggregate")
    mean, se = task_mean_and_stderr(by_task)
    return SuiteScore(
        pass_at_1=mean,
        k=k,
        n_items=len(item_scores),
        mean_output_tokens=tokens / samples,
        stderr=se,
        ci95=(max(0.0, mean - 1.96 * se), min(1.0, mean + 1.96 * se)),
        per_task={t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        statuses=dict(statuses),
        finish_reasons=dict(reasons),
        samples_per_s=samples / gen_s if gen_s > 0 else 0.0,
        item_scores=item_scores,
    )


def evaluate_suite(
    engine: RolloutEngine,
    tokenizer,
    suite: Suite,
    items: Sequence[Item],
    k: int,
    sampling: SamplingParams,
    pool: ScorerPool,
    prompts_per_call: int = 64,
    progress: bool = True,
) -> SuiteScore:
    """Generate k samples for every item, score them (bounded, in `pool`'s workers), and aggregate,
    in this process and in memory (the bootstrap's validation; `harness eval` goes through
    harness/jobs/eval_run.py, which keeps every record on disk and can spread the calls over replicas).

    Every call shares `sampling.seed` and passes its first item's index, so item i's samples (and
    so the scores) do not depend on `prompts_per_call`.
    """
    if not items:
        raise ValueError(f"suite '{suite.name}' has no items to evaluate")
    records: list[dict] = []
    bar = tqdm(total=len(items) * k, desc=f"eval {suite.name}", unit="sample", disable=not progress, leave=False)
    for batch, batch_records in run_batches(engine, tokenizer, pool, suite_batches(suite, items, k, sampling, prompts_per_call)):
        records += batch_records
        bar.update(len(batch.items) * k)
    bar.close()
    return aggregate(records)


def evaluate_checkpoint(cfg, checkpoint: str, suite_names: Sequence[str], progress: bool = True) -> dict[str, SuiteScore]:
    """Every named suite's held-out eval split on one checkpoint, with the profile's protocol."""
    revision = cfg.base.revision if checkpoint == cfg.base.checkpoint else ""
    model, tokenizer = load_policy(checkpoint, cfg.rollout.device, cfg.rollout.dtype, revision=revision)
    engine = make_engine(cfg.rollout, model, tokenizer, seed=cfg.seed)
    pool = shared_pool(cfg.scoring.workers, cfg.scoring.timeout_s)
    results = {}
    for name in suite_names:
        suite = build_suite(name, cfg.suites, cfg.seed, cfg.resolved_cache_dir())
        items = suite.items("eval", getattr(cfg.suites, name).eval_items)
        sampling = SamplingParams(
            temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, max_new_tokens=cfg.eval.max_new_tokens,
            seed=suite_seed(cfg.seed, name),
        )
        results[name] = evaluate_suite(
            engine, tokenizer, suite, items, cfg.eval.k, sampling, pool,
            prompts_per_call=cfg.eval.prompts_per_call, progress=progress,
        )
    return results


def suite_seed(seed: int, suite_name: str) -> int:
    """The evaluation seed of one suite: its own stream, so item i of two suites does not share
    randomness, and stable across processes (crc32 of the name, not Python's salted hash)."""
    return seed + 1 + zlib.crc32(suite_name.encode())


def format_eval_table(results: dict[str, SuiteScore]) -> str:
    """A plain-text table of suite scores (and per-task scores where a suite has several)."""
    header = f"{'suite / task':<24} {'pass@1':>7} {'95% CI':>15} {'k':>4} {'items':>6} {'out tokens':>10} {'samples/s':>10}"
    lines = [header, "-" * len(header)]
    for name, s in results.items():
        ci = f"[{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]"
        lines.append(
            f"{name:<24} {s.pass_at_1:>7.3f} {ci:>15} {s.k:>4} {s.n_items:>6} "
            f"{s.mean_output_tokens:>10.1f} {s.samples_per_s:>10.1f}"
        )
        if len(s.per_task) > 1:
            for task, value in s.per_task.items():
                lines.append(f"  {task:<22} {value:>7.3f}")
    return "\n".join(lines)
