"""Loading a policy checkpoint (local directory or hub id) and rendering prompts for it."""

from __future__ import annotations

import json
import re
import types
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


def float64_throughout(model) -> None:
    """Make a float64 model compute in float64 where transformers computes in float32 (in place).

    Whatever the model's dtype, transformers' Qwen2 computes RMSNorm (every layer's input and the
    final norm) and RoPE (the inverse frequencies and each angle's cos/sin) in float32, with the
    vectorised rsqrt/pow/sin/cos of the kernels the CPU gets, which round one float32 ulp apart
    between AVX2 and AVX-512. The regression guard's float64 runs (harness/regress.py) must not
    depend on the machine, so those modules of a float64 model compute in float64 instead (the same
    formulas). Only the default RoPE (the Qwen2 family's and the tiny base's) is handled; another
    kind is refused in one line rather than left in float32."""
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm_forward, module)
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if rotary is None:
        return
    if getattr(rotary, "rope_type", "default") != "default":
        raise CheckpointError(f"float64 runs support the default rotary embedding only, not rope_type '{rotary.rope_type}'")
    config = rotary.config
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    base = config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    rotary.register_buffer("inv_freq", inv_freq.to(rotary.inv_freq.device), persistent=False)
    rotary.forward = types.MethodType(_rotary_forward, rotary)


def _rms_norm_forward(self, hidden: torch.Tensor) -> torch.Tensor:
    """transformers' RMSNorm, in float32 or in the input's precision when that is higher."""
    x = hidden.to(torch.promote_types(hidden.dtype, torch.float32))
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * x.to(hidden.dtype)


def _rotary_forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [batch, positions, head_dim] of each position's angles, in float64, cast to x's dtype."""
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq.to(device=x.device, dtype=torch.float64)
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * self.attention_scaling).to(x.dtype), (angles.sin() * self.attention_scaling).to(x.dtype)


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
