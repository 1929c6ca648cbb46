"""Shared fixtures: a tiny tokenizer and random Qwen2 model built by the project itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.config import TinyModelConfig
from harness.jobs.tiny_model import build_model, train_tokenizer
from trainers.shared_prompt import ScoredSequence

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real evaluation sets beside the repository (../shared/data); tests skip when it is absent."""

torch.set_num_threads(2)


def corpus() -> list[str]:
    return [
        f"user\nassistant\nWhat is {a} + {b}?\nGive your final answer inside <answer></answer> tags.\n<answer>{a + b}</answer>"
        for a in range(30)
        for b in range(30)
    ]


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(corpus(), vocab_size=400)


@pytest.fixture(scope="session")
def model(tokenizer):
    cfg = TinyModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=128, max_position_embeddings=256)
    return build_model(cfg, tokenizer, seed=0).eval()


def run_cli(args, cache, timeout=900, **kwargs):
    """`python -m harness.cli ARGS` with its own cache folder, as a user would run `harness ARGS`."""
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory):
    """The smoke profile's bootstrapped base checkpoint: (path, cache folder). Under tox the cache is
    tox's own (HARNESS_CACHE)."""
    cache = Path(os.environ["HARNESS_CACHE"]) if os.environ.get("HARNESS_CACHE") else tmp_path_factory.mktemp("cache")
    done = run_cli(["bootstrap", "--profile", "smoke", "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1]), cache  # the path is printed last


@pytest.fixture(scope="session")
def guard_base(smoke_base):
    """The regression guard's base (smoke in float64, harness.regress.MACHINE_INDEPENDENT), built by
    the unmodified code into the same cache: a test that breaks a scorer and runs the guard must
    find it there, not build (and cache) a base with the broken scorer. CI's `harness regress`
    afterwards reuses it. (path, cache folder)"""
    from harness.regress import MACHINE_INDEPENDENT

    _, cache = smoke_base
    done = run_cli(["bootstrap", "--profile", "smoke", "--quiet", *MACHINE_INDEPENDENT], cache)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1]), cache


def random_groups(vocab: int, pad_id: int, prompt_lens, group_sizes, response_lengths: tuple[int, int],
                  seed: int = 0) -> list[ScoredSequence]:
    """Groups of random sequences for the update's tests: group g has `group_sizes[g]` responses of
    a shared random prompt of `prompt_lens[g]` tokens, each response of a length drawn from
    [low, high) and a random advantage; no token is the pad token."""
    g = torch.Generator().manual_seed(seed)
    tokens = [t for t in range(vocab) if t != pad_id]

    def draw(n: int) -> list[int]:
        return [tokens[k] for k in torch.randint(len(tokens), (n,), generator=g).tolist()]

    seqs = []
    for group, (prompt_len, size) in enumerate(zip(prompt_lens, group_sizes)):
        prompt = draw(prompt_len)
        for _ in range(size):
            response = draw(int(torch.randint(*response_lengths, (1,), generator=g)))
            seqs.append(ScoredSequence(ids=prompt + response, prompt_len=prompt_len, group=group, rollout_logp=[],
                                       advantage=float(torch.randn(1, generator=g))))
    return seqs
