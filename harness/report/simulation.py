"""The figure of a `harness simulate` folder (simulation.png), from its simulation.json alone:
Q_pos vs step for each N (and its gain), and the mean size of each term of ΔQ_pos per N. Nothing is re-run;
matplotlib is imported only when the figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

from harness.config import UserError
from harness.jobs.simulate import FIGURE_FILE, RESULT_FILE
from harness.report.figure import save_png
from harness.runs import read_record

TERMS = (("sampled_pos", "sampled correct (A)", "tab:green"), ("sampled_neg", "sampled incorrect (B)", "tab:blue"),
         ("unsampled", "unsampled coupling (U)", "tab:red"), ("weight_decay", "of which weight decay", "tab:orange"))


def render_simulation(out: Path) -> Path:
    """Draw out/simulation.png from out/simulation.json; returns the figure's path."""
    out = Path(out)
    result = read_record(out / RESULT_FILE)
    if result is None or "arms" not in result:
        raise UserError(f"{out / RESULT_FILE} is missing or not a `harness simulate` result; run harness simulate --out {out}")
    return render_simulation_figure(result, out / FIGURE_FILE)


def render_simulation_figure(result: dict, path: Path) -> Path:
    """Left: Q_pos vs step, one line per N. Middle: Q_pos minus its start (symmetric-log axis, so the
    small-N gains show). Right: per N, the mean of each term of ΔQ_pos over the steps (symmetric-log
    axis: a negative mean goes below 0), with the share of steps whose ΔQ_pos < 0 above each group."""
    import matplotlib  # lazy: matplotlib costs start-up time; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    s = result["settings"]
    rows = {r["n"]: r for r in result["table"]}
    arms = list(result["arms"].values())
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = plt.cm.viridis([0.85 * i / max(1, len(arms) - 1) for i in range(len(arms))])
    for arm, color in zip(arms, colors):
        q = [*arm["series"]["q_pos"], arm["final_q_pos"]]
        left.plot(range(len(q)), q, color=color, linewidth=1.4, label=f"N={arm['n']:,}")
        gain = [v - q[0] for v in q]
        middle.plot(range(len(q)), gain, color=color, linewidth=1.4, label=f"N={arm['n']:,}")
    left.set_ylabel("Q_pos (probability mass on the correct set)")
    left.set_title("correct mass vs step")
    middle.set_yscale("symlog", linthresh=1e-9)
    middle.set_ylabel("Q_pos - Q_pos at step 0 (symmetric log)")
    middle.set_title("its gain vs step (small N visible)")
    for ax in (left, middle):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    width = 0.8 / len(TERMS)
    smallest = min((abs(r[f"mean_{k}"]) for r in rows.values() for k, _, _ in TERMS if r[f"mean_{k}"]), default=1e-12)
    for i, (key, label, color) in enumerate(TERMS):
        xs = [j + (i - (len(TERMS) - 1) / 2) * width for j in range(len(arms))]
        right.bar(xs, [rows[a["n"]][f"mean_{key}"] for a in arms], width=width, color=color, label=label)
    top = max(abs(r["mean_dq_pos"]) for r in rows.values()) or 1.0
    for j, arm in enumerate(arms):
        right.text(j, top * 3, f"{100 * rows[arm['n']]['frac_dq_negative']:.1f}%\nΔQ<0", ha="center", va="bottom", fontsize=7)
    right.set_yscale("symlog", linthresh=smallest)
    right.set_ylim(top=top * 60)
    right.axhline(0.0, color="0.4", linewidth=0.8)
    right.set_xticks(range(len(arms)), [f"N={a['n']:,}" for a in arms])
    right.set_ylabel("mean over steps (ΔQ_pos units, symmetric log)")
    right.set_title("the terms of ΔQ_pos (exact path-integral split)")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"toy simulation: V={s['vocab']:,}, {s['correct']:,} correct, {s['optimizer']} lr {s['lr']:g} "
                 f"wd {s['weight_decay']:g}, baseline {s['baseline']}, init {s['init']}, {s['steps']} steps, seed {s['seed']}",
                 fontsize=9)
    fig.tight_layout()
    return save_png(fig, Path(path))
