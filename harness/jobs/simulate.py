"""`harness simulate`: the BroRL paper's toy simulation (Sec. 2), with the mass balance measured.

A softmax policy pi = softmax(z) over a vocabulary of V tokens (logits z in float64, the only
parameters); the first C token ids (0..C-1) are the correct set P. With iid logit initialisations
(zeros, or normal) the first C ids are as good as a random subset, and they keep the set the same
for every V, seed and N. Each step draws N tokens from pi (with replacement), rewards +1 for a
correct token and -1 otherwise, subtracts the batch-mean reward (advantage a_n = R_n - mean R), and
takes one optimizer step (AdamW, lr 1e-3 by default) on the policy-gradient loss

    L(z) = -(1/N) sum_n a_n log pi_{y_n}(z) = -(1/N) sum_j c_j a_j log pi_j(z)

where c_j is how often token j was drawn (a bincount: the gradient costs O(V), not O(N)).
grad_j L = -(1/N) (c_j a_j - pi_j sum_n a_n); with the batch-mean baseline sum_n a_n = 0, so an
unsampled token's logit gets no gradient at all (with `baseline="none"`, the paper's raw-reward
analysis, it gets (1/N) pi_j sum_n R_n).

What each step records
----------------------
Q_pos(z) = sum_{i in P} pi_i, and ΔQ_pos = Q_pos(z') - Q_pos(z) for the logits z before and z'
after the optimizer step, computed without cancellation as

    ΔQ_pos = Q_pos Q_neg (α - β) / (1 + Q_pos α + Q_neg β),   Δz = z' - z,

α and β the pi-weighted means of expm1(Δz_j - c) over the correct and the incorrect tokens, c the
pi-mean of Δz (a common shift of the logits changes nothing) and Q_neg = 1 - Q_pos summed on its
own. This is Q_pos(z') - Q_pos(z) exactly, but a change of 1e-9 in a mass of 0.08 keeps ~15
significant digits where subtracting the two masses would keep ~8, near Q_pos = 1 too.

The decomposition: which tokens' logit changes made ΔQ_pos
----------------------------------------------------------
Every token's logit may move (AdamW: momentum of earlier gradients and decoupled weight decay move
unsampled tokens too), and every probability moves through the normalisation. The three terms are
grouped by whose LOGIT change caused the mass change, along the straight path z(t) = z + t Δz:

    ΔQ_pos = ∫_0^1 ∇Q_pos(z(t)) · Δz dt = sum_j Δz_j W_j,   W_j = ∫_0^1 pi_j(t) (1[j in P] - Q_pos(t)) dt

(∂Q_pos/∂z_j = pi_j (1[j in P] - Q_pos)), grouped over j in
    A = sampled and correct    -> `sampled_pos`  (W_j > 0: a raised correct logit adds mass)
    B = sampled and incorrect  -> `sampled_neg`  (W_j < 0: a lowered wrong logit adds mass)
    U = not sampled this step  -> `unsampled`    (the unsampled coupling; split into its correct
                                                  and incorrect parts `unsampled_pos`, `unsampled_neg`)
By the fundamental theorem of calculus the three terms add up to the measured ΔQ_pos exactly; W is
computed by Gauss-Legendre quadrature on [0, 1] (the integrand is analytic in t, K nodes are exact
to degree 2K-1, so the error falls like |Δz|^(2K)), starting at 4 nodes and doubling until the
residual ΔQ_pos - (sum of terms) is at most 1e-9 of |ΔQ_pos| (or at most 1e-14 of sum_j |Δz_j W_j|,
the rounding of the sums, when the terms cancel that much). The residual is recorded every step.

Why this decomposition and not another:
- exact: the terms add up to the measured change (a first-order split, sum_j pi_j (1[j in P] -
  Q_pos) Δz_j, misses the O(Δz^2) part and leaves a residual);
- symmetric: no group goes first. Applying the groups' logit changes one after another
  (telescoping) is exact too, but each group's share then depends on the order by O(Δz^2) cross
  terms; fixing that means averaging over the 6 orders (Shapley), six times the work for the same
  answer to first order;
- the paper's own terms to first order: as Δz -> 0, W_j -> pi_j (1[j in P] - Q_pos), and under the
  update the paper analyses (Δz_j = (η/N) pi_j (R_j 1[j sampled] - S_R), S_R = R_c P_pos + R_w
  P_neg) the three grouped sums are exactly its (η/N) (R_c - S_R) Q_neg A_2, (η/N) (S_R - R_w)
  Q_pos B_2 and (η/N) S_R (Q_pos U_neg,2 - Q_neg U_pos,2) (`paper_terms`; tests check it).
A common shift of every logit changes no probability, so the split of one policy change depends on
the shift the optimizer happened to add (W is the same for Δz and Δz - c, the terms move by
c sum_{j in G} W_j, and they still add up). The recorded terms use the optimizer's own Δz, the
literal "which logits moved"; `*_zero_sum` are the same terms of Δz - mean(Δz), the gauge every
plain gradient step on softmax logits is in (its components sum to 0) and so the paper's. With the
batch-mean baseline the two barely differ; without it AdamW moves nearly every logit by ~lr and
they do. The decomposition is linear in Δz, so the part of the step that is AdamW's decoupled weight decay
(Δz_decay = -lr wd z, applied to every logit) is split out exactly too: `weight_decay` is its share
of ΔQ_pos (summed over all three groups; it is inside them, not a fourth term).

What signs to expect (a consequence of the set-up, not of N)
------------------------------------------------------------
With the batch-mean baseline every gradient a correct token ever gets is <= 0 (raise it) and every
wrong token's is >= 0, and an unsampled token's is 0. Plain SGD without decay therefore raises only
sampled correct logits and lowers only sampled wrong ones: sampled_pos >= 0, sampled_neg >= 0,
unsampled = 0 and ΔQ_pos >= 0 at every step, at any N. AdamW moves each logit against its
gradient momentum, an average of gradients that all have one sign, so its momentum moves
unsampled logits the mass-raising way too; only weight decay (pulling correct logits down and
wrong ones up, towards 0) can lower Q_pos.
The unsampled coupling the paper describes comes from the -pi_j sum_n R_n part of the gradient,
which the baseline removes (`baseline="none"` keeps it).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from harness.config import UserError
from harness.runs import write_json_atomic, write_text_atomic

PAPER_NS = (4, 8, 16, 512, 51_200)
"""Rollouts per step of the paper's simulation."""

