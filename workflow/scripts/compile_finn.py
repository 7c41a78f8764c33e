"""Snakemake script: FINN build of one model for one board from its front end, every step verified (logic in hw_builds.compile)."""

import os
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

# FINN's parallel HLS synthesis / Vivado jobs: the rule's threads, unless the user set it
os.environ.setdefault("NUM_DEFAULT_WORKERS", str(snakemake.threads))  # noqa: F821

from hw_builds.compile import compile_finn  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("compile_finn"):  # refused input: one line in the log, exit status 2
    compile_finn(
        frontend_dir=Path(snakemake.input.frontend).parent,  # noqa: F821
        golden_path=snakemake.input.golden,  # noqa: F821
        output_dir=snakemake.params.out_dir,  # noqa: F821
        board=snakemake.wildcards.board,  # noqa: F821
        model_name=snakemake.wildcards.model,  # noqa: F821
        target=snakemake.params.target,  # noqa: F821
        clk_period_ns=snakemake.params.clk_period_ns,  # noqa: F821
        target_fps=snakemake.params.target_fps,  # noqa: F821
        folding_config=snakemake.input.folding[0] if snakemake.input.folding else None,  # noqa: F821
        mvau_wwidth_max=snakemake.params.mvau_wwidth_max,  # noqa: F821
        fail_if_not_fits=snakemake.params.fail_if_not_fits,  # noqa: F821
        verify_samples=snakemake.params.verify_samples,  # noqa: F821
        progress=False,
    )
