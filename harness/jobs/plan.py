"""`harness plan --profile P`: what a run of the profile needs, before anything is loaded.

Prints both arms' resolved recipe, the samples and tokens of one step, the memory one GPU needs for
the harness's own colocated trainer (weights, gradients, optimizer state, reference policy,
activations of one micro-batch, the logits, and vLLM's weights and KV cache) and how many GPUs the
paper's batch implies at a per-GPU token budget. Nothing is downloaded: the architecture comes from
a local checkpoint's config.json, else from the profile (`base.shape`, or `bootstrap.model` for a
bootstrapped tiny base).

The memory figures are estimates from the architecture, with the formulas next to them in
`memory_plan`: they size a run, they do not replace `harness bench memory` (measured) or a first
GPU step. Activation memory assumes fused attention (no tokens^2 term) and bf16 autocast.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from harness.backends.verl.compile import plan_steps
from harness.config import Config, ConfigError, ModelShape, load_config
from suites.reasoning_gym_tasks import PRORL_TASKS, TOO_FEW_QUESTIONS
from trainers.registry import arm_settings

GIB = 1024**3
PAPER_GPUS = 64
"""H100s of the paper's BroRL runs (Table 2)."""

PAPER_MEAN_TOKENS = {"math": 16_506, "code": 26_808, "reasoning_gym": (4_000, 8_000)}
"""Mean output tokens per response at the paper's protocol: math and code are ProRL's (Table 4 of
BroRL, ../shared/REFERENCE.md); Reasoning Gym's is not reported: 4k-8k assumed (low, high)."""

DECODE_TOKENS_PER_S = 7_500
"""Generated tokens per second of one GPU for a 1.5B model at long context (an H100 with vLLM:
7-8k; KV-cache reads bound the decode there; Table 3's rates imply 5-11k)."""

BENCHMARK_ITEMS = {"aime24": 30, "aime25": 30, "amc": 83, "math500": 500, "minerva": 272, "olympiadbench": 675}
"""Items of each math benchmark (the DeepScaleR test sets, ../shared/data/math): 1,590 in all."""

CODE_ITEMS = 1024
"""Code items of the BroRL code sets in all (the code rows of PRIME-RL/Eurus-2-RL-Data's validation
split; how they divide among apps, codecontests, codeforces and taco is not known here: an upper bound)."""

PRORL96_SMALL_EVAL = {"tower_of_hanoi": 16}
"""Held-out eval questions of the prorl96 tasks too small for a full share (suites/reasoning_gym_tasks.py)."""


def model_shape(cfg: Config) -> tuple[ModelShape, str]:
    """The architecture the plan uses, and where it came from."""
    ckpt = cfg.base.checkpoint
    if ckpt and (Path(ckpt) / "config.json").is_file():
        meta = json.loads((Path(ckpt) / "config.json").read_text())
        fields = {k: meta[k] for k in asdict(ModelShape()) if k in meta}
        return ModelShape(**fields), f"{ckpt}/config.json"
    if ckpt:
        return cfg.base.shape, f"the profile's base.shape (for {ckpt}{'@' + cfg.base.revision if cfg.base.revision else ''})"
    m = cfg.bootstrap.model
    return ModelShape(hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                      num_key_value_heads=m.num_key_value_heads, intermediate_size=m.intermediate_size,
                      vocab_size=m.vocab_size, tie_word_embeddings=True), "the profile's bootstrap.model (the tiny base)"


def parameter_count(s: ModelShape) -> int:
    """Qwen2: embedding, output layer unless tied, per block q/k/v (with biases) and o, the gated MLP, two norms."""
    head_dim = s.hidden_size // s.num_attention_heads
    kv = s.num_key_value_heads * head_dim
    attention = s.hidden_size * s.hidden_size * 2 + s.hidden_size * kv * 2 + s.hidden_size + 2 * kv
    mlp = 3 * s.hidden_size * s.intermediate_size
    block = attention + mlp + 2 * s.hidden_size
    embed = s.vocab_size * s.hidden_size
    return embed * (1 if s.tie_word_embeddings else 2) + s.num_hidden_layers * block + s.hidden_size


