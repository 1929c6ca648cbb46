"""`harness bench step`: one RL step of each arm (prorl: N=16, brorl: N=512), phase by phase.

    harness bench step --profile tiny [--repeats 3] [--n A[,B]] [--prompts-per-step A[,B]] [key=value ...]
    harness bench step --shape --profile shape-1.5b [--prompt-tokens 256] [--max-new-tokens 32] [--repeats 1]
                       [--n A[,B]] [--prompts-per-step A[,B]] [key=value ...]

`--n` and `--prompts-per-step` resize the arms (one value for both, or prorl,brorl); by default each
arm keeps its recipe's values (the `step_scaling` and `rollout_scaling` trainers' own settings).

`step` (`bench_step`): real RL steps, `trainer.step()` of the arm's trainer as `harness train`
builds it, from the profile's base (or `--checkpoint`), scoring included. Phases, from the step's
own metrics (trainers/grpo.py): weight sync, generate, score, old-policy logprob pass,
reference logprob pass, update (every mini-batch's loss forward/backward and optimizer step), and
`other` (prompt drawing, advantages, what lies between the phases), so the shares sum to 1 of the
step. One untimed warm-up step per arm first (one-time costs: the scorer pool's workers, the
sandbox, lazy imports, allocator growth), then `--repeats` steps; the row is the median step (by
step seconds), so its phases are one step's and add up. Dynamic sampling is on: a step that draws
a second round of prompts generates and scores more than N x prompts samples (the row says how
many). The goal it checks: scoring at most 15% of a prorl step.

`step --shape` (`bench_step_shape`): the compute and memory of one RL step at a model SHAPE, for a
machine with no checkpoint at hand (a GPU that cannot download the 1.5B model). It measures compute
and memory, not learning: the policy is a randomly initialised Qwen2 of the profile's
`bootstrap.model` (`bench.shape_model`), its vocabulary a word-level tokenizer of exactly
`vocab_size` words `t0 .. t{V-1}` (`word_tokenizer`), the prompts `--prompt-tokens` random ids,
every response exactly `--max-new-tokens` long (no stop token), scoring skipped (rewards of random
weights mean nothing), advantages a fixed +1/-1 pattern with spread, every group kept. The step
is the trainer's, piece by piece: the `hf` engine (`make_engine` with the profile's `rollout`
section) generates, the engine takes the weights (`sync_weights`), the pre-update and reference
logprob passes (`_logprobs`, the reference only when `kl_coef` > 0), then `mini_batches` times the
loss's forward/backward (`_accumulate_gradients`, micro-batched by `micro_batch_tokens`) and the
optimizer step (gradient clipping + AdamW with the arm's learning rate and `weight_decay`, as the
trainer builds it). It is not `trainer.step()` because a trainer needs suites with training prompts
and scorers, and because each phase's peak memory needs a reset between phases, inside the update.
Each phase reports its seconds and its peak memory (CUDA: torch.cuda.max_memory_allocated, reset at
the start of each phase; CPU: the peak resident set size, reset the same way through
/proc/self/clear_refs); the update and optimizer phases sum their seconds and take the largest peak
over the mini-batches. Each arm runs in its own process, so one arm's memory does not sit under the
other's peaks. Before the timed steps, one small untimed step (1 prompt, 2 samples, 4 tokens) pays
the one-time costs (CUDA context and kernels, AdamW's state), so they are not in the timed steps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from harness.checkpoint import load_policy, resolve_device
from harness.config import ConfigError, load_config
from harness.jobs.bench import _current_rss_mb, _peak_rss_mb, _reset_peak_rss, _rss_mb, load_base, shape_model
from harness.rollout import SamplingParams, make_engine
from suites import build_suite
from trainers.grpo import _accumulate_gradients, _logprobs
from trainers.registry import arm_settings, get_builder
from trainers.shared_prompt import ScoredSequence, enable_gradient_checkpointing

ARMS = ("prorl", "brorl")
"""The two recipes, in the order they run and print."""

STEP_PHASES = ("weight_sync", "generate", "score", "old_logprob", "ref_logprob", "update", "other")
"""Phases of a real step (`bench_step`); `other` is the step's time outside the named ones."""

_METRIC_OF = {"weight_sync": "weight_sync_s", "generate": "gen_s", "score": "score_s", "old_logprob": "old_logprob_s",
              "ref_logprob": "ref_logprob_s", "update": "update_s"}

