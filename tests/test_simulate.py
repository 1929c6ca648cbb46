"""`harness simulate`: the toy simulation's mass balance (harness/jobs/simulate.py), checked by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harness import cli
from harness.config import UserError
from harness.jobs.simulate import (
    ANCHOR_LOGIT,
    SEED_LOGIT,
    SimSettings,
    ToyRun,
    decompose,
    first_order_terms,
    initial_logits,
    linear_surrogate,
    mass_change,
    paper_terms,
    paper_update,
    simulate,
    write_result,
)
from harness.report.simulation import sensitivity_table
from tests.conftest import run_cli

TERMS = ("sampled_pos", "sampled_neg", "unsampled")


def _simpson(f, n: int = 2000) -> float:
    """∫_0^1 f(t) dt by composite Simpson with n (even) intervals."""
    h = 1.0 / n
    return h / 3 * sum((1 if k in (0, n) else 4 if k % 2 else 2) * f(k * h) for k in range(n + 1))


def _q_pos(z: torch.Tensor, pos: torch.Tensor) -> float:
    return float(torch.softmax(z, dim=0)[pos].sum())


@pytest.mark.parametrize("settings", [
    SimSettings(vocab=50, correct=5, steps=40, ns=(8,)),
    SimSettings(vocab=50, correct=5, steps=40, ns=(8,), anchor="incorrect", eps=1e-16),
    SimSettings(vocab=50, correct=5, steps=40, ns=(3,), lr=0.3, init="normal:1", baseline="none"),
    SimSettings(vocab=50, correct=20, steps=40, ns=(64,), lr=500.0, optimizer="sgd", weight_decay=1e-4),
    SimSettings(vocab=50, correct=5, steps=40, ns=(8,), objective="logprob", init="zeros"),
    SimSettings(vocab=50, correct=5, steps=40, ns=(3,), lr=0.3, init="normal:1", baseline="none", objective="logprob"),
    SimSettings(vocab=50, correct=20, steps=40, ns=(64,), lr=0.5, optimizer="sgd", weight_decay=0.1, objective="logprob"),
], ids=["linear-adamw", "linear-anchor-incorrect-eps", "linear-big-lr-no-baseline", "linear-sgd-decay",
        "logprob-adamw", "logprob-big-lr-no-baseline", "logprob-sgd-decay"])
def test_terms_add_up_to_the_measured_change(settings):
    run = ToyRun(settings, settings.ns[0])
    moved = 0
    for _ in range(settings.steps):
        z = run.z.detach().clone()
        r = run.step()
        exact = _q_pos(run.z.detach(), run.pos) - _q_pos(z, run.pos)
        assert r["dq_pos"] == pytest.approx(exact, rel=1e-9, abs=1e-15)  # the measurement is the softmax difference
        total = sum(r[k] for k in TERMS)
        assert abs(r["dq_pos"] - total) <= 1e-9 * abs(r["dq_pos"]) + 1e-18, r
        assert r["residual"] == pytest.approx(r["dq_pos"] - total, abs=1e-18)
        assert r["unsampled"] == pytest.approx(r["unsampled_pos"] + r["unsampled_neg"], abs=1e-18)
        moved += r["dq_pos"] != 0
    assert moved > settings.steps // 2


def test_mass_change_has_no_cancellation():
    z = torch.zeros(128_000, dtype=torch.float64)
    pos = torch.arange(128_000) < 10_000
    dz = torch.zeros_like(z)
    dz[3] = 1e-9  # one correct logit raised by 1e-9: ΔQ_pos = p (1 - Q_pos) 1e-9 to first order
    p, q = 1 / 128_000, 10_000 / 128_000
    assert mass_change(z, dz, pos) == pytest.approx(p * (1 - q) * 1e-9, rel=1e-6)


def test_one_sgd_step_by_hand():
    """V=3, token 0 correct, zero logits, plain SGD lr 0.5, draws: token 0 once, token 1 once.
    Rewards +1, -1, mean 0, advantages +1, -1: L = -(log pi_0 - log pi_1)/2, grad = -(e_0 - e_1)/2
    (the pi terms cancel), so dz = 0.5 * (0.5, -0.5, 0) and token 2 (unsampled) keeps its logit."""
    s = SimSettings(vocab=3, correct=1, steps=1, ns=(2,), lr=0.5, optimizer="sgd", weight_decay=0.0, objective="logprob", init="zeros")
    run = ToyRun(s, 2)
    r = run.step(counts=torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    assert run.z.detach().tolist() == pytest.approx([0.25, -0.25, 0.0], abs=1e-15)
    e = math.exp
    q_new = e(0.25) / (e(0.25) + e(-0.25) + 1.0)
    assert r["q_pos"] == pytest.approx(1 / 3, abs=1e-15)
    assert r["dq_pos"] == pytest.approx(q_new - 1 / 3, rel=1e-13)
    assert r["unsampled"] == 0.0  # no logit change, no share, though pi_2 moved (1/3 -> 1/(e^.25 + e^-.25 + 1))

    def probs(t):
        a, b = e(0.25 * t), e(-0.25 * t)
        return a / (a + b + 1), b / (a + b + 1)

    # W_j = ∫ pi_j(t) (1[j correct] - Q_pos(t)) dt along z(t) = t * dz, with Q_pos(t) = pi_0(t)
    by_hand_pos = 0.25 * _simpson(lambda t: probs(t)[0] * (1 - probs(t)[0]))
    by_hand_neg = -0.25 * _simpson(lambda t: -probs(t)[1] * probs(t)[0])
    assert r["sampled_pos"] == pytest.approx(by_hand_pos, rel=1e-11)
    assert r["sampled_neg"] == pytest.approx(by_hand_neg, rel=1e-11)
    assert r["sampled_pos"] > 0 and r["sampled_neg"] > 0


def test_adamw_steps_by_hand_and_momentum_moves_unsampled_logits():
    """V=4, token 0 correct, zero logits, AdamW lr 0.01, wd 0.1, betas (0.9, 0.999), eps 1e-8.
    Step 1 draws tokens 0 and 2: advantages +1, -1, grad g = (-0.5, 0, 0.5, 0); Adam's first step is
    -lr g / (|g| + eps). Step 2 draws token 3 twice: every reward -1, no advantage, no gradient; tokens
    0 and 2 are unsampled yet move by their momentum and their weight decay."""
    lr, wd, eps = 0.01, 0.1, 1e-8
    s = SimSettings(vocab=4, correct=1, steps=2, ns=(2,), lr=lr, weight_decay=wd, objective="logprob", init="zeros")
    run = ToyRun(s, 2)
    run.step(counts=torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    d = lr * 0.5 / (0.5 + eps)
    assert run.z.detach().tolist() == pytest.approx([d, 0.0, -d, 0.0], rel=1e-14)

    z1 = run.z.detach().clone()
    r = run.step(counts=torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=torch.float64))
    m_hat, v_hat = 0.9 * 0.1 * 0.5 / (1 - 0.9**2), 0.999 * 0.001 * 0.25 / (1 - 0.999**2)
    move = lr * m_hat / (math.sqrt(v_hat) + eps)  # token 0 up, token 2 down, by momentum alone
    z2 = [d * (1 - lr * wd) + move, 0.0, -d * (1 - lr * wd) - move, 0.0]
    assert run.z.detach().tolist() == pytest.approx(z2, rel=1e-13)
    e = math.exp
    q = lambda z: e(z[0]) / sum(e(v) for v in z)
    assert r["dq_pos"] == pytest.approx(q(z2) - q(z1.tolist()), rel=1e-10)
    assert r["sampled_pos"] == 0.0 and r["sampled_neg"] == 0.0  # token 3's logit did not move
    assert r["unsampled"] == pytest.approx(r["dq_pos"], rel=1e-12) and r["unsampled"] > 0
    assert r["weight_decay"] < 0  # decay pulls the correct logit down and the wrong one up


def test_first_order_terms_are_the_papers():
    """Under the update the paper analyses, the linearised split is its three terms exactly, and the
    exact split tends to it as the step shrinks."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(60, generator=gen, dtype=torch.float64)
    pos = torch.arange(60) < 12
    sampled = torch.rand(60, generator=gen) < 0.3
    for eta in (1e-2, 1e-4):
        dz = paper_update(z, pos, sampled, eta=eta, n=8)
        paper = paper_terms(z, pos, sampled, eta=eta, n=8)
        linear = first_order_terms(z, dz, pos, sampled)
        exact = decompose(z, dz, pos, sampled)
        for k in TERMS:
            assert linear[k] == pytest.approx(paper[k], rel=1e-12)
            assert exact[k] == pytest.approx(paper[k], rel=20 * eta)
        assert paper["sampled_pos"] >= 0 and paper["sampled_neg"] >= 0


