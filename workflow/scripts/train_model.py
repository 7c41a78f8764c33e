"""Snakemake script: train one BNN into results/{model}/train/ (logic in models.train.train_model)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "a")  # noqa: F821 - injected by Snakemake; "a" keeps a resumed run's history

from models.train import train_model  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("train_model"):  # refused input: one line in the log, exit status 2
    train_model(
        model_name=snakemake.wildcards.model,  # noqa: F821
        dataset_npz=snakemake.input.dataset,  # noqa: F821
        out_dir=snakemake.params.out_dir,  # noqa: F821
        config=snakemake.params.recipe,  # noqa: F821
        train_subset=snakemake.params.train_subset,  # noqa: F821
        test_subset=snakemake.params.test_subset,  # noqa: F821
        topology=snakemake.params.topology,  # noqa: F821
        num_classes=snakemake.params.num_classes,  # noqa: F821
    )
