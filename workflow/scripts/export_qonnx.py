"""Snakemake script: export a trained BNN to QONNX + golden.npz, checked by qonnx (logic in models.export_stage)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from models.export_stage import export_stage  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("export_qonnx"):  # refused input: one line in the log, exit status 2
    export_stage(
        checkpoint=snakemake.input.checkpoint,  # noqa: F821
        dataset_npz=snakemake.input.dataset,  # noqa: F821
        out_dir=snakemake.params.out_dir,  # noqa: F821
        n_golden=snakemake.params.golden_samples,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        atol=snakemake.params.atol,  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
    )
