"""One replica of an evaluation: the engine and scorer pool that run one shard's engine calls, the
options saying how many there are and where, and a shard's progress lines. Used in this process
(harness/jobs/eval_run.py) and inside a Ray actor (harness/jobs/eval_ray.py)."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

import torch

from harness.checkpoint import load_policy
from harness.config import Config, ConfigError
from harness.execution.bounded import ScorerPool
from harness.jobs.evaluate import Batch, run_batches
from harness.rollout import make_engine


@dataclass(frozen=True)
class Replicas:
    """How an evaluation is spread: `count` engine replicas, on Ray unless one runs here."""

    count: int = 1
    """Engine replicas, each running one shard of the evaluation's calls."""
    address: str | None = None
    """A Ray cluster to join (`ray.init(address=...)`); None starts a local one when count > 1."""
    gpus_per_replica: int | None = None
    """GPUs of one `vllm` replica (its tensor_parallel_size); None: rollout.vllm.tensor_parallel_size."""

    @property
    def on_ray(self) -> bool:
        return self.count > 1 or self.address is not None


def check_replicas(replicas: Replicas) -> None:
    """Refuse, in one line, a replica count or GPU count below 1, or Ray options without Ray."""
    if replicas.count < 1:
        raise ConfigError(f"invalid value for --replicas: {replicas.count}; expected a positive integer")
    if replicas.gpus_per_replica is not None and replicas.gpus_per_replica < 1:
        raise ConfigError(f"invalid value for --gpus-per-replica: {replicas.gpus_per_replica}; expected a positive integer")
    if replicas.on_ray:
        try:
            import ray  # noqa: F401  # lazy: Ray is an optional dependency (the `ray` extra)
        except ImportError:
            raise ConfigError("--replicas above 1 and --address need Ray: pip install 'rollout-scaling-harness[ray]'") from None


# --- one replica ------------------------------------------------------------------------------------

class Replica:
    """One shard's engine and scorer pool (in this process, or inside a Ray actor)."""

    def __init__(self, cfg: Config, checkpoint: str, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        revision = cfg.base.revision if checkpoint == cfg.base.checkpoint else ""
        self.model, self.tokenizer = load_policy(checkpoint, cfg.rollout.device, cfg.rollout.dtype, revision=revision)
        self.engine = make_engine(cfg.rollout, self.model, self.tokenizer, seed=cfg.seed)
        self.pool = ScorerPool(cfg.scoring.workers, cfg.scoring.timeout_s)

    def run(self, batches: Iterable[Batch]) -> Iterator[tuple[str, int, list[dict]]]:
        """(suite, batch start, item records) per call, generated and scored (pipelined)."""
        for batch, records in run_batches(self.engine, self.tokenizer, self.pool, batches):
            yield batch.suite, batch.start, records

    def close(self) -> None:
        self.pool.close()


# --- progress -------------------------------------------------------------------------------------

class ShardProgress:
    """One shard's progress lines: calls and items done, the rate of this run, the ETA."""

    def __init__(self, shard: int, shards: int, batches: list[Batch], done: int, log: Callable[[str], None] | None):
        self.label = f"shard {shard + 1}/{shards}"
        self.total_calls = len(batches) + done
        self.calls = done
        self.total_items = sum(len(b.items) for b in batches)
        self.items = 0
        self.log = log
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def update(self, items: int) -> None:
        with self._lock:
            self.calls += 1
            self.items += items
            if self.log is None:
                return
            elapsed = time.monotonic() - self.started
            rate = self.items / elapsed if elapsed > 0 else 0.0
            left = self.total_items - self.items
            eta = format_seconds(left / rate) if rate > 0 else "?"
            self.log(f"eval {self.label}: {self.calls}/{self.total_calls} calls, {self.items}/{self.total_items} items this run, "
                     f"{rate:.2f} items/s, ETA {eta}")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)



def replica_config(cfg: Config, replicas: Replicas) -> Config:
    """The config a replica runs: `--gpus-per-replica` as the vllm engine's tensor_parallel_size."""
    if replicas.gpus_per_replica is None or cfg.rollout.engine != "vllm":
        return cfg
    return replace(cfg, rollout=replace(cfg.rollout, vllm=replace(cfg.rollout.vllm, tensor_parallel_size=replicas.gpus_per_replica)))
