"""`tox -e gpu-image`'s first command: this environment holds the GPU image's package set and nothing
the image lacks, so what scripts/gpu-first-session.sh --cpu passes here is what the image has.

Fails (exit 1, one line per problem) when a package the image lacks is importable (reasoning-gym,
datasets, lm-eval, math-verify, vllm, ray, or the harness installed as a package), when transformers
is not the image's 5.17 line, or when torch is not the CPU build standing in for the image's CUDA one."""

import importlib.util
import sys
from importlib import metadata

ABSENT = ("reasoning_gym", "datasets", "lm_eval", "math_verify", "vllm", "ray")
"""Modules the image does not have (../shared/REFERENCE.md)."""

problems = [f"{name} is importable; the GPU image has no {name}" for name in ABSENT if importlib.util.find_spec(name)]
try:
    problems.append(f"the harness is installed as a package ({metadata.version('rollout-scaling-harness')}); the GPU run uses "
                    "the checkout on PYTHONPATH")
except metadata.PackageNotFoundError:
    pass
import torch  # noqa: E402
import transformers  # noqa: E402

if not transformers.__version__.startswith("5.17."):
    problems.append(f"transformers {transformers.__version__}; the image has 5.17")
if torch.version.cuda is not None:
    problems.append(f"torch {torch.__version__} is a CUDA build; this environment stands in with the CPU build")
for line in problems:
    print(f"gpu-image check: {line}", file=sys.stderr)
print(f"gpu-image check: python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}; "
      f"absent as on the image: {', '.join(ABSENT)}" if not problems else "gpu-image check: FAILED")
sys.exit(1 if problems else 0)
