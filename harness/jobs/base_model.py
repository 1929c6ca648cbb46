"""Build the tiny base checkpoint: a plateaued step-scaling model, the tiny analogue of ProRLv2.

    harness bootstrap --profile tiny      # prints the checkpoint path last

The paper's arms continue from ProRLv2, a model whose step-scaling RL had stalled after ~3,000
steps; the claim is about what to do next. So the tiny base is built in two phases:

1. Supervised warm-up: draw training items from the profile's suites (train split only), train a
   byte-level BPE on them, build a Qwen2ForCausalLM, and train it on (prompt -> worked solution)
   pairs until validation pass@1 reaches `target_pass_at_1` or `max_steps`.
2. RL to a plateau: the step-scaling recipe (the profile's `train` section, N=16) until held-out
   validation pass@1 stops improving (`bootstrap.plateau`: `patience` checks without a gain of
   `min_delta`), detected as ProRL did, not a fixed step count. The curve is kept in
   bootstrap.json, and a second checkpoint from earlier on the curve (`early/`) gives the other
   baseline row (the paper reports its base at 2,000 and 3,000 steps).

The supervised-only model (end of phase 1, before any RL) is kept too (`sft/`): a starting point
with room to learn, for checking that a trainer raises its training reward at all (the base is
meant to be where step-scaling RL stalls).

Saved with `save_pretrained` (safetensors; plain transformers loads it) under the cache directory,
keyed by a hash of everything that shapes it, and reused next time. Deterministic from the seed on
a given machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness import provenance
from harness.checkpoint import CheckpointError, at_least_float32, check_checkpoint, render_prompts
from harness.config import Config
from harness.execution.bounded import shared_pool
from harness.jobs.evaluate import evaluate_suite
from harness.jobs.tiny_model import build_model, train_tokenizer
from harness.rollout import SamplingParams, make_engine
from harness.runs import EARLY, write_json_atomic
from harness.stats import stratified_paired_diff
from suites import build_suite
from trainers.registry import get_builder

BOOTSTRAP_VERSION = 5
"""Bump when the bootstrap procedure changes, so cached checkpoints built by older code are not reused.
5: procedural splits by canonical problem (suites/procedural.py), so the train split changed."""



SFT = "sft"
"""Subfolder with the supervised-only model (end of the warm-up, before RL)."""

INFO_FILE = "bootstrap.json"

RL_PHASE_SEED = 1_000_000
"""`train.seed` of the RL phase: its prompt order and sampling differ from every arm's (seeds 0..K-1)."""


def _suites_key(cfg: Config) -> dict:
    """The suites section as it shapes the base: a domain without training data keeps the keys it
    had before `train_data` existed, so the bases cached then stay valid; how many processes make
    the Reasoning Gym items is left out."""
    out = asdict(cfg.suites)
    out["reasoning_gym"].pop("workers", None)  # same items whatever the number of processes
    for name in ("math", "code"):
        if not out[name].get("train_data"):
            out[name].pop("train_data", None)
            out[name].pop("validation_items", None)
    return out


def _bootstrap_key(cfg: Config) -> dict:
    """The bootstrap section; the default stall rule keeps the keys it had before the rule existed,
    so the bases cached then stay valid."""
    out = asdict(cfg.bootstrap)
    if out["plateau"]["stall_rule"] == "mean":
        del out["plateau"]["stall_rule"]
    if out["dtype"] == "float32":  # likewise the default precision
        del out["dtype"]
    return out


