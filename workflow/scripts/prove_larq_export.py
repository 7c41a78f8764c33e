"""Snakemake script: qonnx's execution of a converted Larq model == Larq's forward, then publish export/
(logic in hw_builds.larq_proof)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from hw_builds.larq_proof import prove_larq_export  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("prove_larq_export"):  # refused input: one line in the log, exit status 2
    prove_larq_export(
        larq_dir=snakemake.params.larq_dir,  # noqa: F821
        dataset_npz=snakemake.input.dataset,  # noqa: F821
        out_dir=snakemake.params.out_dir,  # noqa: F821
        atol=snakemake.params.atol,  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
    )
