"""The GRPO-family RL step both arms run; the arms differ only in `ArmSettings`.

One step:
1. generate: draw `prompts_per_step` training prompts, sample `n` responses each (rollout engine);
2. score: the suites' own scorers give each response its reward;
3. dynamic sampling: drop groups whose rewards have no spread; repeat 1-2 until the step has
   `prompts_per_step` groups with spread, or `max_gen_rounds` rounds ran (then train on what was
   kept and say so in the metrics);
4. update: REINFORCE++-baseline advantages; logprobs of the pre-update policy and of the reference;
   `mini_batches` optimizer steps of PPO-clip (decoupled bounds, token-level mean) plus the KL
   penalty, optionally weighted by truncated importance sampling; each mini-batch is cut into
   micro-batches by a token budget, so N changes gradient accumulation, not peak memory;
5. every `ref_reset_every` steps the reference becomes the current policy (optionally the
   optimizer restarts too).

All randomness derives from (seed, step): the prompt order from (seed, epoch), sampling seeds from
(seed, step, round), mini-batch shuffles from (seed, step), so a resumed run repeats exactly.

With `train.probe_every` on, every probe_every-th step that updates also measures, before and after
its update, the policy's logprob of known-correct responses to a fixed set of training prompts
(`probe_sequences`; the paper's Q_pos on the language model). What it measures is the ΔQ_pos of
this trainer's clipped log-probability objective (at ratio 1 its gradient is the log-prob policy
gradient, `harness simulate --objective logprob`), not of the paper's surrogate that is linear in
the probabilities (`--objective linear`; docs/trainers.md says how the two differ). The probe runs the update's own
no-gradient logprob pass (`_logprobs`), draws no random number and is left out of the step's
timings, so the run trains exactly as without it (tests/test_probe.py checks the weights and
metrics bit for bit).

The update computes each prompt once per micro-batch and runs its responses against the prompt's
key/value cache (`pad` explains the layout), so N=512 does not pay for its prompts 512 times. It
applies the output layer in chunks of `train.logit_chunk_tokens` response tokens
(trainers/logits.py), so memory at a 151,936-word vocabulary stays bounded, and can
checkpoint the policy's blocks (`train.gradient_checkpointing`).
Left out for now: one PPO epoch per step.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from harness.checkpoint import render_prompts
from harness.config import ConfigError, RolloutConfig, ScoringConfig, TrainConfig
from harness.execution.bounded import shared_pool
from harness.rollout import SamplingParams, make_engine
from suites.base import Item, Suite
from trainers.core import (
    clamped_ratio,
    dual_clip_active,
    group_advantages,
    kl_penalty,
    masked_token_mean,
    ppo_clip_objective,
    probe_mass_change,
    truncated_is_weights,
    zero_spread_groups,
)
from trainers.logits import token_logprobs
from trainers.shared_prompt import SHARED_PROMPT, ScoredSequence, UpdateLayout, enable_gradient_checkpointing


@dataclass(frozen=True)
class ArmSettings:
    """What distinguishes one arm from the other; everything else comes from the `train` section."""

    n: int
    """Rollouts per prompt."""
    prompts_per_step: int
    """Prompt groups kept per step."""
    learning_rate: float
    """AdamW learning rate."""
    lr_rule: str
    """How the learning rate was derived (for the report)."""


class GRPOTrainer:
    """Shared RL step; `step_scaling` and `rollout_scaling` build it with their own `ArmSettings`."""

    def __init__(self, name: str, arm: ArmSettings, *, train: TrainConfig, rollout: RolloutConfig, scoring: ScoringConfig,
                 seed: int, model, tokenizer, suites: Sequence[Suite]):
        self.name = name
        self.train_cfg = train
        self.arm = arm
        # Root of the arm's randomness: the master seed and the arm's own `train.seed`.
        self.rl_seed = seed * 7_919 + train.seed
        self.policy = model
        self.tokenizer = tokenizer
        self.policy.train()
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        if train.gradient_checkpointing:  # the reference never runs with gradients: nothing to checkpoint
            enable_gradient_checkpointing(self.policy)
        # Generation precision is rollout.dtype; training keeps the master weights in train.dtype.
        # The engine holds what it generates from (the policy itself, or its own copy or server
        # when the precision or the engine differs) and takes the master weights before every step.
        self.engine = make_engine(rollout, model, tokenizer, seed=self.rl_seed)
        # Rewards and advantages in float32, or float64 for a float64 policy (the regression guard's
        # machine-independent runs: a float32 batch whitening would round by the machine's kernels).
        self.reward_dtype = torch.promote_types(model.dtype, torch.float32)
        self.scorer_pool = shared_pool(scoring.workers, scoring.timeout_s)
        self.optimizer = self._new_optimizer()
        self.scheduler = self._new_scheduler()
        self.pool: list[tuple[Suite, Item]] = []
        for suite in suites:
            self.pool.extend((suite, it) for it in suite.items("train", self.train_cfg.prompt_pool))
        if not self.pool:
            raise ValueError("no training prompts: the profile's suites gave an empty train split")
        self.probe = probe_sequences(self.pool, tokenizer, seed, train.probe_items) if train.probe_every else []
        self.step_count = 0
        self.epoch = 0
        self.cursor = 0
        self.samples_generated = 0
        self.tokens_generated = 0
        self.order = self._epoch_order(0)

    # ------------------------------------------------------------------------------------------
    # setup pieces

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.policy.parameters(), lr=self.arm.learning_rate, weight_decay=self.train_cfg.weight_decay
        )

    def _new_scheduler(self):
        warm = self.train_cfg.warmup_steps
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: min(1.0, (i + 1) / warm) if warm else 1.0
        )

    def _epoch_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.rl_seed * 1_000_003 + epoch)
        return torch.randperm(len(self.pool), generator=g).tolist()

    def settings(self) -> dict[str, Any]:
        return {"trainer": self.name, **asdict(self.arm)}

    # ------------------------------------------------------------------------------------------
    # one step

    def step(self) -> dict[str, Any]:
        self.step_count += 1
        t = self.train_cfg
        start = time.perf_counter()
        kept_groups: list[tuple[list[int], list, torch.Tensor]] = []
        gen_s = 0.0
        generated = groups_generated = groups_with_spread = 0
        reward_sum = 0.0
        score_failures = 0
        response_tokens = 0
        rounds = 0
        score_s = 0.0
        weight_sync_s = self._sync_rollout_weights()
        while len(kept_groups) < self.arm.prompts_per_step and rounds < t.max_gen_rounds:
            rounds += 1
            batch = self._next_prompts(self.arm.prompts_per_step)
            sampling = SamplingParams(
                temperature=t.temperature, top_p=t.top_p, max_new_tokens=t.max_new_tokens,
                seed=(self.rl_seed * 1_000_003 + self.step_count) * 101 + rounds,
            )
            result = self.engine.generate(render_prompts(self.tokenizer, [it.prompt for _, it in batch]), self.arm.n, sampling)
            gen_s += result.generation_s
            generated += result.num_samples
            groups_generated += len(result.groups)
            response_tokens += result.num_output_tokens
            score_start = time.perf_counter()
            scored = self._score(batch, result.groups)
            score_s += time.perf_counter() - score_start
            for r in scored:
                if r.status == "timeout" or r.status.startswith("error"):
                    score_failures += 1
            rewards = torch.tensor([r.reward for r in scored], dtype=self.reward_dtype).view(len(batch), self.arm.n)
            reward_sum += float(rewards.sum())
            flat = zero_spread_groups(rewards)
            for g, group in enumerate(result.groups):
                if not flat[g]:
                    groups_with_spread += 1
                    if len(kept_groups) < self.arm.prompts_per_step:
                        kept_groups.append((group.prompt_ids, group.samples, rewards[g]))
        self.samples_generated += generated
        self.tokens_generated += response_tokens
        metrics: dict[str, Any] = {
            "step": self.step_count,
            "reward_mean": reward_sum / generated,
            "ds_pass_rate": groups_with_spread / groups_generated,
            "gen_rounds": rounds,
            "kept_groups": len(kept_groups),
            "ds_cap_hit": len(kept_groups) < self.arm.prompts_per_step,
            "samples_generated": self.samples_generated,
            "tokens_generated": self.tokens_generated,
            "gen_samples_per_s": generated / gen_s if gen_s > 0 else 0.0,
            "mean_response_tokens": response_tokens / generated,
            "score_failures": score_failures,
            "gen_s": gen_s,
            "score_s": score_s,
            "weight_sync_s": weight_sync_s,
        }
        self.engine.release()  # sleep mode frees the engine's KV cache while the policy updates
        probe_s = probe_cpu_s = 0.0  # wall and CPU (this process: the probe scores nothing) of the probe
        probing = bool(kept_groups) and t.probe_every > 0 and self.step_count % t.probe_every == 0
        if probing:  # a step without an update has nothing to probe
            probe_start, probe_cpu = time.perf_counter(), time.process_time()
            before = self._probe_logp()
            probe_s += time.perf_counter() - probe_start
            probe_cpu_s += time.process_time() - probe_cpu
        train_start = time.perf_counter()
        if kept_groups:
            metrics.update(self._update(kept_groups))
        else:
            metrics.update({"loss": None, "clip_frac": None, "dual_clip_frac": None, "kl": None, "entropy": None,
                            "train_tokens": 0, "old_logprob_s": 0.0, "ref_logprob_s": 0.0, "update_s": 0.0})
        train_s = time.perf_counter() - train_start
        if probing:
            probe_start, probe_cpu = time.perf_counter(), time.process_time()
            metrics.update(probe_mass_change(before, self._probe_logp()))
            probe_s += time.perf_counter() - probe_start
            probe_cpu_s += time.process_time() - probe_cpu
            metrics["probe_s"] = probe_s
            metrics["probe_cpu_s"] = probe_cpu_s
        metrics["train_s"] = train_s
        metrics["train_tokens_per_s"] = metrics.pop("train_tokens") / train_s if train_s > 0 else 0.0
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        if t.ref_reset_every and self.step_count % t.ref_reset_every == 0:
            self.reference.load_state_dict(self.policy.state_dict())
            if t.reset_optimizer_with_ref:
                self.optimizer = self._new_optimizer()
                self.scheduler = self._new_scheduler()
            metrics["ref_reset"] = True
        metrics["step_s"] = time.perf_counter() - start - probe_s  # the probe measures; it is not the step
        return metrics

    def _probe_logp(self) -> torch.Tensor:
        """[probe items] float64: each probe response's summed token logprob under the current policy
        (at train.temperature), no gradient, in eval mode; the policy's mode is restored after."""
        training = self.policy.training
        self.policy.eval()
        with torch.no_grad():
            logp = _logprobs(self.policy, self.probe, self.train_cfg, self.tokenizer.pad_token_id)
        self.policy.train(training)
        return torch.stack([v.double().sum() for v in logp])

    @property
    def rollout_model(self):
        """The transformers model the `hf` engine generates from (the policy, or its copy in rollout.dtype)."""
        return getattr(self.engine, "model", None)

    def _sync_rollout_weights(self) -> float:
        """The engine takes the master weights (cast to its precision); returns the seconds it took."""
        start = time.perf_counter()
        self.engine.sync_weights(self.policy)
        return time.perf_counter() - start

    def _score(self, batch: list[tuple[Suite, Item]], groups) -> list:
        """Rewards in (prompt, sample) order, each scorer call bounded in a worker process."""
        out: list = [None] * sum(len(g.samples) for g in groups)
        by_suite: dict[str, tuple[Suite, list[tuple[int, tuple]]]] = {}
        k = 0
        for (suite, item), group in zip(batch, groups):
            for sample in group.samples:
                by_suite.setdefault(suite.name, (suite, []))[1].append((k, (sample.text, item.reference)))
                k += 1
        for suite, calls in by_suite.values():
            results = self.scorer_pool.map(suite.scorer, [args for _, args in calls], suite.scorer_timeout_s)
            for (index, _), result in zip(calls, results):
                out[index] = result
        return out

    def _next_prompts(self, k: int) -> list[tuple[Suite, Item]]:
        out = []
        while len(out) < k:
            if self.cursor >= len(self.order):
                self.epoch += 1
                self.cursor = 0
                self.order = self._epoch_order(self.epoch)
            out.append(self.pool[self.order[self.cursor]])
            self.cursor += 1
        return out

    # ------------------------------------------------------------------------------------------
    # update

    def _update(self, kept_groups, layout: UpdateLayout | None = None) -> dict[str, Any]:
        """Advantages, old-policy and reference logprobs, then `mini_batches` optimizer steps.

        Every forward (both logprob passes and the loss's forward/backward) computes each prompt
        once per micro-batch, not once per sample: `SHARED_PROMPT`, see `pad`. `layout` exists so
        `harness bench update` can time the per-sample computation against it; training never
        passes it. Its metrics time the phases (`harness bench step` prints them): `old_logprob_s`
        and `ref_logprob_s` (the two no-grad passes; 0 without a KL term) and `update_s` (every
        mini-batch's loss forward/backward and optimizer step)."""
        t = self.train_cfg
        layout = layout or SHARED_PROMPT
        pad_id = self.tokenizer.pad_token_id
        lengths = torch.tensor([[len(s.token_ids) for s in samples] for _, samples, _ in kept_groups])
        advantages = group_advantages(torch.stack([r for _, _, r in kept_groups]), lengths, t.adv_normalise)
        seqs = [
            ScoredSequence(ids=list(prompt_ids) + s.token_ids, prompt_len=len(prompt_ids), group=g,
                      rollout_logp=s.logprobs, advantage=float(advantages[g, j]))
            for g, (prompt_ids, samples, _) in enumerate(kept_groups)
            for j, s in enumerate(samples)
        ]
        self.policy.eval()  # no dropout in these models; eval keeps logprob passes deterministic
        pass_start = time.perf_counter()
        with torch.no_grad():
            old_logp = _logprobs(self.policy, seqs, t, pad_id, layout)
            ref_start = time.perf_counter()
            ref_logp = _logprobs(self.reference, seqs, t, pad_id, layout) if t.kl_coef > 0 else None
        update_start = time.perf_counter()
        self.policy.train()
        g = torch.Generator().manual_seed((self.rl_seed * 1_000_003 + self.step_count) * 7 + 3)
        order = torch.randperm(len(seqs), generator=g).tolist()
        n_mb = min(t.mini_batches, len(seqs))
        bounds = [round(i * len(seqs) / n_mb) for i in range(n_mb + 1)]
        totals = {"loss": 0.0, "clip": 0.0, "dual_clip": 0.0, "kl": 0.0, "entropy": 0.0, "tokens": 0}
        for b in range(n_mb):
            members = order[bounds[b]:bounds[b + 1]]
            self.optimizer.zero_grad(set_to_none=True)
            sums = _accumulate_gradients(self.policy, seqs, members, old_logp, ref_logp, t, pad_id, layout)
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), t.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            for key in totals:
                totals[key] += sums[key]
        self.optimizer.zero_grad(set_to_none=True)
        _synchronize(self.policy)  # the last optimizer step's kernels count in update_s
        update_s = time.perf_counter() - update_start
        tokens = max(1, totals["tokens"])
        return {
            "loss": totals["loss"] / n_mb,
            "clip_frac": totals["clip"] / tokens,
            "dual_clip_frac": totals["dual_clip"] / tokens,
            "kl": totals["kl"] / tokens,
            "entropy": totals["entropy"] / tokens,
            "train_tokens": sum(len(s.ids) for s in seqs),
            "old_logprob_s": ref_start - pass_start,
            "ref_logprob_s": update_start - ref_start,
            "update_s": update_s,
        }

    # ------------------------------------------------------------------------------------------
    # resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step_count,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "samples_generated": self.samples_generated,
            "tokens_generated": self.tokens_generated,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "reference": self.reference.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"checkpoint was written by trainer '{state['name']}', not '{self.name}'")
        self.step_count = state["step"]
        self.epoch = state["epoch"]
        self.cursor = state["cursor"]
        self.samples_generated = state["samples_generated"]
        self.tokens_generated = state["tokens_generated"]
        self.order = self._epoch_order(self.epoch)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.reference.load_state_dict(state["reference"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])


