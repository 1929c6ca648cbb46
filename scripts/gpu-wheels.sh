#!/usr/bin/env bash
# Downloads, on a machine with the package index, the wheels scripts/gpu-first-session.sh installs on
# the GPU image (which has no network), into .whl/ (git-ignored; carried with the device call).
# For Python 3.12 on x86-64 Linux (manylinux), the image's. Only what the script's steps import
# that the image lacks (../shared/REFERENCE.md lists the image): math-verify and what it needs
# beyond the image's sympy (latex2sympy2_extended, antlr4-python3-runtime), imported by
# tests/test_precision.py's math suite. All three are pure Python (py3-none-any), so the same files
# also install in `tox -e gpu-image` (the machine's Python 3.11). No step needs reasoning-gym,
# datasets or lm-eval (`plan` and `bench --shape` build no suite: tests/test_unused_imports.py), so
# none of them travels (reasoning-gym would need pycosat, a C extension with no wheel for 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
WHEELS=("math-verify==0.9.0" "latex2sympy2_extended==1.11.0" "antlr4-python3-runtime==4.13.2")
have=1
for w in "${WHEELS[@]}"; do
    name=${w%%==*}; version=${w##*==}
    compgen -G ".whl/${name//-/_}-${version}-*.whl" >/dev/null || have=0
done
if [ "$have" = 0 ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
fi
ls -l .whl
du -ch .whl/*.whl | tail -1
