"""`harness bench reward`: whether the verl reward path keeps up with a BroRL step.

    harness bench reward --profile prorlv2-1.5b [--responses 384] [--workers 1,2]
        [--nodes 8 --node-cpus 112 --gpus-per-node 8] [key=value ...]

One BroRL step of the paper's profile scores 65,536 responses (128 prompts x N=512) in the
profile's domain mix; verl streams each response to a reward actor as it is generated
(harness/backends/verl/reward.py describes verl 0.9.1's reward loop). This benchmark scores a
scaled-down sample of such a batch, `--responses` responses drawn in the same mix from the profile's
own training rows (as harness/backends/verl/data.py writes them: code items with their tests),
through harness/backends/verl/reward.py, at each `--workers` count side by side in one run, each
with its scorer processes sized from this machine's CPUs as the compiled config sizes them on a
node, and each also with ONE scorer process per actor: what the former lock gave (every call of an
actor serialised on one process; the current code with one process behaves exactly so).

How the calls arrive: with verl importable, verl's own reward loop: its `RewardLoopManager`
starts `reward.num_workers` `RewardLoopWorker` Ray actors (a local Ray on this machine) from verl's
composed config, and every response goes, as one DataProto, to `compute_score.remote` of a
randomly chosen actor, all at once, as verl's agent loop streams them (the tokenizer decode of
verl's reward manager included). Without verl: the same call pattern the module sees, labelled
"emulated": one process per reward actor, each calling `compute_score` from min(32, CPUs + 4)
threads (the executor verl's reward manager runs it on), responses dealt to actors at random.
Each actor's first calls (which start its scorer processes and their sandbox fork servers) are
made before the clock starts: verl's actors live for the whole run.

The sampled responses are stand-ins (no model generated them): math and Reasoning Gym alternate
the item's reference answer and a wrong one, after `--response-chars` of reasoning text; a code
response is a program that reads its input and prints the first test's expected output, so every
test runs (none times out: a timed-out test costs its 5 s on one CPU; the projection says how much
a share of those adds). Printed: samples/s, samples/s per CPU of this machine, and the projected
minutes one step's scoring needs on `--nodes` nodes of `--node-cpus` CPUs (two per GPU left to the
GPU workers), next to the former design's on verl's default 8 reward actors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing as mp
import os
import random
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.backends.verl import reward
from harness.backends.verl.compile import RESERVED_CPUS_PER_GPU
from harness.backends.verl.data import rows
from harness.config import ConfigError, load_config
from suites import build_suite

STEP_RESPONSES = 128 * 512
"""Responses one BroRL step of the paper's profile scores: 128 prompts x N=512."""

PAPER_POOL = {"math": 40_000, "code": 24_000, "reasoning_gym": 40_000}
"""Training prompts per domain of the paper's profile (harness/profiles/prorlv2-1.5b.yaml: DeepScaleR's
~40k math rows, Eurus-2-RL's ~24k code rows, 417 items per Reasoning Gym task): a step's prompts are
drawn from the pool, so its responses come in these shares."""

VERL_DEFAULT_WORKERS = 8
"""verl 0.9.1's `reward.num_workers` default: what the former compiled config ran with."""

REASONING = ("Let me work through this carefully, one step at a time, checking each intermediate result "
             "before I go on. ")


@dataclass(frozen=True)
class Call:
    """One response to score: its verl row (data_source, ground truth, extra_info) and the text."""

    data_source: str
    ground_truth: str
    extra_info: dict
    response: str


def mix_counts(samples: int, domains: list[str]) -> dict[str, int]:
    """`samples` split over `domains` in PAPER_POOL's shares (largest remainders)."""
    pool = {d: PAPER_POOL.get(d, 0) for d in domains}
    if not sum(pool.values()):
        raise ConfigError(f"invalid value for 'suites.enabled': {domains}; the benchmark needs one of {', '.join(PAPER_POOL)}")
    exact = {d: samples * n / sum(pool.values()) for d, n in pool.items()}
    counts = {d: int(v) for d, v in exact.items()}
    for d in sorted(exact, key=lambda d: exact[d] - counts[d], reverse=True)[:samples - sum(counts.values())]:
        counts[d] += 1
    return counts


