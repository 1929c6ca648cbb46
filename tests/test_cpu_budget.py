"""The `cpu_s` budget (issue 32): the meter counts this process and its long-lived scoring workers,
and no process outside that tree; `run_training` stops at the CPU budget with each step's scoring
charged to it; folders and checkpoints written before cpu_s existed render and resume as before.
A stand-in trainer burns measured CPU in a real ScorerPool worker (no model is trained)."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

import harness.jobs.train
from harness.config import ConfigError, load_config
from harness.execution import cpu
from harness.execution.bounded import ScoreResult, ScorerPool
from harness.jobs.train import run_training
from harness.report import render
from harness.report.summary import BUSY_MARGIN, build_summary, busy_wait, load_warning
from harness.runs import CHECKPOINTS, METRICS_FILE, STATE_FILE, Budget, point_steps, read_metrics
from tests.test_stats import make_comparison

pytestmark = pytest.mark.skipif(not os.path.isfile(f"/proc/{os.getpid()}/stat"), reason="the meter reads /proc (Linux)")


def burn(seconds: float, tag: int = 0) -> ScoreResult:
    """A scorer that spends `seconds` of its own CPU (`tag` keeps calls distinct: the pool dedups)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return ScoreResult(1.0, "correct")


def test_the_meter_counts_a_live_worker_that_getrusage_misses():
    with ScorerPool(workers=1, timeout_s=30) as pool:
        pool.map(burn, [(0.01, 0)])  # the worker exists and stays alive
        own = cpu._rusage_s()
        before = cpu.tree_cpu_s()
        pool.map(burn, [(0.3, 1), (0.3, 2)])
        counted = cpu.tree_cpu_s() - before
        missed = cpu._rusage_s() - own  # RUSAGE_SELF + RUSAGE_CHILDREN: the worker has not exited
    assert counted >= 0.55, counted
    assert missed < 0.2, missed


ORPHAN = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork():
        os._exit(0)
    print(os.getpid(), flush=True)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1), os.dup2(null, 2)  # the caller's pipes close: it does not wait for this process
    end = time.time() + 20
    while time.time() < end:
        pass
    os._exit(0)
