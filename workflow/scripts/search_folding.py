"""Snakemake script: the folding search of one model x board (logic in hw_builds.dse.explore)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.dse.explore import explore  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("search_folding"):  # a CNV, a bad front end: one line with the reason, exit 2, nothing written
    result = explore(
        frontend_dir=Path(snakemake.input.frontend).parent,  # noqa: F821
        board=snakemake.wildcards.board,  # noqa: F821
        out_json=snakemake.output.search,  # noqa: F821
        folding_json=snakemake.output.folding,  # noqa: F821
        model_name=snakemake.wildcards.model,  # noqa: F821
        clk_period_ns=snakemake.params.clk_period_ns,  # noqa: F821
        fabric_limits=snakemake.params.fabric_limits,  # noqa: F821
        setfolding_fps=snakemake.params.setfolding_fps,  # noqa: F821
        setfolding_wwidth=snakemake.params.setfolding_wwidth,  # noqa: F821
        progress=False,
    )
print(f"{result['model']} on {result['board']}: {result['status']}")