def stand_in_response(domain: str, item, index: int, chars: int) -> str:
    """The sampled response of `item` (module docstring): reasoning text, then an answer."""
    text = (REASONING * (chars // len(REASONING) + 1))[:chars]
    if domain == "code":
        first = item.reference[0].get("output", "")
        return f"{text}\n\n```python\nimport sys\ndata = sys.stdin.read().split()\nprint({first.strip()!r})\n```"
    answer = item.target if index % 2 == 0 else ("\\boxed{-17}" if domain == "math" else "<answer>-17</answer>")
    return f"{text}\n\n{answer}"


def sample_calls(cfg, samples: int, chars: int, seed: int = 0) -> tuple[list[Call], dict[str, int]]:
    """`samples` calls drawn in the paper's mix from the profile's training rows, shuffled."""
    counts = mix_counts(samples, list(cfg.suites.enabled))
    calls: list[Call] = []
    for domain, count in counts.items():
        if not count:
            continue
        suite = build_suite(domain, cfg.suites, cfg.seed)
        pairs = list(zip(suite.items("train", count), rows(cfg, [suite], "train", count)))
        if not pairs:
            raise ConfigError(f"suite {domain}: no training items to sample")
        for index in range(count):  # a small training set is cycled
            item, row = pairs[index % len(pairs)]
            calls.append(Call(row["data_source"], row["reward_model"]["ground_truth"], row["extra_info"],
                              stand_in_response(domain, item, index, chars)))
    random.Random(seed).shuffle(calls)
    return calls, counts


def score_one(call: Call, processes: int) -> float:
    return reward.compute_score(data_source=call.data_source, solution_str=call.response, ground_truth=call.ground_truth,
                                extra_info=call.extra_info, scorer_processes=processes)["score"]


def _emulated_actor(conn, calls: list[Call], warmup: list[Call], processes: int) -> None:
    """One stand-in reward actor: warm up, wait for the go, score `calls` from verl's thread count."""
    threads = min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda c: score_one(c, processes), warmup))
        conn.send("ready")
        conn.recv()
        conn.send(list(pool.map(lambda c: score_one(c, processes), calls)))
    reward.shared_processes(processes).close()


def run_emulated(calls: list[Call], workers: int, processes: int, seed: int = 0) -> tuple[float, list[float]]:
    """Seconds to score `calls` on `workers` stand-in actors of `processes` scorer processes each,
    and the scores in the order of `calls`."""
    rng = random.Random(seed)
    share: list[list[int]] = [[] for _ in range(workers)]
    for i in range(len(calls)):
        share[rng.randrange(workers)].append(i)
    warmup = _warmup(calls, processes)
    ctx = mp.get_context("fork")
    actors = []
    for indices in share:
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_emulated_actor, args=(theirs, [calls[i] for i in indices], warmup, processes))
        proc.start()
        actors.append((proc, ours, indices))
    for _, conn, _ in actors:
        conn.recv()
    start = time.perf_counter()
    for _, conn, _ in actors:
        conn.send("go")
    scores: list[float] = [math.nan] * len(calls)
    for _, conn, indices in actors:
        for i, s in zip(indices, conn.recv()):
            scores[i] = s
    seconds = time.perf_counter() - start
    for proc, _, _ in actors:
        proc.join()
    return seconds, scores


def _serial_pass(calls: list[Call]) -> None:
    for c in calls:
        score_one(c, 1)
    reward.shared_processes(1).close()


def cpu_seconds_per_sample(calls: list[Call]) -> float:
    """CPU seconds one response's scoring takes, all processes counted (the scorer process, its sandbox
    fork server, launchers, inits and programs): `calls` scored one after another in a child process,
    whose whole reaped tree's CPU time the parent reads. Unlike samples/s, other jobs' load on the
    machine hardly changes it."""
    ctx = mp.get_context("fork")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = ctx.Process(target=_serial_pass, args=(calls,))
    proc.start()
    proc.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.exitcode != 0:
        raise RuntimeError(f"the serial scoring pass failed (exit code {proc.exitcode})")
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / len(calls)


def _warmup(calls: list[Call], processes: int) -> list[Call]:
    """Calls that start every scorer process of an actor and its sandbox fork server: `2 x processes`
    code calls (or any, without code)."""
    code = [c for c in calls if c.data_source == "code"] or calls
    return (code * (2 * processes))[:2 * processes]


