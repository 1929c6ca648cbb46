#!/usr/bin/env bash
# Downloads, on a machine with the package index, the pure-Python wheels the harness imports that a
# GPU image with torch and transformers may lack, into .whl/ (git-ignored), for
# scripts/gpu-first-session.sh to install there without a network. Python 3.12, x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "math-verify==0.9.0" "latex2sympy2_extended==1.11.0" "antlr4-python3-runtime==4.13.2"
ls -l .whl
