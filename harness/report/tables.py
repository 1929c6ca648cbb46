"""Table 2, 3 and 4 of a comparison as Markdown (tables.md), from the summary dict alone, with the
paper's published rows printed beside the measured ones: the cell formatting (percent, mean ± sd,
p-values, spend, test results) lives here so the summary stays plain numbers in fractions and the
tables read like the paper's.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.report.summary import PAPER_SUITES, load_warning
from harness.runs import BUDGET_KINDS, Budget
from harness.stats import BOOTSTRAP_REPLICATES

PAPER = Path(__file__).resolve().parent / "paper.json"
"""The paper's published rows, with their source, printed beside the measured ones."""


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


def _signed(mean, sd, fmt: str) -> str:
    """`+mean ± sd`, the sign on the mean only."""
    if mean is None:
        return "—"
    text = format(mean, "+" + fmt)
    return text if sd is None else f"{text} ± {format(sd, fmt)}"


def probe_table(efficiency: dict, n_of: dict, spread_note: str = "") -> list[str]:
    """The ΔQ_pos probe per arm (runs with train.probe_every on), as lines of tables.md; no lines
    when no arm's runs logged it, so folders without probe fields render as before."""
    probed = {arm: e["probe"] for arm, e in efficiency.items() if e.get("probe")}
    if not probed:
        return []
    lines = ["", f"### ΔQ_pos on the policy: mass on known-correct responses (train.probe_every){spread_note}", "",
             "| method | N | probed updates | ΔQ_pos fall rate | mean ΔQ_pos | mean Δ log p(target) | items whose mass fell |",
             "|---|---|---|---|---|---|---|"]
    for arm, p in probed.items():
        sd = p["sd"] if len(p["seeds"]) >= 2 else {}
        updates = p["per_seed"]["probed_updates"]
        count = str(updates[0]) if min(updates) == max(updates) else f"{min(updates)}..{max(updates)}"
        lines.append(f"| {arm} | {n_of.get(arm, '')} | {count} | {_pm(p['fall_rate'], sd.get('fall_rate'), '.0f', 100)}% | "
                     f"{_signed(p['delta_q_pos'], sd.get('delta_q_pos'), '.3g')} | {_signed(p['logp_delta'], sd.get('logp_delta'), '.4f')} | "
                     f"{_pm(p['fell'], sd.get('fell'), '.0f', 100)}% |")
    lines += ["", ("A fixed set of training prompts with a known-correct response (the same items for every arm); "
                   "Q_pos of an item is the policy's probability of that whole response at the rollout temperature, "
                   "measured before and after each probed step's update. Fall rate: the share of probed updates "
                   "whose mean ΔQ_pos over the items was negative (BroRL's argument: rarer as N grows). Δ log p: the "
                   "mean change of the response's summed log-probability, better behaved than the tiny masses.")]
    return lines


def vs_base_table(vs_base: dict, measured: list[str], base_rl: int) -> list[str]:
    """Each arm's final checkpoints minus the base: whether step scaling had stalled there (the
    paper's premise) and whether each arm moved."""
    if not vs_base:
        return []
    lines = ["", f"### Did each arm move from the base? (final checkpoints minus the base at RL step {base_rl}, points of pass@1)", "",
             "| arm | " + " | ".join(s.replace("_", " ") for s in measured) + " |", "|---|" + "---|" * len(measured)]
    for arm, by_suite in vs_base.items():
        cells = [_test_cell(by_suite[s], f"{by_suite[s]['n_items']} items") if s in by_suite else "—" for s in measured]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", ("Paired over items (an item's score averaged over the arm's seeds), stratified by benchmark; it "
                   "conditions on these runs and the base's one evaluation. An arm whose interval contains 0 did not "
                   "move measurably: for the step-scaling arm that is the paper's premise, a stalled base.")]
    return lines


def _kind_words(kind: str) -> str:
    """` (what cpu_s counts)` after the budget: the kinds older folders have (wall_s, samples, tokens,
    steps) render as they did."""
    return f" ({BUDGET_KINDS[kind]})" if kind == "cpu_s" else ""


def load_lines(summary: dict) -> list[str]:
    """How busy the machine was while the arms trained (summary `machine_load`), as lines of
    tables.md; none for folders written before it was recorded, so they render as before."""
    load = summary.get("machine_load")
    if not load:
        return []
    ratios = [f"{r['arm']} seed {r['seed']} {r['cpu_per_wall']:.2f}" for r in load["per_run"] if r["cpu_per_wall"] is not None]
    waits = [f"{r['arm']} seed {r['seed']} {r['wait_per_wall']:.2f}" for r in load["per_run"] if r.get("wait_per_wall") is not None]
    line = (f"Machine load while the arms trained: mean 1-minute load average {load['loadavg_1m_mean']:.2f} (max "
            f"{load['loadavg_1m_max']:.2f}) on {load['usable_cpus']} usable CPUs"
            + (f"; CPU / wall-clock of training (cores used): {', '.join(ratios)}" if ratios else "")
            + (f"; CPU wait / wall-clock (tasks kept waiting for a core): {', '.join(waits)}" if waits else "") + ".")
    warning = load_warning(summary)
    return ["", line] + (["", f"**{warning}**"] if warning else [])


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
        f"Budget per arm and run: {b['amount']:g} {b['kind']}{_kind_words(b['kind'])}, evaluated at {', '.join(f'{f:g}' for f in b['eval_points'])} "
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
        *load_lines(summary),
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
    lines += probe_table(summary["efficiency"], n_of, spread_note)

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
    lines += vs_base_table(summary.get("vs_base") or {}, measured, base.get("rl_steps", 0))
    lines += ["", "Paper: " + "; ".join(f"{p['task']}: ProRL {p['prorl_score']} / BroRL {p['brorl_score']}, tokens {p['prorl_tokens']:,} -> "
                                       f"{p['brorl_tokens']:,} ({p['token_change']:+,})" for p in paper["table4"]) + ".",
              "", f"Source of the paper's numbers: {paper['source']['blog']}; {paper['source']['paper']}.", ""]
    return "\n".join(lines)

