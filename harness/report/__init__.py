"""Render a comparison folder into summary.json, tables.md and figure1.png, from its files alone.

    harness report DIR      # re-render a finished or interrupted `harness compare` folder

Nothing is re-run: the rows come from `evals/*.json`, the runs' `metrics.jsonl` and `config.json`
(arms/<arm>/seed<k>/), and the copy of the base's bootstrap.json. Scores are pass@1 over k samples
(fractions in JSON, percent in the tables, like the paper).

Rows (Table 2): one per base checkpoint (labelled with its RL step), then one per (arm, evaluation
point): the MEAN over the K runs (seeds) of that arm at its checkpoint for that point (the last one
whose spend is at or under the point: matched spend, harness/compare.py `point_steps`), with a 95%
t-interval over seeds (df = K-1) and the actual spend beside the budget point. With one run (or one
finished run at that point) the interval is the run's own interval over items, and the row says so
(`ci_kind`: "seeds" or "items").

Tests between the arms' final checkpoints (budget end), per suite (harness/stats.py): the headline
bootstrap over seeds and items with Holm's correction over the suites, and two secondary tests named
for what they condition on (paired over items given these runs; Welch over seeds, unpaired). All of
them are about the domain score's own definition (benchmarks weighted equally).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from harness.config.errors import UserError
from harness.runs import write_json_atomic, write_text_atomic
from harness.stats import (
    BOOTSTRAP_REPLICATES,
    hierarchical_bootstrap,
    holm,
    spread,
    stratified_paired_test,
    welch_test,
)
from harness.jobs.train import Budget, read_metrics

PAPER_SUITES = ("math", "code", "reasoning_gym")

PAPER = Path(__file__).resolve().parent / "paper.json"
"""The paper's published rows, with their source, printed beside the measured ones."""


class ReportError(UserError):
    """A folder that is not (yet) a comparison; one line."""


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# summary


def _base_curve(out: Path) -> list[dict]:
    """The base's RL curve (bootstrap.json copy), hours relative to its end (<= 0)."""
    from harness.jobs.compare import BASE_RECORD

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