def sample_tokenizer(calls: list[Call], folder: str) -> str:
    """A byte-level BPE tokenizer (the tiny bases' kind, Qwen2's pre-tokenizer) trained on the sample's
    own texts and saved in `folder`, for verl's decode when no --tokenizer is given."""
    from harness.jobs.tiny_model import train_tokenizer  # lazy: tokenizers load only for verl's reward loop

    train_tokenizer([c.response for c in calls], 4096).save_pretrained(folder)
    return folder


def run_verl(calls: list[Call], workers: int, processes: int, tokenizer: str, seed: int = 0) -> tuple[float, list[float]]:
    """As run_emulated, through verl's own reward loop (module docstring)."""
    import asyncio  # lazy: the verl path only

    import numpy as np  # lazy: as above
    import ray  # lazy: as above
    import torch  # lazy: as above
    import verl.trainer  # lazy: as above
    from hydra import compose, initialize_config_dir  # lazy: as above
    from hydra.core.global_hydra import GlobalHydra  # lazy: as above
    from transformers import AutoTokenizer  # lazy: as above
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager  # lazy: as above
    from verl.protocol import DataProto  # lazy: as above

    GlobalHydra.instance().clear()
    config_dir = os.path.join(os.path.dirname(verl.trainer.__file__), "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=[
            f"reward.custom_reward_function.path={reward.__file__}", "reward.custom_reward_function.name=compute_score",
            f"reward.num_workers={workers}", f"actor_rollout_ref.model.path={tokenizer}",
            f"+reward.custom_reward_function.reward_kwargs={{scorer_processes:{processes},workers_per_node:{workers},"
            "reserved_cpus:0}"])
    tok = AutoTokenizer.from_pretrained(tokenizer)

    def proto(call: Call):
        prompt = torch.tensor([tok.eos_token_id or 0], dtype=torch.int64)
        response = torch.tensor(tok(call.response, add_special_tokens=False)["input_ids"], dtype=torch.int64)
        ids = torch.cat([prompt, response]).unsqueeze(0)
        batch = {"prompts": prompt.unsqueeze(0), "responses": response.unsqueeze(0), "input_ids": ids,
                 "attention_mask": torch.ones_like(ids), "position_ids": torch.arange(ids.shape[1]).unsqueeze(0)}
        return DataProto.from_dict(tensors=batch, non_tensors={
            "data_source": np.array([call.data_source], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": call.ground_truth}], dtype=object),
            "extra_info": np.array([dict(call.extra_info)], dtype=object)})

    protos = [proto(c) for c in calls]
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "PYTHONHASHSEED": "0"}})
    manager = RewardLoopManager(config)
    handles = manager.reward_loop_workers
    rng = random.Random(seed)
    warm = [proto(c) for c in _warmup(calls, processes)]
    ray.get([h.compute_score.remote(p) for h in handles for p in warm])
    start = time.perf_counter()
    refs = [handles[rng.randrange(len(handles))].compute_score.remote(p) for p in protos]

    async def gather():
        return await asyncio.gather(*refs)

    results = asyncio.run(gather())
    seconds = time.perf_counter() - start
    for h in handles:
        ray.kill(h)
    return seconds, [float(r["reward_score"]) for r in results]


