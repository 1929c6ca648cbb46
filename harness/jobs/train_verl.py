"""`harness train RECIPE --backend verl`: one arm compiled to verl and run on Ray, read back as a run folder.

    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --dry-run
    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --address http://HEAD:8265

Layout of the run folder (`--out`):

    verl/command.sh        the command that runs the arm (verl's own entry point, Hydra overrides)
    verl/overrides.txt     the overrides, one per line
    verl/translation.md    what each recipe value became in verl, and what verl cannot express
    verl/data/train.parquet, verl/data/val.parquet   the suites' items in verl's layout
    verl/verl_metrics.jsonl  verl's file logger (VERL_FILE_LOGGER_PATH), once it has run
    verl/checkpoints/global_step_<k>/actor/huggingface/   verl's HF-format checkpoints
    metrics.jsonl, config.json   the harness's run files, made from verl's (`import_verl_run`)

`--dry-run` writes everything but the last two lines and runs nothing. Without it, the command runs
here (verl starts a local Ray) or is submitted with `ray job submit --address`; the metrics are then
read back, so `harness eval` takes the HF checkpoints and `harness report` the comparison folders.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import provenance
from harness.backends.verl import compile as verl_compile
from harness.backends.verl import reward as verl_reward
from harness.backends.verl.data import write_data
from harness.backends.verl.metrics import harness_rows, read_verl_log
from harness.config import Config, ConfigError, UserError, to_dict
from harness.jobs.base_model import base_checkpoint
from harness.runs import CHECKPOINTS, METRICS_FILE, write_json_atomic, write_text_atomic

VERL = "verl"
"""The run folder's subfolder for verl's files."""

VERL_METRICS = "verl_metrics.jsonl"


@dataclass(frozen=True)
class VerlOptions:
    """Where and how verl runs (the `--backend verl` options of train and compare)."""

    nodes: int = 1
    """Nodes of the Ray cluster."""
    gpus_per_node: int = 8
    """GPUs per node."""
    address: str | None = None
    """Ray job-submission address (`ray job submit --address`); None runs here (verl starts a local Ray)."""
    dry_run: bool = False
    """Write the command, data and translation; run nothing."""


def prepare(cfg: Config, recipe: str, out: Path, nodes: int, gpus_per_node: int, address: str | None = None,
            log=print) -> verl_compile.VerlJob:
    """Compile the arm and write its verl files under out/verl (data when its sources can be read)."""
    folder = out / VERL
    model = cfg.base.checkpoint or base_checkpoint(cfg, progress=False, log=log)
    job = verl_compile.compile_arm(
        cfg, recipe, model=model, train_file=(folder / "data" / "train.parquet").resolve(),
        val_file=(folder / "data" / "val.parquet").resolve(), reward_module=Path(verl_reward.__file__).resolve(),
        checkpoints=(folder / CHECKPOINTS).resolve(), nodes=nodes, gpus_per_node=gpus_per_node,
        experiment=f"{cfg.profile}-{recipe}", address=address)
    if cfg.base.checkpoint and cfg.base.revision:
        job.not_expressed.append(
            f"base.revision={cfg.base.revision}: verl loads actor_rollout_ref.model.path at the hub's default revision; "
            f"download that revision to a folder (`hf download {cfg.base.checkpoint} --revision {cfg.base.revision} "
            "--local-dir DIR`) and give base.checkpoint=DIR")
    try:
        _, _, counts = write_data(cfg, folder / "data")
        job.notes.append(f"data: {counts['train']} training rows, {counts['validation']} validation rows")
    except (UserError, OSError) as exc:
        job.notes.append(f"data NOT written here: {str(exc).splitlines()[0]} (the data sources must be readable where the "
                         "job is prepared: a local .jsonl/.parquet per domain via suites.<domain>.train_data=PATH)")
    write_text_atomic(folder / "command.sh", "#!/usr/bin/env bash\n# written by `harness train --backend verl`\n"
                      f"export VERL_FILE_LOGGER_PATH={shlex.quote(str((folder / VERL_METRICS).resolve()))}\n"
                      f"{job.shell()}\n")
    (folder / "command.sh").chmod(0o755)
    write_text_atomic(folder / "overrides.txt", "\n".join(job.overrides) + "\n")
    write_text_atomic(folder / "translation.md", verl_compile.render_translations(job))
    write_json_atomic(out / "config.json", {
        "recipe": recipe, "base_checkpoint": model, "backend": "verl",
        "arm": vars(verl_compile.arm_settings(cfg)),
        "budget": {"kind": "steps", "amount": cfg.train.steps},
        "config": to_dict(cfg),
        "verl": {"nodes": nodes, "gpus_per_node": gpus_per_node, "address": address, "overrides": job.overrides,
                 "not_expressed": job.not_expressed},
        "provenance": provenance.collect(seed=cfg.seed),
    })
    return job


def run(job: verl_compile.VerlJob, out: Path, log=print) -> int:
    """Run the compiled job (here, or submitted to --address); its exit code."""
    if not (out / VERL / "data" / "train.parquet").is_file():
        raise ConfigError(f"'{out / VERL / 'data'}' has no train.parquet: the training data could not be written "
                          "(see verl/translation.md's notes)")
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str((out / VERL / VERL_METRICS).resolve())}
    log("running: " + " ".join(job.command()[:6]) + " ...")
    return subprocess.run(job.command(), env=env).returncode


def import_verl_run(out: Path) -> Path:
    """metrics.jsonl of the run folder `out`, made from its verl file-logger file."""
    meta_path = out / "config.json"
    if not meta_path.is_file():
        raise ConfigError(f"'{out}' is not a verl run folder (no config.json); `harness train --backend verl` writes one")
    meta = json.loads(meta_path.read_text())
    source = out / VERL / VERL_METRICS
    if not source.is_file():
        raise ConfigError(f"'{source}' does not exist: the verl run has not logged a step yet")
    arm = meta["arm"]
    rows = harness_rows(read_verl_log(source), n=arm["n"], prompts_per_step=arm["prompts_per_step"])
    return write_text_atomic(out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def hf_checkpoints(out: Path) -> dict[int, Path]:
    """verl's HF-format checkpoints of the run, by step (what `harness eval` takes)."""
    found = {}
    for folder in (out / VERL / CHECKPOINTS).glob("global_step_*"):
        hf = folder / "actor" / "huggingface"
        if (hf / "config.json").is_file():
            found[int(folder.name.rsplit("_", 1)[1])] = hf
    return dict(sorted(found.items()))
