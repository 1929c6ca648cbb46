"""The ΔQ_pos probe (`train.probe_every`): the policy's mass on known-correct responses before and
after an update, measured without changing the training, and its place in the comparison report."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.config import Config, ConfigError, TrainConfig, load_config, to_dict
from harness.jobs.base_model import checkpoint_dir
from harness.report import build_summary, render
from harness.report.summary import PROBE_FIELDS
from harness.runs import TIMING_KEYS, read_metrics
from suites.base import Item
from tests.conftest import run_cli
from tests.test_stats import make_comparison
from trainers import rollout_scaling
from trainers.core import probe_mass_change
from trainers.grpo import _logprobs, probe_sequences

GOLDEN = Path(__file__).parent / "data" / "comparison_without_probe.tables.md"
"""tables.md of `make_comparison(..., {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]})` as the
harness rendered it before the probe existed (commit 882eca6): a folder without probe fields must
still render exactly so."""


def test_probe_metrics_by_hand():
    before, after = torch.tensor([-1.0, -2.0]), torch.tensor([-0.5, -3.0])
    m = probe_mass_change(before, after)
    assert m["probe_q_pos"] == pytest.approx((math.exp(-0.5) + math.exp(-3.0)) / 2)
    assert m["probe_delta_q_pos"] == pytest.approx((math.exp(-0.5) - math.exp(-1) + math.exp(-3) - math.exp(-2)) / 2)
    assert m["probe_fell"] == 0.5 and m["probe_logp_delta"] == pytest.approx(-0.25)
    # a mass below float64's range: the summed log-prob still says what moved
    tiny = probe_mass_change(torch.tensor([-800.0]), torch.tensor([-799.0]))
    assert tiny["probe_delta_q_pos"] == 0.0 and tiny["probe_logp_delta"] == pytest.approx(1.0) and tiny["probe_fell"] == 0.0
    # the change is exact where subtracting two masses 1e-12 apart would keep four digits
    small = probe_mass_change(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([-1.0 + 1e-12], dtype=torch.float64))
    assert small["probe_delta_q_pos"] == pytest.approx(math.exp(-1) * 1e-12, rel=1e-9)


def _pool(n: int):
    return [(None, Item(id=f"s/t/{i}", task="t", prompt=f"What is {i} + {i}?", reference=str(2 * i),
                        target=f"<answer>{2 * i}</answer>" if i % 3 else "")) for i in range(n)]


def test_probe_set_is_fixed_by_the_seed_and_holds_items_with_a_target(tokenizer):
    pool = _pool(30)
    seqs = probe_sequences(pool, tokenizer, seed=0, k=8)
    assert len(seqs) == 8 and [s.group for s in seqs] == list(range(8))
    assert [s.ids for s in probe_sequences(pool, tokenizer, seed=0, k=8)] == [s.ids for s in seqs]
    assert [s.ids for s in probe_sequences(pool, tokenizer, seed=1, k=8)] != [s.ids for s in seqs]
    from harness.checkpoint import render_prompts

    rendered = {tuple(tokenizer(render_prompts(tokenizer, [it.prompt])[0], add_special_tokens=False)["input_ids"]): it
                for _, it in pool}
    for s in seqs:
        item = rendered[tuple(s.ids[: s.prompt_len])]  # the chat-rendered prompt, tokenised as the engine does
        assert item.target  # only items with a reference response
        assert s.ids[s.prompt_len:] == tokenizer(item.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(probe_sequences(pool, tokenizer, seed=0, k=100)) == 20  # every item with a target, no more
    with pytest.raises(ConfigError, match="train.probe_every.*no training item has a reference response"):
        probe_sequences([(None, Item("s/t/0", "t", "q", "r", ""))], tokenizer, seed=0, k=4)


def test_probe_logp_is_the_targets_probability_at_the_trainers_temperature(model, tokenizer):
    seqs = probe_sequences(_pool(12), tokenizer, seed=0, k=4)
    t = TrainConfig(temperature=1.3, micro_batch_tokens=64, logit_chunk_tokens=5)
    with torch.no_grad():
        got = [float(v.double().sum()) for v in _logprobs(model, seqs, t, tokenizer.pad_token_id)]
        for s, value in zip(seqs, got):
            logits = model(torch.tensor([s.ids])).logits[0].double() / 1.3
            logp = torch.log_softmax(logits, -1)
            want = sum(float(logp[j - 1, s.ids[j]]) for j in range(s.prompt_len, len(s.ids)))
            assert value == pytest.approx(want, abs=1e-4)


def test_probe_is_off_by_default_documented_bounded_and_not_part_of_the_base():
    cfg = load_config("smoke", recipe="prorl")
    assert cfg.train.probe_every == 0 and cfg.train.probe_items == 32
    for bad in ("train.probe_every=-1", "train.probe_items=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config("smoke", [bad])
    # the probe changes no number of the training, so a probed run starts from the same cached base
    probed = load_config("smoke", ["train.probe_every=1", "train.probe_items=8", "train.rollout_scaling.samples_per_step=256"])
    assert checkpoint_dir(probed) == checkpoint_dir(load_config("smoke"))


def test_a_comparison_written_before_the_probe_existed_still_resumes():
    from harness.jobs.compare import config_changes

    new = to_dict(load_config("smoke", recipe="prorl"))
    old = json.loads(json.dumps(new))
    for section, key in (("train", "probe_every"), ("train", "probe_items")):
        del old[section][key]
    del old["train"]["rollout_scaling"]["samples_per_step"]
    defaults = to_dict(Config())
    assert config_changes(old, new, defaults=defaults) == []  # the fields added since, at their defaults
    assert config_changes(old, new) == ["train.probe_every", "train.probe_items", "train.rollout_scaling.samples_per_step"]
    probed = to_dict(load_config("smoke", ["train.probe_every=1"], recipe="prorl"))
    assert config_changes(old, probed, defaults=defaults) == ["train.probe_every"]  # turning it on is a change


def test_samples_per_step_holds_a_steps_samples_across_n():
    cfg = load_config("smoke", recipe="brorl")
    arm = rollout_scaling.settings(cfg.train)
    held = {n: rollout_scaling.settings(load_config("smoke", [f"train.rollout_scaling.n={n}",
                                                             "train.rollout_scaling.samples_per_step=1024"], recipe="brorl").train)
            for n in (4, 16, 512)}
    assert {n: s.prompts_per_step for n, s in held.items()} == {4: 256, 16: 64, 512: 2}
    assert {s.learning_rate for s in held.values()} == {arm.learning_rate}  # one ratio, one learning rate
    assert (held[512].n, held[512].prompts_per_step, held[512].learning_rate) == (arm.n, arm.prompts_per_step, arm.learning_rate)
    bad = load_config("smoke", ["train.rollout_scaling.n=48", "train.rollout_scaling.samples_per_step=1024"], recipe="brorl")
    with pytest.raises(ConfigError, match="48 does not divide"):
        rollout_scaling.settings(bad.train)


def _add_probe(run: Path, deltas: list[float]) -> None:
    rows = read_metrics(run / "metrics.jsonl")
    for row, d in zip(rows, deltas):
        row.update({"probe_q_pos": 0.1, "probe_delta_q_pos": d, "probe_fell": 0.5 if d < 0 else 0.25,
                    "probe_logp_delta": 10 * d, "probe_s": 0.01})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_without_probe_fields_renders_as_before_and_with_them_adds_its_table(tmp_path):
    spends = {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]}
    out = make_comparison(tmp_path / "old", spends)
    summary = render(out)
    assert (out / "tables.md").read_text() == GOLDEN.read_text()
    assert all("probe" not in e for e in summary["efficiency"].values())

    out = make_comparison(tmp_path / "new", spends)
    for seed, deltas in ((0, [-1e-3, 2e-3, -1e-4, 5e-4, 1e-3]), (1, [1e-3, 1e-3, -1e-3, 1e-3, 1e-3])):
        _add_probe(out / "arms" / "a" / f"seed{seed}", deltas)
    for seed in (0, 1):
        _add_probe(out / "arms" / "b" / f"seed{seed}", [1e-3, 2e-3, 3e-3])
    summary = render(out)
    a, b = summary["efficiency"]["a"]["probe"], summary["efficiency"]["b"]["probe"]
    assert a["per_seed"]["fall_rate"] == [0.4, 0.2] and a["fall_rate"] == pytest.approx(0.3)
    assert b["fall_rate"] == 0.0 and b["per_seed"]["probed_updates"] == [3, 3]
    tables = (out / "tables.md").read_text()
    assert "### ΔQ_pos on the policy" in tables and "| a | 16 | 5 | 30 ± 14% |" in tables and "| b | 16 | 3 | 0 ± 0% |" in tables
    # everything else is the table it was
    head, rest = tables.split("\n### ΔQ_pos on the policy", 1)
    tail = rest.split("\n\n", 3)[3]
    assert head + "\n" + tail == GOLDEN.read_text()
    assert build_summary(out)["efficiency"]["a"]["ds_pass_rate"] == summary["efficiency"]["a"]["ds_pass_rate"]


@pytest.mark.slow
def test_probe_logs_its_fields_and_changes_nothing_else(smoke_base, tmp_path):
    """`harness train prorl --profile smoke train.probe_every=1` logs ΔQ_pos every step; weights and
    every other non-timing metric are bit for bit those of the run without the probe."""
    base, cache = smoke_base
    args = ["train", "prorl", "--profile", "smoke", "--quiet", "--base", str(base), "train.steps=2"]
    runs = {}
    for every in (0, 1):
        out = tmp_path / f"probe{every}"
        done = run_cli(args + ["--out", str(out), f"train.probe_every={every}"], cache)
        assert done.returncode == 0, done.stderr
        runs[every] = out
    plain, probed = (read_metrics(runs[k] / "metrics.jsonl") for k in (0, 1))
    assert all(not set(PROBE_FIELDS + ("probe_s",)) & set(r) for r in plain)
    for row in probed:
        assert set(PROBE_FIELDS + ("probe_s",)) <= set(row)
        assert 0 < row["probe_q_pos"] <= 1 and 0 <= row["probe_fell"] <= 1 and math.isfinite(row["probe_logp_delta"])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_KEYS and k not in PROBE_FIELDS} for r in rows]
    assert strip(plain) == strip(probed)
    a, b = (load_file(runs[k] / "checkpoints" / "step_000002" / "model.safetensors") for k in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
