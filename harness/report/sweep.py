"""The report of a `harness sweep` folder: sweep.json (the numbers per N), sweep.md (their table)
and sweep.png (each against N, log-x), from the folder's files alone (harness/jobs/sweep.py says
what it holds).

Per N, over its K runs (seeds): the dynamic-sampling pass rate and the generation samples/s of
Table 3 (`run_efficiency`), the ΔQ_pos fall rate of the probe (`probe_summary`: the share of
updates whose mean mass on known-correct responses fell), each as the mean over runs with its sd
and 95% t-interval over them (none with K = 1), and per suite the held-out pass@1 at the budget's
end with the interval the comparison reports (`aggregate_evaluations`: over seeds with K >= 2,
over items with K = 1).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from harness.report.summary import (
    PAPER_SUITES,
    ReportError,
    aggregate_evaluations,
    probe_over_seeds,
    probe_summary,
    run_efficiency,
)
from harness.runs import (
    METRICS_FILE,
    SWEEP_KEYS,
    describe_folder,
    read_metrics,
    read_record,
    sweep_base_eval_path,
    sweep_eval_path,
    sweep_run_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from harness.stats import spread

SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "sweep.json", "sweep.md", "sweep.png"


def build_sweep(out: Path) -> dict:
    """The sweep.json content of a sweep folder.

    Keys: profile, recipe, base (the base's scores, when a run's first step passed the budget and the
    base stands for it; else None), samples_per_step, budget, seeds, n_seeds, suites, base_checkpoint,
    points, complete, ci_note, provenance. A point (one per N, ascending): n, prompts_per_step,
    learning_rate, seeds (the runs that have metrics), steps_per_seed, ds_pass_rate,
    gen_samples_per_s, probe_fall_rate (each {mean, sd, ci95, per_seed}), probe (probe_over_seeds,
    or None), eval_seeds, eval_steps, and per suite: scores, ci95, ci_kind, sd, scores_per_seed,
    mean_output_tokens (aggregate_evaluations)."""
    meta = read_record(out / "config.json") if (out / "config.json").is_file() else None
    if meta is None or not set(SWEEP_KEYS) <= set(meta):
        raise ReportError(f"'{out}' is not a sweep folder (it is {describe_folder(out)}); run `harness sweep` first")
    ns, seeds, suites = sorted(meta["ns"]), meta["seeds"], meta["suites"]
    points, complete = [], True
    for n in ns:
        per_seed = {"ds_pass_rate": [], "gen_samples_per_s": [], "steps": []}
        used, probes, evs, eval_seeds, eval_steps = [], [], [], [], []
        settings = None
        for seed in seeds:
            folder = sweep_run_dir(out, n, seed)
            rows = read_metrics(folder / METRICS_FILE)
            record = read_record(folder / "config.json")
            if record is not None and settings is None:
                settings = record.get("arm")
            if rows:
                used.append(seed)
                for key, value in run_efficiency(rows).items():
                    per_seed[key].append(value)
                probes.append(probe_summary(rows))
            ev = read_record(sweep_eval_path(out, n, seed))
            if ev is not None and ev.get("base_stands"):  # no step within the budget: the base row, not this N
                eval_steps.append(0)
                continue
            if ev is None or "suites" not in ev:
                complete = False
                continue
            evs.append(ev)
            eval_seeds.append(seed)
            eval_steps.append(ev.get("step"))
        probe = probe_over_seeds(used, probes)
        point = {
            "n": n,
            "prompts_per_step": meta["samples_per_step"] // n,
            "learning_rate": (settings or {}).get("learning_rate"),
            "seeds": used,
            "steps_per_seed": per_seed["steps"],
            "ds_pass_rate": _over_seeds(per_seed["ds_pass_rate"]),
            "gen_samples_per_s": _over_seeds(per_seed["gen_samples_per_s"]),
            "probe_fall_rate": _over_seeds(probe["per_seed"]["fall_rate"] if probe else []),
            "probe": probe,
            "eval_seeds": eval_seeds,
            "eval_steps": eval_steps,
        }
        if evs:
            point.update(aggregate_evaluations(evs, suites))
        else:
            point.update({"scores": {}, "ci95": {}, "ci_kind": None})
        points.append(point)
    base_ev = read_record(sweep_base_eval_path(out))
    return {
        "profile": meta["profile"],
        "recipe": meta.get("recipe"),
        "base": aggregate_evaluations([base_ev], suites) if base_ev is not None and "suites" in base_ev else None,
        "samples_per_step": meta["samples_per_step"],
        "budget": meta["budget"],
        "seeds": seeds,
        "n_seeds": len(seeds),
        "suites": suites,
        "base_checkpoint": meta.get("base_checkpoint"),
        "points": points,
        "complete": complete,
        "ci_note": ("ds_pass_rate, gen_samples_per_s, probe_fall_rate: mean over the runs of each N, sd and 95% "
                    "t-interval over them (None with one run); scores: mean over seeds with the 95% t-interval over "
                    "seeds where ci_kind is 'seeds', the single run's interval over items where it is 'items'"),
        "provenance": meta.get("provenance", {}),
    }


def _over_seeds(values: list) -> dict:
    sp = spread([v for v in values if v is not None])
    return {"mean": sp["mean"], "sd": sp["sd"], "ci95": sp["ci95"], "per_seed": list(values)}


def _pct(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _cell(q: dict, scale: float, fmt: str, unit: str = "") -> str:
    """`mean [lo, hi]` (over seeds), or the mean alone with one run; a dash when not measured."""
    if q["mean"] is None:
        return "—"
    text = format(scale * q["mean"], fmt) + unit
    if q["ci95"]:
        lo, hi = q["ci95"]
        text += f" [{format(scale * lo, fmt)}, {format(scale * hi, fmt)}]"
    return text


def render_sweep_table(sweep: dict) -> str:
    """sweep.md: one row per N."""
    b, k = sweep["budget"], sweep["n_seeds"]
    suites = [s for s in PAPER_SUITES if s in sweep["suites"]] + [s for s in sweep["suites"] if s not in PAPER_SUITES]
    interval = (f"Mean over K={k} runs per N (train.seed {', '.join(map(str, sweep['seeds']))}) with the 95% t-interval "
                f"over seeds (df={k - 1}); scores marked * had one finished run: the interval over items"
                if k >= 2 else
                "K=1: one run per N; pass rates and rates are that run's own (no interval), scores show the 95% "
                "interval over eval items, NOT over seeds (use --seeds K)")
    lines = [
        f"# N sweep: profile `{sweep['profile']}`, recipe `{sweep['recipe']}`",
        "",
        f"Every run: {sweep['samples_per_step']} samples per generation round at every N (prompts per step = "
        f"{sweep['samples_per_step']} / N), the same learning rate, from the same base, {b['amount']:g} {b['kind']} "
        "of budget; evaluated at its end (matched spend: the last checkpoint at or under it, step 0 = the base). "
        f"The ΔQ_pos probe was on at every step. {interval}.",
        *([] if sweep["complete"] else ["", "**Incomplete sweep**: some runs have no evaluation yet; rows use the runs that have."]),
        "",
        "| N | prompts/step | RL steps | dynamic-sampling pass rate (%) | generation samples/s | ΔQ_pos fall rate (%) | "
        + " | ".join(f"{s.replace('_', ' ')} pass@1 (%)" for s in suites) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(suites),
    ]
    if sweep.get("base"):
        scores, ci = sweep["base"]["scores"], sweep["base"]["ci95"]
        cells = [("—" if s not in scores else
                  f"{_pct(scores[s])} [{_pct(ci[s][0])}, {_pct(ci[s][1])}]" if ci.get(s) else _pct(scores[s])) for s in suites]
        lines.append("| base | — | 0 | — | — | — | " + " | ".join(cells) + " |")
    for p in sweep["points"]:
        steps = p["steps_per_seed"]
        step_text = "—" if not steps else (str(steps[0]) if min(steps) == max(steps) else f"{min(steps)}..{max(steps)}")
        evaluated = sorted({s for s in p.get("eval_steps", []) if s is not None})
        if evaluated and evaluated != [max(steps or [0])]:
            step_text += f" (evaluated: {', '.join(map(str, evaluated))})"
        cells = []
        for s in suites:
            if s not in p["scores"]:
                cells.append("the base (no step within budget)" if 0 in p.get("eval_steps", []) else "—")
                continue
            ci = p["ci95"].get(s)
            mark = "*" if k >= 2 and p["ci_kind"] == "items" else ""
            cells.append(f"{_pct(p['scores'][s])} [{_pct(ci[0])}, {_pct(ci[1])}]{mark}" if ci else _pct(p["scores"][s]))
        lines.append(f"| {p['n']} | {p['prompts_per_step']} | {step_text} | {_cell(p['ds_pass_rate'], 100, '.0f')} | "
                     f"{_cell(p['gen_samples_per_s'], 1, '.1f')} | {_cell(p['probe_fall_rate'], 100, '.0f')} | "
                     + " | ".join(cells) + " |")
    lines += ["", ("Pass rate: mean over steps of the share of generated prompt groups that dynamic sampling kept "
                   "(rewards with spread); samples/s: generated samples / generation seconds of the run; ΔQ_pos fall "
                   "rate: the share of updates after which the policy's mean probability of known-correct responses "
                   "to a fixed set of training prompts was lower than before (docs/sweep.md); pass@1: held-out, "
                   "k samples per item, at the budget's end. RL steps: the steps each run took until its budget was "
                   "spent (the last one may pass it); the evaluated step, when it differs, is the last one at or "
                   "under the budget; 0: the first step passed the budget, so no step of that N is within it "
                   "and the base's own row stands for it (never its scores under an N)."), ""]
    return "\n".join(lines)


def render_sweep_figure(sweep: dict) -> bytes:
    """sweep.png's bytes: pass rate, samples/s, ΔQ_pos fall rate and held-out pass@1 per suite
    against N (log-x), with the 95% intervals as error bars where there are any."""
    import matplotlib  # lazy: matplotlib costs start-up time; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    points = sweep["points"]
    ns = [p["n"] for p in points]
    panels = [("ds_pass_rate", "dynamic-sampling pass rate (%)", 100), ("gen_samples_per_s", "generation samples/s", 1),
              ("probe_fall_rate", "ΔQ_pos fall rate (% of updates)", 100)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(18, 4.2), squeeze=False)
    for ax, (key, title, scale) in zip(axes[0], panels):
        xs, ys, lo, hi = [], [], [], []
        for p in points:
            q = p[key]
            if q["mean"] is None:
                continue
            xs.append(p["n"])
            ys.append(scale * q["mean"])
            lo.append(scale * (q["mean"] - q["ci95"][0]) if q["ci95"] else 0.0)
            hi.append(scale * (q["ci95"][1] - q["mean"]) if q["ci95"] else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color="tab:blue")
        ax.set_title(title, fontsize=10)
    ax = axes[0][-1]
    for suite, color in zip(sweep["suites"], ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")):
        got = [p for p in points if suite in p["scores"]]
        if not got:
            continue
        ys = [100 * p["scores"][suite] for p in got]
        lo = [100 * (p["scores"][suite] - p["ci95"][suite][0]) for p in got]
        hi = [100 * (p["ci95"][suite][1] - p["scores"][suite]) for p in got]
        ax.errorbar([p["n"] for p in got], ys, yerr=[lo, hi], marker="o", capsize=3, color=color,
                    label=suite.replace("_", " "))
    ax.set_title("held-out pass@1 (%) at the budget's end", fontsize=10)
    if any(p["scores"] for p in points):
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (rollouts per prompt)")
        ax.grid(alpha=0.3)
    b = sweep["budget"]
    bars = "95% t-interval over seeds" if sweep["n_seeds"] >= 2 else "scores: 95% interval over items (1 seed)"
    fig.suptitle(f"N sweep, profile {sweep['profile']}: {sweep['samples_per_step']} samples per round at every N, "
                 f"{b['amount']:g} {b['kind']} per run; error bars: {bars}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def render_sweep(out: Path) -> dict:
    """Write sweep.json, sweep.md and sweep.png of a sweep folder, each atomically; returns the sweep."""
    sweep = build_sweep(out)
    write_json_atomic(out / SWEEP_JSON, sweep)
    write_text_atomic(out / SWEEP_MD, render_sweep_table(sweep))
    write_bytes_atomic(out / SWEEP_PNG, render_sweep_figure(sweep))
    return sweep
