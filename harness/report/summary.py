"""The summary of a comparison folder, read from its files alone: the dict that summary.json holds
and that the tables and the figure are drawn from. Nothing is re-run: the rows come from `evals/*.json`,
the runs' `metrics.jsonl` and `config.json` (arms/<arm>/seed<k>/), and the copy of the base's
bootstrap.json; keeping the reading and the statistics here, apart from the rendering, lets
`harness regress` and the tests use the numbers without drawing anything.

Rows (Table 2): one per base checkpoint (labelled with its RL step), then one per (arm, evaluation
point): the MEAN over the K runs (seeds) of that arm at its checkpoint for that point (the last one
whose spend is at or under the point: matched spend, harness/jobs/compare.py `point_steps`), with a 95%
t-interval over seeds (df = K-1) and the actual spend beside the budget point. With one run (or one
finished run at that point) the interval is the run's own interval over items, and the row says so
(`ci_kind`: "seeds" or "items").

Tests between the arms' final checkpoints (budget end), per suite (harness/stats.py): the headline
bootstrap over seeds and items with Holm's correction over the suites, and two secondary tests named
for what they condition on (paired over items given these runs; Welch over seeds, unpaired). All of
them are about the domain score's own definition (benchmarks weighted equally).
"""

from __future__ import annotations

from pathlib import Path

from harness.backends.verl.control import budget_stop
from harness.config.errors import UserError
from harness.runs import (
    BASE_RECORD,
    COMPARISON_KEYS,
    SPEND_RULE,
    Budget,
    SpendError,
    describe_folder,
    eval_points,
    kept_steps,
    point_step,
    read_metrics,
    read_record,
    run_dir,
)
from harness.stats import hierarchical_bootstrap, holm, spread, stratified_paired_test, welch_test

PAPER_SUITES = ("math", "code", "reasoning_gym")
"""The suites the paper reports, in its column order; the tables and the figure show these."""


class ReportError(UserError):
    """A folder that is not (yet) a comparison; one line."""


def _read(path: Path, redo: str = "run `harness compare` again") -> dict:
    """A JSON object file of the folder; one line naming it when it is torn or damaged."""
    record = read_record(path)
    if record is None:
        raise ReportError(f"'{path}' is not valid JSON (a half-written or damaged file); {redo}")
    return record


def _base_curve(out: Path) -> list[dict]:
    """The base's RL curve (bootstrap.json copy), hours relative to its end (<= 0)."""
    path = out / BASE_RECORD
    if not path.is_file():
        return []
    points = [p for p in _read(path).get("curve", []) if p.get("phase") == "rl"]
    if not points:
        return []
    end = points[-1]["seconds"]
    return [{"rl_step": p.get("rl_step"), "hours": (p["seconds"] - end) / 3600, "val_pass_at_1": p.get("val_pass_at_1"),
             "val_per_suite": p.get("val_per_suite", {})} for p in points]


def _same_or_mean(values: list):
    """An int when every run agrees (steps, samples), else the mean."""
    if values and all(v == values[0] for v in values):
        return values[0]
    return sum(values) / len(values) if values else None


def aggregate_evaluations(evs: list[dict], suites: list[str]) -> dict:
    """Scores and tokens of one evaluation point over the runs that have it: per suite the mean over
    runs with its 95% t-interval over them (`ci_kind` "seeds"), or with one run that run's interval
    over items ("items"). `harness sweep` reports its points the same way (harness/report/sweep.py)."""
    out = {"scores": {}, "ci95": {}, "sd": {}, "scores_per_seed": {}, "mean_output_tokens": {},
           "mean_output_tokens_sd": {}, "mean_output_tokens_per_seed": {}}
    kind = "seeds" if len(evs) >= 2 else "items"
    for s in suites:
        if not all(s in ev["suites"] for ev in evs):
            continue
        scores = [ev["suites"][s]["pass_at_1"] for ev in evs]
        tokens = [ev["suites"][s]["mean_output_tokens"] for ev in evs]
        st, tk = spread(scores), spread(tokens)
        out["scores"][s] = st["mean"]
        out["ci95"][s] = st["ci95"] if kind == "seeds" else list(evs[0]["suites"][s]["ci95"])
        out["sd"][s] = st["sd"]
        out["scores_per_seed"][s] = scores
        out["mean_output_tokens"][s] = tk["mean"]
        out["mean_output_tokens_sd"][s] = tk["sd"]
        out["mean_output_tokens_per_seed"][s] = tokens
    out["ci_kind"] = kind
    return out


