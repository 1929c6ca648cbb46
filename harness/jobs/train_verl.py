"""`harness train RECIPE --backend verl`: one arm compiled to verl and run on Ray, read back as a run folder.

    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --dry-run
    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --address http://HEAD:8265

Layout of the run folder (`--out`):

    verl/command.sh        what runs the arm: its segments in order, each one verl invocation
                           (verl's own entry point, Hydra overrides); one segment per reference
                           period of train.ref_reset_every (harness/backends/verl/compile.py)
    verl/overrides.txt     the overrides every segment shares, one per line (each segment's own
                           are in command.sh and config.json)
    verl/translation.md    what each recipe value became in verl, and what verl cannot express
    verl/data/train.parquet, verl/data/val.parquet   the suites' items in verl's layout
    verl/metrics/segment<k>.jsonl   verl's file logger of segment k, once it has run
    verl/checkpoints/global_step_<step>/actor/huggingface/   verl's HF-format checkpoints (all segments)
    metrics.jsonl, config.json   the harness's run files, made from verl's (`import_verl_run`)

`--dry-run` writes everything but the last three lines and runs nothing. Without it, command.sh runs
here (verl starts a local Ray) or submits each segment with `ray job submit --address`; the metrics
are then read back, so `harness eval` takes the HF checkpoints and `harness report` the comparison
folders. Running command.sh again skips the segments verl saved and reruns the others whole.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import provenance
from harness.backends.verl import compile as verl_compile
from harness.backends.verl import reward as verl_reward
from harness.backends.verl.data import write_data
from harness.backends.verl.metrics import harness_rows, read_segment_logs
from harness.config import Config, ConfigError, UserError, to_dict
from harness.jobs.base_model import base_checkpoint
from harness.runs import CHECKPOINTS, METRICS_FILE, write_json_atomic, write_text_atomic

VERL = "verl"
"""The run folder's subfolder for verl's files."""

METRICS_DIR = "metrics"
"""verl/'s subfolder of the segments' file-logger files (`verl_compile.segment_metrics`)."""


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
        checkpoints=(folder / CHECKPOINTS).resolve(), metrics_dir=(folder / METRICS_DIR).resolve(), nodes=nodes,
        gpus_per_node=gpus_per_node, experiment=f"{cfg.profile}-{recipe}", address=address)
    (folder / METRICS_DIR).mkdir(parents=True, exist_ok=True)  # verl's FileLogger creates the file, not its folder
    if cfg.base.checkpoint and cfg.base.revision:
        job.not_expressed.append(
            f"base.revision={cfg.base.revision}: verl loads actor_rollout_ref.model.path at the hub's default revision; "
            f"download that revision to a folder (`hf download {cfg.base.checkpoint} --revision {cfg.base.revision} "
            "--local-dir DIR`) and give base.checkpoint=DIR")
    try:
        files = write_data(cfg, folder / "data", verl_compile.MAX_PROMPT_TOKENS, model=model)
        job.notes.append(f"data: {files.counts['train']} training rows, {files.counts['validation']} validation rows")
        job.notes.append(f"prompts: {files.prompt_note}")
    except (UserError, OSError) as exc:
        job.notes.append(f"data NOT written here: {str(exc).splitlines()[0]} (the data sources must be readable where the "
                         "job is prepared: local copies via suites.<domain>.data_dir=DIR for the benchmarks and "
                         "suites.<domain>.train_data=PATH for training, docs/verl.md)")
    write_text_atomic(folder / "command.sh", job.script())
    (folder / "command.sh").chmod(0o755)
    write_text_atomic(folder / "overrides.txt", "\n".join(job.overrides) + "\n")
    write_text_atomic(folder / "translation.md", verl_compile.render_translations(job))
    write_json_atomic(out / "config.json", {
        "recipe": recipe, "base_checkpoint": model, "backend": "verl",
        "arm": vars(verl_compile.arm_settings(cfg)),
        "budget": {"kind": "steps", "amount": cfg.train.steps},
        "config": to_dict(cfg),
        "verl": {"nodes": nodes, "gpus_per_node": gpus_per_node, "address": address, "overrides": job.overrides,
                 "segments": [{"index": seg.index, "first_step": seg.first_step, "last_step": seg.last_step,
                               "overrides": seg.overrides} for seg in job.segments],
                 "not_expressed": job.not_expressed},
        "provenance": provenance.collect(seed=cfg.seed),
    })
    return job


def run(job: verl_compile.VerlJob, out: Path, log=print) -> int:
    """Run the compiled job: out/verl/command.sh, here (verl starts a local Ray) or submitting each
    segment to --address. Its exit code: 0 once every segment has run and saved its last step."""
    if not (out / VERL / "data" / "train.parquet").is_file():
        raise ConfigError(f"'{out / VERL / 'data'}' has no train.parquet: the training data could not be written "
                          "(see verl/translation.md's notes)")
    script = out / VERL / "command.sh"
    log(f"running {script}: {len(job.segments)} verl run(s), steps "
        + ", ".join(f"{seg.first_step}-{seg.last_step}" for seg in job.segments))
    return subprocess.run(["bash", str(script)]).returncode


def import_verl_run(out: Path) -> Path:
    """metrics.jsonl of the run folder `out`, made from its segments' verl file-logger files (in step
    order; the segments that have not run yet are left out)."""
    meta_path = out / "config.json"
    if not meta_path.is_file():
        raise ConfigError(f"'{out}' is not a verl run folder (no config.json); `harness train --backend verl` writes one")
    meta = json.loads(meta_path.read_text())
    segments = meta.get("verl", {}).get("segments")
    if not segments:
        raise ConfigError(f"'{meta_path}' lists no verl segments (written by an older harness): prepare the run "
                          "again with `harness train --backend verl`")
    logs = [(s["first_step"], s["last_step"], verl_compile.segment_metrics(out / VERL / METRICS_DIR, s["index"]))
            for s in segments]
    if not logs[0][2].is_file():
        raise ConfigError(f"'{logs[0][2]}' does not exist: the verl run has not logged a step yet")
    arm = meta["arm"]
    rows = harness_rows(read_segment_logs(logs), n=arm["n"], prompts_per_step=arm["prompts_per_step"])
    return write_text_atomic(out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def hf_checkpoints(out: Path) -> dict[int, Path]:
    """verl's HF-format checkpoints of the run, all segments', by step (what `harness eval` takes)."""
    found = {}
    checkpoints = out / VERL / CHECKPOINTS  # every segment saves into this one folder
    for folder in checkpoints.glob("global_step_*"):
        step = int(folder.name.rsplit("_", 1)[1])
        hf = verl_compile.hf_checkpoint(checkpoints, step)
        if (hf / "config.json").is_file():
            found[step] = hf
    return dict(sorted(found.items()))
