"""Render a comparison folder into summary.json, tables.md and figure1.png, from its files alone.

    harness report DIR      # re-render a finished or interrupted `harness compare` folder

Nothing is re-run: the rows come from `evals/*.json` and the arms' `metrics.jsonl` and
`config.json`. Scores are pass@1 over k samples (fractions in JSON, percent in the tables, like
the paper). The paired test compares the two arms' last evaluated checkpoints item by item (each
item's mean reward over its k samples): a paired t-test, as the paper used, with its p-value.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from harness.files import write_json_atomic, write_text_atomic

from results import PAPER
PAPER_SUITES = ("math", "code", "reasoning_gym")


class ReportError(ValueError):
    """A folder that is not (yet) a comparison; one line."""


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _metrics(path: Path) -> list[dict]:
    from harness.train import read_metrics

    return read_metrics(path)


def build_summary(out: Path) -> dict:
    """The summary.json content of a comparison folder."""
    if not (out / "config.json").is_file():
        raise ReportError(f"'{out}' is not a comparison folder (no config.json); run `harness compare` first")
    meta = _read(out / "config.json")
    arms: list[str] = meta["arms"]
    suites: list[str] = meta["suites"]
    evals = [_read(p) for p in sorted((out / "evals").glob("*.json"))]
    arm_info = {}
    for arm in arms:
        folder = out / "arms" / arm
        arm_info[arm] = {
            "settings": _read(folder / "config.json")["arm"] if (folder / "config.json").is_file() else None,
            "metrics": {row["step"]: row for row in _metrics(folder / "metrics.jsonl")},
        }
    base_n = meta["configs"][arms[0]]["train"]["n"]
    rows = []
    for ev in sorted(evals, key=lambda e: (e["method"] != "baseline", arms.index(e["method"]) if e["method"] in arms else -1, e["step"])):
        method = ev["method"]
        if method == "baseline":
            n, hours, samples = base_n, 0.0, 0
        else:
            info = arm_info[method]
            metric = info["metrics"].get(ev["step"], {})
            n = info["settings"]["n"] if info["settings"] else None
            hours = metric.get("wall_s", float("nan")) / 3600
            samples = metric.get("samples_generated", 0)
        rows.append({
            "method": method, "n": n, "step": ev["step"], "hours": hours, "samples": samples,
            "scores": {s: ev["suites"][s]["pass_at_1"] for s in suites if s in ev["suites"]},
            "ci95": {s: ev["suites"][s]["ci95"] for s in suites if s in ev["suites"]},
            "mean_output_tokens": {s: ev["suites"][s]["mean_output_tokens"] for s in suites if s in ev["suites"]},
        })
    efficiency = {}
    for arm in arms:
        steps = list(arm_info[arm]["metrics"].values())
        if steps:
            gen_s = sum(r["gen_s"] for r in steps)
            efficiency[arm] = {
                "ds_pass_rate": sum(r["ds_pass_rate"] for r in steps) / len(steps),
                "gen_samples_per_s": steps[-1]["samples_generated"] / gen_s if gen_s > 0 else None,
                "steps": len(steps),
            }
    last = {arm: max((e for e in evals if e["method"] == arm), key=lambda e: e["step"], default=None) for arm in arms}
    significance = {}
    if all(last.values()):
        for s in suites:
            significance[s] = paired_test(last[arms[0]]["suites"][s]["item_scores"], last[arms[1]]["suites"][s]["item_scores"])
            significance[s]["compared"] = f"{arms[1]} step {last[arms[1]]['step']} - {arms[0]} step {last[arms[0]]['step']}"
    return {
        "profile": meta["profile"],
        "budget": meta["budget"],
        "rows": rows,
        "efficiency": efficiency,
        "significance": significance,
        "complete": all(last.values()),
        "provenance": meta["provenance"],
    }


def paired_test(a: dict[str, float], b: dict[str, float]) -> dict:
    """Paired t-test of b - a over the items both were scored on."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    diffs = [b[i] - a[i] for i in common]
    n = len(diffs)
    if n < 2:
        return {"test": "paired t-test", "n_items": n, "mean_diff": None, "ci95": None, "t": None, "p_value": None}
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0:
        return {"test": "paired t-test", "n_items": n, "mean_diff": mean, "ci95": [mean, mean], "t": None,
                "p_value": 1.0 if mean == 0 else 0.0}
    result = stats.ttest_rel([b[i] for i in common], [a[i] for i in common])
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"test": "paired t-test", "n_items": n, "mean_diff": mean, "ci95": [mean - half, mean + half],
            "t": float(result.statistic), "p_value": float(result.pvalue)}


