"""Statistics of the comparison: intervals over seeds, paired tests over items, and the headline
test that resamples both seeds and items.

A domain's score is the unweighted mean over its benchmarks (tasks) of the mean over their items
(`task_mean_and_stderr`, which `harness eval` reports). Every paired quantity here is about that same definition: an item of task t
weighs 1 / (T * n_t), so a 30-item AIME set counts as much as a 675-item OlympiadBench set, as it
does in the score. (An unstratified mean over items would weigh each benchmark by its size and
estimate another number than the one the tables report.)

Three tests of arm B - arm A at the final checkpoints, each named for what it conditions on:
- `hierarchical_bootstrap` (the headline): resamples seeds (paired: seed s of A with seed s of B,
  which share the seed's prompt order) and, independently, items within each benchmark; both
  sources of noise, the runs' and the eval set's, are in its interval. With three domains the
  p-values are Holm-corrected (`holm`).
- `stratified_paired_test`: paired over items, items averaged over each arm's seeds first:
  conditional on the K trained runs (it sees eval-set noise only).
- `welch_test`: over the K per-seed domain scores of each arm, unpaired: it sees run-to-run noise,
  not that both arms share a seed's prompt order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import numpy as np
from scipy import stats

BOOTSTRAP_REPLICATES = 4000
"""Replicates of the hierarchical bootstrap; its p-value resolves down to 1 / 4001."""


def task_mean_and_stderr(by_task: dict[str, list[float]]) -> tuple[float, float]:
    """Unweighted mean of the task means, and its standard error from each task's item variance."""
    means, variances = [], []
    for values in by_task.values():
        n = len(values)
        m = sum(values) / n
        means.append(m)
        variances.append(sum((x - m) ** 2 for x in values) / (n - 1) / n if n > 1 else 0.0)
    t = len(means)
    return sum(means) / t, math.sqrt(sum(variances)) / t


def item_task(item_id: str) -> str:
    """The benchmark / task of an eval item, read off its id (`suite/task/...`, suites/*.py)."""
    parts = item_id.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def spread(values: list[float]) -> dict:
    """Mean, sample sd, min, max and the 95% t-interval of the mean over `values` (None where undefined)."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None, "ci95": None}
    mean = sum(vals) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "min": mean, "max": mean, "ci95": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "min": min(vals), "max": max(vals), "ci95": [mean - half, mean + half]}


def stratified_paired_diff(a: Mapping[str, float], b: Mapping[str, float],
                           task_of: Callable[[str], str] = item_task) -> tuple[float, float, float] | None:
    """(difference, its standard error, Welch-Satterthwaite df) of the domain score, b - a, over the
    common items, stratified by benchmark: the unweighted mean over benchmarks of the mean paired
    difference within each; its variance is the sum over benchmarks of var_t / n_t, divided by T^2.
    A benchmark with one item adds its difference but no variance. None under two common items."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    by_task: dict[str, list[float]] = {}
    for i in common:
        by_task.setdefault(task_of(i), []).append(b[i] - a[i])
    t = len(by_task)
    means, var_terms, df_terms = [], [], []
    for diffs in by_task.values():
        n = len(diffs)
        m = sum(diffs) / n
        means.append(m)
        if n > 1:
            v = sum((d - m) ** 2 for d in diffs) / (n - 1) / n
            var_terms.append(v)
            df_terms.append(v * v / (n - 1))
    var = sum(var_terms) / t**2
    df = sum(var_terms) ** 2 / sum(df_terms) if sum(df_terms) > 0 else float(len(common) - t)
    return sum(means) / t, math.sqrt(var), df


def stratified_paired_test(a: Mapping[str, float], b: Mapping[str, float],
                           task_of: Callable[[str], str] = item_task) -> dict:
    """Paired test of the domain score's difference, b - a, stratified by benchmark (see
    `stratified_paired_diff`); the t reference has Welch-Satterthwaite degrees of freedom."""
    common = set(a) & set(b)
    by_task = {task_of(i) for i in common}
    out = {"test": "paired over items, stratified by benchmark", "n_items": len(common), "n_tasks": len(by_task),
           "mean_diff": None, "ci95": None, "t": None, "df": None, "p_value": None}
    paired = stratified_paired_diff(a, b, task_of)
    if paired is None:
        return out
    diff, se, df = paired
    out["mean_diff"] = diff
    if se == 0:
        out.update(ci95=[diff, diff], p_value=1.0 if diff == 0 else 0.0)
        return out
    stat = diff / se
    half = float(stats.t.ppf(0.975, df)) * se
    out.update(ci95=[diff - half, diff + half], t=stat, df=df, p_value=float(2 * stats.t.sf(abs(stat), df)))
    return out