def _step_label(base_rl: int, steps: list[int]) -> str:
    lo, hi = min(steps), max(steps)
    return f"{base_rl}+{lo}" if lo == hi else f"{base_rl}+{lo}..{hi}"


def build_summary(out: Path) -> dict:
    """The summary.json content of a comparison folder.

    Keys: profile, budget, seeds (train.seed values), n_seeds, ci_note, base (checkpoints and RL steps),
    base_curve (the base's RL validation curve, hours <= 0), arm_settings (per arm: trainer, n,
    prompts_per_step, learning_rate, lr_rule), rows, efficiency (per arm: ds_pass_rate, gen_samples_per_s,
    steps, seeds, per_seed, sd; and `probe` (`probe_over_seeds`) when its runs logged the ΔQ_pos probe
    of train.probe_every), significance, complete, provenance, machine_load (`machine_load`: how busy
    the machine was while the arms trained; None for folders written before it was recorded).
    A row: method, n, label (`baseline@<RL step>` / `<arm>@<base RL steps>+<arm steps>`), step,
    step_label, base_rl_step, eval_points (budget fractions it serves), seeds, steps_per_seed, hours
    (arm: mean training hours; baseline: position on the base curve, 0 = final), hours_per_seed,
    samples, samples_per_seed, budget_point, spent (mean actual spend of the evaluated checkpoints,
    in the budget's unit), spent_per_seed, and per suite: scores (mean), ci95, ci_kind, sd, scores_per_seed,
    mean_output_tokens, mean_output_tokens_sd, mean_output_tokens_per_seed.
    significance, per suite: headline (hierarchical bootstrap, with p_holm over the suites),
    paired_items (stratified by benchmark, given these runs), welch_seeds (K >= 2).
    """
    if not (out / "config.json").is_file():
        raise ReportError(f"'{out}' is not a comparison folder (no config.json: it is {describe_folder(out)}); "
                          "run `harness compare` first")
    meta = read_record(out / "config.json")
    if meta is None:
        raise ReportError(f"'{out}/config.json' is not valid JSON (a half-written folder?); run `harness compare` again")
    if not set(COMPARISON_KEYS) <= set(meta):
        raise ReportError(f"'{out}' is not a comparison folder: it is {describe_folder(out)}, its config.json was not "
                          "written by `harness compare`; give the folder `harness compare --out` wrote")
    missing = [key for key in ("profile", "configs", "provenance") if key not in meta]
    if missing:
        raise ReportError(f"'{out}/config.json' lacks {', '.join(missing)} (a damaged comparison folder); "
                          "run `harness compare` again")
    if meta.get("spend_rule") != SPEND_RULE:
        raise ReportError(f"'{out}' was written by an older harness, which evaluated each budget point at the step "
                          "that passed it; its tables cannot be rendered at matched spend: run the comparison again")
    arms: list[str] = meta["arms"]
    suites: list[str] = meta["suites"]
    seeds: list[int] = meta["seeds"]
    b = meta["budget"]
    budget = Budget(b["kind"], b["amount"])
    points = eval_points(b["eval_points"])
    base = meta.get("base", {"checkpoint": meta.get("base_checkpoint"), "rl_steps": 0, "early_rl_step": None})
    base_rl = int(base.get("rl_steps") or 0)

    evals = []
    for path in sorted((out / "evals").glob("*.json")):
        redo = "delete it and continue with `harness compare --resume`, which evaluates that checkpoint again"
        ev = _read(path, redo)
        if not {"method", "step", "suites"} <= set(ev) or (ev["method"] != "baseline" and "seed" not in ev):
            raise ReportError(f"'{path}' is not an evaluation written by `harness compare` (it lacks method, seed, step "
                              f"or suites); {redo}")
        evals.append(ev)
    baseline_evals = sorted((e for e in evals if e["method"] == "baseline"), key=lambda e: e.get("rl_step", e["step"]))
    by_run = {(e["method"], e["seed"], e["step"]): e for e in evals if e["method"] in arms}
    # step 0 of an arm: its first step passed the point, and the base stands there as itself (the
    # baseline evaluation of the final base), never re-evaluated under the arm's name
    final_base = next((e for e in baseline_evals if e.get("rl_step", e["step"]) == base_rl), None)
    if final_base is not None:
        by_run.update({(arm, seed, 0): final_base for arm in arms for seed in seeds})

    runs: dict[tuple[str, int], dict] = {}
    settings: dict[str, dict | None] = {}
    cpus = None
    for arm in arms:
        for seed in seeds:
            folder = run_dir(out, arm, seed)
            record = _read(folder / "config.json") if (folder / "config.json").is_file() else None
            rows = read_metrics(folder / "metrics.jsonl")
            evaluated = {e["step"] for e in evals if e["method"] == arm and e.get("seed") == seed}
            runs[arm, seed] = {"metrics": {r["step"]: r for r in rows}, "points": _points(rows, budget, points, folder, evaluated)}
            if record is not None and settings.get(arm) is None:
                settings[arm] = record.get("arm")
            if record is not None and cpus is None:
                machine = (record.get("provenance") or {}).get("machine") or {}
                cpus = machine.get("usable_cpus") or machine.get("cpu_count")
        settings.setdefault(arm, None)
    base_n = meta["configs"][arms[0]]["train"]["n"]
    curve = _base_curve(out)
    curve_hours = {p["rl_step"]: p["hours"] for p in curve}

    rows = []
    for ev in baseline_evals:
        rl_step = ev.get("rl_step", ev["step"])
        hours = 0.0 if rl_step == base_rl else curve_hours.get(rl_step)
        rows.append({
            "method": "baseline", "n": base_n, "label": f"baseline@{rl_step}", "step": rl_step, "step_label": str(rl_step),
            "base_rl_step": rl_step, "eval_points": [], "seeds": [], "steps_per_seed": [], "hours": hours,
            "hours_per_seed": [], "samples": None, **aggregate_evaluations([ev], suites),
        })
    complete = bool(baseline_evals)
    for arm in arms:
        n = (settings[arm] or {}).get("n")
        previous = None
        for f in points:
            got = []
            for seed in seeds:
                run = runs[arm, seed]
                step = run["points"][f]
                ev = by_run.get((arm, seed, step)) if step is not None else None
                if ev is None:
                    complete = False
                    continue
                got.append((seed, step, ev, run["metrics"].get(step, {})))
            if not got:
                continue
            key = [(seed, step) for seed, step, _, _ in got]
            if previous is not None and previous["key"] == key:  # the same checkpoints serve both points
                previous["row"]["eval_points"].append(f)
                continue
            steps = [step for _, step, _, _ in got]
            # step 0: the arm's checkpoint at this point is the base itself (its first step overshot)
            hours = [m.get("wall_s", 0.0 if step == 0 else float("nan")) / 3600 for _, step, _, m in got]
            samples = [m.get("samples_generated", 0) for _, _, _, m in got]
            spent = [budget.used(m) if m else 0.0 for _, _, _, m in got]
            label = _step_label(base_rl, steps)
            row = {
                "method": arm, "n": n, "label": f"{arm}@{label}", "step": _same_or_mean(steps), "step_label": label,
                "base_rl_step": base_rl, "eval_points": [f], "seeds": [seed for seed, _, _, _ in got],
                "steps_per_seed": steps, "hours": sum(hours) / len(hours), "hours_per_seed": hours,
                "samples": _same_or_mean(samples), "samples_per_seed": samples,
                "budget_point": budget.point(f), "spent": sum(spent) / len(spent), "spent_per_seed": spent,
                **aggregate_evaluations([ev for _, _, ev, _ in got], suites),
            }
            rows.append(row)
            previous = {"key": key, "row": row}

    efficiency = {}
    for arm in arms:
        per_seed = {"ds_pass_rate": [], "gen_samples_per_s": [], "steps": []}
        used, probes = [], []
        for seed in seeds:
            steps = list(runs[arm, seed]["metrics"].values())
            if not steps:
                continue
            used.append(seed)
            for key, value in run_efficiency(steps).items():
                per_seed[key].append(value)
            probes.append(probe_summary(steps))
        if used:
            sp = {k: spread(v) for k, v in per_seed.items()}
            efficiency[arm] = {
                "ds_pass_rate": sp["ds_pass_rate"]["mean"],
                "gen_samples_per_s": sp["gen_samples_per_s"]["mean"],
                "steps": _same_or_mean(per_seed["steps"]),
                "seeds": used,
                "per_seed": per_seed,
                "sd": {k: v["sd"] for k, v in sp.items()},
            }
            probe = probe_over_seeds(used, probes)
            if probe is not None:  # runs with train.probe_every on; older folders have no probe fields
                efficiency[arm]["probe"] = probe

    final_point = points[-1]
    finals = {}
    for arm in arms:
        finals[arm] = []
        for seed in seeds:
            step = runs[arm, seed]["points"][final_point]
            ev = by_run.get((arm, seed, step)) if step is not None else None
            if ev is not None:
                finals[arm].append((seed, step, ev))
    significance = {}
    if all(finals.values()):
        a, b2 = arms
        for s in suites:
            if not all(s in ev["suites"] for arm in arms for _, _, ev in finals[arm]):
                continue
            per_seed = {arm: {seed: ev["suites"][s]["item_scores"] for seed, _, ev in finals[arm]} for arm in arms}
            items = {arm: _mean_items(list(per_seed[arm].values())) for arm in arms}
            scores = {arm: [ev["suites"][s]["pass_at_1"] for _, _, ev in finals[arm]] for arm in arms}
            k_min = min(len(v) for v in scores.values())
            significance[s] = {
                "compared": f"{b2} - {a}, final checkpoints (budget end)",
                "seeds": {arm: [seed for seed, _, _ in finals[arm]] for arm in arms},
                "steps": {arm: [step for _, step, _ in finals[arm]] for arm in arms},
                "headline": hierarchical_bootstrap(per_seed[a], per_seed[b2]),
                "paired_items": {**stratified_paired_test(items[a], items[b2]),
                                 "conditional_on": "these K runs (item scores averaged over each arm's seeds)"},
                "welch_seeds": ({**welch_test(scores[a], scores[b2]), "conditional_on": "nothing shared: seeds unpaired"}
                                if k_min >= 2 else None),
            }
        adjusted = holm({s: sig["headline"]["p_value"] for s, sig in significance.items()})
        for s, sig in significance.items():
            sig["headline"]["p_holm"] = adjusted[s]
            sig["headline"]["family"] = sorted(significance)
    return {
        "profile": meta["profile"],
        "budget": b,
        "machine_load": machine_load({key: list(run["metrics"].values()) for key, run in runs.items()}, cpus, b["kind"]),
        "vs_base": _vs_base(baseline_evals, base_rl, finals, suites),
        "seeds": seeds,
        "n_seeds": len(seeds),
        "ci_note": ("mean over seeds; ci95 = 95% t-interval over seeds (df = K-1) where ci_kind is 'seeds', "
                    "the single run's interval over items where it is 'items'"),
        "base": base,
        "base_curve": curve,
        "arm_settings": settings,
        "rows": rows,
        "efficiency": efficiency,
        "significance": significance,
        "complete": complete,
        "provenance": meta["provenance"],
    }


