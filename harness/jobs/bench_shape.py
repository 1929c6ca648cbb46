"""Benchmarks at a model SHAPE, for a GPU machine with no checkpoint and no suites' packages.

    harness bench matmul --profile shape-1.5b [--size 8192] [--repeats 5]
    harness bench rollout --shape --profile shape-1.5b [--n 16,512] [--samples 512] [--prompt-tokens 256]
                          [--max-new-tokens 32] [--repeats 3] [key=value ...]
    harness bench update --shape --profile shape-1.5b [--n A[,B]] [--prompts-per-step A[,B]] [--prompt-tokens 256]
                         [--max-new-tokens 32] [--repeats 3] [key=value ...]

Like `bench memory --shape` and `bench step --shape`, each builds a randomly initialised Qwen2 of the
profile's `bootstrap.model` (`bench.shape_model`) with a word-level tokenizer of exactly its
vocabulary (`bench_step.word_tokenizer`) and random prompts: compute and memory depend on the shape,
not on what the weights learnt. None builds a suite, so none needs reasoning-gym, math-verify,
datasets or lm-eval.

`matmul`: the device's measured matrix-product rate in a dtype (default: the profile's
`rollout.dtype` on `rollout.device`), the peak the other figures are a share of: the best of
`--repeats` timings of a batch of products of two size x size matrices, after a warm-up.

`rollout --shape`: `bench.bench_rollout` on that model, after a small untimed warm-up: the `hf` engine beside transformers' own
`generate(num_return_sequences=N)`, fixed-length responses (no stop token), prompts of exactly
`--prompt-tokens` random tokens, prompts per N = samples / N; the model in `rollout.dtype`, and decode
FLOP/s (`bench.decode_flops_per_token` x tokens/s) over the matrix-product peak measured here in the
same dtype on the same device.

`update --shape`: one policy update (the loss's forward and backward over every kept sequence,
micro-batched by `train.micro_batch_tokens`, `_accumulate_gradients`) per arm, per-sample (each row
recomputes its prompt, `bench.per_sample_forward`) vs shared-prompt (the trainer's), on random groups
of N responses of exactly `--max-new-tokens` tokens per prompt, advantages +1/-1; the median of
`--repeats` after one untimed round, the two alternating. Its model FLOPs (`update_flops`) over the
seconds and the peak give the update's MFU.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from harness.checkpoint import resolve_device
from harness.config import ConfigError, load_config
from harness.jobs.bench import bench_rollout, decode_flops_per_token, per_sample_forward, per_sample_micro_batches, shape_model
from harness.jobs.bench_step import ARMS, _arm_settings, _resized, per_arm, word_tokenizer
from trainers.grpo import SHARED_PROMPT, UpdateLayout, _accumulate_gradients, _logprobs
from trainers.shared_prompt import ScoredSequence, enable_gradient_checkpointing

MATMUL_SIZE = {"cuda": 8192, "cpu": 1024}
"""Matrix side of `bench matmul` per device type unless `--size` says otherwise: 8192 fills a
Hopper's tensor cores (about 1.1 TFLOP a product); 1024 keeps a CPU's measurement to a second."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> dict:
    """{device, dtype, size, flops}: the best rate (FLOP/s) of `repeats` timings, each of a batch of
    products of two size x size random matrices (batch: 10 on CUDA, so launch gaps do not count; 1 on
    a CPU), after a warm-up batch."""
    size = size or MATMUL_SIZE.get(device.type, 1024)
    if size < 1 or repeats < 1:
        raise ConfigError(f"invalid value for --size/--repeats: {size}/{repeats}; expected positive integers")
    batch = 10 if device.type == "cuda" else 1
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    out = torch.empty(size, size, device=device, dtype=dtype)
    best = 0.0
    for rep in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        for _ in range(batch):
            torch.matmul(a, b, out=out)
        _sync(device)
        if rep:  # the first batch warms up (kernel choice, clocks)
            best = max(best, batch * 2 * size**3 / (time.perf_counter() - start))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"device": str(device), "device_name": name, "dtype": str(dtype).removeprefix("torch."), "size": size,
            "repeats": repeats, "flops": best}


def bench_matmul(profile: str, overrides: list[str], size: int | None, repeats: int, log=print) -> dict:
    """`harness bench matmul`: {peak: matmul_peak's row} in the profile's rollout dtype on its rollout device."""
    cfg = load_config(profile, overrides)
    row = matmul_peak(resolve_device(cfg.rollout.device), getattr(torch, cfg.rollout.dtype), size, repeats)
    log(f"matrix product {row['size']} x {row['size']} in {row['dtype']} on {row['device_name']}: "
        f"{row['flops'] / 1e12:.3f} TFLOP/s (best of {repeats})")
    return {"peak": row}