def test_a_common_logit_shift_changes_no_mass_and_no_zero_sum_term():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(80, generator=gen, dtype=torch.float64)
    dz = 0.05 * torch.randn(80, generator=gen, dtype=torch.float64)
    pos, sampled = torch.arange(80) < 9, torch.rand(80, generator=gen) < 0.2
    plain, shifted = decompose(z, dz, pos, sampled), decompose(z, dz + 0.7, pos, sampled)
    assert shifted["dq_pos"] == pytest.approx(plain["dq_pos"], rel=1e-12)
    for k in TERMS:
        assert shifted[f"{k}_zero_sum"] == pytest.approx(plain[f"{k}_zero_sum"], rel=1e-9, abs=1e-15)
    assert sum(plain[f"{k}_zero_sum"] for k in TERMS) == pytest.approx(plain["dq_pos"], rel=1e-9)
    assert shifted["unsampled"] != pytest.approx(plain["unsampled"], rel=1e-3)  # the raw split does see the shift


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_with_the_batch_mean_baseline_and_no_decay_the_mass_never_falls(optimizer):
    """The module docstring's sign argument for the log-probability loss: every gradient raises correct
    logits and lowers wrong ones."""
    s = SimSettings(vocab=40, correct=8, steps=60, ns=(4,), lr=0.05, optimizer=optimizer, weight_decay=0.0, init="normal:1",
                    objective="logprob")
    run = ToyRun(s, 4)
    for _ in range(s.steps):
        r = run.step()
        assert r["dq_pos"] >= 0 and r["sampled_pos"] >= 0 and r["sampled_neg"] >= 0 and r["unsampled"] >= 0
        if optimizer == "sgd":
            assert r["unsampled"] == 0.0


