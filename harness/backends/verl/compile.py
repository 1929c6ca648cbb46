"""A harness arm (recipe + profile) compiled to verl 0.9's configuration.

`compile_arm` returns the Hydra overrides for verl's `ppo_trainer` config (entry point
`python -m verl.trainer.main_ppo`), one `Translation` per recipe value saying what it became in
verl's terms, and the values verl cannot express. The overrides name only keys verl's own config
declares (tests/test_verl.py composes them with verl's Hydra config and runs its validation), so a
misspelt key fails there, not on a cluster.

Hooks used, all verl's own (nothing of verl is copied or patched):
- dynamic sampling with refill and cap: `algorithm.filter_groups` (verl's v1 trainer keeps a
  replay buffer that evicts groups whose rewards have no spread and refills them with new prompts;
  `max_num_gen_batches` caps the refills);
- ICE-POP: `algorithm.rollout_correction` (`rollout_is=token` with the bounds as its threshold:
  token weights exp(old - rollout), zero outside [tis_low, tis_high]; tests/test_verl_algos.py
  checks it equals the harness's `truncated_is_weights` bit for bit);
- the reward: `reward.custom_reward_function` -> harness/backends/verl/reward.py;
- generation throughput (Table 3): computed from verl's `timing_s/gen` and its sample counts when
  its metrics are read back (harness/backends/verl/metrics.py), never from `perf/throughput`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Config, ConfigError
from harness.trainers.registry import arm_settings as registry_arm_settings

MAX_PROMPT_TOKENS = 1024
"""verl's `data.max_prompt_length`: the harness never caps prompts, verl needs a bound. 1,024 covers
the training mixes' prompts after the chat template (UNCONFIRMED for every row: verl drops longer
ones with `filter_overlong_prompts`, and the dry run says so)."""

REWARD_FUNCTION = "compute_score"
"""The function verl calls in harness/backends/verl/reward.py."""


@dataclass(frozen=True)
class Translation:
    """One recipe or profile value and what it became in verl."""

    harness_key: str
    value: object
    verl: str
    """verl's key(s) and value(s), or how it is carried."""


@dataclass
class VerlJob:
    """Everything a verl run of one arm needs; `command()` is what runs it."""

    arm: str
    overrides: list[str]
    translations: list[Translation]
    not_expressed: list[str]
    """Recipe values verl 0.9 cannot express, each with what happens instead."""
    nodes: int
    gpus_per_node: int
    address: str | None = None
    notes: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        """`python3 -m verl.trainer.main_ppo OVERRIDES`, or under `ray job submit` with --address."""
        main = ["python3", "-m", "verl.trainer.main_ppo", *self.overrides]
        if self.address:
            return ["ray", "job", "submit", f"--address={self.address}", "--", *main]
        return main

    def shell(self) -> str:
        return " \\\n    ".join(shlex.quote(part) for part in self.command())


def arm_settings(cfg: Config):
    """The arm's resolved n, prompts per step and learning rate (the trainers' own rule)."""
    return registry_arm_settings(cfg.train, "--backend verl")


def compile_arm(cfg: Config, arm: str, *, model: str, train_file: Path, val_file: Path, reward_module: Path,
                checkpoints: Path, nodes: int, gpus_per_node: int, experiment: str,
                address: str | None = None) -> VerlJob:
    """The verl job of one arm. `model`: the checkpoint both arms start from (hub id or folder)."""
    if nodes < 1 or gpus_per_node < 1:
        raise ConfigError(f"invalid value for --nodes/--gpus-per-node: {nodes}/{gpus_per_node}; both must be >= 1")
    t, r, v = cfg.train, cfg.rollout, cfg.rollout.vllm
    s = arm_settings(cfg)
    if s.prompts_per_step % t.mini_batches:
        raise ConfigError(f"invalid value for 'train.mini_batches': {t.mini_batches}; verl counts mini-batches in "
                          f"prompts, so it must divide the arm's {s.prompts_per_step} prompts per step")
    mini_prompts = s.prompts_per_step // t.mini_batches
    token_budget = max(t.micro_batch_tokens, MAX_PROMPT_TOKENS + t.max_new_tokens)
    rows: list[tuple[str, object, list[tuple[str, object]]]] = [
        ("base", model, [("actor_rollout_ref.model.path", model)]),
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
        ("train.steps", t.steps, [("trainer.total_training_steps", t.steps), ("trainer.total_epochs", 1000)]),
        ("train.save_every", t.save_every, [("trainer.save_freq", t.save_every or -1),
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
        ("cluster", f"{nodes} x {gpus_per_node}", [("trainer.nnodes", nodes), ("trainer.n_gpus_per_node", gpus_per_node)]),
        ("run", experiment, [("trainer.project_name", "harness"), ("trainer.experiment_name", experiment),
                             ("trainer.logger", "[console,file]"), ("trainer.default_local_dir", str(checkpoints)),
                             ("trainer.val_before_train", False), ("trainer.test_freq", -1),
                             ("trainer.resume_mode", "auto")]),
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
    overrides = [f"{key}={_hydra(value)}" for _, _, pairs in rows for key, value in pairs]
    translations = [Translation(name, value, ", ".join(f"{k}={_hydra(val)}" for k, val in pairs)) for name, value, pairs in rows]
    not_expressed = []
    if t.ref_reset_every:
        not_expressed.append(
            f"train.ref_reset_every={t.ref_reset_every}: verl 0.9 keeps the reference fixed for the whole run "
            "(no reset hook in its trainer or workers); the verl run's KL is always to the start checkpoint")
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
        f"train.max_gen_rounds={t.max_gen_rounds} as a number of whole generation rounds: verl refills evicted "
        "groups prompt by prompt and caps the refills with filter_groups.max_num_gen_batches (same cap, finer grain)")
    if cfg.compare.budget_kind != "steps":
        not_expressed.append(
            f"compare.budget_kind={cfg.compare.budget_kind}: verl stops at trainer.total_training_steps; the "
            "budget picks checkpoints at matched spend when the metrics are read back")
    notes = [f"prompts longer than {MAX_PROMPT_TOKENS} tokens after the chat template are dropped by verl "
             "(data.filter_overlong_prompts)",
             f"micro-batch token budget {token_budget} = max(train.micro_batch_tokens, prompt bound + max_new_tokens): "
             "verl counts prompt and response, and one sequence must fit"]
    return VerlJob(arm=arm, overrides=overrides, translations=translations, not_expressed=not_expressed,
                   nodes=nodes, gpus_per_node=gpus_per_node, address=address, notes=notes)


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