def random_prompts(vocab_size: int, count: int, tokens: int, seed: int) -> list[str]:
    """`count` prompts of exactly `tokens` random words of `word_tokenizer(vocab_size)` (never its last, the pad)."""
    g = torch.Generator().manual_seed(seed)
    return [" ".join(f"t{i}" for i in torch.randint(vocab_size - 1, (tokens,), generator=g).tolist()) for _ in range(count)]


def bench_rollout_shape(profile: str, overrides: list[str], ns: list[int], samples: int, prompt_tokens: int,
                        max_new_tokens: int, repeats: int, log=print) -> dict:
    """`harness bench rollout --shape` (module docstring): {peak, rows} with bench_rollout's rows."""
    cfg = load_config(profile, overrides)
    if cfg.rollout.engine != "hf":
        raise ConfigError(f"invalid value for 'rollout.engine': {cfg.rollout.engine}; `bench rollout --shape` generates with "
                          "the hf engine (from a random in-process model, with no checkpoint to serve)")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    shape, device, dtype = cfg.bootstrap.model, resolve_device(cfg.rollout.device), getattr(torch, cfg.rollout.dtype)
    peak = matmul_peak(device, dtype)
    model = shape_model(shape, cfg.seed, device).to(device=device, dtype=dtype).eval()
    tokenizer = word_tokenizer(shape.vocab_size)
    prompts = random_prompts(shape.vocab_size, max(1, samples // min(ns)), prompt_tokens, cfg.seed)
    log(f"random Qwen2: hidden {shape.hidden_size}, {shape.num_hidden_layers} blocks, vocabulary {shape.vocab_size:,}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:,.1f}M parameters in {cfg.rollout.dtype} on {device}; "
        f"{samples} samples x exactly {max_new_tokens} new tokens per N, prompts of {prompt_tokens} random tokens, median of {repeats}")
    # untimed: the first generation pays one-time costs (CUDA kernels and their choice, allocator growth)
    bench_rollout(model, tokenizer, prompts[:1], [2], 2, 4, cfg.rollout, 1, log=lambda _: None, peak_flops=peak["flops"])
    rows = bench_rollout(model, tokenizer, prompts, ns, samples, max_new_tokens, cfg.rollout, repeats, log=log,
                         peak_flops=peak["flops"], peak_label=f"{peak['dtype']} ({device.type}, measured)")
    for r in rows:
        r["decode_flops_per_token"] = decode_flops_per_token(model)
    return {"peak": peak, "rows": rows}


# ----------------------------------------------------------------------------------------------
# update --shape


def update_flops(matmul_weights: int, seqs: list[ScoredSequence]) -> float:
    """Model FLOPs of one update over `seqs`: 6 per matrix weight (forward 2, backward 4) per token
    the update trains on, each group's prompt counted once and every response token once. Attention
    over the context and recomputation (gradient checkpointing) are left out, so an MFU from it is a
    floor of the work done, and the same for the per-sample computation (which does more)."""
    prompts = {s.group: s.prompt_len for s in seqs}
    tokens = sum(prompts.values()) + sum(len(s.ids) - s.prompt_len for s in seqs)
    return 6.0 * matmul_weights * tokens


def matmul_weights(model) -> int:
    """Weights that take part in matrix products per token: `decode_flops_per_token` / 2."""
    return int(decode_flops_per_token(model) / 2)


def random_groups(vocab_size: int, prompts: int, n: int, prompt_tokens: int, response_tokens: int,
                  seed: int) -> list[ScoredSequence]:
    """`prompts` groups of `n` sequences: a shared random prompt, random responses of exactly
    `response_tokens`, advantages alternating +1/-1, rollout logprobs -log(vocabulary)."""
    g = torch.Generator().manual_seed(seed)
    uniform = [-math.log(vocab_size)] * response_tokens
    seqs = []
    for group in range(prompts):
        prompt = torch.randint(vocab_size - 1, (prompt_tokens,), generator=g).tolist()
        for j in range(n):
            response = torch.randint(vocab_size - 1, (response_tokens,), generator=g).tolist()
            seqs.append(ScoredSequence(ids=prompt + response, prompt_len=prompt_tokens, group=group, rollout_logp=uniform,
                                       advantage=1.0 if (group + j) % 2 == 0 else -1.0))
    return seqs


def bench_update_shape(profile: str, overrides: list[str], n: list[int] | None, prompts: list[int] | None,
                       prompt_tokens: int, max_new_tokens: int, repeats: int, log=print) -> dict:
    """`harness bench update --shape` (module docstring): {peak, rows}, a row per arm of {recipe, n,
    prompts, samples, per_sample_s, shared_prompt_s, speedup, flops, mfu (shared-prompt), ...}."""
    for value, option in ((prompt_tokens, "--prompt-tokens"), (max_new_tokens, "--max-new-tokens"), (repeats, "--repeats")):
        if value < 1:
            raise ConfigError(f"invalid value for {option}: {value}; expected a positive integer")
    ns, ks = per_arm(n, "--n"), per_arm(prompts, "--prompts-per-step")
    cfg = load_config(profile, overrides)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    shape, t, device = cfg.bootstrap.model, cfg.train, resolve_device(cfg.rollout.device)
    peak = matmul_peak(device, getattr(torch, t.autocast_dtype or t.dtype))
    model = shape_model(shape, cfg.seed, device).to(device=device, dtype=getattr(torch, t.dtype)).train()
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    weights = matmul_weights(model)
    pad_id = shape.vocab_size - 1
    layouts = {"per-sample": UpdateLayout(micro_batches=per_sample_micro_batches, forward=per_sample_forward),
               "shared-prompt": SHARED_PROMPT}
    log(f"one policy update per arm at a shape, profile {cfg.profile}: random Qwen2, hidden {shape.hidden_size}, "
        f"{shape.num_hidden_layers} blocks, vocabulary {shape.vocab_size:,}, {t.dtype} weights, autocast {t.autocast_dtype}"
        f"{', gradient checkpointing' if t.gradient_checkpointing else ''}, on {device}; micro-batch budget "
        f"{t.micro_batch_tokens} tokens; prompts {prompt_tokens}, responses exactly {max_new_tokens} random tokens; "
        f"median of {repeats}; MFU: 6 x {weights / 1e6:,.1f}M matrix weights x trained tokens / s / the measured "
        f"{peak['dtype']} peak {peak['flops'] / 1e12:.3f} TFLOP/s")
    rows = []
    for i, recipe in enumerate(ARMS):
        arm = _resized(_arm_settings(load_config(profile, overrides, recipe=recipe)), ns[i], ks[i])
        seqs = random_groups(shape.vocab_size, arm.prompts_per_step, arm.n, prompt_tokens, max_new_tokens, cfg.seed)
        members = list(range(len(seqs)))
        with torch.no_grad():
            model.eval()
            old = _logprobs(model, seqs, t, pad_id)
            model.train()
        ref = old if t.kl_coef > 0 else None
        runs: dict[str, list[float]] = {name: [] for name in layouts}
        for rep in range(repeats + 1):  # the first round warms up and is not counted
            for name, layout in layouts.items():  # alternated, so drift hits both alike
                model.zero_grad(set_to_none=True)
                _sync(device)
                start = time.perf_counter()
                _accumulate_gradients(model, seqs, members, old, ref, t, pad_id, layout=layout)
                _sync(device)
                if rep:
                    runs[name].append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        seconds = {name: statistics.median(r) for name, r in runs.items()}
        flops = update_flops(weights, seqs)
        row = {"recipe": recipe, "n": arm.n, "prompts": arm.prompts_per_step, "samples": len(seqs),
               "prompt_tokens": prompt_tokens, "response_tokens": max_new_tokens, "repeats": repeats,
               "per_sample_s": seconds["per-sample"], "shared_prompt_s": seconds["shared-prompt"],
               "speedup": seconds["per-sample"] / seconds["shared-prompt"], "flops": flops,
               "mfu": flops / seconds["shared-prompt"] / peak["flops"], "layers": shape.num_hidden_layers,
               "device": str(device)}
        rows.append(row)
        log(f"{recipe:<6} N={arm.n:<4} prompts={arm.prompts_per_step:<3} samples={len(seqs):<5} per-sample "
            f"{row['per_sample_s']:.3f} s, shared-prompt {row['shared_prompt_s']:.3f} s, speed-up {row['speedup']:.2f}x; "
            f"{flops / 1e12:.2f} TFLOP, MFU {100 * row['mfu']:.1f}%")
    return {"peak": peak, "rows": rows}