PROBE_STREAM = 4_099
"""Offsets the probe set's seeded order from every other stream of the master seed."""


def probe_sequences(pool: Sequence[tuple[Suite, Item]], tokenizer, seed: int, k: int) -> list[ScoredSequence]:
    """The ΔQ_pos probe set: the first `k` items with a reference response (Item.target) of the
    training pool in an order fixed by the master `seed` alone (so every arm, N and train.seed of
    one profile probes the same items), each as its chat-rendered prompt tokenised as the rollout
    engine does (no special tokens added) followed by the target and EOS (the response the
    supervised warm-up taught, complete). Each item is its own prompt group. Refuses, in one line,
    a pool with no target to probe."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed * 1_000_003 + PROBE_STREAM))
    items: list[Item] = []
    for i in order.tolist():
        if pool[i][1].target:
            items.append(pool[i][1])
            if len(items) == k:
                break
    if not items:
        raise ConfigError("invalid value for 'train.probe_every': no training item has a reference response "
                          "(Item.target) to measure Q_pos on; set train.probe_every=0")
    prompts = tokenizer(render_prompts(tokenizer, [it.prompt for it in items]), add_special_tokens=False)["input_ids"]
    targets = tokenizer([it.target for it in items], add_special_tokens=False)["input_ids"]
    return [ScoredSequence(ids=list(p) + list(r) + [tokenizer.eos_token_id], prompt_len=len(p), group=g,
                           rollout_logp=[], advantage=0.0)
            for g, (p, r) in enumerate(zip(prompts, targets))]


def _logprobs(model, seqs: list[ScoredSequence], t, pad_id: int, layout: UpdateLayout = SHARED_PROMPT) -> list[torch.Tensor]:
    """Per-sequence response-token logprobs (temperature-scaled), computed in micro-batches."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(seqs)
    for micro in layout.micro_batches(seqs, list(range(len(seqs))), t.micro_batch_tokens):
        with _autocast(model, t):
            hidden, targets, mask = layout.forward(model, seqs, micro, pad_id)
            logp, _ = token_logprobs(model.get_output_embeddings(), hidden, targets, mask, t.temperature,
                                     t.logit_chunk_tokens)
        for row, i in enumerate(micro):
            out[i] = logp[row, : len(seqs[i].ids) - seqs[i].prompt_len].detach().cpu()
    return out