SHAPE_PHASES = ("weight_sync", "generate", "old_logprob", "ref_logprob", "update", "optimizer")
"""Phases of a step at a shape (`bench_step_shape`): no scoring; the update's optimizer steps apart."""

_LABEL = {"weight_sync": "sync", "generate": "generate", "score": "score", "old_logprob": "old logp",
          "ref_logprob": "ref logp", "update": "update", "optimizer": "optimizer", "other": "other"}

SCORE_SHARE_GOAL = 0.15
"""Scoring's share of a prorl step that the step benchmark checks against."""

PROMPT_TOKENS = 256
"""Prompt length of `step --shape` unless `--prompt-tokens` says otherwise."""

def per_arm(values: list[int] | None, option: str) -> tuple[int | None, int | None]:
    """(prorl's, brorl's) value of a per-arm option: none given (each arm's own), one (both), or two."""
    if not values:
        return None, None
    if len(values) > 2 or min(values) < 1:
        raise ConfigError(f"invalid value for {option}: {','.join(map(str, values))}; expected one positive integer "
                          "for both arms or two (prorl,brorl)")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _arm_settings(cfg):
    """The arm's settings as its (built-in) trainer derives them from the `train` section."""
    return arm_settings(cfg.train, "`bench step --shape`")


def _resized(arm, n: int | None, prompts: int | None):
    return replace(arm, n=n or arm.n, prompts_per_step=prompts or arm.prompts_per_step)


# ----------------------------------------------------------------------------------------------
# step: real trainer steps from the profile's base


def bench_step(profile: str, overrides: list[str], repeats: int = 3, n: list[int] | None = None,
               prompts: list[int] | None = None, base: str | None = None, log=print) -> list[dict]:
    """One real RL step per arm, phase by phase (module docstring); rows of {recipe, n, prompts,
    samples, gen_rounds, kept_groups, step_s, samples_per_s, seconds: {phase: s}, shares: {phase:
    fraction of step_s}}. `base`: a checkpoint to start from instead of the profile's base."""
    if repeats < 1:
        raise ConfigError(f"invalid value for --repeats: {repeats}; expected a positive integer")
    transformers.utils.logging.disable_progress_bar()
    ns, ks = per_arm(n, "--n"), per_arm(prompts, "--prompts-per-step")
    rows: list[dict] = []
    log(_step_header())
    for i, recipe in enumerate(ARMS):
        cfg = load_config(profile, overrides, recipe=recipe)
        model, tokenizer = load_policy(base, cfg.rollout.device, cfg.train.dtype) if base else load_base(cfg)
        suites = [build_suite(name, cfg.suites, cfg.seed) for name in cfg.suites.enabled]
        trainer = get_builder(cfg.train.trainer)(train=cfg.train, rollout=cfg.rollout, scoring=cfg.scoring, seed=cfg.seed,
                                                 model=model, tokenizer=tokenizer, suites=suites)
        trainer.arm = _resized(trainer.arm, ns[i], ks[i])
        steps = []
        for rep in range(repeats + 1):  # the first step warms up and is not counted
            before = trainer.samples_generated
            metrics = trainer.step()
            metrics["samples"] = trainer.samples_generated - before
            if rep:
                steps.append(metrics)
        median = statistics.median_low(m["step_s"] for m in steps)
        chosen = next(m for m in steps if m["step_s"] == median)
        rows.append(_step_row(recipe, trainer.arm, chosen, repeats))
        log(_step_line(rows[-1]))
        del trainer, model
    prorl = rows[0]
    log(f"scoring share of a prorl step: {100 * prorl['shares']['score']:.1f}% (goal <= {100 * SCORE_SHARE_GOAL:.0f}%)")
    return rows


def _step_row(recipe: str, arm, m: dict, repeats: int) -> dict:
    seconds = {phase: float(m[key]) for phase, key in _METRIC_OF.items()}
    step_s = float(m["step_s"])
    seconds["other"] = step_s - sum(seconds.values())
    return {
        "recipe": recipe, "n": arm.n, "prompts": arm.prompts_per_step, "samples": m["samples"],
        "gen_rounds": m["gen_rounds"], "kept_groups": m["kept_groups"], "repeats": repeats,
        "mean_response_tokens": m["mean_response_tokens"],
        "step_s": step_s, "samples_per_s": m["samples"] / seconds["generate"] if seconds["generate"] > 0 else 0.0,
        "seconds": seconds, "shares": {phase: s / step_s for phase, s in seconds.items()},
    }


