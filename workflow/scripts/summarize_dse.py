"""Snakemake script: the sweep's table, Pareto plot and SetFolding comparison (logic in reporting.dse)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from reporting.dse import summarize  # noqa: E402

summarize(
    searches=snakemake.input.searches,  # noqa: F821
    builds=[p for p in snakemake.input.builds if p.endswith("summary.json")],  # noqa: F821
    metrics=snakemake.input.metrics,  # noqa: F821
    csv_path=snakemake.output.csv,  # noqa: F821
    json_path=snakemake.output.json,  # noqa: F821
    pareto_png=snakemake.output.pareto,  # noqa: F821
    setfolding_png=snakemake.output.setfolding,  # noqa: F821
    setfolding_csv=snakemake.output.table,  # noqa: F821
    html_path=snakemake.output.html,  # noqa: F821
)