def _points(rows: list[dict], budget: Budget, points: list[float], folder: Path, evaluated: set[int]) -> dict[float, int | None]:
    """The matched-spend step of each point of one run among its kept checkpoints (`point_steps`):
    those on disk and those evaluated (checkpoints may be deleted once evaluated); a point no kept
    checkpoint serves (the compare refuses it) is left out (None): the table is partial."""
    kept = kept_steps(folder) | evaluated
    stopped = budget_stop(folder) is not None  # verl's watcher: the step that would pass the budget never ran
    out: dict[float, int | None] = {}
    for f in points:
        try:
            out[f] = point_step(rows, budget, f, kept=kept, stopped_at_budget=stopped)
        except SpendError:
            out[f] = None
    return out


def _vs_base(baseline_evals: list[dict], base_rl: int, finals: dict[str, list], suites: list[str]) -> dict:
    """Each arm's final checkpoints minus the base both started from, per domain: did the arm move
    at all? (The paper's premise is that step scaling has stalled at the base.) Paired over items,
    an item's score averaged over the arm's seeds, stratified by benchmark; conditional on these
    runs (the base is one evaluation)."""
    base = next((e for e in baseline_evals if e.get("rl_step", e["step"]) == base_rl), None)
    out: dict[str, dict] = {}
    if base is None:
        return out
    for arm, got in finals.items():
        for s in suites:
            if not got or s not in base["suites"] or not all(s in ev["suites"] for _, _, ev in got):
                continue
            items = _mean_items([ev["suites"][s]["item_scores"] for _, _, ev in got])
            out.setdefault(arm, {})[s] = {
                **stratified_paired_test(base["suites"][s]["item_scores"], items),
                "compared": f"{arm} final - base at RL step {base_rl}",
                "seeds": [seed for seed, _, _ in got],
                "conditional_on": "these runs and the base's one evaluation (item scores averaged over the arm's seeds)",
            }
    return out