def _step_header() -> str:
    cells = " ".join(f"{_LABEL[p]:>13}" for p in STEP_PHASES)
    return f"{'arm':<6} {'N':>4} {'prompts':>7} {'samples':>7} | {cells} | {'step s':>7} | {'samples/s':>9}"


def _step_line(r: dict) -> str:
    cells = " ".join(f"{r['seconds'][p]:>7.2f} {100 * r['shares'][p]:>4.0f}%" for p in STEP_PHASES)
    extra = f"  ({r['gen_rounds']} generation rounds)" if r["gen_rounds"] > 1 else ""
    return (f"{r['recipe']:<6} {r['n']:>4} {r['prompts']:>7} {r['samples']:>7} | {cells} | {r['step_s']:>7.2f} | "
            f"{r['samples_per_s']:>9.1f}{extra}")


# ----------------------------------------------------------------------------------------------
# step --shape: the compute and memory of a step at a model shape, no checkpoint


def word_tokenizer(vocab_size: int) -> transformers.PreTrainedTokenizerFast:
    """A real tokenizer of exactly `vocab_size` words `t0 .. t{V-1}`, split on whitespace: the string
    "t17 t2044" encodes to [17, 2044] and ids decode back. The last word is the pad, EOS and
    unknown token (random prompts never draw it)."""
    last = f"t{vocab_size - 1}"
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token=last))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=last, eos_token=last, unk_token=last)


def bench_step_shape(profile: str, overrides: list[str], n: list[int] | None = None, prompts: list[int] | None = None,
                     prompt_tokens: int = PROMPT_TOKENS, max_new_tokens: int = 32, repeats: int = 1,
                     isolate: bool = True, log=print) -> list[dict]:
    """One RL step per arm at the profile's `bootstrap.model` shape (module docstring), each arm in
    its own process unless `isolate` is false (tests); rows of {recipe, n, prompts, samples,
    seconds: {phase: s}, peak_mb: {phase: MB}, before_mb, step_s, samples_per_s, ...}. An arm that
    fails (out of memory, say) prints its error and phase, gives a row {recipe, error, phase}, and
    the other arm still runs."""
    for value, option in ((prompt_tokens, "--prompt-tokens"), (max_new_tokens, "--max-new-tokens"), (repeats, "--repeats")):
        if value < 1:
            raise ConfigError(f"invalid value for {option}: {value}; expected a positive integer")
    ns, ks = per_arm(n, "--n"), per_arm(prompts, "--prompts-per-step")
    cfg = load_config(profile, overrides)  # a bad key is one line, before any process starts
    for recipe in ARMS:
        _arm_settings(load_config(profile, overrides, recipe=recipe))
    if cfg.rollout.engine != "hf":
        raise ConfigError(f"invalid value for 'rollout.engine': {cfg.rollout.engine}; `bench step --shape` generates with "
                          "the hf engine (from a random in-process model, with no checkpoint to serve)")
    log(_shape_header(cfg, prompt_tokens, max_new_tokens, repeats))
    rows: list[dict] = []
    for i, recipe in enumerate(ARMS):
        job = {"profile": profile, "recipe": recipe, "overrides": list(overrides), "n": ns[i], "prompts": ks[i],
               "prompt_tokens": prompt_tokens, "max_new_tokens": max_new_tokens, "repeats": repeats}
        if isolate:
            done = subprocess.run([sys.executable, "-m", "harness.jobs.bench_step", "shape-child", json.dumps(job)],
                                  capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            try:
                row = json.loads(lines[-1])
            except (IndexError, json.JSONDecodeError):
                tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
                row = {"recipe": recipe, "error": tail[0], "phase": None}
        else:
            row = _shape_arm(**job)
        rows.append(row)
        log(_shape_lines(row))
    done_rows = [r for r in rows if "error" not in r]
    if done_rows:
        r = done_rows[0]
        log(f"model: {r['parameters'] / 1e6:,.1f}M parameters, {r['mini_batches']} mini-batches, {r['threads']} threads, "
            f"on {r['device']}")
    return rows


def _shape_arm(profile: str, recipe: str, overrides: list[str], n: int | None, prompts: int | None, prompt_tokens: int,
               max_new_tokens: int, repeats: int) -> dict:
    """One arm's row (or {recipe, error, phase} when a phase raised)."""
    cfg = load_config(profile, overrides, recipe=recipe)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    t = cfg.train
    arm = _resized(_arm_settings(cfg), n, prompts)
    device = resolve_device(cfg.rollout.device)
    meter = _PhaseMeter(device)
    shape = cfg.bootstrap.model
    try:
        meter.current = "build"
        tokenizer = word_tokenizer(shape.vocab_size)
        policy = shape_model(shape, cfg.seed, device).to(device=device, dtype=getattr(torch, t.dtype)).train()
        reference = copy.deepcopy(policy).eval().requires_grad_(False)  # the trainer holds one whatever kl_coef
        if t.gradient_checkpointing:
            enable_gradient_checkpointing(policy)
        engine = make_engine(cfg.rollout, policy, tokenizer, seed=cfg.seed)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=arm.learning_rate, weight_decay=t.weight_decay)
        g = torch.Generator().manual_seed(cfg.seed)
        texts = [" ".join(f"t{i}" for i in torch.randint(shape.vocab_size - 1, (prompt_tokens,), generator=g).tolist())
                 for _ in range(arm.prompts_per_step)]
        step = _ShapeStep(policy, reference, engine, optimizer, tokenizer, t)
        meter.current = "warm-up"
        step.run(texts[:1], min(arm.n, 2), min(max_new_tokens, 4), seed=cfg.seed, meter=None)
        runs = [step.run(texts, arm.n, max_new_tokens, seed=cfg.seed + 1 + rep, meter=meter.fresh()) for rep in range(repeats)]
    except Exception as exc:  # out of memory, mostly: the row says which phase, the other arm still runs
        first = (str(exc).strip().splitlines() or [""])[0]
        return {"recipe": recipe, "error": f"{type(exc).__name__}: {first}", "phase": meter.current}
    median = statistics.median_low(r["step_s"] for r in runs)
    chosen = next(r for r in runs if r["step_s"] == median)
    return {
        "recipe": recipe, "n": arm.n, "prompts": arm.prompts_per_step, "repeats": repeats,
        "prompt_tokens": prompt_tokens, "response_tokens": max_new_tokens,
        "hidden_size": shape.hidden_size, "layers": shape.num_hidden_layers, "vocab_size": shape.vocab_size,
        "parameters": sum(p.numel() for p in policy.parameters()), "dtype": t.dtype, "rollout_dtype": cfg.rollout.dtype,
        "autocast": t.autocast_dtype, "gradient_checkpointing": t.gradient_checkpointing, "kl": t.kl_coef > 0,
        "mini_batches": min(t.mini_batches, chosen["samples"]), "micro_batch_tokens": t.micro_batch_tokens,
        "device": str(device), "threads": torch.get_num_threads(), "peak_kind": meter.kind, **chosen,
    }


