"""End to end on the `smoke` profile: bootstrap a base, evaluate it, as a user would from the CLI."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.config import load_config
from harness.jobs.base_model import bootstrap
from tests.conftest import run_cli as _cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_checkpoint(smoke_base):
    return smoke_base


def test_bootstrap_writes_a_plain_transformers_checkpoint(smoke_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    path, _ = smoke_checkpoint
    assert (path / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(model, Qwen2ForCausalLM)
    AutoTokenizer.from_pretrained(path)
    info = json.loads((path / "bootstrap.json").read_text())
    # both phases ran and were recorded: supervised warm-up, then RL until a plateau or the cap
    phases = [p["phase"] for p in info["curve"]]
    assert phases[0] == "sft" and "rl" in phases, info["curve"]
    assert info["rl_stopped"] in ("plateau", "max_steps") and info["rl_steps"] >= 1
    assert info["curve"][0]["val_pass_at_1"] < info["val_pass_at_1"] < 0.85, info["curve"]
    assert (path / "early" / "config.json").is_file()  # the second baseline point on the RL curve
    # the supervised-only model, before RL: a different model from the base
    sft = load_file(path / "sft" / "model.safetensors")
    final = load_file(path / "model.safetensors")
    assert any(not torch.equal(sft[k], final[k]) for k in final)


def test_second_bootstrap_reuses_the_cache(smoke_checkpoint):
    path, cache = smoke_checkpoint
    before = (path / "model.safetensors").stat().st_mtime_ns
    done = _cli(["bootstrap", "--profile", "smoke", "--quiet"], cache)
    assert done.returncode == 0
    assert Path(done.stdout.strip().splitlines()[-1]) == path
    assert "reusing" in done.stderr
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_eval_writes_the_documented_json(smoke_checkpoint, tmp_path):
    path, cache = smoke_checkpoint
    out = tmp_path / "f"
    done = _cli(["eval", str(path), "--suites", "reasoning_gym", "--profile", "smoke", "--out", str(out), "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    assert "reasoning_gym" in done.stdout and "pass@1" in done.stdout
    record = json.loads((out / "eval.json").read_text())
    assert record["checkpoint"] == str(path)
    rg = record["suites"]["reasoning_gym"]
    assert rg["k"] == 16
    assert rg["n_items"] == load_config("smoke").suites.reasoning_gym.eval_items
    assert 0.05 < rg["pass_at_1"] < 0.95  # a trained base, not a random model
    assert rg["mean_output_tokens"] > 1
    assert sum(rg["statuses"].values()) == 16 * rg["n_items"]
    assert record["provenance"]["packages"]["transformers"].startswith("5.")
    assert not list(out.glob(".eval.json.*"))  # no temporary left behind
    assert len(list((out / "responses").glob("*.jsonl.gz"))) == 1  # every response kept


def test_bootstrap_is_deterministic_from_the_seed(tmp_path):
    overrides = ["bootstrap.max_steps=6", "bootstrap.check_every=3", "bootstrap.train_items_per_task=300",
                 "bootstrap.check_items=6", "bootstrap.check_k=2"]
    weights = []
    for run in ("a", "b"):
        cfg = load_config("smoke", overrides + [f"cache_dir={tmp_path / run}"])
        path = bootstrap(cfg, progress=False, log=lambda _: None)
        weights.append(load_file(path / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    changed = load_config("smoke", overrides + ["seed=1", f"cache_dir={tmp_path / 'c'}"])
    other = load_file(bootstrap(changed, progress=False, log=lambda _: None) / "model.safetensors")
    assert any(not torch.equal(other[k], weights[0][k]) for k in other)