def memory_plan(cfg: Config, s: ModelShape, gpu_gib: float) -> list[tuple[str, float, str]]:
    """(item, GiB, how it is computed) for one GPU running the trainer and vLLM side by side."""
    p = parameter_count(s)
    t = cfg.train
    master = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[t.dtype]
    compute = 2 if t.autocast_dtype == "bfloat16" else master
    tokens = t.micro_batch_tokens
    checkpointing = t.gradient_checkpointing
    chunk = t.logit_chunk_tokens
    if checkpointing:
        act = s.num_hidden_layers * tokens * s.hidden_size * compute + tokens * (12 * s.hidden_size + 3 * s.intermediate_size) * compute
        act_how = f"checkpointed: {s.num_hidden_layers} layer inputs + one layer recomputed, {tokens} tokens"
    else:
        act = s.num_hidden_layers * tokens * (12 * s.hidden_size + 3 * s.intermediate_size) * compute
        act_how = f"{s.num_hidden_layers} layers x {tokens} tokens x (12 hidden + 3 ffn) x {compute} B"
    rows_logits = chunk if chunk else tokens
    logits = rows_logits * s.vocab_size * 4 * 3
    logits_how = (f"{rows_logits} tokens x {s.vocab_size} vocab x fp32 x 3 (logits, log-softmax, grad)"
                  + ("" if chunk else "; set train.logit_chunk_tokens to bound it"))
    rollout_bytes = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[cfg.rollout.dtype]
    head_dim = s.hidden_size // s.num_attention_heads
    kv_per_token = 2 * s.num_hidden_layers * s.num_key_value_heads * head_dim * rollout_bytes
    context = cfg.rollout.vllm.max_model_len or (t.max_new_tokens + 1024)
    v = cfg.rollout.vllm
    kv_need = v.max_num_seqs * context * kv_per_token
    rows = [
        ("policy (master weights)", p * master / GIB, f"{p / 1e9:.2f}B params x {master} B ({t.dtype})"),
        ("gradients", p * master / GIB, f"params x {master} B"),
        ("AdamW state", p * 8 / GIB, "params x 2 moments x fp32"),
        ("reference policy", p * master / GIB, f"params x {master} B (KL and its resets)"),
        ("activations, one micro-batch", act / GIB, act_how),
        ("logits", logits / GIB, logits_how),
    ]
    if cfg.rollout.engine == "vllm":
        rows += [
            ("vLLM weights", p * rollout_bytes / GIB, f"params x {rollout_bytes} B ({cfg.rollout.dtype})"),
        ]
        share = v.gpu_memory_utilization * gpu_gib * GIB
        capacity = max(0.0, share - p * rollout_bytes)
        rows += [
            ("vLLM KV cache (what its share leaves)", capacity / GIB,
             f"{capacity / kv_per_token:,.0f} tokens at {kv_per_token} B/token = {capacity / kv_per_token / context:,.1f} "
             f"sequences at max_model_len {context} (worst case {v.max_num_seqs} x {context} needs {kv_need / GIB:,.0f} GiB; "
             "vLLM pages it in as sequences grow)"
             + ("; freed while the policy updates (sleep_level 1)" if v.sleep_level else "")),
        ]
    return rows


def step_plan(cfg: Config) -> list[dict]:
    """Per arm: N, prompts, samples and an upper bound on tokens per step (every response at max length)."""
    out = []
    prompt_tokens = 1024  # a generous prompt length; responses dominate at 16k
    for recipe in ("prorl", "brorl"):
        t = load_config(cfg.profile, recipe=recipe).train
        s = arm_settings(t, "`harness plan`")
        samples = s.n * s.prompts_per_step
        tokens = samples * (prompt_tokens + t.max_new_tokens)
        out.append({"arm": recipe, "n": s.n, "prompts": s.prompts_per_step, "samples": samples, "lr": s.learning_rate,
                    "lr_rule": s.lr_rule, "tokens_max": tokens, "mini_batches": t.mini_batches,
                    "tokens_per_mini_batch": tokens / t.mini_batches})
    return out


def budget_plan(cfg: Config) -> list[str]:
    """Each arm's steps and checkpoint interval under the profile's comparison budget on verl
    (`plan_steps`, what `harness compare --backend verl` compiles), as lines."""
    c = cfg.compare
    lines = [f"the comparison's budget on verl: {c.budget:g} {c.budget_kind}, evaluated at "
             + ", ".join(f"{f:g}" for f in c.eval_points) + " of it (harness compare --backend verl)"]
    for recipe in ("prorl", "brorl"):
        try:
            plan = plan_steps(load_config(cfg.profile, recipe=recipe))
        except ConfigError as exc:
            lines.append(f"  {recipe:<6} cannot be planned: {exc}")
            continue
        lines.append(f"  {recipe:<6} {plan.steps} steps: {plan.basis}")
        lines.append(f"         points at steps {plan.point_steps}; checkpoints every {plan.save_every} steps ({plan.save_basis})")
    return lines


