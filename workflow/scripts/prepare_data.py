"""Snakemake script: prepare one data set as resources/<name>.npz (logic in models.datasets)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from models.datasets import prepare_dataset  # noqa: E402
from host.refusal import exit_on_refusal  # noqa: E402

with exit_on_refusal("prepare_data"):  # refused input: one line in the log, exit status 2
    source = snakemake.input[0] if snakemake.input else snakemake.params.source  # noqa: F821
    counts = prepare_dataset(snakemake.params.dataset, source, snakemake.output[0])  # noqa: F821
    print(f"{snakemake.params.dataset}: {counts} from {source}")  # noqa: F821
