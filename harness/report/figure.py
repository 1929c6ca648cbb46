"""Figure 1 of a comparison (figure1.png), from the summary dict alone: score vs training hours per
suite, the base's RL curve before 0 and the arms after it; under a budget that is not wall-clock
(cpu_s, samples, tokens, steps) a second row shows the same scores against the budget's own unit,
so the figure shows both what was budgeted and the hours it took. Apart from the tables because it
alone needs matplotlib, which is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
from pathlib import Path

from harness.report.summary import PAPER_SUITES
from harness.runs import BUDGET_KINDS, write_bytes_atomic

COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple")


def render_figure(summary: dict, path: Path) -> None:
    """Score vs training hours, one panel per measured suite: the base's RL curve at negative hours
    (validation pass@1), the baseline evaluations on it, then each arm's mean over seeds from 0 on,
    with its min-max band over seeds (K >= 2) or its interval over items (K = 1), and each seed faintly.
    A budget kind other than wall_s adds a row: the arms' scores against their actual spend in that
    unit (`spent`), from the base at 0 (`_budget_panel`)."""
    import matplotlib  # lazy: matplotlib costs start-up time; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    rows = summary["rows"]
    suites = [s for s in PAPER_SUITES if any(s in r["scores"] for r in rows)]
    kind = summary["budget"]["kind"]
    by_budget = kind != "wall_s"  # wall_s: the hours axis is the budget's own
    fig, axes = plt.subplots(2 if by_budget else 1, max(1, len(suites)),
                             figsize=(max(7.5, 5.5 * len(suites)), 8.8 if by_budget else 4.6), squeeze=False)
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
        for arm, color in zip(arms, COLORS):
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
    if by_budget:
        for ax, suite in zip(axes[1], suites):
            _budget_panel(ax, summary, suite, final_base)
    band = f"band: min-max over {k} seeds, faint lines: each seed" if k >= 2 else "error bars: 95% CI over items (1 seed)"
    b = summary["budget"]
    fig.suptitle(f"Score vs training time, profile {summary['profile']}: eval pass@1 of the arms from the base at 0\n"
                 f"budget {b['amount']:g} {kind} ({BUDGET_KINDS.get(kind, kind)})"
                 + ("; lower row: against that budget" if by_budget else "")
                 + f"\n({band}; the base's RL curve: its validation pass@1)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def _budget_panel(ax, summary: dict, suite: str, final_base: dict | None) -> None:
    """One suite's arm scores against their actual spend in the budget's unit (the evaluated
    checkpoints' `spent`), each from the base's score at 0, with the budget points marked."""
    b, k, rows = summary["budget"], summary["n_seeds"], summary["rows"]
    start = ([0.0], [100 * final_base["scores"][suite]]) if final_base and suite in final_base["scores"] else ([], [])
    for arm, color in zip(summary["arm_settings"], COLORS):
        arm_rows = [r for r in rows if r["method"] == arm and suite in r["scores"]]
        if not arm_rows:
            continue
        n = (summary["arm_settings"].get(arm) or {}).get("n", "?")
        for seed in summary["seeds"] if k >= 2 else []:
            sx, sy = list(start[0]), list(start[1])
            for r in arm_rows:
                if seed in r["seeds"]:
                    i = r["seeds"].index(seed)
                    sx.append(r["spent_per_seed"][i])
                    sy.append(100 * r["scores_per_seed"][suite][i])
            ax.plot(sx, sy, color=color, alpha=0.3, linewidth=0.8, marker=".", markersize=3)
        ax.plot(start[0] + [r["spent"] for r in arm_rows], start[1] + [100 * r["scores"][suite] for r in arm_rows],
                color=color, marker="o", linewidth=1.8, label=f"{arm} (N={n})" + (f", mean of {k} seeds" if k >= 2 else ""))
    for f in b["eval_points"]:
        ax.axvline(f * b["amount"], color="0.75", linestyle="--", linewidth=0.8)
    ax.set_title(f"{suite.replace('_', ' ')}: against the budget")
    ax.set_xlabel(f"spent ({b['kind']}: {BUDGET_KINDS.get(b['kind'], b['kind'])}); dashed: budget points")
    ax.set_ylabel("pass@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save_png(fig, path: Path, dpi: int = 120) -> Path:
    """`fig` as a PNG at `path`, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only when a figure is written

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())
