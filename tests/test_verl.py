"""The verl backend against verl itself (`tox -e verl`: verl 0.9.1, torch 2.13 CPU, transformers < 5.11).

Without verl installed (`tox -e py`) these skip. What runs here without a GPU, verl's own code each time:
- the compiled overrides of every segment of the chain that carries the reference reset compose
  with verl's Hydra config (`ppo_trainer`) and pass `verl.utils.config.validate_config` for 1 node x
  1 GPU (smoke: 2 segments) and 8 nodes x 8 GPUs at the paper's batch (prorlv2-1.5b, both arms: 5
  segments); the v1 variant's `load_contents=[model]` makes verl's checkpoint manager load neither
  the optimizer nor the lr scheduler; verl's `run_ppo` hands each segment's file-logger path to
  `ray.init`; verl's `FileLogger` starts its file anew (why each segment has its own);
- the reward module, loaded as verl loads a custom reward function (`get_custom_reward_fn`), gives
  the suites' own rewards on real responses and returns within its bound on a program that never
  ends;
- the parquet files load with verl's `RLHFDataset`.
Where it stops: a verl run itself. verl 0.9's trainer places its workers on GPUs through Ray
resource pools and its rollout is vLLM's GPU server; there is no CPU device path in main_ppo, so
a smoke run on this machine is not possible (README, status).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import load_config
from suites import build_suite

HAVE_VERL = importlib.util.find_spec("verl") is not None
pytestmark = [pytest.mark.verl, pytest.mark.skipif(not HAVE_VERL, reason="verl is not installed (tox -e verl installs it)")]


def dry_run(tmp_path: Path, recipe: str, profile: str, nodes: int, gpus: int, *overrides: str) -> tuple[Path, dict]:
    out = tmp_path / f"{profile}-{recipe}"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "train", recipe, "--backend", "verl", "--profile", profile,
                           "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--dry-run", "--out", str(out), *overrides],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    return out, json.loads((out / "config.json").read_text())


def compose(overrides: list[str]):
    import verl.trainer
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(verl.trainer.__file__).parent / "config"), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def validate(cfg) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def segment_configs(meta: dict) -> list:
    """verl's composed and validated config of each segment of the run's chain, in order."""
    configs = []
    for seg in meta["verl"]["segments"]:
        cfg = compose([*meta["verl"]["overrides"], *seg["overrides"]])
        validate(cfg)
        configs.append(cfg)
    return configs


def check_chain(meta: dict, configs: list, out: Path) -> None:
    """Each segment as verl reads it: segment 0 from the base, segment k > 0 from the HF checkpoint of
    the step before its first (model.path: the reference's weights); every one resuming verl's newest
    checkpoint (resume_mode=auto: its own last save after a failure); each to its last step, logging
    to its own file."""
    checkpoints = out / "verl" / "checkpoints"
    for seg, cfg in zip(meta["verl"]["segments"], configs):
        trainer, start = cfg.trainer, seg["first_step"] - 1
        assert trainer.total_training_steps == seg["last_step"] and trainer.default_local_dir == str(checkpoints)
        assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == \
            str(out / "verl" / "metrics" / f"segment{seg['index']}.jsonl")
        assert trainer.resume_mode == "auto"
        if seg["index"] == 0:
            assert cfg.actor_rollout_ref.model.path == meta["base_checkpoint"]
        else:
            assert cfg.actor_rollout_ref.model.path == str(checkpoints / f"global_step_{start}" / "actor" / "huggingface")
    assert configs[-1].trainer.total_training_steps == meta["config"]["train"]["steps"]


@pytest.fixture(scope="module")
def smoke_job(smoke_base, tmp_path_factory):
    return dry_run(tmp_path_factory.mktemp("verl"), "brorl", "smoke", 1, 1)


def test_smoke_job_composes_and_validates_on_one_gpu(smoke_job):
    out, meta = smoke_job
    configs = segment_configs(meta)
    assert len(configs) == 2  # smoke: 6 steps, reference reset every 3
    check_chain(meta, configs, out)
    cfg = configs[0]
    rollout, actor = cfg.actor_rollout_ref.rollout, cfg.actor_rollout_ref.actor
    arm = meta["arm"]
    assert rollout.n == arm["n"] and cfg.data.train_batch_size == arm["prompts_per_step"]
    assert actor.ppo_mini_batch_size * meta["config"]["train"]["mini_batches"] == arm["prompts_per_step"]
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.kl_loss_type) == (0.2, 0.27, "mse")
    assert cfg.algorithm.adv_estimator == "reinforce_plus_plus_baseline" and cfg.algorithm.filter_groups.enable
    assert cfg.reward.custom_reward_function.path.endswith("harness/backends/verl/reward.py")
    assert (out / "verl" / "command.sh").read_text().count("verl.trainer.main_ppo") == 2
    # ProRLv2 keeps the optimizer: segment 1 loads all verl saved but the HF copy
    assert list(configs[1].actor_rollout_ref.actor.checkpoint.load_contents) == ["model", "optimizer", "extra"]
    assert "hf_model" in configs[1].actor_rollout_ref.actor.checkpoint.save_contents


@pytest.mark.parametrize("recipe", ["prorl", "brorl"])
def test_paper_batch_composes_and_validates_on_8_by_8(tmp_path, recipe):
    out, meta = dry_run(tmp_path, recipe, "prorlv2-1.5b", 8, 8)
    configs = segment_configs(meta)
    assert [(c.trainer.total_training_steps) for c in configs] == [200, 400, 600, 800, 1000]
    check_chain(meta, configs, out)
    cfg = configs[0]
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node) == (8, 8)
    assert (cfg.actor_rollout_ref.rollout.n, cfg.data.train_batch_size) == ((16, 512) if recipe == "prorl" else (512, 128))
    assert cfg.data.max_response_length == 16384
    assert not any("ref_reset_every" in line for line in meta["verl"]["not_expressed"])


def test_user_overrides_and_loggers_compose_and_validate(tmp_path):
    """--verl-override after the compiled overrides (verl.md: the last value wins) and train.loggers as
    trainer.logger, through verl's own Hydra config and validation."""
    out, meta = dry_run(tmp_path, "prorl", "smoke", 1, 1, "--verl-override", "trainer.val_before_train=true",
                        "--verl-override", "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
                        "train.loggers=[console,file,tensorboard]")
    assert (out / "verl" / "overrides.txt").read_text().splitlines()[-2:] == [
        "trainer.val_before_train=true", "actor_rollout_ref.rollout.gpu_memory_utilization=0.3"]
    cfg = segment_configs(meta)[0]
    assert cfg.trainer.val_before_train is True and cfg.actor_rollout_ref.rollout.gpu_memory_utilization == 0.3
    assert list(cfg.trainer.logger) == ["console", "file", "tensorboard"]
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR == str((out / "tb").resolve())


def test_the_v1_reset_loads_the_weights_only(tmp_path):
    """train.reset_optimizer_with_ref: verl's checkpoint manager, given the composed load_contents, loads
    the model shards but neither the optimizer nor the 'extra' state (lr scheduler and RNG)."""
    from types import SimpleNamespace

    from verl.utils.checkpoint.checkpoint_manager import BaseCheckpointManager

    out, meta = dry_run(tmp_path, "prorl", "smoke", 1, 1, "train.reset_optimizer_with_ref=true")
    configs = segment_configs(meta)
    check_chain(meta, configs, out)
    contents = list(configs[1].actor_rollout_ref.actor.checkpoint.load_contents)
    assert contents == ["model"]
    manager = SimpleNamespace(checkpoint_load_contents=contents)
    loads = {name: getattr(BaseCheckpointManager, f"should_load_{name}").fget(manager)
             for name in ("model", "optimizer", "extra")}
    assert loads == {"model": True, "optimizer": False, "extra": False}


def test_run_ppo_gives_each_segment_its_file_logger_path(smoke_job, monkeypatch):
    """verl's own run_ppo, with Ray replaced by a recorder: the runtime env it passes to ray.init (which
    every actor of the job, the TaskRunner that opens the file included, inherits) names the segment's
    file, on top of verl's own env vars."""
    import verl.trainer.main_ppo as main_ppo

    out, meta = smoke_job
    calls = {}

    class Runner:
        @classmethod
        def remote(cls):
            return cls()

        class run:  # noqa: N801 - the shape of a Ray actor method
            @staticmethod
            def remote(config):
                calls["run"] = config

    monkeypatch.setattr(main_ppo.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(main_ppo.ray, "init", lambda **kwargs: calls.setdefault("init", kwargs))
    monkeypatch.setattr(main_ppo.ray, "get", lambda ref: None)
    for seg, cfg in zip(meta["verl"]["segments"], segment_configs(meta)):
        calls.clear()
        main_ppo.run_ppo(cfg, task_runner_class=Runner)
        env = calls["init"]["runtime_env"]["env_vars"]
        assert env["VERL_FILE_LOGGER_PATH"] == str(out / "verl" / "metrics" / f"segment{seg['index']}.jsonl")
        assert "VLLM_LOGGING_LEVEL" in env or "VLLM_LOGGING_LEVEL" in os.environ  # verl's defaults kept
        assert calls["run"] is cfg


def test_verls_file_logger_starts_its_file_anew(tmp_path, monkeypatch):
    """Why each segment logs to its own file: a second FileLogger on the same path (a resumed run)
    erases the first one's steps."""
    from verl.utils.tracking import FileLogger

    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    for step in (1, 2):
        logger = FileLogger("harness", "x")
        logger.log({"critic/score/mean": 0.5}, step=step)
        logger.finish()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2]


def test_validation_catches_a_batch_that_does_not_divide(smoke_job):
    """The check is real: with fixed micro-batches, 2 prompts x 512 samples on 3 GPUs is refused."""
    _, meta = smoke_job
    cfg = compose([*meta["verl"]["overrides"], *meta["verl"]["segments"][0]["overrides"],
                   "actor_rollout_ref.actor.use_dynamic_bsz=false",
                   "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1", "trainer.n_gpus_per_node=3"])
    with pytest.raises((AssertionError, ValueError)):
        validate(cfg)


def load_verl_reward(module_path: str):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": module_path, "name": "compute_score"}}})
    return get_custom_reward_fn(config)


def test_reward_module_loaded_as_verl_loads_it_gives_the_suites_rewards(smoke_job):
    import pyarrow.parquet as pq

    out, meta = smoke_job
    fn = load_verl_reward(meta["verl"]["overrides"][[o.split("=")[0] for o in meta["verl"]["overrides"]].index(
        "reward.custom_reward_function.path")].split("=", 1)[1])
    rows = pq.read_table(out / "verl" / "data" / "train.parquet").to_pylist()
    cfg = load_config("smoke", [], recipe="brorl")
    checked = 0
    for name in cfg.suites.enabled:
        suite = build_suite(name, cfg.suites, cfg.seed)
        items = {it.id: it for it in suite.items("train", cfg.train.prompt_pool)}
        for row in [r for r in rows if r["data_source"] == name][:3]:
            item = items[row["extra_info"]["item_id"]]
            for response in (item.target, "no idea", ""):
                got = fn(data_source=row["data_source"], solution_str=response,
                         ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
                assert got["score"] == suite.score(response, item).reward, (name, response)
                checked += 1
    assert checked == 27


def test_reward_module_returns_within_its_bound_on_a_program_that_never_ends(smoke_job):
    import pyarrow.parquet as pq

    out, meta = smoke_job
    path = [o for o in meta["verl"]["overrides"] if o.startswith("reward.custom_reward_function.path=")][0].split("=", 1)[1]
    fn = load_verl_reward(path)
    row = next(r for r in pq.read_table(out / "verl" / "data" / "train.parquet").to_pylist() if r["data_source"] == "code")
    info = {**row["extra_info"], "timeout_s": 3.0}
    start = time.perf_counter()
    got = fn(data_source="code", solution_str="```python\nwhile True:\n    pass\n```",
             ground_truth=row["reward_model"]["ground_truth"], extra_info=info)
    assert time.perf_counter() - start < 3.0 + 5.0
    assert got["score"] == 0.0 and got["timeout"] == 1.0


def test_parquet_loads_with_verls_dataset_class(smoke_job, smoke_base):
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out, _ = smoke_job
    tokenizer = AutoTokenizer.from_pretrained(str(smoke_base[0]))
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": True,
                               "truncation": "error", "return_raw_chat": True})
    data = RLHFDataset(data_files=[str(out / "verl" / "data" / "train.parquet")], tokenizer=tokenizer, config=config)
    assert len(data) > 0
    row = data[0]
    assert row["data_source"] in ("math", "code", "reasoning_gym") and row["raw_prompt"][0]["role"] == "user"
    assert json.loads(row["reward_model"]["ground_truth"]) is not None