def welch_test(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(b) - mean(a) over independent runs (seeds), with its 95% interval."""
    out = {"test": "Welch t-test", "n": [len(a), len(b)], "mean_diff": None, "ci95": None, "t": None, "df": None,
           "p_value": None}
    if len(a) < 2 or len(b) < 2:
        return out
    sa, sb = spread(a), spread(b)
    diff = sb["mean"] - sa["mean"]
    out["mean_diff"] = diff
    va, vb = sa["sd"] ** 2 / len(a), sb["sd"] ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(ci95=[diff, diff], p_value=1.0 if diff == 0 else 0.0)
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(b, a, equal_var=False)
    out.update(ci95=[diff - half, diff + half], t=float(result.statistic), df=df, p_value=float(result.pvalue))
    return out


def hierarchical_bootstrap(a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]],
                           task_of: Callable[[str], str] = item_task, replicates: int = BOOTSTRAP_REPLICATES,
                           seed: int = 0) -> dict:
    """Bootstrap of the domain score's difference b - a over seeds and items, paired by both.

    `a` and `b` map a run's train.seed to its item scores. Each replicate draws K seeds with
    replacement from the seeds both arms ran (seed s of a stays paired with seed s of b) and,
    independently, n_t items with replacement within each benchmark t (the same draw for every
    seed and both arms: the items are shared); the replicate's statistic is the mean over the
    drawn seeds of the stratified domain-score difference. Interval: the 2.5 and 97.5 percentiles.
    p-value: two-sided, twice the smaller share of replicates on either side of 0 (each share
    counted as (hits + 1) / (replicates + 1)). Deterministic from `seed`.

    With few seeds (K = 2-3) the seed level has few distinct resamples, so the interval is
    narrower than the seed-to-seed variation warrants; it is still the only one of the three tests
    that holds both sources of noise."""
    seeds = sorted(set(a) & set(b))
    out = {"test": "bootstrap over seeds and items (paired by seed and item, stratified by benchmark)",
           "n_seeds": len(seeds), "n_items": 0, "replicates": replicates, "mean_diff": None, "ci95": None,
           "p_value": None}
    if not seeds:
        return out
    common = sorted(set.intersection(*[set(a[s]) & set(b[s]) for s in seeds]))
    out["n_items"] = len(common)
    if len(common) < 2:
        return out
    d = np.array([[b[s][i] - a[s][i] for i in common] for s in seeds], dtype=np.float64)  # [K, N]
    tasks: dict[str, list[int]] = {}
    for j, i in enumerate(common):
        tasks.setdefault(task_of(i), []).append(j)
    weight = np.zeros(len(common))
    for members in tasks.values():
        weight[members] = 1.0 / (len(tasks) * len(members))
    point = float(d.mean(axis=0) @ weight)
    rng = np.random.default_rng(seed)
    k = len(seeds)
    seed_w = rng.multinomial(k, np.full(k, 1.0 / k), size=replicates) / k  # [R, K]
    stats_ = np.zeros(replicates)
    for members in tasks.values():  # one benchmark at a time: memory [R, n_t], not [R, N]
        n = len(members)
        item_w = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates) / (len(tasks) * n)  # [R, n_t]
        stats_ += ((seed_w @ d[:, members]) * item_w).sum(axis=1)
    lo, hi = np.percentile(stats_, [2.5, 97.5])
    below = (int((stats_ <= 0).sum()) + 1) / (replicates + 1)
    above = (int((stats_ >= 0).sum()) + 1) / (replicates + 1)
    out.update(mean_diff=point, ci95=[float(lo), float(hi)], p_value=min(1.0, 2 * min(below, above)))
    return out


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None and is not counted)."""
    known = sorted((p, name) for name, p in p_values.items() if p is not None)
    m = len(known)
    out: dict[str, float | None] = {name: None for name in p_values}
    running = 0.0
    for rank, (p, name) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[name] = running
    return out
