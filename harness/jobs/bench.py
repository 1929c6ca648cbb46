"""Benchmarks that print their figures (never timed assertions in tests).

    harness bench rollout --profile tiny [--checkpoint PATH] [--samples 2048] [--n 16,512]
    harness bench memory --profile tiny [key=value ...]
    harness bench memory --profile shape-1.5b --shape [--lengths 1024,2048,4096] [key=value ...]
    harness bench update --profile smoke [--repeats 3] [key=value ...]

(`rollout --shape`, `update --shape` and `matmul` live in harness/jobs/bench_shape.py, `step` in bench_step.py.)

`rollout`: generation throughput of the `hf` engine at several N for the same number of samples
(prompts = samples / N), next to plain `model.generate(num_return_sequences=N)`, which re-encodes
each prompt N times. Median of `--repeats` runs; prompts come from the profile's eval split.

`memory`: peak memory of one RL step of each arm (prorl: N=16, brorl: N=512) under the same
micro-batch token budget, each in a fresh process. On CPU: peak resident memory (ru_maxrss) and
its growth during the step; on CUDA: torch.cuda.max_memory_allocated. Goal: N=512 <= 1.2x N=16.

`memory --shape`: peak memory of one policy update (forward + backward of the loss) at the real
vocabulary, without building a base: a randomly initialised Qwen2 of the profile's
`bootstrap.model` shape (its vocab_size taken as the vocabulary; shape-1.5b: Qwen2-1.5B's width and
151,936 words, 2 blocks) on one synthetic sequence per response length, with the output layer
unchunked (`train.logit_chunk_tokens=0`) and chunked, side by side, each in a fresh process.

`update`: wall time of one policy update of each arm (prorl: N=16, brorl: N=512) on the same kept
groups from the same weights, computed per sample (each of the N rows recomputes its prompt: the
trainer's former update, kept here as the baseline) and with the trainer's shared-prompt forward
(each prompt once per micro-batch), and the speed-up.
"""

from __future__ import annotations

import copy
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch
import transformers

from harness.checkpoint import load_policy, render_prompt, render_prompts, resolve_device
from harness.config import ConfigError, RolloutConfig, TinyModelConfig, TrainConfig, load_config
from harness.jobs.base_model import base_checkpoint
from harness.rollout import SamplingParams, make_engine
from suites import SUITES, build_suite
from trainers.grpo import SHARED_PROMPT, UpdateLayout, _accumulate_gradients
from trainers.registry import get_builder
from trainers.shared_prompt import ScoredSequence, enable_gradient_checkpointing

FILLER = ("Read the whole question before you answer, check each step of the working, and keep the final answer "
          "short and exact. ")
"""Text put in front of a prompt to lengthen it (`--prompt-tokens`): a shared prefix of the kind a long
system instruction gives, neutral for the task."""


def lengthen(tokenizer, prompt: str, tokens: int) -> str:
    """`prompt` with FILLER's words (cycled) put in front, one word at a time, until the rendered
    prompt has at least `tokens` tokens (unchanged when it already has): it ends within a word's
    tokens of the target."""
    def length(text: str) -> int:
        return len(tokenizer(render_prompt(tokenizer, text), add_special_tokens=False)["input_ids"])

    words = FILLER.split()
    prefix: list[str] = []
    while length(" ".join(prefix + [prompt])) < tokens:
        prefix.append(words[len(prefix) % len(words)])
    return " ".join(prefix + [prompt])


