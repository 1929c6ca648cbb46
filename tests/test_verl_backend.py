"""The verl backend's own parts, without verl (`tox -e py`): what the recipe compiles to, the dry
run's files and its bad input, and verl's metrics read back as the harness's rows.
tests/test_verl.py checks the same outputs against verl itself (`tox -e verl`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from harness.backends.verl.compile import compile_arm, plan_steps, segment_bounds
from harness.backends.verl.data import overlong_prompts
from harness.backends.verl.metrics import harness_rows, read_segment_logs, read_verl_log
from harness.config import ConfigError, load_config

from .conftest import SHARED_DATA, run_cli

VERL_LOG = Path(__file__).parent / "data" / "verl_file_logger.jsonl"

SEGMENT_KEYS = {"actor_rollout_ref.model.path", "trainer.total_training_steps", "trainer.resume_mode",
                "actor_rollout_ref.actor.checkpoint.load_contents",
                "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"}
"""The keys a segment of the chain sets itself (compile._segment_pairs), never the shared overrides."""


def job(recipe: str, profile: str = "prorlv2-1.5b", nodes: int = 8, gpus: int = 8, overrides=(), checkpoints="/c",
        address=None, budget=False, extra=()):
    """The compiled job; `budget`: under the comparison's budget (plan_steps), as `harness compare` compiles it."""
    cfg = load_config(profile, list(overrides), recipe=recipe)
    return compile_arm(cfg, recipe, model="M", train_file=Path("/d/train.parquet"), val_file=Path("/d/val.parquet"),
                       reward_module=Path("/h/reward.py"), checkpoints=Path(checkpoints), metrics_dir=Path("/m"),
                       nodes=nodes, gpus_per_node=gpus, experiment="x", address=address,
                       plan=plan_steps(cfg) if budget else None, extra_overrides=tuple(extra), tensorboard_dir=Path("/tb"))


def values(j, segment: int = 0) -> dict[str, str]:
    return dict(o.split("=", 1) for o in j.segment_overrides(segment))


def later_steps(rows: list[tuple[int, dict]], shift: int) -> list[tuple[int, dict]]:
    """Hand-written records in verl 0.9.1's file-logger format (the keys of tests/data/verl_file_logger.jsonl):
    the recorded steps again, `shift` steps later, with their counters moved on."""
    return [(step + shift, {**d, "training/global_step": step + shift}) for step, d in rows]


