"""The experiment trackers of `train.loggers` for the harness's own trainer: the same metric names, per
step, that the run's metrics.jsonl and tb/ hold (and that verl's `trainer.logger` streams under
`--backend verl`), so a run shows up in the tracker its user already reads.

console and file are the run's progress bar and metrics.jsonl, tensorboard its tb/ folder (always
written: the folder layout has it). wandb and mlflow are optional packages: a run that names one
that is not installed is refused in one line before anything is written (`check_trackers`).
W&B runs offline with WANDB_MODE=offline; MLflow writes where MLFLOW_TRACKING_URI says, by default
a file store in the run folder (mlruns/; MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE
is set, which the harness sets for that default only: it needs no database package, and
`mlflow migrate-filestore` moves it into a database store later). Tested for real, offline, in
`tox -e trackers` (tests/test_trackers.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from harness.config import Config, ConfigError

OPTIONAL = {"wandb": "wandb", "mlflow": "mlflow"}
"""train.loggers entries that need a package, by the package's import name."""


def check_trackers(cfg: Config) -> None:
    """Refuse in one line a tracker of train.loggers whose package is not installed here."""
    for name, module in OPTIONAL.items():
        if name in cfg.train.loggers and importlib.util.find_spec(module) is None:
            raise ConfigError(f"invalid value for 'train.loggers': {name} is not installed here (pip install {module}); "
                              "install it or leave it out (valid without it: console, file, tensorboard)")


class Trackers:
    """The optional trackers a run streams its numeric metrics to, step by step."""

    def __init__(self, cfg: Config, out: Path, name: str):
        check_trackers(cfg)
        self.wandb = self.mlflow = None
        if "wandb" in cfg.train.loggers:
            import wandb  # lazy: an optional package, imported only when train.loggers names it

            self.wandb = wandb.init(project="harness", name=name, dir=str(out), config={"profile": cfg.profile},
                                    resume="allow", id=_run_id(out, name))
        if "mlflow" in cfg.train.loggers:
            import mlflow  # lazy: an optional package, imported only when train.loggers names it

            if "MLFLOW_TRACKING_URI" in os.environ:
                mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
            else:  # the run folder's own file store: MLflow 3 refuses one unless told it is wanted
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
            mlflow.set_experiment("harness")
            self.mlflow = mlflow
            mlflow.start_run(run_name=name)

    def log(self, row: dict) -> None:
        """The row's numbers (not its step, not booleans) at its step."""
        values = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self.wandb is not None:
            self.wandb.log(values, step=int(row["step"]))
        if self.mlflow is not None:
            self.mlflow.log_metrics(values, step=int(row["step"]))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.mlflow is not None:
            self.mlflow.end_run()


def _run_id(out: Path, name: str) -> str:
    """A W&B run id stable across resumes of one run folder."""
    return hashlib.sha256(f"{Path(out).resolve()}:{name}".encode()).hexdigest()[:16]
