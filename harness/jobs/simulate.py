"""`harness simulate`: the BroRL paper's toy simulation (Sec. 2, Sec. 4.1), with the mass balance measured.

A softmax policy pi = softmax(z) over a vocabulary of V tokens (logits z in float64, the only
parameters); the first C token ids (0..C-1) are the correct set P. Each step draws N tokens from pi
(with replacement), rewards +1 for a correct token and -1 otherwise, subtracts the batch-mean reward
(advantage a_n = R_n - mean R; `baseline="none"` keeps the raw rewards), and takes one optimizer
step (AdamW, lr 1e-3 by default) on one of two objectives (c_j: how often token j was drawn, a
bincount, so a step costs O(V), not O(N)):

- `linear` (the paper's, the default): the surrogate that is linear in the probabilities,

      L(z) = -(1/N) sum_n a_n pi_{y_n}(z) = -(1/N) sum_j c_j a_j pi_j(z),
      grad_k L = -(1/N) pi_k (c_k a_k - S),   S = sum_n a_n pi_{y_n},

  so a plain gradient step is Δz_k = (η/N) pi_k (c_k a_k - S), the paper's
  Δz_j = (η/N) p_j (R_j - S_R) (with counts and centred rewards). An unsampled token's logit gets
  -(η/N) pi_k S, not zero: the unsampled coupling. S has the sign of the batch's reward-weighted
  mass, so unsampled logits all move together, down when the batch "was good" (S > 0), and that
  lowers Q_pos when the unsampled mass is mostly correct.
- `logprob` (the policy-gradient loss, what `harness train` minimises, up to clipping):

      L(z) = -(1/N) sum_n a_n log pi_{y_n}(z),   grad_k L = -(1/N) (c_k a_k - pi_k sum_n a_n);

  with the batch-mean baseline sum_n a_n = 0, so an unsampled token's logit gets no gradient at all.

The initial logits (`init`): `seeded` (the paper's: 0 everywhere, 3 on the correct set, one anchor
logit at 5; the paper does not say whether the anchor is correct, so `anchor` picks token 0, the
first correct one, or token C, the first incorrect one), `zeros` (uniform) or `normal:S` (iid
N(0, S^2)). With iid or class-wise initial logits the first C ids are as good as any subset.

What each step records
----------------------
Q_pos(z) = sum_{i in P} pi_i, and ΔQ_pos = Q_pos(z') - Q_pos(z) for the logits z before and z'
after the optimizer step, computed without cancellation as

    ΔQ_pos = Q_pos Q_neg (α - β) / (1 + Q_pos α + Q_neg β),   Δz = z' - z,

α and β the pi-weighted means of expm1(Δz_j - c) over the correct and the incorrect tokens, c the
pi-mean of Δz (a common shift of the logits changes nothing) and Q_neg = 1 - Q_pos summed on its
own. This is Q_pos(z') - Q_pos(z) exactly, but a change of 1e-9 in a mass of 0.08 keeps ~15
significant digits where subtracting the two masses would keep ~8, near Q_pos = 1 too.
After the step it also records the paper's two per-token panels: the share of correct tokens whose
probability is above its step-0 value (`rose_share`), and the worst change among correct tokens,
min_i (pi_i - pi_i at step 0), absolute (`worst_drop`) and relative to pi_i at step 0 (`worst_rel_drop`).

The decomposition: which tokens' logit changes made ΔQ_pos
----------------------------------------------------------
Every token's logit may move (the linear surrogate's gradient reaches every logit; AdamW's momentum
and decoupled weight decay move unsampled tokens too), and every probability moves through the
normalisation. The three terms are grouped by whose LOGIT change caused the mass change, along the
straight path z(t) = z + t Δz:

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
plain gradient step on softmax logits is in (its components sum to 0) and so the paper's. The
decomposition is linear in Δz, so the part of the step that is weight decay (Δz_decay = -lr wd z,
applied to every logit) is split out exactly too: `weight_decay` is its share of ΔQ_pos (summed
over all three groups; it is inside them, not a fourth term).

What signs to expect (a consequence of the objective, before running anything)
------------------------------------------------------------------------------
`logprob` with the batch-mean baseline: every gradient a correct token ever gets is <= 0 (raise
it), every wrong token's is >= 0, and an unsampled token's is 0. Plain SGD without decay therefore
raises only sampled correct logits and lowers only sampled wrong ones: ΔQ_pos >= 0 at every step,
at any N; AdamW's momentum keeps those signs; only weight decay can lower Q_pos.
`linear`: the sampled terms are still >= 0 for a plain gradient step (the paper's result), but
every unsampled logit moves by -(η/N) pi_k S, and under AdamW by about -lr sign(S) once
|grad| >> eps: the optimizer's per-coordinate normalisation turns a gradient of ~1e-9 into a step
as large as a sampled token's, which is why `eps` is an option.
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
from harness.runs import SIM_RESULT_FILE, SIM_TABLE_FILE, write_json_atomic, write_text_atomic

PAPER_NS = (4, 8, 16, 512, 51_200)
"""Rollouts per step of the paper's simulation."""