def _aggregate(evs: list[dict], suites: list[str]) -> dict:
    """Scores and tokens of one evaluation point over the runs that have it."""
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
    prompts_per_step, learning_rate, lr_rule), rows, efficiency, significance, complete, provenance.
    A row: method, n, label (`baseline@<RL step>` / `<arm>@<base RL steps>+<arm steps>`), step,
    step_label, base_rl_step, eval_points (budget fractions it serves), seeds, steps_per_seed, hours
    (arm: mean training hours; baseline: position on the base curve, 0 = final), hours_per_seed,
    samples, samples_per_seed, budget_point, spent (mean actual spend of the evaluated checkpoints,
    in the budget's unit), spent_per_seed, and per suite: scores (mean), ci95, ci_kind, sd, scores_per_seed,
    mean_output_tokens, mean_output_tokens_sd, mean_output_tokens_per_seed.
    significance, per suite: headline (hierarchical bootstrap, with p_holm over the suites),
    paired_items (stratified by benchmark, given these runs), welch_seeds (K >= 2).
    """
    from harness.jobs.compare import SPEND_RULE, eval_points, point_steps, run_dir
    if not (out / "config.json").is_file():
        raise ReportError(f"'{out}' is not a comparison folder (no config.json); run `harness compare` first")
    try:
        meta = _read(out / "config.json")
    except json.JSONDecodeError:
        raise ReportError(f"'{out}/config.json' is not valid JSON (a half-written folder?); run `harness compare` again") from None
    if not isinstance(meta, dict) or not {"arms", "seeds", "budget", "suites"} <= set(meta):
        raise ReportError(f"'{out}' is not a comparison folder: its config.json was not written by `harness compare` "
                          "(a `harness train` run's folder?); give the folder `harness compare --out` wrote")
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

    evals = [_read(p) for p in sorted((out / "evals").glob("*.json"))]
    baseline_evals = sorted((e for e in evals if e["method"] == "baseline"), key=lambda e: e.get("rl_step", e["step"]))
    by_run = {(e["method"], e["seed"], e["step"]): e for e in evals if e["method"] in arms}

    runs: dict[tuple[str, int], dict] = {}
    settings: dict[str, dict | None] = {}
    for arm in arms:
        for seed in seeds:
            folder = run_dir(out, arm, seed)
            record = _read(folder / "config.json") if (folder / "config.json").is_file() else None
            rows = read_metrics(folder / "metrics.jsonl")
            runs[arm, seed] = {"metrics": {r["step"]: r for r in rows}, "points": point_steps(rows, budget, points)}
            if record is not None and settings.get(arm) is None:
                settings[arm] = record.get("arm")
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
            "hours_per_seed": [], "samples": None, **_aggregate([ev], suites),
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
                **_aggregate([ev for _, _, ev, _ in got], suites),
            }
            rows.append(row)
            previous = {"key": key, "row": row}

    efficiency = {}
    for arm in arms:
        per_seed = {"ds_pass_rate": [], "gen_samples_per_s": [], "steps": []}
        used = []
        for seed in seeds:
            steps = list(runs[arm, seed]["metrics"].values())
            if not steps:
                continue
            used.append(seed)
            gen_s = sum(r["gen_s"] for r in steps)
            per_seed["ds_pass_rate"].append(sum(r["ds_pass_rate"] for r in steps) / len(steps))
            per_seed["gen_samples_per_s"].append(steps[-1]["samples_generated"] / gen_s if gen_s > 0 else None)
            per_seed["steps"].append(len(steps))
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


def _mean_items(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each item's score averaged over the runs (items every run scored)."""
    common = set(per_seed[0]).intersection(*per_seed[1:]) if per_seed else set()
    return {i: sum(d[i] for d in per_seed) / len(per_seed) for i in sorted(common)}


# --------------------------------------------------------------------------------------------
# tables


def _pct(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _pm(mean, sd, fmt: str, scale: float = 1.0) -> str:
    """`mean ± sd` (sd over seeds), or the mean alone."""
    if mean is None:
        return "—"
    text = format(scale * mean, fmt)
    return text if sd is None else f"{text} ± {format(scale * sd, fmt)}"


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, ".3g")


def _spent(row: dict) -> str:
    """An arm row's actual spend: the mean over runs, and the largest when runs differ."""
    per = row.get("spent_per_seed") or []
    if not per:
        return "—"
    text = f"{row['spent']:.4g}"
    return text if max(per) == min(per) else f"{text} (max {max(per):.4g})"


def _test_cell(test: dict, n: str) -> str:
    """`+d pts, 95% CI [lo, hi], p = ..` (n) for one test's result; a dash where it is undefined."""
    if test.get("mean_diff") is None:
        return "—"
    lo, hi = test["ci95"]
    return (f"{100 * test['mean_diff']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}], p = {_p(test['p_value'])} ({n})")


def _arm_line(arm: str, s: dict | None) -> str:
    if not s:
        return f"- `{arm}`: no run recorded yet."
    lr = s.get("learning_rate")
    parts = [f"trainer `{s.get('trainer', '?')}`", f"N={s.get('n', '?')}", f"{s.get('prompts_per_step', '?')} prompts/step",
             f"learning rate {lr:.3g}" if isinstance(lr, (int, float)) else "learning rate ?"]
    if s.get("lr_rule"):
        parts.append(f"learning-rate rule: {s['lr_rule']}")
    return f"- `{arm}`: " + ", ".join(parts) + "."


def render_tables(summary: dict, paper: dict) -> str:
    rows, suites = summary["rows"], list(PAPER_SUITES)
    measured = [s for s in suites if any(s in r["scores"] for r in rows)]
    b = summary["budget"]
    budget = Budget(b["kind"], b["amount"])
    k = summary["n_seeds"]
    base = summary["base"]
    seeds = ", ".join(map(str, summary["seeds"]))
    if k >= 2:
        ci_text = (f"the mean over K={k} runs per arm (train.seed {seeds}), with the 95% t-interval over seeds "
                   f"(df={k - 1}); baseline rows (one evaluation each, and any point with a single finished run, "
                   "marked *) show the 95% interval over items")
    else:
        ci_text = (f"K=1: a single run per arm (train.seed {seeds}); the interval is the 95% interval over eval items "
                   "of that one run, NOT over seeds (seed-to-seed variation is not measured; use --seeds K)")
    early = base.get("early_rl_step")
    lines = [
        f"# BroRL comparison: profile `{summary['profile']}`",
        "",
        f"Budget per arm and run: {b['amount']:g} {b['kind']}, evaluated at {', '.join(f'{f:g}' for f in b['eval_points'])} "
        f"of it (and at its end). Both arms start from the same base: {base.get('rl_steps', 0)} RL steps of step-scaling "
        "RL after supervised warm-up" + (f"; the second baseline row is the same RL curve at step {early}" if early is not None else "")
        + ". Every run is evaluated on the same held-out items.",
        "",
        "Arms (settings from arms/<arm>/seed<k>/config.json):",
        "",
        *[_arm_line(arm, s) for arm, s in summary["arm_settings"].items()],
        "",
        (f"Scores: pass@1 (%) over k samples per held-out item; {ci_text}. "
         f"Suites measured here: {', '.join(measured)} (a dash: that suite is not in this profile)."),
        "" if summary["complete"] else ("\n**Incomplete run**: some evaluations are missing (an arm or seed has not reached "
                                        "an evaluation point yet); rows average the runs that have."),
        "",
        "## Table 2: scores",
        "",
        f"| method | N | RL steps | budget point | spent ({b['kind']}) | hours | samples | "
        + " | ".join(s.replace("_", " ") for s in suites) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(suites),
    ]
    for r in rows:
        cells = []
        for s in suites:
            if s in r["scores"]:
                ci = r["ci95"][s]
                mark = "*" if k >= 2 and r["ci_kind"] == "items" else ""
                cells.append(f"{_pct(r['scores'][s])} [{_pct(ci[0])}, {_pct(ci[1])}]{mark}" if ci else _pct(r["scores"][s]))
            else:
                cells.append("—")
        if r["method"] == "baseline":
            point, spent, hours, samples = "base", "—", "—", "—"
        else:
            point = ", ".join(f"{100 * f:g}% = {budget.point(f):g}" for f in r["eval_points"])
            spent = _spent(r)
            hours = f"+{r['hours']:.3f}"
            samples = f"{r['samples']:,.0f}"
        lines.append(f"| {r['method']} | {r['n']} | {r['step_label']} | {point} | {spent} | {hours} | {samples} | "
                     + " | ".join(cells) + " |")
    lines += ["", ("RL steps as the paper writes them: base RL steps + the arm's steps (a range when the runs differ). "
                   "Each arm is evaluated at matched spend: the last checkpoint whose spend is at or under the budget "
                   "point (never the step that passed it); `spent` is that checkpoint's actual spend (mean over runs, "
                   "and the largest), step 0 being the base itself. "
                   "Hours: the arm's training wall-clock (mean over runs); samples: generated samples (mean over runs)."),
              "", "Paper (continued from ProRLv2 1.5B, 64 H100; hours are added to the 3,000-step base):", "",
              "| method | N | RL steps | hours | samples (k) | math | code | reasoning gym |", "|---|---|---|---|---|---|---|---|"]
    for p in paper["table2"]:
        sc = p["scores"]
        lines.append(f"| {p['method']} | {p['n']} | {p['steps']} | {'' if p['hours'] is None else '+' + str(p['hours'])} | "
                     f"{'' if p['samples_k'] is None else format(p['samples_k'], ',')} | {sc['math']} | {sc['code']} | {sc['reasoning_gym']} |")

    spread_note = " (mean ± sd over seeds)" if k >= 2 else ""
    lines += ["", f"## Table 3: compute efficiency{spread_note}", "",
              "| method | N | dynamic-sampling pass rate | generation samples/s | RL steps |", "|---|---|---|---|---|"]
    n_of = {arm: (s or {}).get("n", "") for arm, s in summary["arm_settings"].items()}
    for arm, e in summary["efficiency"].items():
        sd = e["sd"] if len(e["seeds"]) >= 2 else {}
        steps = e["per_seed"]["steps"]
        step_text = str(steps[0]) if min(steps) == max(steps) else f"{e['steps']:.1f} ({min(steps)}..{max(steps)})"
        lines.append(f"| {arm} | {n_of.get(arm, '')} | {_pm(e['ds_pass_rate'], sd.get('ds_pass_rate'), '.0f', 100)}% | "
                     f"{_pm(e['gen_samples_per_s'], sd.get('gen_samples_per_s'), '.1f')} | {step_text} |")
    lines += ["", ("Pass rate: mean over steps of the fraction of generated prompt groups kept by dynamic sampling; "
                   "samples/s: generated samples / generation seconds of the whole run."),
              "Paper: " + "; ".join(f"{p['method']} (N={p['n']}): {100 * p['ds_pass_rate']:.0f}%, {p['gen_samples_per_s']} samples/s"
                                    for p in paper["table3"]) + " (whole cluster)."]

    arms = list(summary["arm_settings"])
    finals = {a: next((r for r in reversed(rows) if r["method"] == a and 1.0 in r["eval_points"]), None) for a in arms}
    lines += ["", f"## Table 4: scores and mean output tokens of the final checkpoints{spread_note}", ""]
    if len(arms) == 2 and all(finals.values()):
        a, b2 = arms
        lines += [f"| task | {a} score | {b2} score | {a} tokens | {b2} tokens | token change |",
                  "|---|---|---|---|---|---|"]
        for s in measured:
            fa, fb = finals[a], finals[b2]
            if s not in fa["scores"] or s not in fb["scores"]:
                continue
            ta, tb = fa["mean_output_tokens"][s], fb["mean_output_tokens"][s]
            lines.append(f"| {s} | {_pm(fa['scores'][s], fa['sd'][s], '.2f', 100)} | {_pm(fb['scores'][s], fb['sd'][s], '.2f', 100)} | "
                         f"{_pm(ta, fa['mean_output_tokens_sd'][s], '.1f')} | {_pm(tb, fb['mean_output_tokens_sd'][s], '.1f')} | "
                         f"{(round(tb - ta, 1) or 0.0):+.1f} |")
        lines += ["", f"### Is {b2} - {a} different from 0? (final checkpoints, points of pass@1)", "",
                  (f"| task | headline: bootstrap over seeds and items | Holm p ({len(summary['significance'])} domains) "
                   "| paired over items, given these runs | Welch over seeds, unpaired |"), "|---|---|---|---|---|"]
        for s in measured:
            sig = summary["significance"].get(s)
            if not sig:
                continue
            h, items, welch = sig["headline"], sig["paired_items"], sig.get("welch_seeds")
            cells = [_test_cell(h, f"K={h['n_seeds']} seeds x {h['n_items']} items"), _p(h.get("p_holm")),
                     _test_cell(items, f"{items['n_items']} items"),
                     _test_cell(welch, f"{welch['n'][0]}+{welch['n'][1]} runs") if welch else "—"]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", ("Every test is of the domain score as the tables define it: the unweighted mean over benchmarks, "
                       "so each item weighs 1 / (benchmarks x its benchmark's items). Headline: a two-way bootstrap "
                       f"({BOOTSTRAP_REPLICATES} replicates) that resamples seeds, keeping seed s of both arms paired (they share its prompt "
                       "order), and items within each benchmark; percentile interval; Holm's correction over the "
                       "domains tested. Paired over items: each item averaged over an arm's seeds, then a t-test "
                       "stratified by benchmark; it conditions on these K runs and ignores run-to-run noise. Welch: "
                       "the K per-seed domain scores of each arm, unpaired; it ignores the eval set's noise and the "
                       "shared prompt order. harness/stats.py has each.")]
    else:
        lines.append("Not available until both arms have a final evaluation.")
    lines += ["", "Paper: " + "; ".join(f"{p['task']}: ProRL {p['prorl_score']} / BroRL {p['brorl_score']}, tokens {p['prorl_tokens']:,} -> "
                                       f"{p['brorl_tokens']:,} ({p['token_change']:+,})" for p in paper["table4"]) + ".",
              "", f"Source of the paper's numbers: {paper['source']['blog']}; {paper['source']['paper']}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# figure


def render_figure(summary: dict, path: Path) -> None:
    """Score vs training hours, one panel per measured suite: the base's RL curve at negative hours
    (validation pass@1), the baseline evaluations on it, then each arm's mean over seeds from 0 on,
    with its min-max band over seeds (K >= 2) or its interval over items (K = 1), and each seed faintly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    suites = [s for s in PAPER_SUITES if any(s in r["scores"] for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(suites)), figsize=(max(7.5, 5.5 * len(suites)), 4.6), squeeze=False)
    base = [r for r in rows if r["method"] == "baseline"]
    final_base = next((r for r in base if r["hours"] == 0.0), base[-1] if base else None)
    arms = list(summary["arm_settings"])
    k = summary["n_seeds"]
    curve = summary.get("base_curve", [])
    for ax, suite in zip(axes[0], suites):
        pts = [p for p in curve if suite in p["val_per_suite"]]
        if pts:
            ax.plot([p["hours"] for p in pts], [100 * p["val_per_suite"][suite] for p in pts], color="0.45",
                    linewidth=1.2, marker=".", markersize=4, label="base RL curve (validation pass@1)")
        bx, by, blo, bhi, names = [], [], [], [], []
        for r in base:
            if suite in r["scores"] and r["hours"] is not None:
                bx.append(r["hours"])
                by.append(100 * r["scores"][suite])
                lo, hi = r["ci95"][suite]
                blo.append(100 * (r["scores"][suite] - lo))
                bhi.append(100 * (hi - r["scores"][suite]))
                names.append(r["step_label"])
        if bx:
            ax.errorbar(bx, by, yerr=[blo, bhi], fmt="s", color="black", capsize=3, markersize=5,
                        label=f"baseline eval (RL step {', '.join(names)})", zorder=5)
        start = (0.0, 100 * final_base["scores"][suite]) if final_base and suite in final_base["scores"] else None
        for arm, color in zip(arms, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
            arm_rows = [r for r in rows if r["method"] == arm and suite in r["scores"]]
            if not arm_rows:
                continue
            n = (summary["arm_settings"].get(arm) or {}).get("n", "?")
            lead_x, lead_y = ([start[0]], [start[1]]) if start else ([], [])
            for seed in summary["seeds"] if k >= 2 else []:
                sx, sy = list(lead_x), list(lead_y)
                for r in arm_rows:
                    if seed in r["seeds"]:
                        i = r["seeds"].index(seed)
                        sx.append(r["hours_per_seed"][i])
                        sy.append(100 * r["scores_per_seed"][suite][i])
                ax.plot(sx, sy, color=color, alpha=0.3, linewidth=0.8, marker=".", markersize=3)
            xs = lead_x + [r["hours"] for r in arm_rows]
            ys = lead_y + [100 * r["scores"][suite] for r in arm_rows]
            if k >= 2:
                lo = lead_y + [100 * min(r["scores_per_seed"][suite]) for r in arm_rows]
                hi = lead_y + [100 * max(r["scores_per_seed"][suite]) for r in arm_rows]
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15, linewidth=0)
                ax.plot(xs, ys, color=color, marker="o", linewidth=1.8, label=f"{arm} (N={n}), mean of {k} seeds")
            else:
                lo = [0.0] * len(lead_x) + [100 * (r["scores"][suite] - r["ci95"][suite][0]) for r in arm_rows]
                hi = [0.0] * len(lead_x) + [100 * (r["ci95"][suite][1] - r["scores"][suite]) for r in arm_rows]
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=color, label=f"{arm} (N={n})")
        ax.axvline(0.0, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(suite.replace("_", " "))
        ax.set_xlabel("training time (hours; base RL before 0, arms after)")
        ax.set_ylabel("pass@1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    band = f"band: min-max over {k} seeds, faint lines: each seed" if k >= 2 else "error bars: 95% CI over items (1 seed)"
    fig.suptitle(f"Score vs training time, profile {summary['profile']}: eval pass@1 of the arms from the base at 0\n"
                 f"({band}; the base's RL curve: its validation pass@1)", fontsize=9)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".figure1.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def render(out: Path) -> dict:
    """Write summary.json, tables.md and figure1.png for a comparison folder; returns the summary."""
    summary = build_summary(out)
    paper = json.loads(PAPER.read_text())
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "tables.md", render_tables(summary, paper))
    if summary["rows"]:
        render_figure(summary, out / "figure1.png")
    return summary
