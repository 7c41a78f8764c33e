"""Snakemake script: the board-independent FINN front end of one model, every step verified (logic in hw_builds.frontend)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.frontend import build_frontend  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("build_frontend"):  # refused input: one line in the log, exit status 2
    build_frontend(
        onnx_path=snakemake.input.onnx,  # noqa: F821
        golden_path=snakemake.input.golden,  # noqa: F821
        out_dir=snakemake.params.out_dir,  # noqa: F821
        model_name=snakemake.wildcards.model,  # noqa: F821
        verify_samples=snakemake.params.verify_samples,  # noqa: F821
        progress=False,
    )