OPTIMIZERS = ("adamw", "sgd")
BASELINES = ("mean", "none")
TOLERANCE = 1e-9
"""Largest residual of the decomposition relative to |ΔQ_pos| ..."""
ROUNDING = 1e-14
"""... unless that is below the rounding of the sums, taken as ROUNDING * sum_j |Δz_j W_j|."""
MAX_NODES = 64

OBJECTIVES = ("linear", "logprob")
ANCHORS = ("correct", "incorrect")
SEED_LOGIT = 3.0
"""The `seeded` initialisation's logit on the correct set (the paper's)."""
ANCHOR_LOGIT = 5.0
"""... and on its one anchor token (the paper's)."""

SERIES = ("q_pos", "dq_pos", "rose_share", "worst_drop", "worst_rel_drop",
          "sampled_pos", "sampled_neg", "unsampled", "unsampled_pos", "unsampled_neg",
          "weight_decay", "residual", "nodes", "shift", "sampled_pos_zero_sum", "sampled_neg_zero_sum", "unsampled_zero_sum",
          "spread", "distinct", "mean_reward")
"""Per-step fields: Q_pos before the step, the measured ΔQ_pos, after the step the share of correct
tokens above their step-0 probability and the worst change among them (absolute, relative), its three terms (and the unsampled
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
    """Learning rate (the paper's 1e-3)."""
    optimizer: str = "adamw"
    """`adamw` (torch.optim.AdamW, betas (0.9, 0.999)) or `sgd` (plain, no momentum)."""
    eps: float = 1e-8
    """AdamW's epsilon (torch's default; the paper does not say). The linear surrogate's gradients on
    unsampled logits are ~1e-9, so it decides how far AdamW moves them; unused by `sgd`."""
    weight_decay: float = 0.01
    """AdamW's decoupled decay (torch's default; the paper does not say) or SGD's L2 term."""
    objective: str = "linear"
    """`linear`: the paper's surrogate -(1/N) sum_n a_n pi_{y_n}; `logprob`: the policy-gradient loss
    -(1/N) sum_n a_n log pi_{y_n} (what `harness train` minimises, without its clipping)."""
    baseline: str = "mean"
    """`mean`: advantage = reward - mean reward of the N samples (the paper's simulation); `none`: raw rewards."""
    init: str = "seeded"
    """Logit initialisation: `seeded` (the paper's: 0, SEED_LOGIT on the correct set, ANCHOR_LOGIT on one
    anchor token), `zeros` (uniform policy, Q_pos = C/V) or `normal:S` (iid N(0, S^2))."""
    anchor: str = "correct"
    """`seeded` only: the anchor is token 0 (`correct`) or token C, the first incorrect one
    (`incorrect`). UNCONFIRMED: the paper does not say which; both are run in the 2026-12-04 results."""
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
    if not (math.isfinite(s.eps) and s.eps > 0):
        raise SimulationError(f"invalid value for --eps: {s.eps:g}; expected a positive number (e.g. 1e-8)")
    if s.objective not in OBJECTIVES:
        raise SimulationError(f"invalid value for --objective: {s.objective!r}; valid: {', '.join(OBJECTIVES)}")
    if s.anchor not in ANCHORS:
        raise SimulationError(f"invalid value for --anchor: {s.anchor!r}; valid: {', '.join(ANCHORS)}")
    if s.optimizer not in OPTIMIZERS:
        raise SimulationError(f"invalid value for --optimizer: {s.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if s.baseline not in BASELINES:
        raise SimulationError(f"invalid value for --baseline: {s.baseline!r}; valid: {', '.join(BASELINES)}")
    init_scale(s.init)


def init_scale(init: str) -> float:
    """The standard deviation an --init value names: 0 for `zeros` and `seeded`, S for `normal:S`."""
    if init in ("zeros", "seeded"):
        return 0.0
    if init.startswith("normal:"):
        try:
            scale = float(init.partition(":")[2])
        except ValueError:
            scale = -1.0
        if math.isfinite(scale) and scale >= 0:
            return scale
    raise SimulationError(f"invalid value for --init: {init!r}; expected seeded, zeros or normal:S with a scale S >= 0 (e.g. normal:1)")


def anchor_token(s: SimSettings) -> int:
    """The `seeded` initialisation's anchor: token 0 (correct) or token C (the first incorrect one)."""
    return 0 if s.anchor == "correct" else s.correct


def initial_logits(s: SimSettings) -> torch.Tensor:
    """[V] float64 logits at step 0, as `s.init` names them."""
    scale = init_scale(s.init)
    if s.init == "seeded":
        z = torch.zeros(s.vocab, dtype=torch.float64)
        z[: s.correct] = SEED_LOGIT
        z[anchor_token(s)] = ANCHOR_LOGIT
        return z
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
        return torch.optim.AdamW([param], lr=s.lr, eps=s.eps, weight_decay=s.weight_decay)
    return torch.optim.SGD([param], lr=s.lr, weight_decay=s.weight_decay)


def advantages(counts: torch.Tensor, pos: torch.Tensor, baseline: str) -> torch.Tensor:
    """[V] a_j = R_j - b, R = +1 correct / -1 otherwise, b the mean of the N drawn rewards (`mean`) or 0 (`none`)."""
    reward = torch.where(pos, 1.0, -1.0).to(torch.float64)
    b = (counts * reward).sum() / counts.sum() if baseline == "mean" else 0.0
    return reward - b


def policy_loss(z: torch.Tensor, counts: torch.Tensor, pos: torch.Tensor, baseline: str) -> torch.Tensor:
    """The `logprob` objective: -(1/N) sum_j c_j a_j log pi_j. counts: [V] float64 draws per token (N = counts.sum())."""
    return -(counts * advantages(counts, pos, baseline) * torch.log_softmax(z, dim=0)).sum() / counts.sum()


def linear_surrogate(z: torch.Tensor, counts: torch.Tensor, pos: torch.Tensor, baseline: str) -> torch.Tensor:
    """The `linear` objective (the paper's): -(1/N) sum_j c_j a_j pi_j, linear in the probabilities."""
    return -(counts * advantages(counts, pos, baseline) * torch.softmax(z, dim=0)).sum() / counts.sum()


def objective_loss(s: SimSettings) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]:
    return linear_surrogate if s.objective == "linear" else policy_loss


class ToyRun:
    """One run of the simulation at one N: `step()` draws, updates and records one step."""

    def __init__(self, s: SimSettings, n: int):
        self.s, self.n = s, n
        self.z = torch.nn.Parameter(initial_logits(s))
        self.pos = torch.zeros(s.vocab, dtype=torch.bool)
        self.pos[: s.correct] = True
        self.posf = self.pos.to(torch.float64)
        self.opt = make_optimizer(self.z, s)
        self.loss = objective_loss(s)
        with torch.no_grad():
            self.p0_pos = softmax(self.z)[self.pos].clone()
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
        self.loss(self.z, counts, self.pos, self.s.baseline).backward()
        self.opt.step()
        with torch.no_grad():
            dz = self.z.detach() - z_before
            decay = -self.s.lr * self.s.weight_decay * z_before
            sampled = counts > 0
            record = decompose(z_before, dz, self.pos, sampled, decay)
            record.update(self.token_panels())
        n_pos = float(dot(counts, self.posf))
        return {"q_pos": q_pos, **record, "spread": bool(0 < n_pos < self.n), "distinct": int(sampled.sum()),
                "mean_reward": (2 * n_pos - self.n) / self.n}

    def token_panels(self) -> dict[str, float]:
        """The paper's per-token panels now: share of correct tokens above their step-0 probability,
        the worst change among correct tokens (absolute and relative to step 0)."""
        change = softmax(self.z.detach())[self.pos] - self.p0_pos
        return {"rose_share": float((change > 0).to(torch.float64).mean()), "worst_drop": float(change.min()),
                "worst_rel_drop": float((change / self.p0_pos).min())}

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
    """Per N: Q_pos at the start and the end, steps with ΔQ_pos < 0 and with reward spread, the paper's
    per-token panels at the last step, means of ΔQ_pos and each term, the most negative unsampled term,
    the largest relative residual."""
    rows = []
    for arm in result["arms"].values():
        se = arm["series"]
        steps = len(se["dq_pos"])
        rel = [abs(r) / abs(d) if d else abs(r) for r, d in zip(se["residual"], se["dq_pos"])]
        rows.append({
            "n": arm["n"], "q_pos_start": se["q_pos"][0], "q_pos_final": arm["final_q_pos"],
            "frac_dq_negative": sum(d < 0 for d in se["dq_pos"]) / steps,
            "frac_spread": sum(se["spread"]) / steps,
            "rose_share_final": se["rose_share"][-1], "worst_drop_final": se["worst_drop"][-1],
            "worst_rel_drop_final": se["worst_rel_drop"][-1],
            **{f"mean_{k}": sum(se[k]) / steps
               for k in ("dq_pos", "sampled_pos", "sampled_neg", "unsampled", "weight_decay", "unsampled_zero_sum")},
            "min_unsampled": min(se["unsampled"]),
            "max_rel_residual": max(rel), "seconds": arm["seconds"],
        })
    return rows


def settings_line(s: dict) -> str:
    """One line naming every setting of a result (its table's and figure's title)."""
    init = f"{s['init']} (anchor {s['anchor']})" if s["init"] == "seeded" else s["init"]
    opt = f"{s['optimizer']} lr {s['lr']:g}" + (f" eps {s['eps']:g}" if s["optimizer"] == "adamw" else "")
    return (f"toy simulation: objective {s['objective']}, V={s['vocab']:,}, C={s['correct']:,} correct (ids 0..C-1), {s['steps']} steps, "
            f"{opt} wd {s['weight_decay']:g}, baseline {s['baseline']}, init {init}, seed {s['seed']}")


def panel_points(steps: int) -> list[int]:
    """Steps at which the printed panels table samples the series: 0, 1/4, 1/2, 3/4 and all of `steps`."""
    return sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps})


