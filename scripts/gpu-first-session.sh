#!/usr/bin/env bash
# The first GPU session's measurements of the single-GPU path (docs/gpu.md), side by side, in one run
# of at most about 8 minutes on one H100/H200. Run from the repository root:
#   bash scripts/gpu-first-session.sh [--cpu] [OUT_DIR]     # default OUT_DIR: $OUT, else results/gpu-first
# Then, on any machine with the checkout: python3 scripts/gpu-report.py OUT_DIR  (the dated page).
#
# It needs only the GPU image's packages (../shared/REFERENCE.md: torch, transformers, tokenizers,
# safetensors, numpy, scipy, pytest, sympy, ...) and no network: the harness runs from this checkout
# (PYTHONPATH, not installed), and what the steps import that the image lacks (math-verify and the
# two packages it needs, for tests/test_precision.py's math suite) travels as wheels in .whl/
# (scripts/gpu-wheels.sh downloads them on a machine with the package index); none of the steps
# needs reasoning-gym, datasets or lm-eval. Nothing comes from the hub: the model is a randomly
# initialised Qwen2 of the ProRLv2 checkpoint's exact shape (28 blocks, hidden 1536, 12/2 heads,
# 151,936 words), which is what memory and time depend on.
#
# --cpu: the same steps and commands on the CPU at a small stand-in shape (2 blocks, hidden 256,
# 4,096 words) and short lengths, a few minutes on 2 cores; `tox -e gpu-image` runs it in an
# environment with only the image's packages, so the GPU run differs only in --cpu being absent.
#
# Every step writes one file, OUT_DIR/STEP.json: {step, command, exit, seconds, log (its output's
# tail), result (the benchmark's --out JSON, the test counts)}; 7 files (the device tool returns 8 at
# most). A failing step does not stop the ones after it; the exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
CPU=0
if [ "${1:-}" = "--cpu" ]; then CPU=1; shift; fi
OUT_DIR=${1:-${OUT:-results/gpu-first}}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if compgen -G ".whl/*.whl" >/dev/null; then
    # pure-Python wheels: pip puts them in a folder of their own; without pip, unzipping them does the same
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target "$WORK/site" .whl/*.whl \
        || python3 -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" "$WORK/site" .whl/*.whl \
        || echo "installing .whl/*.whl failed: the steps that need them will say so"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HARNESS_CACHE="${HARNESS_CACHE:-$WORK/harness-cache}" PYTHONDONTWRITEBYTECODE=1
H="python3 -m harness.cli"

if [ "$CPU" = 1 ]; then
    MODE=cpu
    SHAPE="bootstrap.model.num_hidden_layers=2 bootstrap.model.hidden_size=256 bootstrap.model.intermediate_size=512
           bootstrap.model.num_attention_heads=4 bootstrap.model.num_key_value_heads=2 bootstrap.model.vocab_size=4096
           rollout.device=cpu"
    LENGTHS=64,256; STEP_N=16,64; STEP_PROMPTS=2,1; STEP_TOKENS=16; ROLL_N=16,64; ROLL_SAMPLES=64; ROLL_TOKENS=16
    PROMPT_TOKENS=32; MATMUL_SIZE=512; T=600
else
    MODE=gpu
    SHAPE="bootstrap.model.num_hidden_layers=28 rollout.device=cuda"
    # the update up to the paper's 16k responses; one RL step of each arm with 1,024-token responses
    # (N and prompts cut to fit the session: prorl 16 x 8, brorl 512 x 1); rollout throughput at
    # Table 3's N for 512 samples each (16 x 32 prompts, 512 x 1) with 512-token fixed-length responses
    LENGTHS=1024,4096,16384; STEP_N=16,512; STEP_PROMPTS=8,1; STEP_TOKENS=1024; ROLL_N=16,512; ROLL_SAMPLES=512
    ROLL_TOKENS=512; PROMPT_TOKENS=256; MATMUL_SIZE=8192; T=300
fi

status=0
step() {  # step NAME TIMEOUT COMMAND...: run it, record OUT_DIR/NAME.json, remember a failure
    local name=$1 limit=$2; shift 2
    echo "== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || status=1
    python3 - "$OUT_DIR/$name.json" "$name" "$rc" "$((SECONDS - start))" "$WORK" "$MODE" "$*" <<'PY'
import json, os, sys
import xml.etree.ElementTree as ET
path, name, rc, seconds, work, mode, command = sys.argv[1:]
log = open(os.path.join(work, f"{name}.log"), errors="replace").read()
result = None
if os.path.exists(os.path.join(work, f"{name}.out.json")):
    result = json.load(open(os.path.join(work, f"{name}.out.json")))
elif os.path.exists(os.path.join(work, f"{name}.xml")):
    suites = ET.parse(os.path.join(work, f"{name}.xml")).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    result = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    result["cases"] = [{"name": f"{c.get('classname')}::{c.get('name')}", "seconds": float(c.get("time", 0)),
                        "outcome": next((x.tag for x in c if x.tag in ("failure", "error", "skipped")), "passed")}
                       for s in suites for c in s.iter("testcase")]
record = {"step": name, "mode": mode, "command": command, "exit": int(rc), "seconds": int(seconds),
          "log": log[-20000:], "result": result}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
os.replace(tmp, path)
PY
}

step environment 60 python3 -c "
import importlib.util, platform, torch, transformers
print('mode', '$MODE'); print('python', platform.python_version(), platform.machine())
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')
if torch.cuda.is_available(): print('memory GiB', round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
for name in ('reasoning_gym', 'datasets', 'lm_eval', 'math_verify', 'vllm'):
    print(name, 'importable' if importlib.util.find_spec(name) else 'absent')
if '$MODE' == 'gpu' and not torch.cuda.is_available(): raise SystemExit('no CUDA device: run with --cpu on a CPU')
"
step plan 60 $H plan --profile prorlv2-1.5b
# The measured matrix-product peak the MFU figures are a share of (bf16: the update's autocast and
# the engine's dtype).
step matmul 60 $H bench matmul --profile shape-1.5b $SHAPE rollout.dtype=bfloat16 --size $MATMUL_SIZE --repeats 5 \
    --out "$WORK/matmul.out.json"
# The CUDA tests (tests/test_gpu.py skips on a CPU) beside the precision and chunked-output-layer tests.
step tests $T python3 -m pytest -q -p no:cacheprovider -rs --junitxml="$WORK/tests.xml" \
    tests/test_gpu.py tests/test_chunked_logits.py tests/test_precision.py
# One policy update at the real shape and vocabulary, output layer whole vs in 1,024-token chunks,
# activations recomputed, up to 16k-token responses (the unchunked 16k column is the ~10 GB of logits
# the chunking exists to avoid); each measurement in its own process.
step update-memory $T $H bench memory --shape --profile shape-1.5b $SHAPE train.gradient_checkpointing=true \
    --lengths $LENGTHS --out "$WORK/update-memory.out.json"
# One RL step of each arm: generation (hf engine, bf16 copy), both logprob passes, the update with
# fp32 master weights under bf16 autocast, the optimizer; phases' seconds and peak memory.
step rl-step $T $H bench step --shape --profile shape-1.5b $SHAPE rollout.dtype=bfloat16 train.gradient_checkpointing=true \
    --n $STEP_N --prompts-per-step $STEP_PROMPTS --prompt-tokens $PROMPT_TOKENS --max-new-tokens $STEP_TOKENS --repeats 1 \
    --out "$WORK/rl-step.out.json"
# Rollout throughput (Table 3's measure): the hf engine (prefix-shared cache) beside transformers'
# own generate(num_return_sequences=N), fixed-length responses, bf16, decode FLOP/s over the peak.
step rollout $T $H bench rollout --shape --profile shape-1.5b $SHAPE rollout.dtype=bfloat16 --n $ROLL_N \
    --samples $ROLL_SAMPLES --prompt-tokens $PROMPT_TOKENS --max-new-tokens $ROLL_TOKENS --repeats 1 \
    --out "$WORK/rollout.out.json"
echo "outputs in $OUT_DIR (one STEP.json per step); exit $status"
exit $status
