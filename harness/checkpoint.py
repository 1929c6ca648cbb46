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
    return model.to(target).eval(), tokenizer


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
