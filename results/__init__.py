"""Reference numbers shipped with the harness: the paper's published rows (paper.json, with their
source) and the regression baselines (baselines/). Run outputs go to results/runs/ (git-ignored)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = HERE / "paper.json"
BASELINES = HERE / "baselines"