OPTIMIZERS = ("adamw", "sgd")
BASELINES = ("mean", "none")
TOLERANCE = 1e-9
"""Largest residual of the decomposition relative to |ΔQ_pos| ..."""
ROUNDING = 1e-14
"""... unless that is below the rounding of the sums, taken as ROUNDING * sum_j |Δz_j W_j|."""
MAX_NODES = 64

RESULT_FILE = "simulation.json"
"""Settings, per-N series and the table, in the --out folder."""
TABLE_FILE = "table.md"
FIGURE_FILE = "simulation.png"

SERIES = ("q_pos", "dq_pos", "sampled_pos", "sampled_neg", "unsampled", "unsampled_pos", "unsampled_neg",
          "weight_decay", "residual", "nodes", "shift", "sampled_pos_zero_sum", "sampled_neg_zero_sum", "unsampled_zero_sum",
          "spread", "distinct", "mean_reward")
"""Per-step fields: Q_pos before the step, the measured ΔQ_pos, its three terms (and the unsampled
term's correct and incorrect parts), weight decay's share, the residual ΔQ_pos - terms, the
quadrature nodes used, the mean logit change and the three terms of the step without it (`*_zero_sum`,
see the module docstring), whether the N rewards had spread (not all equal), distinct tokens
drawn, the mean reward."""


class SimulationError(UserError):
    """A simulation setting out of range; one line naming the value and what would be valid."""


@dataclass(frozen=True)
class SimSettings:
    vocab: int = 128_000
    """Vocabulary size V."""
    correct: int = 10_000
    """Correct tokens C: ids 0..C-1."""
    steps: int = 1_000
    """Optimizer steps per N."""
    ns: tuple[int, ...] = PAPER_NS
    """Rollouts (sampled tokens) per step; one independent run per value."""
    lr: float = 1e-3
    optimizer: str = "adamw"
    """`adamw` (torch.optim.AdamW, betas (0.9, 0.999), eps 1e-8) or `sgd` (plain, no momentum)."""
    weight_decay: float = 0.01
    """AdamW's decoupled decay (torch's default; the paper does not say) or SGD's L2 term."""
    baseline: str = "mean"
    """`mean`: advantage = reward - mean reward of the N samples (the paper's simulation); `none`: raw rewards."""
    init: str = "zeros"
    """Logit initialisation: `zeros` (uniform policy, Q_pos = C/V) or `normal:S` (iid N(0, S^2)).
    UNCONFIRMED: the paper's text as the project has it does not say; zeros is the documented default."""
    seed: int = 0
    """Seeds the initial logits (the same for every N) and, mixed with N, each run's sampling."""


