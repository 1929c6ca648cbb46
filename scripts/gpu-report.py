"""Turns the output folder of scripts/gpu-first-session.sh (one STEP.json per step) into one dated
results/experiments/ page: the steps' exit codes and seconds, then each measurement's table.

    python3 scripts/gpu-report.py OUT_DIR [--out results/experiments/DATE-gpu-first-session.md] [--commit C]

Default --out: results/experiments/<today>-gpu-first-session.md (<today>-gpu-first-session-cpu.md
for a --cpu run). The commit is the run's own (its provenance) when the run machine had git, else
this checkout's HEAD, marked as such. Only the standard library: it runs anywhere the folder is.

Figures computed here, from the steps' own numbers:
- MFU of the update (rl-step): 6 x matrix weights (the model's parameters: its embeddings are tied,
  so the output layer is a product with them) x the tokens the update trains on (each group's
  prompt once, every response token) / the update phase's seconds (forward and backward of every
  mini-batch, the optimizer apart) / the measured bf16 matrix-product peak (matmul). Attention over
  the context and gradient checkpointing's recomputation are not counted: a floor.
- decode FLOP/s over the peak (rollout): the benchmark's own `matmul_fraction` (2 FLOP per matrix
  weight per decoded token x tokens/s / the bf16 peak measured in the same run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

STEPS = ("environment", "plan", "matmul", "tests", "update-memory", "rl-step", "rollout")
"""The script's steps, in the order it runs them."""

PHASES = ("weight_sync", "generate", "old_logprob", "ref_logprob", "update", "optimizer")


def load(folder: Path) -> dict[str, dict]:
    """The steps' records by name; a missing file is a step that wrote nothing (killed, say)."""
    out = {}
    for name in STEPS:
        path = folder / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    if not out:
        raise SystemExit(f"gpu-report: error: no STEP.json of {', '.join(STEPS)} in {folder}")
    return out


def result(steps: dict, name: str) -> dict | None:
    record = steps.get(name)
    return record["result"] if record and record["exit"] == 0 and record.get("result") else None


def commit(steps: dict, given: str | None) -> str:
    if given:
        return given
    for record in steps.values():
        found = ((record.get("result") or {}).get("provenance") or {}).get("git_commit")
        if found:
            return f"{found} (the run's tree)"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"{head or 'unknown'} (this checkout's HEAD when the page was written; the run machine had no git)"


def environment_lines(steps: dict) -> list[str]:
    record = steps.get("environment")
    if not record:
        return ["- environment: not recorded"]
    lines = [line for line in record["log"].splitlines() if line and not line.startswith("==")]
    return [f"- {line}" for line in lines]


def steps_table(steps: dict) -> list[str]:
    out = ["| step | exit | seconds | command |", "|---|---|---|---|"]
    for name in STEPS:
        r = steps.get(name)
        if r is None:
            out.append(f"| {name} | no file | | |")
            continue
        command = r["command"].strip().splitlines()[0].replace("|", "\\|")
        command = command if len(r["command"].strip().splitlines()) == 1 else f"{command} ... (the environment probe)"
        out.append(f"| {name} | {r['exit']} | {r['seconds']} | `{command}` |")
    return out


def failed_tail(record: dict) -> list[str]:
    tail = [line for line in record["log"].splitlines() if line.strip()][-6:]
    return ["```", *tail, "```"]


def tests_section(steps: dict) -> list[str]:
    r = steps.get("tests")
    if r is None:
        return ["Not run."]
    res = r.get("result")
    if not res:
        return ["No test report.", *failed_tail(r)]
    passed = res["tests"] - res["failures"] - res["errors"] - res["skipped"]
    out = [f"{res['tests']} tests: {passed} passed, {res['failures']} failed, {res['errors']} errors, {res['skipped']} skipped."]
    bad = [c for c in res["cases"] if c["outcome"] != "passed"]
    out += [f"- {c['outcome']}: `{c['name']}`" for c in bad]
    return out


