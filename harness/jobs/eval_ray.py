"""An evaluation's shards on Ray: one actor per replica, each streaming its calls' records back.

Ray does the placement, the processes and the transport: each replica is an actor holding its
engine and scorer pool (`eval_run.Replica`), placed by its resources (one GPU per `vllm` replica,
`--gpus-per-replica` for tensor parallelism; one CPU for an `hf` replica where the cluster has no
GPU); its shard's calls go to it in one streaming-generator call, which yields each call's records
as soon as they are scored. Here, one thread per shard takes them and appends them to that shard's
file (the driver is the only writer, so the cluster's nodes need no shared folder: only the
checkpoint must be readable on them, a path they all see or a hub id).

A replica that dies (kill -9, a node lost) is started again for what its shard has left, at most
`RESTARTS` times; what it had returned is on disk already. The driver dying ends the job's actors
(Ray's ownership: they are this driver's), and the same command resumes from the files.

Joining a cluster (`--address`): `ray.init(address=...)`; the harness (this version) must be
installed on its nodes. Without `--address` a local cluster is started with exactly the CPUs
the replicas ask for (no more processes than that), and stopped at the end.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import ray

from harness.config import Config, ConfigError, UserError
from harness.jobs import eval_store as store
from harness.jobs.eval_replica import Replica, Replicas, ShardProgress, replica_config
from harness.jobs.evaluate import Batch

RESTARTS = 3
"""Times one shard's replica is started again after it died, before the evaluation gives up."""


class ReplicaActor:
    """A `Replica` as a Ray actor (wrapped by `ray.remote` with the replica's resources)."""

    def __init__(self, cfg: Config, checkpoint: str, threads: int):
        import os  # lazy: only the actor's process reports its pid

        self.pid = os.getpid()
        self.replica = Replica(cfg, checkpoint, threads=threads)

    def where(self) -> tuple[int, str]:
        """(pid, node address) of the actor's process."""
        return self.pid, ray.util.get_node_ip_address()

    def run(self, batches: list[Batch]):
        """Streaming: (suite, batch start, item records) of each call as it is scored."""
        yield from self.replica.run(batches)


def replica_resources(cfg: Config, replicas: Replicas, cluster: dict) -> dict:
    """The Ray resources of one replica: GPUs for vllm (its tensor-parallel size; vLLM's CPU build,
    rollout.device=cpu, takes one CPU) and for hf on a CUDA device (or `auto` on a cluster with
    GPUs); else one CPU."""
    device = cfg.rollout.device
    if cfg.rollout.engine == "vllm" and device != "cpu":
        return {"num_gpus": replicas.gpus_per_replica or cfg.rollout.vllm.tensor_parallel_size, "num_cpus": 1}
    if device.startswith("cuda") or (device == "auto" and cluster.get("GPU", 0) >= 1):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1}


@contextmanager
def connected(cfg: Config, replicas: Replicas):
    """Ray for an evaluation's replicas. A connection this process already holds is used and left
    open (a comparison that evaluates several checkpoints at once holds one for all of them:
    `harness.jobs.compare`); else the cluster at `replicas.address` is joined, or a local one
    started with exactly the replicas' CPUs, and left at the end."""
    if ray.is_initialized():
        yield
        return
    if replicas.address is None:
        local_gpu = cfg.rollout.engine == "vllm" or cfg.rollout.device.startswith("cuda") or cfg.rollout.device == "auto"
        ray.init(address="local", num_cpus=replicas.count, include_dashboard=False,
                 **({} if local_gpu else {"num_gpus": 0}))
    else:
        ray.init(address=replicas.address)
    try:
        yield
    finally:
        ray.shutdown()


def run_on_ray(cfg: Config, checkpoint: str, shards: list[list[Batch]], paths: list[Path], bars: list[ShardProgress],
               replicas: Replicas, log: Callable[[str], None]) -> None:
    """Run each shard's calls on its own replica actor; their records go to `paths[shard]`. Several
    evaluations may run at once in one process (threads of `compare`), each with its own stop flag."""
    started_here = replicas.address is None
    stop = threading.Event()  # set when one shard failed: the others stop taking records
    with connected(cfg, replicas):
        cluster = ray.cluster_resources()
        resources = replica_resources(cfg, replicas, cluster)
        for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
            need = resources.get(key, 0) * replicas.count
            if need > cluster.get(name, 0):
                raise ConfigError(f"--replicas {replicas.count} needs {need:g} {name}s ({resources.get(key)} each); the Ray cluster "
                                  f"has {cluster.get(name, 0):g}")
        threads = cfg.torch_threads or int(resources["num_cpus"])
        actor_class = ray.remote(max_restarts=0, **resources)(ReplicaActor)
        run_cfg = replica_config(cfg, replicas)
        log(f"{replicas.count} replicas on Ray ({'local cluster' if started_here else replicas.address}), each {resources}")
        with ThreadPoolExecutor(max_workers=replicas.count, thread_name_prefix="shard") as pool:
            futures = [pool.submit(_drive_shard, r, actor_class, run_cfg, checkpoint, threads, shards[r], paths[r], bars[r], log,
                                   stop) for r in range(replicas.count) if shards[r]]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None:
                    stop.set()
                    raise future.exception()


def _drive_shard(shard: int, actor_class, cfg: Config, checkpoint: str, threads: int, batches: list[Batch], path: Path,
                 bar: ShardProgress, log: Callable[[str], None], stop: threading.Event) -> None:
    """One shard: start its replica, write what it streams back, start it again if it dies."""
    left = list(batches)
    deaths = 0
    with store.RecordWriter(path) as writer:
        while left and not stop.is_set():
            actor = actor_class.remote(cfg, checkpoint, threads)
            try:
                pid, node = ray.get(actor.where.remote())
                log(f"shard {shard + 1}: replica pid {pid} on {node}, {len(left)} calls")
                for ref in actor.run.remote(left):
                    suite, start, records = ray.get(ref)
                    writer.write_batch(records)
                    left = [b for b in left if (b.suite, b.start) != (suite, start)]
                    bar.update(len(records))
                    if stop.is_set():
                        break
            except ray.exceptions.RayActorError as exc:
                if exc.actor_init_failed:  # it raised while loading (a checkpoint a node cannot read...): not a death
                    lines = [line for line in str(exc).splitlines() if line.strip()]
                    raise RuntimeError(f"shard {shard + 1}: its replica failed to start: {lines[-1] if lines else exc}") from None
                deaths += 1
                if deaths > RESTARTS:
                    raise RuntimeError(f"shard {shard + 1}: its replica died {deaths} times; last: {type(exc).__name__}") from None
                log(f"shard {shard + 1}: replica died ({type(exc).__name__}); starting it again for {len(left)} calls")
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, UserError):
                    raise cause from None
                raise
            finally:
                ray.kill(actor)