def write_log(path: Path, records: list[tuple[int, dict]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": step, "data": d}) + "\n" for step, d in records))
    return path


@pytest.mark.parametrize("recipe, n, prompts, mini, lr", [("prorl", 16, 512, 128, 1e-6), ("brorl", 512, 128, 32, 2**1.5 * 1e-6)])
def test_paper_recipes_compile_to_the_paper_batch(recipe, n, prompts, mini, lr):
    v = values(job(recipe))
    assert int(v["actor_rollout_ref.rollout.n"]) == n and int(v["data.train_batch_size"]) == prompts
    assert int(v["actor_rollout_ref.actor.ppo_mini_batch_size"]) == mini  # 4 mini-batches for both arms
    assert float(v["actor_rollout_ref.actor.optim.lr"]) == pytest.approx(lr)
    assert v["actor_rollout_ref.actor.clip_ratio_low"] == "0.2" and v["actor_rollout_ref.actor.clip_ratio_high"] == "0.27"
    assert v["actor_rollout_ref.actor.kl_loss_type"] == "mse" and float(v["actor_rollout_ref.actor.kl_loss_coef"]) == 1e-4
    assert v["algorithm.adv_estimator"] == "reinforce_plus_plus_baseline"
    assert v["algorithm.rollout_correction.rollout_is"] == "token"
    assert v["algorithm.rollout_correction.rollout_is_threshold"] == "'0.5_5.0'"
    assert v["algorithm.filter_groups.enable"] == "true" and v["actor_rollout_ref.rollout.enable_prefix_caching"] == "true"
    assert v["data.max_response_length"] == "16384" and v["actor_rollout_ref.actor.use_dynamic_bsz"] == "true"
    assert (v["trainer.nnodes"], v["trainer.n_gpus_per_node"]) == ("8", "8")
    keys = [o.split("=", 1)[0] for o in job(recipe).overrides]
    assert len(keys) == len(set(keys)), "an override given twice"


def test_what_verl_cannot_express_is_listed():
    j = job("brorl", budget=True)
    text = " ".join(j.not_expressed)
    assert "budget_kind=wall_s" in text and "watcher" in text and "ignores filter_groups.max_num_gen_batches" in text
    assert "ref_reset_every" not in text  # carried by the chain of segments (below)
    assert any(tr.harness_key == "train.ref_reset_every" and "resumed" in tr.verl for tr in j.translations)
    off = job("prorl", overrides=["train.tis=false", "train.clip_ratio_c=null"])
    assert values(off)["algorithm.rollout_correction.rollout_is"] == "null"
    assert values(off)["actor_rollout_ref.actor.clip_ratio_c"] == "1000000000.0"


@pytest.mark.parametrize("steps, every, bounds", [
    (1000, 200, [(1, 200), (201, 400), (401, 600), (601, 800), (801, 1000)]),
    (1000, 300, [(1, 300), (301, 600), (601, 900), (901, 1000)]),  # R does not divide the total
    (6, 3, [(1, 3), (4, 6)]),
    (1000, 0, [(1, 1000)]),  # never reset
    (1000, 1000, [(1, 1000)]),  # the reset would follow the last step
    (1000, 5000, [(1, 1000)]),
])
def test_segment_bounds(steps, every, bounds):
    assert segment_bounds(steps, every) == bounds


@pytest.mark.parametrize("recipe", ["prorl", "brorl"])
def test_the_reference_reset_is_a_chain_of_verl_resumes(recipe):
    """prorlv2-1.5b: 1,000 steps, reset every 200. Segment k > 0 starts verl from the HF checkpoint
    of the step before its first (the reference), resumes verl's newest checkpoint (resume_mode=auto:
    that step's, or a later save of its own after a failure) and stops at its last step; each logs
    to its own file."""
    j = job(recipe)
    assert [(s.first_step, s.last_step) for s in j.segments] == segment_bounds(1000, 200)
    assert not SEGMENT_KEYS & {o.split("=", 1)[0] for o in j.overrides}, "a per-segment key among the shared ones"
    first = values(j, 0)
    assert first["actor_rollout_ref.model.path"] == "M" and first["trainer.resume_mode"] == "auto"
    assert first["trainer.total_training_steps"] == "200" and "trainer.resume_from_path" not in first
    assert first["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"] == "/m/segment0.jsonl"
    for seg in j.segments[1:]:
        v = values(j, seg.index)
        start = seg.first_step - 1
        assert v["actor_rollout_ref.model.path"] == f"/c/global_step_{start}/actor/huggingface"
        assert v["trainer.resume_mode"] == "auto" and "trainer.resume_from_path" not in v
        assert v["trainer.total_training_steps"] == str(seg.last_step)
        assert v["actor_rollout_ref.actor.checkpoint.load_contents"] == "[model,optimizer,extra]"  # ProRLv2 keeps it
        assert v["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"] == f"/m/segment{seg.index}.jsonl"
        keys = [o.split("=", 1)[0] for o in j.segment_overrides(seg.index)]
        assert len(keys) == len(set(keys)), "an override given twice"
    assert values(j, 4)["trainer.total_training_steps"] == "1000"
    assert values(j)["trainer.save_freq"] == "20"  # and verl saves each segment's last step (fit: is_last_step)


def test_a_period_that_does_not_divide_the_steps_ends_with_a_short_segment():
    j = job("brorl", overrides=["train.ref_reset_every=300"])
    last = j.segments[-1]
    assert (last.first_step, last.last_step) == (901, 1000)
    assert values(j, last.index)["actor_rollout_ref.model.path"] == "/c/global_step_900/actor/huggingface"


@pytest.mark.parametrize("every", [0, 1000, 5000])
def test_no_reset_before_the_end_is_one_verl_run(every):
    j = job("prorl", overrides=[f"train.ref_reset_every={every}"])
    assert len(j.segments) == 1
    v = values(j)
    assert (v["actor_rollout_ref.model.path"], v["trainer.total_training_steps"], v["trainer.resume_mode"]) == \
        ("M", "1000", "auto")
    assert j.script().count("verl.trainer.main_ppo") == 1


def test_the_v1_reset_also_resets_the_optimizer():
    j = job("prorl", overrides=["train.reset_optimizer_with_ref=true"])
    assert all(values(j, s.index)["actor_rollout_ref.actor.checkpoint.load_contents"] == "[model]"
               for s in j.segments[1:])
    assert "actor_rollout_ref.actor.checkpoint.load_contents" not in values(j, 0)


def test_save_every_zero_still_saves_the_last_step():
    """verl saves nothing with save_freq <= 0, not even the last step: save_every=0 ("at the end only") is
    save_freq=steps, so only the segments' last steps are saved."""
    assert values(job("prorl", overrides=["train.save_every=0"]))["trainer.save_freq"] == "1000"


FAKE_VERL = """#!/usr/bin/env bash
# stands in for `python3 -m verl.trainer.main_ppo OVERRIDES`: records the call, then saves its last step as
# verl's _save_checkpoint does (global_step_<k>/ and the tracker), unless told to fail or not to save
echo "$*" >> "$CALLS"
for arg in "$@"; do
    case "$arg" in
        trainer.total_training_steps=*) last="${arg#*=}" ;;
        trainer.default_local_dir=*) dir="${arg#*=}" ;;
    esac
done
[ "$last" = "${FAIL_AT:-}" ] && exit 3
[ "$last" = "${NO_SAVE_AT:-}" ] && exit 0
mkdir -p "$dir/global_step_$last"
printf %s "$last" > "$dir/latest_checkpointed_iteration.txt"
"""

FAKE_RAY = """#!/usr/bin/env bash
# stands in for `ray job submit --address=A -- COMMAND`: runs COMMAND here
echo "ray $1 $2 $3" >> "$CALLS"
shift 4
exec "$@"
"""


def run_script(tmp_path: Path, j, **env) -> tuple[int, list[str], str]:
    """command.sh with fake `python3` and `ray` first on PATH: (exit code, the verl calls, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("python3", FAKE_VERL), ("ray", FAKE_RAY)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "command.sh"
    script.write_text(j.script())
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), **env})
    return done.returncode, calls.read_text().splitlines(), done.stderr


def test_command_sh_runs_the_segments_in_order_and_a_rerun_skips_the_saved_ones(tmp_path):
    j = job("brorl", profile="smoke", nodes=1, gpus=1, overrides=["train.ref_reset_every=2"],
            checkpoints=str(tmp_path / "c"))
    code, calls, _ = run_script(tmp_path, j)
    assert code == 0 and len(calls) == 3
    assert [next(a for a in c.split() if a.startswith("trainer.total_training_steps=")) for c in calls] == \
        ["trainer.total_training_steps=2", "trainer.total_training_steps=4", "trainer.total_training_steps=6"]
    assert "actor_rollout_ref.model.path=" + str(tmp_path / "c" / "global_step_4" / "actor" / "huggingface") in calls[2]
    code, calls, _ = run_script(tmp_path, j)
    assert code == 0 and calls == []  # all saved: nothing runs again


def test_command_sh_stops_at_a_failed_segment_and_reruns_it(tmp_path):
    j = job("brorl", profile="smoke", nodes=1, gpus=1, overrides=["train.ref_reset_every=2"],
            checkpoints=str(tmp_path / "c"))
    code, calls, _ = run_script(tmp_path, j, FAIL_AT="4")
    assert code == 3 and len(calls) == 2  # segment 2 never started
    code, calls, _ = run_script(tmp_path, j)
    assert code == 0 and len(calls) == 2 and "trainer.total_training_steps=4" in calls[0]  # segment 0 skipped


def test_command_sh_stops_at_a_segment_that_ended_without_saving(tmp_path):
    """A stopped Ray job makes `ray job submit` exit 0: the chain checks verl's tracker, not only the exit code."""
    j = job("brorl", profile="smoke", nodes=1, gpus=1, checkpoints=str(tmp_path / "c"))
    code, calls, stderr = run_script(tmp_path, j, NO_SAVE_AT="3")
    assert code == 1 and len(calls) == 1 and "segment 0 ended without verl's checkpoint of step 3" in stderr


def test_command_sh_submits_each_segment_with_an_address(tmp_path):
    j = job("brorl", profile="smoke", nodes=1, gpus=1, checkpoints=str(tmp_path / "c"), address="http://head:8265")
    code, calls, _ = run_script(tmp_path, j)
    assert code == 0 and calls[0::2] == ["ray job submit --address=http://head:8265"] * 2  # 2 segments, each submitted
    assert calls[1].startswith("-m verl.trainer.main_ppo ")


def test_segment_logs_are_read_in_step_order(tmp_path):
    """Two segments of 3 steps: the recorded file, and the same records hand-written 3 steps later in
    verl 0.9.1's key format. Running sums (samples, wall time) continue across the segments."""
    recorded = read_verl_log(VERL_LOG)
    first = write_log(tmp_path / "segment0.jsonl", recorded)
    second = write_log(tmp_path / "segment1.jsonl", later_steps(recorded, 3))
    records = read_segment_logs([(1, 3, first), (4, 6, second), (7, 9, tmp_path / "segment2.jsonl")])  # 2: not run
    rows = harness_rows(records, n=4, prompts_per_step=2)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["wall_s"] == pytest.approx(2 * (3.0 + 3.5 + 2.5))
    assert rows[3]["samples_generated"] == rows[2]["samples_generated"] + 24 and rows[3]["ds_pass_rate"] == rows[0]["ds_pass_rate"]


def test_segment_logs_not_of_one_chain_are_one_clear_error(tmp_path):
    recorded = read_verl_log(VERL_LOG)
    first = write_log(tmp_path / "segment0.jsonl", recorded)
    with pytest.raises(ConfigError, match="outside its segment's steps 4-6"):
        read_segment_logs([(1, 3, first), (4, 6, first)])
    with pytest.raises(ConfigError, match="of an earlier segment, does not"):
        read_segment_logs([(1, 3, tmp_path / "none.jsonl"), (4, 6, write_log(tmp_path / "s1.jsonl", later_steps(recorded, 3)))])
    with pytest.raises(ConfigError, match="twice"):
        read_segment_logs([(1, 3, write_log(tmp_path / "dup.jsonl", recorded + recorded[:1]))])


def test_a_prepared_run_folder_imports_its_segments(tmp_path):
    """prepare() as `harness train --backend verl` calls it (base given: nothing is built), then verl's
    two segment files as they would be: metrics.jsonl has all six steps."""
    from harness.jobs import train_verl

    cfg = load_config("smoke", ["base.checkpoint=/x/base"], recipe="brorl")
    out = tmp_path / "run"
    j = train_verl.prepare(cfg, "brorl", out, train_verl.VerlOptions(nodes=1, gpus_per_node=1), log=lambda _: None)
    assert [(s.first_step, s.last_step) for s in j.segments] == [(1, 3), (4, 6)]
    meta = json.loads((out / "config.json").read_text())
    assert [s["overrides"] for s in meta["verl"]["segments"]] == [s.overrides for s in j.segments]
    with pytest.raises(ConfigError, match="has not logged a step yet"):
        train_verl.import_verl_run(out)
    recorded = read_verl_log(VERL_LOG)
    logs = out / "verl" / "metrics"
    write_log(logs / "segment0.jsonl", recorded)
    write_log(logs / "segment1.jsonl", later_steps(recorded, 3))
    rows = [json.loads(line) for line in train_verl.import_verl_run(out).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and {r["backend"] for r in rows} == {"verl"}


def test_mini_batches_that_do_not_divide_the_prompts_are_refused():
    with pytest.raises(ConfigError, match="train.mini_batches"):
        job("brorl", overrides=["train.mini_batches=3"])


def test_verl_log_becomes_harness_rows():
    """The recorded file in verl's file-logger format (keys as verl 0.9.1 logs them)."""
    records = read_verl_log(VERL_LOG)
    rows = harness_rows(records, n=4, prompts_per_step=2)
    assert [r["step"] for r in rows] == [1, 2, 3]
    first = rows[0]
    # verl counts the evicted and surplus "samples" in groups (prompt uids): 2 kept + 4 evicted groups of n=4
    assert first["ds_pass_rate"] == pytest.approx(2 / (2 + 4))
    assert first["gen_samples_per_s"] == pytest.approx(24 / 2.0)
    assert first["samples_generated"] == 24 and rows[-1]["wall_s"] == pytest.approx(3.0 + 3.5 + 2.5)
    assert rows[1]["ds_pass_rate"] == pytest.approx((2 + 2) / (2 + 2 + 0))  # surplus groups passed too
    assert rows[1]["samples_generated"] == 24 + 16 and rows[2]["samples_generated"] == 24 + 16 + 8
    assert first["reward_mean"] == 0.5 and first["kl"] == 0.001


def test_a_malformed_verl_log_line_is_one_clear_error(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"step": 1, "data": {}}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_verl_log(bad)


def test_dry_run_bad_input_is_one_line(tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", "brorl", "--backend", "verl", "--profile", "smoke", "--nodes", "0", "--dry-run",
                    "--out", str(out)], tmp_path / "cache")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--nodes" in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_dry_run_writes_command_data_and_translation(smoke_base, tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", "prorl", "--backend", "verl", "--profile", "smoke", "--gpus-per-node", "1", "--dry-run",
                    "--out", str(out)], smoke_base[1])
    assert done.returncode == 0, done.stderr
    folder = out / "verl"
    assert {p.name for p in folder.iterdir()} >= {"command.sh", "overrides.txt", "translation.md", "data"}
    assert (folder / "data" / "train.parquet").stat().st_size > 0 and "dry run: nothing ran" in done.stdout
    meta = json.loads((out / "config.json").read_text())
    assert meta["backend"] == "verl" and meta["verl"]["overrides"] == (folder / "overrides.txt").read_text().split()
    assert len(meta["verl"]["segments"]) == 2  # smoke: 6 steps, reference reset every 3
    assert "prompts: every prompt fits in 1024 tokens" in (folder / "translation.md").read_text()