os.wait()
"""


def _own_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_meter_ignores_a_busy_process_outside_its_tree():
    """A busy loop daemonised away from this process (double fork: reparented) is not ours."""
    done = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=30)
    orphan = int(done.stdout.split()[0])
    try:
        with open(f"/proc/{orphan}/stat") as fh:
            assert int(fh.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
        before, orphan_before = cpu.tree_cpu_s(), _own_cpu_s(orphan)
        deadline = time.time() + 15
        while _own_cpu_s(orphan) - orphan_before < 0.5 and time.time() < deadline:
            time.sleep(0.1)
        burnt, counted = _own_cpu_s(orphan) - orphan_before, cpu.tree_cpu_s() - before
    finally:
        os.kill(orphan, 9)
    assert burnt >= 0.5, burnt
    assert counted < 0.2, (counted, burnt)


class BurningTrainer:
    """Each step spends `worker_s` of CPU in a scoring worker and `own_s` in this process."""

    name = "burning"

    def __init__(self, model, pool: ScorerPool, worker_s: float, own_s: float):
        self.policy, self.pool, self.worker_s, self.own_s = model, pool, worker_s, own_s
        self.step_count = 0

    def settings(self):
        return {"trainer": self.name, "n": 1, "prompts_per_step": 1, "learning_rate": 0.0}

    def step(self):
        self.step_count += 1
        self.pool.map(burn, [(self.worker_s, self.step_count)])
        burn(self.own_s)
        return {"step": self.step_count, "samples_generated": self.step_count, "tokens_generated": self.step_count,
                "reward_mean": 0.0, "ds_pass_rate": 1.0}

    def state_dict(self):
        return {"step": self.step_count}

    def load_state_dict(self, state):
        self.step_count = state["step"]


@pytest.fixture
def base(tmp_path, model, tokenizer):
    path = tmp_path / "base"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def train(out, base, monkeypatch, pool, budget: Budget, resume=False, fractions=(0.5,)):
    monkeypatch.setattr(harness.jobs.train, "get_builder",
                        lambda name: lambda *, model, **_: BurningTrainer(model, pool, worker_s=0.12, own_s=0.03))
    cfg = load_config("smoke", ["suites.enabled=[math]", "rollout.device=cpu", "train.save_every=0"])
    run_training(cfg, "burning", out, resume=resume, base=str(base), progress=False, log=lambda _: None,
                 budget=budget, checkpoint_fractions=fractions)
    return read_metrics(out / METRICS_FILE)


def test_training_stops_at_the_cpu_budget_with_the_workers_cpu_charged(tmp_path, base, monkeypatch):
    threads = torch.get_num_threads()
    with ScorerPool(workers=1, timeout_s=30) as pool:
        rows = train(tmp_path / "run", base, monkeypatch, pool, Budget("cpu_s", 0.9))
    # one torch thread while metered (no spinning at barriers), torch's own setting back afterwards
    assert json.loads((tmp_path / "run" / "config.json").read_text())["torch_threads"] == 1
    assert torch.get_num_threads() == threads
    spent = [r["cpu_s"] for r in rows]
    assert spent[-1] >= 0.9 and spent[-2] < 0.9  # the step that reached the budget was the last
    steps = [b - a for a, b in zip([0.0] + spent, spent)]
    assert all(s >= 0.14 for s in steps), steps  # each step's worker CPU (0.12) and own (0.03) are in it
    assert len(rows) <= 6  # 0.15 s of CPU a step: 6 steps reach 0.9
    assert all("loadavg_1m" in r and r["wall_s"] > 0 for r in rows)
    state = torch.load(tmp_path / "run" / CHECKPOINTS / f"step_{len(rows):06d}" / STATE_FILE, weights_only=False)
    assert state["cpu_s"] == pytest.approx(spent[-1])
    points = point_steps(rows, Budget("cpu_s", 0.9), [0.5])
    assert points[0.5] == max(r["step"] for r in rows if r["cpu_s"] <= 0.45)


def _as_old_code_wrote(out) -> None:
    """Strip what the harness writes since cpu_s (metrics cpu_s, loadavg_1m; state cpu_s)."""
    rows = [{k: v for k, v in r.items() if k not in ("cpu_s", "loadavg_1m")} for r in read_metrics(out / METRICS_FILE)]
    (out / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for path in (out / CHECKPOINTS).glob(f"step_*/{STATE_FILE}"):
        state = torch.load(path, weights_only=False)
        state.pop("cpu_s", None)
        torch.save(state, path)


def test_a_run_written_before_cpu_s_resumes_under_its_own_kind_and_refuses_cpu_s(tmp_path, base, monkeypatch):
    out = tmp_path / "run"
    with ScorerPool(workers=1, timeout_s=30) as pool:
        train(out, base, monkeypatch, pool, Budget("samples", 2), fractions=())
        _as_old_code_wrote(out)
        with pytest.raises(ConfigError, match="records no CPU seconds"):
            train(out, base, monkeypatch, pool, Budget("cpu_s", 5.0), resume=True, fractions=())
        rows = train(out, base, monkeypatch, pool, Budget("samples", 4), resume=True, fractions=())
    assert [r["samples_generated"] for r in rows] == [1, 2, 3, 4]
    assert all("cpu_s" not in r for r in rows)  # no CPU seconds counted from the resume alone
    assert all("loadavg_1m" in r for r in rows[2:])


def test_machine_load_is_summarised_and_warned_about_only_when_busy(tmp_path):
    old = make_comparison(tmp_path / "old", {"a": [20, 40], "b": [35, 70]})
    assert build_summary(old)["machine_load"] is None and load_warning(build_summary(old)) is None

    def with_load(name, load):
        out = make_comparison(tmp_path / name, {"a": [20, 40], "b": [35, 70]})
        for run in out.glob("arms/*/seed*"):
            rows = [{**r, "loadavg_1m": load, "cpu_s": 1.5 * r["wall_s"]} for r in read_metrics(run / METRICS_FILE)]
            (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
            meta = json.loads((run / "config.json").read_text())
            (run / "config.json").write_text(json.dumps({**meta, "provenance": {"machine": {"usable_cpus": 2}}}))
        return out

    quiet = build_summary(with_load("quiet", 2.0 + BUSY_MARGIN - 0.1))
    assert not quiet["machine_load"]["busy"] and load_warning(quiet) is None
    busy_dir = with_load("busy", 2.0 + BUSY_MARGIN + 0.1)
    busy = render(busy_dir)
    load = busy["machine_load"]
    assert load["busy"] and load["usable_cpus"] == 2 and load["per_run"][0]["cpu_per_wall"] == pytest.approx(1.5)
    warning = load_warning(busy)
    assert warning.startswith("WARNING: the machine was busy") and "\n" not in warning and "samples budget is not moved" in warning
    assert "Machine load while the arms trained: mean 1-minute load average 2.60" in (busy_dir / "tables.md").read_text()


def test_where_waits_are_recorded_they_decide_busy_not_the_load_that_counts_the_run_itself(tmp_path):
    def with_waits(name, wait_share):
        out = make_comparison(tmp_path / name, {"a": [20, 40], "b": [35, 70]})
        for run in out.glob("arms/*/seed*"):
            rows, before = [], 0.0
            for r in read_metrics(run / METRICS_FILE):  # the run's own tasks keep the load near 2.7 on 2 CPUs
                rows.append({**r, "loadavg_1m": 2.7, "cpu_s": 1.3 * r["wall_s"], "cpu_wait_s": wait_share * (r["wall_s"] - before)})
                before = r["wall_s"]
            (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
            meta = json.loads((run / "config.json").read_text())
            (run / "config.json").write_text(json.dumps({**meta, "provenance": {"machine": {"usable_cpus": 2}}}))
        return out

    line = busy_wait("samples")  # make_comparison's budget kind
    assert busy_wait("wall_s") == line < busy_wait("cpu_s")  # one hog already moves wall-clock, not yet CPU
    idle = build_summary(with_waits("idle", line * 0.7))["machine_load"]
    assert idle["busy_rule"] == "wait" and not idle["busy"] and idle["wait_per_wall_max"] == pytest.approx(line * 0.7)
    shared_dir = with_waits("shared", line * 1.5)
    shared = render(shared_dir)
    assert shared["machine_load"]["busy"] and shared["machine_load"]["busy_threshold"] == line
    warning = load_warning(shared)
    assert warning.startswith(f"WARNING: the machine was busy while the arms trained (on average {line * 1.5:.2f} of a run's")
    assert "CPU wait / wall-clock (tasks kept waiting for a core): a seed 0 " in (shared_dir / "tables.md").read_text()


def test_a_cpu_s_comparison_names_its_kind_and_shows_hours_beside_it(tmp_path):
    out = make_comparison(tmp_path / "cpu", {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]})
    meta = json.loads((out / "config.json").read_text())
    meta["budget"]["kind"] = "cpu_s"
    (out / "config.json").write_text(json.dumps(meta))
    for run in out.glob("arms/*/seed*"):  # the spends above as CPU seconds, wall-clock twice that
        rows = [{**r, "cpu_s": float(r["samples_generated"]), "wall_s": 2.0 * r["samples_generated"]}
                for r in read_metrics(run / METRICS_FILE)]
        (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = render(out)
    tables = (out / "tables.md").read_text()
    assert "100 cpu_s (CPU seconds of training (the training process and its scoring workers))" in tables
    assert "| spent (cpu_s) | hours |" in tables
    final_a = next(r for r in summary["rows"] if r["method"] == "a" and 1.0 in r["eval_points"])
    assert final_a["spent"] == 100 and final_a["hours"] == pytest.approx(200 / 3600)
    assert (out / "figure1.png").stat().st_size > 0


def test_only_a_cpu_budget_changes_the_threads_and_a_users_setting_stands_with_a_warning():
    from harness.jobs.train import training_threads

    before, said = torch.get_num_threads(), []
    with training_threads(load_config("smoke"), Budget("samples", 10), said.append) as threads:
        assert threads == before == torch.get_num_threads()
    with training_threads(load_config("smoke"), Budget("cpu_s", 10), said.append) as threads:
        assert threads == 1 == torch.get_num_threads()
    assert not said and torch.get_num_threads() == before
    with training_threads(load_config("smoke", ["torch_threads=2"]), Budget("cpu_s", 10), said.append) as threads:
        assert threads == 2 == torch.get_num_threads()
    assert len(said) == 1 and said[0].startswith("warning: torch_threads=2 under a cpu_s budget")
    assert torch.get_num_threads() == before