def cache_key(cfg: Config) -> str:
    """Hash of everything that determines the checkpoint (not of run-time knobs like threads)."""
    shaping = {
        "version": BOOTSTRAP_VERSION,
        "seed": cfg.seed,
        "bootstrap": _bootstrap_key(cfg),
        "suites": _suites_key(cfg),
        # logit_chunk_tokens and gradient_checkpointing trade memory for compute, same numbers; the
        # probe (probe_every, probe_items) measures and changes no number of the training; loggers only
        # say where the metrics stream
        "train": {k: v for k, v in asdict(cfg.train).items()
                  if k not in ("trainer", "seed", "steps", "save_every", "rollout_scaling", "logit_chunk_tokens",
                               "gradient_checkpointing", "probe_every", "probe_items", "loggers")},
        "eval": {k: getattr(cfg.eval, k) for k in ("temperature", "top_p", "max_new_tokens")},
    }
    if cfg.rollout.dtype != "float32":  # the validation and RL rollouts' precision; float32 keeps the keys it had
        shaping["rollout_dtype"] = cfg.rollout.dtype
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_dir(cfg: Config) -> Path:
    return cfg.resolved_cache_dir() / "bootstrap" / f"{cfg.profile}-{cache_key(cfg)}"


def is_complete(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and (path / "config.json").is_file()


def bootstrap(cfg: Config, force: bool = False, progress: bool = True, log=print) -> Path:
    """Path of the profile's base checkpoint, building it first unless a cached one exists."""
    target = checkpoint_dir(cfg)
    if is_complete(target) and not force:
        log(f"reusing cached base checkpoint ({target / INFO_FILE} has its training record)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        info = _build(cfg, work, progress, log)
        write_json_atomic(work / INFO_FILE, info)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


NAMED = {"base": "", "base:early": EARLY, "base:sft": SFT}
"""Names for the bootstrap's checkpoints on the command line: the plateaued base, its earlier RL
point, and the supervised-only model."""


def base_checkpoint(cfg: Config, progress: bool = True, log=print) -> str:
    """Where both arms start: the profile's `base.checkpoint` (a hub id or folder, nothing built),
    else the tiny base `bootstrap` builds or reuses."""
    if cfg.base.checkpoint:
        check_checkpoint(cfg.base.checkpoint)
        return cfg.base.checkpoint
    return str(bootstrap(cfg, progress=progress, log=log))


def named_checkpoint(cfg: Config, name: str, progress: bool = True, log=print) -> Path | str:
    """The folder a name in NAMED stands for (the base is built first if missing); with a profile
    `base.checkpoint`, `base` is that checkpoint and the bootstrap's other names do not exist."""
    if cfg.base.checkpoint:
        if name != "base":
            raise CheckpointError(f"checkpoint '{name}': profile '{cfg.profile}' starts from {cfg.base.checkpoint}, "
                                  "not a bootstrapped base; valid here: base")
        return base_checkpoint(cfg)
    base = bootstrap(cfg, progress=progress, log=log)
    path = base / NAMED[name]  # Path / "" is the path itself
    if not (path / "config.json").is_file():
        raise CheckpointError(f"checkpoint '{name}': the base at {base} kept no {NAMED[name]}/ folder "
                         f"(an earlier RL point exists only when the RL phase ran checks); valid here: base")
    return path


def _build(cfg: Config, out: Path, progress: bool, log) -> dict:
    b = cfg.bootstrap
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    suites = [build_suite(name, cfg.suites, cfg.seed, cfg.resolved_cache_dir()) for name in cfg.suites.enabled]
    train_items = [it for s in suites for it in s.items("train", b.train_items_per_task * len(s.tasks))]
    corpus = [f"user\nassistant\n{it.prompt}\n{it.target}" for it in train_items]
    tokenizer = train_tokenizer(corpus, b.model.vocab_size)
    model = build_model(b.model, tokenizer, cfg.seed, b.dtype)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny Qwen2: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, "
        f"{len(train_items)} training items from {', '.join(s.name for s in suites)}")
    validation = Validation(cfg, model, tokenizer, suites)

    curve, stopped = _supervised(cfg, model, tokenizer, train_items, validation, started, progress, log)
    sft = curve[-1]
    log(f"supervised warm-up stopped at step {sft['step']} ({stopped}): validation pass@1 "
        f"{sft['val_pass_at_1']:.3f} after {sft['seconds']:.0f} s")
    if not 0.05 <= sft["val_pass_at_1"] <= 0.85:
        log(f"WARNING: validation pass@1 {sft['val_pass_at_1']:.3f} is outside 0.05-0.85; RL from this base "
            "has little room (too high) or little signal (too low); adjust the profile's bootstrap section")
    model.save_pretrained(out / SFT)
    tokenizer.save_pretrained(out / SFT)

    rl_curve, early, plateau = _rl_to_plateau(cfg, model, tokenizer, suites, validation, curve, started, progress, log)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if early is not None:
        step, state = early
        early_model = build_model(b.model, tokenizer, cfg.seed, b.dtype)
        early_model.load_state_dict(state)
        early_model.save_pretrained(out / EARLY)
        tokenizer.save_pretrained(out / EARLY)
    final = (rl_curve or curve)[-1]
    seconds = time.perf_counter() - started
    return {
        "profile": cfg.profile,
        "cache_key": cache_key(cfg),
        "bootstrap_version": BOOTSTRAP_VERSION,
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "train_items": len(train_items),
        "sft_steps": sft["step"],
        "sft_stopped": stopped,
        "rl_steps": rl_curve[-1]["rl_step"] if rl_curve else 0,
        "rl_stopped": plateau,
        "early_rl_step": early[0] if early is not None else None,
        "val_pass_at_1": final["val_pass_at_1"],
        "seconds": seconds,
        "curve": curve + rl_curve,
        "config": asdict(cfg),
        "provenance": provenance.collect(seed=cfg.seed),
    }


class Validation:
    """Validation pass@1 per suite on fixed validation items (never training or eval items)."""

    def __init__(self, cfg: Config, model, tokenizer, suites):
        self.model = model
        self.tokenizer = tokenizer
        self.engine = make_engine(cfg.rollout, model, tokenizer, seed=cfg.seed)
        self.pool = shared_pool(cfg.scoring.workers, cfg.scoring.timeout_s)
        self.sampling = SamplingParams(temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
                                       max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.seed + 17)
        self.suites = suites
        n = max(cfg.bootstrap.check_items, cfg.bootstrap.plateau.check_items)
        self.items = {s.name: s.items("validation", -(-n // len(suites))) for s in suites}

    def __call__(self, n_items: int, k: int) -> dict[str, float]:
        """Pass@1 of each suite on its first n_items / len(suites) items, and their mean as `all`."""
        share = -(-n_items // len(self.suites))
        self.engine.sync_weights(self.model)  # the model is being trained: the engine's copy (if any) follows it
        out = {}
        self.item_scores = {}
        for suite in self.suites:
            score = evaluate_suite(self.engine, self.tokenizer, suite, self.items[suite.name][:share], k,
                                   self.sampling, self.pool, progress=False)
            out[suite.name] = score.pass_at_1
            self.item_scores[suite.name] = score.item_scores
        out["all"] = sum(out.values()) / len(self.suites)
        return out


def _supervised(cfg: Config, model, tokenizer, train_items, validation: Validation, started: float,
                progress: bool, log) -> tuple[list[dict], str]:
    """Supervised warm-up until validation pass@1 reaches the target or max_steps."""
    b = cfg.bootstrap
    input_ids, attention, labels = _supervised_tensors(tokenizer, train_items)
    if input_ids.shape[1] > b.model.max_position_embeddings:
        raise ValueError(
            f"training sequences reach {input_ids.shape[1]} tokens but bootstrap.model.max_position_embeddings "
            f"is {b.model.max_position_embeddings}; raise it"
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=b.learning_rate, weight_decay=b.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / b.warmup_steps) if b.warmup_steps else 1.0
    )
    order_gen = torch.Generator().manual_seed(cfg.seed)
    curve: list[dict] = []
    order = torch.empty(0, dtype=torch.long)
    cursor = 0
    stopped = "max_steps"
    running_loss = 0.0
    bar = tqdm(total=b.max_steps, desc="bootstrap: supervised", unit="step", disable=not progress)
    model.train()
    for step in range(1, b.max_steps + 1):
        if cursor + b.batch_size > len(order):
            order = torch.randperm(len(input_ids), generator=order_gen)
            cursor = 0
        idx = order[cursor:cursor + b.batch_size]
        cursor += b.batch_size
        width = int(attention[idx].sum(1).max())
        loss = _supervised_loss(model, input_ids[idx, :width], attention[idx, :width], labels[idx, :width])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running_loss += loss.item()
        bar.update(1)
        if step % b.check_every == 0 or step == b.max_steps:
            val = validation(b.check_items, b.check_k)
            model.train()
            point = {
                "phase": "sft",
                "step": step,
                "loss": running_loss / (step - (curve[-1]["step"] if curve else 0)),
                "val_pass_at_1": val["all"],
                "val_per_suite": {k: v for k, v in val.items() if k != "all"},
                "seconds": time.perf_counter() - started,
            }
            running_loss = 0.0
            curve.append(point)
            line = f"sft step {step}: loss {point['loss']:.3f}, validation pass@1 {val['all']:.3f}, {point['seconds']:.0f} s"
            bar.write(line, file=sys.stderr) if progress else log(line)
            if val["all"] >= b.target_pass_at_1:
                stopped = "target"
                break
    bar.close()
    return curve, stopped


def _rl_to_plateau(cfg: Config, model, tokenizer, suites, validation: Validation, sft_curve: list[dict],
                   started: float, progress: bool, log):
    """Step-scaling RL (the profile's train section, trainer step_scaling) until validation stalls.

    Returns (curve, (early step, early weights) or None, why it stopped). A plateau is `patience`
    checks in a row that do not beat the best validation pass@1 so far by `min_delta`; the weights
    at every check are kept in memory (the tiny model is a few MB) so that the early baseline
    point can be chosen once the final step is known.
    """
    p = cfg.bootstrap.plateau
    if p.max_steps == 0:
        return [], None, "skipped"
    trainer = get_builder("step_scaling")(train=replace(cfg.train, trainer="step_scaling", seed=RL_PHASE_SEED), rollout=cfg.rollout,
                                          scoring=cfg.scoring, seed=cfg.seed, model=model, tokenizer=tokenizer, suites=suites)
    first = validation(p.check_items, p.check_k)
    stall = StallTest(p.stall_rule, p.min_delta, first, validation.item_scores)
    since_best = 0
    offset = sft_curve[-1]["step"]
    snapshots: dict[int, dict] = {0: _weights(model)}
    curve = [_rl_point(0, offset, first, None, started)]
    stopped = "max_steps"
    rewards: list[float] = []
    bar = tqdm(total=p.max_steps, desc="bootstrap: RL to plateau", unit="step", disable=not progress)
    for step in range(1, p.max_steps + 1):
        rewards.append(trainer.step()["reward_mean"])
        bar.update(1)
        if step % p.check_every and step != p.max_steps:
            continue
        val = validation(p.check_items, p.check_k)
        model.train()
        snapshots[step] = _weights(model)
        curve.append(_rl_point(step, offset, val, sum(rewards) / len(rewards), started))
        rewards = []
        progressed, gains = stall.check(val, validation.item_scores)
        curve[-1]["gain_vs_best"] = {name: {"gain": g, "paired_se": se} for name, (g, se) in gains.items()}
        noise = max(se for _, se in gains.values())
        line = (f"rl step {step}: validation pass@1 {val['all']:.3f} (best {stall.best_mean:.3f}; "
                f"largest paired SE of a gain {noise:.4f}, min_delta {p.min_delta}), {curve[-1]['seconds']:.0f} s")
        bar.write(line, file=sys.stderr) if progress else log(line)
        since_best = 0 if progressed else since_best + 1
        if since_best >= p.patience:
            stopped = "plateau"
            break
    bar.close()
    model.eval()
    final_step = curve[-1]["rl_step"]
    early_step = min(snapshots, key=lambda s: abs(s - p.early_fraction * final_step))
    log(f"RL phase stopped at step {final_step} ({stopped}): validation pass@1 {curve[-1]['val_pass_at_1']:.3f}; "
        f"early baseline point: step {early_step}")
    return curve, (early_step, snapshots[early_step]), stopped


class StallTest:
    """The plateau test's memory: the best check so far and its items' scores, per suite
    (`each_suite`) or for the mean (`mean`). A best moves only on progress (a gain above
    min_delta), so a slow creep is measured from the last progress, not from the last check."""

    def __init__(self, rule: str, min_delta: float, first: dict[str, float], item_scores: dict[str, dict[str, float]]):
        self.rule, self.min_delta = rule, min_delta
        self.mean = (first["all"], dict(item_scores))
        self.suites = {name: (first[name], item_scores[name]) for name in item_scores}
        self.best_mean = first["all"]
        """The best mean seen (for the log line)."""

    def check(self, val: dict[str, float], item_scores: dict[str, dict[str, float]]):
        """(progressed, {name: (gain over its best, paired SE of that gain)}) for one check, and
        the bests moved where it progressed. `mean`: one entry, `all`; `each_suite`: one per suite."""
        self.best_mean = max(self.best_mean, val["all"])
        if self.rule == "each_suite":
            gains = {name: (val[name] - best, _paired_se(items, item_scores[name]))
                     for name, (best, items) in self.suites.items()}
            for name, (gain, _) in gains.items():
                if gain > self.min_delta:
                    self.suites[name] = (val[name], item_scores[name])
            return any(gain > self.min_delta for gain, _ in gains.values()), gains
        best, items = self.mean
        ses = [_paired_se(items[name], item_scores[name]) for name in items]
        gains = {"all": (val["all"] - best, math.sqrt(sum(se * se for se in ses)) / len(ses))}
        progressed = val["all"] > best + self.min_delta
        if progressed:
            self.mean = (val["all"], dict(item_scores))
        return progressed, gains


def _paired_se(before: dict[str, float], now: dict[str, float]) -> float:
    """Standard error of a suite's gain between two checks on the same validation items (paired,
    stratified by task): the noise the plateau test's min_delta has to stand above."""
    paired = stratified_paired_diff(before, now)
    return paired[1] if paired else 0.0


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rl_point(rl_step: int, offset: int, val: dict, reward: float | None, started: float) -> dict:
    return {
        "phase": "rl",
        "step": offset + rl_step,
        "rl_step": rl_step,
        "reward_mean": reward,
        "val_pass_at_1": val["all"],
        "val_per_suite": {k: v for k, v in val.items() if k != "all"},
        "seconds": time.perf_counter() - started,
    }


def _supervised_loss(model, input_ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions (-100: not counted), computed as
    transformers' causal-LM loss computes it (the same numbers in float32) but in the model's
    precision when that is above float32: transformers casts the logits to float32, which would
    put float32 rounding back into a float64 base (bootstrap.dtype)."""
    logits = model(input_ids=input_ids, attention_mask=attention).logits
    logits = at_least_float32(logits)
    targets = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def _supervised_tensors(tokenizer, items):
    """Right-padded (input_ids, attention_mask, labels); labels cover the response only."""
    prompts = tokenizer(render_prompts(tokenizer, [it.prompt for it in items]), add_special_tokens=False)["input_ids"]
    targets = tokenizer([it.target for it in items], add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    width = max(len(p) + len(t) + 1 for p, t in zip(prompts, targets))
    ids_rows, mask_rows, label_rows = [], [], []
    for p, t in zip(prompts, targets):
        full = p + t + [eos]
        gap = width - len(full)
        ids_rows.append(full + [pad] * gap)
        mask_rows.append([1] * len(full) + [0] * gap)
        label_rows.append([-100] * len(p) + t + [eos] + [-100] * gap)
    return torch.tensor(ids_rows), torch.tensor(mask_rows), torch.tensor(label_rows)