def memory_section(steps: dict) -> list[str]:
    res = result(steps, "update-memory")
    if res is None:
        return ["Not measured."] + (failed_tail(steps["update-memory"]) if "update-memory" in steps else [])
    rows = res["rows"]
    first = rows[0]
    cuda = first["cuda_peak_mb"] is not None
    key, before = ("cuda_peak_mb", "cuda_before_mb") if cuda else ("peak_rss_mb", "rss_before_mb")
    out = [f"Random Qwen2, {first['layers']} blocks, hidden {first['hidden_size']}, vocabulary {first['vocab_size']:,}, "
           f"{first['parameters'] / 1e6:,.0f}M parameters, {first['dtype']} weights, autocast {first['autocast']}, "
           f"gradient checkpointing {'on' if first['gradient_checkpointing'] else 'off'}, on {first['device']}; one "
           f"sequence of 128 prompt + L response tokens; {'CUDA peak allocated' if cuda else 'peak RSS'} during the update "
           "(forward and backward; weights included, in brackets what the update added), and its seconds.", "",
           "| response tokens L | output layer whole | chunked | chunk tokens |", "|---|---|---|---|"]
    lengths = sorted({r["response_tokens"] for r in rows})
    for length in lengths:
        cells = {r["logit_chunk_tokens"]: r for r in rows if r["response_tokens"] == length}
        whole = cells.get(0)
        chunked = next((r for c, r in cells.items() if c), None)

        def cell(r):
            return "-" if r is None else f"{r[key]:,.0f} MB (+{r[key] - r[before]:,.0f}), {r['seconds']:.2f} s"

        out.append(f"| {length:,} | {cell(whole)} | {cell(chunked)} | {chunked['logit_chunk_tokens'] if chunked else '-'} |")
    return out


def peak_flops(steps: dict) -> tuple[float | None, str]:
    res = result(steps, "matmul")
    if res is None:
        return None, "not measured"
    p = res["peak"]
    return p["flops"], f"{_rate(p['flops'])} ({p['dtype']}, {p['size']} x {p['size']}, {p['device_name']})"


def _rate(flops: float) -> str:
    return f"{flops / 1e12:,.1f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:,.1f} GFLOP/s"


def step_section(steps: dict) -> list[str]:
    res = result(steps, "rl-step") or (steps.get("rl-step") or {}).get("result")
    if not res:
        return ["Not measured."] + (failed_tail(steps["rl-step"]) if "rl-step" in steps else [])
    peak, _ = peak_flops(steps)
    rows = res["rows"]
    ok = [r for r in rows if "error" not in r]
    out = []
    if ok:
        r = ok[0]
        out.append(f"Random Qwen2, {r['layers']} blocks, vocabulary {r['vocab_size']:,}, {r['parameters'] / 1e6:,.0f}M "
                   f"parameters; {r['dtype']} weights, autocast {r['autocast']}, rollout {r['rollout_dtype']} (hf engine), "
                   f"gradient checkpointing {'on' if r['gradient_checkpointing'] else 'off'}, {r['mini_batches']} mini-batches, "
                   f"micro-batch budget {r['micro_batch_tokens']:,} tokens, on {r['device']}; prompts {r['prompt_tokens']} "
                   f"random tokens, responses exactly {r['response_tokens']}; peak memory is {r['peak_kind']} per phase.")
        out.append("")
    out += ["| arm | N x prompts | " + " | ".join(PHASES) + " | step | generate samples/s | update MFU |",
            "|---|---|" + "---|" * len(PHASES) + "---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['recipe']} | failed in {r['phase']}: {r['error']} |" + " |" * (len(PHASES) + 3))
            continue
        tokens = r["prompts"] * r["prompt_tokens"] + r["samples"] * r["response_tokens"]
        flops = 6.0 * r["parameters"] * tokens
        mfu = f"{100 * flops / r['seconds']['update'] / peak:.1f}%" if peak and r["seconds"]["update"] > 0 else "-"
        secs = " | ".join(f"{r['seconds'][p]:.2f} s / {_mb(r['peak_mb'][p])}" for p in PHASES)
        out.append(f"| {r['recipe']} | {r['n']} x {r['prompts']} | {secs} | {r['step_s']:.2f} s / {_mb(r['peak_step_mb'])} | "
                   f"{r['samples_per_s']:.1f} | {mfu} |")
    out += ["", "Each phase cell: seconds / peak memory. Update MFU: 6 x parameters x (prompts x prompt tokens + samples x "
            "response tokens) / update seconds / the measured peak (the page's header says how it is a floor)."]
    return out


