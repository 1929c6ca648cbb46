"""Build the tiny base checkpoint: tokenizer, Qwen2 model, supervised warm-up to an unsaturated pass rate.

    harness bootstrap --profile tiny      # prints the checkpoint path last

Steps: draw training items from the profile's suites (train split only), train a byte-level BPE on
them, build a Qwen2ForCausalLM, then supervised-train it on (prompt -> correct answer) pairs,
checking pass@1 on a validation split every `check_every` steps. It stops as soon as validation
pass@1 reaches `target_pass_at_1` (RL needs a base that is right sometimes, not always), or at
`max_steps`. The result is saved with `save_pretrained` (safetensors; plain transformers loads it)
under the cache directory, keyed by a hash of everything that shapes it, and reused next time.
Deterministic from the seed on a given machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness import provenance
from harness.checkpoint import render_prompts
from harness.config import Config
from harness.evaluate import evaluate_suite
from harness.files import write_json_atomic
from harness.rollout import SamplingParams, make_engine
from harness.tiny_model import build_model, train_tokenizer
from suites import build_suite
from suites.bounded import shared_pool

BOOTSTRAP_VERSION = 1
"""Bump when the bootstrap procedure changes, so cached checkpoints built by older code are not reused."""

SUITE = "reasoning_gym"
"""Suites whose training items the base is warmed up on."""

INFO_FILE = "bootstrap.json"


def cache_key(cfg: Config) -> str:
    """Hash of everything that determines the checkpoint (not of run-time knobs like threads)."""
    shaping = {
        "version": BOOTSTRAP_VERSION,
        "seed": cfg.seed,
        "bootstrap": asdict(cfg.bootstrap),
        "suite": asdict(cfg.suites.reasoning_gym),
        "eval": {k: getattr(cfg.eval, k) for k in ("temperature", "top_p", "max_new_tokens")},
    }
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


def _build(cfg: Config, out: Path, progress: bool, log) -> dict:
    b = cfg.bootstrap
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    suite = build_suite(SUITE, cfg)
    n_tasks = len(cfg.suites.reasoning_gym.tasks)
    train_items = suite.items("train", b.train_items_per_task * n_tasks)
    val_items = suite.items("validation", b.check_items)

    corpus = [f"user\nassistant\n{it.prompt}\n{it.target}" for it in train_items]
    tokenizer = train_tokenizer(corpus, b.model.vocab_size)
    model = build_model(b.model, tokenizer, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny Qwen2: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, "
        f"{len(train_items)} training items from {n_tasks} task(s)")

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
    engine = make_engine(cfg.rollout.engine, model, tokenizer, cfg.rollout.max_batch_sequences)
    sampling = SamplingParams(
        temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
        max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.seed + 17,
    )

    pool = shared_pool(cfg.scoring.workers, cfg.scoring.timeout_s)
    curve: list[dict] = []
    order = torch.empty(0, dtype=torch.long)
    cursor = 0
    stopped = "max_steps"
    running_loss = 0.0
    bar = tqdm(total=b.max_steps, desc="bootstrap", unit="step", disable=not progress)
    model.train()
    for step in range(1, b.max_steps + 1):
        if cursor + b.batch_size > len(order):
            order = torch.randperm(len(input_ids), generator=order_gen)
            cursor = 0
        idx = order[cursor:cursor + b.batch_size]
        cursor += b.batch_size
        width = int(attention[idx].sum(1).max())
        loss = model(
            input_ids=input_ids[idx, :width], attention_mask=attention[idx, :width], labels=labels[idx, :width]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running_loss += loss.item()
        bar.update(1)
        if step % b.check_every == 0 or step == b.max_steps:
            val = evaluate_suite(engine, tokenizer, suite, val_items, b.check_k, sampling, pool, progress=False)
            model.train()
            point = {
                "step": step,
                "loss": running_loss / (step - (curve[-1]["step"] if curve else 0)),
                "val_pass_at_1": val.pass_at_1,
                "seconds": time.perf_counter() - started,
            }
            running_loss = 0.0
            curve.append(point)
            line = f"step {step}: loss {point['loss']:.3f}, validation pass@1 {val.pass_at_1:.3f}, {point['seconds']:.0f} s"
            bar.write(line, file=sys.stderr) if progress else log(line)
            if val.pass_at_1 >= b.target_pass_at_1:
                stopped = "target"
                break
    bar.close()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    final = curve[-1]
    seconds = time.perf_counter() - started
    log(f"supervised warm-up stopped at step {final['step']} ({stopped}): validation pass@1 "
        f"{final['val_pass_at_1']:.3f} after {seconds:.0f} s")
    if not 0.15 <= final["val_pass_at_1"] <= 0.85:
        log(f"WARNING: validation pass@1 {final['val_pass_at_1']:.3f} is outside 0.15-0.85; RL from this base "
            "has little room (too high) or little signal (too low); adjust the profile's bootstrap section")
    return {
        "profile": cfg.profile,
        "cache_key": cache_key(cfg),
        "bootstrap_version": BOOTSTRAP_VERSION,
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "train_items": len(train_items),
        "steps": final["step"],
        "stopped": stopped,
        "val_pass_at_1": final["val_pass_at_1"],
        "seconds": seconds,
        "curve": curve,
        "config": asdict(cfg),
        "provenance": provenance.collect(seed=cfg.seed),
    }


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