def test_runs_are_reproducible_per_n():
    both = simulate(SimSettings(vocab=30, correct=3, steps=15, ns=(4, 16), init="normal:0.5", seed=3))
    alone = simulate(SimSettings(vocab=30, correct=3, steps=15, ns=(16,), init="normal:0.5", seed=3))
    assert both["arms"]["16"]["series"]["dq_pos"] == alone["arms"]["16"]["series"]["dq_pos"]
    assert [r["n"] for r in both["table"]] == [4, 16]


def test_cli_writes_the_table_the_series_and_the_figure(tmp_path):
    out = tmp_path / "sim"
    done = run_cli(["simulate", "--vocab", "50", "--correct", "5", "--steps", "12", "--n", "4,16", "--out", str(out), "--quiet"],
                   tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| N | Q_pos start" in done.stdout and "| 16 |" in done.stdout
    result = json.loads((out / "simulation.json").read_text())
    assert set(result["arms"]) == {"4", "16"}
    assert len(result["arms"]["4"]["series"]["dq_pos"]) == 12
    assert result["settings"]["vocab"] == 50 and result["provenance"]["seed"] == 0
    table = (out / "table.md").read_text()
    assert table.startswith("toy simulation: objective linear, V=50") and "init seeded (anchor correct)" in table
    assert "| 4 | 0.0% |" in table  # panel 2 starts at 0: no correct token has gained before the first step
    assert len(result["arms"]["16"]["series"]["rose_share"]) == 12
    assert (out / "simulation.png").stat().st_size > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("args, fragment", [
    (["--vocab", "50", "--correct", "50"], "--correct: 50; expected 1 <= correct < vocab (50)"),
    (["--correct", "0"], "--correct: 0"),
    (["--n", "4,0"], "--n: '4,0'; expected comma-separated positive integers"),
    (["--steps", "0"], "--steps: 0; expected a positive integer"),
    (["--lr", "-1"], "--lr: -1; expected a positive number"),
    (["--init", "uniform"], "--init: 'uniform'; expected seeded, zeros or normal:S"),
    (["--objective", "log"], "--objective: 'log'; valid: linear, logprob"),
    (["--anchor", "none"], "--anchor: 'none'; valid: correct, incorrect"),
    (["--eps", "0"], "--eps: 0; expected a positive number"),
    (["--eps", "nan"], "--eps: nan"),
    (["--optimizer", "adam"], "--optimizer: 'adam'; valid: adamw, sgd"),
    (["--baseline", "median"], "--baseline: 'median'; valid: mean, none"),
    (["--weight-decay", "-0.1"], "--weight-decay: -0.1"),
    (["lr=1"], "takes no key=value overrides"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment, tmp_path, capsys):
    out = tmp_path / "sim"
    assert cli.main(["simulate", *args, "--out", str(out)]) == cli.EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not out.exists()


def test_a_malformed_option_is_one_line_and_exit_2(tmp_path):
    done = run_cli(["simulate", "--vocab", "many"], tmp_path, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--vocab" in lines[0] and "many" in lines[0]


def test_linear_surrogate_gradient_matches_finite_differences_and_the_papers_form():
    """autograd's gradient of -(1/N) sum_j c_j a_j pi_j against central differences, and against the closed
    form -(1/N) pi_k (c_k a_k - S), S = sum_n a_n pi_{y_n}: an unsampled logit gets (1/N) pi_k S, not 0."""
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(30, generator=gen, dtype=torch.float64)
    pos = torch.arange(30) < 7
    counts = torch.zeros(30, dtype=torch.float64)
    counts[[1, 3, 12, 20]] = torch.tensor([2.0, 1.0, 1.0, 3.0], dtype=torch.float64)  # N = 7, 3 correct draws
    zg = z.clone().requires_grad_(True)
    linear_surrogate(zg, counts, pos, "mean").backward()
    h = 1e-6
    numeric = torch.empty(30, dtype=torch.float64)
    for k in range(30):
        e = torch.zeros(30, dtype=torch.float64)
        e[k] = h
        numeric[k] = (linear_surrogate(z + e, counts, pos, "mean") - linear_surrogate(z - e, counts, pos, "mean")) / (2 * h)
    assert torch.allclose(zg.grad, numeric, rtol=1e-7, atol=1e-12)
    p = torch.softmax(z, dim=0)
    reward = torch.where(pos, 1.0, -1.0).to(torch.float64)
    a = reward - (counts * reward).sum() / counts.sum()
    big_s = (counts * a * p).sum()
    closed = -(p * (counts * a - big_s)) / counts.sum()
    assert torch.allclose(zg.grad, closed, rtol=1e-12, atol=1e-18)
    unsampled = counts == 0
    assert (zg.grad[unsampled] != 0).all() and torch.allclose(zg.grad[unsampled], p[unsampled] * big_s / 7, rtol=1e-12)


def test_seeded_initialisation_q_pos():
    """Logits 3 on the 10,000 correct tokens, 5 on the anchor, 0 elsewhere, V = 128,000: Q_pos by hand."""
    e3, e5 = math.exp(SEED_LOGIT), math.exp(ANCHOR_LOGIT)
    want = {"correct": (9_999 * e3 + e5) / (9_999 * e3 + e5 + 118_000),
            "incorrect": 10_000 * e3 / (10_000 * e3 + e5 + 117_999)}
    for anchor, q in want.items():
        z = initial_logits(SimSettings(anchor=anchor))
        assert float(torch.softmax(z, dim=0)[:10_000].sum()) == pytest.approx(q, rel=1e-13)
        assert (z[:10_000] >= 3).all() and int((z == 5).sum()) == 1
    assert want["correct"] == pytest.approx(0.63008, abs=1e-5) and want["incorrect"] == pytest.approx(0.62964, abs=1e-5)


def test_linear_sgd_step_is_the_papers_update_and_panels_are_per_token():
    """Plain SGD on the linear surrogate moves logit k by (lr/N) pi_k (c_k a_k - S); the panels after it are
    the share of correct tokens above their step-0 probability and the smallest change among them."""
    s = SimSettings(vocab=6, correct=3, steps=1, ns=(4,), lr=2.0, optimizer="sgd", weight_decay=0.0, init="normal:1", seed=5)
    run = ToyRun(s, 4)
    z0 = run.z.detach().clone()
    counts = torch.tensor([1.0, 0.0, 0.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    r = run.step(counts=counts)
    p0 = torch.softmax(z0, dim=0)
    a = torch.tensor([1.0, 1, 1, -1, -1, -1], dtype=torch.float64) - (1 - 3) / 4
    big_s = float((counts * a * p0).sum())
    assert (run.z.detach() - z0).tolist() == pytest.approx(((2.0 / 4) * p0 * (counts * a - big_s)).tolist(), rel=1e-12, abs=1e-16)
    change = torch.softmax(run.z.detach(), dim=0)[:3] - p0[:3]
    assert r["rose_share"] == pytest.approx(float((change > 0).double().mean()), abs=0)
    assert r["worst_drop"] == pytest.approx(float(change.min()), rel=1e-12)
    assert r["sampled_pos"] >= 0 and r["sampled_neg"] >= 0


def test_sensitivity_table_reads_the_folders(tmp_path):
    for label, eps in (("a", 1e-8), ("b", 1e-16)):
        write_result(simulate(SimSettings(vocab=40, correct=4, steps=5, ns=(4, 8), eps=eps)), tmp_path / label)
    table = sensitivity_table({"eps 1e-8": tmp_path / "a", "eps 1e-16": tmp_path / "b"}).splitlines()
    assert table[0].startswith("| setting | Q_pos start | N=4: Q_pos end") and len(table) == 4
    assert table[2].startswith("| eps 1e-8 |") and table[3].count("%") == 4
    with pytest.raises(UserError, match="not a `harness simulate` result"):
        sensitivity_table({"missing": tmp_path / "nothing"})