def render_plan(profile: str, gpu_gib: float = 80.0, gpu_tokens: int | None = None, replicas: list[int] | None = None,
                decode_tokens_per_s: float = DECODE_TOKENS_PER_S) -> str:
    """The plan as text (what `harness plan` prints)."""
    cfg = load_config(profile)
    shape, source = model_shape(cfg)
    params = parameter_count(shape)
    lines = [f"plan for profile '{cfg.profile}' (requires: {cfg.requires})",
             f"base: {cfg.base.checkpoint or 'the tiny base `harness bootstrap` builds'}"
             + (f" @ {cfg.base.revision}" if cfg.base.revision else "") + (f", {cfg.base.rl_steps} RL steps" if cfg.base.rl_steps else ""),
             f"model: {params / 1e9:.3f}B parameters, hidden {shape.hidden_size}, {shape.num_hidden_layers} layers, "
             f"{shape.num_attention_heads} heads ({shape.num_key_value_heads} KV), vocabulary {shape.vocab_size} (from {source})",
             f"rollout: {cfg.rollout.engine} in {cfg.rollout.dtype}; training: master weights {cfg.train.dtype}, "
             f"autocast {cfg.train.autocast_dtype}; responses up to {cfg.train.max_new_tokens} tokens (eval {cfg.eval.max_new_tokens})",
             "", "one RL step per arm (tokens: every response at its maximum length, prompts at 1,024: an upper bound)"]
    budget = gpu_tokens or cfg.train.micro_batch_tokens
    for row in step_plan(cfg):
        micro = math.ceil(row["tokens_max"] / budget)
        lines.append(f"  {row['arm']:<6} N={row['n']:<4} prompts={row['prompts']:<4} samples={row['samples']:<6} "
                     f"lr={row['lr']:.3g} ({row['lr_rule']}), tokens <= {row['tokens_max'] / 1e6:,.1f}M in "
                     f"{row['mini_batches']} mini-batches")
        lines.append(f"         at {budget} tokens per GPU micro-batch: <= {micro:,} micro-batches per step, "
                     f"{math.ceil(micro / PAPER_GPUS):,} per GPU on the paper's {PAPER_GPUS} GPUs; one micro-batch per GPU "
                     f"per mini-batch would take {math.ceil(row['tokens_per_mini_batch'] / budget):,} GPUs")
    lines += ["", *budget_plan(cfg)]
    lines += ["", f"memory of one GPU ({gpu_gib:g} GiB), the harness's own trainer with the engine colocated"]
    rows = memory_plan(cfg, shape, gpu_gib)
    for name, gib, how in rows:
        lines.append(f"  {name:<48} {gib:>8.2f} GiB   {how}")
    trainer = sum(g for n, g, _ in rows if not n.startswith("vLLM"))
    engine = sum(g for n, g, _ in rows if n.startswith("vLLM"))
    lines.append(f"  {'trainer total':<48} {trainer:>8.2f} GiB")
    if engine:
        share = cfg.rollout.vllm.gpu_memory_utilization * gpu_gib
        lines.append(f"  {'vLLM (its share: gpu_memory_utilization)':<48} {share:>8.2f} GiB   "
                     f"at {cfg.rollout.vllm.gpu_memory_utilization:g} of {gpu_gib:g} GiB")
        verdict = "fits" if trainer + share <= gpu_gib else "does NOT fit"
        lines.append(f"  -> {verdict} on one {gpu_gib:g} GiB GPU as configured (estimate; `harness bench memory` measures)")
    lines.append("")
    lines.append("the paper ran both arms on 64 H100s; more than one GPU: "
                 "`harness train RECIPE --backend verl --nodes K --gpus-per-node G` (docs/verl.md)")
    lines.append("")
    lines += eval_plan(cfg, replicas or [1, 8, PAPER_GPUS], decode_tokens_per_s)
    return "\n".join(lines)


# --- one evaluation's cost ----------------------------------------------------------------------------