def _pct(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def render_tables(summary: dict, paper: dict) -> str:
    rows, suites = summary["rows"], list(PAPER_SUITES)
    measured = [s for s in suites if any(s in r["scores"] for r in rows)]
    b = summary["budget"]
    lines = [
        f"# BroRL comparison: profile `{summary['profile']}`",
        "",
        f"Budget per arm: {b['amount']:g} {b['kind']}, evaluated at {', '.join(f'{f:g}' for f in b['eval_points'])} of it. "
        "Scores: pass@1 (%) over k samples per held-out item, with the 95% interval over items; "
        f"suites measured here: {', '.join(measured)} (a dash: that suite is not in this profile yet).",
        "" if summary["complete"] else "\n**Incomplete run**: some arms have no evaluation yet.",
        "",
        "## Table 2: scores",
        "",
        "| method | N | RL steps | hours | samples | " + " | ".join(suites) + " |",
        "|---|---|---|---|---|" + "---|" * len(suites),
    ]
    for r in rows:
        cells = []
        for s in suites:
            if s in r["scores"]:
                lo, hi = r["ci95"][s]
                cells.append(f"{_pct(r['scores'][s])} [{_pct(lo)}, {_pct(hi)}]")
            else:
                cells.append("—")
        lines.append(f"| {r['method']} | {r['n']} | {r['step']} | {r['hours']:.3f} | {r['samples']:,} | " + " | ".join(cells) + " |")
    lines += ["", "Paper (continued from ProRLv2 1.5B, 64 H100; hours are added to the 3,000-step base):", "",
              "| method | N | RL steps | hours | samples (k) | math | code | reasoning gym |", "|---|---|---|---|---|---|---|---|"]
    for p in paper["table2"]:
        sc = p["scores"]
        lines.append(f"| {p['method']} | {p['n']} | {p['steps']} | {'' if p['hours'] is None else '+' + str(p['hours'])} | "
                     f"{'' if p['samples_k'] is None else format(p['samples_k'], ',')} | {sc['math']} | {sc['code']} | {sc['reasoning_gym']} |")

    lines += ["", "## Table 3: compute efficiency", "",
              "| method | N | dynamic-sampling pass rate | generation samples/s | RL steps |", "|---|---|---|---|---|"]
    n_of = {r["method"]: r["n"] for r in rows}
    for arm, e in summary["efficiency"].items():
        rate = "—" if e["gen_samples_per_s"] is None else f"{e['gen_samples_per_s']:.1f}"
        lines.append(f"| {arm} | {n_of.get(arm, '')} | {100 * e['ds_pass_rate']:.0f}% | {rate} | {e['steps']} |")
    lines += ["", "Paper: " + "; ".join(f"{p['method']} (N={p['n']}): {100 * p['ds_pass_rate']:.0f}%, {p['gen_samples_per_s']} samples/s"
                                       for p in paper["table3"]) + " (whole cluster)."]

    arms = [a for a in summary["efficiency"]]
    finals = {a: max((r for r in rows if r["method"] == a), key=lambda r: r["step"], default=None) for a in arms}
    lines += ["", "## Table 4: scores and mean output tokens of the final checkpoints", ""]
    if len(arms) == 2 and all(finals.values()):
        a, b2 = arms
        lines += [f"| task | {a} score | {b2} score | {a} tokens | {b2} tokens | token change | paired test ({b2} - {a}) |",
                  "|---|---|---|---|---|---|---|"]
        for s in measured:
            sig = summary["significance"].get(s, {})
            test = "—" if sig.get("mean_diff") is None else (
                f"{100 * sig['mean_diff']:+.2f} pts, 95% CI [{100 * sig['ci95'][0]:+.2f}, {100 * sig['ci95'][1]:+.2f}], "
                f"p = {'n/a' if sig['p_value'] is None else format(sig['p_value'], '.3g')} (n={sig['n_items']})")
            ta, tb = finals[a]["mean_output_tokens"][s], finals[b2]["mean_output_tokens"][s]
            lines.append(f"| {s} | {_pct(finals[a]['scores'][s])} | {_pct(finals[b2]['scores'][s])} | {ta:.1f} | {tb:.1f} | {tb - ta:+.1f} | {test} |")
    else:
        lines.append("Not available until both arms have a final evaluation.")
    lines += ["", "Paper: " + "; ".join(f"{p['task']}: ProRL {p['prorl_score']} / BroRL {p['brorl_score']}, tokens {p['prorl_tokens']:,} -> "
                                       f"{p['brorl_tokens']:,} ({p['token_change']:+,})" for p in paper["table4"]) + ".",
              "", f"Source of the paper's numbers: {paper['source']['blog']}; {paper['source']['paper']}.", ""]
    return "\n".join(lines)


def render_figure(summary: dict, path: Path) -> None:
    """Score vs training hours, one panel per measured suite, both arms from the shared baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    suites = [s for s in PAPER_SUITES if any(s in r["scores"] for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(suites)), figsize=(5.5 * max(1, len(suites)), 4.2), squeeze=False)
    base = [r for r in rows if r["method"] == "baseline"]
    arms = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "baseline"))
    for ax, suite in zip(axes[0], suites):
        for arm, color in zip(arms, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
            pts = [r for r in base + sorted((r for r in rows if r["method"] == arm), key=lambda r: r["step"]) if suite in r["scores"]]
            xs = [r["hours"] for r in pts]
            ys = [100 * r["scores"][suite] for r in pts]
            lo = [100 * (r["scores"][suite] - r["ci95"][suite][0]) for r in pts]
            hi = [100 * (r["ci95"][suite][1] - r["scores"][suite]) for r in pts]
            n = next((r["n"] for r in pts if r["method"] == arm), "?")
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=color, label=f"{arm} (N={n})")
        if base and suite in base[0]["scores"]:
            ax.axhline(100 * base[0]["scores"][suite], color="gray", linestyle=":", linewidth=1, label="baseline")
        ax.set_title(suite.replace("_", " "))
        ax.set_xlabel("training time (hours)")
        ax.set_ylabel("pass@1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Score vs training time, profile {summary['profile']} (error bars: 95% CI over items)", fontsize=10)
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
