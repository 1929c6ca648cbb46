"""The figure of a `harness simulate` folder (simulation.png), from its simulation.json alone, and
the sensitivity table of several such folders. Top row: the paper's three panels (Q_pos vs step;
share of correct tokens whose probability rose since step 0; the worst change of a correct token's
probability). Bottom row: the project's mass balance (Q_pos minus its start, the sign of ΔQ_pos at
every step, the mean of each exact term per N). Nothing is re-run; file names come from the run
layout (harness/runs.py); matplotlib is imported only when the figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

from harness.config import UserError
from harness.report.figure import save_png
from harness.runs import SIM_FIGURE_FILE, SIM_RESULT_FILE, read_record

TERMS = (("sampled_pos", "sampled correct (A)", "tab:green"), ("sampled_neg", "sampled incorrect (B)", "tab:blue"),
         ("unsampled", "unsampled coupling (U)", "tab:red"), ("weight_decay", "of which weight decay", "tab:orange"))


def read_simulation(out: Path) -> dict:
    """out/simulation.json, or a one-line UserError naming what is wrong."""
    result = read_record(Path(out) / SIM_RESULT_FILE)
    if result is None or "arms" not in result:
        raise UserError(f"{Path(out) / SIM_RESULT_FILE} is missing or not a `harness simulate` result; run harness simulate --out {out}")
    return result


def title(s: dict) -> str:
    """The figure's title: every setting the file records."""
    init = f"{s['init']} (anchor {s['anchor']})" if s["init"] == "seeded" else s["init"]
    opt = f"{s['optimizer']} lr {s['lr']:g}" + (f" eps {s['eps']:g}" if s["optimizer"] == "adamw" else "")
    return (f"toy simulation: objective {s['objective']}, V={s['vocab']:,}, {s['correct']:,} correct, {s['steps']} steps, {opt} "
            f"wd {s['weight_decay']:g}, baseline {s['baseline']}, init {init}, seed {s['seed']}")


def render_simulation(out: Path) -> Path:
    """Draw out/simulation.png from out/simulation.json; returns the figure's path."""
    return render_simulation_figure(read_simulation(out), Path(out) / SIM_FIGURE_FILE)


def render_simulation_figure(result: dict, path: Path) -> Path:
    """The six panels (module docstring). The sign raster has one row per N: red where ΔQ_pos < 0."""
    import matplotlib  # lazy: matplotlib costs start-up time; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above
    from matplotlib.colors import ListedColormap  # lazy: as above

    rows = {r["n"]: r for r in result["table"]}
    arms = list(result["arms"].values())
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    (q_ax, rose_ax, drop_ax), (gain_ax, sign_ax, term_ax) = axes
    colors = plt.cm.viridis([0.85 * i / max(1, len(arms) - 1) for i in range(len(arms))])
    for arm, color in zip(arms, colors):
        se, label = arm["series"], f"N={arm['n']:,}"
        q = [*se["q_pos"], arm["final_q_pos"]]
        steps = range(len(q))
        q_ax.plot(steps, q, color=color, linewidth=1.4, label=label)
        rose_ax.plot(steps, [0.0, *se["rose_share"]], color=color, linewidth=1.4, label=label)
        drop_ax.plot(steps, [0.0, *se["worst_drop"]], color=color, linewidth=1.4, label=label)
        gain_ax.plot(steps, [v - q[0] for v in q], color=color, linewidth=1.4, label=label)
    q_ax.set(ylabel="Q_pos (probability mass on the correct set)", title="1. correct mass vs step (paper)")
    rose_ax.set(ylabel="share of correct tokens with p > p at step 0", title="2. correct tokens that gained (paper)", ylim=(-0.03, 1.03))
    drop_ax.set(ylabel="min over correct tokens of p - p at step 0", title="3. worst change of a correct token (paper)")
    drop_ax.set_yscale("symlog", linthresh=1e-9)
    gain_ax.set_yscale("symlog", linthresh=1e-9)
    gain_ax.set(ylabel="Q_pos - Q_pos at step 0 (symmetric log)", title="Q_pos gain vs step (small N visible)")
    for ax in (q_ax, rose_ax, drop_ax, gain_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    signs = [[-1 if d < 0 else (1 if d > 0 else 0) for d in a["series"]["dq_pos"]] for a in arms]
    sign_ax.imshow(signs, aspect="auto", interpolation="nearest", vmin=-1, vmax=1,
                   cmap=ListedColormap(["tab:red", "0.85", "tab:green"]))
    sign_ax.set_yticks(range(len(arms)), [f"N={a['n']:,}: {100 * rows[a['n']]['frac_dq_negative']:.0f}% <0" for a in arms])
    sign_ax.set(xlabel="step", title="sign of ΔQ_pos per step (red: fell, green: rose)")

    width = 0.8 / len(TERMS)
    smallest = min((abs(r[f"mean_{k}"]) for r in rows.values() for k, _, _ in TERMS if r[f"mean_{k}"]), default=1e-12)
    for i, (key, label, color) in enumerate(TERMS):
        xs = [j + (i - (len(TERMS) - 1) / 2) * width for j in range(len(arms))]
        term_ax.bar(xs, [rows[a["n"]][f"mean_{key}"] for a in arms], width=width, color=color, label=label)
    term_ax.set_yscale("symlog", linthresh=smallest)
    term_ax.axhline(0.0, color="0.4", linewidth=0.8)
    term_ax.set_xticks(range(len(arms)), [f"N={a['n']:,}" for a in arms])
    term_ax.set(ylabel="mean over steps (ΔQ_pos units, symmetric log)", title="the terms of ΔQ_pos (exact path-integral split)")
    term_ax.grid(alpha=0.3, axis="y")
    term_ax.legend(fontsize=7)
    fig.suptitle(title(result["settings"]), fontsize=9)
    fig.tight_layout()
    return save_png(fig, Path(path))


def sensitivity_table(folders: dict[str, Path]) -> str:
    """Markdown: per labelled `harness simulate` folder, Q_pos at the last step and the share of steps
    with ΔQ_pos < 0, per N (the N of the first folder), and the share of correct tokens that gained."""
    results = {label: read_simulation(folder) for label, folder in folders.items()}
    ns = [r["n"] for r in next(iter(results.values()))["table"]]
    head = " | ".join(f"N={n:,}: Q_pos end / steps ΔQ<0 / tokens gained" for n in ns)
    lines = [f"| setting | Q_pos start | {head} |", "|---|---:|" + "---:|" * len(ns)]
    for label, result in results.items():
        rows = {r["n"]: r for r in result["table"]}
        start = result["table"][0]["q_pos_start"]
        cells = [f"{rows[n]['q_pos_final']:.6f} / {100 * rows[n]['frac_dq_negative']:.1f}% / {100 * rows[n]['rose_share_final']:.1f}%"
                 if n in rows else "-" for n in ns]
        lines.append(f"| {label} | {start:.6f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
