"""Snakemake script: the FINN front end's HW graph -> xnor_model.npz (logic in hw_builds.xnor_export)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.xnor_export import export_xnor  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("export_xnor"):  # refused input: one line in the log, exit status 2
    export_xnor(
        frontend_dir=Path(snakemake.input.frontend).parent,  # noqa: F821
        out_npz=snakemake.output.npz,  # noqa: F821
        model_name=snakemake.wildcards.model,  # noqa: F821
        summary_json=snakemake.output.summary,  # noqa: F821
    )
