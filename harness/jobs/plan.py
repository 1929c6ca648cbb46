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
from trainers.registry import arm_settings

GIB = 1024**3
PAPER_GPUS = 64
"""H100s of the paper's BroRL runs (Table 2)."""


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
    master = {"float32": 4, "bfloat16": 2, "float16": 2}[t.dtype]
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
    rollout_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}[cfg.rollout.dtype]
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


def render_plan(profile: str, gpu_gib: float = 80.0, gpu_tokens: int | None = None) -> str:
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
    return "\n".join(lines)
