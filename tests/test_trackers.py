"""train.loggers' optional trackers for real, without a network (tox -e trackers): a two-step smoke
run streams every step's numbers to W&B in offline mode and to an MLflow file store in its folder,
the same values that metrics.jsonl holds; a resumed run goes on in the same W&B run and a second
MLflow run of the same experiment. Skipped where wandb or mlflow is not installed."""

from __future__ import annotations

import json

import pytest

from harness.runs import METRICS_FILE
from tests.conftest import run_cli

wandb = pytest.importorskip("wandb")
mlflow = pytest.importorskip("mlflow")
pytestmark = [pytest.mark.slow, pytest.mark.trackers]


def _train(out, cache, steps, resume=False):
    return run_cli(["train", "prorl", "--profile", "smoke", "--quiet", "--out", str(out), f"train.steps={steps}",
                    "train.loggers=[console,file,wandb,mlflow]", *(["--resume"] if resume else [])], cache)


def _mlflow_metric(out, name: str, monkeypatch) -> list[tuple[int, float]]:
    """(step, value) of one metric over every run of the run folder's file store. The reader needs
    MLFLOW_ALLOW_FILE_STORE as the harness sets it for its own store; only while it reads, so the
    runs themselves never get it from here."""
    with monkeypatch.context() as env:
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = mlflow.tracking.MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
        experiment = client.get_experiment_by_name("harness")
        runs = client.search_runs([experiment.experiment_id])
        return sorted((m.step, m.value) for run in runs for m in client.get_metric_history(run.info.run_id, name))


def test_a_run_streams_its_steps_to_wandb_offline_and_an_mlflow_file_store(smoke_base, tmp_path, monkeypatch):
    _, cache = smoke_base
    monkeypatch.setenv("WANDB_MODE", "offline")  # run_cli passes the environment on
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    done = _train(out, cache, 2)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]

    expected = [(r["step"], pytest.approx(float(r["reward_mean"]))) for r in rows]
    assert _mlflow_metric(out, "reward_mean", monkeypatch) == expected

    offline = sorted((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((out / "wandb").iterdir())
    assert _in_wandb_log(offline[0], rows)

    again = _train(out, cache, 3, resume=True)  # the same W&B run id (resume="allow"), a second MLflow run
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert _mlflow_metric(out, "reward_mean", monkeypatch) == [(r["step"], pytest.approx(float(r["reward_mean"]))) for r in rows]
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert {p.name.rsplit("-", 1)[-1] for p in runs} == {offline[0].name.rsplit("-", 1)[-1]}  # one run id
    assert _in_wandb_log(runs[-1], rows[2:])  # the resumed step went to the run's own log


def _in_wandb_log(run_dir, rows) -> bool:
    """Whether an offline W&B run's log (run-<id>.wandb: protobuf records; wandb 0.31 ships no Python
    reader for it) holds each row's reward_mean as W&B serialises it, under that key."""
    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    return b"reward_mean" in data and all(json.dumps(r["reward_mean"]).encode() in data for r in rows)