def _mb(value) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def rollout_section(steps: dict) -> list[str]:
    res = result(steps, "rollout")
    if res is None:
        return ["Not measured."] + (failed_tail(steps["rollout"]) if "rollout" in steps else [])
    rows = res["rows"]
    p = res["peak"]
    out = [f"Fixed-length responses (no stop token), prompts of {res['rows'][0]['prompt_tokens']:.0f} random tokens; decode "
           f"FLOP/s = {rows[0]['decode_flops_per_token'] / 1e6:,.1f} MFLOP per decoded token x tokens/s, over the "
           f"{p['dtype']} peak measured in this step ({_rate(p['flops'])} on {p['device_name']}).", "",
           "| engine | N | prompts | samples/s | tokens/s | decode FLOP/s / peak |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['engine']} | {r['n']} | {r['prompts']} | {r['samples_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | "
                   f"{100 * r['matmul_fraction']:.1f}% |")
    hf = {r["n"]: r for r in rows if r["engine"].startswith("hf")}
    gen = {r["n"]: r for r in rows if r["engine"] == "transformers generate"}
    ns = sorted(hf)
    if len(ns) > 1:
        out.append("")
        out.append(f"hf N={ns[-1]} / N={ns[0]} samples/s: {hf[ns[-1]]['samples_per_s'] / hf[ns[0]]['samples_per_s']:.2f}x "
                   "(the paper's Table 3: 72.4 / 36.5 = 1.98x, on 64 H100 with vLLM and 16k-token responses); "
                   + ", ".join(f"hf / generate at N={n}: {hf[n]['samples_per_s'] / gen[n]['samples_per_s']:.2f}x"
                               for n in ns if n in gen))
    return out


def render(folder: Path, commit_id: str | None) -> tuple[str, str]:
    steps = load(folder)
    mode = next(iter(steps.values())).get("mode", "gpu")
    failed = [n for n in STEPS if n in steps and steps[n]["exit"] != 0]
    missing = [n for n in STEPS if n not in steps]
    when = next((((r.get("result") or {}).get("provenance") or {}).get("created_utc") for r in steps.values()
                 if ((r.get("result") or {}).get("provenance") or {}).get("created_utc")), None)
    date = (when or datetime.date.today().isoformat())[:10]
    _, peak_text = peak_flops(steps)
    title = "GPU first session" if mode == "gpu" else "GPU first session script, CPU mode (the check, not a GPU run)"
    lines = [
        f"# {date}: {title}", "",
        f"- **Commit**: {commit_id}",
        f"- **Command**: `bash scripts/gpu-first-session.sh{' --cpu' if mode == 'cpu' else ''} OUT_DIR`, then "
        f"`python3 scripts/gpu-report.py OUT_DIR`",
        "- **Machine and packages** (the environment step):",
        *[f"  {line}" for line in environment_lines(steps)],
        f"- **Measured bf16 matrix-product peak**: {peak_text}",
        f"- **Steps**: {len(steps) - len(failed)} of {len(STEPS)} exited 0"
        + (f"; failed: {', '.join(failed)}" if failed else "") + (f"; no file: {', '.join(missing)}" if missing else ""),
        "",
    ]
    if mode == "cpu":
        lines += ["This is the script's CPU mode (a 2-block stand-in shape, short lengths): it shows that every step runs "
                  "and writes its file in an environment with only the GPU image's packages. Its figures are a CPU's and "
                  "say nothing about a GPU.", ""]
    lines += ["## Steps", "", *steps_table(steps), "",
              "## CUDA tests (tests/test_gpu.py, tests/test_chunked_logits.py, tests/test_precision.py)", "",
              *tests_section(steps), "",
              "## The update's peak memory, output layer whole vs chunked", "", *memory_section(steps), "",
              "## One RL step of each arm", "", *step_section(steps), "",
              "## Rollout throughput: hf engine vs transformers generate", "", *rollout_section(steps), "",
              "## What this does and does not show", "",
              "It shows compute, memory and time at the checkpoint's shape with random weights and random tokens: what the "
              "paper's shape costs on this device. It does not show learning, scores, scoring's cost, vLLM (the image "
              "has none), the real checkpoint's weights (no hub), or more than one GPU.", ""]
    name = f"{date}-gpu-first-session{'-cpu' if mode == 'cpu' else ''}.md"
    return "\n".join(lines), name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the script's OUT_DIR (one STEP.json per step)")
    parser.add_argument("--out", type=Path, default=None, help="the page (default: results/experiments/<date>-gpu-first-session.md)")
    parser.add_argument("--commit", default=None, help="the commit the run's tree was (default: its provenance, else HEAD)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every step wrote its file and exited 0 (CI)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"gpu-report: error: {args.folder} is not a folder (give the script's OUT_DIR)", file=sys.stderr)
        return 2
    steps = load(args.folder)
    text, name = render(args.folder, commit(steps, args.commit))
    out = args.out or Path(__file__).resolve().parents[1] / "results" / "experiments" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(text)
    print(f"wrote {out}")
    bad = [f"{n}: {'no file' if n not in steps else 'exit ' + str(steps[n]['exit'])}" for n in STEPS
           if n not in steps or steps[n]["exit"] != 0]
    if args.check and bad:
        print(f"gpu-report: check failed: {'; '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
