"""Snakemake script: check a user's data set .npz and prepare it as resources/<name>.npz (logic in
models.datasets.read_user_npz). A refused file exits 2 with one line naming the file and the array."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 - injected by Snakemake

from models.datasets import DataError, prepare_user_dataset  # noqa: E402

declared = snakemake.params.declared  # noqa: F821
try:
    counts = prepare_user_dataset(snakemake.input[0], snakemake.output[0], declared["layout"],  # noqa: F821
                                  declared["image_shape"], declared["classes"])
except DataError as err:
    for stream in (sys.stdout, sys.__stderr__):  # the log, and the terminal running snakemake
        print(f"prepare_user_dataset: refused: {err}", file=stream, flush=True)
    sys.exit(2)
print(f"{snakemake.wildcards.dataset}: {counts} from {snakemake.input[0]}")  # noqa: F821
