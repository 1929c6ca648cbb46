"""A harness arm (recipe + profile) compiled to verl 0.9's configuration.

`compile_arm` returns the Hydra overrides for verl's `ppo_trainer` config (entry point
`python -m verl.trainer.main_ppo`), one `Translation` per recipe value saying what it became in
verl's terms, and the values verl cannot express. The overrides name only keys verl's own config
declares (tests/test_verl.py composes them with verl's Hydra config and runs its validation), so a
misspelt key fails there, not on a cluster.

Hooks used, all verl's own (nothing of verl is copied or patched):
- dynamic sampling with refill: `algorithm.filter_groups` (verl's v1 trainer keeps a replay
  buffer that evicts groups whose rewards have no spread and refills them with new prompts; its V1
  buffer ignores `max_num_gen_batches`, so the refills are not capped);
- ICE-POP: `algorithm.rollout_correction` (`rollout_is=token` with the bounds as its threshold:
  token weights exp(old - rollout), zero outside [tis_low, tis_high]; tests/test_verl_algos.py
  checks it equals the harness's `truncated_is_weights` bit for bit);
- the reward: `reward.custom_reward_function` -> harness/backends/verl/reward.py, with
  `reward.num_workers` and each reward actor's scorer processes sized from `scoring.node_cpus`
  (`reward_sizing`);
- the periodic reference reset (`train.ref_reset_every` R): verl's own resume. The run becomes a
  chain of verl invocations ("segments") of R steps each (`segment_bounds`); segment k > 0 starts
  verl with `actor_rollout_ref.model.path` = the HF checkpoint segment k-1 saved at its last step
  (verl builds the reference from that path, so the reference is the current policy) and resumes
  verl's newest checkpoint (`trainer.resume_mode=auto`: that step's, or after a failure the
  segment's own last save; actor weights, optimizer, lr scheduler, dataloader position), to
  `trainer.total_training_steps` = its last step.
  `train.reset_optimizer_with_ref` loads the weights only (`actor.checkpoint.load_contents=[model]`).
  What each of these rests on in verl 0.9.1's source: docs/verl.md;
- the budget (`plan_steps`): each arm's steps and `trainer.save_freq` from a comparison's budget;
  a budget that is not whole steps is enforced by the harness's watcher (harness/backends/verl/watch.py);
- generation throughput (Table 3): computed from verl's `timing_s/gen` and its sample counts when
  its metrics are read back (harness/backends/verl/metrics.py), never from `perf/throughput`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.verl import reward as verl_reward
from harness.config import Config, ConfigError
from harness.runs import verl_hf_checkpoint
from trainers.registry import arm_settings as registry_arm_settings

MAX_PROMPT_TOKENS = 1024
"""verl's `data.max_prompt_length`: the harness never caps prompts, verl needs a bound. verl drops
longer ones (`filter_overlong_prompts`); the dry run counts them by task with the model's tokenizer
where it can be read (translation.md's notes; `data.overlong_prompts`). That 1,024 covers the
paper's mix under Qwen's tokenizer is UNCONFIRMED: that tokenizer cannot be read on this machine."""

REWARD_FUNCTION = "compute_score"
"""The function verl calls in harness/backends/verl/reward.py."""

ENV_VARS = "ray_kwargs.ray_init.runtime_env.env_vars"
"""verl's runtime env of `ray.init` (its `run_ppo`): env vars given there reach its actors."""

METRICS_ENV = f"{ENV_VARS}.VERL_FILE_LOGGER_PATH"
"""Where a segment's file-logger path is given to verl: an env var of the runtime env verl's
`run_ppo` passes to `ray.init`, so it reaches the TaskRunner actor that opens the file wherever Ray
places it (a shell `export` would not cross `ray job submit`). Added with `+` (verl declares no
`env_vars` there)."""

VERL_MAIN = ("python3", "-m", "verl.trainer.main_ppo")
"""verl's entry point: what each segment runs."""

CHECKPOINT_TRACKER = "latest_checkpointed_iteration.txt"
"""The file verl's `_save_checkpoint` writes in `trainer.default_local_dir` after every save: the
last step saved. command.sh reads it to skip the segments already done."""


def segment_bounds(steps: int, reset_every: int) -> list[tuple[int, int]]:
    """(first, last) RL step of each verl invocation of a run of `steps` steps whose reference is reset
    every `reset_every` steps: [1, R], [R+1, 2R], ..., the last one ending at `steps` (R need not
    divide it). One invocation when there is no reset before the end (R = 0 or R >= steps): the
    harness resets after step R, so a reset at or after the last step changes nothing."""
    if reset_every <= 0 or reset_every >= steps:
        return [(1, steps)]
    ends = [*range(reset_every, steps, reset_every), steps]
    return [(end_before + 1, end) for end_before, end in zip([0, *ends[:-1]], ends)]


def checkpoint_folder(checkpoints: Path, step: int) -> Path:
    """verl's checkpoint of `step` in `trainer.default_local_dir` (its `_save_checkpoint`)."""
    return checkpoints / f"global_step_{step}"


def hf_checkpoint(checkpoints: Path, step: int) -> Path:
    """The HF-format actor weights verl saves with `checkpoint.save_contents` containing hf_model."""
    return verl_hf_checkpoint(checkpoints, step)


def segment_metrics(metrics_dir: Path, index: int) -> Path:
    """Segment `index`'s file-logger file. One per segment: verl's FileLogger opens its file with
    "wb", so a second invocation on the same file would erase the first one's steps."""
    return metrics_dir / f"segment{index}.jsonl"


@dataclass(frozen=True)
class Translation:
    """One recipe or profile value and what it became in verl."""

    harness_key: str
    value: object
    verl: str
    """verl's key(s) and value(s), or how it is carried."""


@dataclass(frozen=True)
class Segment:
    """One verl invocation of an arm's run: RL steps first_step..last_step, numbered as verl numbers
    them (its `global_steps`, continuous across the chain)."""

    index: int
    first_step: int
    last_step: int
    """Its `trainer.total_training_steps`: verl stops after this step and saves its checkpoint there."""
    overrides: list[str]
    """Its own overrides, after `VerlJob.overrides`: model path, last step, resume, metrics file."""
    metrics_file: str = ""
    """Its file-logger file (`segment_metrics`)."""


@dataclass
class VerlJob:
    """Everything a verl run of one arm needs: `segments` run in order, `script()` runs them."""

    arm: str
    overrides: list[str]
    """The overrides every segment shares (the recipe's translation)."""
    segments: list[Segment]
    """One per reference period (`segment_bounds`); one for a run without a reset."""
    translations: list[Translation]
    not_expressed: list[str]
    """Recipe values verl 0.9 cannot express, each with what happens instead."""
    nodes: int
    gpus_per_node: int
    checkpoints: Path
    """verl's `trainer.default_local_dir`, shared by all segments."""
    address: str | None = None
    notes: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=lambda: list(VERL_MAIN))
    """The program each segment runs, before its overrides: verl's `main_ppo`."""

    def segment_overrides(self, index: int) -> list[str]:
        """Every override of segment `index`: the shared ones, then its own."""
        return [*self.overrides, *self.segments[index].overrides]

    def command(self, index: int) -> list[str]:
        """Segment `index`: `python3 -m verl.trainer.main_ppo OVERRIDES`, or under `ray job submit`
        with --address (which waits for the job and exits 1 when it failed)."""
        main = self.main_command(index)
        if self.address:
            return ["ray", "job", "submit", f"--address={self.address}", "--", *main]
        return main

    def main_command(self, index: int) -> list[str]:
        """Segment `index` without `ray job submit`: the entry point and its overrides."""
        return [*self.entrypoint, *self.segment_overrides(index)]

    def script(self) -> str:
        """command.sh: the segments in order. A segment whose last step verl's checkpoint tracker
        already records is skipped (a rerun continues the chain); one that fails, or that ends
        without verl having saved its last step (a stopped Ray job exits 0), stops the chain."""
        tracker = self.checkpoints / CHECKPOINT_TRACKER
        lines = ["#!/usr/bin/env bash",
                 f"# written by `harness train --backend verl`: {self.arm}, {len(self.segments)} verl run(s) in order "
                 "(docs/verl.md)",
                 "set -eu",
                 f"TRACKER={shlex.quote(str(tracker))}",
                 "# true when verl's last saved checkpoint is at step $1 or later",
                 'saved_through() { [ "$(cat "$TRACKER" 2>/dev/null || echo 0)" -ge "$1" ]; }',
                 "# keep an earlier attempt's metrics file (verl opens it with \"wb\") as <name>.attempt<j>.jsonl",
                 'keep_attempt() { [ -s "$1" ] || { rm -f "$1"; return 0; }; j=1; '
                 'while [ -e "${1%.jsonl}.attempt$j.jsonl" ]; do j=$((j+1)); done; mv "$1" "${1%.jsonl}.attempt$j.jsonl"; }']
        for seg in self.segments:
            reference = "the base" if seg.index == 0 else f"the policy at step {seg.first_step - 1}"
            parts = [shlex.quote(part) for part in self.command(seg.index)]
            head = len(parts) - len(self.segment_overrides(seg.index))  # the program, then an override a line
            command = " \\\n        ".join([" ".join(parts[:head]), *parts[head:]])
            lines += ["", f"# segment {seg.index}: steps {seg.first_step}-{seg.last_step}; reference: {reference}",
                      f"if ! saved_through {seg.last_step}; then",
                      f"    keep_attempt {shlex.quote(seg.metrics_file)}",
                      f"    {command}",
                      f"    saved_through {seg.last_step} || {{ echo \"segment {seg.index} ended without verl's checkpoint "
                      f"of step {seg.last_step}\" >&2; exit 1; }}",
                      "fi"]
        return "\n".join(lines) + "\n"