BUSY_MARGIN = 0.5
"""Folders written before `cpu_wait_s` was recorded: how far above the usable CPUs the mean
1-minute load average during training must be for the machine to count as busy. The load average
counts the run's own tasks (the trainer, its scorer workers and their programs keep it near 2.7 on
an idle 2-core machine), so it is only a coarse sign; `BUSY_WAIT` replaces it where waits are known."""

BUSY_WAIT = {"cpu_s": 0.5, "other": 0.3}
"""How many of a run's tasks, on average over its training, may wait for a CPU (a run's cpu_wait_s /
wall_s) before the machine counts as busy (`machine_load`), by budget kind. Measured with smoke
training steps on this project's 2-core machine (results/experiments/2026-12-06-cpu-budget-one-thread.md):
0.21 alone (the trainer, its two scorer workers and their programs wait for each other), 0.37 beside
one CPU hog, 0.65 beside two. Under `cpu_s` one hog moved a step's CPU by ~1% and two by ~10%, so
the line is between them; under the other kinds one hog already made a step 13% longer in
wall-clock (fewer steps under `wall_s`, more hours under any), so it is between alone and one hog."""


def busy_wait(kind: str) -> float:
    """`BUSY_WAIT` of a budget kind."""
    return BUSY_WAIT.get(kind, BUSY_WAIT["other"])


