#!/usr/bin/env bash
# The first GPU session's checks of the single-GPU path (docs/gpu.md), in one run that fits about
# 8 minutes on one H100/H200. Run from the repository root on the GPU machine:
#   bash scripts/gpu-first-session.sh [OUT_DIR]            # default OUT_DIR: $OUT, else results/gpu-first
# It needs a CUDA torch and transformers already installed (the GPU image has them) and no
# network: the harness runs from this checkout (PYTHONPATH), and the few pure-Python packages the
# harness imports that such an image may lack travel as wheels in .whl/ (scripts/gpu-wheels.sh
# downloads them on a machine with the package index). Nothing is downloaded from the hub: the
# model is a randomly initialised Qwen2 of the ProRLv2 checkpoint's exact shape (28 blocks,
# hidden 1536, 12/2 heads, 151,936 words), which is what memory and step time depend on.
# Every step writes its output to OUT_DIR and a failing step does not stop the ones after it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-results/gpu-first}}
mkdir -p "$OUT_DIR"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/harness-site .whl/*.whl
    export PYTHONPATH="/tmp/harness-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HARNESS_CACHE="${HARNESS_CACHE:-/tmp/harness-cache}"
H="python3 -m harness.cli"
REAL_SHAPE="bootstrap.model.num_hidden_layers=28 rollout.device=cuda"
status=0
step() {  # step NAME COMMAND...: run, keep its output in OUT_DIR/NAME.txt, remember a failure
    local name=$1; shift
    echo "== $name: $*" | tee "$OUT_DIR/$name.txt"
    local start=$SECONDS
    timeout 600 "$@" 2>&1 | tee -a "$OUT_DIR/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT_DIR/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}
step environment python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
step plan $H plan --profile prorlv2-1.5b
# The CUDA tests (tests/test_gpu.py skips on a CPU) beside the precision and chunked-output-layer tests.
step tests python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_chunked_logits.py tests/test_precision.py
# One policy update at the real shape and vocabulary, output layer whole vs in 1,024-token chunks,
# activations recomputed, up to the 16k training responses (the unchunked 16k column is the ~10 GB
# of logits the chunking exists to avoid).
step update-memory $H bench memory --shape --profile shape-1.5b $REAL_SHAPE train.gradient_checkpointing=true --lengths 1024,4096,16384
# One RL step of each arm at the real shape: generation (hf engine, bf16 copy), both logprob passes
# and the update with fp32 master weights; N and prompts cut to fit the session (the printed sizes
# say which), 1,024-token responses.
step rl-step $H bench step --shape --profile shape-1.5b $REAL_SHAPE rollout.dtype=bfloat16 --n 16,512 --prompts-per-step 8,1 --prompt-tokens 256 --max-new-tokens 1024 --repeats 1
echo "outputs in $OUT_DIR; exit $status"
exit $status
