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

Left out for now: the prompt is recomputed per sample in the update (shared-prompt updates are a
later issue); one PPO epoch per step.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from harness.checkpoint import render_prompts
from harness.config import Config
from harness.rollout import SamplingParams, make_engine
from suites.base import Item, Suite, suite_timeout
from suites.bounded import shared_pool
from trainers.core import (
    group_advantages,
    kl_penalty,
    masked_token_mean,
    ppo_clip_objective,
    token_entropy,
    truncated_is_weights,
    zero_spread_groups,
)


@dataclass(frozen=True)
class ArmSettings:
    """What distinguishes one arm from the other; everything else comes from `config.train`."""

    n: int
    """Rollouts per prompt."""
    prompts_per_step: int
    """Prompt groups kept per step."""
    learning_rate: float
    """AdamW learning rate."""
    lr_rule: str
    """How the learning rate was derived (for the report)."""


@dataclass
class _Sequence:
    ids: list[int]
    prompt_len: int
    rollout_logp: list[float]
    advantage: float


class GRPOTrainer:
    """Shared RL step; `step_scaling` and `rollout_scaling` build it with their own `ArmSettings`."""

    def __init__(self, name: str, config: Config, arm: ArmSettings, model, tokenizer, suites: list[Suite]):
        self.name = name
        self.config = config
        self.train_cfg = config.train
        self.arm = arm
        self.policy = model
        self.tokenizer = tokenizer
        self.policy.train()
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.engine = make_engine(config.rollout.engine, model, tokenizer, config.rollout.max_batch_sequences)
        self.scorer_pool = shared_pool(config.scoring.workers, config.scoring.timeout_s)
        self.optimizer = self._new_optimizer()
        self.scheduler = self._new_scheduler()
        self.pool: list[tuple[Suite, Item]] = []
        for suite in suites:
            self.pool.extend((suite, it) for it in suite.items("train", self.train_cfg.prompt_pool))
        if not self.pool:
            raise ValueError("no training prompts: the profile's suites gave an empty train split")
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
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
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
        while len(kept_groups) < self.arm.prompts_per_step and rounds < t.max_gen_rounds:
            rounds += 1
            batch = self._next_prompts(self.arm.prompts_per_step)
            sampling = SamplingParams(
                temperature=t.temperature, top_p=t.top_p, max_new_tokens=t.max_new_tokens,
                seed=(self.config.seed * 1_000_003 + self.step_count) * 101 + rounds,
            )
            result = self.engine.generate(render_prompts(self.tokenizer, [it.prompt for _, it in batch]), self.arm.n, sampling)
            gen_s += result.generation_s
            generated += result.num_samples
            groups_generated += len(result.groups)
            response_tokens += result.num_output_tokens
            scored = self._score(batch, result.groups)
            for r in scored:
                if r.status == "timeout" or r.status.startswith("error"):
                    score_failures += 1
            rewards = torch.tensor([r.reward for r in scored], dtype=torch.float32).view(len(batch), self.arm.n)
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
        }
        train_start = time.perf_counter()
        if kept_groups:
            metrics.update(self._update(kept_groups))
        else:
            metrics.update({"loss": None, "clip_frac": None, "kl": None, "entropy": None, "train_tokens": 0})
        train_s = time.perf_counter() - train_start
        metrics["train_s"] = train_s
        metrics["train_tokens_per_s"] = metrics.pop("train_tokens") / train_s if train_s > 0 else 0.0
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        if t.ref_reset_every and self.step_count % t.ref_reset_every == 0:
            self.reference.load_state_dict(self.policy.state_dict())
            if t.reset_optimizer_with_ref:
                self.optimizer = self._new_optimizer()
                self.scheduler = self._new_scheduler()
            metrics["ref_reset"] = True
        metrics["step_s"] = time.perf_counter() - start
        return metrics

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
            results = self.scorer_pool.map(suite.scorer, [args for _, args in calls], suite_timeout(suite))
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

    def _update(self, kept_groups) -> dict[str, Any]:
        t = self.train_cfg
        advantages = group_advantages(torch.stack([r for _, _, r in kept_groups]))
        seqs = [
            _Sequence(ids=list(prompt_ids) + s.token_ids, prompt_len=len(prompt_ids), rollout_logp=s.logprobs,
                      advantage=float(advantages[g, j]))
            for g, (prompt_ids, samples, _) in enumerate(kept_groups)
            for j, s in enumerate(samples)
        ]
        self.policy.eval()  # no dropout in these models; eval keeps logprob passes deterministic
        with torch.no_grad():
            old_logp = self._logprobs(self.policy, seqs)
            ref_logp = self._logprobs(self.reference, seqs) if t.kl_coef > 0 else None
        self.policy.train()
        g = torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.step_count) * 7 + 3)
        order = torch.randperm(len(seqs), generator=g).tolist()
        n_mb = min(t.mini_batches, len(seqs))
        bounds = [round(i * len(seqs) / n_mb) for i in range(n_mb + 1)]
        totals = {"loss": 0.0, "clip": 0.0, "kl": 0.0, "entropy": 0.0, "tokens": 0}
        for b in range(n_mb):
            members = order[bounds[b]:bounds[b + 1]]
            mb_tokens = sum(len(seqs[i].ids) - seqs[i].prompt_len for i in members)
            self.optimizer.zero_grad(set_to_none=True)
            mb_loss = 0.0
            for micro in self._micro_batches(seqs, members):
                ids, mask, attn = self._pad([seqs[i] for i in micro])
                logits = self.policy(input_ids=ids, attention_mask=attn).logits[:, :-1].float() / t.temperature
                logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                starts = [seqs[i].prompt_len - 1 for i in micro]
                old = _to_grid([old_logp[i] for i in micro], starts, logp.shape, logp.device)
                adv = torch.tensor([seqs[i].advantage for i in micro]).unsqueeze(-1).expand_as(logp)
                pg, clipped = ppo_clip_objective(logp, old, adv, t.eps_low, t.eps_high)
                if t.tis:
                    rollout = _to_grid([seqs[i].rollout_logp for i in micro], starts, logp.shape, logp.device)
                    weight, _ = truncated_is_weights(old, rollout, t.tis_low, t.tis_high)
                    pg = pg * weight
                per_token = pg
                kl = torch.zeros_like(logp)
                if ref_logp is not None:
                    ref = _to_grid([ref_logp[i] for i in micro], starts, logp.shape, logp.device)
                    kl = kl_penalty(logp, ref, t.kl_estimator)
                    per_token = per_token + t.kl_coef * kl
                loss = masked_token_mean(per_token, mask, num_tokens=mb_tokens)
                loss.backward()
                with torch.no_grad():
                    mb_loss += float(loss)
                    totals["clip"] += float((clipped * mask).sum())
                    totals["kl"] += float((kl * mask).sum())
                    totals["entropy"] += float((token_entropy(logits) * mask).sum())
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), t.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            totals["loss"] += mb_loss
            totals["tokens"] += mb_tokens
        self.optimizer.zero_grad(set_to_none=True)
        tokens = max(1, totals["tokens"])
        return {
            "loss": totals["loss"] / n_mb,
            "clip_frac": totals["clip"] / tokens,
            "kl": totals["kl"] / tokens,
            "entropy": totals["entropy"] / tokens,
            "train_tokens": sum(len(s.ids) for s in seqs),
        }

    def _micro_batches(self, seqs: list[_Sequence], members: list[int]) -> list[list[int]]:
        """Consecutive members packed while (rows x longest row) stays within the token budget."""
        budget = self.train_cfg.micro_batch_tokens
        out: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in members:
            length = len(seqs[i].ids)
            if current and (len(current) + 1) * max(longest, length) > budget:
                out.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, length)
        if current:
            out.append(current)
        return out

    def _pad(self, rows: list[_Sequence]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids, response mask aligned with next-token targets, attention mask."""
        width = max(len(r.ids) for r in rows)
        device = self.policy.device
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width - 1))
        for k, r in enumerate(rows):
            ids[k, : len(r.ids)] = torch.tensor(r.ids)
            attn[k, : len(r.ids)] = 1
            mask[k, r.prompt_len - 1: len(r.ids) - 1] = 1.0
        return ids.to(device), mask.to(device), attn.to(device)

    def _logprobs(self, model, seqs: list[_Sequence]) -> list[torch.Tensor]:
        """Per-sequence response-token logprobs (temperature-scaled), computed in micro-batches."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(seqs)
        for micro in self._micro_batches(seqs, list(range(len(seqs)))):
            ids, _, attn = self._pad([seqs[i] for i in micro])
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float() / self.train_cfg.temperature
            logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(micro):
                s = seqs[i]
                out[i] = logp[row, s.prompt_len - 1: len(s.ids) - 1].detach().cpu()
        return out

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


def _to_grid(values, starts: list[int], shape, device) -> torch.Tensor:
    """Place each row's response-token values at its response positions of a [rows, width] grid."""
    grid = torch.zeros(shape)
    for row, (v, start) in enumerate(zip(values, starts)):
        v = torch.as_tensor(v, dtype=torch.float32)
        grid[row, start: start + len(v)] = v
    return grid.to(device)
