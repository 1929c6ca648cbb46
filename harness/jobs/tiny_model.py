"""The tiny base model: a Qwen2ForCausalLM and a byte-level BPE tokenizer, both built here.

The tokenizer is trained locally with Qwen2's own pre-tokenizer (the regex from transformers'
Qwen2Tokenizer, then byte-level). That matters: a checkpoint whose config says `qwen2` reloads its
tokenizer as `Qwen2Tokenizer`, which installs that pre-tokenizer whatever was trained; a BPE trained
with another one would give different ids after save/reload. The vocabulary and merges are handed
to `Qwen2Tokenizer(vocab=..., merges=...)` directly (passing file paths silently gave an empty
vocabulary in transformers 5).
"""

from __future__ import annotations

import json
from typing import Iterable

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from harness.checkpoint import float64_throughout
from harness.config import TinyModelConfig

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, "<|im_start|>", EOS_TOKEN]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as Qwen2 chat models use: the tiny model sees prompts the same way the real one does."""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """Byte-level BPE over `texts` with Qwen2's pre-tokenizer; ends at vocab_size or when no pair repeats."""
    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    model_state = json.loads(raw.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model_state["vocab"],
        merges=merges,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
    )
    # Qwen2Tokenizer registers only eos/pad as special; the chat markers must not be split either.
    tokenizer.add_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(cfg: TinyModelConfig, tokenizer: Qwen2Tokenizer, seed: int, dtype: str = "float32") -> Qwen2ForCausalLM:
    """A freshly initialised Qwen2 model sized by `cfg`, its vocabulary matching `tokenizer`, its
    weights drawn in `dtype`. float64 (the regression guard's, harness/regress.py) draws them in
    float64: torch draws float32 normals with the CPU's vectorised log/cos (AVX2 and AVX-512 give
    values one float32 ulp apart), float64 ones element by element, the same on every machine; and
    it computes in float64 throughout (harness.checkpoint.float64_throughout)."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    if dtype == "float64":
        float64_throughout(model)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=None,
    )
    return model
