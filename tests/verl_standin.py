"""A STAND-IN for verl's trainer (`python3 -m verl.trainer.main_ppo OVERRIDES`), for tests on a machine without GPUs.

verl 0.9's trainer cannot run here (its workers and vLLM need GPUs), so tests/test_verl_ray.py
submits this program instead, with the harness's compiled overrides, as a real Ray job. It does
what the harness relies on verl doing, and nothing else (no model, no data):

- steps `global_steps` from its resume point to `trainer.total_training_steps`; with
  `trainer.resume_mode=auto` it resumes at the step verl's tracker file
  (`trainer.default_local_dir/latest_checkpointed_iteration.txt`) records, as verl does;
- at every `trainer.save_freq`-th step and its last step it saves a checkpoint *before* logging the
  step (verl's fit() order): `global_step_<k>/actor/huggingface/config.json` and the tracker;
- logs each step as verl's file logger does, one `{"step": k, "data": {...}}` line to
  VERL_FILE_LOGGER_PATH (the `+ray_kwargs.ray_init.runtime_env.env_vars...` override), opened "wb".

Its own knobs, given as extra Hydra-style overrides (the harness's `--verl-override`):
`+standin.step_s` real seconds per step (default 0.2); `+standin.timing_step` the `timing_s/step`
it reports (default 10.0: simulated seconds, so a wall-clock budget is reached in test time);
`+standin.die_after=K` exit 1 right after logging step K, once (a killed job: a marker file in the
checkpoint folder keeps the rerun alive); `+standin.omit=KEY` never log KEY.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

METRICS_KEY = "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    last = int(args["trainer.total_training_steps"])
    save_freq = int(args["trainer.save_freq"])
    checkpoints = Path(args["trainer.default_local_dir"])
    tracker = checkpoints / "latest_checkpointed_iteration.txt"
    n, prompts = int(args["actor_rollout_ref.rollout.n"]), int(args["data.train_batch_size"])
    step_s = float(args.get("+standin.step_s", 0.2))
    timing_step = float(args.get("+standin.timing_step", 10.0))
    die_after = int(args.get("+standin.die_after", 0))
    omit = args.get("+standin.omit", "")
    start = int(tracker.read_text()) if args.get("trainer.resume_mode") == "auto" and tracker.is_file() else 0
    print(f"verl stand-in: steps {start + 1}-{last}" + (f", resumed from global_step_{start}" if start else ""), flush=True)
    metrics = open(os.path.expanduser(args[METRICS_KEY]), "wb")  # verl's FileLogger: "wb"
    for step in range(start + 1, last + 1):
        time.sleep(step_s)
        if step % save_freq == 0 or step == last:
            hf = checkpoints / f"global_step_{step}" / "actor" / "huggingface"
            hf.mkdir(parents=True, exist_ok=True)
            (hf / "config.json").write_text(json.dumps({"model_type": "verl-standin", "step": step}))
            tracker.write_text(str(step))
        data = {"timing_s/step": timing_step, "timing_s/gen": timing_step * 0.6, "response_length/mean": 50.0 + step,
                "critic/score/mean": 0.1 * step, "timing_s/update_actor": timing_step * 0.3,
                "training/filter_groups/evicted_samples": 1, "training/global_step": step}
        data.pop(omit, None)
        metrics.write((json.dumps({"step": step, "data": data}) + "\n").encode())
        metrics.flush()
        print(f"step {step} logged ({n} x {prompts})", flush=True)
        marker = checkpoints / ".standin-died"
        if step == die_after and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(step))
            print(f"verl stand-in: dying after step {step}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