RESERVED_CPUS_PER_GPU = 2
"""CPUs of a node left to each GPU's own processes (its FSDP worker, vLLM's engine core) when the
reward actors are sized: they are busy while the rollout streams responses to the reward."""


def reward_sizing(node_cpus: int, nodes: int, gpus_per_node: int) -> tuple[str, object, list[tuple[str, object]]]:
    """The translation row that sizes verl's reward loop: `reward.num_workers` actors (verl places
    them round-robin over the nodes, so `nodes` x per node) and the reward kwargs that size each
    actor's scorer processes (harness/backends/verl/reward.py). With `node_cpus`: as few actors per
    node as keep its scoring CPUs busy (an actor has at most 32 calls in flight), the CPUs shared
    evenly; without: one actor per GPU, each sizing itself from its node's CPUs at run time."""
    reserved = RESERVED_CPUS_PER_GPU * gpus_per_node
    if node_cpus:
        per_node, processes = verl_reward.workers_for(node_cpus, reserved)
        value = f"{node_cpus} CPUs per node: {per_node} reward actor(s) per node, {processes} scorer processes each"
    else:
        per_node, processes = gpus_per_node, 0
        value = f"not stated: {per_node} reward actors per node, scorer processes from each node's CPUs at run time"
    kwargs = f"{{scorer_processes:{processes},workers_per_node:{per_node},reserved_cpus:{reserved}}}"
    return ("scoring.node_cpus", value, [("reward.num_workers", nodes * per_node),
                                         ("+reward.custom_reward_function.reward_kwargs", kwargs)])