def machine_load(runs: dict[tuple[str, int], list[dict]], cpus: int | None, kind: str = "wall_s") -> dict | None:
    """How busy the machine was while the runs trained, from their metrics rows: per run the mean
    and largest 1-minute load average after its steps (`loadavg_1m`), its CPU / wall ratio (the
    cores its training used on average: cpu_s / wall_s at its last step) and its wait / wall ratio
    (how many of its tasks waited for a CPU on average: the sum of the steps' `cpu_wait_s` over its
    wall_s); over all runs the mean and largest load, the largest wait ratio, the usable CPUs (from
    the runs' provenance) and `busy`: a run's wait ratio above `busy_wait(kind)` (`kind`: the
    budget's), or, for folders written
    before waits were recorded, the mean load above cpus + `BUSY_MARGIN`. None for folders written
    before the load was recorded."""
    per_run = []
    loads: list[float] = []
    for (arm, seed), rows in runs.items():
        got = [r["loadavg_1m"] for r in rows if r.get("loadavg_1m") is not None]
        if not got:
            continue
        loads += got
        last = rows[-1]
        ratio = last["cpu_s"] / last["wall_s"] if last.get("cpu_s") is not None and last.get("wall_s") else None
        waited = [r["cpu_wait_s"] for r in rows if r.get("cpu_wait_s") is not None]
        wait = sum(waited) / last["wall_s"] if waited and len(waited) == len(rows) and last.get("wall_s") else None
        per_run.append({"arm": arm, "seed": seed, "steps": len(rows), "loadavg_1m_mean": sum(got) / len(got),
                        "loadavg_1m_max": max(got), "cpu_per_wall": ratio, "wait_per_wall": wait})
    if not loads:
        return None
    mean = sum(loads) / len(loads)
    waits = [r["wait_per_wall"] for r in per_run if r["wait_per_wall"] is not None]
    if waits and len(waits) == len(per_run):
        rule, threshold = "wait", busy_wait(kind)
        busy = max(waits) > threshold
    else:
        rule, busy = "load", cpus is not None and mean > cpus + BUSY_MARGIN
        threshold = None if cpus is None else cpus + BUSY_MARGIN
    return {"loadavg_1m_mean": mean, "loadavg_1m_max": max(loads), "usable_cpus": cpus,
            "wait_per_wall_max": max(waits) if waits else None, "busy_rule": rule,
            "busy_threshold": threshold, "busy": busy, "per_run": per_run,
            "note": ("loadavg_1m: the whole machine's 1-minute load average after each training step (runnable tasks, "
                     "this run's own included); wait_per_wall: the seconds a run's processes waited for a CPU over its "
                     "training wall-clock (how many of its tasks were kept waiting, on average); cpu_per_wall: the cores "
                     f"its training used on average; busy ({rule}): "
                     + (f"a run's wait_per_wall above {threshold:g} (under a {kind} budget)" if rule == "wait" else
                        f"the mean load above usable_cpus + {BUSY_MARGIN:g} (a folder without waits)"))}