class _PhaseMeter:
    """Seconds and peak memory per phase: the device synchronised at both ends, the peak reset at the
    start (CUDA: max_memory_allocated; CPU: peak RSS via /proc/self/clear_refs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.kind = "CUDA max allocated" if self.cuda else "peak RSS"
        self.current: str | None = None
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float | None] = {}

    def fresh(self) -> _PhaseMeter:
        self.seconds, self.peak_mb = {}, {}
        return self

    def allocated_mb(self) -> float:
        self._sync()
        return torch.cuda.memory_allocated(self.device) / 2**20 if self.cuda else _current_rss_mb()

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def phase(self, name: str):
        self.current = name
        self._sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        reset = self.cuda or _reset_peak_rss()
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = _peak_rss_mb() if reset else _rss_mb()
        self.peak_mb[name] = max(peak, self.peak_mb.get(name) or 0.0)
        self.current = None


class _ShapeStep:
    """The trainer's step at a shape, phase by phase (see the module docstring)."""

    def __init__(self, policy, reference, engine, optimizer, tokenizer, t):
        self.policy, self.reference, self.engine, self.optimizer, self.tokenizer, self.t = (
            policy, reference, engine, optimizer, tokenizer, t)

    def run(self, texts: list[str], n: int, max_new_tokens: int, seed: int, meter: _PhaseMeter | None) -> dict:
        t = self.t
        meter = meter or _PhaseMeter(self.policy.device)
        before = meter.allocated_mb()
        start = time.perf_counter()
        with meter.phase("weight_sync"):
            self.engine.sync_weights(self.policy)
        with meter.phase("generate"):
            sampling = SamplingParams(temperature=t.temperature, top_p=t.top_p, max_new_tokens=max_new_tokens, seed=seed,
                                      stop_token_ids=())
            result = self.engine.generate(texts, n, sampling)
        self.engine.release()
        assert result.num_output_tokens == result.num_samples * max_new_tokens, "samples must be fixed-length"
        assert all(len(g.prompt_ids) == len(text.split()) for g, text in zip(result.groups, texts)), "one id per word"
        seqs = [
            ScoredSequence(ids=list(group.prompt_ids) + s.token_ids, prompt_len=len(group.prompt_ids), group=g,
                           rollout_logp=s.logprobs, advantage=1.0 if (g + j) % 2 == 0 else -1.0)
            for g, group in enumerate(result.groups) for j, s in enumerate(group.samples)
        ]
        pad_id = self.tokenizer.pad_token_id
        self.policy.eval()
        with torch.no_grad():
            with meter.phase("old_logprob"):
                old = _logprobs(self.policy, seqs, t, pad_id)
            ref = None
            if t.kl_coef > 0:
                with meter.phase("ref_logprob"):
                    ref = _logprobs(self.reference, seqs, t, pad_id)
        self.policy.train()
        order = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(seed)).tolist()
        n_mb = min(t.mini_batches, len(seqs))
        bounds = [round(i * len(seqs) / n_mb) for i in range(n_mb + 1)]
        for b in range(n_mb):
            with meter.phase("update"):
                self.optimizer.zero_grad(set_to_none=True)
                _accumulate_gradients(self.policy, seqs, order[bounds[b]:bounds[b + 1]], old, ref, t, pad_id)
            with meter.phase("optimizer"):
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), t.max_grad_norm)
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        meter._sync()
        step_s = time.perf_counter() - start
        seconds = {p: meter.seconds.get(p, 0.0) for p in SHAPE_PHASES}
        peaks = {p: meter.peak_mb.get(p) for p in SHAPE_PHASES}
        return {
            "samples": result.num_samples, "step_s": step_s, "seconds": seconds, "peak_mb": peaks,
            "peak_step_mb": max(v for v in peaks.values() if v is not None), "before_mb": before,
            "samples_per_s": result.num_samples / seconds["generate"] if seconds["generate"] > 0 else 0.0,
        }