def eval_items(cfg: Config) -> dict[str, tuple[int, str]]:
    """Items one evaluation of the profile scores per enabled suite, and how the count was found
    (from the profile alone: no data is read)."""
    out = {}
    s = cfg.suites
    for name in s.enabled:
        section = getattr(s, name)
        if name == "reasoning_gym" and section.preset == "prorl96":
            share = -(-section.eval_items // len(PRORL_TASKS))
            n = sum(min(share, PRORL96_SMALL_EVAL.get(t, share)) for t in PRORL_TASKS)
            out[name] = (n, f"{len(PRORL_TASKS)} tasks x {share}, small tasks fewer ({', '.join(sorted(TOO_FEW_QUESTIONS))})")
        elif getattr(section, "source", "procedural") == "benchmarks" and name == "math":
            sizes = {b: BENCHMARK_ITEMS.get(b, 0) for b in section.benchmarks}
            n = sum(min(v, section.eval_items) if section.eval_items else v for v in sizes.values())
            out[name] = (n, ", ".join(f"{b} {v}" for b, v in sizes.items()))
        elif getattr(section, "source", "procedural") == "benchmarks":
            n = min(CODE_ITEMS, section.eval_items * len(section.benchmarks)) if section.eval_items else CODE_ITEMS
            out[name] = (n, "PRIME's validation code rows: an upper bound")
        else:
            out[name] = (section.eval_items, "eval_items")
    return out


def mean_tokens(cfg: Config, suite: str) -> tuple[float, float]:
    """(low, high) assumed mean output tokens of one response: the paper's, capped at eval.max_new_tokens."""
    value = PAPER_MEAN_TOKENS[suite]
    low, high = value if isinstance(value, tuple) else (value, value)
    cap = cfg.eval.max_new_tokens
    return min(low, cap), min(high, cap)


def eval_plan(cfg: Config, replicas: list[int], rate: float = DECODE_TOKENS_PER_S) -> list[str]:
    """The lines `harness plan` prints about one evaluation: items x samples x mean length per
    suite, the GPU-hours at `rate` tokens/s, and the wall time at each replica count (calls are
    dealt to replicas round robin, as `harness eval --replicas` deals them: the busiest one sets it)."""
    k, per_call = cfg.eval.k, cfg.eval.prompts_per_call
    items = eval_items(cfg)
    lines = [f"one evaluation (harness eval): k={k} samples per item, up to {cfg.eval.max_new_tokens} tokens each, "
             f"{per_call} prompts per engine call"]
    calls: list[tuple[float, float]] = []  # (low, high) tokens of each engine call, in evaluation order
    total = [0.0, 0.0]
    for name, (n, how) in items.items():
        low, high = mean_tokens(cfg, name)
        total[0] += n * k * low
        total[1] += n * k * high
        length = f"{low:,.0f}" if low == high else f"{low:,.0f}-{high:,.0f}"
        lines.append(f"  {name:<14} {n:>6,} items ({how}) x {k} x {length} tokens = {_range(n * k * low, n * k * high)} tokens")
        calls += [(m * k * low, m * k * high) for m in (min(per_call, n - start) for start in range(0, n, per_call))]
    lines.append(f"  {'total':<14} {sum(n for n, _ in items.values()):>6,} items, {_range(*total)} generated tokens")
    lines.append("  mean lengths assumed: the paper's (Table 4: math 16,506, code 26,808 tokens per response; Reasoning Gym "
                 "not reported, 4,000-8,000 assumed), capped at eval.max_new_tokens")
    hours = (total[0] / rate / 3600, total[1] / rate / 3600)
    lines.append(f"  at {rate:,.0f} tokens/s per GPU (a 1.5B model's decode at long context on an H100; measure yours with "
                 f"harness bench rollout): {_range(*hours, 'hours')} GPU-hours")
    for count in replicas:
        busiest = [max(sum(c[i] for c in calls[r::count]) for r in range(count)) for i in (0, 1)]
        lines.append(f"  wall time at {count:>3} replica{'s' if count > 1 else ' '} (harness eval --replicas {count}): "
                     f"{_range(busiest[0] / rate / 3600, busiest[1] / rate / 3600, 'hours')} of generation (its busiest replica)")
    return lines


def _range(low: float, high: float, unit: str = "tokens") -> str:
    """`low-high` (or one value when equal) in tokens (k, M, B) or hours (minutes below one)."""
    def one(x: float) -> str:
        if unit == "hours":
            return f"{x:.1f} h" if x >= 1 else f"{x * 60:.1f} min" if x * 60 >= 0.1 else f"{x * 3600:.1f} s"
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if x >= size:
                return f"{x / size:.2f}{suffix}"
        return f"{x:,.0f}"
    return one(low) if one(low) == one(high) else f"{one(low)}-{one(high)}"