def _accumulate_gradients(model, seqs: list[ScoredSequence], members: list[int], old_logp, ref_logp, t, pad_id: int,
                          layout: UpdateLayout = SHARED_PROMPT) -> dict[str, float]:
    """Backward of one mini-batch's loss, micro-batch by micro-batch; its sums for the metrics.

    Loss: PPO-clip with dual clip `t.clip_ratio_c` and log-ratio clamp `t.log_ratio_clamp` (times
    the TIS weight when `t.tis`) plus `kl_coef` x KL to the reference, summed
    over the mini-batch's response tokens and divided by their count (token-level mean). Each
    micro-batch divides by the whole mini-batch's count, so the accumulated gradient is that of
    one pass over the mini-batch."""
    mb_tokens = sum(len(seqs[i].ids) - seqs[i].prompt_len for i in members)
    sums = {"loss": 0.0, "clip": 0.0, "dual_clip": 0.0, "kl": 0.0, "entropy": 0.0, "tokens": mb_tokens}
    for micro in layout.micro_batches(seqs, members, t.micro_batch_tokens):
        with _autocast(model, t):
            hidden, targets, mask = layout.forward(model, seqs, micro, pad_id)
            logp, entropy = token_logprobs(model.get_output_embeddings(), hidden, targets, mask, t.temperature,
                                           t.logit_chunk_tokens, entropy=True)
        del hidden  # the graph keeps what the backward needs
        old = _to_grid([old_logp[i] for i in micro], logp)
        adv = torch.tensor([seqs[i].advantage for i in micro], dtype=logp.dtype, device=logp.device).unsqueeze(-1).expand_as(logp)
        pg, clipped = ppo_clip_objective(logp, old, adv, t.eps_low, t.eps_high, t.clip_ratio_c, t.log_ratio_clamp)
        if t.tis:
            rollout = _to_grid([seqs[i].rollout_logp for i in micro], logp)
            weight, _ = truncated_is_weights(old, rollout, t.tis_low, t.tis_high)
            pg = pg * weight
        per_token = pg
        kl = torch.zeros_like(logp)
        if ref_logp is not None:
            ref = _to_grid([ref_logp[i] for i in micro], logp)
            kl = kl_penalty(logp, ref, t.kl_estimator)
            per_token = per_token + t.kl_coef * kl
        loss = masked_token_mean(per_token, mask, num_tokens=mb_tokens)
        loss.backward()
        with torch.no_grad():
            sums["loss"] += float(loss)
            sums["clip"] += float((clipped * mask).sum())
            capped = dual_clip_active(clamped_ratio(logp, old, t.log_ratio_clamp), adv, t.clip_ratio_c)
            sums["dual_clip"] += float((capped.float() * mask).sum())
            sums["kl"] += float((kl * mask).sum())
            sums["entropy"] += float((entropy * mask).sum())
    return sums


def _synchronize(model) -> None:
    """Wait for the model's device (CUDA kernels run asynchronously), so a phase's time is its own."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def _autocast(model, t):
    """Mixed precision for the update's forward passes and output layer (`train.autocast_dtype`); the
    master weights and the optimizer stay in `train.dtype`, and the softmax is taken in float32."""
    if t.autocast_dtype == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=model.device.type, dtype=getattr(torch, t.autocast_dtype))


def _to_grid(values, like: torch.Tensor) -> torch.Tensor:
    """Each row's response-token values from column 0 of a grid shaped and typed as `like` [rows,
    width] (zeros after): float32 log-probabilities, float64 in a float64 run."""
    grid = torch.zeros(like.shape, dtype=like.dtype)
    for row, v in enumerate(values):
        v = torch.as_tensor(v, dtype=like.dtype)
        grid[row, : len(v)] = v
    return grid.to(like.device)