def matmul_peak_flops(size: int = 1024, repeats: int = 5) -> float:
    """The machine's fp32 matrix-product rate (FLOP/s) with torch's current threads: the best of
    `repeats` products of two size x size matrices, after one warm-up."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def decode_flops_per_token(model) -> float:
    """Matrix-product FLOPs of one decoded token: 2 per weight of the blocks and the output layer
    (the input embedding is a lookup; attention over the cache is left out, so this is a floor)."""
    embed = model.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in model.parameters()) - embed
    if model.get_output_embeddings() is not None and model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        weights += embed  # tied: the output layer is a product with the embedding
    return 2.0 * weights


def bench_rollout(model, tokenizer, prompts: list[str], ns: list[int], samples: int, max_new_tokens: int,
                  rollout: RolloutConfig, repeats: int, engines: tuple[str, ...] = ("hf",), log=print,
                  prompt_tokens: list[int] | None = None, peak_flops: float | None = None,
                  peak_label: str = "fp32") -> list[dict]:
    """Rows of {engine, n, prompts, prompt_tokens, samples_per_s, tokens_per_s, matmul_fraction}
    (medians over repeats), every engine at every N and prompt length in one run, on fixed-length
    samples: no stop token, so each sample is exactly `max_new_tokens` long and the engines produce
    the same number of tokens. Beside `hf`, plain transformers `generate` as the baseline; an engine
    with a start-up cost (vLLM) prints it on its own line, outside the rates. `prompt_tokens`: the
    prompts lengthened to at least each of these (`lengthen`); None keeps them as they are.
    `matmul_fraction`: decode FLOP/s (`decode_flops_per_token` x tokens/s) over the machine's
    measured fp32 matrix-product rate, or over `peak_flops` when given (`bench rollout --shape`: the
    rate measured in the model's dtype on its device, named by `peak_label`). Ratios per prompt length
    are printed at the end."""
    peak = peak_flops or matmul_peak_flops()
    per_token = decode_flops_per_token(model)
    log(f"{peak_label} matrix-product peak {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads); "
        f"{per_token / 1e6:.2f} MFLOP per decoded token")
    lengths = prompt_tokens or [0]
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max(lengths) + max_new_tokens > limit:
        raise ConfigError(f"invalid value for --prompt-tokens: {max(lengths)}; with --max-new-tokens {max_new_tokens} it "
                          f"passes the model's {limit} positions (at most {limit - max_new_tokens})")
    rows = []
    for name in engines:
        start = time.perf_counter()
        engine = make_engine(replace(rollout, engine=name), model, tokenizer)
        startup_s = time.perf_counter() - start
        if name != "hf":
            log(f"{name + ' start-up':<24} {startup_s:.1f} s")
        for length in lengths:
            for n in ns:
                n_prompts = max(1, samples // n)
                texts = [prompts[i % len(prompts)] for i in range(n_prompts)]
                chosen = [render_prompt(tokenizer, lengthen(tokenizer, t, length) if length else t) for t in texts]
                mean_tokens = statistics.mean(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chosen)
                sampling = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=0, stop_token_ids=())
                runs = [engine.generate(chosen, n, sampling) for _ in range(repeats)]
                assert all(r.num_output_tokens == r.num_samples * max_new_tokens for r in runs), "samples must be fixed-length"
                found = [{
                    "engine": {"hf": "hf (prefix-shared)"}.get(name, name), "n": n, "prompts": n_prompts,
                    "prompt_tokens": mean_tokens,
                    "samples_per_s": statistics.median(r.samples_per_s for r in runs),
                    "tokens_per_s": statistics.median(r.tokens_per_s for r in runs),
                    "startup_s": startup_s,
                }]
                if name == "hf":
                    found.append({**_bench_generate(model, tokenizer, chosen, n, max_new_tokens, rollout.max_batch_sequences,
                                                    repeats), "prompt_tokens": mean_tokens})
                for row in found:
                    row["length"] = length
                    row["matmul_fraction"] = row["tokens_per_s"] * per_token / peak
                    rows.append(row)
                    log(_row(row))
        del engine
    for line in rollout_ratios(rows, ns):
        log(line)
    return rows


def rollout_ratios(rows: list[dict], ns: list[int]) -> list[str]:
    """The ratios the rollout goals are stated in, per prompt length: hf at the largest N over hf at
    the smallest, hf over each other engine at each N, and hf's share of the matrix-product peak."""
    out = []
    for length in sorted({r["length"] for r in rows}):
        rate = {(r["engine"], r["n"]): r for r in rows if r["length"] == length}
        hf = "hf (prefix-shared)"
        tokens = statistics.mean(r["prompt_tokens"] for r in rate.values())
        head = f"prompt ~{tokens:.0f} tokens:"
        if (hf, ns[0]) in rate and (hf, ns[-1]) in rate and len(ns) > 1:
            out.append(f"{head} hf N={ns[-1]} / N={ns[0]}: {rate[hf, ns[-1]]['samples_per_s'] / rate[hf, ns[0]]['samples_per_s']:.2f}x")
        for other in sorted({e for e, _ in rate} - {hf}):
            ratios = [f"N={n} {rate[hf, n]['samples_per_s'] / rate[other, n]['samples_per_s']:.2f}x"
                      for n in ns if (hf, n) in rate and (other, n) in rate]
            out.append(f"{head} hf / {other}: {', '.join(ratios)}")
        shares = [f"N={n} {100 * rate[hf, n]['matmul_fraction']:.0f}%" for n in ns if (hf, n) in rate]
        out.append(f"{head} hf decode FLOP/s / matrix-product peak: {', '.join(shares)}")
    return out


@torch.inference_mode()
def _bench_generate(model, tokenizer, prompts, n, max_new_tokens, max_batch_sequences, repeats) -> dict:
    """Plain transformers generate with num_return_sequences=n, batched to the same sequence budget."""
    per_call = max(1, max_batch_sequences // n)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generate needs left padding
    rates, token_rates = [], []
    for rep in range(repeats):
        torch.manual_seed(rep)
        start = time.perf_counter()
        produced = tokens = 0
        for i in range(0, len(prompts), per_call):
            batch = tokenizer(prompts[i:i + per_call], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(
                **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
                num_return_sequences=n, pad_token_id=tokenizer.pad_token_id, min_new_tokens=max_new_tokens,
            )
            new = out[:, batch["input_ids"].shape[1]:]
            produced += new.shape[0]
            tokens += int((new != tokenizer.pad_token_id).sum())
        elapsed = time.perf_counter() - start
        rates.append(produced / elapsed)
        token_rates.append(tokens / elapsed)
    tokenizer.padding_side = side
    return {"engine": "transformers generate", "n": n, "prompts": len(prompts),
            "samples_per_s": statistics.median(rates), "tokens_per_s": statistics.median(token_rates)}


def _row(r: dict) -> str:
    return (f"{r['engine']:<24} N={r['n']:<5} prompts={r['prompts']:<5} prompt~{r.get('prompt_tokens', 0):<5.0f} "
            f"{r['samples_per_s']:>9.1f} samples/s {r['tokens_per_s']:>10.1f} tokens/s")


def bench_memory(profile: str, overrides: list[str], log=print) -> list[dict]:
    """One training step per arm, each in its own process; rows of peak-memory figures."""
    rows = []
    for recipe in ("prorl", "brorl"):
        done = subprocess.run(
            [sys.executable, "-m", "harness.jobs.bench", "memory-child", profile, recipe, *overrides],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory benchmark of {recipe} failed: {done.stderr.strip().splitlines()[-1:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        log(f"{recipe:<6} N={r['n']:<4} prompts={r['prompts_per_step']:<4} samples/step={r['samples']:<6} "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (step added {r['step_rss_growth_mb']:.0f} MB)"
            + (f", CUDA peak {r['cuda_peak_mb']:.0f} MB" if r["cuda_peak_mb"] is not None else ""))
    key = "cuda_peak_mb" if rows[0]["cuda_peak_mb"] is not None else "peak_rss_mb"
    log(f"N=512 / N=16 peak ({key}): {rows[1][key] / rows[0][key]:.2f}x (goal <= 1.2x)")
    return rows


def load_base(cfg):
    """The profile's base for training, as `harness train` loads it: `base.checkpoint` at
    `base.revision` when the profile names one (nothing built), else the bootstrapped tiny base."""
    base = base_checkpoint(cfg, progress=False, log=lambda _: None)
    revision = cfg.base.revision if cfg.base.checkpoint else ""
    return load_policy(base, cfg.rollout.device, cfg.train.dtype, revision=revision)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _memory_child(profile: str, recipe: str, overrides: list[str]) -> None:
    transformers.utils.logging.disable_progress_bar()
    cfg = load_config(profile, overrides, recipe=recipe)
    model, tokenizer = load_base(cfg)
    trainer = get_builder(cfg.train.trainer)(train=cfg.train, rollout=cfg.rollout, scoring=cfg.scoring, seed=cfg.seed, model=model,
                                             tokenizer=tokenizer, suites=[build_suite(n, cfg.suites, cfg.seed) for n in SUITES])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb()
    row = trainer.step()
    print(json.dumps({
        "recipe": recipe,
        "n": trainer.arm.n,
        "prompts_per_step": trainer.arm.prompts_per_step,
        "samples": row["samples_generated"],
        "micro_batch_tokens": cfg.train.micro_batch_tokens,
        "peak_rss_mb": _rss_mb(),
        "step_rss_growth_mb": _rss_mb() - before,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }))


# ----------------------------------------------------------------------------------------------
# memory --shape: one policy update at the real vocabulary, chunked output layer against unchunked

SHAPE_LENGTHS = (1024, 2048, 4096)
"""Response lengths `harness bench memory --shape` measures unless `--lengths` says otherwise."""

SHAPE_PROMPT_TOKENS = 128
"""Prompt length of the synthetic sequence (its keys/values go through the shared-prompt cache)."""


def bench_update_memory(profile: str, overrides: list[str], lengths: list[int], log=print) -> list[dict]:
    """Peak memory of one policy update per response length, `train.logit_chunk_tokens=0` beside the
    profile's chunk size (1024 where the profile says 0), each measurement in its own process.

    The model is a randomly initialised Qwen2 of the profile's `bootstrap.model` shape, tied
    embeddings as the tiny base: nothing is bootstrapped (a base with a 151,936-word vocabulary
    cannot be, and the update's memory does not depend on what the weights learnt). One sequence
    per length: a prompt of SHAPE_PROMPT_TOKENS and a response of `length` random tokens, advantage
    1, synthetic old/reference/rollout logprobs (-log vocabulary), so no logprob pass runs: the
    measurement is the loss's forward and backward (`_accumulate_gradients`) in `train.dtype` under
    `train.autocast_dtype`, gradients included, optimizer step not (AdamW's state is the same two
    copies of the weights in every column). CPU: the peak resident set size of the update alone
    (the high-water mark is reset after the model is built); CUDA: torch.cuda.max_memory_allocated."""
    cfg = load_config(profile, overrides)
    chunked = cfg.train.logit_chunk_tokens or TrainConfig.logit_chunk_tokens
    rows: list[dict] = []
    for length in lengths:
        for chunk in (0, chunked):
            done = subprocess.run(
                [sys.executable, "-m", "harness.jobs.bench", "update-memory-child", profile, str(length), str(chunk),
                 *overrides], capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"memory benchmark at {length} response tokens, logit_chunk_tokens={chunk} failed: "
                                   f"{done.stderr.strip().splitlines()[-1:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if len(rows) == 2:
            r = rows[0]
            log(f"random Qwen2, hidden {r['hidden_size']}, {r['layers']} blocks, vocabulary {r['vocab_size']}, "
                f"{r['parameters'] / 1e6:.0f}M parameters ({r['dtype']}, autocast {r['autocast']}"
                f"{', gradient checkpointing' if r['gradient_checkpointing'] else ''}) on {r['device']}, "
                f"{r['threads']} threads; one sequence: {SHAPE_PROMPT_TOKENS} prompt + L response tokens")
            key = "CUDA peak allocated" if r["cuda_peak_mb"] is not None else "peak RSS"
            log(f"response tokens L; per column: {key} of the update (what it added to the weights before it), its time")
            log(f"{'L':>6} | {'logit_chunk_tokens=0':<36} | {f'logit_chunk_tokens={chunked}':<36}")
        log(f"{length:>6} | " + " | ".join(f"{_memory_cell(r):<36}" for r in rows[-2:]))
    return rows


def _memory_cell(r: dict) -> str:
    if r["cuda_peak_mb"] is not None:
        peak, before = r["cuda_peak_mb"], r["cuda_before_mb"]
    else:
        peak, before = r["peak_rss_mb"], r["rss_before_mb"]
    return f"{peak:>7,.0f} MB (+{peak - before:>6,.0f} MB) {r['seconds']:>6.1f} s"


def shape_model(shape: TinyModelConfig, seed: int, device: torch.device | str = "cpu"):
    """A randomly initialised Qwen2ForCausalLM of exactly `shape`, its vocab_size as the vocabulary
    (no tokenizer), tied embeddings as the tiny base (`harness.jobs.tiny_model.build_model`).
    `device`: where the weights are made and initialised (a GPU initialises 1.5B weights in a
    fraction of a second, a CPU in tens of seconds); the values differ between devices."""
    config = transformers.Qwen2Config(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        return transformers.Qwen2ForCausalLM(config)


def _peak_rss_mb() -> float:
    """The process's peak resident set size since start or the last `_reset_peak_rss`."""
    match = re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()) if sys.platform == "linux" else None
    return int(match.group(1)) / 1024 if match else _rss_mb()


def _current_rss_mb() -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", open("/proc/self/status").read()) if sys.platform == "linux" else None
    return int(match.group(1)) / 1024 if match else _rss_mb()


def _reset_peak_rss() -> bool:
    """Linux: the peak RSS restarts from the current RSS (`/proc/self/clear_refs`, value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _update_memory_child(profile: str, length: int, chunk: int, overrides: list[str]) -> None:
    cfg = load_config(profile, [*overrides, f"train.logit_chunk_tokens={chunk}"])
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    t = cfg.train
    device = resolve_device(cfg.rollout.device)
    model = shape_model(cfg.bootstrap.model, cfg.seed, device).to(device=device, dtype=getattr(torch, t.dtype)).train()
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    vocab = model.config.vocab_size
    pad_id = vocab - 1
    g = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(vocab - 1, (SHAPE_PROMPT_TOKENS + length,), generator=g).tolist()
    uniform = [-math.log(vocab)] * length
    seqs = [ScoredSequence(ids=ids, prompt_len=SHAPE_PROMPT_TOKENS, group=0, rollout_logp=uniform, advantage=1.0)]
    old = [torch.tensor(uniform)]
    ref = old if t.kl_coef > 0 else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before, reset = _current_rss_mb(), _reset_peak_rss()
    cuda_before = torch.cuda.memory_allocated() / 2**20 if cuda else None
    start = time.perf_counter()
    _accumulate_gradients(model, seqs, [0], old, ref, t, pad_id)
    if cuda:
        torch.cuda.synchronize()
    print(json.dumps({
        "response_tokens": length,
        "logit_chunk_tokens": chunk,
        "gradient_checkpointing": t.gradient_checkpointing,
        "hidden_size": model.config.hidden_size,
        "layers": model.config.num_hidden_layers,
        "vocab_size": vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": t.dtype,
        "autocast": t.autocast_dtype,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start,
        "rss_before_mb": before,
        "peak_rss_mb": _peak_rss_mb() if reset else _rss_mb(),
        "peak_rss_reset": reset,
        "cuda_before_mb": cuda_before,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }))


# ----------------------------------------------------------------------------------------------
# update: the per-sample computation (the baseline) against the shared-prompt one


def per_sample_micro_batches(seqs, members: list[int], budget: int) -> list[list[int]]:
    """The per-sample update's packing: consecutive members while rows x longest (prompt +
    response) stays within the token budget."""
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


def per_sample_forward(model, seqs, rows: list[int], pad_id: int):
    """The per-sample update's forward: every row is its own prompt + response, right-padded, so a
    group's prompt is recomputed for each of its N samples. Returns the same response-aligned
    (hidden, targets, mask) as the trainer's shared-prompt forward (the `UpdateLayout` contract): the
    body's final hidden states, row r's response token j predicted at [r, j]. (The pre-shared-prompt
    trainer also took log-softmax and entropy over the prompt positions; this baseline slices them
    off first, so the speed-up it shows is if anything low.)"""
    device = model.device
    full = max(len(seqs[i].ids) for i in rows)
    width = max(1, max(len(seqs[i].ids) - seqs[i].prompt_len for i in rows))
    ids = torch.full((len(rows), full), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), full), dtype=torch.long)
    where = torch.zeros((len(rows), width), dtype=torch.long)  # hidden[:, :-1] column predicting token j
    mask = torch.zeros((len(rows), width))
    for r, i in enumerate(rows):
        s = seqs[i]
        n = len(s.ids) - s.prompt_len
        ids[r, : len(s.ids)] = torch.tensor(s.ids)
        attn[r, : len(s.ids)] = 1
        where[r] = (torch.arange(width) + s.prompt_len - 1).clamp(max=full - 2)
        mask[r, :n] = 1.0
    ids, attn, where = ids.to(device), attn.to(device), where.to(device)
    hidden = model.base_model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state[:, :-1]
    hidden = hidden.gather(1, where.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    targets = ids[:, 1:].gather(1, where)
    return hidden, targets, mask.to(device)


def bench_update(profile: str, overrides: list[str], repeats: int, log=print) -> list[dict]:
    """Wall time of one policy update per arm (prorl: N=16, brorl: N=512), per-sample vs shared-prompt.

    Each arm's kept groups are sampled once by the rollout engine from the profile's base (rewards
    are a fixed 0/1 pattern with spread: the update's cost does not depend on their values), then
    every timed update starts from the same weights and a fresh optimizer. After one untimed round,
    the two computations alternate; each prints the median of `repeats`."""
    transformers.utils.logging.disable_progress_bar()
    per_sample = UpdateLayout(micro_batches=per_sample_micro_batches, forward=per_sample_forward)
    rows = []
    for recipe in ("prorl", "brorl"):
        cfg = load_config(profile, overrides, recipe=recipe)
        model, tokenizer = load_base(cfg)
        suites = [build_suite(name, cfg.suites, cfg.seed) for name in cfg.suites.enabled]
        trainer = get_builder(cfg.train.trainer)(train=cfg.train, rollout=cfg.rollout, scoring=cfg.scoring, seed=cfg.seed,
                                                 model=model, tokenizer=tokenizer, suites=suites)
        n, k = trainer.arm.n, trainer.arm.prompts_per_step
        batch = trainer._next_prompts(k)
        sampling = SamplingParams(temperature=cfg.train.temperature, top_p=cfg.train.top_p,
                                  max_new_tokens=cfg.train.max_new_tokens, seed=cfg.seed)
        result = trainer.engine.generate(render_prompts(tokenizer, [it.prompt for _, it in batch]), n, sampling)
        rewards = (torch.arange(n) % 2).float()
        kept = [(g.prompt_ids, g.samples, rewards.roll(j)) for j, g in enumerate(result.groups)]
        weights = copy.deepcopy(trainer.policy.state_dict())
        layouts = {"per-sample": per_sample, "shared-prompt": SHARED_PROMPT}
        runs: dict[str, list[float]] = {name: [] for name in layouts}
        for rep in range(repeats + 1):  # the first round warms up and is not counted
            for name, layout in layouts.items():  # alternated, so load drift hits both alike
                trainer.policy.load_state_dict(weights)
                trainer.optimizer = trainer._new_optimizer()
                trainer.scheduler = trainer._new_scheduler()
                start = time.perf_counter()
                trainer._update(kept, layout=layout)
                if rep:
                    runs[name].append(time.perf_counter() - start)
        timings = {name: statistics.median(r) for name, r in runs.items()}
        prompt_tokens = statistics.mean(len(g.prompt_ids) for g in result.groups)
        response_tokens = result.num_output_tokens / result.num_samples
        rows.append({"recipe": recipe, "n": n, "prompts": k, "samples": result.num_samples,
                     "mean_prompt_tokens": prompt_tokens, "mean_response_tokens": response_tokens,
                     "per_sample_s": timings["per-sample"], "shared_prompt_s": timings["shared-prompt"],
                     "speedup": timings["per-sample"] / timings["shared-prompt"]})
        r = rows[-1]
        log(f"{recipe:<6} N={n:<4} prompts={k:<3} samples={r['samples']:<5} prompt {prompt_tokens:.0f} / "
            f"response {response_tokens:.1f} tokens: per-sample {r['per_sample_s']:.2f} s, "
            f"shared-prompt {r['shared_prompt_s']:.2f} s, speed-up {r['speedup']:.2f}x")
    return rows


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "memory-child":
    _memory_child(sys.argv[2], sys.argv[3], sys.argv[4:])
if __name__ == "__main__" and len(sys.argv) >= 5 and sys.argv[1] == "update-memory-child":
    _update_memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
