"""Matched spend, the budget and verl's metrics under `--backend verl`, without verl or Ray (fast tier):
which checkpoint serves a budget point (both backends' rule, harness/runs.py), each arm's steps and
checkpoint interval from the comparison's budget (`plan_steps`), the keys the import requires, the
watcher's decision, the user's overrides and loggers. tests/test_verl_ray.py runs the same parts
against a real local Ray with a stand-in for verl's trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.verl.compile import compile_arm, plan_steps
from harness.backends.verl.metrics import REQUIRED, MetricsError, harness_rows, next_attempt, read_segment_logs
from harness.config import ConfigError, load_config
from harness.runs import Budget, SpendError, point_steps


def rows_of(spend: list[float]) -> list[dict]:
    """Metrics rows with cumulative samples `spend` (steps 1, 2, ...)."""
    return [{"step": i + 1, "samples_generated": s} for i, s in enumerate(spend)]


def test_the_nearest_kept_checkpoint_at_or_under_each_point_serves_it():
    rows = rows_of([100, 200, 300, 400, 500, 600, 700, 800])
    budget = Budget("samples", 800)
    # points 400, 600, 800 -> steps 4, 6, 8 at matched spend; kept every 3 steps and the last
    assert point_steps(rows, budget, [0.5, 0.75], kept={3, 6, 8}) == {0.5: 3, 0.75: 6, 1.0: 8}
    assert point_steps(rows, budget, [0.5], kept=None) == {0.5: 4, 1.0: 8}  # the in-process run keeps every point


def test_a_point_only_the_base_could_serve_for_lack_of_saves_is_refused_naming_arm_point_and_saves():
    rows = rows_of([100, 200, 300, 400, 500, 600, 700, 800])
    with pytest.raises(SpendError, match=r"brorl seed 0: budget point 0.25 \(200 samples\) falls after step 2, but no "
                                         r"checkpoint at or under it was kept \(saved steps: \[3, 6, 8\]\)"):
        point_steps(rows, Budget("samples", 800), [0.25], kept={3, 6, 8}, arm="brorl seed 0")


def test_the_base_stands_for_a_point_only_when_the_first_step_passed_it():
    rows = rows_of([300, 600, 900])
    assert point_steps(rows, Budget("samples", 900), [0.25], kept={3}) == {0.25: 0, 1.0: 3}
    assert point_steps(rows_of([300]), Budget("samples", 900), [0.25], kept=set()) == {0.25: 0, 1.0: None}


def test_the_paper_profile_gives_each_arm_its_own_steps_and_an_interval_serving_every_point():
    plans = {arm: plan_steps(load_config("prorlv2-1.5b", recipe=arm)) for arm in ("prorl", "brorl")}
    # 133.8 h x 32 samples/s over 8,192 and 65,536 samples per step; ProRL capped by train.steps
    assert (plans["prorl"].steps, plans["brorl"].steps) == (1000, 235)
    assert plans["brorl"].point_steps == [58, 117, 176, 235] and plans["brorl"].watched
    for plan in plans.values():
        assert plan.save_every == 20 and plan.save_every <= plan.point_steps[0]  # train.save_every, honoured


@pytest.mark.parametrize("amount, steps, every", [(8192 * 100, 100, 25), (8192 * 103, 103, 6)])
def test_a_samples_budget_is_steps_of_the_arms_batch_and_zero_chooses_the_interval(amount, steps, every):
    cfg = load_config("prorlv2-1.5b", ["compare.budget_kind=samples", f"compare.budget={amount}", "train.save_every=0"],
                      recipe="prorl")
    plan = plan_steps(cfg)
    assert plan.steps == steps and plan.save_every == every
    assert all(p % every == 0 for p in plan.point_steps) if every == 25 else plan.point_steps[0] // 4 == every


def test_a_given_interval_that_misses_the_first_point_of_a_step_budget_is_refused():
    cfg = load_config("prorlv2-1.5b", ["compare.budget_kind=steps", "compare.budget=40", "train.save_every=20"],
                      recipe="brorl")
    with pytest.raises(ConfigError, match=r"'train.save_every': 20; the first budget point of this arm is step 10"):
        plan_steps(cfg)


def record(step: int, **data) -> tuple[int, dict]:
    return step, {"timing_s/step": 10.0, "timing_s/gen": 6.0, "response_length/mean": 100.0, "critic/score/mean": 0.5, **data}


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_a_required_key_verl_did_not_write_is_an_error_naming_key_file_and_step(tmp_path, key):
    path = tmp_path / "segment0.jsonl"
    steps = [record(1), record(2)]
    del steps[1][1][key]
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in steps))
    with pytest.raises(MetricsError, match=rf"'{key}' .* at step 2 of '{path}'"):
        read_segment_logs([(1, 2, path)])


def test_optional_keys_absent_read_as_what_verl_means_by_their_absence():
    rows = harness_rows([record(1)], n=4, prompts_per_step=2)
    assert rows[0]["samples_generated"] == 8 and rows[0]["ds_pass_rate"] == 1.0 and rows[0]["loss"] is None


def test_a_rerun_segment_keeps_its_earlier_attempt_and_its_steps_replace_those_from_its_resume(tmp_path):
    path = tmp_path / "segment0.jsonl"
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in [record(i) for i in (1, 2, 3)]))
    assert next_attempt(path) == tmp_path / "segment0.attempt1.jsonl" and not path.exists()
    # verl resumed at its save of step 2: steps 3 and 4 again
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in [record(i, **{"timing_s/step": 1.0})
                                                                                    for i in (3, 4)]))
    records = read_segment_logs([(1, 4, path)])
    assert [(s, d["timing_s/step"]) for s, d in records] == [(1, 10.0), (2, 10.0), (3, 1.0), (4, 1.0)]


def compiled(overrides=(), extra=(), profile="smoke"):
    cfg = load_config(profile, list(overrides), recipe="brorl")
    return compile_arm(cfg, "brorl", model="M", train_file=Path("/d/t.parquet"), val_file=Path("/d/v.parquet"),
                       reward_module=Path("/h/r.py"), checkpoints=Path("/c"), metrics_dir=Path("/m"), nodes=1,
                       gpus_per_node=1, experiment="x", extra_overrides=tuple(extra), tensorboard_dir=Path("/tb"))


def test_user_overrides_come_after_the_compiled_ones():
    j = compiled(extra=["trainer.val_before_train=true", "+actor_rollout_ref.rollout.foo=1"])
    assert j.overrides[-2:] == ["trainer.val_before_train=true", "+actor_rollout_ref.rollout.foo=1"]
    assert j.overrides.index("trainer.val_before_train=false") < j.overrides.index("trainer.val_before_train=true")
    with pytest.raises(ConfigError, match="--verl-override: 'oops'; expected key=value"):
        compiled(extra=["oops"])


def test_loggers_map_to_verls_trainer_logger_and_the_file_logger_is_always_kept():
    j = compiled(["train.loggers=[console,tensorboard,wandb]"])
    assert "trainer.logger=[console,file,tensorboard,wandb]" in j.overrides
    assert "+ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR=/tb" in j.overrides
    assert "trainer.logger=[console,file]" in compiled().overrides
    with pytest.raises(ConfigError, match="train.loggers"):
        load_config("smoke", ["train.loggers=[slack]"])


def test_a_tracker_that_is_not_installed_is_refused_in_one_line():
    import importlib.util

    from harness.jobs.trackers import check_trackers

    missing = [name for name in ("wandb", "mlflow") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("wandb and mlflow are both installed here")
    with pytest.raises(ConfigError, match=rf"'train.loggers': {missing[0]} is not installed here \(pip install {missing[0]}\)"):
        check_trackers(load_config("smoke", [f"train.loggers=[console,file,{missing[0]}]"]))
    check_trackers(load_config("smoke", ["train.loggers=[console,file,tensorboard]"]))  # no package needed