def test_the_prompts_verl_would_drop_are_counted_by_task(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    lengths = {"short": 3, "long": 40}
    records = [{"data_source": "reasoning_gym", "prompt": [{"role": "user", "content": " ".join(["7"] * n)}],
                "extra_info": {"task": task}} for task, n in lengths.items() for _ in range(2)]
    limit = len(tokenizer(" ".join(["7"] * 20), add_special_tokens=False)["input_ids"])
    note = overlong_prompts(records, str(tmp_path / "tok"), limit)
    assert note.startswith(f"2 of 4 prompts exceed {limit} tokens") and note.endswith("reasoning_gym/long 2")
    assert overlong_prompts(records, str(tmp_path / "tok"), 10_000).startswith("every prompt fits in 10000 tokens")
    assert overlong_prompts(records, str(tmp_path / "no-such-model"), limit).startswith("prompt lengths NOT counted")


LOCAL_PAPER_DATA = [
    f"suites.math.data_dir={SHARED_DATA / 'math'}", "suites.math.benchmarks=[aime24,aime25,amc,math500,minerva]",
    f"suites.math.train_data={SHARED_DATA / 'math' / 'olympiadbench.jsonl'}", "suites.math.validation_items=100",
    f"suites.code.data_dir={SHARED_DATA / 'code'}", "suites.code.benchmarks=[codeforces]",
    f"suites.code.train_data={SHARED_DATA / 'code' / 'code_contests.jsonl'}", "suites.code.validation_items=20",
]
"""The paper profile's suites on ../shared/data: math trained on OlympiadBench (evaluated on the other
five), code trained on code_contests (evaluated on codeforces); Reasoning Gym is its own prorl96."""


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_paper_dry_run_writes_the_data_of_all_three_domains(tmp_path):
    """The acceptance dry run (brorl, prorlv2-1.5b, 8 x 8) with local data in place of the hub ids
    writes train.parquet with every domain and all 96 Reasoning Gym tasks (the pool cut to 288 items per
    domain, 3 per task, here: the profile's 40,000 take ~5 min on 2 cores), and leaves no generator's
    file behind."""
    out = tmp_path / "run"
    done = run_cli(["train", "brorl", "--backend", "verl", "--profile", "prorlv2-1.5b", "--nodes", "8",
                    "--gpus-per-node", "8", "--dry-run", "--out", str(out), *LOCAL_PAPER_DATA, "train.prompt_pool=288"],
                   tmp_path / "cache", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    translation = (out / "verl" / "translation.md").read_text()
    assert "data: 679 training rows, 24 validation rows" in translation
    import pyarrow.parquet as pq

    train = pq.read_table(out / "verl" / "data" / "train.parquet").to_pylist()
    tasks = Counter(r["extra_info"]["task"] for r in train if r["data_source"] == "reasoning_gym")
    assert len(tasks) == 96 and set(tasks.values()) == {3}
    assert Counter(r["data_source"] for r in train) == {"math": 288, "code": 103, "reasoning_gym": 288}
    # nothing written into the working directory (cache/ is the harness cache the test gave: its item cache)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["run"]
    assert "prompt lengths NOT counted (the tokenizer of nvidia/Nemotron-Research-Reasoning-Qwen-1.5B" in translation


@pytest.mark.slow
def test_a_comparison_made_from_verl_metrics_renders_like_a_local_one(smoke_base, tmp_path, monkeypatch):
    """`harness compare --backend verl` with verl's execution replaced by its outputs: smoke's 6 steps
    are two segments (reference reset every 3), each with its file-logger file (the recorded one, then
    the same records hand-written 3 steps later) and the HF checkpoints verl would save (every 2 steps
    and each segment's last: 2, 3, 4, 6; the smoke base's weights stand in for verl's). Everything
    after verl is the real path: metrics read back from both segments, matched-spend checkpoints
    picked among all segments' checkpoints, evaluated in process, and the report rendered."""
    import shutil

    from harness.jobs import train_verl
    from harness.jobs.compare import run_compare
    from harness.report import render

    base, cache = smoke_base
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    ran = []
    recorded = read_verl_log(VERL_LOG)

    def replay(job, out, verl=None, log=print, timeout_s=None):
        ran.append(job.arm)
        assert [(s.first_step, s.last_step) for s in job.segments] == [(1, 3), (4, 6)]
        folder = out / train_verl.VERL
        write_log(folder / train_verl.METRICS_DIR / "segment0.jsonl", recorded)
        write_log(folder / train_verl.METRICS_DIR / "segment1.jsonl", later_steps(recorded, 3))
        for step in (2, 3, 4, 6):
            shutil.copytree(base, folder / "checkpoints" / f"global_step_{step}" / "actor" / "huggingface")
        return 0

    monkeypatch.setattr(train_verl, "run", replay)
    out = tmp_path / "cmp"
    overrides = ["compare.budget_kind=steps", "compare.budget=6", "train.steps=6"]
    run_compare("smoke", ["prorl", "brorl"], out, overrides, progress=False, log=lambda _: None,
                verl=train_verl.VerlOptions(nodes=1, gpus_per_node=1))
    assert sorted(ran) == ["brorl", "prorl"]
    folder = out / "arms" / "brorl" / "seed0"
    assert list(train_verl.hf_checkpoints(folder)) == [2, 3, 4, 6]  # both segments'
    render(out)
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["method"], r["step"]) for r in summary["rows"]}
    assert {("prorl", 3), ("prorl", 6), ("brorl", 3), ("brorl", 6)} <= rows, rows  # eval points 0.5 and 1.0
    assert summary["complete"] and (out / "tables.md").is_file() and (out / "figure1.png").is_file()
    assert (folder / "verl" / "command.sh").read_text().count("verl.trainer.main_ppo") == 2
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6] and metrics[0]["ds_pass_rate"] < 1.0
    assert [m["backend"] for m in metrics] == ["verl"] * 6