def bench_reward(profile: str, overrides: list[str], samples: int, workers_list: list[int], nodes: int, node_cpus: int,
                 gpus_per_node: int, chars: int = 4000, tokenizer: str | None = None, log=print) -> list[dict]:
    """Score one sampled batch at each worker count, sized now and as the former lock, print and return the rows."""
    counts = mix_counts(samples, ["math", "code", "reasoning_gym"])
    cfg = load_config(profile, [*overrides, f"train.prompt_pool={max(counts.values())}"], recipe="brorl")
    calls, counts = sample_calls(cfg, samples, chars)
    cpus = reward.node_cpus()
    if importlib.util.find_spec("verl") is not None:
        way = "verl's reward loop (RewardLoopManager, local Ray)"
    else:
        way = "emulated: verl's call pattern (one process per reward actor, min(32, CPUs + 4) threads each)"
    scratch = tempfile.TemporaryDirectory(prefix="harness-bench-reward-")
    if way.startswith("verl") and tokenizer is None:
        tokenizer = sample_tokenizer(calls, scratch.name)
    code = [c for c in calls if c.data_source == "code"]
    tests = [len(json.loads(c.ground_truth)) for c in code]
    log(f"reward throughput: profile {profile}, {len(calls)} responses drawn in the paper's mix "
        f"({', '.join(f'{d} {n}' for d, n in counts.items())}; code {len(code)} with {sum(tests)} tests, "
        f"mean {statistics.mean(tests) if tests else 0:.1f}), {chars} characters of reasoning each")
    log(f"calls arrive through {way}; this machine: {cpus} CPUs, load {os.getloadavg()[0]:.1f} before")
    results = []
    reference_scores = None
    for workers in workers_list:
        sized = reward.default_scorer_processes(cpus, workers, 0)
        designs = [("now", sized)] + ([("former: 1 process per actor", 1)] if sized > 1 else [])
        if sized == 1:
            log(f"  {workers} actor(s): sized at 1 scorer process each here, as the former design had")
        for label, processes in designs:
            if way.startswith("verl"):
                seconds, scores = run_verl(calls, workers, processes, tokenizer)
            else:
                seconds, scores = run_emulated(calls, workers, processes)
            if reference_scores is None:
                reference_scores = scores
            rate = len(calls) / seconds
            results.append({"workers": workers, "processes": processes, "design": label, "seconds": seconds,
                            "samples_per_s": rate, "per_cpu": rate / cpus, "same_scores": scores == reference_scores})
            log(f"  {workers} actor(s) x {processes} scorer process(es) [{label}]: {seconds:.1f} s, {rate:.1f} samples/s, "
                f"{rate / cpus:.1f} per CPU, scores as the first row: {'yes' if scores == reference_scores else 'NO'}")
    scratch.cleanup()
    log(f"load {os.getloadavg()[0]:.1f} after")
    cpu_s = cpu_seconds_per_sample(calls)
    by_domain = {d: cpu_seconds_per_sample([c for c in calls if c.data_source == d][:24]) for d in counts if counts[d]}
    log(f"CPU time per response, scored one after another (every process of the call counted): {1000 * cpu_s:.0f} ms "
        f"({', '.join(f'{d} {1000 * v:.0f} ms' for d, v in by_domain.items())}; first 24 of each), so "
        f"{1 / cpu_s:.1f} samples/s per busy CPU")
    best = max(r["per_cpu"] for r in results if r["design"] == "now")
    scoring_cpus = nodes * max(1, node_cpus - RESERVED_CPUS_PER_GPU * gpus_per_node)
    per_node, processes = reward.workers_for(node_cpus, RESERVED_CPUS_PER_GPU * gpus_per_node)
    now_min = STEP_RESPONSES * cpu_s / scoring_cpus / 60
    former_min = STEP_RESPONSES * cpu_s / VERL_DEFAULT_WORKERS / 60
    timeout_cpu_s = 2 * cfg.suites.code.test_timeout_s
    code_share = counts.get("code", 0) / len(calls)
    per_percent = STEP_RESPONSES * code_share * 0.01 * timeout_cpu_s / scoring_cpus / 60
    log(f"projected for one BroRL step ({STEP_RESPONSES:,} responses) on {nodes} node(s) x {node_cpus} CPUs, "
        f"{gpus_per_node} GPUs each ({scoring_cpus} CPUs for scoring; compiled: {nodes * per_node} reward actors x "
        f"{processes} scorer processes): {now_min:.1f} min of scoring per step at {1 / cpu_s:.1f} samples/s per CPU "
        f"(CPU time), {STEP_RESPONSES / (best * scoring_cpus) / 60:.1f} min at the {best:.1f} per CPU measured "
        f"above on this loaded machine")
    log(f"  former design (verl's default {VERL_DEFAULT_WORKERS} reward actors, calls serialised on one scorer process "
        f"each: at most {VERL_DEFAULT_WORKERS} CPUs busy): {former_min:.1f} min per step")
    log(f"  not measured here: each 1% of the step's code responses that time out (2 tests x "
        f"{cfg.suites.code.test_timeout_s:g} s on one CPU, then skipped) adds {per_percent:.2f} min at that size")
    return results