def _shape_header(cfg, prompt_tokens: int, max_new_tokens: int, repeats: int) -> str:
    shape, t = cfg.bootstrap.model, cfg.train
    cells = " ".join(f"{_LABEL[p]:>9}" for p in SHAPE_PHASES)
    return (f"one RL step per arm at a shape, profile {cfg.profile}: compute and memory, not learning (scoring skipped, "
            f"fixed +1/-1 advantages, every group kept); median of {repeats} after a small warm-up step\n"
            f"random Qwen2: hidden {shape.hidden_size}, {shape.num_hidden_layers} blocks, feed-forward "
            f"{shape.intermediate_size}, {shape.num_attention_heads}/{shape.num_key_value_heads} query/key-value heads, "
            f"vocabulary {shape.vocab_size:,}; {t.dtype} weights, autocast {t.autocast_dtype}, rollout "
            f"{cfg.rollout.dtype} on {cfg.rollout.engine}{', gradient checkpointing' if t.gradient_checkpointing else ''}; "
            f"micro-batch budget {t.micro_batch_tokens} tokens, kl_coef {t.kl_coef:g}\n"
            f"prompts: {prompt_tokens} random tokens; responses: exactly {max_new_tokens} tokens. Per arm: seconds per "
            f"phase, then each phase's peak memory in MB\n"
            f"{'arm':<6} {'N':>4} {'prompts':>7} {'samples':>7} | {cells} | {'step':>8} | {'samples/s':>9}")


def _shape_lines(r: dict) -> str:
    if "error" in r:
        return f"{r['recipe']:<6} failed in phase {r['phase']}: {r['error']}"
    secs = " ".join(f"{r['seconds'][p]:>9.2f}" for p in SHAPE_PHASES)
    peaks = " ".join(f"{'-' if r['peak_mb'][p] is None else format(r['peak_mb'][p], ',.0f'):>9}" for p in SHAPE_PHASES)
    head = f"{r['recipe']:<6} {r['n']:>4} {r['prompts']:>7} {r['samples']:>7}"
    pad = f"{'  ' + r['peak_kind'] + ' MB':<27}"
    return (f"{head} | {secs} | {r['step_s']:>7.2f}s | {r['samples_per_s']:>9.1f}\n"
            f"{pad} | {peaks} | {r['peak_step_mb']:>8,.0f} | (before the step: {r['before_mb']:,.0f} MB)")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "shape-child":
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(json.dumps(_shape_arm(**json.loads(sys.argv[2]))))
