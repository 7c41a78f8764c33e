"""Snakemake script: check a user's data set .npz and prepare it as resources/<name>.npz (logic in
models.datasets.read_user_npz). A refused file: one line naming the file and the array, exit status 2."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from host.refusal import exit_on_refusal  # noqa: E402
from models.datasets import prepare_user_dataset  # noqa: E402

declared = snakemake.params.declared  # noqa: F821
with exit_on_refusal("prepare_user_dataset"):
    counts = prepare_user_dataset(snakemake.input[0], snakemake.output[0], declared["layout"],  # noqa: F821
                                  declared["image_shape"], declared["classes"])
print(f"{snakemake.wildcards.dataset}: {counts} from {snakemake.input[0]}")  # noqa: F821
