"""Snakemake script: plots, summary.csv and report.html from the stage outputs (logic in reporting.render)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from reporting.render import render_report  # noqa: E402

render_report(
    files=list(snakemake.input),  # noqa: F821
    models=snakemake.params.models,  # noqa: F821
    boards=snakemake.params.boards,  # noqa: F821
    html_path=snakemake.output.html,  # noqa: F821
    csv_path=snakemake.output.csv,  # noqa: F821
    plots_dir=Path(snakemake.output.pareto).parent,  # noqa: F821 - the plots' folder, as the rule declares it
)
