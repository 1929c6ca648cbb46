"""Benchmarks that print their figures (never timed assertions in tests).

    harness bench rollout --profile tiny [--checkpoint PATH] [--samples 2048] [--n 16,512]

`rollout`: generation throughput of the `hf` engine at several N for the same number of samples
(prompts = samples / N), next to plain `model.generate(num_return_sequences=N)`, which re-encodes
each prompt N times. Median of `--repeats` runs; prompts come from the profile's eval split.
"""

from __future__ import annotations

import statistics
import time

import torch

from harness.checkpoint import render_prompt
from harness.rollout import SamplingParams, make_engine


def bench_rollout(model, tokenizer, prompts: list[str], ns: list[int], samples: int, max_new_tokens: int,
                  max_batch_sequences: int, repeats: int, log=print) -> list[dict]:
    """Rows of {engine, n, prompts, samples_per_s, tokens_per_s} (medians over repeats)."""
    rows = []
    engine = make_engine("hf", model, tokenizer, max_batch_sequences=max_batch_sequences)
    for n in ns:
        n_prompts = max(1, samples // n)
        chosen = [render_prompt(tokenizer, prompts[i % len(prompts)]) for i in range(n_prompts)]
        sampling = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
        runs = [engine.generate(chosen, n, sampling) for _ in range(repeats)]
        rows.append({
            "engine": "hf (prefix-shared)", "n": n, "prompts": n_prompts,
            "samples_per_s": statistics.median(r.samples_per_s for r in runs),
            "tokens_per_s": statistics.median(r.tokens_per_s for r in runs),
        })
        log(_row(rows[-1]))
        rows.append(_bench_generate(model, tokenizer, chosen, n, max_new_tokens, max_batch_sequences, repeats))
        log(_row(rows[-1]))
    return rows


@torch.inference_mode()
def _bench_generate(model, tokenizer, prompts, n, max_new_tokens, max_batch_sequences, repeats) -> dict:
    """Plain transformers generate with num_return_sequences=n, batched to the same sequence budget."""
    per_call = max(1, max_batch_sequences // n)
    tokenizer.padding_side = "left"
    rates, token_rates = [], []
    for rep in range(repeats):
        torch.manual_seed(rep)
        start = time.perf_counter()
        produced = tokens = 0
        for i in range(0, len(prompts), per_call):
            batch = tokenizer(prompts[i:i + per_call], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(
                **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
                num_return_sequences=n, pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, batch["input_ids"].shape[1]:]
            produced += new.shape[0]
            tokens += int((new != tokenizer.pad_token_id).sum())
        elapsed = time.perf_counter() - start
        rates.append(produced / elapsed)
        token_rates.append(tokens / elapsed)
    return {"engine": "transformers generate", "n": n, "prompts": len(prompts),
            "samples_per_s": statistics.median(rates), "tokens_per_s": statistics.median(token_rates)}


def _row(r: dict) -> str:
    return f"{r['engine']:<24} N={r['n']:<5} prompts={r['prompts']:<5} {r['samples_per_s']:>9.1f} samples/s {r['tokens_per_s']:>10.1f} tokens/s"