def check_settings(s: SimSettings) -> None:
    """Raise SimulationError (one line) for a setting out of range."""
    if s.vocab < 2:
        raise SimulationError(f"invalid value for --vocab: {s.vocab}; expected an integer >= 2")
    if not 1 <= s.correct < s.vocab:
        raise SimulationError(f"invalid value for --correct: {s.correct}; expected 1 <= correct < vocab ({s.vocab})")
    if s.steps < 1:
        raise SimulationError(f"invalid value for --steps: {s.steps}; expected a positive integer")
    if not s.ns or min(s.ns) < 1:
        raise SimulationError(f"invalid value for --n: {','.join(map(str, s.ns))}; expected comma-separated positive integers")
    if not (math.isfinite(s.lr) and s.lr > 0):
        raise SimulationError(f"invalid value for --lr: {s.lr:g}; expected a positive number")
    if not (math.isfinite(s.weight_decay) and s.weight_decay >= 0):
        raise SimulationError(f"invalid value for --weight-decay: {s.weight_decay:g}; expected a number >= 0")
    if s.optimizer not in OPTIMIZERS:
        raise SimulationError(f"invalid value for --optimizer: {s.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if s.baseline not in BASELINES:
        raise SimulationError(f"invalid value for --baseline: {s.baseline!r}; valid: {', '.join(BASELINES)}")
    init_scale(s.init)


def init_scale(init: str) -> float:
    """The standard deviation an --init value names: 0 for `zeros`, S for `normal:S`."""
    if init == "zeros":
        return 0.0
    if init.startswith("normal:"):
        try:
            scale = float(init.partition(":")[2])
        except ValueError:
            scale = -1.0
        if math.isfinite(scale) and scale >= 0:
            return scale
    raise SimulationError(f"invalid value for --init: {init!r}; expected zeros or normal:S with a scale S >= 0 (e.g. normal:1)")


def initial_logits(s: SimSettings) -> torch.Tensor:
    scale = init_scale(s.init)
    if scale == 0:
        return torch.zeros(s.vocab, dtype=torch.float64)
    gen = torch.Generator().manual_seed(s.seed)
    return torch.randn(s.vocab, generator=gen, dtype=torch.float64) * scale


# --- the mass balance of one update --------------------------------------------------------------

def softmax(z: torch.Tensor) -> torch.Tensor:
    """pi = softmax(z), normalised by torch.sum (cascade summation: ~1e-16 relative at V = 128k, where
    torch.softmax's own normaliser was off by up to 3e-13 here, enough to show in the residual)."""
    e = torch.exp(z - z.max())
    return e / e.sum()


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_j a_j b_j by cascade summation (a BLAS dot accumulates in order: ~n eps instead of ~log n eps)."""
    return (a * b).sum()

def mass_change(z: torch.Tensor, dz: torch.Tensor, pos: torch.Tensor) -> float:
    """Q_pos(z + dz) - Q_pos(z), without the cancellation of subtracting two masses.
    z, dz: [V] float64; pos: [V] bool, the correct set. With the masses Q_pos, Q_neg summed
    separately, dz shifted by its pi-mean c (the change does not depend on a common shift) and
    alpha, beta the pi-means of expm1(dz - c) over the correct and the incorrect tokens:
    ΔQ_pos = Q_pos Q_neg (alpha - beta) / (1 + Q_pos alpha + Q_neg beta), accurate near Q_pos = 0 and 1."""
    p = softmax(z)
    posf, negf = pos.to(torch.float64), (~pos).to(torch.float64)
    q_pos, q_neg = dot(p, posf), dot(p, negf)
    grow = p * torch.expm1(dz - dot(p, dz))
    alpha, beta = dot(grow, posf) / q_pos, dot(grow, negf) / q_neg
    return float(q_pos * q_neg * (alpha - beta) / (1 + q_pos * alpha + q_neg * beta))


def path_weights(z: torch.Tensor, dz: torch.Tensor, pos: torch.Tensor, nodes: int) -> torch.Tensor:
    """W_j = ∫_0^1 pi_j(t) (1[j in P] - Q_pos(t)) dt along z(t) = z + t dz, by `nodes`-point
    Gauss-Legendre; [V] float64. 1 - Q_pos is summed as Q_neg (no cancellation when Q_pos is near 1)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    posf, negf = pos.to(torch.float64), (~pos).to(torch.float64)
    out = torch.zeros_like(z)
    for xk, wk in zip(x, w):
        p = softmax(z + (0.5 * (xk + 1.0)) * dz)
        out += (0.5 * wk) * p * (posf * dot(p, negf) - negf * dot(p, posf))
    return out


def decompose(z: torch.Tensor, dz: torch.Tensor, pos: torch.Tensor, sampled: torch.Tensor,
              decay: torch.Tensor | None = None) -> dict[str, float]:
    """ΔQ_pos of the update z -> z + dz and its exact split by whose logit changed (module docstring).
    sampled: [V] bool, tokens drawn this step; decay: [V], the weight-decay part of dz (or None).
    Returns dq_pos, sampled_pos, sampled_neg, unsampled (= unsampled_pos + unsampled_neg),
    weight_decay, residual (dq_pos minus the three terms) and the quadrature nodes used."""
    dq = mass_change(z, dz, pos)
    groups = {"sampled_pos": sampled & pos, "sampled_neg": sampled & ~pos,
              "unsampled_pos": ~sampled & pos, "unsampled_neg": ~sampled & ~pos}
    groups = {name: mask.to(torch.float64) for name, mask in groups.items()}
    nodes = 4
    while True:
        weights = path_weights(z, dz, pos, nodes)
        contrib = dz * weights
        terms = {name: float(dot(contrib, mask)) for name, mask in groups.items()}
        total = terms["sampled_pos"] + terms["sampled_neg"] + terms["unsampled_pos"] + terms["unsampled_neg"]
        if abs(dq - total) <= max(TOLERANCE * abs(dq), ROUNDING * float(contrib.abs().sum())) or nodes >= MAX_NODES:
            break
        nodes *= 2
    terms["unsampled"] = terms["unsampled_pos"] + terms["unsampled_neg"]
    terms["weight_decay"] = float(dot(decay, weights)) if decay is not None else 0.0
    residual = dq - (terms["sampled_pos"] + terms["sampled_neg"] + terms["unsampled"])
    # the same split of dz - mean(dz): W does not change (softmax ignores a common shift of the path)
    shift = float(dz.mean())
    gauge = {f"{k}_zero_sum": terms[k] - shift * float(dot(weights, groups[k])) for k in ("sampled_pos", "sampled_neg")}
    unsampled_w = float(dot(weights, groups["unsampled_pos"])) + float(dot(weights, groups["unsampled_neg"]))
    gauge["unsampled_zero_sum"] = terms["unsampled"] - shift * unsampled_w
    return {"dq_pos": dq, **terms, "residual": residual, "nodes": nodes, "shift": shift, **gauge}


def first_order_terms(z: torch.Tensor, dz: torch.Tensor, pos: torch.Tensor, sampled: torch.Tensor) -> dict[str, float]:
    """The linearised split sum_{j in G} pi_j (1[j in P] - Q_pos) dz_j over G = A, B, U (what the exact
    terms tend to as dz -> 0)."""
    p = softmax(z)
    contrib = p * (pos.to(torch.float64) - p[pos].sum()) * dz
    return {"sampled_pos": float(contrib[sampled & pos].sum()), "sampled_neg": float(contrib[sampled & ~pos].sum()),
            "unsampled": float(contrib[~sampled].sum())}


def paper_terms(z: torch.Tensor, pos: torch.Tensor, sampled: torch.Tensor, eta: float, n: int,
                r_correct: float = 1.0, r_wrong: float = -1.0) -> dict[str, float]:
    """The paper's three terms of ΔQ_pos (Sec. 2), from the sampled set S = A ∪ B:
    (η/N) (R_c - S_R) Q_neg A_2, (η/N) (S_R - R_w) Q_pos B_2, (η/N) S_R (Q_pos U_neg,2 - Q_neg U_pos,2),
    with S_R = R_c P_pos + R_w P_neg, P_pos / P_neg the mass of A / B, A_2 = sum_A pi^2 (B_2, U_*,2 alike)."""
    p = softmax(z)
    q_pos = float(p[pos].sum())
    q_neg = 1.0 - q_pos
    a, b = sampled & pos, sampled & ~pos
    s_r = r_correct * float(p[a].sum()) + r_wrong * float(p[b].sum())
    sq = p * p
    a2, b2 = float(sq[a].sum()), float(sq[b].sum())
    u_pos2, u_neg2 = float(sq[~sampled & pos].sum()), float(sq[~sampled & ~pos].sum())
    k = eta / n
    return {"sampled_pos": k * (r_correct - s_r) * q_neg * a2, "sampled_neg": k * (s_r - r_wrong) * q_pos * b2,
            "unsampled": k * s_r * (q_pos * u_neg2 - q_neg * u_pos2)}


def paper_update(z: torch.Tensor, pos: torch.Tensor, sampled: torch.Tensor, eta: float, n: int,
                 r_correct: float = 1.0, r_wrong: float = -1.0) -> torch.Tensor:
    """The logit change the paper's one-step analysis assumes: dz_j = (η/N) pi_j (R_j 1[j in S] - S_R)
    (the gradient of (η/N) sum_{i in S} R_i pi_i), whose first-order ΔQ_pos is `paper_terms`."""
    p = softmax(z)
    reward = torch.where(pos, r_correct, r_wrong).to(torch.float64)
    s_r = float((reward * p)[sampled].sum())
    return (eta / n) * p * (reward * sampled.to(torch.float64) - s_r)


# --- one run at one N ----------------------------------------------------------------------------

def make_optimizer(param: torch.Tensor, s: SimSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adamw":
        return torch.optim.AdamW([param], lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD([param], lr=s.lr, weight_decay=s.weight_decay)


def policy_loss(z: torch.Tensor, counts: torch.Tensor, pos: torch.Tensor, baseline: str) -> torch.Tensor:
    """-(1/N) sum_j c_j a_j log pi_j, a_j = R_j - b with b the mean of the N rewards (`mean`) or 0 (`none`).
    counts: [V] float64 draws per token (N = counts.sum())."""
    n = counts.sum()
    reward = torch.where(pos, 1.0, -1.0).to(torch.float64)
    b = (counts * reward).sum() / n if baseline == "mean" else 0.0
    return -(counts * (reward - b) * torch.log_softmax(z, dim=0)).sum() / n


class ToyRun:
    """One run of the simulation at one N: `step()` draws, updates and records one step."""

    def __init__(self, s: SimSettings, n: int):
        self.s, self.n = s, n
        self.z = torch.nn.Parameter(initial_logits(s))
        self.pos = torch.zeros(s.vocab, dtype=torch.bool)
        self.pos[: s.correct] = True
        self.posf = self.pos.to(torch.float64)
        self.opt = make_optimizer(self.z, s)
        self.gen = torch.Generator().manual_seed(s.seed * 1_000_003 + n)

    def sample_counts(self) -> torch.Tensor:
        """Draws per token of N samples from the current policy: [V] float64."""
        with torch.no_grad():
            p = softmax(self.z)
        draws = torch.multinomial(p, self.n, replacement=True, generator=self.gen)
        return torch.bincount(draws, minlength=self.s.vocab).to(torch.float64)

    def step(self, counts: torch.Tensor | None = None) -> dict[str, float]:
        """One update from `counts` (default: drawn from the policy); the record of the step."""
        counts = self.sample_counts() if counts is None else counts
        z_before = self.z.detach().clone()
        with torch.no_grad():
            q_pos = float(dot(softmax(z_before), self.posf))
        self.opt.zero_grad(set_to_none=True)
        policy_loss(self.z, counts, self.pos, self.s.baseline).backward()
        self.opt.step()
        with torch.no_grad():
            dz = self.z.detach() - z_before
            decay = -self.s.lr * self.s.weight_decay * z_before
            sampled = counts > 0
            record = decompose(z_before, dz, self.pos, sampled, decay)
        n_pos = float(dot(counts, self.posf))
        return {"q_pos": q_pos, **record, "spread": bool(0 < n_pos < self.n), "distinct": int(sampled.sum()),
                "mean_reward": (2 * n_pos - self.n) / self.n}

    def q_pos(self) -> float:
        with torch.no_grad():
            return float(dot(softmax(self.z), self.posf))


def simulate(s: SimSettings, log: Callable[[str], None] | None = None) -> dict:
    """Every N of `s`, `s.steps` steps each: {"settings", "arms": {str(N): {...series}}, "table": rows}."""
    check_settings(s)
    arms = {}
    for n in s.ns:
        start = time.perf_counter()
        run = ToyRun(s, n)
        series: dict[str, list] = {name: [] for name in SERIES}
        for _ in range(s.steps):
            record = run.step()
            for name in SERIES:
                series[name].append(record[name])
        seconds = time.perf_counter() - start
        arms[str(n)] = {"n": n, "final_q_pos": run.q_pos(), "seconds": round(seconds, 3), "series": series}
        if log:
            log(f"simulate: N={n}: {s.steps} steps in {seconds:.1f} s, Q_pos {series['q_pos'][0]:.6f} -> {run.q_pos():.6f}")
    result = {"settings": {**asdict(s), "ns": list(s.ns)}, "arms": arms}
    result["table"] = summary_rows(result)
    return result


def summary_rows(result: dict) -> list[dict]:
    """Per N: final Q_pos, steps with ΔQ_pos < 0 and with reward spread, means of ΔQ_pos and each term,
    the most negative unsampled term, the largest relative residual."""
    rows = []
    for arm in result["arms"].values():
        se = arm["series"]
        steps = len(se["dq_pos"])
        rel = [abs(r) / abs(d) if d else abs(r) for r, d in zip(se["residual"], se["dq_pos"])]
        rows.append({
            "n": arm["n"], "q_pos_start": se["q_pos"][0], "q_pos_final": arm["final_q_pos"],
            "frac_dq_negative": sum(d < 0 for d in se["dq_pos"]) / steps,
            "frac_spread": sum(se["spread"]) / steps,
            **{f"mean_{k}": sum(se[k]) / steps
               for k in ("dq_pos", "sampled_pos", "sampled_neg", "unsampled", "weight_decay", "unsampled_zero_sum")},
            "min_unsampled": min(se["unsampled"]),
            "max_rel_residual": max(rel), "seconds": arm["seconds"],
        })
    return rows


def format_table(result: dict) -> str:
    """The per-N table (Markdown)."""
    s = result["settings"]
    head = (f"toy simulation: V={s['vocab']:,}, C={s['correct']:,} correct (ids 0..C-1), {s['steps']} steps, "
            f"{s['optimizer']} lr {s['lr']:g} wd {s['weight_decay']:g}, baseline {s['baseline']}, init {s['init']}, seed {s['seed']}")
    lines = [head, "",
             "| N | Q_pos start | Q_pos final | steps ΔQ_pos<0 | steps with spread | mean ΔQ_pos | mean sampled+ | mean sampled- "
             "| mean unsampled | min unsampled | mean wd share | mean unsampled, zero-sum Δz | max rel. residual | s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["table"]:
        lines.append(
            f"| {r['n']:,} | {r['q_pos_start']:.6f} | {r['q_pos_final']:.6f} | {100 * r['frac_dq_negative']:.1f}% "
            f"| {100 * r['frac_spread']:.1f}% | {r['mean_dq_pos']:.3e} | {r['mean_sampled_pos']:.3e} | {r['mean_sampled_neg']:.3e} "
            f"| {r['mean_unsampled']:.3e} | {r['min_unsampled']:.3e} | {r['mean_weight_decay']:.3e} "
            f"| {r['mean_unsampled_zero_sum']:.3e} | {r['max_rel_residual']:.1e} "
            f"| {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def write_result(result: dict, out: str | Path, provenance: dict | None = None) -> tuple[Path, Path]:
    """Write out/simulation.json (settings, table, per-step series; provenance if given) and out/table.md,
    each atomically; returns their paths."""
    out = Path(out)
    record = {**result, "provenance": provenance} if provenance else result
    return write_json_atomic(out / RESULT_FILE, record), write_text_atomic(out / TABLE_FILE, format_table(result))
