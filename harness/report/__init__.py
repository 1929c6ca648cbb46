"""The report of a comparison: a `harness compare` folder rendered into summary.json, tables.md and
figure1.png, from its files alone.

    harness report DIR      # re-render a finished or interrupted `harness compare` folder

Nothing is re-run. Scores are pass@1 over k samples (fractions in JSON, percent in the tables, like
the paper). `summary` reads the folder into the summary dict (rows, efficiency, significance tests),
`tables` renders it as Markdown beside the paper's rows, `figure` draws score vs training hours;
`render` writes all three files atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.figure import render_figure
from harness.report.summary import ReportError, build_summary
from harness.report.tables import PAPER, render_tables
from harness.runs import write_json_atomic, write_text_atomic

__all__ = ["PAPER", "ReportError", "build_summary", "render", "render_figure", "render_tables"]


def render(out: Path) -> dict:
    """Write summary.json, tables.md and figure1.png for a comparison folder; returns the summary."""
    summary = build_summary(out)
    paper = json.loads(PAPER.read_text())
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "tables.md", render_tables(summary, paper))
    if summary["rows"]:
        render_figure(summary, out / "figure1.png")
    return summary
