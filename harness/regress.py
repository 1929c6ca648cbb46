"""`harness regress`: the science guard. Runs the profile's comparison and checks its numbers
against a committed baseline, so a change that silently breaks the trainer or a scorer fails CI.

    harness regress --profile smoke            # compare with harness/baselines/smoke.json
    harness regress --profile smoke --update   # refresh the baseline ON PURPOSE (commit it, say why)
    harness regress --profile smoke --fail-fast  # stop at the first evaluation beyond tolerance

Checked: every evaluated row's score and mean output tokens per suite (the mean over seeds; regress
runs one seed), named by the row's label (`baseline@<RL step>` for the base checkpoints,
`<arm>@<base RL steps>+<arm steps>` for the arms, as Table 2 writes steps), and each arm's
dynamic-sampling pass rate and step count. Never timings. The comparison must use a deterministic
budget (samples, tokens or steps), and it runs in float64 (`MACHINE_INDEPENDENT`), so the same
code gives the same numbers on any machine. In float32 it did not: the kernels a CPU gets (AVX2 or
AVX-512, its BLAS path) round differently, some sampled token eventually flips, and from there the
run takes another path; the guard then failed on a machine other than the one that recorded the
baseline (results/experiments/2026-12-07-regress-machine-independent.md). The tolerances (stored
in the baseline file) are for the float64 rounding that is left, not for behaviour changes. Any
difference beyond them fails, an improvement included: a change that moves the science should
refresh the baseline deliberately.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness.config import ConfigError, load_config
from harness.jobs.compare import run_compare
from harness.report import build_summary, render
from harness.runs import write_json_atomic

BASELINES = Path(__file__).resolve().parent / "baselines"
"""The committed regression baselines, one `<profile>.json` each (`--update` rewrites one in a source checkout)."""

MACHINE_INDEPENDENT = ("bootstrap.dtype=float64", "train.dtype=float64", "rollout.dtype=float64")
"""Overrides every guard run starts from (a user's own come after): the base, the policy and the
rollouts in float64, so a machine's kernels change no sampled token (see the module's docstring)."""

TOLERANCES = {"score": 0.02, "mean_output_tokens": 0.5, "ds_pass_rate": 0.05, "steps": 1}
"""Absolute tolerances written into a new baseline: pass@1 fraction, tokens, pass-rate fraction, RL steps."""


def measurements(summary: dict) -> dict[str, float]:
    """The checked numbers of a comparison summary, flat: name -> value."""
    out: dict[str, float] = {}
    for row in summary["rows"]:
        label = row.get("label") or f"{row['method']}@{row['step']}"
        for suite, value in row["scores"].items():
            out[f"score {label} {suite}"] = value
        for suite, value in row["mean_output_tokens"].items():
            out[f"mean_output_tokens {label} {suite}"] = value
    for arm, e in summary["efficiency"].items():
        out[f"ds_pass_rate {arm}"] = e["ds_pass_rate"]
        out[f"steps {arm}"] = e["steps"]
    return out


def diff(baseline: dict, summary: dict, partial: bool = False) -> tuple[list[dict], bool]:
    """Rows (quantity, baseline, now, diff, tolerance, ok) and whether everything is within tolerance.

    `partial`: the comparison is still running; check only the scores and output lengths of the rows
    evaluated so far (a running arm's pass rate and step count are not final yet)."""
    expected, tolerances = baseline["measurements"], baseline["tolerances"]
    now = measurements(summary)
    names = ({n for n in now if n.split(" ")[0] in ("score", "mean_output_tokens")} if partial
             else set(expected) | set(now))
    rows, ok = [], True
    for name in sorted(names):
        kind = name.split(" ")[0]
        tol = tolerances[kind]
        a, b = expected.get(name), now.get(name)
        good = a is not None and b is not None and abs(b - a) <= tol
        ok &= good
        rows.append({"quantity": name, "baseline": a, "now": b, "diff": None if a is None or b is None else b - a,
                     "tolerance": tol, "ok": good})
    return rows, ok


def format_diff(rows: list[dict]) -> str:
    fmt = lambda v: "missing" if v is None else f"{v:.4f}"
    width = max(len(r["quantity"]) for r in rows)
    lines = [f"{'quantity':<{width}}  {'baseline':>10}  {'now':>10}  {'diff':>10}  {'tolerance':>9}  status",
             "-" * (width + 60)]
    for r in rows:
        lines.append(f"{r['quantity']:<{width}}  {fmt(r['baseline']):>10}  {fmt(r['now']):>10}  {fmt(r['diff']):>10}  "
                     f"{r['tolerance']:>9g}  {'ok' if r['ok'] else 'REGRESSION'}")
    return "\n".join(lines)


class _Stop(Exception):
    """Raised from the comparison's after-evaluation hook when --fail-fast finds a regression."""

    def __init__(self, rows: list[dict]):
        super().__init__("regression")
        self.rows = rows


def run_regress(profile: str, overrides: list[str], update: bool, out: Path | None, progress: bool, log=print,
                fail_fast: bool = False) -> int:
    """0 when within tolerance (or after --update), 1 on a regression."""
    overrides = [*MACHINE_INDEPENDENT, *overrides]
    cfg = load_config(profile, overrides)
    if cfg.compare.budget_kind in ("wall_s", "cpu_s"):  # seconds differ between identical runs, so would the steps
        raise ConfigError(
            f"invalid value for 'compare.budget_kind': '{cfg.compare.budget_kind}'; regression checks need a deterministic "
            "budget: samples, tokens or steps"
        )
    baseline_path = BASELINES / f"{cfg.profile}.json"
    if not update and not baseline_path.is_file():
        raise ConfigError(f"no baseline for profile '{cfg.profile}' at {baseline_path}; create it with: harness regress --profile {profile} --update")
    folder = out or Path(tempfile.mkdtemp(prefix=f"regress-{cfg.profile}-"))
    baseline = None if update else json.loads(baseline_path.read_text())
    if baseline is not None and baseline.get("overrides", overrides) != overrides:
        raise ConfigError(f"{baseline_path.name} was recorded with the overrides {' '.join(baseline['overrides'])}; this run has "
                          f"{' '.join(overrides)}: run with the same ones, or refresh the baseline on purpose "
                          f"(harness regress --profile {profile} --update)")

    def check_so_far(folder: Path) -> None:
        rows, ok = diff(baseline, build_summary(folder), partial=True)
        if not ok:
            raise _Stop(rows)

    rows, stopped_early = None, False
    try:
        run_compare(profile, ["prorl", "brorl"], folder, overrides, progress=progress, log=log, seeds=1,
                    after_eval=check_so_far if fail_fast and baseline is not None else None)
    except _Stop as stop:
        rows, stopped_early = stop.rows, True
    if rows is None:
        summary = render(folder)
        if update:
            write_json_atomic(baseline_path, {
                "profile": cfg.profile,
                "refresh_with": f"harness regress --profile {profile} --update",
                "tolerances": TOLERANCES,
                "overrides": overrides,
                "measurements": measurements(summary),
                "provenance": summary["provenance"],
            })
            log(f"baseline written: {baseline_path} (commit it and say what moved)")
            return 0
        rows, _ = diff(baseline, summary)
    print(format_diff(rows))
    print(f"comparison folder: {folder}" + (" (stopped early: --fail-fast)" if stopped_early else ""))
    bad = sum(not r["ok"] for r in rows)
    if not bad:
        print(f"regression check passed: {len(rows)} quantities within tolerance of {baseline_path.name}")
        return 0
    so_far = " evaluated so far" if stopped_early else ""
    print(f"REGRESSION: {bad} of {len(rows)} quantities{so_far} moved beyond tolerance. If the change is intended, "
          f"refresh the baseline on purpose: harness regress --profile {profile} --update")
    return 1
