"""Loading a policy checkpoint (local directory or hub id) and rendering prompts for it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.config.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded; the message is one line."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise CheckpointError(f"invalid device '{device}'; valid: auto, cpu, cuda, cuda:N") from None


def check_checkpoint(path: str) -> None:
    """Fail fast, with one line, on a path that is neither a checkpoint directory nor a hub id."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise CheckpointError(
                f"checkpoint '{path}' has no config.json: give a directory written by save_pretrained "
                "(for example the path `harness bootstrap` prints)"
            )
        _check_config(path, p / "config.json")
        if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
            raise CheckpointError(f"checkpoint '{path}' has no model weights (*.safetensors or *.bin)")
        for weights in sorted(p.glob("*.safetensors")):  # headers only: a torn file fails here, before any work
            try:
                with safe_open(str(weights), framework="pt"):
                    pass
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise CheckpointError(f"cannot load checkpoint '{path}': {type(exc).__name__}: {first}") from None
        return
    if p.exists() or not HUB_ID.match(path):
        raise CheckpointError(
            f"checkpoint '{path}' not found: give a directory written by save_pretrained "
            "(for example the path `harness bootstrap` prints) or a Hugging Face model id"
        )


def _check_config(path: str, config: Path) -> None:
    """A checkpoint's config.json is a model config: not torn, and not another command's config.json
    (a `harness train` run's or a `harness compare` folder's, whose checkpoints lie inside them)."""
    try:
        meta = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint '{path}' has a config.json that is not valid JSON (a half-written or damaged "
                              "checkpoint); give a directory written by save_pretrained")
    if "model_type" in meta:
        return
    if {"recipe", "arm"} <= set(meta):
        newest = sorted(c for c in config.parent.glob("checkpoints/step_*") if any(c.glob("*.safetensors")))
        raise CheckpointError(f"'{path}' is a `harness train` run's folder, not a checkpoint: give one of its checkpoints, "
                              f"{newest[-1] if newest else Path(path) / 'checkpoints' / 'step_NNNNNN'}")
    if {"arms", "seeds"} <= set(meta):
        raise CheckpointError(f"'{path}' is a `harness compare` folder, not a checkpoint: give a checkpoint of one of its "
                              f"runs, {Path(path) / 'arms' / '<arm>' / 'seed<k>' / 'checkpoints' / 'step_NNNNNN'}")
    raise CheckpointError(f"checkpoint '{path}' has a config.json without model_type: give a directory written by "
                          "save_pretrained (for example the path `harness bootstrap` prints)")


def load_policy(path: str, device: str = "auto", dtype: str = "float32", revision: str = ""):
    """(model, tokenizer) from a checkpoint directory or hub id (at `revision`, if given), model in
    eval mode on `device`."""
    check_checkpoint(path)
    target = resolve_device(device)
    at = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **at)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **at)
    except Exception as exc:  # corrupt weights, bad JSON, missing files: one clear line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"cannot load checkpoint '{path}': {type(exc).__name__}: {first}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if dtype == "float64":
        float64_throughout(model)
    return model.to(target).eval(), tokenizer


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or in its own precision when that is higher: what `.float()` does for the
    softmaxes and losses of bf16/fp16/fp32 models, without rounding a float64 model's values (the
    regression guard's runs, harness/regress.py). (trainers/core.py and trainers/logits.py, pure
    tensor modules, write the same one expression inline.)"""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def float64_throughout(model) -> None:
    """Make a float64 model compute in float64 where transformers computes in float32 (in place).

    Whatever the model's dtype, transformers' Qwen2 computes RMSNorm (every layer's input and the
    final norm) and RoPE (the inverse frequencies and each angle's cos/sin) in float32, with the
    vectorised rsqrt/pow/sin/cos of the kernels the CPU gets, which round one float32 ulp apart
    between AVX2 and AVX-512. The regression guard's float64 runs (harness/regress.py) must not
    depend on the machine, so forward hooks give those modules' outputs computed in float64 (the
    same formulas) whenever their input is float64; for any other input they change nothing, so a
    lower-precision copy of the model computes exactly as transformers does. Hooks, unlike a
    replaced `forward`, survive deepcopy and pickling. Only the Qwen2 family's modules (the tiny
    base's and the paper's) and its default RoPE are handled; a model without them is refused in one
    line rather than left in float32."""
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon")]
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if not norms or rotary is None:
        raise CheckpointError(f"float64 runs support the Qwen2 family (RMSNorm and a rotary embedding), not {type(model).__name__}")
    if getattr(rotary, "rope_type", "default") != "default":
        raise CheckpointError(f"float64 runs support the default rotary embedding only, not rope_type '{rotary.rope_type}'")
    for norm in norms:
        if not getattr(norm, "float64_hook", False):
            norm.register_forward_hook(_rms_norm_float64)
            norm.float64_hook = True
    if not getattr(rotary, "float64_hook", False):
        rotary.register_forward_hook(_rotary_float64, with_kwargs=True)
        rotary.float64_hook = True


def _rms_norm_float64(module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook: transformers' RMSNorm computed in float64 for a float64 input; else its own output."""
    hidden = args[0]
    if hidden.dtype != torch.float64:
        return None
    return module.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))


def _rotary_float64(module, args: tuple, kwargs: dict, output):
    """Forward hook: (cos, sin) [batch, positions, head_dim] of each position's angles computed in
    float64 for a float64 input (inverse frequencies included); else transformers' own output."""
    x = args[0] if args else kwargs["x"]
    if x.dtype != torch.float64:
        return None
    position_ids = args[1] if len(args) > 1 else kwargs["position_ids"]
    config = module.config
    base = float(config.rope_parameters["rope_theta"])
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64, device=x.device) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos() * module.attention_scaling, angles.sin() * module.attention_scaling


def render_prompts(tokenizer, user_texts: list[str]) -> list[str]:
    """`render_prompt` for many texts at once: the template is rendered once around a sentinel and
    the texts spliced in, which is exact for templates that insert the content verbatim (checked
    on the first text; otherwise each text is rendered on its own)."""
    if not user_texts or not getattr(tokenizer, "chat_template", None):
        return list(user_texts)
    sentinel = "\x00HARNESS-PROMPT\x00"
    frame = render_prompt(tokenizer, sentinel)
    if frame.count(sentinel) == 1:
        head, tail = frame.split(sentinel)
        rendered = [head + text + tail for text in user_texts]
        if rendered[0] == render_prompt(tokenizer, user_texts[0]):
            return rendered
    return [render_prompt(tokenizer, text) for text in user_texts]


def render_prompt(tokenizer, user_text: str) -> str:
    """The string the model is given: its chat template around one user turn, if it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
        )
    return user_text