def load_warning(summary: dict) -> str | None:
    """One line when the machine was busy during training (`machine_load`), saying what it moved
    under this budget kind; None otherwise."""
    load = summary.get("machine_load")
    if not load or not load["busy"]:
        return None
    kind = summary["budget"]["kind"]
    if load.get("busy_rule") == "wait":
        head = (f"WARNING: the machine was busy while the arms trained (on average {load['wait_per_wall_max']:.2f} of a run's "
                f"tasks waited for a CPU, busy above {load['busy_threshold']:g}; load average {load['loadavg_1m_mean']:.2f} on "
                f"{load['usable_cpus']} usable CPUs): ")
    else:
        head = (f"WARNING: the machine was busy while the arms trained (mean 1-minute load average {load['loadavg_1m_mean']:.2f}, "
                f"max {load['loadavg_1m_max']:.2f}, on {load['usable_cpus']} usable CPUs; busy above {load['busy_threshold']:g}): ")
    if kind == "wall_s":
        return head + ("a wall_s budget bought less training than on an idle machine, so the arms' steps measure the load "
                       "too; rerun on an idle machine, or with compare.budget_kind=cpu_s")
    if kind == "cpu_s":
        return head + ("the cpu_s budget charges only this run's CPU, but a step costs more CPU when its tasks share cores "
                       "(~10% beside two CPU hogs on 2 cores, results/experiments/2026-12-06-cpu-budget-one-thread.md): "
                       "fewer steps than on an idle machine; rerun idle, or use compare.budget_kind=samples")
    return head + f"the {kind} budget is not moved by it; only the hours column is inflated"


def run_efficiency(rows: list[dict]) -> dict:
    """Table 3's numbers of one run from its metrics rows: ds_pass_rate (mean over steps of the share
    of generated prompt groups dynamic sampling kept), gen_samples_per_s (generated samples /
    generation seconds of the whole run: the steps' gen_samples_per_s weighted by their generation
    time) and steps."""
    gen_s = sum(r["gen_s"] for r in rows)
    return {"ds_pass_rate": sum(r["ds_pass_rate"] for r in rows) / len(rows),
            "gen_samples_per_s": rows[-1]["samples_generated"] / gen_s if gen_s > 0 else None,
            "steps": len(rows)}


PROBE_FIELDS = ("probe_q_pos", "probe_delta_q_pos", "probe_fell", "probe_logp_delta")
"""What a probed step logs (`train.probe_every`, trainers/core.py `probe_mass_change`)."""


def probe_summary(rows: list[dict]) -> dict | None:
    """The ΔQ_pos probe of one run from its metrics rows; None when no step was probed. fall_rate:
    the share of probed updates whose mean ΔQ_pos over the probe items was < 0; delta_q_pos,
    logp_delta, fell: the probed steps' means of probe_delta_q_pos, probe_logp_delta (the summed
    log-prob's change, better behaved than tiny masses) and probe_fell; q_pos_last: the last
    probed step's mean mass after its update."""
    probed = [r for r in rows if r.get("probe_delta_q_pos") is not None]
    if not probed:
        return None
    k = len(probed)
    return {"probed_updates": k,
            "fall_rate": sum(r["probe_delta_q_pos"] < 0 for r in probed) / k,
            "delta_q_pos": sum(r["probe_delta_q_pos"] for r in probed) / k,
            "logp_delta": sum(r["probe_logp_delta"] for r in probed) / k,
            "fell": sum(r["probe_fell"] for r in probed) / k,
            "q_pos_last": probed[-1]["probe_q_pos"]}


def probe_over_seeds(seeds: list[int], probes: list[dict | None]) -> dict | None:
    """`probe_summary` of several runs (one per seed): each number's mean over the runs that were
    probed, its sd and 95% t-interval over them (None with one run), and the per-run values."""
    got = [(seed, p) for seed, p in zip(seeds, probes) if p is not None]
    if not got:
        return None
    out: dict = {"seeds": [seed for seed, _ in got], "per_seed": {}, "sd": {}, "ci95": {}}
    for key in ("probed_updates", "fall_rate", "delta_q_pos", "logp_delta", "fell", "q_pos_last"):
        values = [p[key] for _, p in got]
        sp = spread(values)
        out[key] = sp["mean"]
        out["sd"][key], out["ci95"][key], out["per_seed"][key] = sp["sd"], sp["ci95"], values
    return out


def _mean_items(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each item's score averaged over the runs (items every run scored)."""
    common = set(per_seed[0]).intersection(*per_seed[1:]) if per_seed else set()
    return {i: sum(d[i] for d in per_seed) / len(per_seed) for i in sorted(common)}