def panel_value(arm: dict, key: str, t: int) -> float:
    """The value of panel `key` after t steps (t = 0: before any step)."""
    se = arm["series"]
    if key == "q_pos":
        return arm["final_q_pos"] if t == len(se["q_pos"]) else se["q_pos"][t]
    return {"rose_share": 0.0, "worst_drop": 0.0}[key] if t == 0 else se[key][t - 1]


def format_table(result: dict) -> str:
    """The paper's three panels at a few steps, then the per-N mass-balance table (Markdown)."""
    s = result["settings"]
    arms = list(result["arms"].values())
    points = panel_points(s["steps"])
    cols = " | ".join(f"step {t}" for t in points)
    rule = "|---:|" + "---:|" * len(points)
    lines = [settings_line(s), ""]
    for key, title, fmt in (("q_pos", "Q_pos (paper panel 1)", "{:.6f}"),
                            ("rose_share", "share of correct tokens above their step-0 probability (panel 2)", "{:.1%}"),
                            ("worst_drop", "worst change of a correct token's probability since step 0 (panel 3)", "{:.3e}")):
        lines += [f"{title}:", "", f"| N | {cols} |", rule]
        lines += [f"| {a['n']:,} | " + " | ".join(fmt.format(panel_value(a, key, t)) for t in points) + " |" for a in arms]
        lines.append("")
    lines += ["ΔQ_pos per step and its exact split (sampled correct, sampled incorrect, unsampled):", "",
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
    return write_json_atomic(out / SIM_RESULT_FILE, record), write_text_atomic(out / SIM_TABLE_FILE, format_table(result))