@dataclass(frozen=True)
class StepPlan:
    """An arm's steps and checkpoint interval under a comparison's budget (`plan_steps`)."""

    steps: int
    """trainer.total_training_steps of the arm's last segment: the most steps the budget allows,
    capped by train.steps."""
    basis: str
    """How `steps` follows from the budget, in words (translation.md, `harness plan`)."""
    point_steps: list[int]
    """The planned step of each evaluation point (ascending; the last is `steps`)."""
    save_every: int
    """verl's trainer.save_freq."""
    save_basis: str
    """Why that interval, in words."""
    watched: bool
    """True when the budget is not whole steps: a watcher stops the job at the budget
    (harness/jobs/train_verl.py), `steps` is only the cap."""


def plan_steps(cfg: Config) -> StepPlan:
    """The arm's own step count from `compare.budget` and its recipe, and a checkpoint interval that
    serves every budget point. Samples per step: the arm's n x prompts_per_step kept samples, the
    least a step generates; dynamic sampling adds n for every group verl evicts or discards (verl
    0.9.1's `training/filter_groups/evicted_samples` and `.../discarded_surplus_samples` count
    groups, prompt uids, whatever their names say), so a samples budget allows at most
    budget / (n x prompts) steps and the watcher stops the job where the refills spent it earlier.
    A tokens budget has no step count known in advance (responses vary): train.steps caps it and the
    watcher stops it. A wall-clock budget: budget x compare.expected_samples_per_s / (n x prompts)
    when that pace is given (an upper bound if the pace is), else train.steps.

    The interval: train.save_every when given (> 0), refused when the budget fixes the steps and its
    first point comes before the first save (that point would fall to the base); 0 chooses the
    greatest common divisor of the points' steps when that is at least a quarter of the first point's
    step (every point then has its own checkpoint), else a quarter of it (at least 1): every point
    then has a kept checkpoint at or under it within one interval."""
    t, c = cfg.train, cfg.compare
    s = arm_settings(cfg)
    per_step = s.n * s.prompts_per_step
    watched = c.budget_kind != "steps"
    if c.budget_kind == "steps":
        allowed, basis = int(c.budget), f"compare.budget = {c.budget:g} steps"
    elif c.budget_kind == "samples":
        allowed = int(c.budget // per_step)
        basis = (f"at most {c.budget:g} samples / {per_step:,} per step (n {s.n} x {s.prompts_per_step} prompts, before "
                 "refills; each refilled group adds n more)")
    elif c.budget_kind == "wall_s" and c.expected_samples_per_s > 0:
        allowed = int(c.budget * c.expected_samples_per_s // per_step)
        basis = (f"at most {c.budget:g} s x {c.expected_samples_per_s:g} samples/s (compare.expected_samples_per_s) / "
                 f"{per_step:,} samples per step = {c.budget * c.expected_samples_per_s / per_step:,.1f} steps")
    else:
        allowed = None
        basis = (f"not known in advance ({c.budget_kind} budget"
                 + (" without compare.expected_samples_per_s" if c.budget_kind == "wall_s" else "") +
                 "): train.steps caps it")
    steps = t.steps if allowed is None else min(t.steps, allowed)
    if steps < 1:
        raise ConfigError(f"invalid value for 'compare.budget': {c.budget:g} {c.budget_kind} does not pay for one step of "
                          f"the arm ({per_step:,} samples per step); give a budget of at least one step")
    if allowed is not None and allowed > t.steps:
        basis += f", capped by train.steps = {t.steps}"
    if watched:
        basis += "; the watcher stops the job at the budget"
    points = sorted({max(1, int(round(f * steps, 9))) for f in c.eval_points} | {steps})
    first = points[0]
    if t.save_every > 0:
        every = t.save_every
        if every > first and not watched:
            raise ConfigError(
                f"invalid value for 'train.save_every': {every}; the first budget point of this arm is step {first} "
                f"(points at steps {points}), so it would have no checkpoint at or under it; give at most {first}, or "
                "0 to let the comparison choose")
        save_basis = f"train.save_every = {every}, as given"
        if every > first:
            save_basis += (f" (WARNING: the planned first point, step {first}, comes before the first save; a point "
                           "without a checkpoint at or under it is refused when the run is read)")
    else:
        divisor = math.gcd(*points)
        if divisor * 4 >= first:
            every, save_basis = divisor, (f"chosen: {divisor}, the greatest common divisor of the points' planned steps "
                                          f"{points}: a checkpoint at every point")
        else:
            every = max(1, first // 4)
            save_basis = (f"chosen: {every}, a quarter of the first point's planned step {first} (points at {points}): "
                          "every point has a checkpoint at or under it within one interval")
    return StepPlan(steps=steps, basis=basis, point_steps=points, save_every=every, save_basis=save_basis, watched=watched)


def arm_settings(cfg: Config):
    """The arm's resolved n, prompts per step and learning rate (the trainers' own rule)."""
    return registry_arm_settings(cfg.train, "--backend verl")


def compile_arm(cfg: Config, arm: str, *, model: str, train_file: Path, val_file: Path, reward_module: Path,
                checkpoints: Path, metrics_dir: Path, nodes: int, gpus_per_node: int, experiment: str,
                address: str | None = None, plan: StepPlan | None = None, extra_overrides: tuple[str, ...] = (),
                tensorboard_dir: Path | None = None) -> VerlJob:
    """The verl job of one arm. `model`: the checkpoint both arms start from (hub id or folder);
    `checkpoints`: verl's checkpoint folder; `metrics_dir`: where each segment's file-logger file
    goes (`segment_metrics`). All paths as every node sees them. `plan`: the steps and checkpoint
    interval a comparison's budget gives the arm (`plan_steps`); without it train.steps and
    train.save_every (0: the end only). `extra_overrides`: the user's `--verl-override key=value`,
    after every compiled one (Hydra: the last value of a key wins). `tensorboard_dir`: where verl's
    tensorboard logger writes (TENSORBOARD_DIR), when train.loggers names it."""
    if nodes < 1 or gpus_per_node < 1:
        raise ConfigError(f"invalid value for --nodes/--gpus-per-node: {nodes}/{gpus_per_node}; both must be >= 1")
    t, r, v = cfg.train, cfg.rollout, cfg.rollout.vllm
    if t.dtype == "float64":
        raise ConfigError("invalid value for 'train.dtype': 'float64'; verl trains in float32, bfloat16 or float16 "
                          "(float64 is the in-process regression guard's)")
    s = arm_settings(cfg)
    if s.prompts_per_step % t.mini_batches:
        raise ConfigError(f"invalid value for 'train.mini_batches': {t.mini_batches}; verl counts mini-batches in "
                          f"prompts, so it must divide the arm's {s.prompts_per_step} prompts per step")
    mini_prompts = s.prompts_per_step // t.mini_batches
    token_budget = max(t.micro_batch_tokens, MAX_PROMPT_TOKENS + t.max_new_tokens)
    steps = plan.steps if plan is not None else t.steps
    save_freq = plan.save_every if plan is not None else (t.save_every or steps)
    loggers = ["console" if "console" in t.loggers else None, "file",
               *(name for name in ("tensorboard", "wandb", "mlflow") if name in t.loggers)]
    loggers = [name for name in loggers if name]
    bounds = segment_bounds(steps, t.ref_reset_every)
    rows: list[tuple[str, object, list[tuple[str, object]]]] = [
        ("train.n", s.n, [("actor_rollout_ref.rollout.n", s.n)]),
        ("train.prompts_per_step", s.prompts_per_step, [("data.train_batch_size", s.prompts_per_step)]),
        ("train.mini_batches", t.mini_batches, [("actor_rollout_ref.actor.ppo_mini_batch_size", mini_prompts),
                                                ("actor_rollout_ref.actor.ppo_epochs", 1)]),
        ("train.micro_batch_tokens", t.micro_batch_tokens, [
            ("actor_rollout_ref.actor.use_dynamic_bsz", True),
            ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", token_budget),
            ("actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu", token_budget),
            ("actor_rollout_ref.ref.log_prob_max_token_len_per_gpu", token_budget)]),
        ("train.learning_rate", s.learning_rate, [("actor_rollout_ref.actor.optim.lr", s.learning_rate)]),
        ("train.warmup_steps", t.warmup_steps, [("actor_rollout_ref.actor.optim.lr_warmup_steps", t.warmup_steps),
                                                ("actor_rollout_ref.actor.optim.lr_scheduler_type", "constant")]),
        ("train.weight_decay", t.weight_decay, [("actor_rollout_ref.actor.optim.weight_decay", t.weight_decay)]),
        ("train.max_grad_norm", t.max_grad_norm, [("actor_rollout_ref.actor.optim.clip_grad", t.max_grad_norm)]),
        ("train.eps_low", t.eps_low, [("actor_rollout_ref.actor.clip_ratio_low", t.eps_low)]),
        ("train.eps_high", t.eps_high, [("actor_rollout_ref.actor.clip_ratio_high", t.eps_high)]),
        ("train.clip_ratio_c", t.clip_ratio_c,
         [("actor_rollout_ref.actor.clip_ratio_c", t.clip_ratio_c if t.clip_ratio_c is not None else 1e9)]),
        ("loss aggregation", "token mean", [("actor_rollout_ref.actor.loss_agg_mode", "token-mean"),
                                            ("actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla"),
                                            ("actor_rollout_ref.actor.entropy_coeff", 0)]),
        ("train.kl_coef", t.kl_coef, [("actor_rollout_ref.actor.use_kl_loss", t.kl_coef > 0),
                                      ("actor_rollout_ref.actor.kl_loss_coef", t.kl_coef),
                                      ("algorithm.use_kl_in_reward", False)]),
        ("train.kl_estimator", t.kl_estimator,
         [("actor_rollout_ref.actor.kl_loss_type", {"k2": "mse", "low_var_kl": "low_var_kl"}[t.kl_estimator])]),
        ("advantage", f"REINFORCE++-baseline ({t.adv_normalise})",
         [("algorithm.adv_estimator", "reinforce_plus_plus_baseline")]),
        ("train.max_gen_rounds", t.max_gen_rounds, [("algorithm.filter_groups.enable", True),
                                                    ("algorithm.filter_groups.metric", "reward"),
                                                    ("algorithm.filter_groups.max_num_gen_batches", t.max_gen_rounds)]),
        ("train.temperature", t.temperature, [("actor_rollout_ref.rollout.temperature", t.temperature)]),
        ("train.top_p", t.top_p, [("actor_rollout_ref.rollout.top_p", t.top_p)]),
        ("train.max_new_tokens", t.max_new_tokens, [("data.max_response_length", t.max_new_tokens),
                                                    ("data.max_prompt_length", MAX_PROMPT_TOKENS),
                                                    ("data.filter_overlong_prompts", True)]),
        # the harness cycles its prompts in epochs without a limit; verl's total_epochs must not stop the run
        ("epochs", "no limit", [("trainer.total_epochs", 1000)]),
        # verl saves every save_freq steps and at each invocation's last step (its fit(): is_last_step),
        # but only with save_freq > 0; save_every=0 ("at the end only") is save_freq=steps; under a
        # comparison's budget the interval of `plan_steps`
        ("train.save_every", plan.save_basis if plan is not None else t.save_every, [("trainer.save_freq", save_freq),
                                            ("trainer.max_actor_ckpt_to_keep", None),
                                            ("actor_rollout_ref.actor.checkpoint.save_contents",
                                             "[model,optimizer,extra,hf_model]")]),
        ("train.seed", t.seed, [("data.seed", t.seed), ("actor_rollout_ref.rollout.seed", t.seed)]),
        ("train.dtype", t.dtype, [("actor_rollout_ref.actor.fsdp_config.model_dtype",
                                   {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[t.dtype])]),
        ("train.gradient_checkpointing", t.gradient_checkpointing,
         [("actor_rollout_ref.model.enable_gradient_checkpointing", t.gradient_checkpointing)]),
        ("train.logit_chunk_tokens", t.logit_chunk_tokens,
         [("actor_rollout_ref.actor.entropy_from_logits_with_chunking", t.logit_chunk_tokens > 0),
          ("actor_rollout_ref.actor.entropy_checkpointing", t.logit_chunk_tokens > 0)]),
        ("rollout.engine", f"{r.engine} (verl generates with vLLM)", [("actor_rollout_ref.rollout.name", "vllm"),
                                      ("actor_rollout_ref.rollout.mode", "async"),
                                      ("actor_rollout_ref.rollout.enable_prefix_caching", True),
                                      ("actor_rollout_ref.rollout.calculate_log_probs", True),
                                      ("actor_rollout_ref.rollout.logprobs_mode", "processed_logprobs")]),
        ("rollout.dtype", r.dtype, [("actor_rollout_ref.rollout.dtype", r.dtype)]),
        ("rollout.vllm.gpu_memory_utilization", v.gpu_memory_utilization,
         [("actor_rollout_ref.rollout.gpu_memory_utilization", v.gpu_memory_utilization)]),
        ("rollout.vllm.max_num_seqs", v.max_num_seqs, [("actor_rollout_ref.rollout.max_num_seqs", v.max_num_seqs)]),
        ("rollout.vllm.enforce_eager", v.enforce_eager, [("actor_rollout_ref.rollout.enforce_eager", v.enforce_eager)]),
        ("rollout.vllm.tensor_parallel_size", v.tensor_parallel_size,
         [("actor_rollout_ref.rollout.tensor_model_parallel_size", v.tensor_parallel_size)]),
        ("rollout.vllm.sleep_level", v.sleep_level, [("actor_rollout_ref.rollout.free_cache_engine", v.sleep_level > 0)]),
        ("data", "the suites' train split", [("data.train_files", str(train_file)), ("data.val_files", str(val_file)),
                                             ("data.prompt_key", "prompt"), ("data.reward_fn_key", "data_source")]),
        ("reward", "the suites' scorers, bounded", [("reward.custom_reward_function.path", str(reward_module)),
                                                    ("reward.custom_reward_function.name", REWARD_FUNCTION)]),
        reward_sizing(cfg.scoring.node_cpus, nodes, gpus_per_node),
        ("cluster", f"{nodes} x {gpus_per_node}", [("trainer.nnodes", nodes), ("trainer.n_gpus_per_node", gpus_per_node)]),
        ("run", experiment, [("trainer.project_name", "harness"), ("trainer.experiment_name", experiment),
                             ("trainer.logger", "[" + ",".join(loggers) + "]"), ("trainer.default_local_dir", str(checkpoints)),
                             ("trainer.val_before_train", False), ("trainer.test_freq", -1)]),
    ]
    # ICE-POP: token-level importance weights exp(old - rollout), zero outside [tis_low, tis_high], the
    # response mask untouched (tests/test_verl_algos.py: bit-for-bit the harness's truncated_is_weights).
    # rollout_rs (rejection) would drop the tokens from the mask instead, changing the token-mean's
    # denominator and the advantage whitening. Off: rollout_is=null explicitly (verl's config class
    # defaults to "sequence" where its yaml says null).
    rows.append(("train.tis", f"ICE-POP [{t.tis_low}, {t.tis_high}]" if t.tis else False, [
        ("algorithm.rollout_correction.rollout_is", "token" if t.tis else None),
        ("algorithm.rollout_correction.rollout_is_threshold", f"'{t.tis_low}_{t.tis_high}'" if t.tis else 2.0),
        ("algorithm.rollout_correction.rollout_rs", None),
        ("algorithm.rollout_correction.rollout_is_batch_normalize", False),
        ("algorithm.rollout_correction.bypass_mode", False)]))
    if tensorboard_dir is not None and "tensorboard" in loggers:
        rows.append(("train.loggers", ", ".join(loggers), [(f"+{ENV_VARS}.TENSORBOARD_DIR", str(tensorboard_dir))]))
    overrides = [f"{key}={_hydra(value)}" for _, _, pairs in rows for key, value in pairs]
    for item in extra_overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"invalid value for --verl-override: {item!r}; expected key=value (a Hydra override of "
                              "verl's ppo_trainer config, e.g. trainer.val_before_train=true)")
    overrides += list(extra_overrides)
    translations = [Translation(name, value, ", ".join(f"{k}={_hydra(val)}" for k, val in pairs)) for name, value, pairs in rows]
    segments = [Segment(index, first, last, [f"{key}={_hydra(value)}" for key, value in _segment_pairs(
                    index, first, model=model, last=last, checkpoints=checkpoints, metrics_dir=metrics_dir,
                    reset_optimizer=t.reset_optimizer_with_ref)], str(segment_metrics(metrics_dir, index)))
                for index, (first, last) in enumerate(bounds)]
    translations[:0] = _chain_translations(t, model, checkpoints, metrics_dir, bounds, steps, plan)
    if extra_overrides:
        translations.append(Translation("--verl-override", len(extra_overrides),
                                        ", ".join(extra_overrides) + " (after the compiled overrides: they win)"))
    not_expressed = []
    if t.log_ratio_clamp != 20.0:
        not_expressed.append(f"train.log_ratio_clamp={t.log_ratio_clamp}: verl clamps the log-ratio at 20, fixed")
    not_expressed.append(
        "mini-batch membership: the harness shuffles a step's sequences into train.mini_batches chunks; verl splits "
        "by ppo_mini_batch_size prompts x n in order (actor.shuffle=false): same sizes, other members")
    if t.clip_ratio_c is None:
        not_expressed.append("train.clip_ratio_c=null (no dual clip): verl always applies one; 1e9 (beyond the "
                             "log-ratio clamp's e^20) is exactly equivalent")
    if t.probe_every:
        not_expressed.append(f"train.probe_every={t.probe_every}: the ΔQ_pos probe is the harness trainer's; a verl run "
                             "logs no probe fields")
    if t.adv_normalise != "tokens":
        not_expressed.append(f"train.adv_normalise={t.adv_normalise}: verl whitens over tokens only")
    not_expressed.append(
        f"train.max_gen_rounds={t.max_gen_rounds}: verl refills evicted groups prompt by prompt, and verl 0.9.1's V1 "
        "replay buffer ignores filter_groups.max_num_gen_batches (it logs a warning): the refills are not capped. "
        "The refills are counted in the samples (n per evicted or discarded group) when the metrics are read back")
    if plan is not None and plan.watched:
        not_expressed.append(
            f"compare.budget_kind={cfg.compare.budget_kind}: verl stops at trainer.total_training_steps only; the "
            "harness's watcher reads the metrics as verl writes them and stops the Ray job (`ray job stop`) once the "
            "next step would pass the budget, after the checkpoint at or under it exists")
    notes = [f"prompts longer than {MAX_PROMPT_TOKENS} tokens after the chat template are dropped by verl "
             "(data.filter_overlong_prompts)",
             f"micro-batch token budget {token_budget} = max(train.micro_batch_tokens, prompt bound + max_new_tokens): "
             "verl counts prompt and response, and one sequence must fit"]
    if len(segments) > 1:
        notes.append(f"{len(segments)} verl runs in a chain (train.ref_reset_every={t.ref_reset_every}): every one "
                     f"starts Ray, the workers and vLLM anew; timing_s/step, hence wall_s, does not count that start-up. "
                     f"All must run on the same {nodes} x {gpus_per_node} GPUs (verl's sharded checkpoints are per "
                     "world size) and see the run folder at the same path")
    if plan is not None:
        notes.append(f"budget: {steps} steps at most ({plan.basis}); evaluation points planned at steps "
                     f"{plan.point_steps}; checkpoints: {plan.save_basis}")
    if t.reset_optimizer_with_ref and len(segments) > 1:
        notes.append("train.reset_optimizer_with_ref with resume_mode=auto: a segment k > 0 resumed after a failure "
                     "past its first step also loads the weights only, so its optimizer starts afresh there a second time")
        notes.append("train.reset_optimizer_with_ref: load_contents=[model] also leaves out verl's 'extra' state, "
                     "which holds the lr scheduler and the RNG states together: the segment starts a fresh AdamW and "
                     "lr schedule (as the harness's reset) and the workers' RNG from its seed")
    return VerlJob(arm=arm, overrides=overrides, segments=segments, translations=translations,
                   not_expressed=not_expressed, nodes=nodes, gpus_per_node=gpus_per_node, checkpoints=checkpoints,
                   address=address, notes=notes)


def _segment_pairs(index: int, first: int, *, last: int, model: str, checkpoints: Path, metrics_dir: Path,
                   reset_optimizer: bool) -> list[tuple[str, object]]:
    """Segment `index`'s own (key, value) overrides. Every segment resumes with
    `trainer.resume_mode=auto`: verl loads the newest checkpoint its tracker records in the shared
    checkpoint folder, so a segment that dies restarts at its own last save (train.save_every), not
    at its first step. Segment 0 then starts from the base when nothing was saved yet. Segment k > 0
    loads the policy at step first-1 as HF weights from model.path (what verl builds the reference,
    the rollout and the actor's initial weights from) and, through auto, verl's checkpoint of that
    step or of a later save of its own (actor weights again, optimizer, lr scheduler, dataloader)."""
    pairs: list[tuple[str, object]]
    if index == 0:
        pairs = [("actor_rollout_ref.model.path", model), ("trainer.resume_mode", "auto")]
    else:
        start = first - 1
        pairs = [("actor_rollout_ref.model.path", str(hf_checkpoint(checkpoints, start))),
                 ("trainer.resume_mode", "auto"),
                 ("actor_rollout_ref.actor.checkpoint.load_contents",
                  "[model]" if reset_optimizer else "[model,optimizer,extra]")]
    return [*pairs, ("trainer.total_training_steps", last), (f"+{METRICS_ENV}", str(segment_metrics(metrics_dir, index)))]


def _chain_translations(t, model: str, checkpoints: Path, metrics_dir: Path, bounds: list[tuple[int, int]], steps: int,
                        plan: StepPlan | None) -> list[Translation]:
    """The rows of the values carried per segment: the base, the steps, the reference reset (and with
    it the optimizer reset), the resume, the metrics files."""
    steps_value = f"{steps} ({plan.basis})" if plan is not None else t.steps
    resume = Translation("resume", "from the last save",
                         "trainer.resume_mode=auto in every segment: verl resumes from the newest checkpoint in "
                         f"{checkpoints} (a failed segment restarts at its last save, train.save_every)")
    if len(bounds) == 1:
        return [
            Translation("base", model, f"actor_rollout_ref.model.path={model}"),
            Translation("train.steps", steps_value, f"trainer.total_training_steps={steps}"),
            Translation("train.ref_reset_every", t.ref_reset_every, "no reset before the run's last step: one verl run"),
            resume,
            Translation("metrics", "verl's file logger", f"+{METRICS_ENV}={segment_metrics(metrics_dir, 0)}"),
        ]
    resumed = f"{checkpoints}/global_step_S"
    return [
        Translation("base", model, f"segment 0: actor_rollout_ref.model.path={model}"),
        Translation("train.steps", steps_value, "trainer.total_training_steps=" + ", ".join(str(b) for _, b in bounds) +
                    " (segment by segment)"),
        Translation("train.ref_reset_every", t.ref_reset_every,
                    f"{len(bounds)} verl runs (steps " + ", ".join(f"{a}-{b}" for a, b in bounds) + ") chained by "
                    f"verl's resume; segment k > 0, S = the step before its first: "
                    f"actor_rollout_ref.model.path={resumed}/actor/huggingface (verl builds the reference from it: the "
                    "policy at step S), and verl's checkpoint of S (or of a later save of the segment) resumed"),
        Translation("train.reset_optimizer_with_ref", t.reset_optimizer_with_ref,
                    "segment k > 0: actor_rollout_ref.actor.checkpoint.load_contents=" +
                    ("[model] (the weights only: a fresh AdamW and lr schedule)" if t.reset_optimizer_with_ref
                     else "[model,optimizer,extra] (the optimizer, lr scheduler and RNG continue)")),
        resume,
        Translation("metrics", "verl's file logger, one file per segment",
                    f"+{METRICS_ENV}={segment_metrics(metrics_dir, 0)} (segment k: segment<k>.jsonl; an earlier "
                    "attempt's file is kept as segment<k>.attempt<j>.jsonl before a rerun)"),
    ]


def _hydra(value: object) -> str:
    """A value as a Hydra override writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def render_translations(job: VerlJob) -> str:
    """What each recipe value became in verl, and what verl could not express (markdown)."""
    lines = [f"# {job.arm} on verl: {job.nodes} node(s) x {job.gpus_per_node} GPU(s)", "",
             "| harness | value | verl |", "|---|---|---|"]
    lines += [f"| `{tr.harness_key}` | {tr.value} | `{tr.verl}` |" for tr in job.translations]
    lines += ["", "## Not expressible in verl 0.9", ""] + [f"- {item}" for item in job.not_expressed]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in job.notes]
    return "\n".join(lines) + "\n"
